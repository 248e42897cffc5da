/*
 * test_iter.c - the internal iterator framework (iter.c) and the database
 * iterator (dbiter.c), tested without a database: sorted arrays of internal
 * entries stand in for memtables and tables. Randomized tests compare every
 * move, in both directions and across direction switches, with a reference
 * computed from the arrays; a failure prints its seed.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>

#include "cairn.h"
#include "dbformat.h"
#include "dbiter.h"
#include "iter.h"

/* ------------------------------------------------------------------------ */
/* A vector-backed internal iterator                                         */

struct entry {
	struct buf k; /* internal key */
	struct buf v; /* internal value */
};

struct vec_iter {
	struct iter base;
	const struct entry *e;
	int n;
	int pos;     /* n when invalid */
	int fail_at; /* landing here turns the iterator invalid with CAIRN_EIO */
	int err;
	int *destroyed;
	int seeks; /* calls of seek */
};

static void vec_land(struct vec_iter *v, int pos)
{
	v->pos = pos < 0 ? v->n : pos;
	if (v->pos == v->fail_at) {
		v->err = CAIRN_EIO;
		v->pos = v->n;
	}
}

static int vec_valid(struct iter *it)
{
	struct vec_iter *v = (struct vec_iter *)it;
	return v->pos < v->n;
}

static void vec_seek_first(struct iter *it)
{
	struct vec_iter *v = (struct vec_iter *)it;
	v->err = 0;
	vec_land(v, 0);
}

static void vec_seek_last(struct iter *it)
{
	struct vec_iter *v = (struct vec_iter *)it;
	v->err = 0;
	vec_land(v, v->n - 1);
}

