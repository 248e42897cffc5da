/*
 * bench_rocksdb.c - the RocksDB adapter of cairn-bench (C API, rocksdb/c.h).
 *
 * Settings: RocksDB defaults (64 MiB write buffer, Snappy, 2 background
 * jobs, leveled compaction) except the block-based table's block cache,
 * an 8 MiB LRU cache, the same budget as cairn's. Sync
 * workloads set WriteOptions.sync on every write.
 */
#include "bench.h"

#ifdef HAVE_ROCKSDB
#include <stdio.h>
#include <stdlib.h>

#include <rocksdb/c.h>

struct brdb {
	rocksdb_t *db;
	rocksdb_options_t *opts;
	rocksdb_cache_t *cache;
	rocksdb_block_based_table_options_t *bbo;
	rocksdb_writeoptions_t *wo[2]; /* [0] no sync, [1] sync */
	rocksdb_readoptions_t *ro;
};

struct brdb_thread {
	struct brdb *b;
	rocksdb_writeoptions_t *wo;
	rocksdb_iterator_t *seek_it;
};

static int brdb_fail(const char *what, char *err)
{
	fprintf(stderr, "cairn-bench: rocksdb: %s: %s\n", what, err ? err : "failed");
	rocksdb_free(err);
	return -1;
}

static void brdb_close(void *db)
{
	struct brdb *b = db;

	if (b->db)
		rocksdb_close(b->db);
	rocksdb_options_destroy(b->opts);
	rocksdb_block_based_options_destroy(b->bbo);
	rocksdb_cache_destroy(b->cache);
	rocksdb_writeoptions_destroy(b->wo[0]);
	rocksdb_writeoptions_destroy(b->wo[1]);
	rocksdb_readoptions_destroy(b->ro);
	free(b);
}

static int brdb_open(const char *dir, void **dbp)
{
	struct brdb *b = calloc(1, sizeof(*b));
	char *err = NULL;

	if (!b)
		return -1;
	b->opts = rocksdb_options_create();
	b->cache = rocksdb_cache_create_lru(BENCH_CACHE_BYTES);
	rocksdb_options_set_create_if_missing(b->opts, 1);
	b->bbo = rocksdb_block_based_options_create();
	rocksdb_block_based_options_set_block_cache(b->bbo, b->cache);
	rocksdb_options_set_block_based_table_factory(b->opts, b->bbo);
	b->wo[0] = rocksdb_writeoptions_create();
	b->wo[1] = rocksdb_writeoptions_create();
	rocksdb_writeoptions_set_sync(b->wo[1], 1);
	b->ro = rocksdb_readoptions_create();
	b->db = rocksdb_open(b->opts, dir, &err);
	if (err) {
		brdb_fail("open", err);
		brdb_close(b);
		return -1;
	}
	*dbp = b;
	return 0;
}

static int brdb_thread_open(void *db, int sync, void **tp)
{
	struct brdb_thread *t = calloc(1, sizeof(*t));

	if (!t)
		return -1;
	t->b = db;
	t->wo = t->b->wo[sync ? 1 : 0];
	*tp = t;
	return 0;
}

static int brdb_thread_close(void *tp)
{
	struct brdb_thread *t = tp;

	if (t->seek_it)
		rocksdb_iter_destroy(t->seek_it);
	free(t);
	return 0;
}

static int brdb_put(void *tp, const void *key, size_t klen, const void *val, size_t vlen)
{
	struct brdb_thread *t = tp;
	char *err = NULL;

	rocksdb_put(t->b->db, t->wo, key, klen, val, vlen, &err);
	return err ? brdb_fail("put", err) : 0;
}

static int brdb_del(void *tp, const void *key, size_t klen)
{
	struct brdb_thread *t = tp;
	char *err = NULL;

	rocksdb_delete(t->b->db, t->wo, key, klen, &err);
	return err ? brdb_fail("delete", err) : 0;
}

static int brdb_get(void *tp, const void *key, size_t klen, size_t *vlen)
{
	struct brdb_thread *t = tp;
	char *err = NULL;
	char *val = rocksdb_get(t->b->db, t->b->ro, key, klen, vlen, &err);

	if (err)
		return brdb_fail("get", err);
	if (!val)
		return 0;
	rocksdb_free(val);
	return 1;
}

static int brdb_iter_end(rocksdb_iterator_t *it, const char *what)
{
	char *err = NULL;

	rocksdb_iter_get_error(it, &err);
	return err ? brdb_fail(what, err) : 0;
}

static int brdb_seek(void *tp, const void *key, size_t klen, size_t *bytes)
{
	struct brdb_thread *t = tp;
	size_t kl, vl;

	if (!t->seek_it)
		t->seek_it = rocksdb_create_iterator(t->b->db, t->b->ro);
	rocksdb_iter_seek(t->seek_it, key, klen);
	if (!rocksdb_iter_valid(t->seek_it))
		return brdb_iter_end(t->seek_it, "seek");
	rocksdb_iter_key(t->seek_it, &kl);
	rocksdb_iter_value(t->seek_it, &vl);
	*bytes = kl + vl;
	return 1;
}

static int brdb_scan(void *tp, int reverse, bench_scan_fn fn, void *arg)
{
	struct brdb_thread *t = tp;
	rocksdb_iterator_t *it = rocksdb_create_iterator(t->b->db, t->b->ro);
	size_t kl, vl;
	int rc;

	if (reverse)
		rocksdb_iter_seek_to_last(it);
	else
		rocksdb_iter_seek_to_first(it);
	while (rocksdb_iter_valid(it)) {
		const char *key = rocksdb_iter_key(it, &kl);

		rocksdb_iter_value(it, &vl);
		if (fn(arg, key, kl, vl))
			break;
		if (reverse)
			rocksdb_iter_prev(it);
		else
			rocksdb_iter_next(it);
	}
	rc = brdb_iter_end(it, "scan");
	rocksdb_iter_destroy(it);
	return rc;
}

const struct bench_engine bench_rocksdb = {
        .name = "rocksdb",
        .settings = "defaults (64 MiB write buffer, Snappy, 2 background jobs) with an 8 MiB "
                    "LRU block cache; WriteOptions.sync per write for fillsync*",
        .open = brdb_open,
        .close = brdb_close,
        .thread_open = brdb_thread_open,
        .thread_close = brdb_thread_close,
        .put = brdb_put,
        .del = brdb_del,
        .get = brdb_get,
        .seek = brdb_seek,
        .scan = brdb_scan,
};
#endif /* HAVE_ROCKSDB */
