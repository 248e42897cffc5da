/*
 * wbuf.h - the write buffer of one open file: the writes not yet committed
 * to the database, kept as sorted, non-overlapping extents.
 *
 * The file's content is, byte by byte: the extent covering the byte if any;
 * else the committed value's byte if it lies below `keep` (the committed
 * length, lowered by truncations since); else zero. `size` is the logical
 * length. A commit writes, from that rule, the whole value of a small file
 * or the pieces of a large one the extents touch (extent.h), then calls
 * wbuf_reset(). Pure memory: no database calls.
 */
#ifndef CAIRNFS_WBUF_H
#define CAIRNFS_WBUF_H

#include <stddef.h>
#include <stdint.h>

struct wbuf_ext {
	uint64_t off;
	size_t len;
	size_t cap; /* bytes allocated at data (>= len) */
	char *data;
};

struct wbuf {
	uint64_t size; /* logical file size */
	uint64_t keep; /* bytes of the committed value still valid */
	struct wbuf_ext *ext;
	size_t n, cap;
	size_t bytes; /* bytes held in extents */
	int dirty;    /* something to commit */
	int borrowed; /* the one extent is the caller's memory (wbuf_borrow) */
};

/* Starts an empty buffer over a committed value of base_size bytes. */
void wbuf_init(struct wbuf *w, uint64_t base_size);
/* Starts a buffer over a committed value of base_size bytes that holds one
 * write of len bytes at off in the caller's memory, through slot: a write
 * committed at once needs no copy. The buffer must not be written to; freeing
 * or resetting it leaves buf alone, and `bytes` stays 0 (it holds none). */
void wbuf_borrow(struct wbuf *w, uint64_t base_size, struct wbuf_ext *slot, uint64_t off,
                 const void *buf, size_t len);
/* Frees the extents. */
void wbuf_free(struct wbuf *w);
/* Records a write of len bytes at off. Returns 0 or -ENOMEM (then the
 * buffer is unchanged). */
int wbuf_write(struct wbuf *w, uint64_t off, const void *buf, size_t len);
/* Sets the logical size, dropping buffered bytes past it. */
void wbuf_truncate(struct wbuf *w, uint64_t size);
/* Copies the buffered bytes that fall in [off, off + len) over buf. */
void wbuf_overlay(const struct wbuf *w, uint64_t off, char *buf, size_t len);
/* The buffered bytes of [off, off + len) when one extent holds them all
 * (a commit can then use them in place), else NULL. */
const char *wbuf_covering(const struct wbuf *w, uint64_t off, size_t len);
/* After a commit: the committed value is now the whole content. */
void wbuf_reset(struct wbuf *w);

#endif /* CAIRNFS_WBUF_H */
