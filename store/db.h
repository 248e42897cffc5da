/*
 * db.h - the database handle, shared by db.c (open, recovery, the write and
 * read paths, snapshots, stats) and compact.c (flush, compaction, background
 * threads, removal of obsolete files). Nothing outside store/ sees it.
 *
 * Locking: db->mu guards the memtable pointers, the writer queue, the version
 * set, the snapshot list and the background state. It is never held while a
 * memtable is searched or filled, while a table is built, while the log is
 * written and synced (a memtable switch included), while a manifest edit is
 * appended and synced or while obsolete files are unlinked, except in
 * single-threaded mode (background_threads = 0) where flushes and
 * compactions run inline under it at fixed points.
 */
#ifndef CAIRN_DB_H
#define CAIRN_DB_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include "batch.h"
#include "blob.h"
#include "cache.h"
#include "cairn.h"
#include "env.h"
#include "memtable.h"
#include "sstable.h"
#include "version.h"
#include "wal.h"

struct db_gc_filter;

/* A writer waiting in the group-commit queue. */
struct db_writer {
	const struct cairn_batch *batch; /* NULL: a sync request */
	unsigned flags;
	struct db_gc_filter *gc; /* DB_GC: decides, as leader, what is written */
	int done;
	int status;
	struct env_cond cv;
	struct db_writer *next;
};

struct cairn_snapshot {
	uint64_t seq;
	struct cairn_snapshot *prev, *next;
};

/* Counters that grow without the mutex. */
struct db_counters {
	atomic_uint_fast64_t puts, deletes, batches, gets, gets_found, iterators;
	atomic_uint_fast64_t user_bytes_written;
	atomic_uint_fast64_t wal_bytes_written, wal_syncs, wal_group_commits, wal_bytes_dropped;
	atomic_uint_fast64_t flushes, flush_bytes_written;
	atomic_uint_fast64_t compactions, compaction_bytes_read, compaction_bytes_written;
	atomic_uint_fast64_t slowdowns, slowdown_micros, stops, stop_micros;
	atomic_uint_fast64_t level_compactions[NUM_LEVELS];
	atomic_uint_fast64_t level_bytes_read[NUM_LEVELS];
	atomic_uint_fast64_t level_bytes_written[NUM_LEVELS];
	atomic_uint_fast64_t blob_collections, blob_bytes_moved;
	atomic_uint_fast64_t compactions_damaged;
};

/* A collected blob file that readers older than seq may still read. */
struct db_blob_zombie {
	uint64_t number, seq;
};

struct cairn_db {
	char *dir;
	struct cairn_options opts;
	struct cairn_env *env;
	struct env_lock *lock;

	struct env_mutex mu;
	struct env_cond bg_cv;   /* background work finished or state changed */
	struct env_cond work_cv; /* work for the background threads */

	/* write path */
	struct db_writer *wq_head, *wq_tail;
	struct cairn_batch group; /* the leader's merged batch */
	struct memtable *mem;     /* takes writes */
	struct memtable *imm;     /* frozen, being flushed; NULL if none */
	struct wal_writer *log;
	uint64_t log_number;
	uint64_t log_unsynced;   /* bytes appended since the last sync */
	uint64_t log_size;       /* bytes in the log, for the stats (the leader
	                            updates it under mu; wal_size is not safe
	                            to read while the leader appends) */
	uint64_t imm_log_number; /* the log that holds imm's data */
	int log_holds_writes;    /* a batch went to log */
	/* The log before log (the leader's, like log): not synced at the
	 * switch, it must be before log's first sync (sync_log_with_prev). */
	struct wal_writer *prev_log;
	uint64_t prev_log_number;
	int prev_log_unsynced;

	struct version_set *vs;
	struct table_cache *tc;
	struct cache *block_cache;
	struct table_read_stats rstats;

	struct cairn_snapshot snapshots; /* sentinel of a circular list */

	/* background state */
	struct env_thread **threads;
	int nthreads;
	struct env_thread *sync_thread;
	int shutting_down;
	int flushing; /* a flush of imm is running */
	int running_compactions;
	int manual_compaction; /* cairn_compact_range in progress */
	int bg_error;          /* nonzero: writes refused with EFAILED */
	int bg_nospace;        /* the last flush or compaction ran out of disk space */
	int unlocked_io;       /* background threads run: slow file work drops mu */
	char bg_errmsg[256];
	uint64_t *pending_outputs; /* table numbers being written */
	size_t npending, cap_pending;
	/* files found at open numbered at or above the manifest's next file
	 * number: named by no surviving record, kept as evidence */
	uint64_t *unclaimed;
	size_t nunclaimed, cap_unclaimed;
	uint64_t recovered_next_file; /* the manifest's next file number at open */
	uint64_t session_first_file;  /* files this handle made are numbered from here */

	/* the last error on the handle */
	struct env_mutex err_mu;
	int last_err;
	char errmsg[512];

