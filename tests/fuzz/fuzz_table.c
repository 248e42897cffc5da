/*
 * fuzz_table.c - a whole table file on arbitrary bytes: open it, walk it
 * forward and backward, look up some of its keys and some that are not
 * there, and verify it. Every step must end in data or a clean error.
 */
#include <string.h>

#include "cache.h"
#include "dbformat.h"
#include "fuzz.h"
#include "sstable.h"

#define MAX_STEPS 100000
#define MAX_KEYS  16

static void ignore_problem(void *ctx, uint64_t off, const char *what)
{
	(void)ctx;
	(void)off;
	(void)what;
}

/* Walks the table both ways; keeps up to MAX_KEYS user keys in keys. */
static void walk(struct table *t, struct buf *keys, int *nkeys)
{
	struct iter *it = table_iter_new(t);
	if (!it)
		return;
	int steps = 0;
	for (iter_seek_first(it); iter_valid(it) && steps < MAX_STEPS; iter_next(it), steps++) {
		struct slice k = iter_key(it), v = iter_value(it);
		volatile char sink = 0;
		if (k.len)
			sink ^= k.data[k.len - 1];
		if (v.len)
			sink ^= v.data[v.len - 1];
		(void)sink;
		if (*nkeys < MAX_KEYS && ikey_valid(k)) {
			buf_put_lenprefixed(keys, ikey_user(k).data, ikey_user(k).len);
			(*nkeys)++;
		}
	}
	steps = 0;
	for (iter_seek_last(it); iter_valid(it) && steps < MAX_STEPS; iter_prev(it), steps++)
		(void)iter_key(it);
	(void)iter_status(it);
	iter_free(it);
}

static void lookup(struct table *t, struct slice ukey)
{
	struct buf ik = {0}, fk = {0}, fv = {0};
	if (ikey_append(&ik, ukey, MAX_SEQUENCE, TYPE_SEEK) == 0)
		table_get(t, buf_slice(&ik), &fk, &fv);
	buf_free(&ik);
	buf_free(&fk);
	buf_free(&fv);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct cairn_env *env = fuzz_env();
	struct cache *bc = NULL;
	struct env_file *f;
	struct table *t;
	char err[256];

	if (!env)
		return 0;
	if (env_sim_write_file(env, "/db/000005.sst", data, size) == 0 &&
	    cache_new(16u << 10, &bc) == 0 && env_open_read(env, "/db/000005.sst", &f) == 0 &&
	    table_open(f, "/db/000005.sst", size, bc, &t, err, sizeof(err)) == 0) {
		struct buf keys = {0};
		int nkeys = 0;
		walk(t, &keys, &nkeys);
		struct slice in = buf_slice(&keys), k;
		while (slice_get_lenprefixed(&in, &k) == 0)
			lookup(t, k);
		lookup(t, slice_make("", 0));
		lookup(t, slice_make("zzzz-not-there", 14));
		table_verify(t, ignore_problem, NULL);
		table_last_error(t, err, sizeof(err));
		(void)table_properties(t);
		buf_free(&keys);
		table_close(t);
	}
	cache_free(bc);
	env_sim_free(env);
	return 0;
}
