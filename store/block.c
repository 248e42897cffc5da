/*
 * block.c - building blocks and iterating over them.
 *
 * An entry is varint32 shared, varint32 non_shared, varint32 value_len, the
 * non_shared bytes of the key after the shared prefix of the previous key,
 * then the value. Every restart_interval entries one entry has shared = 0
 * and its offset goes into the restart array at the end of the block, so a
 * seek binary-searches whole keys at the restart points and a backward step
 * rescans from the nearest restart point before the current entry.
 *
 * Reading is defensive: the restart array is checked once in block_parse,
 * and every entry is checked as it is decoded (varints inside the entries,
 * shared <= the previous key, lengths inside the entries, keys at least one
 * internal-key trailer long). A failed check turns the iterator invalid with
 * CAIRN_ECORRUPT.
 */
#include "block.h"

#include <assert.h>
#include <stdlib.h>

#include "cairn.h"
#include "dbformat.h"

/* ---- building ---- */

void bb_init(struct block_builder *b, int restart_interval)
{
	memset(b, 0, sizeof(*b));
	b->restart_interval = restart_interval < 1 ? 1 : restart_interval;
}

void bb_free(struct block_builder *b)
{
	buf_free(&b->data);
	buf_free(&b->restarts);
	buf_free(&b->last_key);
	b->entries = 0;
}

void bb_reset(struct block_builder *b)
{
	buf_clear(&b->data);
	buf_clear(&b->restarts);
	buf_clear(&b->last_key);
	b->nrestarts = 0;
	b->counter = 0;
	b->entries = 0;
	b->finished = 0;
}

static size_t bb_shared_len(struct slice a, struct slice b)
{
	size_t n = a.len < b.len ? a.len : b.len, i = 0;
	while (i < n && a.data[i] == b.data[i])
		i++;
	return i;
}

int bb_add(struct block_builder *b, struct slice key, struct slice value)
{
	size_t shared = 0;
	int r;

	assert(!b->finished);
	if (key.len > UINT32_MAX || value.len > UINT32_MAX ||
	    (uint64_t)b->data.len + key.len + value.len + 15 > UINT32_MAX)
		return CAIRN_ETOOBIG;
	if (b->entries == 0 || b->counter >= b->restart_interval) {
		r = buf_put_fixed32(&b->restarts, (uint32_t)b->data.len);
		if (r)
			return r;
		b->nrestarts++;
		b->counter = 0;
	} else {
		shared = bb_shared_len(buf_slice(&b->last_key), key);
	}
	size_t non_shared = key.len - shared;
	if ((r = buf_put_varint32(&b->data, (uint32_t)shared)) ||
	    (r = buf_put_varint32(&b->data, (uint32_t)non_shared)) ||
	    (r = buf_put_varint32(&b->data, (uint32_t)value.len)) ||
	    (r = buf_append(&b->data, key.data + shared, non_shared)) ||
	    (r = buf_append(&b->data, value.data, value.len)) ||
	    (r = buf_set(&b->last_key, key.data, key.len)))
		return r;
	b->counter++;
	b->entries++;
	return 0;
}

int bb_finish(struct block_builder *b, struct slice *out)
{
	int r;

	assert(!b->finished);
	if (b->nrestarts == 0) {
		/* an empty block still has one restart point, as every block */
		r = buf_put_fixed32(&b->restarts, 0);
		if (r)
			return r;
		b->nrestarts = 1;
	}
	if ((r = buf_append(&b->data, b->restarts.data, b->restarts.len)) ||
	    (r = buf_put_fixed32(&b->data, b->nrestarts)))
		return r;
	b->finished = 1;
	*out = buf_slice(&b->data);
	return 0;
}

size_t bb_size_estimate(const struct block_builder *b)
{
	size_t restarts = b->nrestarts ? b->restarts.len : 4;
	return b->data.len + restarts + 4;
}

/* ---- parsing ---- */

int block_parse(const char *data, size_t n, struct block *b)
{
	memset(b, 0, sizeof(*b));
	if (n < 4 || n > UINT32_MAX)
		return CAIRN_ECORRUPT;
	uint32_t nr = dec_fixed32(data + n - 4);
	if (nr > (n - 4) / 4)
		return CAIRN_ECORRUPT;
	uint32_t limit = (uint32_t)(n - 4 - 4 * (size_t)nr);
	if (limit > 0) {
		/* entries exist: the first starts at a restart point, and the
		 * restart points are inside the entries in increasing order */
		if (nr == 0 || dec_fixed32(data + limit) != 0)
			return CAIRN_ECORRUPT;
		uint32_t prev = 0;
		for (uint32_t i = 1; i < nr; i++) {
			uint32_t off = dec_fixed32(data + limit + 4 * (size_t)i);
			if (off <= prev || off >= limit)
				return CAIRN_ECORRUPT;
			prev = off;
		}
	}
	b->data = data;
	b->size = n;
	b->restart_offset = limit;
	b->nrestarts = nr;
	return 0;
}

