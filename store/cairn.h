/*
 * cairn.h - the public interface of libcairn, an embeddable key-value
 * database built as a log-structured merge tree (memtable, write-ahead log,
 * immutable sorted tables, leveled compaction).
 *
 * This header is the manual. Every function says what it does, who owns the
 * memory it touches, which errors it returns and what is safe across threads.
 *
 * Conventions
 * - Every function that can fail returns an int: 0 (CAIRN_OK) on success or a
 *   negative CAIRN_E* code. cairn_strerror() names a code; cairn_errmsg()
 *   gives the detail (file, offset, key) of the last error on a handle.
 * - Keys and values are byte strings passed as (pointer, length). Keys are
 *   ordered bytewise (memcmp, shorter first on a tie).
 * - Keys that begin with the byte 0x00 form the system keyspace. The engine
 *   treats them like any other key; cairnfs stores its metadata there, and
 *   tools hide them unless asked. Applications should not write them.
 * - A struct cairn_db handle is safe to share between threads. Batches,
 *   iterators and snapshot handles belong to one thread at a time.
 * - The library keeps no global mutable state: two handles on two databases
 *   are independent.
 */
#ifndef CAIRN_H
#define CAIRN_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Marks the functions the shared library exports; it is built with
 * -fvisibility=hidden so that internal symbols stay private. */
#ifndef CAIRN_EXPORT
#if defined(__GNUC__)
#define CAIRN_EXPORT __attribute__((visibility("default")))
#else
#define CAIRN_EXPORT
#endif
#endif

#define CAIRN_VERSION_MAJOR  0
#define CAIRN_VERSION_MINOR  1
#define CAIRN_VERSION_PATCH  0
#define CAIRN_VERSION_STRING "0.1.0"

/* Returns the version of the library linked at run time, "MAJOR.MINOR.PATCH". */
CAIRN_EXPORT const char *cairn_version(void);

/* ------------------------------------------------------------------------ */
/* Status codes                                                              */

enum {
	CAIRN_OK = 0,
	CAIRN_ENOTFOUND = -1,  /* the key has no live value */
	CAIRN_EINVAL = -2,     /* a bad argument or option; the message says which */
	CAIRN_ECORRUPT = -3,   /* a checksum or format check failed on disk */
	CAIRN_EIO = -4,        /* the operating system reported an I/O error */
	CAIRN_ENOSPC = -5,     /* the disk is full; nothing was half written */
	CAIRN_ENOMEM = -6,     /* an allocation failed */
	CAIRN_EBUSY = -7,      /* another process holds the database's LOCK */
	CAIRN_EEXIST = -8,     /* create_if_missing=2 and the database exists */
	CAIRN_ENOENT = -9,     /* the database does not exist and may not be created */
	CAIRN_ETOOBIG = -10,   /* a key, value or batch exceeds a documented limit */
	CAIRN_EREADONLY = -11, /* the handle was opened read-only */
	CAIRN_EFAILED = -12,   /* an earlier I/O error stopped writes; reopen */
	CAIRN_ENOTSUP = -13,   /* the operation is not supported here */
	CAIRN_EVERSION = -14,  /* a file was written by an unknown format version */
};

/* Returns a short static description of a status code ("not found"). Never
 * returns NULL; unknown codes give "unknown error". */
CAIRN_EXPORT const char *cairn_strerror(int code);

/* ------------------------------------------------------------------------ */
/* Limits, enforced with CAIRN_ETOOBIG                                       */

/* Bytes in one key: 4096 plus 512, so a key built from a Linux path of
 * PATH_MAX - 1 (4095) bytes, a separator, a 255-byte name and a few bytes
 * of prefix fits (cairnfs's attribute key "\0x" PATH "\0" NAME is the
 * longest, 4353 bytes). Every format stores key lengths as varints or
 * 32-bit fields, so the figure is a check, not a layout; a libcairn built
 * with the earlier limit (4096) reports a longer key in a log, MANIFEST or
 * blob file as corruption (docs/format.md). */
#define CAIRN_MAX_KEY_SIZE   4608u
#define CAIRN_MAX_VALUE_SIZE (64u * 1024 * 1024)  /* bytes in one value put */
#define CAIRN_MAX_BATCH_SIZE (256u * 1024 * 1024) /* encoded bytes in a batch */

