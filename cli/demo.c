/*
 * demo.c - cairn-demo: the smallest useful embedding of libcairn, used by the
 * README quick start. It opens (creating) a database, writes a few keys in
 * one atomic batch and one alone, closes it, opens it again, reads the keys
 * back, lists them in order with an iterator, and prints each step.
 *
 * Usage: cairn-demo [DIR]   (default ./demo.db)
 */
#include <stdio.h>
#include <string.h>

#include "cairn.h"

static const char *const keys[] = {"fruit/apple", "fruit/pear", "veg/leek"};
static const char *const vals[] = {"red", "green", "long"};
#define NKEYS 3

static int die(const char *what, int r, struct cairn_db *db)
{
	char msg[256] = "";
	if (db)
		cairn_errmsg(db, msg, sizeof(msg));
	fprintf(stderr, "cairn-demo: %s: %s%s%s\n", what, cairn_strerror(r), msg[0] ? ": " : "",
	        msg);
	cairn_close(db);
	return 1;
}

static int open_db(const char *dir, struct cairn_db **db)
{
	char err[256] = "";
	int r = cairn_open(dir, NULL, db, err, sizeof(err));
	if (r)
		fprintf(stderr, "cairn-demo: cannot open %s: %s: %s\n", dir, cairn_strerror(r),
		        err);
	return r;
}

static int write_keys(struct cairn_db *db)
{
	struct cairn_batch *b = NULL;
	int r = cairn_batch_new(&b);
	for (int i = 0; !r && i < NKEYS; i++)
		r = cairn_batch_put(b, keys[i], strlen(keys[i]), vals[i], strlen(vals[i]));
	if (!r)
		r = cairn_write(db, b, CAIRN_SYNC);
	cairn_batch_free(b);
	if (r)
		return die("batch write", r, db);
	printf("wrote %d keys in one atomic batch (synced)\n", NKEYS);
	r = cairn_put(db, "note", 4, "hello, cairn", 12, 0);
	if (r)
		return die("put", r, db);
	printf("put note = hello, cairn\n");
	return 0;
}

static int read_keys(struct cairn_db *db)
{
	for (int i = 0; i < NKEYS; i++) {
		void *v = NULL;
		size_t n = 0;
		int r = cairn_get(db, NULL, keys[i], strlen(keys[i]), &v, &n);
		if (r)
			return die("get", r, db);
		printf("get %s = %.*s\n", keys[i], (int)n, (const char *)v);
		cairn_free(v);
	}
	struct cairn_iter *it = NULL;
	int r = cairn_iter_new(db, NULL, &it);
	if (r)
		return die("iterator", r, db);
	printf("all keys in order:\n");
	for (cairn_iter_seek_first(it); cairn_iter_valid(it); cairn_iter_next(it)) {
		size_t kl, vl;
		const char *k = cairn_iter_key(it, &kl);
		const char *v = cairn_iter_value(it, &vl);
		printf("  %.*s = %.*s\n", (int)kl, k, (int)vl, v);
	}
	r = cairn_iter_status(it);
	cairn_iter_free(it);
	return r ? die("iteration", r, db) : 0;
}

int main(int argc, char **argv)
{
	const char *dir = argc > 1 ? argv[1] : "demo.db";
	struct cairn_db *db = NULL;
	if (argc > 2 || (argc == 2 && argv[1][0] == '-')) {
		fprintf(stderr, "usage: cairn-demo [DIR]\n");
		return 2;
	}
	printf("libcairn %s, database %s\n", cairn_version(), dir);
	if (open_db(dir, &db))
		return 1;
	if (write_keys(db))
		return 1;
	int r = cairn_close(db);
	if (r)
		return die("close", r, NULL);
	printf("closed; reopening\n");
	if (open_db(dir, &db))
		return 1;
	if (read_keys(db))
		return 1;
	r = cairn_close(db);
	if (r)
		return die("close", r, NULL);
	printf("done\n");
	return 0;
}
