/*
 * extent.c - the pure part of cairnfs's large files (extent.h): piece keys
 * and the pieces a commit must rewrite.
 *
 * The dirty pieces are found by turning each buffered write, the truncated
 * stretch and the cut piece into a range of piece numbers, sorting the
 * ranges and walking their union: the cost is in the number of buffered
 * writes, not in the file size, so a commit into a 1 TiB file that touched
 * three pieces looks at three pieces.
 */
#include <errno.h>
#include <stdlib.h>

#include "extent.h"

static void ext_put64(char *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (char)(v >> (56 - 8 * i));
}

static uint64_t ext_get64(const unsigned char *p)
{
	uint64_t v = 0;

	for (int i = 0; i < 8; i++)
		v = (v << 8) | p[i];
	return v;
}

void ext_prefix(uint64_t id, char *out)
{
	out[0] = '\0';
	out[1] = PK_TAG_PIECE;
	ext_put64(out + 2, id);
}

void ext_key(uint64_t id, uint64_t idx, char *out)
{
	ext_prefix(id, out);
	ext_put64(out + EXT_PFX_LEN, idx);
}

int ext_key_decode(const void *key, size_t klen, uint64_t *id, uint64_t *idx)
{
	const unsigned char *k = key;

	if (klen != EXT_KEY_LEN || k[0] != 0 || k[1] != PK_TAG_PIECE)
		return -1;
	*id = ext_get64(k + 2);
	*idx = ext_get64(k + EXT_PFX_LEN);
	return 0;
}

uint64_t ext_count(uint64_t size)
{
	return size / EXT_SIZE + (size % EXT_SIZE != 0);
}

size_t ext_len(uint64_t size, uint64_t idx)
{
	uint64_t start = idx * EXT_SIZE;

	if (start >= size)
		return 0;
	return (size_t)(size - start < EXT_SIZE ? size - start : EXT_SIZE);
}

struct ext_span {
	uint64_t first, last; /* piece numbers, inclusive */
};

static int ext_span_cmp(const void *a, const void *b)
{
	const struct ext_span *x = a, *y = b;

	return x->first < y->first ? -1 : x->first > y->first;
}

/* Adds the pieces of bytes [from, to) to the list, clipped below limit. */
static void ext_span_add(struct ext_span *s, size_t *n, uint64_t from, uint64_t to, uint64_t limit)
{
	if (from >= to || from / EXT_SIZE >= limit)
		return;
	s[*n].first = from / EXT_SIZE;
	s[*n].last = (to - 1) / EXT_SIZE < limit ? (to - 1) / EXT_SIZE : limit - 1;
	(*n)++;
}

/* The sorted spans of dirty pieces; *out is malloc'd (NULL when none). */
static int ext_spans(const struct wbuf *w, uint64_t base, struct ext_span **out, size_t *count)
{
	uint64_t limit = ext_count(w->size);
	uint64_t valid = base < w->size ? base : w->size;
	struct ext_span *s = malloc((w->n + 2) * sizeof(*s));
	size_t n = 0;

	*out = NULL;
	*count = 0;
	if (!s)
		return -ENOMEM;
	for (size_t i = 0; i < w->n; i++)
		ext_span_add(s, &n, w->ext[i].off, w->ext[i].off + w->ext[i].len, limit);
	ext_span_add(s, &n, w->keep, valid, limit);
	if (w->size < base && w->size % EXT_SIZE)
		ext_span_add(s, &n, w->size - 1, w->size, limit);
	qsort(s, n, sizeof(*s), ext_span_cmp);
	*out = s;
	*count = n;
	return 0;
}

int ext_each_dirty(const struct wbuf *w, uint64_t base, int (*fn)(void *ctx, uint64_t idx),
                   void *ctx)
{
	struct ext_span *s;
	uint64_t next = 0; /* first piece not yet visited */
	size_t n;
	int rc = ext_spans(w, base, &s, &n);

	for (size_t i = 0; !rc && i < n; i++) {
		uint64_t from = s[i].first > next ? s[i].first : next;

		for (uint64_t idx = from; !rc && idx <= s[i].last; idx++)
			rc = fn(ctx, idx);
		if (s[i].last + 1 > next)
			next = s[i].last + 1;
	}
	free(s);
	return rc;
}

uint64_t ext_dirty_count(const struct wbuf *w, uint64_t base)
{
	struct ext_span *s;
	uint64_t next = 0, total = 0;
	size_t n;

	if (ext_spans(w, base, &s, &n))
		return UINT64_MAX;
	for (size_t i = 0; i < n; i++) {
		uint64_t from = s[i].first > next ? s[i].first : next;

		if (from <= s[i].last)
			total += s[i].last - from + 1;
		if (s[i].last + 1 > next)
			next = s[i].last + 1;
	}
	free(s);
	return total;
}
