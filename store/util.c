/*
 * util.c - byte buffers, integer coding, CRC32C and hashing (see util.h).
 *
 * CRC32C is on the path of every log record and table block, so it uses the
 * CPU's CRC instructions when present (SSE4.2 on x86-64, the CRC extension on
 * ARMv8), chosen once per call site through a cached function pointer that
 * is set idempotently (any thread computes the same value), and a
 * slicing-by-8 table otherwise. The table is constant data
 * (crc32c_table.h), so there is no global state to initialise.
 */
#include "util.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include "cairn.h"

/* ---- buffers ---- */

int buf_reserve(struct buf *b, size_t extra)
{
	if (b->cap - b->len >= extra)
		return 0;
	size_t need = b->len + extra;
	if (need < b->len)
		return CAIRN_ENOMEM;
	size_t cap = b->cap ? b->cap : 64;
	while (cap < need)
		cap = cap * 2 > cap ? cap * 2 : need;
	char *p = realloc(b->data, cap);
	if (!p)
		return CAIRN_ENOMEM;
	b->data = p;
	b->cap = cap;
	return 0;
}

int buf_append(struct buf *b, const void *data, size_t n)
{
	int r = buf_reserve(b, n);
	if (r)
		return r;
	if (n)
		memcpy(b->data + b->len, data, n);
	b->len += n;
	return 0;
}

int buf_set(struct buf *b, const void *data, size_t n)
{
	b->len = 0;
	return buf_append(b, data, n);
}

int buf_put_fixed32(struct buf *b, uint32_t v)
{
	char tmp[4];
	enc_fixed32(tmp, v);
	return buf_append(b, tmp, 4);
}

int buf_put_fixed64(struct buf *b, uint64_t v)
{
	char tmp[8];
	enc_fixed64(tmp, v);
	return buf_append(b, tmp, 8);
}

int buf_put_varint32(struct buf *b, uint32_t v)
{
	char tmp[5];
	return buf_append(b, tmp, (size_t)enc_varint32(tmp, v));
}

int buf_put_varint64(struct buf *b, uint64_t v)
{
	char tmp[10];
	return buf_append(b, tmp, (size_t)enc_varint64(tmp, v));
}

int buf_put_lenprefixed(struct buf *b, const void *data, size_t n)
{
	if (n > UINT32_MAX)
		return CAIRN_ETOOBIG;
	int r = buf_put_varint32(b, (uint32_t)n);
	return r ? r : buf_append(b, data, n);
}

void buf_free(struct buf *b)
{
	free(b->data);
	b->data = NULL;
	b->len = b->cap = 0;
}

/* ---- varints ---- */

int enc_varint64(char *p, uint64_t v)
{
	int n = 0;
	while (v >= 0x80) {
		p[n++] = (char)(v | 0x80);
		v >>= 7;
	}
	p[n++] = (char)v;
	return n;
}

int enc_varint32(char *p, uint32_t v)
{
	return enc_varint64(p, v);
}

int varint_length(uint64_t v)
{
	int n = 1;
	while (v >= 0x80) {
		v >>= 7;
		n++;
	}
	return n;
}

const char *dec_varint64(const char *p, const char *limit, uint64_t *v)
{
	uint64_t result = 0;
	for (unsigned shift = 0; shift <= 63 && p < limit; shift += 7) {
		uint64_t byte = (unsigned char)*p++;
		/* the tenth byte may only carry the top bit of a 64-bit value */
		if (shift == 63 && byte > 1)
			return NULL;
		result |= (byte & 0x7f) << shift;
		if (!(byte & 0x80)) {
			*v = result;
			return p;
		}
	}
	return NULL;
}

const char *dec_varint32(const char *p, const char *limit, uint32_t *v)
{
	uint64_t w;
	const char *q = dec_varint64(p, limit, &w);
	if (!q || w > UINT32_MAX)
		return NULL;
	*v = (uint32_t)w;
	return q;
}

int slice_get_varint32(struct slice *in, uint32_t *v)
{
	if (in->len == 0) /* also keeps NULL + 0 (undefined) out of the decoder */
		return -1;
	const char *q = dec_varint32(in->data, in->data + in->len, v);
	if (!q)
		return -1;
	in->len -= (size_t)(q - in->data);
	in->data = q;
	return 0;
}

int slice_get_varint64(struct slice *in, uint64_t *v)
{
	if (in->len == 0) /* also keeps NULL + 0 (undefined) out of the decoder */
		return -1;
	const char *q = dec_varint64(in->data, in->data + in->len, v);
	if (!q)
		return -1;
	in->len -= (size_t)(q - in->data);
	in->data = q;
	return 0;
}

int slice_get_lenprefixed(struct slice *in, struct slice *out)
{
	uint32_t n;
	struct slice save = *in;
	if (slice_get_varint32(in, &n) || in->len < n) {
		*in = save;
		return -1;
	}
	*out = slice_make(in->data, n);
	in->data += n;
	in->len -= n;
	return 0;
}

