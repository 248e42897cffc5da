/*
 * test_cache.c - the sharded LRU cache: lookups and counters, LRU eviction
 * order, pinned entries, deleter accounting, capacity 0, usage, and use from
 * several threads at once (also run under -fsanitize=thread).
 */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

#include "cache.h"

#define MAX_KEYS 20000

/* Counts deleter calls per integer key; values are the key number too. */
struct counts {
	int deleted[MAX_KEYS];
};

static struct counts *g_counts; /* test-local: set by each test before use */

static struct slice int_key(int k, char buf[16])
{
	int n = snprintf(buf, 16, "key%d", k);
	return slice_make(buf, (size_t)n);
}

static void count_deleter(struct slice key, void *value)
{
	int k = (int)(intptr_t)value;
	char b[16];
	struct slice want = int_key(k, b);
	cr_assert(slice_eq(key, want), "deleter got the wrong key");
	if (g_counts)
		g_counts->deleted[k]++;
}

static struct cache *new_cache(size_t cap)
{
	struct cache *c;
	cr_assert_eq(cache_new(cap, &c), 0);
	return c;
}

static void put(struct cache *c, int k, size_t charge)
{
	char b[16];
	struct cache_handle *h =
	        cache_insert(c, int_key(k, b), (void *)(intptr_t)k, charge, count_deleter);
	cr_assert(h);
	cache_release(c, h);
}

/* Returns the value of k, or -1 on a miss. */
static int get(struct cache *c, int k)
{
	char b[16];
	struct cache_handle *h = cache_lookup(c, int_key(k, b));
	if (!h)
		return -1;
	int v = (int)(intptr_t)cache_value(h);
	cache_release(c, h);
	return v;
}

/* Caches of under 1024 units have a single shard, so any keys share it. */
static void same_shard_keys(int *keys, int n)
{
	for (int i = 0; i < n; i++)
		keys[i] = i;
}

Test(cache, small_capacity_is_an_exact_bound)
{
	struct cache *c = new_cache(8);
	for (int k = 0; k < 100; k++)
		put(c, k, 1);
	cr_assert_eq(cache_entries(c), 8);
	for (int k = 92; k < 100; k++)
		cr_assert_eq(get(c, k), k, "the 8 newest entries must all be there");
	cache_free(c);
}

Test(cache, lookup_returns_value_and_counts_hits_and_misses)
{
	struct counts cnt = {0};
	g_counts = &cnt;
	struct cache *c = new_cache(1000);
	put(c, 1, 1);
	put(c, 2, 1);
	cr_assert_eq(get(c, 1), 1);
	cr_assert_eq(get(c, 2), 2);
	cr_assert_eq(get(c, 3), -1);
	uint64_t hits, misses;
	cache_counters(c, &hits, &misses);
	cr_assert_eq(hits, 2);
	cr_assert_eq(misses, 1);
	cr_assert_eq(cache_entries(c), 2);
	cr_assert_eq(cache_capacity(c), 1000);
	cache_free(c);
	cr_assert_eq(cnt.deleted[1], 1);
	cr_assert_eq(cnt.deleted[2], 1);
	g_counts = NULL;
}

Test(cache, evicts_least_recently_used_first)
{
	struct counts cnt = {0};
	int k[5];
	same_shard_keys(k, 5);
	g_counts = &cnt;
	struct cache *c = new_cache(3);
	put(c, k[0], 1);
	put(c, k[1], 1);
	put(c, k[2], 1);
	/* touch k0 so k1 becomes the oldest */
	cr_assert_eq(get(c, k[0]), k[0]);
	put(c, k[3], 1);
	cr_assert_eq(get(c, k[1]), -1, "the least recently used entry survived");
	cr_assert_eq(cnt.deleted[k[1]], 1);
	cr_assert_eq(get(c, k[0]), k[0]);
	cr_assert_eq(get(c, k[2]), k[2]);
	cr_assert_eq(get(c, k[3]), k[3]);
	/* now k0 is oldest again: k2 and k3 were looked up after it */
	put(c, k[4], 1);
	cr_assert_eq(get(c, k[0]), -1);
	cr_assert_eq(get(c, k[4]), k[4]);
	cache_free(c);
	g_counts = NULL;
}

