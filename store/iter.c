/*
 * iter.c - the generic parts of the internal iterator framework: freeing with
 * a cleanup hook, the empty (or error) iterator, the merging iterator that
 * turns memtables, level-0 tables and levels into one ordered stream for
 * reads and compaction, and the two-level iterator that walks table index ->
 * data block and level file list -> table.
 *
 * Errors stop iteration: once a child (merge) or a data iterator (two-level)
 * turns invalid with a non-zero status, the composite turns invalid too and
 * reports that status, rather than carrying on past the hole, where an older
 * version of a key could show through a lost newer one. A new seek retries.
 */
#include <assert.h>
#include <stdlib.h>

#include "cairn.h"
#include "dbformat.h"
#include "iter.h"

void iter_free(struct iter *it)
{
	if (!it)
		return;
	void (*fn)(void *, void *) = it->cleanup;
	void *a = it->cleanup_a, *b = it->cleanup_b;
	it->ops->destroy(it);
	if (fn)
		fn(a, b);
}

void iter_set_cleanup(struct iter *it, void (*fn)(void *, void *), void *a, void *b)
{
	assert(!it->cleanup);
	it->cleanup = fn;
	it->cleanup_a = a;
	it->cleanup_b = b;
}

static void iter_init(struct iter *it, const struct iter_ops *ops)
{
	it->ops = ops;
	it->cleanup = NULL;
	it->cleanup_a = it->cleanup_b = NULL;
}

/* ------------------------------------------------------------------------ */
/* The empty iterator                                                        */

struct empty_iter {
	struct iter base;
	int status;
};

static int empty_valid(struct iter *it)
{
	(void)it;
	return 0;
}

static void empty_move(struct iter *it)
{
	(void)it;
}

static void empty_seek(struct iter *it, struct slice target)
{
	(void)it;
	(void)target;
}

static struct slice empty_slice(struct iter *it)
{
	(void)it;
	assert(!"key or value of an invalid iterator");
	return slice_make(NULL, 0);
}

static int empty_status(struct iter *it)
{
	return ((struct empty_iter *)it)->status;
}

static void empty_destroy(struct iter *it)
{
	free(it);
}

static const struct iter_ops empty_ops = {
        .valid = empty_valid,
        .seek_first = empty_move,
        .seek_last = empty_move,
        .seek = empty_seek,
        .next = empty_move,
        .prev = empty_move,
        .key = empty_slice,
        .value = empty_slice,
        .status = empty_status,
        .destroy = empty_destroy,
};

struct iter *iter_empty_new(int status)
{
	struct empty_iter *e = malloc(sizeof(*e));
	if (!e)
		return NULL;
	iter_init(&e->base, &empty_ops);
	e->status = status;
	return &e->base;
}

/* ------------------------------------------------------------------------ */
/* The merging iterator                                                      */

/*
 * The valid children sit in a binary heap keyed on their current key: a
 * min-heap while moving forward, a max-heap while moving backward, so the
 * top is always the current entry and a step costs O(log n) comparisons.
 *
 * Changing direction is the subtle part. Moving forward, every child other
 * than the current one is at its first key > current; moving backward, at
 * its last key < current. So before a reverse step every other child is
 * re-sought to the current key and stepped back (or put on its last entry
 * when nothing is >= the key), and before a forward step every other child
 * is re-sought to the current key and stepped past it if it sits on it.
 *
 * Seeks are lazy where a child can tell cheaply (iter_may_hold: a table's
 * bloom filter) that it holds nothing with the target's user key. Such a
 * child is left unsought ("postponed") while another child sits on that
 * user key: the postponed child's first entry >= target then has a greater
 * user key, so it cannot be the current entry. Once the merge moves past
 * the user key, or when no other child sits on it, the postponed children
 * are sought to the target and join the heap. A seek to a key that exists
 * thus reads a data block only in the tables that hold the key.
 */
enum merge_dir { MERGE_FORWARD, MERGE_REVERSE };

