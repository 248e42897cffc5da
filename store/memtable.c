/*
 * memtable.c - the in-memory ordered table that takes every write first.
 *
 * Every write lands here (after the log) and stays until the table is frozen
 * and flushed to a level-0 table. It is a skiplist in the style of LevelDB's
 * db/skiplist.h, whose nodes live in an arena:
 *
 * - The arena hands out memory from 16 KiB blocks and frees nothing until the
 *   whole memtable goes; an allocation over a quarter block gets a block of
 *   its own so large values do not waste the rest of a shared block. Its
 *   usage (every block byte plus the block headers) is what the engine
 *   compares with the memtable_size option.
 * - Blocks are mapped from the kernel (mmap), not taken from malloc: a
 *   memtable is megabytes allocated by the writer's thread and freed by the
 *   flushing one, and through malloc that churn stayed in the process as
 *   fragmented free heap in several per-thread arenas (peak RSS 8-10 MiB
 *   over the live data in cairn-bench). munmap gives it back at once.
 * - A node holds its internal key (user key + 8-byte trailer) and internal
 *   value (8-byte time + value bytes) right after its tower of next pointers,
 *   all in one arena allocation. Nodes are ordered by ikey_cmp.
 * - One writer at a time (the caller serialises them) and any number of
 *   readers without locks. The writer fills a new node, including its own
 *   next pointers, with plain and relaxed stores, then links it into each
 *   level from the bottom up with a release store; readers follow pointers
 *   with acquire loads, so a node they reach is always fully written. Nodes
 *   are never unlinked or moved. max_height is read relaxed: a reader that
 *   sees a new height before the head's pointer at that level just finds
 *   NULL there and drops a level.
 * - Tower heights come from a splitmix64 PRNG with a fixed seed held in the
 *   memtable, so the same inserts give the same shape and the same usage in
 *   every run (DESIGN.md, "Determinism").
 *
 * The table is reference counted (the engine, each flush and each iterator
 * hold a ref); the last unref frees the arena, and with it every node.
 */
#include <assert.h>
#include <stdalign.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <sys/mman.h>

#include "cairn.h"
#include "memtable.h"

#define MEM_MAX_HEIGHT 12
#define MEM_BRANCHING  4
#define MEM_PRNG_SEED  UINT64_C(0x636169726d656d74) /* any constant: runs must repeat */

#define ARENA_BLOCK_SIZE (16 * 1024) /* well under the smallest memtable_size (64 KiB) */
#define ARENA_ALIGN      alignof(void *)
#define ARENA_PAGE       4096u /* rounding of mapped lengths; any page size divides it up */

struct arena_block {
	struct arena_block *next;
	size_t size; /* bytes of data */
	alignas(void *) char data[];
};

struct arena {
	char *ptr;   /* free space in the current block */
	size_t left; /* bytes left at ptr */
	struct arena_block *blocks;
	_Atomic size_t usage; /* read by other threads (the engine's size check) */
};

struct mem_node {
	const char *key; /* internal key, followed by the internal value */
	uint32_t klen;
	uint32_t vlen;
	/* next[0..height-1]; the height lives only in the allocation size */
	_Atomic(struct mem_node *) next[];
};

struct memtable {
	atomic_int refs;
	atomic_int max_height;
	_Atomic uint64_t entries;
	uint64_t rng; /* the writer's alone */
	struct mem_node *head;
	struct arena arena;
};

/* ---- arena --------------------------------------------------------------- */

/* The mapped length of a block holding size bytes: whole pages. */
static size_t arena_map_len(size_t size)
{
	size_t len = sizeof(struct arena_block) + size;
	return (len + ARENA_PAGE - 1) & ~(size_t)(ARENA_PAGE - 1);
}

/* Data bytes of a standard block: the mapping is exactly ARENA_BLOCK_SIZE. */
#define ARENA_BLOCK_DATA (ARENA_BLOCK_SIZE - sizeof(struct arena_block))

static char *arena_new_block(struct arena *a, size_t size)
{
	size_t len = arena_map_len(size);
	void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		return NULL;
	struct arena_block *b = p;
	b->next = a->blocks;
	b->size = size;
	a->blocks = b;
	atomic_fetch_add_explicit(&a->usage, len, memory_order_relaxed);
	return b->data;
}