int slice_get_fixed32(struct slice *in, uint32_t *v)
{
	if (in->len < 4)
		return -1;
	*v = dec_fixed32(in->data);
	in->data += 4;
	in->len -= 4;
	return 0;
}

int slice_get_fixed64(struct slice *in, uint64_t *v)
{
	if (in->len < 8)
		return -1;
	*v = dec_fixed64(in->data);
	in->data += 8;
	in->len -= 8;
	return 0;
}

/* ---- CRC32C ---- */

#include "crc32c_table.h"

static uint32_t crc32c_sw(uint32_t crc, const unsigned char *p, size_t n)
{
	while (n && ((uintptr_t)p & 7)) {
		crc = crc_table[0][(crc ^ *p++) & 0xff] ^ (crc >> 8);
		n--;
	}
	while (n >= 8) {
		uint32_t lo = crc ^ dec_fixed32((const char *)p);
		uint32_t hi = dec_fixed32((const char *)p + 4);
		crc = crc_table[7][lo & 0xff] ^ crc_table[6][(lo >> 8) & 0xff] ^
		      crc_table[5][(lo >> 16) & 0xff] ^ crc_table[4][lo >> 24] ^
		      crc_table[3][hi & 0xff] ^ crc_table[2][(hi >> 8) & 0xff] ^
		      crc_table[1][(hi >> 16) & 0xff] ^ crc_table[0][hi >> 24];
		p += 8;
		n -= 8;
	}
	while (n--)
		crc = crc_table[0][(crc ^ *p++) & 0xff] ^ (crc >> 8);
	return crc;
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <cpuid.h>
__attribute__((target("sse4.2"))) static uint32_t crc32c_hw(uint32_t crc, const unsigned char *p,
                                                            size_t n)
{
	uint64_t c = crc;
	while (n && ((uintptr_t)p & 7)) {
		c = __builtin_ia32_crc32qi((uint32_t)c, *p++);
		n--;
	}
	while (n >= 8) {
		uint64_t w;
		memcpy(&w, p, 8);
		c = __builtin_ia32_crc32di(c, w);
		p += 8;
		n -= 8;
	}
	while (n--)
		c = __builtin_ia32_crc32qi((uint32_t)c, *p++);
	return (uint32_t)c;
}

static int crc32c_have_hw(void)
{
	unsigned a, b, c, d;
	if (!__get_cpuid(1, &a, &b, &c, &d))
		return 0;
	return (c & bit_SSE4_2) != 0;
}
#elif defined(__aarch64__) && defined(__ARM_FEATURE_CRC32)
#include <arm_acle.h>
static uint32_t crc32c_hw(uint32_t crc, const unsigned char *p, size_t n)
{
	while (n && ((uintptr_t)p & 7)) {
		crc = __crc32cb(crc, *p++);
		n--;
	}
	while (n >= 8) {
		uint64_t w;
		memcpy(&w, p, 8);
		crc = __crc32cd(crc, w);
		p += 8;
		n -= 8;
	}
	while (n--)
		crc = __crc32cb(crc, *p++);
	return crc;
}
static int crc32c_have_hw(void)
{
	return 1;
}
#else
static uint32_t crc32c_hw(uint32_t crc, const unsigned char *p, size_t n)
{
	return crc32c_sw(crc, p, n);
}
static int crc32c_have_hw(void)
{
	return 0;
}
#endif

uint32_t crc32c_extend(uint32_t crc, const void *data, size_t n)
{
	/* Idempotent lazy detection: every thread that races here stores the
	 * same answer, so the relaxed atomic needs no further ordering. */
	static _Atomic int hw = -1;
	int h = hw;
	if (h < 0) {
		h = crc32c_have_hw();
		hw = h;
	}
	const unsigned char *p = data;
	crc = ~crc;
	crc = h ? crc32c_hw(crc, p, n) : crc32c_sw(crc, p, n);
	return ~crc;
}

/* Exposed for the tests that compare both paths. */
uint32_t crc32c_portable(uint32_t crc, const void *data, size_t n);
uint32_t crc32c_portable(uint32_t crc, const void *data, size_t n)
{
	return ~crc32c_sw(~crc, data, n);
}

/* ---- hashing ---- */

uint32_t hash32(const void *data, size_t n, uint32_t seed)
{
	/* Murmur-style mixing, as LevelDB's Hash(): stable because filters on
	 * disk depend on it. */
	const uint32_t m = 0xc6a4a793u;
	const unsigned char *p = data;
	uint32_t h = seed ^ (uint32_t)(n * m);
	while (n >= 4) {
		h += dec_fixed32((const char *)p);
		h *= m;
		h ^= h >> 16;
		p += 4;
		n -= 4;
	}
	switch (n) {
	case 3:
		h += (uint32_t)p[2] << 16;
		/* fall through */
	case 2:
		h += (uint32_t)p[1] << 8;
		/* fall through */
	case 1:
		h += p[0];
		h *= m;
		h ^= h >> 24;
		break;
	default:
		break;
	}
	return h;
}

void fmt_msg(char *buf, size_t len, const char *fmt, ...)
{
	if (!buf || !len)
		return;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(buf, len, fmt, ap);
	va_end(ap);
}