struct merge_iter {
	struct iter base;
	struct iter **children;
	/* the current key of each valid child: a child moves only through this
	 * iterator, so the slice stays good until then, and the heap compares
	 * without a chain of indirect calls per comparison */
	struct slice *keys;
	int n;
	int *heap; /* indices into children of the valid ones */
	int heap_n;
	enum merge_dir dir;
	int err; /* the error that stopped the merge, 0 if none */
	/* postponed[i]: child i was not sought to target (forward only); its
	 * position and status mean nothing until it is */
	unsigned char *postponed;
	int npostponed;
	struct buf target; /* the last seek's target while any is postponed */
};

/* Whether child a belongs above child b in the heap. */
static int merge_above(const struct merge_iter *m, int a, int b)
{
	int c = ikey_cmp(m->keys[a], m->keys[b]);
	if (c == 0)
		c = a < b ? -1 : 1; /* cannot happen; keeps the order total */
	return m->dir == MERGE_FORWARD ? c < 0 : c > 0;
}

static void merge_sift_down(struct merge_iter *m, int i)
{
	for (;;) {
		int best = i, l = 2 * i + 1, r = l + 1;
		if (l < m->heap_n && merge_above(m, m->heap[l], m->heap[best]))
			best = l;
		if (r < m->heap_n && merge_above(m, m->heap[r], m->heap[best]))
			best = r;
		if (best == i)
			return;
		int t = m->heap[i];
		m->heap[i] = m->heap[best];
		m->heap[best] = t;
		i = best;
	}
}

/* Notes the error of a child that went invalid. */
static void merge_check(struct merge_iter *m, struct iter *child)
{
	int s = iter_status(child);
	if (s && !m->err)
		m->err = s;
}

/* Rebuilds the heap from every child's position, in direction dir. */
static void merge_build(struct merge_iter *m, enum merge_dir dir)
{
	m->dir = dir;
	m->heap_n = 0;
	for (int i = 0; i < m->n; i++) {
		if (m->postponed[i])
			continue;
		if (iter_valid(m->children[i])) {
			m->keys[i] = iter_key(m->children[i]);
			m->heap[m->heap_n++] = i;
		} else
			merge_check(m, m->children[i]);
	}
	for (int i = m->heap_n / 2 - 1; i >= 0; i--)
		merge_sift_down(m, i);
}

/* Restores the heap after the top child moved. */
static void merge_fix_top(struct merge_iter *m)
{
	struct iter *top = m->children[m->heap[0]];
	if (!iter_valid(top)) {
		merge_check(m, top);
		m->heap[0] = m->heap[--m->heap_n];
	} else {
		m->keys[m->heap[0]] = iter_key(top);
	}
	merge_sift_down(m, 0);
}

static void merge_forget_postponed(struct merge_iter *m)
{
	if (!m->npostponed)
		return;
	memset(m->postponed, 0, (size_t)m->n);
	m->npostponed = 0;
}

/* Seeks the postponed children once the top no longer sits on the target's
 * user key: from there on they may hold the current entry. Their first entry
 * >= target lies past every entry of that user key, so they join the
 * forward merge in the right place. */
static void merge_settle(struct merge_iter *m)
{
	if (!m->npostponed)
		return;
	assert(m->dir == MERGE_FORWARD);
	struct slice target = buf_slice(&m->target);
	if (m->heap_n > 0 && !m->err) {
		struct slice top = m->keys[m->heap[0]];
		if (top.len >= IKEY_TRAILER && slice_eq(ikey_user(top), ikey_user(target)))
			return;
	}
	for (int i = 0; i < m->n; i++)
		if (m->postponed[i])
			iter_seek(m->children[i], target);
	merge_forget_postponed(m);
	merge_build(m, MERGE_FORWARD);
}

static int merge_valid(struct iter *it)
{
	struct merge_iter *m = (struct merge_iter *)it;
	return !m->err && m->heap_n > 0;
}

