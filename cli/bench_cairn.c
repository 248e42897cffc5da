/*
 * bench_cairn.c - the cairn adapter of cairn-bench.
 *
 * Settings: cairn_options_init() defaults (8 MiB block cache, 4 MiB
 * memtable, LZ4, one background thread, log synced every second), nothing
 * changed. Sync workloads pass CAIRN_SYNC on every write; concurrent writers
 * share one log sync (group commit). Only the public API (cairn.h) is used.
 */
#include <stdio.h>
#include <stdlib.h>

#include "cairn.h"
#include "bench.h"

struct bcairn_thread {
	struct cairn_db *db;
	unsigned flags;
	struct cairn_iter *seek_it; /* kept between seek() calls */
};

static int bcairn_fail(struct cairn_db *db, const char *what, int rc)
{
	char msg[256] = "";

	if (db)
		cairn_errmsg(db, msg, sizeof(msg));
	fprintf(stderr, "cairn-bench: cairn: %s: %s%s%s\n", what, cairn_strerror(rc),
	        msg[0] ? ": " : "", msg);
	return -1;
}

static int bcairn_open(const char *dir, void **dbp)
{
	struct cairn_options opts;
	struct cairn_db *db;
	char err[256];
	int rc;

	cairn_options_init(&opts);
	opts.block_cache_size = BENCH_CACHE_BYTES;
	rc = cairn_open(dir, &opts, &db, err, sizeof(err));
	if (rc) {
		fprintf(stderr, "cairn-bench: cairn: open %s: %s\n", dir, err);
		return -1;
	}
	*dbp = db;
	return 0;
}

static void bcairn_close(void *db)
{
	int rc = cairn_close(db);

	if (rc)
		bcairn_fail(NULL, "close", rc);
}

static int bcairn_thread_open(void *db, int sync, void **tp)
{
	struct bcairn_thread *t = calloc(1, sizeof(*t));

	if (!t)
		return -1;
	t->db = db;
	t->flags = sync ? CAIRN_SYNC : 0;
	*tp = t;
	return 0;
}

static int bcairn_thread_close(void *tp)
{
	struct bcairn_thread *t = tp;

	cairn_iter_free(t->seek_it);
	free(t);
	return 0;
}

static int bcairn_put(void *tp, const void *key, size_t klen, const void *val, size_t vlen)
{
	struct bcairn_thread *t = tp;
	int rc = cairn_put(t->db, key, klen, val, vlen, t->flags);

	return rc ? bcairn_fail(t->db, "put", rc) : 0;
}

static int bcairn_del(void *tp, const void *key, size_t klen)
{
	struct bcairn_thread *t = tp;
	int rc = cairn_delete(t->db, key, klen, t->flags);

	return rc ? bcairn_fail(t->db, "delete", rc) : 0;
}

static int bcairn_get(void *tp, const void *key, size_t klen, size_t *vlen)
{
	struct bcairn_thread *t = tp;
	void *val;
	int rc = cairn_get(t->db, NULL, key, klen, &val, vlen);

	if (rc == CAIRN_ENOTFOUND)
		return 0;
	if (rc)
		return bcairn_fail(t->db, "get", rc);
	cairn_free(val);
	return 1;
}

static int bcairn_seek(void *tp, const void *key, size_t klen, size_t *bytes)
{
	struct bcairn_thread *t = tp;
	size_t kl, vl;
	int rc;

	if (!t->seek_it) {
		rc = cairn_iter_new(t->db, NULL, &t->seek_it);
		if (rc)
			return bcairn_fail(t->db, "iter_new", rc);
	}
	cairn_iter_seek(t->seek_it, key, klen);
	if (!cairn_iter_valid(t->seek_it)) {
		rc = cairn_iter_status(t->seek_it);
		return rc ? bcairn_fail(t->db, "seek", rc) : 0;
	}
	cairn_iter_key(t->seek_it, &kl);
	cairn_iter_value(t->seek_it, &vl);
	*bytes = kl + vl;
	return 1;
}

static int bcairn_scan(void *tp, int reverse, bench_scan_fn fn, void *arg)
{
	struct bcairn_thread *t = tp;
	struct cairn_iter *it;
	size_t kl, vl;
	int rc;

	rc = cairn_iter_new(t->db, NULL, &it);
	if (rc)
		return bcairn_fail(t->db, "iter_new", rc);
	if (reverse)
		cairn_iter_seek_last(it);
	else
		cairn_iter_seek_first(it);
	while (cairn_iter_valid(it)) {
		const void *key = cairn_iter_key(it, &kl);

		cairn_iter_value(it, &vl);
		if (fn(arg, key, kl, vl))
			break;
		if (reverse)
			cairn_iter_prev(it);
		else
			cairn_iter_next(it);
	}
	rc = cairn_iter_status(it);
	cairn_iter_free(it);
	return rc ? bcairn_fail(t->db, "scan", rc) : 0;
}

const struct bench_engine bench_cairn = {
        .name = "cairn",
        .settings = "cairn_options_init() defaults: 8 MiB block cache, 4 MiB memtable, LZ4, "
                    "1 background thread, log synced every 1000 ms; CAIRN_SYNC per write for "
                    "fillsync*",
        .open = bcairn_open,
        .close = bcairn_close,
        .thread_open = bcairn_thread_open,
        .thread_close = bcairn_thread_close,
        .put = bcairn_put,
        .del = bcairn_del,
        .get = bcairn_get,
        .seek = bcairn_seek,
        .scan = bcairn_scan,
};
