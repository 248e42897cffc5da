/*
 * test_memtable.c - the memtable: versions and snapshots, odd keys, order
 * against a sorted reference in both directions, memory accounting, large
 * values, lock-free readers during inserts, and deterministic shape.
 */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cairn.h"
#include "memtable.h"

#define S(str) slice_make((str), sizeof(str) - 1)

static struct memtable *new_mem(void)
{
	struct memtable *m;
	cr_assert_eq(mem_new(&m), 0);
	cr_assert_not_null(m);
	return m;
}

static void add(struct memtable *m, uint64_t seq, enum value_type t, struct slice k, int64_t time,
                struct slice v)
{
	cr_assert_eq(mem_add(m, seq, t, k, time, v), 0, "mem_add seq %llu",
	             (unsigned long long)seq);
}

static void expect_found(struct memtable *m, struct slice k, uint64_t snap, struct slice want,
                         uint64_t want_seq, int64_t want_time)
{
	struct slice iv = {0};
	uint64_t fs = 0;
	cr_assert_eq(mem_get(m, k, snap, &iv, &fs), MEM_FOUND, "snap %llu",
	             (unsigned long long)snap);
	cr_assert(ival_valid(iv));
	cr_assert(slice_eq(ival_value(iv), want), "snap %llu", (unsigned long long)snap);
	cr_assert_eq(fs, want_seq);
	cr_assert_eq(ival_time(iv), want_time);
}

Test(memtable, get_sees_version_visible_at_snapshot)
{
	struct memtable *m = new_mem();
	add(m, 1, TYPE_VALUE, S("a"), 100, S("v1"));
	add(m, 2, TYPE_VALUE, S("b"), 200, S("b2"));
	add(m, 3, TYPE_VALUE, S("a"), 300, S("v3"));
	add(m, 5, TYPE_DELETION, S("a"), 500, S(""));
	cr_assert_eq(mem_entries(m), 4);

	struct slice iv;
	uint64_t fs;
	cr_assert_eq(mem_get(m, S("a"), 0, &iv, &fs), MEM_ABSENT);
	expect_found(m, S("a"), 1, S("v1"), 1, 100);
	expect_found(m, S("a"), 2, S("v1"), 1, 100);
	expect_found(m, S("a"), 3, S("v3"), 3, 300);
	expect_found(m, S("a"), 4, S("v3"), 3, 300);
	fs = 0;
	cr_assert_eq(mem_get(m, S("a"), 5, &iv, &fs), MEM_DELETED);
	cr_assert_eq(fs, 5);
	cr_assert_eq(mem_get(m, S("a"), MAX_SEQUENCE, &iv, NULL), MEM_DELETED);
	cr_assert_eq(mem_get(m, S("a"), UINT64_MAX, &iv, NULL), MEM_DELETED);

	cr_assert_eq(mem_get(m, S("b"), 1, &iv, NULL), MEM_ABSENT);
	expect_found(m, S("b"), 2, S("b2"), 2, 200);
	/* absent keys before, between and after the present ones */
	cr_assert_eq(mem_get(m, S(""), 10, &iv, NULL), MEM_ABSENT);
	cr_assert_eq(mem_get(m, S("aa"), 10, &iv, NULL), MEM_ABSENT);
	cr_assert_eq(mem_get(m, S("c"), 10, &iv, NULL), MEM_ABSENT);
	mem_unref(m);
}

