/*
 * test_batch.c - write batches: the encoding round trip through
 * batch_iterate, the size limits, merging for group commit, and the
 * all-or-nothing validation of encodings read back from a log.
 */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "batch.h"

#define SEED 0xba7c4001ull

struct seen {
	int calls;
	int stop_at; /* return 7 from this call (1-based); 0 never */
	uint64_t seq[64];
	enum value_type type[64];
	struct buf key[64], val[64];
	int64_t time_ns;
};

static int collect(void *ctx, uint64_t seq, enum value_type type, struct slice key,
                   struct slice value, int64_t time_ns)
{
	struct seen *s = ctx;
	int i = s->calls++;

	cr_assert_lt(i, 64);
	s->seq[i] = seq;
	s->type[i] = type;
	cr_assert_eq(buf_set(&s->key[i], key.data, key.len), 0);
	cr_assert_eq(buf_set(&s->val[i], value.data, value.len), 0);
	s->time_ns = time_ns;
	return s->calls == s->stop_at ? 7 : 0;
}

static void seen_free(struct seen *s)
{
	for (int i = 0; i < 64; i++) {
		buf_free(&s->key[i]);
		buf_free(&s->val[i]);
	}
}

static int count_calls(void *ctx, uint64_t seq, enum value_type type, struct slice key,
                       struct slice value, int64_t time_ns)
{
	(void)seq, (void)type, (void)key, (void)value, (void)time_ns;
	(*(int *)ctx)++;
	return 0;
}

Test(batch, batch_roundtrips_puts_and_deletes)
{
	struct cairn_batch *b;
	struct seen s = {0};
	char key[64][40], val[64][300];
	size_t klen[64], vlen[64];
	int type[64];
	uint64_t st = SEED, user = 0;

	cr_assert_eq(cairn_batch_new(&b), 0);
	for (int i = 0; i < 64; i++) {
		type[i] = (int)prng_below(&st, 3) != 0;
		klen[i] = i == 0 ? 0 : (size_t)prng_below(&st, 40);
		vlen[i] = i == 1 ? 0 : (size_t)prng_below(&st, 300);
		for (size_t j = 0; j < klen[i]; j++)
			key[i][j] = (char)prng_next(&st);
		for (size_t j = 0; j < vlen[i]; j++)
			val[i][j] = (char)prng_next(&st);
		if (type[i]) {
			cr_assert_eq(cairn_batch_put(b, key[i], klen[i], val[i], vlen[i]), 0);
			user += klen[i] + vlen[i];
		} else {
			cr_assert_eq(cairn_batch_delete(b, key[i], klen[i]), 0);
			user += klen[i];
		}
	}
	cr_assert_eq(cairn_batch_count(b), 64);
	cr_assert_eq(b->user_bytes, user);
	batch_set_header(b, 1000, -5);
	cr_assert_eq(batch_seq(buf_slice(&b->rep)), 1000);
	cr_assert_eq(batch_count(buf_slice(&b->rep)), 64);
	cr_assert_eq(batch_time(buf_slice(&b->rep)), -5);

	cr_assert_eq(batch_iterate(buf_slice(&b->rep), collect, &s), 0, "seed %llx", SEED);
	cr_assert_eq(s.calls, 64);
	cr_assert_eq(s.time_ns, -5);
	for (int i = 0; i < 64; i++) {
		cr_assert_eq(s.seq[i], 1000 + (uint64_t)i);
		cr_assert_eq((int)s.type[i], type[i] ? TYPE_VALUE : TYPE_DELETION);
		cr_assert(slice_eq(buf_slice(&s.key[i]), slice_make(key[i], klen[i])),
		          "entry %d key (seed %llx)", i, SEED);
		cr_assert(slice_eq(buf_slice(&s.val[i]), slice_make(val[i], type[i] ? vlen[i] : 0)),
		          "entry %d value (seed %llx)", i, SEED);
	}
	seen_free(&s);
	cairn_batch_free(b);
}