	/* blob files (db_blob.c). blob_mu serialises appends to the shared
	 * blob file; it is taken before mu, never while holding it. */
	struct env_mutex blob_mu;
	struct blob_writer *blob_active; /* the shared file; NULL: none yet */
	uint64_t blob_active_size;       /* its size, for the stats (under mu) */
	int blob_sync_err;               /* a sync of it failed (sticky) */
	uint64_t blob_verified_file;     /* recovery: the unsealed file last verified */
	uint64_t blob_verified_end;      /* recovery: where its verified records end */
	/* under mu: */
	int blob_gc_running;
	uint64_t *blob_gc_skip; /* files a collection failed on (damaged) */
	size_t nblob_gc_skip;
	struct db_blob_zombie *zombies;
	size_t nzombies, cap_zombies;
	/* writes whose copies made shared references (cairn_batch_copy):
	 * begun (manifest updated) and finished. A collection starts only when
	 * they are equal and gives up if one begins before it commits, so a
	 * reference it has not seen never outlives the file. */
	uint64_t blob_copies_begun, blob_copies_done;

	/* the space reserve (reserve.c), under mu */
	int reserve_held;        /* RESERVE is whole */
	int space_short;         /* a write met a full disk (atomic; db_note_full) */
	uint64_t short_until_ns; /* reclaim passes follow deletes until then */
	uint64_t reserve_releases, reserve_restores;
	uint64_t reclaim_deletes; /* st.deletes at the last reclaim pass */
	uint64_t reclaim_ns;      /* when it ran (env_mono_ns) */
	uint64_t reclaim_wait_ns; /* the wait before the next one */
	int open_released;        /* open gave the reserve up (or had none) and
	                             tries again */

	struct db_counters st;
};

/* Internal write flag of a collection's conditional write (db_blob.c). */
#define DB_GC (1u << 30)
/* Internal write flag of a batch with copies, resolved by its leader. */
#define DB_COPY (1u << 29)

/* Notes that the disk was found full: deletes in the next minute start
 * reclaim passes (db_reclaim). Any thread, any lock. */
static inline void db_note_full(struct cairn_db *db)
{
	__atomic_store_n(&db->space_short, 1, __ATOMIC_RELAXED);
}
/* Records code and a formatted message as the handle's last error and
 * returns code, so callers write `return db_err(db, r, "...")`; a
 * CAIRN_ENOSPC is noted (db_note_full). */
int db_err(struct cairn_db *db, int code, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));
/* Fills out with the environment's message for its last failure, or with
 * cairn_strerror(code) if it has none, for "...: %s" error messages. */
void db_io_detail(struct cairn_db *db, char *out, size_t len, int code);
/* Formats up to 64 bytes of a key for messages (out: 300 bytes is enough),
 * escaping what is not printable. */
void db_fmt_key(char *out, size_t len, struct slice k);

/* compact.c */
int db_bg_start(struct cairn_db *db);
void db_bg_stop(struct cairn_db *db);
/* With mu held: flush imm if one is waiting (inline mode) or wake a thread. */
void db_schedule_work(struct cairn_db *db);
/* With mu held: writes imm as a table and installs it. */
int db_flush_imm(struct cairn_db *db);
/* With mu held: writes mem (recovery) as a level-0 table into edit; err
 * says what failed. */
int db_write_level0(struct cairn_db *db, struct memtable *m, struct version_edit *edit, char *err,
                    size_t errlen);
/* With mu held: runs one compaction to completion and frees it. */
int db_run_compaction(struct cairn_db *db, struct compaction *c, int manual);
/* With mu held: deletes files no live version or pending output needs. */
void db_delete_obsolete(struct cairn_db *db);
/* 1 if number is a table or blob file found at open at or above the
 * manifest's next file number (kept as evidence, db->unclaimed). */
int db_is_unclaimed(const struct cairn_db *db, uint64_t number);
/* With mu held, in inline mode: runs compactions while any is needed. */
int db_compact_inline(struct cairn_db *db);
/* With mu held: records the failure of a flush or compaction. A full disk
 * is transient (outputs are removed, work is retried, writers that need a
 * flush get CAIRN_ENOSPC); anything else sets the failed state. */
void db_bg_failed(struct cairn_db *db, int code, const char *msg);
/* With mu held: sets the failed state (writes refused) with a message. */
void db_set_bg_error(struct cairn_db *db, int code, const char *msg);
uint64_t db_smallest_snapshot(struct cairn_db *db);
int db_pending_add(struct cairn_db *db, uint64_t number);
void db_pending_remove(struct cairn_db *db, uint64_t number);

/* db.c, for db_blob.c */
/* 0 if a write of b (NULL: a stream, which adds data) may start as the
 * space reserve stands, else CAIRN_ENOSPC with the handle's message. */
