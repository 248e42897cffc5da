/*
 * version.h - which table files are live, per level, and how that changes.
 *
 * A version is an immutable set of files per level. Level 0 holds tables
 * that may overlap (each is one flushed memtable), newest first by file
 * number; levels 1..N hold runs of non-overlapping tables sorted by key.
 * Every change (a flush, a compaction) is a version edit: appended to the
 * manifest (a record log, wal.h) and synced, then installed as the new
 * current version. Readers and iterators hold a ref on the version they read,
 * so the files it names outlive any compaction that replaces them.
 *
 * CURRENT names the live manifest. It is replaced by writing a temporary
 * file, syncing it, renaming it over CURRENT and syncing the directory.
 *
 * Compaction picking is deterministic: the level with the highest score
 * (level 0: file count over the trigger; others: bytes over the level's
 * target) at or above 1, ties to the lower level; within it the first file
 * after the level's round-robin compaction pointer that no running
 * compaction holds. When no level scores 1, a table that lookups keep
 * passing through without finding their key (its seek budget ran out, see
 * version_charge_seek) is compacted into the level below. The budgets are
 * spent by the reads themselves, so the same operations pick the same
 * compactions.
 *
 * Locking: the version set is guarded by the database mutex, which callers
 * hold for every function here unless it says otherwise.
 */
#ifndef CAIRN_VERSION_H
#define CAIRN_VERSION_H

#include <pthread.h>
#include <stdint.h>

#include "cairn.h"
#include "env.h"
#include "iter.h"
#include "sstable.h"
#include "util.h"

#define NUM_LEVELS CAIRN_MAX_LEVELS

struct file_meta {
	uint64_t number;
	uint64_t size;
	struct buf smallest, largest; /* internal keys */
	uint64_t min_seq, max_seq;
	uint64_t num_entries;
	int refs;            /* versions holding it */
	int being_compacted; /* an in-flight compaction has it as input */
	/* Lookups that may still pass through this table without finding their
	 * key before it is compacted into the level below (version_charge_seek). */
	int64_t allowed_seeks;
};

struct version_set;

struct version {
	struct version_set *vs;
	int refs;
	struct file_meta **files[NUM_LEVELS];
	int nfiles[NUM_LEVELS];
	/* computed when installed */
	double compaction_score;
	int compaction_level;
	/* a file whose seek budget ran out, the seek compaction's input (NULL:
	 * none); set when installed and by version_charge_seek */
	struct file_meta *seek_file;
	int seek_level;
	struct version *prev, *next; /* list of live versions */
};

void version_ref(struct version *v);
void version_unref(struct version *v);

/* ---- version edits ---- */

struct edit_file {
	int level;
	struct file_meta *f; /* owned by the edit until applied */
};
struct edit_deleted {
	int level;
	uint64_t number;
};
struct edit_pointer {
	int level;
	struct buf key; /* internal key */
};

/* A blob file the manifest knows (blob.h). size is its length when sealed
 * (or when recorded, for the one file still taking appends); garbage is the
 * bytes of records no entry can reach any more. */
struct blob_file_meta {
	uint64_t number, size, garbage;
	/* bytes of the extra references cairn_batch_copy made to its records
	 * (each counts a record once more; garbage counts each reference
	 * dropped). Nonzero: some record may be reached under a key other than
	 * its own, so collection finds references by a scan of the tree. */
	uint64_t shared;
	int sealed;
};
/* The bytes of a blob file's records no key refers to: each dropped
 * reference counts its record once as garbage, each shared one once more. */
static inline uint64_t blob_net_garbage(const struct blob_file_meta *b)
{
	return b->garbage > b->shared ? b->garbage - b->shared : 0;
}
struct edit_blob {
	uint64_t number, size;
	int sealed;
};
struct edit_garbage {
	uint64_t number, bytes;
};

/* A clean close: log `log` was synced through `length` bytes, its records
 * ending with sequence `seq` (format.md, tag 10). */
struct log_mark {
	int set;
	uint64_t log, length, seq;
};

struct version_edit {
	int has_log_number, has_next_file, has_last_seq;
	struct log_mark mark;
	uint64_t log_number; /* logs older than this are no longer needed */
	uint64_t next_file_number;
	uint64_t last_sequence;
	struct edit_file *added;
	int nadded, cap_added;
	struct edit_deleted *deleted;
	int ndeleted, cap_deleted;
	struct edit_pointer *pointers;
	int npointers, cap_pointers;
	/* blob files: deletions, then additions / updates, then garbage */
	uint64_t *deleted_blobs;
	int ndeleted_blobs, cap_deleted_blobs;
	struct edit_blob *blobs;
	int nblobs, cap_blobs;
	struct edit_garbage *garbage;
	int ngarbage, cap_garbage;
	struct edit_garbage *shared; /* bytes of references added by copies */
	int nshared, cap_shared;
};