Test(batch, batch_encoding_is_as_documented)
{
	static const char want[] = "\x02\0\0\0\0\0\0\0" /* seq 2 */
	                           "\x02\0\0\0"         /* count 2 */
	                           "\x03\0\0\0\0\0\0\0" /* time 3 */
	                           "\x01\x01k\x02vv"    /* put k vv */
	                           "\x00\x00";          /* delete "" */
	struct cairn_batch *b;

	cr_assert_eq(cairn_batch_new(&b), 0);
	cr_assert_eq(b->rep.len, BATCH_HEADER);
	cr_assert_eq(cairn_batch_put(b, "k", 1, "vv", 2), 0);
	cr_assert_eq(cairn_batch_delete(b, NULL, 0), 0);
	batch_set_header(b, 2, 3);
	cr_assert_eq(b->rep.len, sizeof(want) - 1);
	cr_assert_eq(memcmp(b->rep.data, want, sizeof(want) - 1), 0);
	cairn_batch_free(b);
}

static void assert_unchanged(const struct cairn_batch *b, size_t len, uint32_t count, uint64_t user)
{
	cr_assert_eq(b->rep.len, len);
	cr_assert_eq(b->count, count);
	cr_assert_eq(batch_count(buf_slice(&b->rep)), count);
	cr_assert_eq(b->user_bytes, user);
}

Test(batch, batch_limits_give_etoobig_and_leave_the_batch_unchanged)
{
	static char key[CAIRN_MAX_KEY_SIZE + 1];
	char *val = calloc(1, CAIRN_MAX_VALUE_SIZE);
	struct cairn_batch *b;
	size_t room, v;

	cr_assert_not_null(val);
	cr_assert_eq(cairn_batch_new(&b), 0);
	cr_assert_eq(cairn_batch_put(b, key, CAIRN_MAX_KEY_SIZE + 1, "x", 1), CAIRN_ETOOBIG);
	cr_assert_eq(cairn_batch_delete(b, key, CAIRN_MAX_KEY_SIZE + 1), CAIRN_ETOOBIG);
	cr_assert_eq(cairn_batch_put(b, "k", 1, val, CAIRN_MAX_VALUE_SIZE + 1), CAIRN_ETOOBIG);
	assert_unchanged(b, BATCH_HEADER, 0, 0);
	cr_assert_eq(cairn_batch_put(b, key, CAIRN_MAX_KEY_SIZE, "x", 1), 0);

	/* fill the batch to exactly CAIRN_MAX_BATCH_SIZE encoded bytes */
	while (CAIRN_MAX_BATCH_SIZE - b->rep.len > CAIRN_MAX_VALUE_SIZE + 16)
		cr_assert_eq(cairn_batch_put(b, "", 0, val, CAIRN_MAX_VALUE_SIZE), 0);
	room = CAIRN_MAX_BATCH_SIZE - b->rep.len;
	v = room - 2 - (size_t)varint_length(room);
	if (1 + 1 + (size_t)varint_length(v) + v != room)
		v++;
	cr_assert_eq(1 + 1 + (size_t)varint_length(v) + v, room);
	cr_assert_eq(cairn_batch_put(b, "", 0, val, v + 1), CAIRN_ETOOBIG);
	cr_assert_eq(cairn_batch_put(b, "", 0, val, v), 0);
	cr_assert_eq(b->rep.len, CAIRN_MAX_BATCH_SIZE);

	size_t len = b->rep.len;
	uint32_t count = b->count;
	uint64_t user = b->user_bytes;
	cr_assert_eq(cairn_batch_delete(b, "", 0), CAIRN_ETOOBIG);
	cr_assert_eq(cairn_batch_put(b, "", 0, "", 0), CAIRN_ETOOBIG);
	assert_unchanged(b, len, count, user);

	/* merging into a full batch is refused the same way */
	struct cairn_batch *small;
	cr_assert_eq(cairn_batch_new(&small), 0);
	cr_assert_eq(cairn_batch_delete(small, "a", 1), 0);
	cr_assert_eq(batch_append(b, small), CAIRN_ETOOBIG);
	assert_unchanged(b, len, count, user);
	cairn_batch_free(small);
	cairn_batch_free(b);
	free(val);
}

