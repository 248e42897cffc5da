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