/* ------------------------------------------------------------------------ */
/* Options                                                                   */

struct cairn_env; /* environment: file I/O, clock, threads (see env below) */

/* What recovery does when a log record before the end of the log fails its
 * checksum. A torn record at the very end of the newest log is always
 * dropped silently: it was never acknowledged as durable. */
enum cairn_wal_recovery {
	/* Refuse to open: CAIRN_ECORRUPT naming the file and offset. */
	CAIRN_WAL_STRICT = 0,
	/* Keep everything up to the last good record, drop the rest of that log
	 * and of every later log, and open. The dropped byte count is in the
	 * stats (wal_bytes_dropped). */
	CAIRN_WAL_TOLERATE_CORRUPT = 1,
};

/* Options for cairn_open(). Always start from cairn_options_init(), which sets
 * every field to its default, then change what you need. */
struct cairn_options {
	/* 0: fail with CAIRN_ENOENT when the database is missing.
	 * 1 (default): create it when missing. A directory without CURRENT
	 *    that holds database files (CURRENT lost) is refused with
	 *    CAIRN_ECORRUPT, never created over; see `cairn repair`.
	 * 2: create it, and fail with CAIRN_EEXIST when it already exists. */
	int create_if_missing;

	/* Open read-only: writes fail with CAIRN_EREADONLY, nothing on disk
	 * changes, no LOCK is taken for writing. Default 0. */
	int read_only;

	/* Bytes of memtable before it is frozen and flushed to a table.
	 * Default 4 MiB. Larger means fewer, larger level-0 tables and more
	 * memory; the engine holds at most two memtables at once. */
	size_t memtable_size;

	/* Bytes of uncompressed table blocks kept in the block cache.
	 * Default 8 MiB. 0 disables the cache. */
	size_t block_cache_size;

	/* Open table files kept in the table cache. Default 64. Minimum 8. */
	int max_open_tables;

	/* Target uncompressed size of one table block. Default 4096. */
	size_t block_size;

	/* Keys between restart points in a block. Default 16. */
	int block_restart_interval;

	/* Bloom filter bits per key; 10 gives about 1% false positives.
	 * Default 10. 0 writes no filter. */
	int bloom_bits_per_key;

	/* Compress table blocks with LZ4 when that saves at least 1/8 of the
	 * block. Default 1. */
	int compression;

	/* Target size of one table written by compaction. Default 2 MiB. */
	size_t table_target_size;

	/* Target total size of level 1; level n+1 is level_size_ratio times
	 * level n. Defaults 8 MiB and 10. */
	uint64_t level1_target_size;
	int level_size_ratio;

	/* Level-0 table counts: compaction starts at the trigger, writers are
	 * slowed from the slowdown count (a growing delay per write) and stopped
	 * at the stop count until compaction catches up.
	 * Defaults 4, 8 and 12. */
	int l0_compaction_trigger;
	int l0_slowdown_trigger;
	int l0_stop_trigger;

	/* Background threads for flush and compaction. Default 1. 0 runs flushes
	 * and compactions inline inside the write that needs them: single
	 * threaded and deterministic, for simulation. */
	int background_threads;

	/* Milliseconds between background syncs of the log; writes without
	 * CAIRN_SYNC become durable within this interval. Default 1000. 0 turns
	 * periodic sync off (data is synced on flush, close and cairn_sync). */
	int sync_interval_ms;

	/* See enum cairn_wal_recovery. Default CAIRN_WAL_STRICT. */
	int wal_recovery;

	/* Large values. A value of at least blob_threshold bytes is written to
	 * a blob file and the tree keeps a small reference to it, so the value
	 * never passes through the memtable, the log or compaction. Default
	 * 64 KiB; 0 keeps every value in the tree (then values are limited to
	 * CAIRN_MAX_VALUE_SIZE and cairn_stream_* is refused). */
	size_t blob_threshold;
	/* Size at which the blob file shared by cairn_put/cairn_write is sealed
	 * and a new one started. Default 64 MiB; at least 1 MiB. */
	uint64_t blob_file_size;
	/* Share of a sealed blob file's bytes that must be garbage (values
	 * overwritten or deleted and dropped by compaction) before the
	 * background collector rewrites its live values elsewhere and frees it.
	 * Default 0.5; between 0.01 and 1. */
	double blob_gc_ratio;