Test(batch, batch_rejects_null_pointers_with_lengths)
{
	struct cairn_batch *b;

	cr_assert_eq(cairn_batch_new(&b), 0);
	cr_assert_eq(cairn_batch_put(b, NULL, 1, "v", 1), CAIRN_EINVAL);
	cr_assert_eq(cairn_batch_put(b, "k", 1, NULL, 1), CAIRN_EINVAL);
	cr_assert_eq(cairn_batch_delete(b, NULL, 3), CAIRN_EINVAL);
	cr_assert_eq(cairn_batch_put(NULL, "k", 1, "v", 1), CAIRN_EINVAL);
	cr_assert_eq(cairn_batch_put(b, NULL, 0, NULL, 0), 0);
	cr_assert_eq(cairn_batch_count(b), 1);
	cr_assert_eq(cairn_batch_count(NULL), 0);
	cairn_batch_free(b);
	cairn_batch_free(NULL);
}

static struct cairn_batch *sample_batch(void)
{
	struct cairn_batch *b;

	cr_assert_eq(cairn_batch_new(&b), 0);
	cr_assert_eq(cairn_batch_put(b, "alpha", 5, "one", 3), 0);
	cr_assert_eq(cairn_batch_delete(b, "beta", 4), 0);
	cr_assert_eq(cairn_batch_put(b, "", 0, "", 0), 0);
	cr_assert_eq(cairn_batch_put(b, "gamma", 5, "three hundred", 13), 0);
	batch_set_header(b, 77, 123456789);
	return b;
}

Test(batch, batch_truncated_encoding_is_corrupt_without_callbacks)
{
	struct cairn_batch *b = sample_batch();
	struct slice rep = buf_slice(&b->rep);
	char *copy = malloc(rep.len + 1);
	int calls = 0;

	cr_assert_eq(batch_iterate(rep, count_calls, &calls), 0);
	cr_assert_eq(calls, 4);
	for (size_t n = 0; n < rep.len; n++) {
		/* a fresh copy, so a read past n is caught by ASan/valgrind */
		char *p = malloc(n ? n : 1);

		memcpy(p, rep.data, n);
		calls = 0;
		cr_assert_eq(batch_iterate(slice_make(p, n), count_calls, &calls), CAIRN_ECORRUPT,
		             "prefix of %zu bytes", n);
		cr_assert_eq(calls, 0, "prefix of %zu bytes", n);
		free(p);
	}
	/* a trailing byte, a count off by one either way, an unknown type */
	memcpy(copy, rep.data, rep.len);
	copy[rep.len] = 0;
	cr_assert_eq(batch_iterate(slice_make(copy, rep.len + 1), count_calls, &calls),
	             CAIRN_ECORRUPT);
	enc_fixed32(copy + 8, 3);
	cr_assert_eq(batch_iterate(slice_make(copy, rep.len), count_calls, &calls), CAIRN_ECORRUPT);
	enc_fixed32(copy + 8, 5);
	cr_assert_eq(batch_iterate(slice_make(copy, rep.len), count_calls, &calls), CAIRN_ECORRUPT);
	enc_fixed32(copy + 8, 4);
	copy[BATCH_HEADER] = 3;
	cr_assert_eq(batch_iterate(slice_make(copy, rep.len), count_calls, &calls), CAIRN_ECORRUPT);
	copy[BATCH_HEADER] = 1;
	/* sequence numbers that would run past MAX_SEQUENCE */
	enc_fixed64(copy, MAX_SEQUENCE - 2);
	cr_assert_eq(batch_iterate(slice_make(copy, rep.len), count_calls, &calls), CAIRN_ECORRUPT);
	cr_assert_eq(calls, 0);
	enc_fixed64(copy, MAX_SEQUENCE - 3);
	cr_assert_eq(batch_iterate(slice_make(copy, rep.len), count_calls, &calls), 0);
	cr_assert_eq(calls, 4);
	free(copy);
	cairn_batch_free(b);
}