Test(cache, pinned_entry_survives_erase_and_eviction)
{
	struct counts cnt = {0};
	int k[4];
	same_shard_keys(k, 4);
	g_counts = &cnt;
	struct cache *c = new_cache(2);
	char b[16];
	struct cache_handle *pin =
	        cache_insert(c, int_key(k[0], b), (void *)(intptr_t)k[0], 1, count_deleter);
	cr_assert(pin);
	/* fill the shard many times over: the held entry is never evicted */
	for (int round = 0; round < 3; round++)
		for (int i = 1; i < 4; i++)
			put(c, k[i], 1);
	cr_assert_eq(get(c, k[0]), k[0], "a held entry was evicted");
	cr_assert_eq(cnt.deleted[k[0]], 0);
	cache_erase(c, int_key(k[0], b));
	cr_assert_eq(get(c, k[0]), -1, "an erased entry is still found");
	cr_assert_eq(cnt.deleted[k[0]], 0, "deleter ran while held");
	cr_assert_eq((int)(intptr_t)cache_value(pin), k[0]);
	cache_release(c, pin);
	cr_assert_eq(cnt.deleted[k[0]], 1);
	cache_free(c);
	g_counts = NULL;
}

Test(cache, deleter_runs_exactly_once_per_entry)
{
	struct counts *cnt = calloc(1, sizeof(*cnt));
	g_counts = cnt;
	struct cache *c = new_cache(64);
	uint64_t seed = 7;
	char b[16];
	/* a random mix of inserts, replacements, erases and held handles */
	struct cache_handle *held[8] = {0};
	int nkeys = 500;
	int inserted[500] = {0};
	for (int i = 0; i < 5000; i++) {
		int op = (int)prng_below(&seed, 10);
		int k = (int)prng_below(&seed, (uint64_t)nkeys);
		if (op < 5) {
			/* a replacement makes a second entry for k: give each
			 * insertion its own identity by counting inserts */
			struct cache_handle *h = cache_insert(c, int_key(k, b), (void *)(intptr_t)k,
			                                      1, count_deleter);
			cr_assert(h);
			inserted[k]++;
			int slot = (int)prng_below(&seed, 8);
			if (held[slot])
				cache_release(c, held[slot]);
			held[slot] = h;
		} else if (op < 8) {
			cache_erase(c, int_key(k, b));
		} else {
			cr_assert(get(c, k) == k || get(c, k) == -1);
		}
	}
	for (int i = 0; i < 8; i++)
		cache_release(c, held[i]);
	cache_free(c);
	for (int k = 0; k < nkeys; k++)
		cr_assert_eq(cnt->deleted[k], inserted[k],
		             "key %d: %d deletes for %d inserts (seed 7)", k, cnt->deleted[k],
		             inserted[k]);
	free(cnt);
	g_counts = NULL;
}

Test(cache, capacity_zero_retains_nothing)
{
	struct counts cnt = {0};
	g_counts = &cnt;
	struct cache *c = new_cache(0);
	char b[16];
	struct cache_handle *h = cache_insert(c, int_key(5, b), (void *)5, 10, count_deleter);
	cr_assert(h);
	cr_assert_eq((int)(intptr_t)cache_value(h), 5);
	cr_assert_eq(get(c, 5), -1);
	cr_assert_eq(cache_usage(c), 0);
	cr_assert_eq(cache_entries(c), 0);
	cr_assert_eq(cnt.deleted[5], 0);
	cache_release(c, h);
	cr_assert_eq(cnt.deleted[5], 1);
	cache_free(c);
	cr_assert_eq(cnt.deleted[5], 1);
	g_counts = NULL;
}