	/* The environment. NULL (default) uses the POSIX environment. The
	 * environment must outlive the handle. */
	struct cairn_env *env;

	/* Bytes of disk a writable handle keeps in the file RESERVE of the
	 * database directory, as ext4 keeps reserved blocks. When the disk
	 * fills, the reserve is given up so that what frees space still runs:
	 * a batch of deletes, flush, compaction, blob collection and the
	 * manifest writes of open. While it is given up, writes that add data
	 * fail with CAIRN_ENOSPC; it is written again (and such writes taken)
	 * once the disk has room for it. Default 2 MiB; 0 disables it (and
	 * removes RESERVE at open). See docs/design.md, "Full disk". */
	uint64_t space_reserve;

	/* Reserved for future options; cairn_options_init() zeroes it. */
	uint64_t reserved[4];
};

/* Fills *opts with the defaults documented above. */
CAIRN_EXPORT void cairn_options_init(struct cairn_options *opts);

/* ------------------------------------------------------------------------ */
/* Opening and closing                                                       */

struct cairn_db;

/* Opens the database in directory dir, creating it as opts says. opts may be
 * NULL for the defaults. On success *dbp is a new handle; release it with
 * cairn_close(). On failure *dbp is NULL and, when errbuf is not NULL, up to
 * errlen bytes of a NUL-terminated message saying what went wrong (which
 * file, which offset, which process holds the lock) are written to errbuf.
 * Opening replays the write-ahead log, so every write acknowledged before a
 * crash is visible. A new database directory is created with mode 0700.
 * Errors: CAIRN_EINVAL (bad option), CAIRN_ENOENT, CAIRN_EEXIST, CAIRN_EBUSY,
 * CAIRN_ECORRUPT, CAIRN_EVERSION, CAIRN_EIO, CAIRN_ENOSPC, CAIRN_ENOMEM. */
CAIRN_EXPORT int cairn_open(const char *dir, const struct cairn_options *opts,
                            struct cairn_db **dbp, char *errbuf, size_t errlen);

/* Waits for background work, writes and syncs everything still in memory to
 * the log, releases the LOCK and frees the handle. Every iterator and
 * snapshot of the handle must be released first. Returns the first error met
 * while syncing; the handle is freed even then. On a handle that failed
 * earlier, nothing is synced and the result is CAIRN_EFAILED: writes it
 * acknowledged without CAIRN_SYNC may be lost if power fails before the next
 * open has recovered them. NULL is accepted. */
CAIRN_EXPORT int cairn_close(struct cairn_db *db);

/* Copies the message of the last error on this handle (NUL-terminated,
 * truncated to len) into buf and returns the code of that error, or 0 if
 * there was none. In a multi-threaded program, "last" means the last error of
 * any thread on this handle. */
CAIRN_EXPORT int cairn_errmsg(struct cairn_db *db, char *buf, size_t len);

/* ------------------------------------------------------------------------ */
/* Writing                                                                   */

/* Write flags. */
#define CAIRN_SYNC 1u /* return only after the write is synced to the disk */

/* Stores value under key, replacing any earlier value. A value of at least
 * blob_threshold bytes goes to a blob file first (synced before the key can
 * point at it); cairn_put still holds it in memory, so it is limited to
 * CAIRN_MAX_VALUE_SIZE: use cairn_stream_* for larger values. Unless flags has
 * CAIRN_SYNC the write is durable after the next sync (cairn_sync, a synced
 * write, the periodic background sync, or close); a crash before then may lose
 * it, but never leaves it half applied. Concurrent writers share one log write
 * and one sync (group commit). The engine copies key and value.
 * Errors: CAIRN_ETOOBIG, CAIRN_EREADONLY, CAIRN_EFAILED, CAIRN_EIO,
 * CAIRN_ENOSPC. */
CAIRN_EXPORT int cairn_put(struct cairn_db *db, const void *key, size_t klen, const void *val,
                           size_t vlen, unsigned flags);

/* Deletes key. Deleting a missing key succeeds. Errors as cairn_put(). */
CAIRN_EXPORT int cairn_delete(struct cairn_db *db, const void *key, size_t klen, unsigned flags);