Test(memtable, empty_and_binary_keys_are_distinct_and_ordered)
{
	static const struct {
		const char *k;
		size_t len;
	} keys[] = {
	        {"", 0},    {"\0", 1},   {"\0\0", 2},  {"\0\1", 2}, {"a", 1},
	        {"a\0", 2}, {"a\0b", 3}, {"a\xff", 2}, {"\xff", 1}, {"\xff\0", 2},
	};
	int n = (int)(sizeof(keys) / sizeof(keys[0]));
	struct memtable *m = new_mem();
	/* insert in reverse so order comes from the list, not from insertion */
	for (int i = n - 1; i >= 0; i--) {
		char v[16];
		snprintf(v, sizeof(v), "val%d", i);
		add(m, (uint64_t)(10 + i), TYPE_VALUE, slice_make(keys[i].k, keys[i].len), i,
		    slice_make(v, strlen(v)));
	}
	for (int i = 0; i < n; i++) {
		char v[16];
		snprintf(v, sizeof(v), "val%d", i);
		expect_found(m, slice_make(keys[i].k, keys[i].len), 100, slice_make(v, strlen(v)),
		             (uint64_t)(10 + i), i);
	}
	cr_assert_eq(mem_get(m, slice_make("\0\0\0", 3), 100, NULL, NULL), MEM_ABSENT);
	cr_assert_eq(mem_get(m, slice_make("a\0c", 3), 100, NULL, NULL), MEM_ABSENT);

	struct iter *it = mem_iter_new(m);
	cr_assert_not_null(it);
	int i = 0;
	for (iter_seek_first(it); iter_valid(it); iter_next(it), i++) {
		cr_assert_lt(i, n);
		struct slice k = iter_key(it);
		cr_assert(slice_eq(ikey_user(k), slice_make(keys[i].k, keys[i].len)), "pos %d", i);
	}
	cr_assert_eq(i, n);
	cr_assert_eq(iter_status(it), 0);
	iter_free(it);
	mem_unref(m);
}

/* ---- against a sorted reference ------------------------------------------ */

struct rec {
	char ik[32];
	size_t iklen;
	char iv[32];
	size_t ivlen;
};

static int rec_cmp(const void *a, const void *b)
{
	const struct rec *x = a, *y = b;
	return ikey_cmp(slice_make(x->ik, x->iklen), slice_make(y->ik, y->iklen));
}

static struct slice rec_key(const struct rec *r)
{
	return slice_make(r->ik, r->iklen);
}
static struct slice rec_val(const struct rec *r)
{
	return slice_make(r->iv, r->ivlen);
}