Test(cache, usage_is_the_sum_of_charges_in_the_cache)
{
	struct counts cnt = {0};
	g_counts = &cnt;
	struct cache *c = new_cache(1 << 20);
	char b[16];
	put(c, 1, 100);
	put(c, 2, 250);
	cr_assert_eq(cache_usage(c), 350);
	put(c, 1, 40); /* replaces the charge of 100 */
	cr_assert_eq(cache_usage(c), 290);
	cr_assert_eq(cache_entries(c), 2);
	cr_assert_eq(cnt.deleted[1], 1, "the replaced entry was not deleted");
	struct cache_handle *h = cache_lookup(c, int_key(2, b));
	cache_erase(c, int_key(2, b));
	cr_assert_eq(cache_usage(c), 40, "an erased but held entry is still charged");
	cache_release(c, h);
	cr_assert_eq(cache_usage(c), 40);
	cache_erase(c, int_key(1, b));
	cr_assert_eq(cache_usage(c), 0);
	cr_assert_eq(cache_entries(c), 0);
	cache_free(c);
	g_counts = NULL;
}

Test(cache, usage_stays_within_capacity_once_released)
{
	struct counts cnt = {0};
	g_counts = &cnt;
	struct cache *c = new_cache(1600); /* 100 per shard */
	for (int i = 0; i < 2000; i++)
		put(c, i, 7);
	cr_assert_leq(cache_usage(c), 1600);
	/* an entry bigger than its shard is held, then evicted on release */
	char b[16];
	struct cache_handle *h =
	        cache_insert(c, int_key(3000, b), (void *)3000, 500, count_deleter);
	cr_assert_geq(cache_usage(c), 500);
	cache_release(c, h);
	cr_assert_leq(cache_usage(c), 1600);
	cr_assert_eq(cnt.deleted[3000], 1);
	cache_free(c);
	g_counts = NULL;
}

Test(cache, many_entries_stay_findable_as_the_table_grows)
{
	struct cache *c = new_cache(1 << 30);
	for (int i = 0; i < MAX_KEYS; i++)
		put(c, i, 1);
	cr_assert_eq(cache_entries(c), MAX_KEYS);
	cr_assert_eq(cache_usage(c), MAX_KEYS);
	for (int i = 0; i < MAX_KEYS; i++)
		cr_assert_eq(get(c, i), i);
	cache_free(c);
}

Test(cache, new_id_is_unique_and_nonzero)
{
	struct cache *c = new_cache(10);
	uint64_t a = cache_new_id(c), b = cache_new_id(c);
	cr_assert_neq(a, 0);
	cr_assert_neq(a, b);
	cache_free(c);
}

struct thread_arg {
	struct cache *c;
	uint64_t seed;
	int found;
};

static void plain_deleter(struct slice key, void *value)
{
	(void)key;
	free(value);
}

static void *worker(void *p)
{
	struct thread_arg *a = p;
	char b[16];
	for (int i = 0; i < 20000; i++) {
		int k = (int)prng_below(&a->seed, 300);
		struct slice key = int_key(k, b);
		struct cache_handle *h = cache_lookup(a->c, key);
		if (h) {
			/* the value must be intact while held */
			if (*(int *)cache_value(h) == k)
				a->found++;
			else
				a->found = -1000000;
			cache_release(a->c, h);
			if (prng_below(&a->seed, 20) == 0)
				cache_erase(a->c, key);
			continue;
		}
		int *v = malloc(sizeof(*v));
		if (!v)
			continue;
		*v = k;
		h = cache_insert(a->c, key, v, 1, plain_deleter);
		if (h)
			cache_release(a->c, h);
		(void)cache_new_id(a->c);
	}
	return NULL;
}

Test(cache, concurrent_use_from_four_threads)
{
	struct cache *c = new_cache(16 * 8); /* smaller than the key set: evictions */
	pthread_t t[4];
	struct thread_arg args[4];
	for (int i = 0; i < 4; i++) {
		args[i] = (struct thread_arg){c, (uint64_t)i + 1, 0};
		cr_assert_eq(pthread_create(&t[i], NULL, worker, &args[i]), 0);
	}
	for (int i = 0; i < 4; i++)
		pthread_join(t[i], NULL);
	for (int i = 0; i < 4; i++)
		cr_assert_geq(args[i].found, 0, "thread %d saw a wrong value", i);
	cr_assert_leq(cache_usage(c), 16 * 8);
	uint64_t hits, misses;
	cache_counters(c, &hits, &misses);
	cr_assert_eq(hits + misses, 4 * 20000);
	cache_free(c);
}