/* A write batch: puts and deletes applied atomically, all or none, in order,
 * with consecutive sequence numbers. A batch is owned by its creator and is
 * not thread-safe; it can be reused after cairn_batch_clear(). */
struct cairn_batch;

/* Allocates an empty batch into *bp. Errors: CAIRN_ENOMEM. */
CAIRN_EXPORT int cairn_batch_new(struct cairn_batch **bp);
/* Frees a batch; NULL is accepted. */
CAIRN_EXPORT void cairn_batch_free(struct cairn_batch *b);
/* Empties a batch, keeping its memory for reuse. */
CAIRN_EXPORT void cairn_batch_clear(struct cairn_batch *b);
/* Appends a put / a delete. The batch copies key and value.
 * Errors: CAIRN_ETOOBIG (key, value or batch over its limit), CAIRN_ENOMEM. */
CAIRN_EXPORT int cairn_batch_put(struct cairn_batch *b, const void *key, size_t klen,
                                 const void *val, size_t vlen);
CAIRN_EXPORT int cairn_batch_delete(struct cairn_batch *b, const void *key, size_t klen);
/* Appends a copy: when the batch is applied, to_key takes the value that
 * from_key holds in the state the batch is applied to (entries earlier in
 * the same batch are not seen, so "delete from_key, copy from_key to
 * to_key" is a move, and two crossed copies swap). A value kept in a blob
 * file is not copied: to_key gets a new reference to the same bytes, which
 * stay until no key refers to them, so a copy costs the same whatever the
 * value's size. A smaller value is copied. The record a blob reference
 * points at is checked (present, whole, its header checksum) but the value
 * is not read: damage inside it travels with the reference, as with any
 * copy of the reference. The whole write fails, and nothing of it is
 * applied, when from_key has no value (CAIRN_ENOTFOUND) or its blob record
 * is missing or damaged (CAIRN_ECORRUPT), or on a read error (CAIRN_EIO).
 * A batch with copies is written alone (never grouped with other writers'
 * batches), and each copy costs a point lookup while other writers wait.
 * Errors here: CAIRN_ETOOBIG (a key over its limit, the batch full),
 * CAIRN_ENOMEM. */
CAIRN_EXPORT int cairn_batch_copy(struct cairn_batch *b, const void *from_key, size_t flen,
                                  const void *to_key, size_t tlen);
/* Number of operations in the batch. */
CAIRN_EXPORT uint32_t cairn_batch_count(const struct cairn_batch *b);

/* Applies a batch atomically. flags as cairn_put(). The batch is not
 * changed. An empty batch succeeds and writes nothing. */
CAIRN_EXPORT int cairn_write(struct cairn_db *db, const struct cairn_batch *b, unsigned flags);

/* A stream writes one value of any size with bounded memory: open it for a
 * key, append the value in pieces, then commit (the key points at the whole
 * new value, atomically) or abort (nothing changes). Each stream writes its
 * own blob file, so concurrent streams never interleave; readers see the old
 * value until the commit. A stream belongs to one thread; several streams
 * may be open on one handle at once. Every stream must be committed or
 * aborted before cairn_close(). */
struct cairn_stream;

/* Opens a stream that will replace the value of key. Memory: about 1 MiB
 * of buffer per stream, whatever the value's size. Errors: CAIRN_ETOOBIG
 * (key), CAIRN_ENOTSUP (blob_threshold is 0), CAIRN_EREADONLY,
 * CAIRN_EFAILED, CAIRN_EIO, CAIRN_ENOSPC, CAIRN_ENOMEM. */
CAIRN_EXPORT int cairn_stream_new(struct cairn_db *db, const void *key, size_t klen,
                                  struct cairn_stream **sp);
/* Appends len bytes to the value. Errors: CAIRN_EIO, CAIRN_ENOSPC (the
 * stream is then unusable: abort it). */
CAIRN_EXPORT int cairn_stream_write(struct cairn_stream *s, const void *data, size_t len);
/* Makes the value durable (its blob file is synced and recorded), then
 * points the key at it with a write that takes flags as cairn_put(). The
 * stream is freed whatever the result; on failure the key keeps its old
 * value. Errors: as cairn_put(). */
CAIRN_EXPORT int cairn_stream_commit(struct cairn_stream *s, unsigned flags);
/* Drops the stream and its file; the key keeps its old value. NULL is
 * accepted. */