/* Returns n bytes aligned for a pointer, or NULL when malloc fails. */
static void *arena_alloc(struct arena *a, size_t n)
{
	size_t pad = (size_t)(-(uintptr_t)a->ptr & (ARENA_ALIGN - 1));
	if (a->ptr && n + pad <= a->left) {
		char *p = a->ptr + pad;
		a->ptr = p + n;
		a->left -= n + pad;
		return p;
	}
	/* A large allocation gets its own block, so at most a quarter block is
	 * ever wasted at the end of a block; the tail of its last page becomes
	 * the current block when that leaves more room than the current one. */
	size_t size = ARENA_BLOCK_DATA;
	if (n > ARENA_BLOCK_DATA / 4)
		size = arena_map_len(n) - sizeof(struct arena_block);
	char *p = arena_new_block(a, size);
	if (!p)
		return NULL;
	if (!a->ptr || size - n > a->left) {
		a->ptr = p + n;
		a->left = size - n;
	}
	return p;
}

static void arena_free(struct arena *a)
{
	struct arena_block *b = a->blocks;
	while (b) {
		struct arena_block *next = b->next;
		munmap(b, arena_map_len(b->size));
		b = next;
	}
	a->blocks = NULL;
}

/* ---- skiplist ------------------------------------------------------------ */

static inline struct slice node_key(const struct mem_node *n)
{
	return slice_make(n->key, n->klen);
}

static inline struct slice node_value(const struct mem_node *n)
{
	return slice_make(n->key + n->klen, n->vlen);
}

static inline struct mem_node *node_next(struct mem_node *n, int level)
{
	return atomic_load_explicit(&n->next[level], memory_order_acquire);
}

static inline int mem_height(const struct memtable *m)
{
	return atomic_load_explicit(&m->max_height, memory_order_relaxed);
}

/* Allocates a node of the given height with room for klen + vlen bytes of
 * data after its tower. */
static struct mem_node *node_alloc(struct memtable *m, int height, size_t klen, size_t vlen)
{
	size_t tower = sizeof(struct mem_node) + (size_t)height * sizeof(struct mem_node *);
	struct mem_node *n = arena_alloc(&m->arena, tower + klen + vlen);
	if (!n)
		return NULL;
	n->key = (const char *)n + tower;
	n->klen = (uint32_t)klen;
	n->vlen = (uint32_t)vlen;
	for (int i = 0; i < height; i++)
		atomic_init(&n->next[i], NULL);
	return n;
}

/* 1 with probability 3/4, 2 with 3/16, ...: a quarter of the nodes of each
 * level reach the next, as LevelDB does. */
static int mem_random_height(struct memtable *m)
{
	int h = 1;
	while (h < MEM_MAX_HEIGHT && prng_below(&m->rng, MEM_BRANCHING) == 0)
		h++;
	return h;
}

/* The first node >= key, or NULL. When prev is not NULL, prev[i] gets the
 * last node < key on level i, for every level below the current height. */
static struct mem_node *mem_find_ge(struct memtable *m, struct slice key, struct mem_node **prev)
{
	struct mem_node *x = m->head;
	int level = mem_height(m) - 1;
	for (;;) {
		struct mem_node *next = node_next(x, level);
		if (next && ikey_cmp(node_key(next), key) < 0) {
			x = next;
			continue;
		}
		if (prev)
			prev[level] = x;
		if (level == 0)
			return next;
		level--;
	}
}

/* The last node < key, or the head when there is none. */
static struct mem_node *mem_find_lt(struct memtable *m, struct slice key)
{
	struct mem_node *x = m->head;
	int level = mem_height(m) - 1;
	for (;;) {
		struct mem_node *next = node_next(x, level);
		if (next && ikey_cmp(node_key(next), key) < 0) {
			x = next;
			continue;
		}
		if (level == 0)
			return x;
		level--;
	}
}

/* The last node, or the head when the table is empty. */
static struct mem_node *mem_find_last(struct memtable *m)
{
	struct mem_node *x = m->head;
	int level = mem_height(m) - 1;
	for (;;) {
		struct mem_node *next = node_next(x, level);
		if (next) {
			x = next;
			continue;
		}
		if (level == 0)
			return x;
		level--;
	}
}

/* ---- the table ----------------------------------------------------------- */