static void merge_seek_first(struct iter *it)
{
	struct merge_iter *m = (struct merge_iter *)it;
	m->err = 0;
	merge_forget_postponed(m);
	for (int i = 0; i < m->n; i++)
		iter_seek_first(m->children[i]);
	merge_build(m, MERGE_FORWARD);
}

static void merge_seek_last(struct iter *it)
{
	struct merge_iter *m = (struct merge_iter *)it;
	m->err = 0;
	merge_forget_postponed(m);
	for (int i = 0; i < m->n; i++)
		iter_seek_last(m->children[i]);
	merge_build(m, MERGE_REVERSE);
}

static void merge_seek(struct iter *it, struct slice target)
{
	struct merge_iter *m = (struct merge_iter *)it;
	m->err = 0;
	merge_forget_postponed(m);
	/* without a copy of the target nothing can be postponed */
	int lazy = target.len >= IKEY_TRAILER && !buf_set(&m->target, target.data, target.len);
	for (int i = 0; i < m->n; i++) {
		struct iter *c = m->children[i];
		if (lazy && !iter_may_hold(c, target)) {
			m->postponed[i] = 1;
			m->npostponed++;
		} else {
			iter_seek(c, target);
		}
	}
	merge_build(m, MERGE_FORWARD);
	merge_settle(m);
}

static void merge_next(struct iter *it)
{
	struct merge_iter *m = (struct merge_iter *)it;
	assert(merge_valid(it));
	if (m->dir != MERGE_FORWARD) {
		int cur = m->heap[0];
		/* the current child does not move, so key stays valid */
		struct slice key = m->keys[cur];
		for (int i = 0; i < m->n; i++) {
			struct iter *c = m->children[i];
			if (i == cur)
				continue;
			iter_seek(c, key);
			if (iter_valid(c) && ikey_cmp(iter_key(c), key) == 0)
				iter_next(c);
		}
		merge_build(m, MERGE_FORWARD);
		if (m->err)
			return;
		assert(m->heap_n > 0 && m->heap[0] == cur);
	}
	iter_next(m->children[m->heap[0]]);
	merge_fix_top(m);
	merge_settle(m);
}

static void merge_prev(struct iter *it)
{
	struct merge_iter *m = (struct merge_iter *)it;
	assert(merge_valid(it));
	if (m->dir != MERGE_REVERSE) {
		int cur = m->heap[0];
		struct slice key = m->keys[cur];
		/* every child but cur is sought below, the postponed ones too */
		merge_forget_postponed(m);
		for (int i = 0; i < m->n; i++) {
			struct iter *c = m->children[i];
			if (i == cur)
				continue;
			iter_seek(c, key);
			if (iter_valid(c))
				iter_prev(c); /* the first entry >= key is > key */
			else if (!iter_status(c))
				iter_seek_last(c); /* every entry is < key */
		}
		merge_build(m, MERGE_REVERSE);
		if (m->err)
			return;
		assert(m->heap_n > 0 && m->heap[0] == cur);
	}
	iter_prev(m->children[m->heap[0]]);
	merge_fix_top(m);
}

static struct slice merge_key(struct iter *it)
{
	struct merge_iter *m = (struct merge_iter *)it;
	assert(merge_valid(it));
	return m->keys[m->heap[0]];
}

static struct slice merge_value(struct iter *it)
{
	struct merge_iter *m = (struct merge_iter *)it;
	assert(merge_valid(it));
	return iter_value(m->children[m->heap[0]]);
}

static int merge_status(struct iter *it)
{
	struct merge_iter *m = (struct merge_iter *)it;
	if (m->err)
		return m->err;
	for (int i = 0; i < m->n; i++) {
		int s = m->postponed[i] ? 0 : iter_status(m->children[i]);
		if (s)
			return s;
	}
	return 0;
}

static void merge_destroy(struct iter *it)
{
	struct merge_iter *m = (struct merge_iter *)it;
	for (int i = 0; i < m->n; i++)
		iter_free(m->children[i]);
	buf_free(&m->target);
	free(m);
}

