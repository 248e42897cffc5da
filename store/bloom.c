/*
 * bloom.c - building and probing the per-table bloom filter.
 *
 * Layout: ceil(bits / 8) bytes of bit array, then one byte k. Bit i lives in
 * byte i / 8 at position i % 8. A key with hash h sets k bits: h, h + d,
 * h + 2d, ... modulo the bit count, with d = h rotated right by 17 bits
 * (double hashing: Kirsch and Mitzenmacher show two hash functions are enough
 * for the false positive rate of k independent ones). k = bits_per_key *
 * ln 2, computed in integers (69/100) so the bytes never depend on the
 * floating point unit, and clamped to [1, 30].
 */
#include "bloom.h"

#include "cairn.h"

#define BLOOM_SEED     0xbc9f1d34u
#define BLOOM_MIN_BITS 64
#define BLOOM_MAX_K    30

uint32_t bloom_hash(struct slice user_key)
{
	return hash32(user_key.data, user_key.len, BLOOM_SEED);
}

static int bloom_k(int bits_per_key)
{
	int k = bits_per_key * 69 / 100;
	if (k < 1)
		k = 1;
	if (k > BLOOM_MAX_K)
		k = BLOOM_MAX_K;
	return k;
}

int bloom_build(int bits_per_key, const uint32_t *hashes, size_t n, struct buf *out)
{
	if (bits_per_key < 1)
		bits_per_key = 1;
	/* a tiny minimum keeps the false positive rate sane for few keys */
	uint64_t bits = (uint64_t)n * (uint64_t)bits_per_key;
	if (bits < BLOOM_MIN_BITS)
		bits = BLOOM_MIN_BITS;
	size_t bytes = (size_t)((bits + 7) / 8);
	bits = (uint64_t)bytes * 8;
	int k = bloom_k(bits_per_key);

	size_t start = out->len;
	int r = buf_reserve(out, bytes + 1);
	if (r)
		return r;
	char *array = out->data + start;
	memset(array, 0, bytes + 1);
	for (size_t i = 0; i < n; i++) {
		uint32_t h = hashes[i];
		uint32_t delta = (h >> 17) | (h << 15);
		for (int j = 0; j < k; j++) {
			uint32_t pos = (uint32_t)(h % bits);
			array[pos / 8] = (char)(array[pos / 8] | (1 << (pos % 8)));
			h += delta;
		}
	}
	array[bytes] = (char)k;
	out->len = start + bytes + 1;
	return 0;
}

int bloom_may_contain(struct slice filter, struct slice user_key)
{
	if (filter.len < 2)
		return 1;
	size_t bytes = filter.len - 1;
	uint64_t bits = (uint64_t)bytes * 8;
	int k = (unsigned char)filter.data[bytes];
	if (k < 1 || k > BLOOM_MAX_K)
		return 1;
	uint32_t h = bloom_hash(user_key);
	uint32_t delta = (h >> 17) | (h << 15);
	for (int j = 0; j < k; j++) {
		uint32_t pos = (uint32_t)(h % bits);
		if (!(filter.data[pos / 8] & (1 << (pos % 8))))
			return 0;
		h += delta;
	}
	return 1;
}
