/*
 * bench.h - the small interface between cairn-bench (the harness: workloads,
 * timing, reporting) and one adapter per engine (cli/bench_<engine>.c).
 *
 * An adapter hides how one engine is opened, written, read and scanned. The
 * harness owns everything else, so every engine runs the same keys, values,
 * order of operations and timing code. The handle returned by open() is
 * shared by all threads of a workload; each thread takes its own context
 * with thread_open() (SQLite needs a connection per thread, LMDB a
 * transaction per thread), and every data operation goes through a context.
 *
 * Adapters return 0 (or 1 for "found" where noted) on success and -1 on
 * failure, after printing what failed to standard error.
 */
#ifndef CAIRN_BENCH_H
#define CAIRN_BENCH_H

#include <stddef.h>
#include <stdint.h>

/* Called once per entry of a scan with the entry's key (valid during the
 * call) and the key and value lengths. Returning nonzero stops the scan. */
typedef int (*bench_scan_fn)(void *arg, const void *key, size_t klen, size_t vlen);

struct bench_engine {
	const char *name;
	/* One line saying how the engine is configured, for the reports. */
	const char *settings;

	/* Opens (creating if missing) the database in directory dir, which
	 * exists and belongs to this engine alone. */
	int (*open)(const char *dir, void **dbp);
	void (*close)(void *db);

	/* A per-thread context. sync nonzero: every write is durable before it
	 * returns (one fsync or group commit per write). sync zero: writes are
	 * not synced, and the engines with explicit transactions group 1000
	 * writes per transaction. thread_close commits what is pending. */
	int (*thread_open)(void *db, int sync, void **tp);
	int (*thread_close)(void *t);

	int (*put)(void *t, const void *key, size_t klen, const void *val, size_t vlen);
	/* Deleting a missing key succeeds. */
	int (*del)(void *t, const void *key, size_t klen);
	/* Reads the whole value of key: 1 found (*vlen set), 0 missing, -1. */
	int (*get)(void *t, const void *key, size_t klen, size_t *vlen);
	/* Positions on the first key >= key and reads that entry: 1 found one
	 * (*bytes = its key + value length), 0 at the end, -1. A context may
	 * keep its iterator between calls; writes from other contexts need not
	 * be visible to it. */
	int (*seek)(void *t, const void *key, size_t klen, size_t *bytes);
	/* Walks entries from the first (reverse: the last) key, calling fn for
	 * each, until fn returns nonzero or the end. */
	int (*scan)(void *t, int reverse, bench_scan_fn fn, void *arg);
};

#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

/* A build with -DCAIRN_BENCH_ONLY_<ENGINE> (CAIRN, LEVELDB, ROCKSDB, LMDB,
 * SQLITE) keeps that engine alone (and cairn's small adapter) and links no
 * other engine's library: each library linked in costs every engine's
 * process the pages its loading touches (9 MiB of RSS in all, 6 MiB of it
 * librocksdb's), which would count in that engine's peak RSS.
 * scripts/bench-engine runs ENGINE with cairn-bench-ENGINE when there is
 * one. */
#if defined(CAIRN_BENCH_ONLY_CAIRN) || defined(CAIRN_BENCH_ONLY_LEVELDB) ||                        \
        defined(CAIRN_BENCH_ONLY_ROCKSDB) || defined(CAIRN_BENCH_ONLY_LMDB) ||                     \
        defined(CAIRN_BENCH_ONLY_SQLITE)
#ifndef CAIRN_BENCH_ONLY_LEVELDB
#undef HAVE_LEVELDB
#endif
#ifndef CAIRN_BENCH_ONLY_ROCKSDB
#undef HAVE_ROCKSDB
#endif
#ifndef CAIRN_BENCH_ONLY_LMDB
#undef HAVE_LMDB
#endif
#ifndef CAIRN_BENCH_ONLY_SQLITE
#undef HAVE_SQLITE
#endif
#endif

extern const struct bench_engine bench_cairn;
#ifdef HAVE_LEVELDB
extern const struct bench_engine bench_leveldb;
#endif
#ifdef HAVE_ROCKSDB
extern const struct bench_engine bench_rocksdb;
#endif
#ifdef HAVE_LMDB
extern const struct bench_engine bench_lmdb;
#endif
#ifdef HAVE_SQLITE
extern const struct bench_engine bench_sqlite;
#endif

/* Operations per write transaction for LMDB and SQLite when not syncing. */
#define BENCH_TXN_OPS 1000

/* Block cache budget given to cairn, LevelDB and RocksDB. */
#define BENCH_CACHE_BYTES (8u << 20)

#endif /* CAIRN_BENCH_H */
