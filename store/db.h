/*
 * db.h - the database handle, shared by db.c (open, recovery, the write and
 * read paths, snapshots, stats) and compact.c (flush, compaction, background
 * threads, removal of obsolete files). Nothing outside store/ sees it.
 *
 * Locking: db->mu guards the memtable pointers, the writer queue, the version
 * set, the snapshot list and the background state. It is never held while a
 * memtable is searched or filled, while a table is built or while the log is
 * written and synced, except in single-threaded mode (background_threads = 0)
 * where flushes and compactions run inline under it at fixed points.
 */
#ifndef CAIRN_DB_H
#define CAIRN_DB_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include "batch.h"
#include "cache.h"
#include "cairn.h"
#include "env.h"
#include "memtable.h"
#include "sstable.h"
#include "version.h"
#include "wal.h"

/* A writer waiting in the group-commit queue. */
struct db_writer {
	const struct cairn_batch *batch; /* NULL: a sync request */
	unsigned flags;
	int done;
	int status;
	pthread_cond_t cv;
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
};

struct cairn_db {
	char *dir;
	struct cairn_options opts;
	struct cairn_env *env;
	struct env_lock *lock;

	pthread_mutex_t mu;
	pthread_cond_t bg_cv;   /* background work finished or state changed */
	pthread_cond_t work_cv; /* work for the background threads */

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
	char bg_errmsg[256];
	uint64_t *pending_outputs; /* table numbers being written */
	size_t npending, cap_pending;

	/* the last error on the handle */
	pthread_mutex_t err_mu;
	int last_err;
	char errmsg[512];

	struct db_counters st;
};

/* Records code and a formatted message as the handle's last error and
 * returns code, so callers write `return db_err(db, r, "...")`. */
int db_err(struct cairn_db *db, int code, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));

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
/* With mu held, in inline mode: runs compactions while any is needed. */
int db_compact_inline(struct cairn_db *db);
/* With mu held: sets the failed state (writes refused) with a message. */
void db_set_bg_error(struct cairn_db *db, int code, const char *msg);
uint64_t db_smallest_snapshot(struct cairn_db *db);
int db_pending_add(struct cairn_db *db, uint64_t number);
void db_pending_remove(struct cairn_db *db, uint64_t number);

#endif