/* index of the first record >= target */
static size_t lower_bound(const struct rec *r, size_t n, struct slice target)
{
	size_t lo = 0, hi = n;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (ikey_cmp(rec_key(&r[mid]), target) < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

/* Short keys over a small alphabet with 0x00 and 0xff, so that prefixes,
 * binary bytes and many versions of one key all occur. */
static size_t random_ukey(uint64_t *rng, char *k)
{
	static const char alpha[] = {0x00, 0x01, 'a', 'b', (char)0xff};
	size_t len = (size_t)prng_below(rng, 9);
	for (size_t i = 0; i < len; i++)
		k[i] = alpha[prng_below(rng, sizeof(alpha))];
	return len;
}

static void check_pos(struct iter *it, const struct rec *ref, size_t n, size_t idx, uint64_t seed)
{
	if (idx >= n) {
		cr_assert(!iter_valid(it), "seed %llu idx %zu", (unsigned long long)seed, idx);
		return;
	}
	cr_assert(iter_valid(it), "seed %llu idx %zu", (unsigned long long)seed, idx);
	cr_assert(slice_eq(iter_key(it), rec_key(&ref[idx])), "seed %llu idx %zu",
	          (unsigned long long)seed, idx);
	cr_assert(slice_eq(iter_value(it), rec_val(&ref[idx])), "seed %llu idx %zu",
	          (unsigned long long)seed, idx);
}

Test(memtable, random_inserts_match_sorted_reference)
{
	const size_t n = 100000;
	const uint64_t seed = 20240611;
	uint64_t rng = seed;
	struct rec *ref = calloc(n, sizeof(*ref));
	cr_assert_not_null(ref);
	struct memtable *m = new_mem();

	for (size_t i = 0; i < n; i++) {
		struct rec *r = &ref[i];
		/* sequence numbers unique but not in insertion order */
		uint64_t seq = 1 + (i * 7919) % n;
		enum value_type t = prng_below(&rng, 5) == 0 ? TYPE_DELETION : TYPE_VALUE;
		size_t ul = random_ukey(&rng, r->ik);
		enc_fixed64(r->ik + ul, ikey_pack(seq, t));
		r->iklen = ul + IKEY_TRAILER;
		size_t vl = t == TYPE_VALUE ? (size_t)prng_below(&rng, 17) : 0;
		enc_fixed64(r->iv, i);
		for (size_t j = 0; j < vl; j++)
			r->iv[IVAL_HEADER + j] = (char)prng_next(&rng);
		r->ivlen = IVAL_HEADER + vl;
		add(m, seq, t, slice_make(r->ik, ul), (int64_t)i, ival_value(rec_val(r)));
	}
	cr_assert_eq(mem_entries(m), n);
	qsort(ref, n, sizeof(*ref), rec_cmp);

	struct iter *it = mem_iter_new(m);
	cr_assert_not_null(it);
	size_t i = 0;
	for (iter_seek_first(it); i < n; iter_next(it), i++)
		check_pos(it, ref, n, i, seed);
	check_pos(it, ref, n, n, seed);

	iter_seek_last(it);
	for (i = n; i > 0; i--, iter_prev(it))
		check_pos(it, ref, n, i - 1, seed);
	cr_assert(!iter_valid(it));

	for (int s = 0; s < 4000; s++) {
		char t[32];
		size_t tl;
		if (s % 2) {
			const struct rec *r = &ref[prng_below(&rng, n)];
			memcpy(t, r->ik, r->iklen);
			tl = r->iklen;
		} else {
			tl = random_ukey(&rng, t);
			enc_fixed64(t + tl, ikey_pack(prng_below(&rng, n + 2), TYPE_SEEK));
			tl += IKEY_TRAILER;
		}
		size_t idx = lower_bound(ref, n, slice_make(t, tl));
		iter_seek(it, slice_make(t, tl));
		check_pos(it, ref, n, idx, seed);
		if (idx == n)
			continue;
		iter_next(it);
		check_pos(it, ref, n, idx + 1, seed);
		iter_seek(it, slice_make(t, tl));
		iter_prev(it);
		if (idx == 0)
			cr_assert(!iter_valid(it));
		else
			check_pos(it, ref, n, idx - 1, seed);
	}
	iter_free(it);

	/* point lookups at random snapshots agree with the reference */
	for (int s = 0; s < 4000; s++) {
		char k[16];
		size_t kl = random_ukey(&rng, k);
		uint64_t snap = prng_below(&rng, n + 2);
		char t[32];
		memcpy(t, k, kl);
		enc_fixed64(t + kl, ikey_pack(snap, TYPE_SEEK));
		size_t idx = lower_bound(ref, n, slice_make(t, kl + IKEY_TRAILER));
		struct slice iv;
		uint64_t fs;
		enum mem_get_result got = mem_get(m, slice_make(k, kl), snap, &iv, &fs);
		if (idx == n || !slice_eq(ikey_user(rec_key(&ref[idx])), slice_make(k, kl))) {
			cr_assert_eq(got, MEM_ABSENT, "seed %llu", (unsigned long long)seed);
			continue;
		}
		const struct rec *r = &ref[idx];
		cr_assert_eq(fs, ikey_seq(rec_key(r)), "seed %llu", (unsigned long long)seed);
		if (ikey_type(rec_key(r)) == TYPE_DELETION) {
			cr_assert_eq(got, MEM_DELETED, "seed %llu", (unsigned long long)seed);
		} else {
			cr_assert_eq(got, MEM_FOUND, "seed %llu", (unsigned long long)seed);
			cr_assert(slice_eq(iv, rec_val(r)), "seed %llu", (unsigned long long)seed);
		}
	}
	mem_unref(m);
	free(ref);
}

/* ---- memory -------------------------------------------------------------- */

Test(memtable, usage_grows_with_inserts_and_counts_every_byte)
{
	struct memtable *m = new_mem();
	size_t u0 = mem_usage(m), prev = u0, payload = 0;
	cr_assert_gt(u0, 0);
	cr_assert_eq(mem_entries(m), 0);
	char k[32], v[100];
	memset(v, 'x', sizeof(v));
	for (int i = 0; i < 5000; i++) {
		int kl = snprintf(k, sizeof(k), "key%06d", i);
		add(m, (uint64_t)i + 1, TYPE_VALUE, slice_make(k, (size_t)kl), i,
		    slice_make(v, sizeof(v)));
		payload += (size_t)kl + IKEY_TRAILER + IVAL_HEADER + sizeof(v);
		size_t u = mem_usage(m);
		cr_assert_geq(u, prev);
		prev = u;
	}
	cr_assert_eq(mem_entries(m), 5000);
	cr_assert_geq(mem_usage(m) - u0, payload - 64 * 1024);
	cr_assert_geq(mem_usage(m), payload);
	/* nodes are small next to the data: under 2x the payload */
	cr_assert_lt(mem_usage(m), 2 * payload);
	mem_unref(m);
}

Test(memtable, large_values_round_trip)
{
	const size_t big = 1024 * 1024;
	char *v = malloc(big);
	cr_assert_not_null(v);
	for (size_t i = 0; i < big; i++)
		v[i] = (char)(i * 131 + (i >> 10));
	struct memtable *m = new_mem();
	size_t u0 = mem_usage(m);
	add(m, 1, TYPE_VALUE, S("big1"), 1, slice_make(v, big));
	add(m, 2, TYPE_VALUE, S("small"), 2, S("s"));
	add(m, 3, TYPE_VALUE, S("big2"), 3, slice_make(v + 1, big - 1));
	cr_assert_geq(mem_usage(m) - u0, 2 * big);
	/* large values get blocks of their own: little is wasted */
	cr_assert_lt(mem_usage(m) - u0, 2 * big + 64 * 1024);

	expect_found(m, S("big1"), 10, slice_make(v, big), 1, 1);
	expect_found(m, S("big2"), 10, slice_make(v + 1, big - 1), 3, 3);
	expect_found(m, S("small"), 10, S("s"), 2, 2);
	mem_unref(m);
	free(v);
}

Test(memtable, iterator_keeps_table_alive_after_unref)
{
	struct memtable *m = new_mem();
	add(m, 1, TYPE_VALUE, S("k"), 7, S("v"));
	struct iter *it = mem_iter_new(m);
	cr_assert_not_null(it);
	mem_unref(m); /* the iterator's ref keeps the arena */
	iter_seek_first(it);
	cr_assert(iter_valid(it));
	cr_assert(slice_eq(ikey_user(iter_key(it)), S("k")));
	cr_assert(slice_eq(ival_value(iter_value(it)), S("v")));
	iter_free(it); /* frees the table: ASan/valgrind see no leak */
}

Test(memtable, empty_table_iterates_nothing)
{
	struct memtable *m = new_mem();
	struct iter *it = mem_iter_new(m);
	iter_seek_first(it);
	cr_assert(!iter_valid(it));
	iter_seek_last(it);
	cr_assert(!iter_valid(it));
	iter_seek(it, S("anything"));
	cr_assert(!iter_valid(it));
	cr_assert_eq(iter_key(it).len, 0);
	cr_assert_eq(iter_status(it), 0);
	iter_free(it);
	mem_unref(m);
}

Test(memtable, seek_accepts_short_target_as_user_key)
{
	struct memtable *m = new_mem();
	add(m, 1, TYPE_VALUE, S("ab"), 0, S("1"));
	add(m, 2, TYPE_VALUE, S("abc"), 0, S("2"));
	add(m, 3, TYPE_VALUE, S("abc"), 0, S("3"));
	struct iter *it = mem_iter_new(m);
	iter_seek(it, S("abc"));
	cr_assert(iter_valid(it));
	cr_assert(slice_eq(ikey_user(iter_key(it)), S("abc")));
	cr_assert_eq(ikey_seq(iter_key(it)), 3);
	iter_seek(it, S(""));
	cr_assert(slice_eq(ikey_user(iter_key(it)), S("ab")));
	iter_free(it);
	mem_unref(m);
}

Test(memtable, rejects_bad_input_without_change)
{
	struct memtable *m = new_mem();
	size_t u0 = mem_usage(m);
	static char longkey[CAIRN_MAX_KEY_SIZE + 1];
	cr_assert_eq(mem_add(m, 1, (enum value_type)7, S("k"), 0, S("")), CAIRN_EINVAL);
	cr_assert_eq(mem_add(m, MAX_SEQUENCE + 1, TYPE_VALUE, S("k"), 0, S("")), CAIRN_EINVAL);
	cr_assert_eq(mem_add(m, 1, TYPE_VALUE, slice_make(longkey, sizeof(longkey)), 0, S("")),
	             CAIRN_ETOOBIG);
	cr_assert_eq(mem_entries(m), 0);
	cr_assert_eq(mem_usage(m), u0);
	cr_assert_eq(mem_get(m, slice_make(longkey, sizeof(longkey)), 1, NULL, NULL), MEM_ABSENT);
	/* the longest allowed key works */
	add(m, MAX_SEQUENCE, TYPE_VALUE, slice_make(longkey, CAIRN_MAX_KEY_SIZE), 0, S("x"));
	expect_found(m, slice_make(longkey, CAIRN_MAX_KEY_SIZE), MAX_SEQUENCE, S("x"), MAX_SEQUENCE,
	             0);
	mem_unref(m);
}

/* ---- determinism --------------------------------------------------------- */

static struct memtable *fill_shuffled(uint64_t seed, int n)
{
	struct memtable *m = new_mem();
	uint64_t rng = seed;
	for (int i = 0; i < n; i++) {
		char k[16], v[32];
		int kl = snprintf(k, sizeof(k), "%08llx", (unsigned long long)prng_next(&rng));
		size_t vl = (size_t)prng_below(&rng, sizeof(v));
		memset(v, 'a' + i % 26, vl);
		add(m, (uint64_t)i + 1, TYPE_VALUE, slice_make(k, (size_t)kl), i,
		    slice_make(v, vl));
	}
	return m;
}

Test(memtable, same_inserts_give_same_iteration_and_usage)
{
	const uint64_t seed = 99;
	struct memtable *a = fill_shuffled(seed, 20000), *b = fill_shuffled(seed, 20000);
	cr_assert_eq(mem_usage(a), mem_usage(b), "seed %llu", (unsigned long long)seed);
	cr_assert_eq(mem_entries(a), mem_entries(b));
	struct iter *ia = mem_iter_new(a), *ib = mem_iter_new(b);
	iter_seek_first(ia);
	iter_seek_first(ib);
	for (; iter_valid(ia); iter_next(ia), iter_next(ib)) {
		cr_assert(iter_valid(ib));
		cr_assert(slice_eq(iter_key(ia), iter_key(ib)));
		cr_assert(slice_eq(iter_value(ia), iter_value(ib)));
	}
	cr_assert(!iter_valid(ib));
	iter_free(ia);
	iter_free(ib);
	mem_unref(a);
	mem_unref(b);
}

/* ---- concurrency --------------------------------------------------------- */

#define CONC_N 200000

struct conc {
	struct memtable *m;
	atomic_uint_fast64_t published; /* entries the writer has finished */
	atomic_int done;
	atomic_long errors;
	char first_error[160];
	atomic_flag error_taken;
	long passes[2];
};

/* key i is "k" + hex of a bijection of i, so inserts land all over the list;
 * its value is "v" + the same hex, and its time is its sequence */
static size_t conc_key(uint64_t i, char *k)
{
	return (size_t)snprintf(k, 16, "k%08x", (unsigned)(i * 2654435761u));
}

static void conc_fail(struct conc *c, const char *what)
{
	atomic_fetch_add(&c->errors, 1);
	if (!atomic_flag_test_and_set(&c->error_taken))
		snprintf(c->first_error, sizeof(c->first_error), "%s", what);
}

static void *conc_writer(void *arg)
{
	struct conc *c = arg;
	for (uint64_t i = 0; i < CONC_N; i++) {
		char k[16], v[16];
		size_t kl = conc_key(i, k);
		memcpy(v, k, kl);
		v[0] = 'v';
		if (mem_add(c->m, i + 1, TYPE_VALUE, slice_make(k, kl), (int64_t)i + 1,
		            slice_make(v, kl))) {
			conc_fail(c, "mem_add failed");
			break;
		}
		atomic_store_explicit(&c->published, i + 1, memory_order_release);
	}
	atomic_store(&c->done, 1);
	return NULL;
}

static int conc_entry_ok(struct slice ik, struct slice iv)
{
	struct slice uk = ikey_user(ik), v = ival_value(iv);
	return ival_valid(iv) && (uint64_t)ival_time(iv) == ikey_seq(ik) && v.len == uk.len &&
	       v.data[0] == 'v' && memcmp(v.data + 1, uk.data + 1, uk.len - 1) == 0;
}

static void conc_scan(struct conc *c, struct iter *it)
{
	uint64_t before = atomic_load_explicit(&c->published, memory_order_acquire);
	uint64_t count = 0;
	struct slice prev = {0};
	for (iter_seek_first(it); iter_valid(it); iter_next(it), count++) {
		struct slice k = iter_key(it);
		if (count && ikey_cmp(prev, k) >= 0)
			conc_fail(c, "iteration out of order");
		if (!conc_entry_ok(k, iter_value(it)))
			conc_fail(c, "entry with a wrong value");
		prev = k;
	}
	if (count < before)
		conc_fail(c, "scan missed published entries");
}

static void conc_lookup(struct conc *c, uint64_t *rng)
{
	uint64_t pub = atomic_load_explicit(&c->published, memory_order_acquire);
	if (!pub)
		return;
	uint64_t i = prng_below(rng, pub);
	char k[16];
	size_t kl = conc_key(i, k);
	struct slice iv;
	uint64_t fs;
	if (mem_get(c->m, slice_make(k, kl), MAX_SEQUENCE, &iv, &fs) != MEM_FOUND) {
		conc_fail(c, "published key not found");
		return;
	}
	char ik[24];
	memcpy(ik, k, kl);
	enc_fixed64(ik + kl, ikey_pack(fs, TYPE_VALUE));
	if (fs != i + 1 || !conc_entry_ok(slice_make(ik, kl + IKEY_TRAILER), iv))
		conc_fail(c, "published key has a wrong value");
}

struct conc_reader {
	struct conc *c;
	int id;
};

static void *conc_reader_run(void *arg)
{
	struct conc_reader *r = arg;
	struct conc *c = r->c;
	uint64_t rng = (uint64_t)r->id + 1;
	struct iter *it = mem_iter_new(c->m);
	if (!it) {
		conc_fail(c, "mem_iter_new failed");
		return NULL;
	}
	long passes = 0;
	for (;;) {
		int finished = atomic_load(&c->done);
		conc_scan(c, it);
		for (int j = 0; j < 200; j++)
			conc_lookup(c, &rng);
		passes++;
		if (finished)
			break;
	}
	c->passes[r->id] = passes;
	iter_free(it);
	return NULL;
}

Test(memtable, readers_see_ordered_complete_entries_during_inserts, .timeout = 60)
{
	struct conc *c = calloc(1, sizeof(*c));
	cr_assert_not_null(c);
	c->m = new_mem();
	atomic_flag_clear(&c->error_taken);
	pthread_t w, r[2];
	struct conc_reader rd[2] = {{c, 0}, {c, 1}};
	for (int i = 0; i < 2; i++)
		cr_assert_eq(pthread_create(&r[i], NULL, conc_reader_run, &rd[i]), 0);
	cr_assert_eq(pthread_create(&w, NULL, conc_writer, c), 0);
	pthread_join(w, NULL);
	for (int i = 0; i < 2; i++)
		pthread_join(r[i], NULL);
	cr_assert_eq(atomic_load(&c->errors), 0, "%ld errors, first: %s",
	             (long)atomic_load(&c->errors), c->first_error);
	cr_assert_eq(mem_entries(c->m), CONC_N);
	cr_assert_gt(c->passes[0] + c->passes[1], 2);
	mem_unref(c->m);
	free(c);
}

/* The arena maps whole pages from the kernel (so a freed memtable goes back
 * at once): usage is counted in pages, an empty table costs one 16 KiB
 * block, and a large entry gets a mapping of its own rounded up to pages. */
Test(memtable, arena_counts_whole_mapped_pages)
{
	struct memtable *m = new_mem();
	cr_assert_eq(mem_usage(m), 16 * 1024);
	char k[32], v[5000];
	memset(v, 'y', sizeof(v));
	/* three fit in the first block; the fourth gets 8 KiB of its own */
	for (int i = 0; i < 4; i++) {
		int kl = snprintf(k, sizeof(k), "big%d", i);
		add(m, (uint64_t)i + 1, TYPE_VALUE, slice_make(k, (size_t)kl), 0,
		    slice_make(v, sizeof(v)));
		cr_assert_eq(mem_usage(m), i < 3 ? 16 * 1024 : 24 * 1024, "big %d: %zu", i,
		             mem_usage(m));
	}
	for (int i = 0; i < 3000; i++) {
		int kl = snprintf(k, sizeof(k), "key%06d", i);
		add(m, (uint64_t)i + 5, TYPE_VALUE, slice_make(k, (size_t)kl), i,
		    slice_make(v, (size_t)(i % 300)));
		cr_assert_eq(mem_usage(m) % 4096, 0, "usage %zu", mem_usage(m));
	}
	cr_assert_eq(mem_entries(m), 3004);
	mem_unref(m);
}