/* Random garbling: the result is either a clean pass or CAIRN_ECORRUPT with
 * no callback at all, never a partial replay or a read out of bounds. */
Test(batch, batch_garbled_encoding_is_all_or_nothing)
{
	struct cairn_batch *b = sample_batch();
	struct slice rep = buf_slice(&b->rep);
	uint64_t st = SEED;
	int corrupt = 0;

	for (int round = 0; round < 20000; round++) {
		char *p = malloc(rep.len);
		int calls = 0, rc, flips = 1 + (int)prng_below(&st, 3);

		memcpy(p, rep.data, rep.len);
		for (int i = 0; i < flips; i++)
			p[BATCH_HEADER + prng_below(&st, rep.len - BATCH_HEADER)] =
			        (char)prng_next(&st);
		rc = batch_iterate(slice_make(p, rep.len), count_calls, &calls);
		cr_assert(rc == 0 || (rc == CAIRN_ECORRUPT && calls == 0),
		          "round %d: rc %d after %d calls (seed %llx)", round, rc, calls, SEED);
		if (rc == 0)
			cr_assert_eq(calls, 4);
		corrupt += rc != 0;
		free(p);
	}
	cr_assert_gt(corrupt, 1000);
	cairn_batch_free(b);
}

Test(batch, batch_iterate_returns_the_first_callback_error)
{
	struct cairn_batch *b = sample_batch();
	struct seen s = {0};

	s.stop_at = 2;
	cr_assert_eq(batch_iterate(buf_slice(&b->rep), collect, &s), 7);
	cr_assert_eq(s.calls, 2);
	seen_free(&s);
	cairn_batch_free(b);
}

Test(batch, batch_append_merges_entries_in_order)
{
	struct cairn_batch *a = sample_batch(), *b;
	struct seen s = {0};
	uint64_t ua = a->user_bytes;
	size_t blen;

	cr_assert_eq(cairn_batch_new(&b), 0);
	cr_assert_eq(cairn_batch_delete(b, "zeta", 4), 0);
	cr_assert_eq(cairn_batch_put(b, "eta", 3, "7", 1), 0);
	blen = b->rep.len;
	cr_assert_eq(batch_append(a, b), 0);
	cr_assert_eq(cairn_batch_count(a), 6);
	cr_assert_eq(a->user_bytes, ua + 8);
	cr_assert_eq(cairn_batch_count(b), 2, "the source is unchanged");
	cr_assert_eq(b->rep.len, blen);

	batch_set_header(a, 10, 1);
	cr_assert_eq(batch_iterate(buf_slice(&a->rep), collect, &s), 0);
	cr_assert_eq(s.calls, 6);
	cr_assert_eq(s.seq[5], 15);
	cr_assert(slice_eq(buf_slice(&s.key[0]), slice_make("alpha", 5)));
	cr_assert(slice_eq(buf_slice(&s.key[4]), slice_make("zeta", 4)));
	cr_assert_eq(s.type[4], TYPE_DELETION);
	cr_assert(slice_eq(buf_slice(&s.key[5]), slice_make("eta", 3)));
	cr_assert(slice_eq(buf_slice(&s.val[5]), slice_make("7", 1)));
	seen_free(&s);
	cairn_batch_free(a);
	cairn_batch_free(b);
}

Test(batch, batch_clear_empties_and_reuses)
{
	struct cairn_batch *b = sample_batch();
	int calls = 0;

	cairn_batch_clear(b);
	cr_assert_eq(cairn_batch_count(b), 0);
	cr_assert_eq(b->user_bytes, 0);
	cr_assert_eq(b->rep.len, BATCH_HEADER);
	cr_assert_eq(batch_seq(buf_slice(&b->rep)), 0);
	cr_assert_eq(batch_iterate(buf_slice(&b->rep), count_calls, &calls), 0);
	cr_assert_eq(calls, 0);
	cr_assert_eq(cairn_batch_put(b, "k", 1, "v", 1), 0);
	cr_assert_eq(batch_iterate(buf_slice(&b->rep), count_calls, &calls), 0);
	cr_assert_eq(calls, 1);
	cairn_batch_free(b);
}
