/*
 * tcache.c - the table cache: open tables by file number, at most max_open
 * of them unpinned at once.
 *
 * An open table holds a file descriptor and its index and filter in memory,
 * so the number kept open is bounded by the cache's capacity (charge 1 per
 * table). A lookup that misses opens the file through the env and inserts
 * the table; eviction closes it once no reader holds it. Readers pin a table
 * through its cache handle for as long as they use it: tcache_iter hands the
 * handle to the iterator, which releases it when freed.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

#include "cairn.h"
#include "sstable.h"

struct table_cache {
	struct cairn_env *env;
	char *dbdir;
	struct cache *c;
	struct cache *block_cache;
	struct table_read_stats *stats;
	void (*on_error)(void *ctx, int code, const char *msg);
	void *on_error_ctx;
};

void tcache_set_error_hook(struct table_cache *tc, void (*fn)(void *ctx, int code, const char *msg),
                           void *ctx)
{
	tc->on_error = fn;
	tc->on_error_ctx = ctx;
}

void table_file_name(char *out, size_t len, const char *dbdir, uint64_t number)
{
	fmt_msg(out, len, "%s/%06llu.sst", dbdir, (unsigned long long)number);
}

int tcache_new(struct cairn_env *env, const char *dbdir, int max_open, struct cache *block_cache,
               struct table_read_stats *stats, struct table_cache **tcp)
{
	*tcp = NULL;
	if (max_open < 1)
		return CAIRN_EINVAL;
	struct table_cache *tc = calloc(1, sizeof(*tc));
	if (!tc || (tc->dbdir = strdup(dbdir)) == NULL || cache_new((size_t)max_open, &tc->c)) {
		if (tc)
			free(tc->dbdir);
		free(tc);
		return CAIRN_ENOMEM;
	}
	tc->env = env;
	tc->block_cache = block_cache;
	tc->stats = stats;
	*tcp = tc;
	return 0;
}

void tcache_free(struct table_cache *tc)
{
	if (!tc)
		return;
	cache_free(tc->c); /* closes every table: none may be pinned now */
	free(tc->dbdir);
	free(tc);
}

static void tcache_deleter(struct slice key, void *value)
{
	(void)key;
	table_close(value);
}

int tcache_get(struct table_cache *tc, const struct table_expect *x, struct table **t,
               struct cache_handle **h, char *err, size_t errlen)
{
	char key[8], path[4096];
	struct env_file *f;
	struct table *tab;

	*t = NULL;
	*h = NULL;
	enc_fixed64(key, x->number);
	struct cache_handle *ch = cache_lookup(tc->c, slice_make(key, sizeof(key)));
	if (ch) {
		*t = cache_value(ch);
		*h = ch;
		return 0;
	}
	/* two threads missing at once both open the table; the second insert
	 * replaces the first, which closes when its reader releases it */
	table_file_name(path, sizeof(path), tc->dbdir, x->number);
	int r = env_open_read(tc->env, path, &f);
	if (r) {
		env_errmsg(tc->env, err, errlen);
		return r;
	}
	r = table_open(f, path, x->size, tc->block_cache, &tab, err, errlen);
	if (r)
		return r;
	/* a file that is not the table the manifest names never enters the
	 * cache: every later read is refused the same way */
	r = table_check_expect(tab, x, err, errlen);
	if (r) {
		table_close(tab);
		return r;
	}
	table_set_stats(tab, tc->stats);
	ch = cache_insert(tc->c, slice_make(key, sizeof(key)), tab, 1, tcache_deleter);
	if (!ch) {
		fmt_msg(err, errlen, "table '%s': out of memory", path);
		return CAIRN_ENOMEM;
	}
	*t = tab;
	*h = ch;
	return 0;
}

void tcache_release(struct table_cache *tc, struct cache_handle *h)
{
	cache_release(tc->c, h);
}

static void tcache_unpin(void *a, void *b)
{
	tcache_release(a, b);
}

struct iter *tcache_iter(struct table_cache *tc, const struct table_expect *x)
{
	struct table *t;
	struct cache_handle *h;
	char err[512] = "";
	int r = tcache_get(tc, x, &t, &h, err, sizeof(err));
	if (r && tc->on_error && err[0])
		tc->on_error(tc->on_error_ctx, r, err);
	if (r)
		return iter_empty_new(r);
	struct iter *it = table_iter_new(t);
	if (!it) {
		tcache_release(tc, h);
		return NULL;
	}
	iter_set_cleanup(it, tcache_unpin, tc, h);
	return it;
}

int tcache_table_get(struct table_cache *tc, const struct table_expect *x, struct slice ikey,
                     struct buf *found_key, struct buf *found_val, char *err, size_t errlen)
{
	struct table *t;
	struct cache_handle *h;
	int r = tcache_get(tc, x, &t, &h, err, errlen);
	if (r)
		return r;
	r = table_get(t, ikey, found_key, found_val);
	if (r < 0 && r != CAIRN_ENOMEM)
		table_last_error(t, err, errlen);
	tcache_release(tc, h);
	return r;
}

void tcache_evict(struct table_cache *tc, uint64_t number)
{
	char key[8];
	enc_fixed64(key, number);
	cache_erase(tc->c, slice_make(key, sizeof(key)));
}

void tcache_counters(struct table_cache *tc, uint64_t *hits, uint64_t *misses, uint64_t *open)
{
	cache_counters(tc->c, hits, misses);
	if (open)
		*open = cache_entries(tc->c);
}
