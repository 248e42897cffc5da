/*
 * test_util.c - coding, checksums, buffers and hashing: the pieces every
 * on-disk format depends on.
 */
#include <criterion/criterion.h>
#include <stdlib.h>

#include "cairn.h"
#include "util.h"

uint32_t crc32c_portable(uint32_t crc, const void *data, size_t n);

Test(util, crc32c_matches_published_check_values)
{
	cr_assert_eq(crc32c("123456789", 9), 0xe3069283u);
	char zeros[32] = {0};
	cr_assert_eq(crc32c(zeros, 32), 0x8a9136aau);
	unsigned char ones[32];
	memset(ones, 0xff, 32);
	cr_assert_eq(crc32c(ones, 32), 0x62a8ab43u);
	unsigned char inc[32];
	for (int i = 0; i < 32; i++)
		inc[i] = (unsigned char)i;
	cr_assert_eq(crc32c(inc, 32), 0x46dd794eu);
}

Test(util, crc32c_hardware_and_table_paths_agree_at_every_alignment)
{
	char big[4096];
	uint64_t rng = 1;
	for (size_t i = 0; i < sizeof(big); i++)
		big[i] = (char)prng_next(&rng);
	for (size_t off = 0; off < 16; off++)
		for (size_t n = 0; n < 300; n += 7)
			cr_assert_eq(crc32c(big + off, n), crc32c_portable(0, big + off, n),
			             "off %zu n %zu", off, n);
	cr_assert_eq(crc32c_extend(crc32c("1234", 4), "56789", 5), crc32c("123456789", 9));
}

/* The definition itself, one bit at a time: independent of both the tables
 * and the CPU instructions that crc32c() uses. */
static uint32_t crc_bitwise(uint32_t crc, const unsigned char *p, size_t n)
{
	crc = ~crc;
	while (n--) {
		crc ^= *p++;
		for (int k = 0; k < 8; k++)
			crc = (crc >> 1) ^ (0x82f63b78u & (0u - (crc & 1)));
	}
	return ~crc;
}

static unsigned char *random_bytes(size_t n, uint64_t seed)
{
	unsigned char *b = malloc(n);
	cr_assert_not_null(b);
	for (size_t i = 0; i < n; i++)
		b[i] = (unsigned char)prng_next(&seed);
	return b;
}

Test(util, crc32c_matches_bitwise_definition_at_every_length_to_5000)
{
	/* covers the single chain, the threshold of the three-way split and
	 * every size of its one shorter block, from each alignment */
	enum { max = 5000 };
	unsigned char *b = random_bytes(max + 8, 7);
	for (size_t off = 0; off < 8; off++) {
		uint32_t ref = 0;
		for (size_t n = 0; n <= max; n++) {
			cr_assert_eq(crc32c(b + off, n), ref, "off %zu n %zu", off, n);
			cr_assert_eq(crc32c_portable(0, b + off, n), ref, "off %zu n %zu", off, n);
			ref = crc_bitwise(ref, b + off + n, 1);
		}
	}
	free(b);
}

Test(util, crc32c_matches_bitwise_definition_on_large_buffers)
{
	/* whole blocks of three 4 KiB stripes, with remainders on both sides
	 * of the shorter block and of the single-chain tail */
	size_t lens[] = {12288, 12289, 12311,      12312,  12312 + 383, 12312 + 391,
	                 24576, 65536, 65536 + 23, 100000, 1 << 20,     (1 << 20) + 4095};
	size_t offs[] = {0, 1, 3, 5, 7, 4096 + 2};
	size_t cap = (1 << 20) + 4095 + 4096 + 8;
	unsigned char *b = random_bytes(cap, 11);
	for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
		for (size_t j = 0; j < sizeof(offs) / sizeof(offs[0]); j++) {
			uint32_t ref = crc_bitwise(0, b + offs[j], lens[i]);
			cr_assert_eq(crc32c(b + offs[j], lens[i]), ref, "n %zu off %zu", lens[i],
			             offs[j]);
		}
	}
	/* zeros and ones: states the join arithmetic sees only in such data */
	memset(b, 0, 1 << 20);
	cr_assert_eq(crc32c(b, 1 << 20), crc_bitwise(0, b, 1 << 20));
	memset(b, 0xff, 1 << 20);
	cr_assert_eq(crc32c(b, 1 << 20), crc_bitwise(0, b, 1 << 20));
	free(b);
}

Test(util, crc32c_agrees_with_table_for_every_stripe_length)
{
	/* steps of 23 bytes reach every stripe length in words, so every join
	 * factor is used, alone and after whole blocks (the table path is held
	 * to the bitwise definition above) */
	size_t max = 2 * 3 * 4096 + 3 * 4096;
	unsigned char *b = random_bytes(max + 1, 19);
	for (size_t n = 5000; n <= max; n += 23)
		cr_assert_eq(crc32c(b + 1, n), crc32c_portable(0, b + 1, n), "n %zu", n);
	free(b);
}

Test(util, crc32c_extend_in_pieces_equals_whole)
{
	/* a nonzero starting state must flow through the striped path too */
	size_t n = 200000;
	unsigned char *b = random_bytes(n, 13);
	uint32_t whole = crc32c(b, n);
	uint64_t rng = 17;
	for (int t = 0; t < 200; t++) {
		size_t cut1 = prng_below(&rng, n + 1);
		size_t cut2 = cut1 + prng_below(&rng, n - cut1 + 1);
		uint32_t c = crc32c(b, cut1);
		c = crc32c_extend(c, b + cut1, cut2 - cut1);
		c = crc32c_extend(c, b + cut2, n - cut2);
		cr_assert_eq(c, whole, "cuts %zu %zu", cut1, cut2);
	}
	free(b);
}

