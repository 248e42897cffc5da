/*
 * bench_lmdb.c - the LMDB adapter of cairn-bench.
 *
 * Settings: a 4 GiB map, MDB_NOSYNC | MDB_NOTLS, one unnamed database.
 * Without sync, writes are grouped 1000 per write transaction (a commit per
 * write would measure LMDB's commit, not its B+tree); the data reaches disk
 * when the OS writes the map back. Sync workloads commit each write in its
 * own transaction and then call mdb_env_sync(force), which is what a commit
 * without MDB_NOSYNC does. LMDB has one writer at a time, so concurrent
 * writers queue on its write lock (no group commit). Reads and scans use
 * read-only transactions (MDB_NOTLS lets any thread hold one) and read
 * values in place, without a copy.
 */
#include "bench.h"

#ifdef HAVE_LMDB
#include <stdio.h>
#include <stdlib.h>

#include <lmdb.h>

struct blmdb {
	MDB_env *env;
	MDB_dbi dbi;
};

struct blmdb_thread {
	struct blmdb *b;
	int sync;
	MDB_txn *wtxn; /* open write transaction, or NULL */
	int wcount;    /* writes in wtxn */
	MDB_txn *rtxn; /* reset read transaction for get(), renewed per call */
	MDB_txn *stxn; /* read transaction and cursor kept by seek() */
	MDB_cursor *scur;
};

static int blmdb_fail(const char *what, int rc)
{
	fprintf(stderr, "cairn-bench: lmdb: %s: %s\n", what, mdb_strerror(rc));
	return -1;
}

static void blmdb_close(void *db)
{
	struct blmdb *b = db;

	mdb_env_close(b->env);
	free(b);
}

static int blmdb_open(const char *dir, void **dbp)
{
	struct blmdb *b = calloc(1, sizeof(*b));
	MDB_txn *txn;
	int rc;

	if (!b)
		return -1;
	rc = mdb_env_create(&b->env);
	if (rc) {
		free(b);
		return blmdb_fail("env_create", rc);
	}
	rc = mdb_env_set_mapsize(b->env, (size_t)4 << 30);
	if (!rc)
		rc = mdb_env_set_maxreaders(b->env, 512);
	if (!rc)
		rc = mdb_env_open(b->env, dir, MDB_NOSYNC | MDB_NOTLS, 0644);
	if (!rc)
		rc = mdb_txn_begin(b->env, NULL, 0, &txn);
	if (!rc) {
		rc = mdb_dbi_open(txn, NULL, 0, &b->dbi);
		if (rc)
			mdb_txn_abort(txn);
		else
			rc = mdb_txn_commit(txn);
	}
	if (rc) {
		blmdb_close(b);
		return blmdb_fail("open", rc);
	}
	*dbp = b;
	return 0;
}

static int blmdb_thread_open(void *db, int sync, void **tp)
{
	struct blmdb_thread *t = calloc(1, sizeof(*t));

	if (!t)
		return -1;
	t->b = db;
	t->sync = sync;
	*tp = t;
	return 0;
}

static int blmdb_commit(struct blmdb_thread *t)
{
	int rc;

	if (!t->wtxn)
		return 0;
	rc = mdb_txn_commit(t->wtxn);
	t->wtxn = NULL;
	t->wcount = 0;
	if (!rc && t->sync)
		rc = mdb_env_sync(t->b->env, 1);
	return rc ? blmdb_fail("commit", rc) : 0;
}

static int blmdb_thread_close(void *tp)
{
	struct blmdb_thread *t = tp;
	int rc = blmdb_commit(t);

	if (t->scur)
		mdb_cursor_close(t->scur);
	if (t->stxn)
		mdb_txn_abort(t->stxn);
	if (t->rtxn)
		mdb_txn_abort(t->rtxn);
	free(t);
	return rc;
}

/* Opens the write transaction if needed; after a write, commits it when the
 * write must be synced or the group is full. */
static int blmdb_wbegin(struct blmdb_thread *t)
{
	int rc;

	if (t->wtxn)
		return 0;
	rc = mdb_txn_begin(t->b->env, NULL, 0, &t->wtxn);
	return rc ? blmdb_fail("txn_begin", rc) : 0;
}

static int blmdb_wend(struct blmdb_thread *t)
{
	if (t->sync || ++t->wcount >= BENCH_TXN_OPS)
		return blmdb_commit(t);
	return 0;
}