void edit_init(struct version_edit *e);
void edit_free(struct version_edit *e);
int edit_add_file(struct version_edit *e, int level, uint64_t number, uint64_t size,
                  struct slice smallest, struct slice largest, uint64_t min_seq, uint64_t max_seq,
                  uint64_t num_entries);
int edit_delete_file(struct version_edit *e, int level, uint64_t number);
int edit_set_pointer(struct version_edit *e, int level, struct slice ikey);
/* Records blob file number with its size (a number already known gets the
 * new size and seal flag). */
int edit_add_blob(struct version_edit *e, uint64_t number, uint64_t size, int sealed);
/* Adds bytes of garbage to a blob file (ignored if the file is gone). */
int edit_add_garbage(struct version_edit *e, uint64_t number, uint64_t bytes);
/* Adds bytes of shared references to a blob file (ignored if it is gone). */
int edit_add_shared(struct version_edit *e, uint64_t number, uint64_t bytes);
/* Forgets a blob file; it must be known. */
int edit_delete_blob(struct version_edit *e, uint64_t number);
/* Encoding: docs/format.md, "Manifest". decode validates every field and
 * returns CAIRN_ECORRUPT with a message on bad input. decode initialises *e
 * itself (pass an unused or freed edit; free it with edit_free even after a
 * failure, which leaves it empty). */
int edit_encode(const struct version_edit *e, struct buf *out);
int edit_decode(struct slice in, struct version_edit *e, char *err, size_t errlen);
/* One line per field, for `cairn dump`. */
void edit_dump(const struct version_edit *e, void (*fn)(void *ctx, const char *line), void *ctx);

/* ---- the version set ---- */

/* dbdir and opts are copied or must outlive the set. tc is used for reads. */
int vset_new(struct cairn_env *env, const char *dbdir, const struct cairn_options *opts,
             struct table_cache *tc, struct version_set **vsp);
void vset_free(struct version_set *vs);

/* Creates the first manifest and CURRENT of a new database. */
int vset_create(struct version_set *vs, char *err, size_t errlen);
/* Reads CURRENT and replays the manifest it names. CAIRN_ENOENT when there is
 * no CURRENT; CAIRN_ECORRUPT naming the file and offset on any damage (a torn
 * last record of the manifest is tolerated: it was never acknowledged).
 * Writes nothing: the next edit goes to a new manifest that starts with a
 * snapshot of the current version, and CURRENT is switched to it. */
int vset_recover(struct version_set *vs, char *err, size_t errlen);

/* Appends e to the manifest (filling in log number, next file number and
 * last sequence), syncs it, and installs the resulting version as current.
 * On failure nothing is installed and the set refuses further edits
 * (CAIRN_EFAILED) because the manifest's tail is unknown. With a mutex set
 * (vset_set_mutex) it is dropped while the edit is appended and synced, so
 * the caller's state guarded by it may change during the call; edits are
 * still written and installed one at a time, in order, each built on the
 * version the previous one installed. */
int vset_log_and_apply(struct version_set *vs, struct version_edit *e, char *err, size_t errlen);

/* The mutex callers hold (NULL, the default: it is never dropped). */
void vset_set_mutex(struct version_set *vs, struct env_mutex *mu);

struct version *vset_current(struct version_set *vs); /* no ref taken */
uint64_t vset_new_file_number(struct version_set *vs);
/* The number the next vset_new_file_number call returns. */
uint64_t vset_next_file(const struct version_set *vs);
/* The next file number the loaded manifest recorded (before any number
 * seen in use raised it): a log number at or above it was never given to a
 * log. 0 for a database just created. */
uint64_t vset_loaded_next_file(const struct version_set *vs);
/* Makes sure later file numbers are above n (numbers seen while recovering). */
void vset_mark_file_number_used(struct version_set *vs, uint64_t n);
uint64_t vset_last_sequence(const struct version_set *vs);
void vset_set_last_sequence(struct version_set *vs, uint64_t s);
uint64_t vset_log_number(const struct version_set *vs);
/* The last log mark recorded, while its log is still needed (set is 0
 * otherwise). */
struct log_mark vset_log_mark(const struct version_set *vs);
uint64_t vset_manifest_number(const struct version_set *vs);
/* 1 once a manifest write failed: its tail is unknown, no edit may follow. */
int vset_failed(const struct version_set *vs);
uint64_t vset_manifest_size(const struct version_set *vs);

/* Adds every file number referenced by a live version to *nums (a growable
 * array the caller frees). */
int vset_live_files(struct version_set *vs, uint64_t **nums, size_t *n);

/* The blob files the manifest knows, sorted by number. The array is owned by
 * the set and valid until the next edit is applied. */
const struct blob_file_meta *vset_blob_files(struct version_set *vs, int *n);
const struct blob_file_meta *vset_find_blob(struct version_set *vs, uint64_t number);

/* Files in level of the current version (0 for a level out of range). */
int vset_num_level_files(struct version_set *vs, int level);