static void vec_seek(struct iter *it, struct slice target)
{
	struct vec_iter *v = (struct vec_iter *)it;
	int lo = 0, hi = v->n;
	while (lo < hi) {
		int mid = (lo + hi) / 2;
		if (ikey_cmp(buf_slice(&v->e[mid].k), target) < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	v->err = 0;
	v->seeks++;
	vec_land(v, lo);
}

static void vec_next(struct iter *it)
{
	struct vec_iter *v = (struct vec_iter *)it;
	cr_assert(vec_valid(it), "next on an invalid child");
	vec_land(v, v->pos + 1);
}

static void vec_prev(struct iter *it)
{
	struct vec_iter *v = (struct vec_iter *)it;
	cr_assert(vec_valid(it), "prev on an invalid child");
	vec_land(v, v->pos - 1);
}

static struct slice vec_key(struct iter *it)
{
	struct vec_iter *v = (struct vec_iter *)it;
	cr_assert(vec_valid(it));
	return buf_slice(&v->e[v->pos].k);
}

static struct slice vec_value(struct iter *it)
{
	struct vec_iter *v = (struct vec_iter *)it;
	cr_assert(vec_valid(it));
	return buf_slice(&v->e[v->pos].v);
}

static int vec_status(struct iter *it)
{
	return ((struct vec_iter *)it)->err;
}

static void vec_destroy(struct iter *it)
{
	struct vec_iter *v = (struct vec_iter *)it;
	if (v->destroyed)
		(*v->destroyed)++;
	free(v);
}

static const struct iter_ops vec_ops = {
        .valid = vec_valid,
        .seek_first = vec_seek_first,
        .seek_last = vec_seek_last,
        .seek = vec_seek,
        .next = vec_next,
        .prev = vec_prev,
        .key = vec_key,
        .value = vec_value,
        .status = vec_status,
        .destroy = vec_destroy,
};

/* A bloom filter's answer: whether any entry has target's user key, plus
 * false positives for user keys of two bytes. Then it leaves the iterator on
 * a wrong entry with an error, which the caller must never look at. */
static int vec_may_hold(struct iter *it, struct slice target)
{
	struct vec_iter *v = (struct vec_iter *)it;
	struct slice uk = ikey_user(target);
	int hold = uk.len == 2;
	for (int i = 0; i < v->n && !hold; i++)
		hold = slice_eq(ikey_user(buf_slice(&v->e[i].k)), uk);
	v->pos = 0;
	v->err = CAIRN_EIO;
	return hold;
}

static const struct iter_ops vec_lazy_ops = {
        .valid = vec_valid,
        .seek_first = vec_seek_first,
        .seek_last = vec_seek_last,
        .seek = vec_seek,
        .next = vec_next,
        .prev = vec_prev,
        .key = vec_key,
        .value = vec_value,
        .status = vec_status,
        .destroy = vec_destroy,
        .may_hold = vec_may_hold,
};

static struct iter *vec_new(const struct entry *e, int n)
{
	struct vec_iter *v = calloc(1, sizeof(*v));
	cr_assert(v);
	v->base.ops = &vec_ops;
	v->e = e;
	v->n = n;
	v->pos = n;
	v->fail_at = -1;
	return &v->base;
}

/* ------------------------------------------------------------------------ */
/* Test data                                                                 */

/* Random user keys of 0-3 bytes over {0x00, 'a', 'b', 0xff}: empty keys,
 * keys that are prefixes of others and bytes at both ends of the range. */
static struct slice rand_ukey(uint64_t *seed, char buf[4])
{
	static const char alphabet[4] = {0, 'a', 'b', (char)0xff};
	size_t n = (size_t)prng_below(seed, 4);
	for (size_t i = 0; i < n; i++)
		buf[i] = alphabet[prng_below(seed, 4)];
	return slice_make(buf, n);
}

static void entry_make(struct entry *e, struct slice ukey, uint64_t seq, enum value_type t,
                       struct slice val)
{
	memset(e, 0, sizeof(*e));
	cr_assert_eq(ikey_append(&e->k, ukey, seq, t), 0);
	cr_assert_eq(buf_put_fixed64(&e->v, seq * 1000 + 7), 0); /* write time */
	if (t == TYPE_VALUE)
		cr_assert_eq(buf_append(&e->v, val.data, val.len), 0);
}

static int entry_cmp(const void *a, const void *b)
{
	const struct entry *x = a, *y = b;
	return ikey_cmp(buf_slice(&x->k), buf_slice(&y->k));
}

static void entries_free(struct entry *e, int n)
{
	for (int i = 0; i < n; i++) {
		buf_free(&e[i].k);
		buf_free(&e[i].v);
	}
	free(e);
}

/* n entries with unique sequences 1..n in random order over random keys. */
static struct entry *rand_entries(uint64_t *seed, int n)
{
	struct entry *e = calloc((size_t)n, sizeof(*e));
	uint64_t *seqs = malloc((size_t)n * sizeof(*seqs));
	cr_assert(e && seqs);
	for (int i = 0; i < n; i++)
		seqs[i] = (uint64_t)i + 1;
	for (int i = n - 1; i > 0; i--) {
		int j = (int)prng_below(seed, (uint64_t)i + 1);
		uint64_t t = seqs[i];
		seqs[i] = seqs[j];
		seqs[j] = t;
	}
	for (int i = 0; i < n; i++) {
		char kb[4], vb[32];
		struct slice uk = rand_ukey(seed, kb);
		int vn = snprintf(vb, sizeof(vb), "v%llu", (unsigned long long)seqs[i]);
		if (prng_below(seed, 8) == 0)
			vn = 0; /* empty values are values, not tombstones */
		enum value_type t = prng_below(seed, 4) == 0 ? TYPE_DELETION : TYPE_VALUE;
		entry_make(&e[i], uk, seqs[i], t, slice_make(vb, (size_t)vn));
	}
	free(seqs);
	return e;
}

/* Splits e into k sorted runs (shuffled assignment); runs[i] points into
 * one array owned by the caller (*storage). */
struct runs {
	struct entry *storage;
	int start[64], len[64];
	int k;
};

static void split_runs(uint64_t *seed, const struct entry *e, int n, int k, struct runs *r)
{
	int *owner = malloc((size_t)n * sizeof(int));
	r->storage = malloc((size_t)n * sizeof(struct entry));
	cr_assert(owner && r->storage && k <= 64);
	r->k = k;
	for (int i = 0; i < n; i++)
		owner[i] = (int)prng_below(seed, (uint64_t)k);
	int pos = 0;
	for (int j = 0; j < k; j++) {
		r->start[j] = pos;
		for (int i = 0; i < n; i++)
			if (owner[i] == j)
				r->storage[pos++] = e[i]; /* shallow: e owns the bufs */
		r->len[j] = pos - r->start[j];
		qsort(r->storage + r->start[j], (size_t)r->len[j], sizeof(struct entry), entry_cmp);
	}
	free(owner);
}

/* With lazy, the children answer may_hold as a bloom filter would. */
static struct iter *merge_of_runs_lazy(const struct runs *r, int lazy)
{
	struct iter *children[64];
	for (int j = 0; j < r->k; j++) {
		children[j] = vec_new(r->storage + r->start[j], r->len[j]);
		if (lazy)
			children[j]->ops = &vec_lazy_ops;
	}
	struct iter *m = iter_merge_new(children, r->k);
	cr_assert(m);
	return m;
}

/* ------------------------------------------------------------------------ */
/* iter_free, the empty iterator                                             */

static void count_cleanup(void *a, void *b)
{
	(*(int *)a)++;
	cr_assert_eq(b, (void *)0x1234);
}

Test(iter, free_runs_cleanup_once_after_destroy)
{
	int destroyed = 0, cleaned = 0;
	struct iter *v = vec_new(NULL, 0);
	((struct vec_iter *)v)->destroyed = &destroyed;
	iter_set_cleanup(v, count_cleanup, &cleaned, (void *)0x1234);
	iter_free(v);
	cr_assert_eq(destroyed, 1);
	cr_assert_eq(cleaned, 1);
	iter_free(NULL);
}

Test(iter, empty_iterator_is_invalid_and_reports_its_status)
{
	struct iter *e = iter_empty_new(0);
	iter_seek_first(e);
	cr_assert(!iter_valid(e));
	iter_seek_last(e);
	cr_assert(!iter_valid(e));
	cr_assert_eq(iter_status(e), 0);
	iter_free(e);
	e = iter_empty_new(CAIRN_EIO);
	iter_seek(e, slice_make("x", 1));
	cr_assert(!iter_valid(e));
	cr_assert_eq(iter_status(e), CAIRN_EIO);
	iter_free(e);
}

/* ------------------------------------------------------------------------ */
/* Random walks of an internal iterator against a sorted array               */

/* Drives it and a position in the sorted array ref with the same random
 * moves and checks they agree after each. */
static void walk_internal(struct iter *it, const struct entry *ref, int n, uint64_t seed, int ops)
{
	uint64_t s = seed;
	int pos = -1; /* -1: invalid */
	for (int op = 0; op < ops; op++) {
		int r = (int)prng_below(&s, 20);
		if (pos >= 0 && r < 8) {
			iter_next(it);
			pos = pos + 1 < n ? pos + 1 : -1;
		} else if (pos >= 0 && r < 16) {
			iter_prev(it);
			pos--;
		} else if (r < 17) {
			iter_seek_first(it);
			pos = n ? 0 : -1;
		} else if (r < 18) {
			iter_seek_last(it);
			pos = n - 1;
		} else {
			char kb[4];
			struct buf t = {0};
			cr_assert_eq(ikey_append(&t, rand_ukey(&s, kb),
			                         prng_below(&s, (uint64_t)n + 2), TYPE_SEEK),
			             0);
			iter_seek(it, buf_slice(&t));
			pos = 0;
			while (pos < n && ikey_cmp(buf_slice(&ref[pos].k), buf_slice(&t)) < 0)
				pos++;
			if (pos == n)
				pos = -1;
			buf_free(&t);
		}
		cr_assert_eq(iter_valid(it) != 0, pos >= 0, "seed %llu op %d: valid %d, want %d",
		             (unsigned long long)seed, op, iter_valid(it), pos >= 0);
		if (pos >= 0) {
			cr_assert(slice_eq(iter_key(it), buf_slice(&ref[pos].k)),
			          "seed %llu op %d: wrong key at %d", (unsigned long long)seed, op,
			          pos);
			cr_assert(slice_eq(iter_value(it), buf_slice(&ref[pos].v)),
			          "seed %llu op %d: wrong value", (unsigned long long)seed, op);
		}
		cr_assert_eq(iter_status(it), 0);
	}
}

static void merge_matches_sorted_union_lazy(uint64_t seed, int n, int k, int lazy)
{
	uint64_t s = seed;
	struct entry *e = rand_entries(&s, n);
	struct runs r;
	split_runs(&s, e, n, k, &r);
	struct iter *m = merge_of_runs_lazy(&r, lazy);
	struct entry *ref = malloc((size_t)n * sizeof(*ref));
	memcpy(ref, e, (size_t)n * sizeof(*ref));
	qsort(ref, (size_t)n, sizeof(*ref), entry_cmp);
	walk_internal(m, ref, n, seed, 3000);
	iter_free(m);
	free(ref);
	free(r.storage);
	entries_free(e, n);
}

static void merge_matches_sorted_union(uint64_t seed, int n, int k)
{
	merge_matches_sorted_union_lazy(seed, n, k, 0);
}

Test(iter, merge_matches_sorted_union_in_both_directions)
{
	for (uint64_t seed = 1; seed <= 6; seed++)
		merge_matches_sorted_union(seed, 200, (int)(seed % 5) + 2);
}

Test(iter, merge_of_many_children_uses_the_heap_correctly)
{
	merge_matches_sorted_union(101, 400, 40);
	merge_matches_sorted_union(102, 30, 50); /* many empty children */
}

Test(iter, merge_with_postponed_seeks_matches_sorted_union)
{
	for (uint64_t seed = 1; seed <= 6; seed++)
		merge_matches_sorted_union_lazy(seed + 300, 200, (int)(seed % 5) + 2, 1);
	merge_matches_sorted_union_lazy(307, 400, 40, 1);
}

/* Three runs with the user keys "a", "c", "e" in the first, "b", "d" in
 * the second and "f" in the third, as lazy children. */
static struct iter *three_lazy_runs(struct entry e[6], struct iter *c[3])
{
	static const char *keys[6] = {"a", "c", "e", "b", "d", "f"};
	for (int i = 0; i < 6; i++)
		entry_make(&e[i], slice_make(keys[i], 1), (uint64_t)i + 1, TYPE_VALUE,
		           slice_make("v", 1));
	c[0] = vec_new(e, 3);
	c[1] = vec_new(e + 3, 2);
	c[2] = vec_new(e + 5, 1);
	for (int i = 0; i < 3; i++)
		c[i]->ops = &vec_lazy_ops;
	struct iter *m = iter_merge_new(c, 3);
	cr_assert(m);
	return m;
}

static int vec_seeks(struct iter *it)
{
	return ((struct vec_iter *)it)->seeks;
}

Test(iter, merge_seek_to_a_held_key_seeks_only_the_children_holding_it)
{
	struct entry e[6];
	struct iter *c[3];
	struct iter *m = three_lazy_runs(e, c);
	struct buf t = {0};
	cr_assert_eq(ikey_append(&t, slice_make("c", 1), MAX_SEQUENCE, TYPE_SEEK), 0);
	iter_seek(m, buf_slice(&t));
	cr_assert(iter_valid(m));
	cr_assert(slice_eq(iter_key(m), buf_slice(&e[1].k)));
	cr_assert_eq(iter_status(m), 0, "a postponed child's status leaked out");
	cr_assert_eq(vec_seeks(c[0]), 1);
	cr_assert_eq(vec_seeks(c[1]) + vec_seeks(c[2]), 0, "children without 'c' were sought");
	/* moving past "c" brings them in, in order */
	iter_next(m);
	cr_assert(iter_valid(m));
	cr_assert(slice_eq(iter_key(m), buf_slice(&e[4].k)), "'d' of the second run expected");
	cr_assert_eq(vec_seeks(c[1]), 1);
	iter_next(m);
	cr_assert(slice_eq(iter_key(m), buf_slice(&e[2].k)));
	iter_next(m);
	cr_assert(slice_eq(iter_key(m), buf_slice(&e[5].k)));
	iter_next(m);
	cr_assert(!iter_valid(m));
	cr_assert_eq(iter_status(m), 0);

	/* a step back from a postponed state sees every child */
	iter_seek(m, buf_slice(&t));
	iter_prev(m);
	cr_assert(iter_valid(m));
	cr_assert(slice_eq(iter_key(m), buf_slice(&e[3].k)), "'b' of the second run expected");

	/* a key no child sits on: every child is sought at once */
	buf_clear(&t);
	cr_assert_eq(ikey_append(&t, slice_make("bb", 2), MAX_SEQUENCE, TYPE_SEEK), 0);
	iter_seek(m, buf_slice(&t));
	cr_assert(iter_valid(m));
	cr_assert(slice_eq(iter_key(m), buf_slice(&e[1].k)));
	buf_free(&t);
	iter_free(m);
	for (int i = 0; i < 6; i++) {
		buf_free(&e[i].k);
		buf_free(&e[i].v);
	}
}

Test(iter, merge_of_one_and_zero_children)
{
	merge_matches_sorted_union(201, 50, 1);
	struct iter *m = iter_merge_new(NULL, 0);
	cr_assert(m);
	iter_seek_first(m);
	cr_assert(!iter_valid(m));
	iter_free(m);
}

Test(iter, merge_frees_its_children)
{
	int destroyed = 0;
	struct iter *c[3];
	for (int i = 0; i < 3; i++) {
		c[i] = vec_new(NULL, 0);
		((struct vec_iter *)c[i])->destroyed = &destroyed;
	}
	iter_free(iter_merge_new(c, 3));
	cr_assert_eq(destroyed, 3);
}

Test(iter, merge_stops_at_a_child_error)
{
	uint64_t s = 9;
	int n = 100;
	struct entry *e = rand_entries(&s, n);
	struct runs r;
	split_runs(&s, e, n, 3, &r);
	struct iter *children[3];
	for (int j = 0; j < 3; j++)
		children[j] = vec_new(r.storage + r.start[j], r.len[j]);
	((struct vec_iter *)children[1])->fail_at = r.len[1] / 2;
	struct iter *m = iter_merge_new(children, 3);
	int seen = 0;
	for (iter_seek_first(m); iter_valid(m); iter_next(m))
		seen++;
	cr_assert_lt(seen, n, "the merge went on past a failed child");
	cr_assert_eq(iter_status(m), CAIRN_EIO);
	iter_free(m);
	free(r.storage);
	entries_free(e, n);
}

/* ------------------------------------------------------------------------ */
/* The two-level iterator                                                    */

struct blocks {
	const struct entry *all; /* sorted */
	int start[256], len[256];
	int nblocks;
	int bad_block; /* open_fn reports CAIRN_ECORRUPT for it; -1 for none */
	int opens;
	int lazy; /* blocks answer may_hold */
	struct entry index[256];
};

static struct iter *open_block(void *arg, struct slice v)
{
	struct blocks *b = arg;
	cr_assert_eq(v.len, 4);
	int i = (int)dec_fixed32(v.data);
	cr_assert(i >= 0 && i < b->nblocks);
	b->opens++;
	if (i == b->bad_block)
		return iter_empty_new(CAIRN_ECORRUPT);
	struct iter *it = vec_new(b->all + b->start[i], b->len[i]);
	if (b->lazy)
		it->ops = &vec_lazy_ops;
	return it;
}

/* Cuts the sorted array into blocks of 0-5 entries, some empty. Each index
 * key is the largest key so far, as a table index would have it. */
static void make_blocks(uint64_t *seed, const struct entry *sorted, int n, struct blocks *b)
{
	memset(b, 0, sizeof(*b));
	b->all = sorted;
	b->bad_block = -1;
	int pos = 0;
	while (pos < n || b->nblocks == 0) {
		cr_assert_lt(b->nblocks, 256);
		int len = (int)prng_below(seed, 6);
		if (len > n - pos)
			len = n - pos;
		int i = b->nblocks++;
		b->start[i] = pos;
		b->len[i] = len;
		pos += len;
		struct entry *x = &b->index[i];
		if (pos > 0)
			cr_assert_eq(buf_set(&x->k, sorted[pos - 1].k.data, sorted[pos - 1].k.len),
			             0);
		else
			cr_assert_eq(ikey_append(&x->k, slice_make("", 0), MAX_SEQUENCE, TYPE_SEEK),
			             0);
		cr_assert_eq(buf_put_fixed32(&x->v, (uint32_t)i), 0);
	}
}

static void blocks_free(struct blocks *b)
{
	for (int i = 0; i < b->nblocks; i++) {
		buf_free(&b->index[i].k);
		buf_free(&b->index[i].v);
	}
}

static struct entry *sorted_entries(uint64_t *seed, int n)
{
	struct entry *e = rand_entries(seed, n);
	qsort(e, (size_t)n, sizeof(*e), entry_cmp);
	return e;
}

Test(iter, two_level_matches_flat_order_and_skips_empty_blocks)
{
	for (uint64_t seed = 1; seed <= 5; seed++) {
		uint64_t s = seed * 31;
		int n = 150;
		struct entry *e = sorted_entries(&s, n);
		struct blocks *b = malloc(sizeof(*b));
		make_blocks(&s, e, n, b);
		struct iter *t = iter_two_level_new(vec_new(b->index, b->nblocks), open_block, b);
		cr_assert(t);
		walk_internal(t, e, n, seed, 3000);
		iter_free(t);
		blocks_free(b);
		free(b);
		entries_free(e, n);
	}
}

Test(iter, two_level_over_only_empty_blocks_is_empty)
{
	uint64_t s = 5;
	struct blocks *b = malloc(sizeof(*b));
	make_blocks(&s, NULL, 0, b);
	struct iter *t = iter_two_level_new(vec_new(b->index, b->nblocks), open_block, b);
	iter_seek_first(t);
	cr_assert(!iter_valid(t));
	iter_seek_last(t);
	cr_assert(!iter_valid(t));
	cr_assert_eq(iter_status(t), 0);
	iter_free(t);
	blocks_free(b);
	free(b);
}

Test(iter, two_level_reuses_the_open_block)
{
	uint64_t s = 77;
	int n = 100;
	struct entry *e = sorted_entries(&s, n);
	struct blocks *b = malloc(sizeof(*b));
	make_blocks(&s, e, n, b);
	int blk = 0;
	while (b->len[blk] < 2)
		blk++;
	struct iter *t = iter_two_level_new(vec_new(b->index, b->nblocks), open_block, b);
	iter_seek(t, buf_slice(&e[b->start[blk]].k));
	cr_assert(iter_valid(t));
	int opens = b->opens;
	iter_seek(t, buf_slice(&e[b->start[blk] + 1].k));
	cr_assert(iter_valid(t));
	cr_assert(slice_eq(iter_key(t), buf_slice(&e[b->start[blk] + 1].k)));
	cr_assert_eq(b->opens, opens, "seeking within the open block reopened it");
	int other = b->nblocks - 1;
	while (b->len[other] == 0)
		other--;
	cr_assert_neq(other, blk);
	iter_seek(t, buf_slice(&e[b->start[other]].k));
	iter_seek(t, buf_slice(&e[b->start[blk]].k));
	cr_assert_eq(b->opens, opens + 2, "a block left behind was not reopened");
	iter_free(t);
	blocks_free(b);
	free(b);
	entries_free(e, n);
}

/* Whether some entry >= target has target's user key. */
static int holds_from(const struct entry *sorted, int n, struct slice target)
{
	for (int i = 0; i < n; i++)
		if (ikey_cmp(buf_slice(&sorted[i].k), target) >= 0 &&
		    slice_eq(ikey_user(buf_slice(&sorted[i].k)), ikey_user(target)))
			return 1;
	return 0;
}

Test(iter, two_level_may_hold_asks_the_block_the_index_names)
{
	uint64_t s = 79;
	int n = 150, noes = 0;
	struct entry *e = sorted_entries(&s, n);
	struct blocks *b = malloc(sizeof(*b));
	make_blocks(&s, e, n, b);
	b->lazy = 1;
	struct iter *t = iter_two_level_new(vec_new(b->index, b->nblocks), open_block, b);
	for (int i = 0; i < 2000; i++) {
		char kb[4];
		struct buf target = {0};
		cr_assert_eq(ikey_append(&target, rand_ukey(&s, kb),
		                         prng_below(&s, (uint64_t)n + 2), TYPE_SEEK),
		             0);
		int hold = iter_may_hold(t, buf_slice(&target));
		if (holds_from(e, n, buf_slice(&target)))
			cr_assert_eq(hold, 1, "target %d: may_hold denied a key it holds", i);
		noes += !hold;
		/* whatever may_hold did, a seek lands right */
		iter_seek(t, buf_slice(&target));
		int pos = 0;
		while (pos < n && ikey_cmp(buf_slice(&e[pos].k), buf_slice(&target)) < 0)
			pos++;
		cr_assert_eq(iter_valid(t) != 0, pos < n);
		if (pos < n)
			cr_assert(slice_eq(iter_key(t), buf_slice(&e[pos].k)));
		cr_assert_eq(iter_status(t), 0);
		buf_free(&target);
	}
	cr_assert_gt(noes, 0, "may_hold never ruled a block out");
	iter_free(t);
	blocks_free(b);
	free(b);
	entries_free(e, n);
}

static int deny_all(void *arg, struct slice target)
{
	(void)target;
	(*(int *)arg)++;
	return 0;
}

static struct iter *open_nothing(void *arg, struct slice v)
{
	(void)arg;
	(void)v;
	cr_assert_fail("may_hold opened a data iterator despite its own function");
	return NULL;
}

Test(iter, two_level_may_hold_uses_its_own_function_when_set)
{
	int calls = 0;
	/* without one: an empty index holds nothing, and opens nothing */
	struct iter *t = iter_two_level_new(vec_new(NULL, 0), open_nothing, &calls);
	cr_assert_eq(iter_may_hold(t, slice_make("x\0\0\0\0\0\0\0\0", 9)), 0);
	iter_free(t);
	t = iter_two_level_new(vec_new(NULL, 0), open_nothing, &calls);
	iter_two_level_set_may_hold(t, deny_all);
	cr_assert_eq(iter_may_hold(t, slice_make("x\0\0\0\0\0\0\0\0", 9)), 0);
	cr_assert_eq(calls, 1);
	iter_free(t);
}

Test(iter, two_level_stops_with_a_data_block_error)
{
	uint64_t s = 78;
	int n = 100;
	struct entry *e = sorted_entries(&s, n);
	struct blocks *b = malloc(sizeof(*b));
	make_blocks(&s, e, n, b);
	b->bad_block = b->nblocks / 2;
	struct iter *t = iter_two_level_new(vec_new(b->index, b->nblocks), open_block, b);
	int seen = 0;
	for (iter_seek_first(t); iter_valid(t); iter_next(t))
		seen++;
	cr_assert_eq(seen, b->start[b->bad_block], "iteration went on past a bad block");
	cr_assert_eq(iter_status(t), CAIRN_ECORRUPT);
	seen = 0;
	for (iter_seek_last(t); iter_valid(t); iter_prev(t))
		seen++;
	cr_assert_eq(seen, n - b->start[b->bad_block] - b->len[b->bad_block]);
	cr_assert_eq(iter_status(t), CAIRN_ECORRUPT);
	iter_free(t);
	blocks_free(b);
	free(b);
	entries_free(e, n);
}

/* ------------------------------------------------------------------------ */
/* The database iterator                                                     */

/* A visible live entry, as the public iterator must show it. */
struct visible {
	struct slice ukey;
	struct slice value;
	int64_t mtime;
	uint64_t seq;
};

/* The newest entry of each user key with seq <= snap, tombstones dropped;
 * sorted is in internal-key order. Returns the count. */
static int visible_at(const struct entry *sorted, int n, uint64_t snap, struct visible *out)
{
	int m = 0;
	for (int i = 0; i < n;) {
		struct slice uk = ikey_user(buf_slice(&sorted[i].k));
		int j = i, chosen = -1;
		while (j < n && slice_eq(ikey_user(buf_slice(&sorted[j].k)), uk)) {
			if (chosen < 0 && ikey_seq(buf_slice(&sorted[j].k)) <= snap)
				chosen = j;
			j++;
		}
		if (chosen >= 0 && ikey_type(buf_slice(&sorted[chosen].k)) == TYPE_VALUE) {
			struct slice iv = buf_slice(&sorted[chosen].v);
			out[m++] = (struct visible){uk, ival_value(iv), ival_time(iv),
			                            ikey_seq(buf_slice(&sorted[chosen].k))};
		}
		i = j;
	}
	return m;
}

static void check_dbiter_at(struct cairn_iter *d, const struct visible *ref, int pos, uint64_t seed,
                            uint64_t snap, int op)
{
	cr_assert_eq(cairn_iter_valid(d) != 0, pos >= 0,
	             "seed %llu snap %llu op %d: valid %d, want pos %d", (unsigned long long)seed,
	             (unsigned long long)snap, op, cairn_iter_valid(d), pos);
	cr_assert_eq(cairn_iter_status(d), 0);
	if (pos < 0)
		return;
	size_t kl, vl;
	const void *k = cairn_iter_key(d, &kl);
	const void *v = cairn_iter_value(d, &vl);
	cr_assert(slice_eq(slice_make(k, kl), ref[pos].ukey),
	          "seed %llu snap %llu op %d: wrong key", (unsigned long long)seed,
	          (unsigned long long)snap, op);
	cr_assert(slice_eq(slice_make(v, vl), ref[pos].value),
	          "seed %llu snap %llu op %d: wrong value", (unsigned long long)seed,
	          (unsigned long long)snap, op);
	struct cairn_key_info info;
	cairn_iter_info(d, &info);
	cr_assert_eq(info.size, ref[pos].value.len);
	cr_assert_eq(info.mtime_ns, ref[pos].mtime);
	cr_assert_eq(info.seq, ref[pos].seq, "seed %llu snap %llu op %d: wrong seq",
	             (unsigned long long)seed, (unsigned long long)snap, op);
}

/* Random moves of the public iterator against the visible set. */
static void walk_dbiter(struct cairn_iter *d, const struct visible *ref, int m, uint64_t seed,
                        uint64_t snap, int ops)
{
	uint64_t s = seed ^ snap;
	int pos = -1;
	for (int op = 0; op < ops; op++) {
		int r = (int)prng_below(&s, 20);
		char kb[4];
		if (pos >= 0 && r < 7) {
			cairn_iter_next(d);
			pos = pos + 1 < m ? pos + 1 : -1;
		} else if (pos >= 0 && r < 14) {
			cairn_iter_prev(d);
			pos--;
		} else if (r < 15) {
			cairn_iter_seek_first(d);
			pos = m ? 0 : -1;
		} else if (r < 16) {
			cairn_iter_seek_last(d);
			pos = m - 1;
		} else if (r < 18) {
			struct slice t = rand_ukey(&s, kb);
			cairn_iter_seek(d, t.data, t.len);
			pos = 0;
			while (pos < m && slice_cmp(ref[pos].ukey, t) < 0)
				pos++;
			if (pos == m)
				pos = -1;
		} else {
			struct slice t = rand_ukey(&s, kb);
			cairn_iter_seek_for_prev(d, t.data, t.len);
			pos = m - 1;
			while (pos >= 0 && slice_cmp(ref[pos].ukey, t) > 0)
				pos--;
		}
		check_dbiter_at(d, ref, pos, seed, snap, op);
	}
}

static void release_count(void *ctx)
{
	(*(int *)ctx)++;
}

static void dbiter_matches_reference_lazy(uint64_t seed, int n, int k, int lazy)
{
	uint64_t s = seed;
	struct entry *e = rand_entries(&s, n);
	struct runs r;
	split_runs(&s, e, n, k, &r);
	struct entry *sorted = malloc((size_t)n * sizeof(*sorted));
	memcpy(sorted, e, (size_t)n * sizeof(*sorted));
	qsort(sorted, (size_t)n, sizeof(*sorted), entry_cmp);
	struct visible *ref = malloc((size_t)n * sizeof(*ref));
	uint64_t snaps[] = {
	        0, 1, (uint64_t)n / 4, (uint64_t)n / 2, (uint64_t)n - 1, (uint64_t)n, MAX_SEQUENCE};
	for (size_t i = 0; i < sizeof(snaps) / sizeof(snaps[0]); i++) {
		int m = visible_at(sorted, n, snaps[i], ref);
		int released = 0;
		struct cairn_iter *d = dbiter_new(merge_of_runs_lazy(&r, lazy), snaps[i],
		                                  release_count, &released);
		cr_assert(d);
		cr_assert(!cairn_iter_valid(d), "a new iterator must start unpositioned");
		walk_dbiter(d, ref, m, seed, snaps[i], 1500);

		/* full scans both ways */
		int pos = 0;
		for (cairn_iter_seek_first(d); cairn_iter_valid(d); cairn_iter_next(d))
			check_dbiter_at(d, ref, pos++, seed, snaps[i], -1);
		cr_assert_eq(pos, m, "seed %llu: forward scan saw %d of %d",
		             (unsigned long long)seed, pos, m);
		pos = m - 1;
		for (cairn_iter_seek_last(d); cairn_iter_valid(d); cairn_iter_prev(d))
			check_dbiter_at(d, ref, pos--, seed, snaps[i], -2);
		cr_assert_eq(pos, -1, "seed %llu: backward scan stopped early",
		             (unsigned long long)seed);
		cairn_iter_free(d);
		cr_assert_eq(released, 1);
	}
	free(ref);
	free(sorted);
	free(r.storage);
	entries_free(e, n);
}

static void dbiter_matches_reference(uint64_t seed, int n, int k)
{
	dbiter_matches_reference_lazy(seed, n, k, 0);
}

Test(dbiter, matches_reference_over_children_that_postpone_seeks)
{
	for (uint64_t seed = 1; seed <= 4; seed++)
		dbiter_matches_reference_lazy(seed + 500, 300, (int)seed + 1, 1);
	dbiter_matches_reference_lazy(2501, 800, 3, 1);
}

Test(dbiter, matches_reference_across_snapshots_and_direction_switches)
{
	for (uint64_t seed = 1; seed <= 8; seed++)
		dbiter_matches_reference(seed, 40 + (int)seed * 30, (int)(seed % 4) + 1);
}

Test(dbiter, matches_reference_over_many_sources)
{
	dbiter_matches_reference(1001, 600, 20);
}

Test(dbiter, matches_reference_with_few_keys_and_many_versions)
{
	/* keys of 0-3 bytes over 4 symbols: 85 keys, so 800 entries give many
	 * versions and tombstones per key */
	dbiter_matches_reference(2001, 800, 3);
}

struct order {
	int internal_freed;
	int released_after;
};

static void note_internal_freed(void *a, void *b)
{
	(void)b;
	((struct order *)a)->internal_freed = 1;
}

static void note_release(void *ctx)
{
	struct order *o = ctx;
	o->released_after = o->internal_freed;
}

Test(dbiter, free_releases_after_the_internal_iterator)
{
	struct order o = {0, 0};
	struct iter *internal = vec_new(NULL, 0);
	iter_set_cleanup(internal, note_internal_freed, &o, NULL);
	struct cairn_iter *d = dbiter_new(internal, 5, note_release, &o);
	cr_assert(d);
	cairn_iter_seek_first(d);
	cr_assert(!cairn_iter_valid(d));
	cr_assert_eq(cairn_iter_status(d), 0);
	cairn_iter_free(d);
	cr_assert(o.internal_freed);
	cr_assert(o.released_after, "release ran before the internal iterator was freed");
	cairn_iter_free(NULL);
}

/* A one-vector dbiter over a@1, b@2, c@3, d@4 (values "val"), which the
 * caller may then damage in place. */
static struct cairn_iter *small_dbiter(struct entry *e, int n)
{
	static const char *keys[] = {"a", "b", "c", "d"};
	for (int i = 0; i < n; i++)
		entry_make(&e[i], slice_make(keys[i], 1), (uint64_t)i + 1, TYPE_VALUE,
		           slice_make("val", 3));
	struct cairn_iter *d = dbiter_new(vec_new(e, n), 100, NULL, NULL);
	cr_assert(d);
	return d;
}

static void free_small(struct entry *e, int n)
{
	for (int i = 0; i < n; i++) {
		buf_free(&e[i].k);
		buf_free(&e[i].v);
	}
}

Test(dbiter, corrupt_internal_key_ends_iteration_with_ecorrupt)
{
	struct entry e[4];
	struct cairn_iter *d = small_dbiter(e, 4);
	e[2].k.data[e[2].k.len - 8] = 7; /* an unknown value type */
	int seen = 0;
	for (cairn_iter_seek_first(d); cairn_iter_valid(d); cairn_iter_next(d))
		seen++;
	cr_assert_eq(seen, 2);
	cr_assert_eq(cairn_iter_status(d), CAIRN_ECORRUPT);
	/* the error sticks while the iterator is not sought again */
	cairn_iter_next(d);
	cairn_iter_prev(d);
	cr_assert(!cairn_iter_valid(d));
	cr_assert_eq(cairn_iter_status(d), CAIRN_ECORRUPT);
	/* a seek tries again and meets the damage again */
	seen = 0;
	for (cairn_iter_seek_first(d); cairn_iter_valid(d); cairn_iter_next(d))
		seen++;
	cr_assert_eq(seen, 2);
	cr_assert_eq(cairn_iter_status(d), CAIRN_ECORRUPT);
	cairn_iter_free(d);
	free_small(e, 4);

	d = small_dbiter(e, 4);
	e[1].k.len = 5; /* shorter than a trailer */
	cairn_iter_seek_last(d);
	while (cairn_iter_valid(d))
		cairn_iter_prev(d);
	cr_assert_eq(cairn_iter_status(d), CAIRN_ECORRUPT);
	cairn_iter_free(d);
	free_small(e, 4);
}

Test(dbiter, short_internal_value_is_ecorrupt_in_both_directions)
{
	struct entry e[4];
	struct cairn_iter *d = small_dbiter(e, 4);
	e[1].v.len = 3; /* no room for the write time */
	cairn_iter_seek(d, "b", 1);
	cr_assert(!cairn_iter_valid(d));
	cr_assert_eq(cairn_iter_status(d), CAIRN_ECORRUPT);
	cairn_iter_free(d);
	free_small(e, 4);

	d = small_dbiter(e, 4);
	e[1].v.len = 3;
	cairn_iter_seek_for_prev(d, "b", 1);
	cr_assert(!cairn_iter_valid(d));
	cr_assert_eq(cairn_iter_status(d), CAIRN_ECORRUPT);
	cairn_iter_free(d);
	free_small(e, 4);
}

Test(dbiter, internal_error_ends_iteration_with_its_status)
{
	struct entry e[4];
	struct cairn_iter *d = small_dbiter(e, 4);
	cairn_iter_free(d);
	struct iter *v = vec_new(e, 4);
	((struct vec_iter *)v)->fail_at = 1;
	d = dbiter_new(v, 100, NULL, NULL);
	cairn_iter_seek_last(d);
	while (cairn_iter_valid(d))
		cairn_iter_prev(d);
	cr_assert_eq(cairn_iter_status(d), CAIRN_EIO);
	cairn_iter_seek_first(d);
	cr_assert(cairn_iter_valid(d));
	cairn_iter_next(d);
	cr_assert(!cairn_iter_valid(d));
	cr_assert_eq(cairn_iter_status(d), CAIRN_EIO);
	cairn_iter_free(d);
	free_small(e, 4);
}

Test(dbiter, value_excludes_the_write_time_and_info_reports_it)
{
	struct entry e[1];
	entry_make(&e[0], slice_make("k", 1), 42, TYPE_VALUE, slice_make("hello", 5));
	struct cairn_iter *d = dbiter_new(vec_new(e, 1), 42, NULL, NULL);
	for (int dir = 0; dir < 2; dir++) {
		if (dir == 0)
			cairn_iter_seek_first(d);
		else
			cairn_iter_seek_last(d);
		cr_assert(cairn_iter_valid(d));
		size_t vl;
		const char *v = cairn_iter_value(d, &vl);
		cr_assert_eq(vl, 5);
		cr_assert(memcmp(v, "hello", 5) == 0);
		struct cairn_key_info info;
		cairn_iter_info(d, &info);
		cr_assert_eq(info.size, 5);
		cr_assert_eq(info.mtime_ns, 42007);
		cr_assert_eq(info.seq, 42);
	}
	cairn_iter_free(d);
	d = dbiter_new(vec_new(e, 1), 41, NULL, NULL);
	cairn_iter_seek_first(d);
	cr_assert(!cairn_iter_valid(d), "an entry newer than the snapshot is visible");
	cairn_iter_free(d);
	free_small(e, 1);
}

/* Fails for key "b" only, as a damaged or missing blob file would. */
static int failing_loader(void *ctx, struct slice key, struct slice ival, struct buf *out)
{
	(void)ctx, (void)ival;
	if (slice_eq(key, slice_make("b", 1)))
		return CAIRN_ECORRUPT;
	return buf_set(out, "big", 3);
}

Test(dbiter, unreadable_blob_value_error_sticks_until_a_seek)
{
	struct entry e[4];
	static const char *keys[] = {"a", "b", "c", "d"};
	for (int i = 0; i < 4; i++) {
		enum value_type t = i == 1 || i == 2 ? TYPE_BLOB : TYPE_VALUE;
		entry_make(&e[i], slice_make(keys[i], 1), (uint64_t)i + 1, t, slice_make("v", 1));
		if (t == TYPE_BLOB)
			cr_assert_eq(buf_append(&e[i].v, "ref", 3), 0);
	}
	for (int dir = 0; dir < 2; dir++) {
		struct cairn_iter *d = dbiter_new(vec_new(e, 4), 100, NULL, NULL);
		cr_assert(d);
		dbiter_set_blob_loader(d, failing_loader, NULL);
		int seen = 0, got_b = 0;
		size_t vlen = 1;
		if (dir == 0)
			cairn_iter_seek_first(d);
		else
			cairn_iter_seek_last(d);
		while (cairn_iter_valid(d)) {
			size_t klen;
			const char *k = cairn_iter_key(d, &klen);
			const void *v = cairn_iter_value(d, &vlen);
			seen++;
			if (k[0] == 'b') {
				got_b = 1;
				cr_assert_null(v);
				cr_assert_eq(vlen, 0);
				cr_assert_eq(cairn_iter_status(d), CAIRN_ECORRUPT);
				/* the key stays readable to name it */
				cr_assert(cairn_iter_valid(d));
			} else {
				cr_assert_not_null(v);
			}
			if (dir == 0)
				cairn_iter_next(d);
			else
				cairn_iter_prev(d);
		}
		cr_assert(got_b);
		cr_assert_eq(seen, dir == 0 ? 2 : 3, "the walk went on past the unreadable value");
		cr_assert_eq(cairn_iter_status(d), CAIRN_ECORRUPT, "the error vanished on a move");
		cairn_iter_next(d);
		cr_assert_eq(cairn_iter_status(d), CAIRN_ECORRUPT);
		/* a seek clears it; the value is asked for again only when read */
		cairn_iter_seek(d, "b", 1);
		cr_assert(cairn_iter_valid(d));
		cr_assert_eq(cairn_iter_status(d), 0);
		cr_assert_null(cairn_iter_value(d, &vlen));
		cr_assert_eq(cairn_iter_status(d), CAIRN_ECORRUPT);
		cairn_iter_seek(d, "c", 1);
		cr_assert_eq(cairn_iter_status(d), 0);
		cr_assert_not_null(cairn_iter_value(d, &vlen));
		cr_assert_eq(vlen, 3);
		cairn_iter_free(d);
	}
	free_small(e, 4);
}