static int blmdb_put(void *tp, const void *key, size_t klen, const void *val, size_t vlen)
{
	struct blmdb_thread *t = tp;
	MDB_val k = {klen, (void *)key}, v = {vlen, (void *)val};
	int rc;

	if (blmdb_wbegin(t))
		return -1;
	rc = mdb_put(t->wtxn, t->b->dbi, &k, &v, 0);
	if (rc)
		return blmdb_fail("put", rc);
	return blmdb_wend(t);
}

static int blmdb_del(void *tp, const void *key, size_t klen)
{
	struct blmdb_thread *t = tp;
	MDB_val k = {klen, (void *)key};
	int rc;

	if (blmdb_wbegin(t))
		return -1;
	rc = mdb_del(t->wtxn, t->b->dbi, &k, NULL);
	if (rc && rc != MDB_NOTFOUND)
		return blmdb_fail("delete", rc);
	return blmdb_wend(t);
}

static int blmdb_get(void *tp, const void *key, size_t klen, size_t *vlen)
{
	struct blmdb_thread *t = tp;
	MDB_val k = {klen, (void *)key}, v;
	MDB_txn *txn = t->wtxn;
	int rc;

	if (!txn) {
		if (t->rtxn)
			rc = mdb_txn_renew(t->rtxn);
		else
			rc = mdb_txn_begin(t->b->env, NULL, MDB_RDONLY, &t->rtxn);
		if (rc)
			return blmdb_fail("read txn", rc);
		txn = t->rtxn;
	}
	rc = mdb_get(txn, t->b->dbi, &k, &v);
	if (txn == t->rtxn)
		mdb_txn_reset(t->rtxn);
	if (rc == MDB_NOTFOUND)
		return 0;
	if (rc)
		return blmdb_fail("get", rc);
	*vlen = v.mv_size;
	return 1;
}

static int blmdb_cursor(struct blmdb *b, MDB_txn **txn, MDB_cursor **cur)
{
	int rc = mdb_txn_begin(b->env, NULL, MDB_RDONLY, txn);

	if (rc)
		return blmdb_fail("read txn", rc);
	rc = mdb_cursor_open(*txn, b->dbi, cur);
	if (rc) {
		mdb_txn_abort(*txn);
		*txn = NULL;
		return blmdb_fail("cursor_open", rc);
	}
	return 0;
}

static int blmdb_seek(void *tp, const void *key, size_t klen, size_t *bytes)
{
	struct blmdb_thread *t = tp;
	MDB_val k = {klen, (void *)key}, v;
	int rc;

	if (!t->scur && blmdb_cursor(t->b, &t->stxn, &t->scur))
		return -1;
	rc = mdb_cursor_get(t->scur, &k, &v, MDB_SET_RANGE);
	if (rc == MDB_NOTFOUND)
		return 0;
	if (rc)
		return blmdb_fail("seek", rc);
	*bytes = k.mv_size + v.mv_size;
	return 1;
}

static int blmdb_scan(void *tp, int reverse, bench_scan_fn fn, void *arg)
{
	struct blmdb_thread *t = tp;
	MDB_txn *txn;
	MDB_cursor *cur;
	MDB_val k, v;
	int rc;

	if (blmdb_cursor(t->b, &txn, &cur))
		return -1;
	rc = mdb_cursor_get(cur, &k, &v, reverse ? MDB_LAST : MDB_FIRST);
	while (!rc) {
		if (fn(arg, k.mv_data, k.mv_size, v.mv_size))
			break;
		rc = mdb_cursor_get(cur, &k, &v, reverse ? MDB_PREV : MDB_NEXT);
	}
	mdb_cursor_close(cur);
	mdb_txn_abort(txn);
	if (rc && rc != MDB_NOTFOUND)
		return blmdb_fail("scan", rc);
	return 0;
}

const struct bench_engine bench_lmdb = {
        .name = "lmdb",
        .settings = "4 GiB map, MDB_NOSYNC|MDB_NOTLS, 1000 writes per write txn; fillsync*: one "
                    "txn per write + mdb_env_sync(force); reads in place (no copy)",
        .open = blmdb_open,
        .close = blmdb_close,
        .thread_open = blmdb_thread_open,
        .thread_close = blmdb_thread_close,
        .put = blmdb_put,
        .del = blmdb_del,
        .get = blmdb_get,
        .seek = blmdb_seek,
        .scan = blmdb_scan,
};
#endif /* HAVE_LMDB */