void block_release(struct block *b)
{
	free(b->owned);
	b->owned = NULL;
}

int block_new_owned(char *data, size_t n, struct block **bp)
{
	struct block *b = malloc(sizeof(*b));
	*bp = NULL;
	if (!b) {
		free(data);
		return CAIRN_ENOMEM;
	}
	int r = block_parse(data, n, b);
	if (r) {
		free(data);
		free(b);
		return r;
	}
	b->owned = data;
	*bp = b;
	return 0;
}

void block_free(struct block *b)
{
	if (!b)
		return;
	block_release(b);
	free(b);
}

/* ---- iterating ---- */

struct block_iter {
	struct iter base;
	const char *data;
	uint32_t limit; /* end of the entries */
	uint32_t nrestarts;
	uint32_t cur;           /* offset of the current entry; limit when invalid */
	uint32_t next_off;      /* offset just past the current entry */
	uint32_t restart_index; /* last restart point at or before cur */
	struct buf key;
	struct slice value;
	int status;
	/* Stepping back rescans from a restart point. The entries met on the
	 * way (one restart interval at most) are kept, so that the next steps
	 * back inside the interval take no scan: the block never changes. */
	struct bi_prev_entry *pc;
	uint32_t pc_n, pc_cap, pc_pos;
	struct buf pc_keys;
};

struct bi_prev_entry {
	uint32_t off, next_off, restart_index;
	uint32_t key_pos, key_len;
	struct slice value;
};

/* Keys read from a corrupt block may be shorter than a trailer; compare them
 * as plain bytes rather than read before their start. */
static int block_key_cmp(struct slice a, struct slice b)
{
	if (a.len < IKEY_TRAILER || b.len < IKEY_TRAILER)
		return slice_cmp(a, b);
	return ikey_cmp(a, b);
}

static uint32_t bi_restart(const struct block_iter *it, uint32_t i)
{
	assert(i < it->nrestarts);
	return dec_fixed32(it->data + it->limit + 4 * (size_t)i);
}

static void bi_invalidate(struct block_iter *it)
{
	it->cur = it->limit;
	it->next_off = it->limit;
	it->restart_index = it->nrestarts;
	buf_clear(&it->key);
	it->value = slice_make(NULL, 0);
}

static void bi_corrupt(struct block_iter *it)
{
	if (!it->status)
		it->status = CAIRN_ECORRUPT;
	bi_invalidate(it);
}

/*
 * Decodes the entry header at off. On success returns the pointer to the key
 * delta and fills the lengths, all checked to lie inside the entries.
 */
static const char *bi_decode(const struct block_iter *it, uint32_t off, uint32_t *shared,
                             uint32_t *non_shared, uint32_t *vlen)
{
	const char *p = it->data + off, *lim = it->data + it->limit;
	if (lim - p >= 3 &&
	    ((unsigned char)p[0] | (unsigned char)p[1] | (unsigned char)p[2]) < 128) {
		/* the common case: three one-byte varints */
		*shared = (unsigned char)p[0];
		*non_shared = (unsigned char)p[1];
		*vlen = (unsigned char)p[2];
		p += 3;
	} else if ((p = dec_varint32(p, lim, shared)) == NULL ||
	           (p = dec_varint32(p, lim, non_shared)) == NULL ||
	           (p = dec_varint32(p, lim, vlen)) == NULL)
		return NULL;
	size_t room = (size_t)(lim - p);
	if (*non_shared > room || *vlen > room - *non_shared)
		return NULL;
	return p;
}

/* Moves to the entry at next_off. Returns 1 when it is valid. */
static int bi_parse_next(struct block_iter *it)
{
	uint32_t shared, non_shared, vlen;

	it->cur = it->next_off;
	if (it->cur >= it->limit) {
		bi_invalidate(it);
		return 0;
	}
	const char *p = bi_decode(it, it->cur, &shared, &non_shared, &vlen);
	if (!p || shared > it->key.len) {
		bi_corrupt(it);
		return 0;
	}
	it->key.len = shared;
	if (buf_append(&it->key, p, non_shared)) {
		it->status = CAIRN_ENOMEM;
		bi_invalidate(it);
		return 0;
	}
	if (it->key.len < IKEY_TRAILER) {
		bi_corrupt(it);
		return 0;
	}
	it->value = slice_make(p + non_shared, vlen);
	it->next_off = (uint32_t)(p + non_shared + vlen - it->data);
	while (it->restart_index + 1 < it->nrestarts &&
	       bi_restart(it, it->restart_index + 1) <= it->cur)
		it->restart_index++;
	return 1;
}