Test(util, crc_mask_round_trips_and_differs)
{
	for (uint32_t c = 1; c < 100000; c += 997) {
		cr_assert_eq(crc32c_unmask(crc32c_mask(c)), c);
		cr_assert_neq(crc32c_mask(c), c);
	}
}

Test(util, varints_round_trip_and_reject_truncation)
{
	uint64_t vals[] = {0,
	                   1,
	                   127,
	                   128,
	                   255,
	                   300,
	                   16383,
	                   16384,
	                   UINT32_MAX,
	                   (uint64_t)UINT32_MAX + 1,
	                   UINT64_MAX - 1,
	                   UINT64_MAX};
	for (size_t i = 0; i < sizeof(vals) / sizeof(vals[0]); i++) {
		char b[10];
		int n = enc_varint64(b, vals[i]);
		cr_assert_eq(n, varint_length(vals[i]));
		uint64_t out;
		cr_assert_eq(dec_varint64(b, b + n, &out), b + n);
		cr_assert_eq(out, vals[i]);
		for (int cut = 0; cut < n; cut++)
			cr_assert_null(dec_varint64(b, b + cut, &out));
		uint32_t o32;
		const char *p = dec_varint32(b, b + n, &o32);
		if (vals[i] <= UINT32_MAX)
			cr_assert(p && o32 == vals[i]);
		else
			cr_assert_null(p);
	}
	/* an overlong eleventh byte is rejected, not wrapped */
	char bad[11];
	memset(bad, 0xff, sizeof(bad));
	uint64_t out;
	cr_assert_null(dec_varint64(bad, bad + 11, &out));
}

Test(util, fixed_coding_is_little_endian)
{
	char b[8];
	enc_fixed32(b, 0x04030201u);
	cr_assert(b[0] == 1 && b[3] == 4);
	enc_fixed64(b, 0x0807060504030201ull);
	cr_assert(b[0] == 1 && b[7] == 8);
	cr_assert_eq(dec_fixed64(b), 0x0807060504030201ull);
}

Test(util, buffers_and_slices)
{
	struct buf b = {0};
	cr_assert_eq(buf_put_lenprefixed(&b, "hello", 5), 0);
	cr_assert_eq(buf_put_fixed32(&b, 7), 0);
	struct slice s = buf_slice(&b), out;
	cr_assert_eq(slice_get_lenprefixed(&s, &out), 0);
	cr_assert(out.len == 5 && memcmp(out.data, "hello", 5) == 0);
	uint32_t v;
	cr_assert_eq(slice_get_fixed32(&s, &v), 0);
	cr_assert_eq(v, 7);
	cr_assert_eq(slice_get_fixed32(&s, &v), -1);
	/* a length prefix longer than the data is refused without moving */
	struct buf bad = {0};
	buf_put_varint32(&bad, 100);
	buf_append(&bad, "abc", 3);
	struct slice sb = buf_slice(&bad);
	cr_assert_eq(slice_get_lenprefixed(&sb, &out), -1);
	cr_assert_eq(sb.len, bad.len);
	cr_assert_lt(slice_cmp(slice_make("ab", 2), slice_make("abc", 3)), 0);
	cr_assert_gt(slice_cmp(slice_make("b", 1), slice_make("abc", 3)), 0);
	cr_assert_eq(slice_cmp(slice_make("", 0), slice_make("", 0)), 0);
	buf_free(&b);
	buf_free(&bad);
}

Test(util, hash_is_stable)
{
	/* filters on disk depend on these exact values */
	cr_assert_eq(hash32("", 0, 0xbc9f1d34), hash32("", 0, 0xbc9f1d34));
	cr_assert_neq(hash32("a", 1, 1), hash32("b", 1, 1));
	uint32_t h = hash32("cairn", 5, 0xbc9f1d34);
	cr_assert_eq(h, hash32("cairn", 5, 0xbc9f1d34));
}

Test(util, strerror_names_every_code)
{
	for (int c = 0; c >= CAIRN_EVERSION; c--)
		cr_assert_str_neq(cairn_strerror(c), "unknown error", "code %d", c);
	cr_assert_str_eq(cairn_strerror(-999), "unknown error");
}

Test(util, arr_room_doubles_from_first_and_keeps_items)
{
	uint64_t *a = NULL;
	size_t n = 0, cap = 0;
	for (uint64_t i = 0; i < 100; i++) {
		cr_assert_eq(arr_room(&a, &cap, n, sizeof(*a), 8), 0);
		cr_assert_gt(cap, n);
		a[n++] = i;
	}
	cr_assert_eq(cap, 128); /* 8, 16, 32, 64, 128 */
	for (uint64_t i = 0; i < 100; i++)
		cr_assert_eq(a[i], i);
	/* an element size that cannot double is refused, the array untouched */
	size_t huge = SIZE_MAX / 100;
	cr_assert_eq(arr_room(&a, &cap, cap, huge, 8), CAIRN_ENOMEM);
	cr_assert_eq(cap, 128);
	free(a);
}