CAIRN_EXPORT void cairn_stream_abort(struct cairn_stream *s);

/* Syncs the log: every write acknowledged before the call is durable when it
 * returns 0. */
CAIRN_EXPORT int cairn_sync(struct cairn_db *db);

/* ------------------------------------------------------------------------ */
/* Reading                                                                   */

/* A snapshot pins the state of the database at one sequence number: reads
 * through it ignore every later write. Hold snapshots briefly: versions they
 * can see cannot be dropped by compaction. */
struct cairn_snapshot;

/* Takes a snapshot of the current state. Errors: CAIRN_ENOMEM. */
CAIRN_EXPORT int cairn_snapshot_new(struct cairn_db *db, const struct cairn_snapshot **sp);
/* Releases a snapshot taken on db. NULL is accepted. */
CAIRN_EXPORT void cairn_snapshot_release(struct cairn_db *db, const struct cairn_snapshot *s);
/* The sequence number a snapshot reads at. */
CAIRN_EXPORT uint64_t cairn_snapshot_seq(const struct cairn_snapshot *s);

/* Reads the value of key as of snap (NULL: the latest state). On success
 * *valp points to a malloc'd copy of the value, which the caller frees with
 * cairn_free(), and *vlenp is its length. A zero-length value gives a valid
 * non-NULL pointer. Errors: CAIRN_ENOTFOUND, CAIRN_ECORRUPT (a checksum
 * failed, or the blob file of a large value is missing: the message names the
 * key and the file), CAIRN_EIO, CAIRN_ENOMEM, CAIRN_ETOOBIG (key too long,
 * or a value over CAIRN_MAX_VALUE_SIZE: read it with cairn_get_range). */
CAIRN_EXPORT int cairn_get(struct cairn_db *db, const struct cairn_snapshot *snap, const void *key,
                           size_t klen, void **valp, size_t *vlenp);

/* Reads up to len bytes of the value of key, starting at byte offset, into
 * buf, and sets *got to the number of bytes read (0 at or past the end).
 * For a value in a blob file only the 64 KiB chunks holding the range are
 * read and verified, so callers walk a value of any size in pieces. Errors
 * as cairn_get() (never CAIRN_ETOOBIG for the value's size). */
CAIRN_EXPORT int cairn_get_range(struct cairn_db *db, const struct cairn_snapshot *snap,
                                 const void *key, size_t klen, uint64_t offset, void *buf,
                                 size_t len, size_t *got);

/* Frees memory that cairn returned to the caller. NULL is accepted. */
CAIRN_EXPORT void cairn_free(void *p);

/* What is known about a live key without reading its value. */
struct cairn_key_info {
	uint64_t size;    /* length of the value in bytes */
	int64_t mtime_ns; /* when it was written, nanoseconds since the epoch,
	                     from the environment's clock */
	uint64_t seq;     /* sequence number of the write */
};

/* Fills *info for key as of snap (NULL: latest), without reading the value
 * (for a value in a blob file the size comes from its reference). Errors as
 * cairn_get(). */
CAIRN_EXPORT int cairn_key_info(struct cairn_db *db, const struct cairn_snapshot *snap,
                                const void *key, size_t klen, struct cairn_key_info *info);

/* An iterator walks live keys in order, in both directions, over one
 * consistent state: the snapshot it was made with, or the state at its
 * creation when snap is NULL. It belongs to one thread. It pins the memory and
 * files it reads, so release it when done.
 *
 * Errors stick. Once something could not be read (a damaged block, a blob
 * value whose file is damaged or missing, an I/O error, no memory),
 * cairn_iter_status() returns that error until the iterator is freed or
 * positioned again by one of the seek calls (which tries again); a move with
 * cairn_iter_next() or cairn_iter_prev() never clears it and ends the
 * iteration (the iterator turns invalid) rather than step over what could not
 * be read. So every loop must check cairn_iter_status() when it ends, and a
 * loop that reads values should check it (or the NULL from cairn_iter_value)
 * before it uses a value: an invalid iterator alone does not mean "no more
 * keys". */
struct cairn_iter;

/* Creates an iterator; it starts unpositioned (not valid).
 * Errors: CAIRN_ENOMEM, CAIRN_EIO. */