static const struct iter_ops merge_ops = {
        .valid = merge_valid,
        .seek_first = merge_seek_first,
        .seek_last = merge_seek_last,
        .seek = merge_seek,
        .next = merge_next,
        .prev = merge_prev,
        .key = merge_key,
        .value = merge_value,
        .status = merge_status,
        .destroy = merge_destroy,
};

struct iter *iter_merge_new(struct iter **children, int n)
{
	assert(n >= 0);
	if (n == 0)
		return iter_empty_new(0);
	if (n == 1)
		return children[0];
	struct merge_iter *m =
	        malloc(sizeof(*m) + (size_t)n * (sizeof(struct iter *) + sizeof(struct slice) +
	                                         sizeof(int) + 1));
	if (!m) {
		for (int i = 0; i < n; i++)
			iter_free(children[i]);
		return NULL;
	}
	iter_init(&m->base, &merge_ops);
	m->children = (struct iter **)(m + 1);
	m->keys = (struct slice *)(m->children + n);
	m->heap = (int *)(m->keys + n);
	m->postponed = (unsigned char *)(m->heap + n);
	memset(m->postponed, 0, (size_t)n);
	m->npostponed = 0;
	memset(&m->target, 0, sizeof(m->target));
	m->n = n;
	m->heap_n = 0;
	m->dir = MERGE_FORWARD;
	m->err = 0;
	for (int i = 0; i < n; i++)
		m->children[i] = children[i];
	return &m->base;
}

/* ------------------------------------------------------------------------ */
/* The two-level iterator                                                    */

/*
 * index is positioned on the entry whose value names the data iterator in
 * use. The value is kept, so that a seek landing in the same block or table
 * reuses the open data iterator instead of reading it again. Empty data
 * iterators are skipped in the direction of travel.
 */
struct two_level_iter {
	struct iter base;
	struct iter *index;
	struct iter *(*open_fn)(void *arg, struct slice index_value);
	int (*may_hold_fn)(void *arg, struct slice target); /* NULL: ask data */
	void *arg;
	struct iter *data;
	struct buf data_value; /* the index value data was opened from */
	int err;
};

static void two_level_set_data(struct two_level_iter *t, struct iter *data)
{
	iter_free(t->data);
	t->data = data;
	if (!data)
		buf_clear(&t->data_value);
}

/* Opens the data iterator named by the index entry, unless it is open. */
static void two_level_init_data(struct two_level_iter *t)
{
	if (!iter_valid(t->index)) {
		two_level_set_data(t, NULL);
		return;
	}
	struct slice v = iter_value(t->index);
	if (t->data && slice_eq(v, buf_slice(&t->data_value)))
		return;
	two_level_set_data(t, NULL);
	struct iter *data = t->open_fn(t->arg, v);
	if (!data || buf_set(&t->data_value, v.data, v.len)) {
		iter_free(data);
		t->err = CAIRN_ENOMEM;
		return;
	}
	t->data = data;
}

/* Whether the search for a non-empty data iterator must stop here: on an
 * error, or with the index exhausted. */
static int two_level_stop(struct two_level_iter *t)
{
	if (t->err)
		return 1;
	if (t->data) {
		if (iter_valid(t->data))
			return 1;
		t->err = iter_status(t->data);
		if (t->err)
			return 1;
	}
	if (!iter_valid(t->index)) {
		two_level_set_data(t, NULL);
		return 1;
	}
	return 0;
}

static void two_level_skip_forward(struct two_level_iter *t)
{
	while (!two_level_stop(t)) {
		iter_next(t->index);
		two_level_init_data(t);
		if (t->data)
			iter_seek_first(t->data);
	}
}

static void two_level_skip_backward(struct two_level_iter *t)
{
	while (!two_level_stop(t)) {
		iter_prev(t->index);
		two_level_init_data(t);
		if (t->data)
			iter_seek_last(t->data);
	}
}

static int two_level_valid(struct iter *it)
{
	struct two_level_iter *t = (struct two_level_iter *)it;
	return !t->err && t->data && iter_valid(t->data);
}