int db_reserve_check(struct cairn_db *db, const struct cairn_batch *b);
/* Without mu, from a background thread: after a full disk and deletes,
 * frees their space (flush, compaction, blob collection) and writes the
 * reserve again. At most once a second. */
void db_reclaim(struct cairn_db *db);
int db_do_write(struct cairn_db *db, const struct cairn_batch *b, unsigned flags,
                struct db_gc_filter *gc);
/* The newest entry of key at the latest sequence: 0 with *type and the
 * internal value in *ival, CAIRN_ENOTFOUND when absent or deleted. */
int db_lookup_latest(struct cairn_db *db, struct slice key, enum value_type *type,
                     struct buf *ival);

/* db_blob.c */
/* Rewrites b into *out with every put of a value >= blob_threshold moved to
 * the shared blob file (not synced); *out is b itself when nothing moved,
 * else priv, initialised here, which the caller then destroys. */
int db_blob_convert(struct cairn_db *db, const struct cairn_batch *b, struct cairn_batch *priv,
                    const struct cairn_batch **out);
/* Syncs what the shared blob file holds unsynced. Called without mu before
 * every sync of the log: a reference may become durable only after the
 * bytes it points to. A failure is final (the database stops). */
int db_blob_sync_active(struct cairn_db *db);
/* Recovery, before the first replayed reference can become durable: syncs
 * the unsealed blob files, which a process that died may have left with
 * bytes still in the page cache. */
int db_blob_sync_unsealed(struct cairn_db *db, char *err, size_t errlen);
/* Recovery: checks the reference of a replayed TYPE_BLOB entry, enc as the
 * log holds it (the record's header only). *lost is set when its bytes are
 * missing from the torn tail of an unsealed file, as a power loss leaves
 * unsynced bytes. Any other mismatch is damage that reads report: 0 without
 * *lost. Errors: I/O and memory only, with a message in err. */
int db_blob_check_ref(struct cairn_db *db, struct slice key, struct slice enc, int *lost, char *err,
                      size_t errlen);
/* Reads [off, off + len) of the value a TYPE_BLOB internal value refers to;
 * errors name key and file. */
int db_blob_read(struct cairn_db *db, struct slice key, struct slice ival, uint64_t off, void *buf,
                 size_t len, size_t *got);
/* The reference of a TYPE_BLOB internal value (CAIRN_ECORRUPT if bad). */
int db_blob_ref(struct slice ival, struct blob_ref *ref);
/* The write time a reader reports for a TYPE_BLOB internal value. */
int64_t db_blob_time(struct slice ival);
/* Open: seals blob files a crash left unsealed. With mu held. */
int db_blob_recover(struct cairn_db *db, char *err, size_t errlen);
/* Seals the shared blob file (close, checkpoint). Without mu. */
int db_blob_seal_active(struct cairn_db *db);
/* Without mu: seals the shared blob file when compactions have counted a
 * share of it as garbage of at least blob_gc_ratio and at least
 * min_garbage bytes, so that collection can take it: an unsealed file is
 * never collected, and one that never fills would keep its dead values. */
int db_blob_seal_garbage(struct cairn_db *db, uint64_t min_garbage);
/* What a compaction must have found dead in the shared file before the
 * background thread seals it (a smaller file is sealed by the reclaim pass
 * and by cairn_compact_range, which take any garbage at the ratio). */
#define BLOB_SEAL_MIN_GARBAGE (4u << 20)
/* With mu held (it is dropped while working): collects blob files whose
 * garbage share is over blob_gc_ratio; all of them when all is set, else
 * one. Returns 1 if one was collected. */
int db_blob_collect(struct cairn_db *db, int all);
/* With mu held: whether a collection is due. */
int db_blob_gc_due(struct cairn_db *db);
/* The leader's resolution of a DB_COPY write, run without mu: writes b with
 * every copy replaced by a put or a reference into out (initialised here;
 * the caller destroys it). When references were shared the manifest has
 * recorded it and *shared is set: the caller counts blob_copies_done once
 * the write is over. */
int db_blob_resolve_copies(struct cairn_db *db, const struct cairn_batch *b,
                           struct cairn_batch *out, int *shared);
/* The leader's filter of a DB_GC write, run without mu (it reads). */
int db_blob_gc_filter(struct cairn_db *db, struct db_gc_filter *gc,
                      const struct cairn_batch **batch);
/* With mu held: 1 if a *.blob file numbered number must stay. */
int db_blob_keep_file(struct cairn_db *db, uint64_t number);
/* With mu held: unlinks collected files no reader can need any more. */
void db_blob_reap(struct cairn_db *db);
/* Compaction dropped entry (ukey, ival) of type TYPE_BLOB: its record is
 * garbage now. */
int db_blob_note_garbage(struct version_edit *e, struct slice ukey, struct slice ival);
void db_blob_free(struct cairn_db *db);

#endif