CAIRN_EXPORT int cairn_iter_new(struct cairn_db *db, const struct cairn_snapshot *snap,
                                struct cairn_iter **itp);
/* Frees an iterator; NULL is accepted. */
CAIRN_EXPORT void cairn_iter_free(struct cairn_iter *it);

/* Positioning. seek goes to the first key >= key; seek_for_prev to the last
 * key <= key; first and last to the ends. */
CAIRN_EXPORT void cairn_iter_seek_first(struct cairn_iter *it);
CAIRN_EXPORT void cairn_iter_seek_last(struct cairn_iter *it);
CAIRN_EXPORT void cairn_iter_seek(struct cairn_iter *it, const void *key, size_t klen);
CAIRN_EXPORT void cairn_iter_seek_for_prev(struct cairn_iter *it, const void *key, size_t klen);
/* Moves to the next / previous key. Only valid on a valid iterator. */
CAIRN_EXPORT void cairn_iter_next(struct cairn_iter *it);
CAIRN_EXPORT void cairn_iter_prev(struct cairn_iter *it);

/* Nonzero while the iterator is positioned on a key. When it stops being
 * valid, cairn_iter_status() says whether that was the end or an error. */
CAIRN_EXPORT int cairn_iter_valid(const struct cairn_iter *it);
/* The current key and value. The pointers stay valid until the iterator
 * moves or is freed. Only on a valid iterator. A value kept in a blob file
 * is read when cairn_iter_value is called (use cairn_iter_info for its size
 * and cairn_get_range for pieces of it); if it cannot be read, or is over
 * CAIRN_MAX_VALUE_SIZE, cairn_iter_value returns NULL with *vlen 0 (an empty
 * value is never NULL), cairn_iter_status reports the error, the key stays
 * readable so the caller can name it, and the next move ends the iteration
 * (errors stick, see above). */
CAIRN_EXPORT const void *cairn_iter_key(const struct cairn_iter *it, size_t *klen);
CAIRN_EXPORT const void *cairn_iter_value(const struct cairn_iter *it, size_t *vlen);
/* Size, write time and sequence of the current entry. */
CAIRN_EXPORT void cairn_iter_info(const struct cairn_iter *it, struct cairn_key_info *info);
/* Limits the iterator to user keys in [lower, upper): NULL for either means
 * no bound on that side (a zero-length non-NULL lower is the empty key). A
 * move that would leave the range makes the iterator invalid without
 * stepping over what lies beyond, so a scan of a prefix costs what the
 * prefix holds however many deleted keys follow it; seek_first and seek_last
 * go to the ends of the range. Bounds are copied; the iterator must be
 * positioned again afterwards. Errors: CAIRN_ENOMEM. */
CAIRN_EXPORT int cairn_iter_set_bounds(struct cairn_iter *it, const void *lower, size_t llen,
                                       const void *upper, size_t ulen);
/* 0, or the error that ended the iteration or the value last asked for
 * (CAIRN_ECORRUPT, CAIRN_EIO, CAIRN_ENOMEM, CAIRN_ETOOBIG): it stays until
 * the iterator is freed or sought again. The handle's cairn_errmsg() names
 * the key and file of a value that could not be read. */
CAIRN_EXPORT int cairn_iter_status(const struct cairn_iter *it);

/* ------------------------------------------------------------------------ */
/* Maintenance                                                               */

/* Writes the memtable to a level-0 table and waits for it, so the log can be
 * dropped. Errors: CAIRN_EIO, CAIRN_ENOSPC, CAIRN_EFAILED. */
CAIRN_EXPORT int cairn_flush(struct cairn_db *db);

/* Compacts every table overlapping [begin, end] down to the last level that
 * holds data, dropping overwritten and deleted entries no snapshot needs.
 * begin NULL means from the first key, end NULL to the last. Waits for it.
 * Then seals the shared blob file if at least blob_gc_ratio of it is dead,
 * collects every blob file over the ratio and writes the space reserve
 * again if it was given up (space_reserve). Errors: CAIRN_EIO, CAIRN_ENOSPC,
 * CAIRN_EFAILED, CAIRN_EBUSY (the handle is closing). */
CAIRN_EXPORT int cairn_compact_range(struct cairn_db *db, const void *begin, size_t blen,
                                     const void *end, size_t elen);