int mem_new(struct memtable **mp)
{
	*mp = NULL;
	struct memtable *m = calloc(1, sizeof(*m));
	if (!m)
		return CAIRN_ENOMEM;
	atomic_init(&m->refs, 1);
	atomic_init(&m->max_height, 1);
	atomic_init(&m->entries, 0);
	atomic_init(&m->arena.usage, 0);
	m->rng = MEM_PRNG_SEED;
	m->head = node_alloc(m, MEM_MAX_HEIGHT, 0, 0);
	if (!m->head) {
		arena_free(&m->arena);
		free(m);
		return CAIRN_ENOMEM;
	}
	*mp = m;
	return 0;
}

void mem_ref(struct memtable *m)
{
	int old = atomic_fetch_add_explicit(&m->refs, 1, memory_order_relaxed);
	assert(old > 0);
	(void)old;
}

void mem_unref(struct memtable *m)
{
	if (!m)
		return;
	/* acq_rel: every holder's use of the arena happens before the free */
	int old = atomic_fetch_sub_explicit(&m->refs, 1, memory_order_acq_rel);
	assert(old > 0);
	if (old != 1)
		return;
	arena_free(&m->arena);
	free(m);
}

/* Links n, whose internal key is already written, into every level below
 * height. Its own pointers are set before it is published so a reader that
 * reaches it can follow them. */
static int mem_link(struct memtable *m, struct mem_node *n, int height)
{
	struct mem_node *prev[MEM_MAX_HEIGHT];
	struct mem_node *ge = mem_find_ge(m, node_key(n), prev);
	/* Writers never repeat a (key, seq), but a damaged log replayed by
	 * recovery can: refuse it rather than corrupt the list. */
	if (ge && ikey_cmp(node_key(ge), node_key(n)) == 0)
		return CAIRN_ECORRUPT;

	int cur = mem_height(m);
	if (height > cur) {
		for (int i = cur; i < height; i++)
			prev[i] = m->head;
		atomic_store_explicit(&m->max_height, height, memory_order_relaxed);
	}
	for (int i = 0; i < height; i++) {
		struct mem_node *next =
		        atomic_load_explicit(&prev[i]->next[i], memory_order_relaxed);
		atomic_store_explicit(&n->next[i], next, memory_order_relaxed);
		atomic_store_explicit(&prev[i]->next[i], n, memory_order_release);
	}
	return 0;
}

int mem_add(struct memtable *m, uint64_t seq, enum value_type type, struct slice key,
            int64_t time_ns, struct slice value)
{
	if (type != TYPE_VALUE && type != TYPE_DELETION && type != TYPE_BLOB)
		return CAIRN_EINVAL;
	if (seq > MAX_SEQUENCE)
		return CAIRN_EINVAL;
	/* mem_get builds its lookup key on the stack, so keys are bounded */
	if (key.len > CAIRN_MAX_KEY_SIZE || value.len > UINT32_MAX - IVAL_HEADER)
		return CAIRN_ETOOBIG;

	size_t klen = key.len + IKEY_TRAILER, vlen = IVAL_HEADER + value.len;
	int height = mem_random_height(m);
	struct mem_node *n = node_alloc(m, height, klen, vlen);
	if (!n)
		return CAIRN_ENOMEM;
	char *p = (char *)n->key;
	if (key.len)
		memcpy(p, key.data, key.len);
	enc_fixed64(p + key.len, ikey_pack(seq, type));
	enc_fixed64(p + klen, (uint64_t)time_ns);
	if (value.len)
		memcpy(p + klen + IVAL_HEADER, value.data, value.len);

	int r = mem_link(m, n, height);
	if (r)
		return r; /* n stays in the arena, unreachable, until the table goes */
	atomic_fetch_add_explicit(&m->entries, 1, memory_order_relaxed);
	return 0;
}