static void bi_seek_restart(struct block_iter *it, uint32_t i)
{
	buf_clear(&it->key);
	it->restart_index = i;
	it->next_off = bi_restart(it, i);
}

static int bi_valid(struct iter *base)
{
	struct block_iter *it = (struct block_iter *)base;
	return it->cur < it->limit && it->status == 0;
}

static void bi_seek_first(struct iter *base)
{
	struct block_iter *it = (struct block_iter *)base;
	if (it->status)
		return;
	if (it->limit == 0) {
		bi_invalidate(it);
		return;
	}
	bi_seek_restart(it, 0);
	bi_parse_next(it);
}

static void bi_seek_last(struct iter *base)
{
	struct block_iter *it = (struct block_iter *)base;
	if (it->status)
		return;
	if (it->limit == 0) {
		bi_invalidate(it);
		return;
	}
	bi_seek_restart(it, it->nrestarts - 1);
	while (bi_parse_next(it) && it->next_off < it->limit)
		;
}

/* The whole key stored at restart point i (shared must be 0 there). */
static int bi_restart_key(const struct block_iter *it, uint32_t i, struct slice *key)
{
	uint32_t shared, non_shared, vlen;
	const char *p = bi_decode(it, bi_restart(it, i), &shared, &non_shared, &vlen);
	if (!p || shared != 0)
		return CAIRN_ECORRUPT;
	*key = slice_make(p, non_shared);
	return 0;
}

static void bi_seek(struct iter *base, struct slice target)
{
	struct block_iter *it = (struct block_iter *)base;
	if (it->status)
		return;
	if (it->limit == 0) {
		bi_invalidate(it);
		return;
	}
	/* the last restart point whose key is < target */
	uint32_t left = 0, right = it->nrestarts - 1;
	while (left < right) {
		uint32_t mid = left + (right - left + 1) / 2;
		struct slice k;
		if (bi_restart_key(it, mid, &k)) {
			bi_corrupt(it);
			return;
		}
		if (block_key_cmp(k, target) < 0)
			left = mid;
		else
			right = mid - 1;
	}
	bi_seek_restart(it, left);
	while (bi_parse_next(it)) {
		if (block_key_cmp(buf_slice(&it->key), target) >= 0)
			return;
	}
}

static void bi_next(struct iter *base)
{
	struct block_iter *it = (struct block_iter *)base;
	assert(bi_valid(base));
	bi_parse_next(it);
}

/* Remembers the entry the iterator is on. Returns -1 on ENOMEM: the cache
 * then ends there (entries after a gap would not follow each other). */
static int bi_prev_push(struct block_iter *it)
{
	if (it->pc_n == it->pc_cap) {
		uint32_t cap = it->pc_cap ? 2 * it->pc_cap : 16;
		struct bi_prev_entry *p = realloc(it->pc, cap * sizeof(*p));
		if (!p)
			return -1;
		it->pc = p;
		it->pc_cap = cap;
	}
	struct bi_prev_entry *e = &it->pc[it->pc_n];
	e->off = it->cur;
	e->next_off = it->next_off;
	e->restart_index = it->restart_index;
	e->key_pos = (uint32_t)it->pc_keys.len;
	e->key_len = (uint32_t)it->key.len;
	e->value = it->value;
	if (buf_append(&it->pc_keys, it->key.data, it->key.len))
		return -1;
	it->pc_n++;
	return 0;
}

/* Steps back to the cached entry before the current one; 0 if not cached. */
static int bi_prev_cached(struct block_iter *it)
{
	if (it->pc_pos == 0 || it->pc_pos >= it->pc_n || it->pc[it->pc_pos].off != it->cur)
		return 0;
	const struct bi_prev_entry *e = &it->pc[--it->pc_pos];
	if (buf_set(&it->key, it->pc_keys.data + e->key_pos, e->key_len)) {
		it->status = CAIRN_ENOMEM;
		bi_invalidate(it);
		return 1;
	}
	it->cur = e->off;
	it->next_off = e->next_off;
	it->restart_index = e->restart_index;
	it->value = e->value;
	return 1;
}

static void bi_prev(struct iter *base)
{
	struct block_iter *it = (struct block_iter *)base;
	assert(bi_valid(base));
	if (bi_prev_cached(it))
		return;
	uint32_t original = it->cur;
	uint32_t ri = it->restart_index;
	while (bi_restart(it, ri) >= original) {
		if (ri == 0) {
			bi_invalidate(it);
			return;
		}
		ri--;
	}
	bi_seek_restart(it, ri);
	it->pc_n = 0;
	buf_clear(&it->pc_keys);
	int caching = 1;
	while (bi_parse_next(it)) {
		if (caching && bi_prev_push(it))
			caching = 0;
		if (it->next_off >= original)
			break;
	}
	/* in a sound block the entry before original ends exactly there */
	if (bi_valid(base) && it->next_off != original) {
		it->pc_n = 0;
		bi_corrupt(it);
		return;
	}
	if (!bi_valid(base) || !caching)
		it->pc_n = 0;
	it->pc_pos = it->pc_n ? it->pc_n - 1 : 0;
}