uint64_t version_level_bytes(const struct version *v, int level);
/* Whether a compaction should run now (some score >= 1 with free inputs). */
int vset_needs_compaction(struct version_set *vs);
/* The level a flushed table covering [smallest, largest] (user keys) goes
 * to: 0, or deeper (up to 2) when nothing there or above overlaps it and it
 * would not overlap too much of the level below. */
int version_pick_level_for_flush(struct version *v, struct slice smallest, struct slice largest);
/* 1 if any file in level overlaps the user-key range (NULL = unbounded). */
int version_overlaps(struct version *v, int level, const struct slice *smallest,
                     const struct slice *largest);

/* A table a lookup searched in vain before it went on to another one. */
struct seek_charge {
	struct file_meta *f; /* NULL: nothing to charge */
	int level;
};

/* Point lookup: the newest entry of the lookup key's user key with sequence
 * <= the lookup key's, searching level 0 newest first, then one table per
 * level. Returns 1 and fills *ikey_out / *ival_out (the entry may be a
 * tombstone: check ikey_type), 0 when no level has the key, or an error.
 * Needs no lock. When charge is not NULL it receives the first table searched
 * if the lookup had to search a second one; the caller passes it to
 * version_charge_seek while it still holds its ref on v. */
int version_get(struct version *v, struct slice lookup_ikey, struct buf *ikey_out,
                struct buf *ival_out, struct seek_charge *charge, char *err, size_t errlen);
/* Spends one seek of the charged table's budget (nothing when c->f is NULL).
 * Returns 1 when this made the table the current version's seek compaction
 * candidate, so the caller should wake the compaction threads. */
int version_charge_seek(struct version_set *vs, const struct seek_charge *c);

/* Appends to its[] (room for NUM_LEVELS + nfiles[0]) one iterator per level-0
 * file and one concatenating iterator per non-empty deeper level; returns the
 * count. The caller must hold a ref on v while they live. */
int version_add_iters(struct version *v, struct iter **its);

/* ---- compactions ---- */

struct compaction {
	int level; /* inputs from level and level + 1; output to level + 1 */
	struct file_meta **inputs[2];
	int ninputs[2];
	struct file_meta **grandparents; /* level + 2 files overlapping */
	int ngrandparents;
	struct version *input_version; /* ref held */
	struct version_edit edit;
	uint64_t max_output_size;
	/* state of should_stop_before and is_base_level_for_key */
	int grand_index, seen_key;
	uint64_t overlapped_bytes;
	int level_ptrs[NUM_LEVELS];
};

/* Picks the next compaction by the deterministic rule above and marks its
 * inputs being_compacted; NULL when none is needed or possible now. */
struct compaction *vset_pick_compaction(struct version_set *vs);
/* A compaction of the files of level overlapping [begin, end] (user keys,
 * NULL = unbounded); NULL if there are none or some are busy (*busy set). */
struct compaction *vset_compact_range(struct version_set *vs, int level, const struct slice *begin,
                                      const struct slice *end, int *busy);
/* A single input file with nothing to merge and little grandparent overlap
 * can move down a level by an edit alone. */
int compaction_is_trivial_move(const struct compaction *c);
/* Adds the deletion of every input file to the compaction's edit. */
int compaction_add_input_deletions(struct compaction *c);
/* 1 if no level below the output level can hold user_key: a tombstone for it
 * may be dropped. Keys must be asked in increasing order. */
int compaction_is_base_level_for_key(struct compaction *c, struct slice user_key);
/* 1 if the output table should end before ikey to bound its overlap with
 * the grandparent level. Keys must be asked in increasing order. */
int compaction_should_stop_before(struct compaction *c, struct slice ikey);
/* A merged iterator over all the inputs. */
struct iter *compaction_input_iter(struct compaction *c);
uint64_t compaction_input_bytes(const struct compaction *c);
/* Clears being_compacted on the inputs, drops the version ref, frees. */
void compaction_free(struct compaction *c);

/* Writes, into dir, a manifest numbered manifest_number holding the current
 * version as one edit, and a CURRENT naming it (for checkpoints). */
int vset_write_snapshot_manifest(struct version_set *vs, const char *dir, uint64_t manifest_number,
                                 char *err, size_t errlen);

/* File names in a database directory. */
void manifest_file_name(char *out, size_t len, const char *dbdir, uint64_t number);
void log_file_name(char *out, size_t len, const char *dbdir, uint64_t number);
void current_file_name(char *out, size_t len, const char *dbdir);

/* Points dir/CURRENT at MANIFEST-number: the line goes to CURRENT.tmp,
 * synced, renamed over CURRENT, and the directory synced, so a crash leaves
 * the old CURRENT or the new. On failure returns the code with the file
 * that failed in *what ("CURRENT.tmp", removed again, or "CURRENT"). */
int current_write(struct cairn_env *env, const char *dir, uint64_t number, const char **what);

/* Reads and prints every edit of a manifest file, for `cairn dump`. */
int manifest_dump(struct cairn_env *env, const char *path, void (*fn)(void *ctx, const char *line),
                  void *ctx, char *err, size_t errlen);

#endif
