/*
 * util.h - small building blocks shared by every module of the engine:
 * slices, a growable byte buffer, little-endian fixed and varint coding,
 * CRC32C, a hash for filters and caches, and a seeded PRNG.
 *
 * Every on-disk integer is little-endian (fixed) or a LEB128 varint; every
 * checksum is CRC32C (Castagnoli), stored masked (see crc32c_mask) so that a
 * checksum of data that itself contains checksums stays well distributed.
 */
#ifndef CAIRN_UTIL_H
#define CAIRN_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* A borrowed byte range. Never owns its memory. */
struct slice {
	const char *data;
	size_t len;
};

static inline struct slice slice_make(const void *data, size_t len)
{
	struct slice s = {(const char *)data, len};
	return s;
}

/* Bytewise comparison, shorter first on a tie: the key order of cairn. */
static inline int slice_cmp(struct slice a, struct slice b)
{
	size_t n = a.len < b.len ? a.len : b.len;
	int r = n ? memcmp(a.data, b.data, n) : 0;
	if (r)
		return r;
	return a.len < b.len ? -1 : a.len > b.len;
}

static inline int slice_eq(struct slice a, struct slice b)
{
	return a.len == b.len && (a.len == 0 || memcmp(a.data, b.data, a.len) == 0);
}

/* An owned, growable byte buffer. Zero-initialised is an empty buffer. */
struct buf {
	char *data;
	size_t len;
	size_t cap;
};

/* All return 0 or CAIRN_ENOMEM. */
int buf_reserve(struct buf *b, size_t extra);

/* Makes the array *items (*cap elements of size elem) hold one more than n,
 * doubling it (from first) when full; CAIRN_ENOMEM leaves it as it was. */
int arr_room(void *items, size_t *cap, size_t n, size_t elem, size_t first);
int buf_append(struct buf *b, const void *data, size_t n);
int buf_set(struct buf *b, const void *data, size_t n);
int buf_put_fixed32(struct buf *b, uint32_t v);
int buf_put_fixed64(struct buf *b, uint64_t v);
int buf_put_varint32(struct buf *b, uint32_t v);
int buf_put_varint64(struct buf *b, uint64_t v);
/* varint length followed by the bytes */
int buf_put_lenprefixed(struct buf *b, const void *data, size_t n);
void buf_free(struct buf *b);
static inline void buf_clear(struct buf *b)
{
	b->len = 0;
}
static inline struct slice buf_slice(const struct buf *b)
{
	return slice_make(b->data, b->len);
}

/* Fixed-width little-endian coding. */
static inline void enc_fixed16(char *p, uint16_t v)
{
	p[0] = (char)(v & 0xff);
	p[1] = (char)(v >> 8);
}
static inline void enc_fixed32(char *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (char)((v >> (8 * i)) & 0xff);
}
static inline void enc_fixed64(char *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (char)((v >> (8 * i)) & 0xff);
}
static inline uint16_t dec_fixed16(const char *p)
{
	const unsigned char *u = (const unsigned char *)p;
	return (uint16_t)(u[0] | (u[1] << 8));
}
static inline uint32_t dec_fixed32(const char *p)
{
	const unsigned char *u = (const unsigned char *)p;
	return (uint32_t)u[0] | ((uint32_t)u[1] << 8) | ((uint32_t)u[2] << 16) |
	       ((uint32_t)u[3] << 24);
}
static inline uint64_t dec_fixed64(const char *p)
{
	return (uint64_t)dec_fixed32(p) | ((uint64_t)dec_fixed32(p + 4) << 32);
}

/* Varints. enc_* write at p (room: 5 or 10 bytes) and return the byte count.
 * dec_* read from [p, limit), store the value and return the pointer past it,
 * or NULL when the varint is truncated or overlong: lengths read from disk go
 * through these, so they never read past limit. */
int enc_varint32(char *p, uint32_t v);
int enc_varint64(char *p, uint64_t v);
const char *dec_varint32(const char *p, const char *limit, uint32_t *v);
const char *dec_varint64(const char *p, const char *limit, uint64_t *v);
int varint_length(uint64_t v);

/* Reads a varint32 length prefix and that many bytes from *in, advancing it.
 * Returns 0, or -1 when the input is too short. */
int slice_get_varint32(struct slice *in, uint32_t *v);
int slice_get_varint64(struct slice *in, uint64_t *v);
int slice_get_lenprefixed(struct slice *in, struct slice *out);
int slice_get_fixed32(struct slice *in, uint32_t *v);
int slice_get_fixed64(struct slice *in, uint64_t *v);

/* CRC32C (Castagnoli). Uses the SSE4.2 or ARMv8 CRC instructions when the CPU
 * has them, a slicing-by-8 table otherwise; the result is the same. */
uint32_t crc32c_extend(uint32_t crc, const void *data, size_t n);
static inline uint32_t crc32c(const void *data, size_t n)
{
	return crc32c_extend(0, data, n);
}

/* Stored checksums are masked: rotate right by 15 bits and add a constant. */
static inline uint32_t crc32c_mask(uint32_t crc)
{
	return ((crc >> 15) | (crc << 17)) + 0xa282ead8u;
}
static inline uint32_t crc32c_unmask(uint32_t masked)
{
	uint32_t rot = masked - 0xa282ead8u;
	return (rot >> 17) | (rot << 15);
}

/* A 32-bit hash of bytes (Murmur-like), stable across runs and platforms:
 * bloom filters on disk depend on it. */
uint32_t hash32(const void *data, size_t n, uint32_t seed);

/* splitmix64: a seeded PRNG with explicit state (no globals). */
static inline uint64_t prng_next(uint64_t *state)
{
	uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}
/* uniform in [0, n); n > 0 */
static inline uint64_t prng_below(uint64_t *state, uint64_t n)
{
	return prng_next(state) % n;
}

/* snprintf into a fixed buffer that tolerates buf == NULL or len == 0. */
void fmt_msg(char *buf, size_t len, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

#endif