static void two_level_seek(struct iter *it, struct slice target)
{
	struct two_level_iter *t = (struct two_level_iter *)it;
	t->err = 0;
	iter_seek(t->index, target);
	two_level_init_data(t);
	if (t->data)
		iter_seek(t->data, target);
	two_level_skip_forward(t);
}

static int two_level_may_hold(struct iter *it, struct slice target)
{
	struct two_level_iter *t = (struct two_level_iter *)it;
	if (t->may_hold_fn)
		return t->may_hold_fn(t->arg, target);
	/* the first entry >= target is in the data iterator the index names,
	 * and if that one holds nothing of target's user key from target on,
	 * the next ones start past that user key */
	t->err = 0;
	iter_seek(t->index, target);
	if (!iter_valid(t->index))
		return iter_status(t->index) ? 1 : 0;
	two_level_init_data(t);
	if (t->err || !t->data || iter_status(t->data))
		return 1;
	return iter_may_hold(t->data, target);
}

static void two_level_seek_first(struct iter *it)
{
	struct two_level_iter *t = (struct two_level_iter *)it;
	t->err = 0;
	iter_seek_first(t->index);
	two_level_init_data(t);
	if (t->data)
		iter_seek_first(t->data);
	two_level_skip_forward(t);
}

static void two_level_seek_last(struct iter *it)
{
	struct two_level_iter *t = (struct two_level_iter *)it;
	t->err = 0;
	iter_seek_last(t->index);
	two_level_init_data(t);
	if (t->data)
		iter_seek_last(t->data);
	two_level_skip_backward(t);
}

static void two_level_next(struct iter *it)
{
	struct two_level_iter *t = (struct two_level_iter *)it;
	assert(two_level_valid(it));
	iter_next(t->data);
	two_level_skip_forward(t);
}

static void two_level_prev(struct iter *it)
{
	struct two_level_iter *t = (struct two_level_iter *)it;
	assert(two_level_valid(it));
	iter_prev(t->data);
	two_level_skip_backward(t);
}

static struct slice two_level_key(struct iter *it)
{
	struct two_level_iter *t = (struct two_level_iter *)it;
	assert(!t->err && t->data); /* the data iterator asserts it is valid */
	return iter_key(t->data);
}

static struct slice two_level_value(struct iter *it)
{
	struct two_level_iter *t = (struct two_level_iter *)it;
	assert(!t->err && t->data);
	return iter_value(t->data);
}

static int two_level_status(struct iter *it)
{
	struct two_level_iter *t = (struct two_level_iter *)it;
	if (t->err)
		return t->err;
	int s = iter_status(t->index);
	if (s)
		return s;
	return t->data ? iter_status(t->data) : 0;
}

static void two_level_destroy(struct iter *it)
{
	struct two_level_iter *t = (struct two_level_iter *)it;
	iter_free(t->data);
	iter_free(t->index);
	buf_free(&t->data_value);
	free(t);
}

static const struct iter_ops two_level_ops = {
        .valid = two_level_valid,
        .seek_first = two_level_seek_first,
        .seek_last = two_level_seek_last,
        .seek = two_level_seek,
        .next = two_level_next,
        .prev = two_level_prev,
        .key = two_level_key,
        .value = two_level_value,
        .status = two_level_status,
        .destroy = two_level_destroy,
        .may_hold = two_level_may_hold,
};

struct iter *iter_two_level_new(struct iter *index,
                                struct iter *(*open_fn)(void *arg, struct slice index_value),
                                void *arg)
{
	if (!index)
		return NULL;
	struct two_level_iter *t = calloc(1, sizeof(*t));
	if (!t) {
		iter_free(index);
		return NULL;
	}
	iter_init(&t->base, &two_level_ops);
	t->index = index;
	t->open_fn = open_fn;
	t->arg = arg;
	return &t->base;
}

void iter_two_level_set_may_hold(struct iter *it, int (*fn)(void *arg, struct slice target))
{
	assert(it->ops == &two_level_ops);
	((struct two_level_iter *)it)->may_hold_fn = fn;
}
