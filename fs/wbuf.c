/*
 * wbuf.c - extent write buffer (see wbuf.h).
 *
 * A write merges with every extent it overlaps or touches, so the common
 * sequential writer keeps a single extent that grows by realloc, doubling
 * its allocation so that appends copy each byte a bounded number of times
 * (a realloc that cannot grow in place copies everything); random
 * writers pay a copy per merge, bounded by the per-file buffer limit that
 * cairnfs enforces by committing when the buffer fills.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "wbuf.h"

void wbuf_init(struct wbuf *w, uint64_t base_size)
{
	memset(w, 0, sizeof(*w));
	w->size = base_size;
	w->keep = base_size;
}

void wbuf_borrow(struct wbuf *w, uint64_t base_size, struct wbuf_ext *slot, uint64_t off,
                 const void *buf, size_t len)
{
	wbuf_init(w, base_size);
	slot->off = off;
	slot->len = len;
	slot->cap = len;
	slot->data = (char *)buf;
	w->ext = slot;
	w->n = len ? 1 : 0;
	w->borrowed = 1;
	w->bytes = 0; /* the caller's memory, not the buffer's (fs_buffered_bytes) */
	if (len && off + len > w->size)
		w->size = off + len;
	w->dirty = 1;
}

static void wbuf_drop_extents(struct wbuf *w)
{
	for (size_t i = 0; i < w->n && !w->borrowed; i++)
		free(w->ext[i].data);
	w->n = 0;
	w->bytes = 0;
}

void wbuf_free(struct wbuf *w)
{
	wbuf_drop_extents(w);
	if (!w->borrowed)
		free(w->ext);
	w->ext = NULL;
	w->cap = 0;
}

/* Grows the extent array to hold one more. */
static int wbuf_reserve(struct wbuf *w)
{
	struct wbuf_ext *e;
	size_t ncap;

	if (w->n < w->cap)
		return 0;
	ncap = w->cap ? w->cap * 2 : 4;
	e = realloc(w->ext, ncap * sizeof(*e));
	if (!e)
		return -ENOMEM;
	w->ext = e;
	w->cap = ncap;
	return 0;
}

/* Fast path: the write extends or lands inside extent i, starting in it. */
static int wbuf_extend(struct wbuf *w, size_t i, uint64_t off, const void *buf, size_t len)
{
	struct wbuf_ext *e = &w->ext[i];
	uint64_t end = off + len;
	size_t nlen = e->len;
	char *d = e->data;

	if (end > e->off + e->len)
		nlen = (size_t)(end - e->off);
	if (nlen > e->cap) {
		size_t ncap = e->cap * 2 > nlen ? e->cap * 2 : nlen;

		d = realloc(e->data, ncap);
		if (!d)
			return -ENOMEM;
		e->cap = ncap;
	}
	memcpy(d + (off - e->off), buf, len);
	w->bytes += nlen - e->len;
	e->data = d;
	e->len = nlen;
	return 0;
}

int wbuf_write(struct wbuf *w, uint64_t off, const void *buf, size_t len)
{
	uint64_t end = off + len, noff, nend;
	size_t i = 0, j, old = 0;
	char *d;

	if (len == 0)
		return 0;
	/* i: first extent that ends at or after off (touching counts) */
	while (i < w->n && w->ext[i].off + w->ext[i].len < off)
		i++;
	/* j: one past the last extent that starts at or before end */
	j = i;
	while (j < w->n && w->ext[j].off <= end)
		j++;
	if (j == i + 1 && w->ext[i].off <= off) {
		if (wbuf_extend(w, i, off, buf, len))
			return -ENOMEM;
		goto done;
	}
	noff = off;
	nend = end;
	if (j > i) {
		noff = w->ext[i].off < off ? w->ext[i].off : off;
		if (w->ext[j - 1].off + w->ext[j - 1].len > end)
			nend = w->ext[j - 1].off + w->ext[j - 1].len;
	}
	if (j == i && wbuf_reserve(w))
		return -ENOMEM;
	d = malloc((size_t)(nend - noff));
	if (!d)
		return -ENOMEM;
	for (size_t k = i; k < j; k++) {
		memcpy(d + (w->ext[k].off - noff), w->ext[k].data, w->ext[k].len);
		old += w->ext[k].len;
		free(w->ext[k].data);
	}
	memcpy(d + (off - noff), buf, len);
	if (j == i) {
		memmove(&w->ext[i + 1], &w->ext[i], (w->n - i) * sizeof(w->ext[0]));
		w->n++;
	} else if (j > i + 1) {
		memmove(&w->ext[i + 1], &w->ext[j], (w->n - j) * sizeof(w->ext[0]));
		w->n -= j - i - 1;
	}
	w->ext[i].off = noff;
	w->ext[i].len = (size_t)(nend - noff);
	w->ext[i].cap = w->ext[i].len;
	w->ext[i].data = d;
	w->bytes = w->bytes - old + w->ext[i].len;
done:
	if (end > w->size)
		w->size = end;
	w->dirty = 1;
	return 0;
}

void wbuf_truncate(struct wbuf *w, uint64_t size)
{
	size_t n = 0;

	for (size_t i = 0; i < w->n; i++) {
		struct wbuf_ext *e = &w->ext[i];

		if (e->off >= size) {
			w->bytes -= e->len;
			free(e->data);
			continue;
		}
		if (e->off + e->len > size) {
			size_t nl = (size_t)(size - e->off);

			w->bytes -= e->len - nl;
			e->len = nl; /* keep the allocation; only the length shrinks */
		}
		w->ext[n++] = *e;
	}
	w->n = n;
	if (size < w->keep)
		w->keep = size;
	w->size = size;
	w->dirty = 1;
}

void wbuf_overlay(const struct wbuf *w, uint64_t off, char *buf, size_t len)
{
	uint64_t end = off + len;

	for (size_t i = 0; i < w->n; i++) {
		const struct wbuf_ext *e = &w->ext[i];
		uint64_t s = e->off > off ? e->off : off;
		uint64_t t = e->off + e->len < end ? e->off + e->len : end;

		if (s < t)
			memcpy(buf + (s - off), e->data + (s - e->off), (size_t)(t - s));
	}
}

const char *wbuf_covering(const struct wbuf *w, uint64_t off, size_t len)
{
	size_t lo = 0, hi = w->n;

	/* the last extent starting at or before off */
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (w->ext[mid].off <= off)
			lo = mid + 1;
		else
			hi = mid;
	}
	if (!lo)
		return NULL;
	const struct wbuf_ext *e = &w->ext[lo - 1];

	if (off + len > e->off + e->len)
		return NULL;
	return e->data + (off - e->off);
}

void wbuf_reset(struct wbuf *w)
{
	wbuf_drop_extents(w);
	w->keep = w->size;
	w->dirty = 0;
}
