/*
 * bench_sqlite.c - the SQLite adapter of cairn-bench.
 *
 * Settings: one file (db.sqlite) in WAL mode holding the table
 * kv(k BLOB PRIMARY KEY, v BLOB) WITHOUT ROWID, so the key is the B-tree key
 * as in the other engines; default page cache and auto-checkpoint. Each
 * thread has its own connection (SQLite connections are not shared) with
 * prepared statements and a 60 s busy timeout. Without sync:
 * synchronous=OFF and 1000 writes per BEGIN IMMEDIATE ... COMMIT. Sync
 * workloads: synchronous=FULL and one autocommit statement per write, so
 * every write syncs the WAL; concurrent writers queue on the write lock.
 */
#include "bench.h"

#ifdef HAVE_SQLITE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sqlite3.h>

struct bsql {
	char path[4096];
	sqlite3 *main; /* held open so the WAL outlives the thread connections */
};

enum { BSQL_PUT, BSQL_DEL, BSQL_GET, BSQL_SEEK, BSQL_FWD, BSQL_REV, BSQL_NSTMT };

static const char *const bsql_sql[BSQL_NSTMT] = {
        "INSERT OR REPLACE INTO kv(k, v) VALUES (?1, ?2)",
        "DELETE FROM kv WHERE k = ?1",
        "SELECT v FROM kv WHERE k = ?1",
        "SELECT k, v FROM kv WHERE k >= ?1 ORDER BY k LIMIT 1",
        "SELECT k, v FROM kv ORDER BY k",
        "SELECT k, v FROM kv ORDER BY k DESC",
};

struct bsql_thread {
	sqlite3 *conn;
	int sync;
	int in_txn; /* writes in the open transaction, 0 when none is open */
	sqlite3_stmt *stmt[BSQL_NSTMT];
};

static int bsql_fail(sqlite3 *conn, const char *what)
{
	fprintf(stderr, "cairn-bench: sqlite: %s: %s\n", what,
	        conn ? sqlite3_errmsg(conn) : "out of memory");
	return -1;
}

static int bsql_exec(sqlite3 *conn, const char *sql)
{
	return sqlite3_exec(conn, sql, NULL, NULL, NULL) ? bsql_fail(conn, sql) : 0;
}

static int bsql_connect(const char *path, sqlite3 **connp)
{
	int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX;

	if (sqlite3_open_v2(path, connp, flags, NULL)) {
		bsql_fail(*connp, "open");
		sqlite3_close(*connp);
		return -1;
	}
	sqlite3_busy_timeout(*connp, 60000);
	return 0;
}

static void bsql_close(void *db)
{
	struct bsql *b = db;

	sqlite3_close(b->main);
	free(b);
}

static int bsql_open(const char *dir, void **dbp)
{
	struct bsql *b = calloc(1, sizeof(*b));

	if (!b)
		return -1;
	snprintf(b->path, sizeof(b->path), "%s/db.sqlite", dir);
	if (bsql_connect(b->path, &b->main)) {
		free(b);
		return -1;
	}
	if (bsql_exec(b->main, "PRAGMA journal_mode=WAL") ||
	    bsql_exec(b->main, "CREATE TABLE IF NOT EXISTS kv(k BLOB PRIMARY KEY, v BLOB) "
	                       "WITHOUT ROWID")) {
		bsql_close(b);
		return -1;
	}
	*dbp = b;
	return 0;
}

static int bsql_thread_close(void *tp)
{
	struct bsql_thread *t = tp;
	int rc = 0;

	if (t->in_txn)
		rc = bsql_exec(t->conn, "COMMIT");
	for (int i = 0; i < BSQL_NSTMT; i++)
		sqlite3_finalize(t->stmt[i]);
	sqlite3_close(t->conn);
	free(t);
	return rc;
}

static int bsql_thread_open(void *db, int sync, void **tp)
{
	struct bsql *b = db;
	struct bsql_thread *t = calloc(1, sizeof(*t));

	if (!t)
		return -1;
	t->sync = sync;
	if (bsql_connect(b->path, &t->conn)) {
		free(t);
		return -1;
	}
	if (bsql_exec(t->conn, sync ? "PRAGMA synchronous=FULL" : "PRAGMA synchronous=OFF"))
		goto fail;
	for (int i = 0; i < BSQL_NSTMT; i++) {
		if (sqlite3_prepare_v2(t->conn, bsql_sql[i], -1, &t->stmt[i], NULL)) {
			bsql_fail(t->conn, bsql_sql[i]);
			goto fail;
		}
	}
	*tp = t;
	return 0;
fail:
	bsql_thread_close(t);
	return -1;
}