static struct slice bi_key(struct iter *base)
{
	struct block_iter *it = (struct block_iter *)base;
	assert(bi_valid(base));
	return buf_slice(&it->key);
}

static struct slice bi_value(struct iter *base)
{
	struct block_iter *it = (struct block_iter *)base;
	assert(bi_valid(base));
	return it->value;
}

static int bi_status(struct iter *base)
{
	return ((struct block_iter *)base)->status;
}

static void bi_destroy(struct iter *base)
{
	struct block_iter *it = (struct block_iter *)base;
	buf_free(&it->key);
	buf_free(&it->pc_keys);
	free(it->pc);
	free(it);
}

static const struct iter_ops block_iter_ops = {
        .valid = bi_valid,
        .seek_first = bi_seek_first,
        .seek_last = bi_seek_last,
        .seek = bi_seek,
        .next = bi_next,
        .prev = bi_prev,
        .key = bi_key,
        .value = bi_value,
        .status = bi_status,
        .destroy = bi_destroy,
};

static void bi_init(struct block_iter *it, const struct block *b)
{
	it->base.ops = &block_iter_ops;
	it->data = b->data;
	it->limit = b->restart_offset;
	it->nrestarts = b->nrestarts;
	bi_invalidate(it);
}

struct iter *block_iter_new(const struct block *b)
{
	struct block_iter *it = calloc(1, sizeof(*it));
	if (!it)
		return NULL;
	bi_init(it, b);
	return &it->base;
}

/* The seek of an iterator that lives on the stack and builds its key in the
 * caller's buffer: a point lookup allocates nothing but that buffer. */
int block_seek_once(const struct block *b, struct slice target, struct buf *key,
                    struct slice *value)
{
	struct block_iter it = {.key = *key};
	bi_init(&it, b);
	bi_seek(&it.base, target);
	int r = it.status ? it.status : bi_valid(&it.base);
	if (r == 1)
		*value = it.value;
	*key = it.key; /* it.key may have grown: hand the memory back */
	return r;
}

/* ---- fuzzing ---- */

#define FUZZ_MAX_SEEKS 64

static void block_step(struct iter *it, int forward)
{
	if (forward)
		iter_next(it);
	else
		iter_prev(it);
}

static int fuzz_walk(struct iter *it, int forward, struct buf *keys, size_t *nkeys)
{
	struct buf prev = {0};
	int first = 1, r = 0;

	if (forward)
		iter_seek_first(it);
	else
		iter_seek_last(it);
	for (; iter_valid(it); block_step(it, forward)) {
		struct slice k = iter_key(it);
		(void)iter_value(it);
		if (!first) {
			int c = block_key_cmp(buf_slice(&prev), k);
			if (forward ? c >= 0 : c <= 0) {
				r = CAIRN_ECORRUPT;
				break;
			}
		}
		first = 0;
		if ((r = buf_set(&prev, k.data, k.len)))
			break;
		if (keys && *nkeys < FUZZ_MAX_SEEKS) {
			if ((r = buf_put_lenprefixed(keys, k.data, k.len)))
				break;
			(*nkeys)++;
		}
	}
	buf_free(&prev);
	return r ? r : iter_status(it);
}

int block_fuzz_one(const uint8_t *data, size_t n)
{
	struct block b;
	struct buf keys = {0};
	size_t nkeys = 0;

	int r = block_parse((const char *)data, n, &b);
	if (r)
		return r;
	struct iter *it = block_iter_new(&b);
	if (!it)
		return CAIRN_ENOMEM;
	r = fuzz_walk(it, 1, &keys, &nkeys);
	if (!r)
		r = fuzz_walk(it, 0, NULL, NULL);
	struct slice in = buf_slice(&keys), k;
	while (!r && slice_get_lenprefixed(&in, &k) == 0) {
		iter_seek(it, k);
		if (!iter_valid(it) || !slice_eq(iter_key(it), k))
			r = iter_status(it) ? iter_status(it) : CAIRN_ECORRUPT;
		else if (iter_prev(it), iter_valid(it) && block_key_cmp(iter_key(it), k) >= 0)
			r = CAIRN_ECORRUPT;
	}
	if (!r) {
		/* targets that are not keys: before everything, short, after */
		iter_seek(it, slice_make("", 0));
		iter_seek(it, slice_make("\xff\xff\xff\xff\xff\xff\xff\xff\xff", 9));
		r = iter_status(it);
	}
	buf_free(&keys);
	iter_free(it);
	return r;
}
