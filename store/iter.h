/*
 * iter.h - the internal iterator: one interface over memtables, table
 * blocks, whole tables, levels and merges of all of them, in both directions.
 *
 * Internal iterators yield internal keys and internal values (dbformat.h) in
 * internal-key order. key() and value() stay valid until the iterator moves.
 * An iterator that hits an error becomes invalid and status() returns it.
 * The database iterator (dbiter.c) turns a merged internal iterator into the
 * public cairn_iter: snapshot visibility, tombstones, one entry per key.
 */
#ifndef CAIRN_ITER_H
#define CAIRN_ITER_H

#include "util.h"

struct iter;

struct iter_ops {
	int (*valid)(struct iter *it);
	void (*seek_first)(struct iter *it);
	void (*seek_last)(struct iter *it);
	/* first entry whose key >= target (an internal key) */
	void (*seek)(struct iter *it, struct slice target);
	void (*next)(struct iter *it);
	void (*prev)(struct iter *it);
	struct slice (*key)(struct iter *it);
	struct slice (*value)(struct iter *it);
	int (*status)(struct iter *it);
	void (*destroy)(struct iter *it);
	/* Optional (NULL: always 1). Returns 0 only when the iterator surely
	 * holds no entry >= target (an internal key) with target's user key,
	 * as a bloom filter can tell without reading a block; 1 otherwise, and
	 * on any error (the seek that follows reports it). May move the
	 * iterator: its position and status are undefined until the next
	 * seek_first, seek_last or seek. Lets the merge postpone seeks. */
	int (*may_hold)(struct iter *it, struct slice target);
};

/* Implementations embed this as their first member. */
struct iter {
	const struct iter_ops *ops;
	/* called by iter_free after destroy: lets the creator release what the
	 * iterator pinned (a memtable, a table cache handle, a version) */
	void (*cleanup)(void *a, void *b);
	void *cleanup_a, *cleanup_b;
};

static inline int iter_valid(struct iter *it)
{
	return it->ops->valid(it);
}
static inline void iter_seek_first(struct iter *it)
{
	it->ops->seek_first(it);
}
static inline void iter_seek_last(struct iter *it)
{
	it->ops->seek_last(it);
}
static inline void iter_seek(struct iter *it, struct slice t)
{
	it->ops->seek(it, t);
}
static inline void iter_next(struct iter *it)
{
	it->ops->next(it);
}
static inline void iter_prev(struct iter *it)
{
	it->ops->prev(it);
}
static inline struct slice iter_key(struct iter *it)
{
	return it->ops->key(it);
}
static inline struct slice iter_value(struct iter *it)
{
	return it->ops->value(it);
}
static inline int iter_status(struct iter *it)
{
	return it->ops->status(it);
}
static inline int iter_may_hold(struct iter *it, struct slice target)
{
	return it->ops->may_hold ? it->ops->may_hold(it, target) : 1;
}

/* Destroys it and runs its cleanup. NULL is accepted. */
void iter_free(struct iter *it);
/* Registers the cleanup run by iter_free (one per iterator). */
void iter_set_cleanup(struct iter *it, void (*fn)(void *, void *), void *a, void *b);

/* An iterator over nothing; with status != 0, an iterator that reports it. */
struct iter *iter_empty_new(int status);

/* Merges n children (ownership passes to the merge; they are freed with it)
 * into one stream in internal-key order; equal keys cannot occur because
 * sequence numbers are unique. Works in both directions, switching direction
 * as LevelDB's merging iterator does. A seek skips the children that cannot
 * hold the target's user key (iter_may_hold) while another child sits on
 * it, and seeks them only once the merge moves past that user key. Returns
 * NULL on allocation failure (the children are freed then too). */
struct iter *iter_merge_new(struct iter **children, int n);

/* A two-level iterator: index yields values that name a block or a table;
 * open_fn turns one such value into an iterator over its entries. Used for
 * table index -> data block, and level file list -> table. Owns index. */
struct iter *iter_two_level_new(struct iter *index,
                                struct iter *(*open_fn)(void *arg, struct slice index_value),
                                void *arg);
/* Gives a two-level iterator its may_hold: fn(arg, target) answers for the
 * whole iterator (a table's bloom filter). Without it, may_hold seeks the
 * index and asks the data iterator it names, which is right when every
 * index key is >= the keys of its data iterator and < those of the next
 * (a level's largest keys, a table's separators). */
void iter_two_level_set_may_hold(struct iter *it, int (*fn)(void *arg, struct slice target));

#endif
