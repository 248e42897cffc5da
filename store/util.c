/*
 * util.c - byte buffers, integer coding, CRC32C and hashing (see util.h).
 *
 * CRC32C is on the path of every log record and table block, so it uses the
 * CPU's CRC instructions when present (SSE4.2 on x86-64, the CRC extension on
 * ARMv8), chosen once through a cached flag that is set idempotently (any
 * thread computes the same value), and a slicing-by-8 table otherwise. Long
 * buffers run three CRC chains side by side and join their results. The
 * tables are constant data (crc32c_table.h and the join factors below), so
 * there is no global state to initialise.
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

int arr_room(void *items, size_t *cap, size_t n, size_t elem, size_t first)
{
	if (n < *cap)
		return 0;
	size_t ncap = *cap ? *cap * 2 : first;
	if (ncap <= *cap || ncap > SIZE_MAX / elem)
		return CAIRN_ENOMEM;
	void **arr = items;
	void *p = realloc(*arr, ncap * elem);
	if (!p)
		return CAIRN_ENOMEM;
	*arr = p;
	*cap = ncap;
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

/*
 * The CRC instruction has a latency of about three cycles but can start one
 * per cycle, so a single chain over the buffer runs at a third of the speed
 * the CPU allows. Long buffers are therefore cut into blocks of three equal
 * stripes, each checksummed by its own chain, and the three results are
 * joined: the CRC state is linear, so CRC(A || B) = CRC(A) * x^(8|B|) ^
 * CRC0(B) mod P, where CRC0 starts from a zero state. Multiplying by
 * x^(8|B|) is a 32x32-bit carry-less product with a constant from
 * crc32c_stripe_k, reduced mod P by one more CRC instruction.
 */
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <cpuid.h>
#define CRC32C_HW        1
#define CRC32C_HW_TARGET __attribute__((target("sse4.2")))
static inline CRC32C_HW_TARGET uint32_t crc32c_hw_byte(uint32_t crc, unsigned char b)
{
	return __builtin_ia32_crc32qi(crc, b);
}
static inline CRC32C_HW_TARGET uint32_t crc32c_hw_u64(uint32_t crc, uint64_t v)
{
	return (uint32_t)__builtin_ia32_crc32di(crc, v);
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
#define CRC32C_HW 1
#define CRC32C_HW_TARGET
static inline uint32_t crc32c_hw_byte(uint32_t crc, unsigned char b)
{
	return __crc32cb(crc, b);
}
static inline uint32_t crc32c_hw_u64(uint32_t crc, uint64_t v)
{
	return __crc32cd(crc, v);
}
static int crc32c_have_hw(void)
{
	return 1;
}
#endif

#ifdef CRC32C_HW
/* The next eight bytes at p, first byte lowest, as the instruction takes
 * them on these little-endian CPUs. */
static inline CRC32C_HW_TARGET uint32_t crc32c_hw_word(uint32_t crc, const unsigned char *p)
{
	uint64_t v;
	memcpy(&v, p, 8);
	return crc32c_hw_u64(crc, v);
}

/* Stripes are 8-byte words; blocks of 3 * CRC32C_STRIPE_MAX bytes cover most
 * of a long buffer, one shorter block the rest, and only stripes of at least
 * CRC32C_STRIPE_MIN bytes pay for the two joins. */
#define CRC32C_STRIPE_MAX 4096
#define CRC32C_STRIPE_MIN 128

/* crc32c_stripe_k[w - 1] is x^(64w - 33) mod P, bit-reflected: the factor
 * that moves a CRC state past w words (x^(64w)), less the x^32 that the
 * reducing CRC instruction multiplies in and the x^1 of the reflected
 * product (see crc32c_shift). Generated by stepping x^0 by x. */
static const uint32_t crc32c_stripe_k[CRC32C_STRIPE_MAX / 8] = {
        0x00000001, 0x493c7d27, 0xf20c0dfe, 0xba4fc28e, 0x3da6d0cb, 0xddc0152b, 0x1c291d04,
        0x9e4addf8, 0x740eef02, 0x39d3b296, 0x083a6eec, 0x0715ce53, 0xc49f4f67, 0x47db8317,
        0x2ad91c30, 0x0d3b6092, 0x6992cea2, 0xc96cfdc0, 0x7e908048, 0x878a92a7, 0x1b3d8f29,
        0xdaece73e, 0xf1d0f55e, 0xab7aff2a, 0xa87ab8a8, 0x2162d385, 0x8462d800, 0x83348832,
        0x71d111a8, 0x299847d5, 0xffd852c6, 0xb9e02b86, 0xdcb17aa4, 0x18b33a4e, 0xf37c5aee,
        0xb6dd949b, 0x6051d5a2, 0x78d9ccb7, 0x18b0d4ff, 0xbac2fd7b, 0x21f3d99c, 0xa60ce07b,
        0x8f158014, 0xce7f39f4, 0xa00457f7, 0x61d82e56, 0x8d6d2c43, 0xd270f1a2, 0x00ac29cf,
        0xc619809d, 0xe9adf796, 0x2b3cac5d, 0x96638b34, 0x65863b64, 0xe0e9f351, 0x1b03397f,
        0x9af01f2d, 0xebb883bd, 0x2cff42cf, 0xb3e32c28, 0x88f25a3a, 0x064f7f26, 0x4e36f0b0,
        0xdd7e3b0c, 0xbd6f81f8, 0xf285651c, 0x91c9bd4b, 0x10746f3c, 0x885f087b, 0xc7a68855,
        0x4c144932, 0x271d9844, 0x52148f02, 0x8e766a0c, 0xa3c6f37a, 0x93a5f730, 0xd7c0557f,
        0x6cb08e5c, 0x63ded06a, 0x6b749fb2, 0x4d56973c, 0x1393e203, 0x9669c9df, 0xcec3662e,
        0xe417f38a, 0x96c515bb, 0x4b9e0f71, 0xe6fc4e6a, 0xd104b8fc, 0x8227bb8a, 0x5b397730,
        0xb0cd4768, 0xe78eb416, 0x39c7ff35, 0x61ff0e01, 0xd7a4825c, 0x8d96551c, 0x0ab3844b,
        0x0bf80dd2, 0x0167d312, 0x8821abed, 0xf6076544, 0x6a45d2b2, 0x26f6a60a, 0xd8d26619,
        0xa741c1bf, 0xde87806c, 0x98d8d9cb, 0x14338754, 0x49c3cc9c, 0x5bd2011f, 0x68bce87a,
        0xdd07448e, 0x57a3d037, 0xdde8f5b9, 0x6956fc3b, 0xa3e3e02c, 0x42d98888, 0xd73c7bea,
        0x3771e98f, 0x80ff0093, 0xb42ae3d9, 0x8fe4c34d, 0x2178513a, 0xdf99fc11, 0xe0ac139e,
        0x6c23e841, 0x170076fa, 0xfe314258, 0x444dd413, 0x0d8373a0, 0x6f345e45, 0x19e3635e,
        0x41d17b64, 0x29f268b4, 0xff0dba97, 0x1dc0632a, 0xa2b73df1, 0x1614f396, 0xf872e54c,
        0x9e2993d3, 0x1e41e9fc, 0x6bebd73c, 0x86d8e4d2, 0x63ae91e6, 0x651bd98b, 0xf8c9da7a,
        0x5bb8f1bc, 0x945a19c1, 0xa90fd27a, 0xee8213b7, 0xb3af077a, 0x93781dc7, 0x4984d782,
        0xccc4a1b9, 0xca6ef3ac, 0xa2c2d971, 0x234e0b26, 0x1cad4452, 0xdd66cbbb, 0x74922601,
        0x4597456a, 0xc55f7eab, 0xe9e28eb4, 0xa1962329, 0x7b3ff57a, 0x2d370749, 0xc9c8b782,
        0x397d84a1, 0x3f70cc6f, 0x79113270, 0x93e106a4, 0xbc817803, 0x62ec6c6d, 0x88eb3c07,
        0xd813b325, 0x6e4cb630, 0x0df04680, 0x71971d5c, 0x2342001e, 0xf33b8bc6, 0x0a2a8d7e,
        0x9fb3bbc0, 0x6d9a4957, 0x6ef22b23, 0xe8b6368b, 0xce2df768, 0xd2c3ed1a, 0xe53a4fc7,
        0x995a5724, 0xbe60a91a, 0x9ef68d35, 0x1dfa0a15, 0x0c139b31, 0x8ec52396, 0xf2271e60,
        0x0e766b11, 0x0b0bf8ca, 0x475846a4, 0x2664fd8b, 0xb2a3dfa6, 0xed64812d, 0xdc1a160c,
        0x02ee03b2, 0x79afdf1c, 0x8604ae0f, 0x07ac6e46, 0x363bd6b3, 0x15f85253, 0x135c83fd,
        0x1bec24dd, 0x5fabe670, 0x4c36cd5b, 0x35ec3279, 0xe0a22e29, 0x00bcf5f6, 0x7c2b6ed9,
        0x8ae00689, 0x06ff88fd, 0x17f27698, 0xf7317cf0, 0x58ca5f00, 0x61b6e40b, 0xaa7c7ad5,
        0xde8a97f8, 0xb5cfca28, 0x88f61445, 0xded288f8, 0xd4520e9e, 0x59f229bc, 0x0c592bd5,
        0x6d390dec, 0x38edfaf3, 0x37170390, 0x72cbfcdb, 0x6353c1cc, 0x348331a5, 0xc4584f5c,
        0xc3977c19, 0xf48642e9, 0xdafaea7c, 0x531377e2, 0x73db4c04, 0xdd35bc8d, 0x72675ce8,
        0xb25b29f2, 0x3ec2ff83, 0x9a5ede41, 0xe8c7a017, 0xa563905d, 0xcf4bfaef, 0x45cddf4e,
        0x6bde1ac7, 0xacfa3103, 0xae1175c2, 0xa51b6135, 0xf7506984, 0xdfd94fb2, 0xe0863e56,
        0x80f2886b, 0xd7e661ae, 0x67969a6a, 0x01afc14f, 0x021ac5ef, 0xd2fd8e3c, 0xe8310afa,
        0xc4eb27b2, 0x75451b04, 0x63209873, 0x8e1450f7, 0xf29971cf, 0xcbbe4ee1, 0xaf6939d9,
        0x3a83de21, 0x650ef6c5, 0xe0cdcf86, 0x36e108fa, 0x453c1679, 0x09c20a6c, 0xdefba41c,
        0x0a1a6a88, 0x613eee91, 0x286d109b, 0xddaf5114, 0x9fd51b88, 0x1f1dd124, 0x4860285d,
        0xbedc6ba1, 0x6e221adc, 0xeca08ffe, 0x0e0a1073, 0x3ae30875, 0x37f19421, 0x0cd1526a,
        0xe9bbf648, 0xb1630f04, 0x0fa0277f, 0xff47317b, 0xeb2fb89a, 0xd6c3a807, 0x1c47ed30,
        0x9a7781e0, 0x271cfb40, 0x63d097e9, 0xea1cb6e7, 0x1d31175f, 0x9f737f83, 0x94eb256e,
        0xd4619bbc, 0x13184649, 0x794dd0f2, 0x4be7fd90, 0xb6d42cd9, 0x7d5c1d64, 0x8b9be230,
        0x80ba859a, 0xd4617a4c, 0x6eeed1c9, 0xb9f93bd0, 0x22c3799f, 0xb8b67c1c, 0xd8ecc578,
        0xc5ca433a, 0xb3a6da94, 0x5e5dcd95, 0xcaf933fe, 0x7b589372, 0x50bfaade, 0x0afb7f3b,
        0x2e7d11a7, 0x0f97c690, 0x7d14748f, 0x3e254fe4, 0x32d8041c, 0x141e8512, 0x889774e1,
        0xe5e25bd0, 0x6cc8a0ff, 0xacf12316, 0x5aa1f3cf, 0x7b454cb3, 0x8a074012, 0x311709b8,
        0x33bc58b3, 0x9948a7d2, 0x9f2b002a, 0x809cef1f, 0xbd0bb25f, 0x11dde5b7, 0x60bf0a6a,
        0xca2e5ed2, 0x8515c07f, 0x8ff2c75f, 0x3be3c09b, 0x1c4b4b66, 0xd8440525, 0x0785cae6,
        0x682d085d, 0xabe842d1, 0x465a4eee, 0x4197fa11, 0x28b5de82, 0x54ca8ddd, 0x077d54e0,
        0xbe4437af, 0x2e5f3c8c, 0x7b050103, 0xc00df280, 0xaeee44e2, 0xd0a37f43, 0x32aacb40,
        0xa52f58ec, 0x2603fddf, 0x00712e86, 0x25381aa9, 0xd6748e82, 0xd763f62a, 0x47972100,
        0x9032b0da, 0x51aeef66, 0x55ce5b40, 0x71900712, 0x4c25151d, 0x359674f7, 0xdada9a0b,
        0x647fbd15, 0x5af86df8, 0x1baaa809, 0xad1fcad6, 0x469aef86, 0xa6961ddc, 0x86d42d06,
        0x93c0b014, 0x4aba1470, 0xcaa30fb6, 0x1c2cce0a, 0x99567b1f, 0xaa0cd2d3, 0xa00be299,
        0xf8448640, 0x2e6755fc, 0xac4fcdec, 0xf453c9cf, 0xe81cf154, 0x6c7202d4, 0xc2c7385c,
        0xafe9b043, 0x95ffd7dc, 0x4f59da5b, 0x91de6176, 0x0d12ffb8, 0x84ee89ac, 0x9907b4d2,
        0x533e308d, 0x03dc067e, 0x5f0e0438, 0xb2b02c25, 0x604d6e09, 0x681e5c4b, 0xaeb3e622,
        0x155ad968, 0x4263eb04, 0x9d88b31f, 0x50c2cb16, 0x3f11b791, 0x6667afe7, 0xf382f282,
        0x1a6889b8, 0xfd9dc19f, 0xde42c92a, 0x22ed0c68, 0x7f47463d, 0xeaba103f, 0xb82b6080,
        0x9decdda2, 0x828d550b, 0x8d3b6ed5, 0xdca2b4da, 0x3a3972d0, 0x4ac726eb, 0xe4920a77,
        0x529295e6, 0xfb6baea9, 0x5e9f28eb, 0x1e30c7cc, 0x40c14fff, 0xfc07978f, 0x96a1f19b,
        0x68f95f1b, 0x997157e1, 0x290ece4e, 0xb0ed8196, 0xce6c7ad6, 0x097e41e6, 0x3d25fd90,
        0x4ce8bfe5, 0xa90bc090, 0xe36841ad, 0xe031ccf7, 0xd1a9427c, 0xa2eb1c92, 0x93f3319c,
        0xd0a9499b, 0xb58ac6fe, 0x29e80783, 0xe3809241, 0xfc6f1650, 0xf22fd3e2, 0xc41e02e0,
        0x83c2df88, 0xd961051a, 0xd6b1825a, 0x9b2b2ec3, 0x4e4ff232, 0x6fcb00e8, 0x6664d9c1,
        0xd70ac6c2, 0x836b5a6e, 0x67427046, 0x23d5e7e5, 0x381978f1, 0x65065343, 0x02795d8e,
        0x1495d20d, 0x073855cd, 0xa29c82eb, 0x94c9fbcb, 0xf370b37f, 0x09c902ac, 0xea6dd7dc,
        0x861b468f, 0xe9415bce, 0x91820a12, 0x96309b0f, 0x13608e53, 0xc776b648, 0xaab37f1c,
        0xc22c52c5, 0x0e1c5f1f, 0xcecfcd43, 0x35e38c9b, 0xd8311ee7, 0xc7b63e65, 0x24e6fe8f,
        0x9c1de0de, 0xd0c6d7c9, 0x86c5c2a2, 0x45aa5d4a, 0x62127e05, 0xcf067065, 0xf90d0213,
        0x82f89c77,
};

/* The carry-less product of two 32-bit polynomials, with ordinary integer
 * multiplies on operands thinned to every fourth bit: no column sums to 16,
 * so carries never reach the next bit that is kept (as in BearSSL). */
static inline uint64_t crc32c_clmul(uint32_t a, uint32_t b)
{
	uint64_t a0 = a & 0x11111111u, a1 = a & 0x22222222u;
	uint64_t a2 = a & 0x44444444u, a3 = a & 0x88888888u;
	uint64_t b0 = b & 0x11111111u, b1 = b & 0x22222222u;
	uint64_t b2 = b & 0x44444444u, b3 = b & 0x88888888u;
	uint64_t z0 = (a0 * b0) ^ (a1 * b3) ^ (a2 * b2) ^ (a3 * b1);
	uint64_t z1 = (a0 * b1) ^ (a1 * b0) ^ (a2 * b3) ^ (a3 * b2);
	uint64_t z2 = (a0 * b2) ^ (a1 * b1) ^ (a2 * b0) ^ (a3 * b3);
	uint64_t z3 = (a0 * b3) ^ (a1 * b2) ^ (a2 * b1) ^ (a3 * b0);
	return (z0 & 0x1111111111111111u) | (z1 & 0x2222222222222222u) |
	       (z2 & 0x4444444444444444u) | (z3 & 0x8888888888888888u);
}

/* crc * x^(64 * words) mod P. In reflected bit order the integer product of
 * two 32-bit values is the polynomial product divided by x, and the CRC
 * instruction on a zero state multiplies its 64-bit input by x^32 mod P. */
static inline CRC32C_HW_TARGET uint32_t crc32c_shift(uint32_t crc, size_t words)
{
	return crc32c_hw_u64(0, crc32c_clmul(crc, crc32c_stripe_k[words - 1]));
}

/* One block: three stripes of `words` words each, joined into crc. */
static CRC32C_HW_TARGET uint32_t crc32c_hw_block(uint32_t crc, const unsigned char *p, size_t words)
{
	const unsigned char *q = p + 8 * words, *r = q + 8 * words;
	uint32_t c1 = 0, c2 = 0;
	for (size_t i = 0; i < 8 * words; i += 8) {
		crc = crc32c_hw_word(crc, p + i);
		c1 = crc32c_hw_word(c1, q + i);
		c2 = crc32c_hw_word(c2, r + i);
	}
	crc = crc32c_shift(crc, words) ^ c1;
	return crc32c_shift(crc, words) ^ c2;
}

/* One chain: buffers too short to pay for the joins, and the tails. */
static CRC32C_HW_TARGET uint32_t crc32c_hw_serial(uint32_t crc, const unsigned char *p, size_t n)
{
	while (n && ((uintptr_t)p & 7)) {
		crc = crc32c_hw_byte(crc, *p++);
		n--;
	}
	while (n >= 8) {
		crc = crc32c_hw_word(crc, p);
		p += 8;
		n -= 8;
	}
	while (n--)
		crc = crc32c_hw_byte(crc, *p++);
	return crc;
}

static CRC32C_HW_TARGET uint32_t crc32c_hw_striped(uint32_t crc, const unsigned char *p, size_t n)
{
	while ((uintptr_t)p & 7) {
		crc = crc32c_hw_byte(crc, *p++);
		n--;
	}
	while (n >= 3 * CRC32C_STRIPE_MAX) {
		crc = crc32c_hw_block(crc, p, CRC32C_STRIPE_MAX / 8);
		p += 3 * CRC32C_STRIPE_MAX;
		n -= 3 * CRC32C_STRIPE_MAX;
	}
	size_t words = n / 24;
	if (words >= CRC32C_STRIPE_MIN / 8) {
		crc = crc32c_hw_block(crc, p, words);
		p += 24 * words;
		n -= 24 * words;
	}
	return crc32c_hw_serial(crc, p, n);
}

static CRC32C_HW_TARGET uint32_t crc32c_hw(uint32_t crc, const unsigned char *p, size_t n)
{
	/* + 7: the striped path first spends up to 7 bytes reaching alignment */
	if (n >= 3 * CRC32C_STRIPE_MIN + 7)
		return crc32c_hw_striped(crc, p, n);
	return crc32c_hw_serial(crc, p, n);
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
