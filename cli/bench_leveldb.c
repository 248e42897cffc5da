/*
 * bench_leveldb.c - the LevelDB adapter of cairn-bench (C API, leveldb/c.h).
 *
 * Settings: LevelDB defaults (4 MiB write buffer, Snappy, 1000 open files,
 * one background compaction thread) except an 8 MiB LRU block cache, the
 * same budget as cairn (LevelDB's own default is also 8 MiB). Sync
 * workloads set WriteOptions.sync on every write.
 */
#include "bench.h"

#ifdef HAVE_LEVELDB
#include <stdio.h>
#include <stdlib.h>

#include <leveldb/c.h>

struct bldb {
	leveldb_t *db;
	leveldb_options_t *opts;
	leveldb_cache_t *cache;
	leveldb_writeoptions_t *wo[2]; /* [0] no sync, [1] sync */
	leveldb_readoptions_t *ro;
};

struct bldb_thread {
	struct bldb *b;
	leveldb_writeoptions_t *wo;
	leveldb_iterator_t *seek_it;
};

static int bldb_fail(const char *what, char *err)
{
	fprintf(stderr, "cairn-bench: leveldb: %s: %s\n", what, err ? err : "failed");
	leveldb_free(err);
	return -1;
}

static void bldb_close(void *db)
{
	struct bldb *b = db;

	if (b->db)
		leveldb_close(b->db);
	leveldb_options_destroy(b->opts);
	leveldb_cache_destroy(b->cache);
	leveldb_writeoptions_destroy(b->wo[0]);
	leveldb_writeoptions_destroy(b->wo[1]);
	leveldb_readoptions_destroy(b->ro);
	free(b);
}

static int bldb_open(const char *dir, void **dbp)
{
	struct bldb *b = calloc(1, sizeof(*b));
	char *err = NULL;

	if (!b)
		return -1;
	b->opts = leveldb_options_create();
	b->cache = leveldb_cache_create_lru(BENCH_CACHE_BYTES);
	leveldb_options_set_create_if_missing(b->opts, 1);
	leveldb_options_set_cache(b->opts, b->cache);
	b->wo[0] = leveldb_writeoptions_create();
	b->wo[1] = leveldb_writeoptions_create();
	leveldb_writeoptions_set_sync(b->wo[1], 1);
	b->ro = leveldb_readoptions_create();
	b->db = leveldb_open(b->opts, dir, &err);
	if (err) {
		bldb_fail("open", err);
		bldb_close(b);
		return -1;
	}
	*dbp = b;
	return 0;
}

static int bldb_thread_open(void *db, int sync, void **tp)
{
	struct bldb_thread *t = calloc(1, sizeof(*t));

	if (!t)
		return -1;
	t->b = db;
	t->wo = t->b->wo[sync ? 1 : 0];
	*tp = t;
	return 0;
}

static int bldb_thread_close(void *tp)
{
	struct bldb_thread *t = tp;

	if (t->seek_it)
		leveldb_iter_destroy(t->seek_it);
	free(t);
	return 0;
}

static int bldb_put(void *tp, const void *key, size_t klen, const void *val, size_t vlen)
{
	struct bldb_thread *t = tp;
	char *err = NULL;

	leveldb_put(t->b->db, t->wo, key, klen, val, vlen, &err);
	return err ? bldb_fail("put", err) : 0;
}

static int bldb_del(void *tp, const void *key, size_t klen)
{
	struct bldb_thread *t = tp;
	char *err = NULL;

	leveldb_delete(t->b->db, t->wo, key, klen, &err);
	return err ? bldb_fail("delete", err) : 0;
}

static int bldb_get(void *tp, const void *key, size_t klen, size_t *vlen)
{
	struct bldb_thread *t = tp;
	char *err = NULL;
	char *val = leveldb_get(t->b->db, t->b->ro, key, klen, vlen, &err);

	if (err)
		return bldb_fail("get", err);
	if (!val)
		return 0;
	leveldb_free(val);
	return 1;
}

static int bldb_iter_end(leveldb_iterator_t *it, const char *what)
{
	char *err = NULL;

	leveldb_iter_get_error(it, &err);
	return err ? bldb_fail(what, err) : 0;
}

static int bldb_seek(void *tp, const void *key, size_t klen, size_t *bytes)
{
	struct bldb_thread *t = tp;
	size_t kl, vl;

	if (!t->seek_it)
		t->seek_it = leveldb_create_iterator(t->b->db, t->b->ro);
	leveldb_iter_seek(t->seek_it, key, klen);
	if (!leveldb_iter_valid(t->seek_it))
		return bldb_iter_end(t->seek_it, "seek");
	leveldb_iter_key(t->seek_it, &kl);
	leveldb_iter_value(t->seek_it, &vl);
	*bytes = kl + vl;
	return 1;
}

static int bldb_scan(void *tp, int reverse, bench_scan_fn fn, void *arg)
{
	struct bldb_thread *t = tp;
	leveldb_iterator_t *it = leveldb_create_iterator(t->b->db, t->b->ro);
	size_t kl, vl;
	int rc;

	if (reverse)
		leveldb_iter_seek_to_last(it);
	else
		leveldb_iter_seek_to_first(it);
	while (leveldb_iter_valid(it)) {
		const char *key = leveldb_iter_key(it, &kl);

		leveldb_iter_value(it, &vl);
		if (fn(arg, key, kl, vl))
			break;
		if (reverse)
			leveldb_iter_prev(it);
		else
			leveldb_iter_next(it);
	}
	rc = bldb_iter_end(it, "scan");
	leveldb_iter_destroy(it);
	return rc;
}

const struct bench_engine bench_leveldb = {
        .name = "leveldb",
        .settings = "defaults (4 MiB write buffer, Snappy, 1000 open files) with an 8 MiB LRU "
                    "block cache; WriteOptions.sync per write for fillsync*",
        .open = bldb_open,
        .close = bldb_close,
        .thread_open = bldb_thread_open,
        .thread_close = bldb_thread_close,
        .put = bldb_put,
        .del = bldb_del,
        .get = bldb_get,
        .seek = bldb_seek,
        .scan = bldb_scan,
};
#endif /* HAVE_LEVELDB */