/* Creates, in the directory dest (which must not exist), a consistent copy
 * of the database as of now that cairn_open() can open: hard links to the
 * immutable table files where the file system allows, copies otherwise, and a
 * new manifest. Safe while writes go on. Errors: CAIRN_EEXIST, CAIRN_EIO,
 * CAIRN_ENOSPC. */
CAIRN_EXPORT int cairn_checkpoint(struct cairn_db *db, const char *dest);

/* ------------------------------------------------------------------------ */
/* Inspection, for tools such as `cairn check` and `cairn dump`              */

/* Callbacks of cairn_check(): one call per problem found, naming the file
 * (a path), the byte offset (0 when it concerns the whole file) and what is
 * wrong; and progress in bytes read so far out of the total to read. */
struct cairn_check_callbacks {
	void (*problem)(void *ctx, const char *file, uint64_t offset, const char *what);
	void (*progress)(void *ctx, uint64_t done, uint64_t total);
	void *ctx;
};

/* Reads every file of the database in dir without changing anything:
 * CURRENT, the manifest, every log record and every table block, verifying
 * every checksum, the key order in tables and that every file the manifest
 * names exists with its recorded size; files that nothing references are
 * reported as problems too. Works on a database held open by another process
 * (it takes no lock and opens files read-only). *problems (may be NULL)
 * receives the count. Returns 0 when the check could run (look at
 * *problems), or an error when the directory cannot be read at all. */
CAIRN_EXPORT int cairn_check(const char *dir, const struct cairn_check_callbacks *cb,
                             uint64_t *problems);

/* Prints a log, manifest, table or blob file in readable form, one line per call
 * of emit: headers, each record or entry with its offset, keys and values
 * escaped (printable bytes as they are, others as \xNN). The kind of file
 * is told by its name (NNNNNN.log, NNNNNN.sst, NNNNNN.blob, MANIFEST-NNNNNN) or, failing
 * that, by its magic number. Errors: CAIRN_EINVAL (unknown kind),
 * CAIRN_ECORRUPT (printed up to the damage, then the error; errbuf says
 * where), CAIRN_EIO. */
CAIRN_EXPORT int cairn_dump_file(const char *path, void (*emit)(void *ctx, const char *line),
                                 void *ctx, char *errbuf, size_t errlen);

/* ------------------------------------------------------------------------ */
/* Repair                                                                    */

/* What cairn_repair() found and did. Counts of entries are internal entries
 * (every version of a key, tombstones included) as read from the files. */
struct cairn_repair_report {
	uint64_t tables, tables_damaged;         /* table files read / damaged */
	uint64_t logs, logs_damaged;             /* log files read / damaged */
	uint64_t blob_files, blob_files_damaged; /* blob files read / damaged */
	uint64_t entries_read;                   /* entries taken from tables and logs */
	uint64_t log_records;                    /* log records replayed */
	uint64_t bytes_lost;       /* bytes of tables and logs that could not be read */
	uint64_t keys_kept;        /* live keys in the rebuilt database */
	uint64_t blob_refs_broken; /* kept keys whose large value cannot be read */
	uint64_t tables_written;   /* new tables */
	uint64_t files_set_aside;  /* files moved into lost/ */
	uint64_t manifest_number;  /* the new manifest */
	uint64_t last_sequence;
	uint64_t reserved[8];
};

/* One call per thing worth telling: a file read whole, a byte range lost
 * (offset and len, as much as is known; len 0 when unknown), a file moved
 * aside. file is a name in the database directory ("" when the note concerns
 * a key); what is one line of text. */
struct cairn_repair_callbacks {
	void (*note)(void *ctx, const char *file, uint64_t offset, uint64_t len, const char *what);
	void *ctx;
};