enum mem_get_result mem_get(struct memtable *m, struct slice key, uint64_t seq, struct slice *ival,
                            uint64_t *found_seq)
{
	/* mem_add refuses longer keys, so such a key is never here */
	if (key.len > CAIRN_MAX_KEY_SIZE)
		return MEM_ABSENT;
	if (seq > MAX_SEQUENCE)
		seq = MAX_SEQUENCE;
	char buf[CAIRN_MAX_KEY_SIZE + IKEY_TRAILER];
	if (key.len)
		memcpy(buf, key.data, key.len);
	enc_fixed64(buf + key.len, ikey_pack(seq, TYPE_SEEK));

	/* (key, seq, TYPE_SEEK) sorts before every version of key at seq or
	 * older, so the first node at or after it is the newest visible one */
	struct mem_node *n = mem_find_ge(m, slice_make(buf, key.len + IKEY_TRAILER), NULL);
	if (!n || !slice_eq(ikey_user(node_key(n)), key))
		return MEM_ABSENT;
	if (found_seq)
		*found_seq = ikey_seq(node_key(n));
	if (ikey_type(node_key(n)) == TYPE_DELETION)
		return MEM_DELETED;
	if (ival)
		*ival = node_value(n);
	return ikey_type(node_key(n)) == TYPE_BLOB ? MEM_BLOB : MEM_FOUND;
}

size_t mem_usage(const struct memtable *m)
{
	return atomic_load_explicit(&m->arena.usage, memory_order_relaxed);
}

uint64_t mem_entries(const struct memtable *m)
{
	return atomic_load_explicit(&m->entries, memory_order_relaxed);
}

/* ---- iterator ------------------------------------------------------------ */

struct mem_iter {
	struct iter base; /* first: the iter functions cast back */
	struct memtable *m;
	struct mem_node *node; /* NULL when not valid */
};

static inline struct mem_iter *mi(struct iter *it)
{
	return (struct mem_iter *)it;
}

/* The head is a sentinel, never an entry. */
static void mi_set(struct mem_iter *i, struct mem_node *n)
{
	i->node = n == i->m->head ? NULL : n;
}

static int mi_valid(struct iter *it)
{
	return mi(it)->node != NULL;
}

static void mi_seek_first(struct iter *it)
{
	struct mem_iter *i = mi(it);
	i->node = node_next(i->m->head, 0);
}

static void mi_seek_last(struct iter *it)
{
	struct mem_iter *i = mi(it);
	mi_set(i, mem_find_last(i->m));
}

static void mi_seek(struct iter *it, struct slice target)
{
	struct mem_iter *i = mi(it);
	if (target.len >= IKEY_TRAILER) {
		i->node = mem_find_ge(i->m, target, NULL);
		return;
	}
	/* Not an internal key: treat it as a user key and land before every
	 * version of it, rather than read before the buffer. */
	char buf[IKEY_TRAILER * 2];
	memcpy(buf, target.data, target.len);
	enc_fixed64(buf + target.len, ikey_pack(MAX_SEQUENCE, TYPE_SEEK));
	i->node = mem_find_ge(i->m, slice_make(buf, target.len + IKEY_TRAILER), NULL);
}

static void mi_next(struct iter *it)
{
	struct mem_iter *i = mi(it);
	if (i->node)
		i->node = node_next(i->node, 0);
}

/* No back pointers: search for the last node before the current one. */
static void mi_prev(struct iter *it)
{
	struct mem_iter *i = mi(it);
	if (i->node)
		mi_set(i, mem_find_lt(i->m, node_key(i->node)));
}

static struct slice mi_key(struct iter *it)
{
	struct mem_iter *i = mi(it);
	return i->node ? node_key(i->node) : slice_make(NULL, 0);
}

static struct slice mi_value(struct iter *it)
{
	struct mem_iter *i = mi(it);
	return i->node ? node_value(i->node) : slice_make(NULL, 0);
}

static int mi_status(struct iter *it)
{
	(void)it;
	return 0;
}

static void mi_destroy(struct iter *it)
{
	struct mem_iter *i = mi(it);
	mem_unref(i->m);
	free(i);
}

static const struct iter_ops mem_iter_ops = {
        .valid = mi_valid,
        .seek_first = mi_seek_first,
        .seek_last = mi_seek_last,
        .seek = mi_seek,
        .next = mi_next,
        .prev = mi_prev,
        .key = mi_key,
        .value = mi_value,
        .status = mi_status,
        .destroy = mi_destroy,
};

struct iter *mem_iter_new(struct memtable *m)
{
	struct mem_iter *i = calloc(1, sizeof(*i));
	if (!i)
		return NULL;
	i->base.ops = &mem_iter_ops;
	i->m = m;
	mem_ref(m);
	return &i->base;
}