/* Runs a write statement whose parameters are bound, inside the grouped
 * transaction unless syncing. */
static int bsql_write(struct bsql_thread *t, sqlite3_stmt *st, const char *what)
{
	int rc;

	if (!t->sync && !t->in_txn && bsql_exec(t->conn, "BEGIN IMMEDIATE"))
		return -1;
	rc = sqlite3_step(st);
	sqlite3_reset(st);
	if (rc != SQLITE_DONE)
		return bsql_fail(t->conn, what);
	if (t->sync)
		return 0;
	if (++t->in_txn < BENCH_TXN_OPS)
		return 0;
	t->in_txn = 0;
	return bsql_exec(t->conn, "COMMIT");
}

static int bsql_put(void *tp, const void *key, size_t klen, const void *val, size_t vlen)
{
	struct bsql_thread *t = tp;
	sqlite3_stmt *st = t->stmt[BSQL_PUT];

	sqlite3_bind_blob64(st, 1, key, klen, SQLITE_STATIC);
	sqlite3_bind_blob64(st, 2, val, vlen, SQLITE_STATIC);
	return bsql_write(t, st, "put");
}

static int bsql_del(void *tp, const void *key, size_t klen)
{
	struct bsql_thread *t = tp;
	sqlite3_stmt *st = t->stmt[BSQL_DEL];

	sqlite3_bind_blob64(st, 1, key, klen, SQLITE_STATIC);
	return bsql_write(t, st, "delete");
}

/* Steps a bound query expected to give at most one row; reads every column
 * of it and returns 1 with the total column bytes, 0 for no row, -1. */
static int bsql_one_row(struct bsql_thread *t, sqlite3_stmt *st, size_t *bytes, const char *what)
{
	int rc = sqlite3_step(st);

	*bytes = 0;
	if (rc == SQLITE_ROW) {
		for (int i = 0; i < sqlite3_column_count(st); i++) {
			sqlite3_column_blob(st, i);
			*bytes += (size_t)sqlite3_column_bytes(st, i);
		}
	}
	sqlite3_reset(st);
	if (rc == SQLITE_ROW)
		return 1;
	return rc == SQLITE_DONE ? 0 : bsql_fail(t->conn, what);
}

static int bsql_get(void *tp, const void *key, size_t klen, size_t *vlen)
{
	struct bsql_thread *t = tp;
	sqlite3_stmt *st = t->stmt[BSQL_GET];

	sqlite3_bind_blob64(st, 1, key, klen, SQLITE_STATIC);
	return bsql_one_row(t, st, vlen, "get");
}

static int bsql_seek(void *tp, const void *key, size_t klen, size_t *bytes)
{
	struct bsql_thread *t = tp;
	sqlite3_stmt *st = t->stmt[BSQL_SEEK];

	sqlite3_bind_blob64(st, 1, key, klen, SQLITE_STATIC);
	return bsql_one_row(t, st, bytes, "seek");
}

static int bsql_scan(void *tp, int reverse, bench_scan_fn fn, void *arg)
{
	struct bsql_thread *t = tp;
	sqlite3_stmt *st = t->stmt[reverse ? BSQL_REV : BSQL_FWD];
	int rc;

	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		const void *key = sqlite3_column_blob(st, 0);
		size_t klen = (size_t)sqlite3_column_bytes(st, 0);

		sqlite3_column_blob(st, 1);
		if (fn(arg, key, klen, (size_t)sqlite3_column_bytes(st, 1)))
			break;
	}
	sqlite3_reset(st);
	if (rc != SQLITE_ROW && rc != SQLITE_DONE)
		return bsql_fail(t->conn, "scan");
	return 0;
}

const struct bench_engine bench_sqlite = {
        .name = "sqlite",
        .settings = "WAL, table kv(k BLOB PRIMARY KEY, v BLOB) WITHOUT ROWID, connection per "
                    "thread, synchronous=OFF + 1000 writes per txn; fillsync*: synchronous=FULL, "
                    "one autocommit per write",
        .open = bsql_open,
        .close = bsql_close,
        .thread_open = bsql_thread_open,
        .thread_close = bsql_thread_close,
        .put = bsql_put,
        .del = bsql_del,
        .get = bsql_get,
        .seek = bsql_seek,
        .scan = bsql_scan,
};
#endif /* HAVE_SQLITE */