/* Rebuilds the database in dir from what its files still hold, for when open
 * refuses it (CURRENT or the manifest missing or damaged, a damaged table,
 * log or blob file). It works like LevelDB's RepairDB: the old manifest is
 * not trusted; every table is read (a damaged one block by block, keeping
 * every block whose checksum holds, found by their checksums when the footer
 * or index is gone), every log record whose checksums hold is replayed (the
 * bytes of damaged ones are skipped and reported), a file is read for what
 * its magic number says it is whatever its name, the newest version of each
 * key found anywhere wins, and the live
 * keys are written as new tables on one level, recorded with the blob files
 * they refer to in a new manifest, which a new CURRENT names. Nothing is
 * deleted: the old CURRENT, manifests, logs and tables and every blob file no
 * key refers to are moved into dir/lost/ (remove it once satisfied). A key
 * whose newest version was in a lost block reads as its newest surviving
 * version (or as absent); a key whose large value cannot be read is kept and
 * reads report the error. opts (NULL: defaults) gives the env and the table
 * options; read_only must be 0. cb (may be NULL) receives notes; *rep (may
 * be NULL) the counts. The database must not be open (the LOCK is taken).
 * Errors: CAIRN_ENOENT (no directory, or no database file in it),
 * CAIRN_EBUSY, CAIRN_EIO, CAIRN_ENOSPC, CAIRN_ENOMEM; errbuf says what. An
 * error leaves every file it had read in dir or in lost/, never deleted, and
 * repair can run again. */
CAIRN_EXPORT int cairn_repair(const char *dir, const struct cairn_options *opts,
                              const struct cairn_repair_callbacks *cb,
                              struct cairn_repair_report *rep, char *errbuf, size_t errlen);

/* ------------------------------------------------------------------------ */
/* Statistics                                                                */

#define CAIRN_MAX_LEVELS 7

struct cairn_level_stats {
	uint64_t files;
	uint64_t bytes;
	uint64_t compactions;   /* compactions that wrote into this level */
	uint64_t bytes_read;    /* by compactions into this level */
	uint64_t bytes_written; /* by flush (level 0) or compaction */
};

/* A snapshot of the engine's counters. Counters only grow while the handle
 * is open; gauges (marked) give the current figure. */
struct cairn_stats {
	uint64_t last_sequence; /* gauge */
	/* operations */
	uint64_t puts, deletes, batches, gets, gets_found, iterators;
	uint64_t user_bytes_written; /* keys + values submitted */
	/* log */
	uint64_t wal_bytes_written, wal_syncs, wal_group_commits, wal_bytes_dropped;
	/* memory (gauges) */
	uint64_t memtable_bytes; /* active + immutable memtable arenas */
	uint64_t memtable_limit;
	uint64_t block_cache_bytes, block_cache_capacity;
	uint64_t open_tables, max_open_tables;
	uint64_t memory_in_use; /* the sum of the above buffers */
	/* caches */
	uint64_t block_cache_hits, block_cache_misses;
	uint64_t table_cache_hits, table_cache_misses;
	/* bloom filters */
	uint64_t bloom_checks, bloom_negatives, bloom_false_positives;
	/* flush and compaction */
	uint64_t flushes, flush_bytes_written;
	uint64_t compactions, compaction_bytes_read, compaction_bytes_written;
	uint64_t pending_compaction_bytes; /* gauge */
	/* stalls */
	uint64_t slowdowns, slowdown_micros, stops, stop_micros;
	/* levels */
	int num_levels;
	struct cairn_level_stats levels[CAIRN_MAX_LEVELS];
	/* space on disk (gauges) */
	uint64_t table_bytes, wal_bytes, total_disk_bytes;
	/* blob files: count and bytes (gauges), garbage collections run and
	 * the bytes of live values they moved (counters) */
	uint64_t blob_files, blob_bytes_live, blob_bytes_garbage;
	uint64_t blob_collections, blob_bytes_moved;
	/* compactions stopped by a damaged input table (counter); the handle's
	 * message (cairn_errmsg) names the table and block; writes stop and
	 * reads go on: `cairn repair` salvages the database */
	uint64_t compactions_damaged;
	/* the space reserve (options.space_reserve): bytes held now (gauge;
	 * 0 while given up), times it was given up and written again
	 * (counters) */
	uint64_t reserve_bytes, reserve_releases, reserve_restores;
	uint64_t reserved[7];
};

/* Fills *st with the current figures. Cheap: takes one short lock. */
CAIRN_EXPORT int cairn_stats_get(struct cairn_db *db, struct cairn_stats *st);

/* Write amplification so far: bytes written to disk (log, flush,
 * compaction) over user bytes written; 0 before the first write. */
CAIRN_EXPORT double cairn_stats_write_amp(const struct cairn_stats *st);

#ifdef __cplusplus
}
#endif
#endif /* CAIRN_H */
