/*
 * batch.c - write batches: the public cairn_batch_* calls that build one, the
 * encoding shared with the write-ahead log (a log record's payload is exactly
 * one encoded batch), and the validating iteration used by log replay.
 *
 * A batch is kept encoded from the start (struct cairn_batch.rep), so a
 * commit writes it to the log without another copy and replay reads the
 * same bytes back. Entries are appended in place; the header's sequence and
 * time are filled in by the writer at commit (batch_set_header). Every limit
 * is checked and memory is reserved before anything is written, so a failed
 * put or delete leaves the batch exactly as it was.
 */
#include "batch.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

/* Largest encoded entry header: type byte and two varint32 lengths. */
#define BATCH_ENTRY_OVERHEAD (1 + 5 + 5)

int batch_init(struct cairn_batch *b)
{
	static const char zero[BATCH_HEADER];

	memset(b, 0, sizeof(*b));
	return buf_append(&b->rep, zero, sizeof(zero));
}

void batch_destroy(struct cairn_batch *b)
{
	buf_free(&b->rep);
}

void batch_set_header(struct cairn_batch *b, uint64_t seq, int64_t time_ns)
{
	assert(b->rep.len >= BATCH_HEADER);
	enc_fixed64(b->rep.data, seq);
	enc_fixed64(b->rep.data + 12, (uint64_t)time_ns);
}

int cairn_batch_new(struct cairn_batch **bp)
{
	struct cairn_batch *b;

	*bp = NULL;
	b = malloc(sizeof(*b));
	if (!b)
		return CAIRN_ENOMEM;
	if (batch_init(b)) {
		free(b);
		return CAIRN_ENOMEM;
	}
	*bp = b;
	return 0;
}

void cairn_batch_free(struct cairn_batch *b)
{
	if (!b)
		return;
	batch_destroy(b);
	free(b);
}

void cairn_batch_clear(struct cairn_batch *b)
{
	assert(b->rep.len >= BATCH_HEADER);
	memset(b->rep.data, 0, BATCH_HEADER);
	b->rep.len = BATCH_HEADER;
	b->count = 0;
	b->ncopy = 0;
	b->user_bytes = 0;
}

uint32_t cairn_batch_count(const struct cairn_batch *b)
{
	return b ? b->count : 0;
}

/* Appends one entry. The limits are checked and the room reserved first, so
 * on any error the batch is unchanged. */
static int batch_add(struct cairn_batch *b, enum value_type type, const void *key, size_t klen,
                     const void *val, size_t vlen)
{
	size_t need;
	char *p;
	int r;

	if (!b || (!key && klen) || (!val && vlen))
		return CAIRN_EINVAL;
	if (klen > CAIRN_MAX_KEY_SIZE || vlen > CAIRN_MAX_VALUE_SIZE)
		return CAIRN_ETOOBIG;
	need = 1 + (size_t)varint_length(klen) + klen;
	if (type != TYPE_DELETION)
		need += (size_t)varint_length(vlen) + vlen;
	if (need > CAIRN_MAX_BATCH_SIZE - b->rep.len || b->count == UINT32_MAX)
		return CAIRN_ETOOBIG;
	r = buf_reserve(&b->rep, need);
	if (r)
		return r;

	p = b->rep.data + b->rep.len;
	*p++ = (char)type;
	p += enc_varint32(p, (uint32_t)klen);
	if (klen)
		memcpy(p, key, klen);
	p += klen;
	if (type != TYPE_DELETION) {
		p += enc_varint32(p, (uint32_t)vlen);
		if (vlen)
			memcpy(p, val, vlen);
		p += vlen;
	}
	assert((size_t)(p - b->rep.data) == b->rep.len + need);
	b->rep.len += need;
	b->count++;
	b->user_bytes += klen + vlen;
	enc_fixed32(b->rep.data + 8, b->count);
	return 0;
}

int cairn_batch_put(struct cairn_batch *b, const void *key, size_t klen, const void *val,
                    size_t vlen)
{
	return batch_add(b, TYPE_VALUE, key, klen, val, vlen);
}

int batch_put_blob(struct cairn_batch *b, struct slice key, struct slice ref)
{
	int r = batch_add(b, TYPE_BLOB, key.data, key.len, ref.data, ref.len);
	if (!r)
		b->user_bytes -= ref.len; /* the value's bytes went to a blob file */
	return r;
}

int cairn_batch_delete(struct cairn_batch *b, const void *key, size_t klen)
{
	return batch_add(b, TYPE_DELETION, key, klen, NULL, 0);
}

int cairn_batch_copy(struct cairn_batch *b, const void *from, size_t flen, const void *to,
                     size_t tlen)
{
	if (!from && flen)
		return CAIRN_EINVAL;
	if (flen > CAIRN_MAX_KEY_SIZE)
		return CAIRN_ETOOBIG;
	int r = batch_add(b, (enum value_type)BATCH_TYPE_COPY, to, tlen, from, flen);
	if (!r)
		b->ncopy++;
	return r;
}

int batch_append(struct cairn_batch *dst, const struct cairn_batch *src)
{
	size_t n = src->rep.len - BATCH_HEADER;
	int r;

	assert(src->rep.len >= BATCH_HEADER && dst->rep.len >= BATCH_HEADER);
	if (n > CAIRN_MAX_BATCH_SIZE - dst->rep.len || src->count > UINT32_MAX - dst->count)
		return CAIRN_ETOOBIG;
	r = buf_append(&dst->rep, src->rep.data + BATCH_HEADER, n);
	if (r)
		return r;
	dst->count += src->count;
	dst->ncopy += src->ncopy;
	dst->user_bytes += src->user_bytes;
	enc_fixed32(dst->rep.data + 8, dst->count);
	return 0;
}

/* Decodes one entry from *in, advancing it. Returns 0, or -1 when the entry
 * is malformed: an unknown type, a length running past the end, or a key or
 * value over the limits no writer exceeds. */
static int batch_next_entry(struct slice *in, int user, enum value_type *type, struct slice *key,
                            struct slice *val)
{
	unsigned char t;

	if (in->len < 1)
		return -1;
	t = (unsigned char)in->data[0];
	in->data++;
	in->len--;
	if (t != TYPE_DELETION && t != TYPE_VALUE && t != TYPE_BLOB &&
	    !(user && t == BATCH_TYPE_COPY))
		return -1;
	*type = (enum value_type)t;
	if (slice_get_lenprefixed(in, key) || key->len > CAIRN_MAX_KEY_SIZE)
		return -1;
	*val = slice_make(NULL, 0);
	if (t != TYPE_DELETION &&
	    (slice_get_lenprefixed(in, val) || val->len > CAIRN_MAX_VALUE_SIZE))
		return -1;
	return 0;
}

/* Checks the whole encoding, so that replay applies a batch all or nothing. */
static int batch_validate(struct slice rep, int user)
{
	struct slice in, key, val;
	enum value_type type;
	uint32_t count, i;
	uint64_t seq;

	if (rep.len < BATCH_HEADER)
		return CAIRN_ECORRUPT;
	seq = batch_seq(rep);
	count = batch_count(rep);
	if (count > 0 && (seq > MAX_SEQUENCE || count - 1 > MAX_SEQUENCE - seq))
		return CAIRN_ECORRUPT;
	in = slice_make(rep.data + BATCH_HEADER, rep.len - BATCH_HEADER);
	for (i = 0; i < count; i++)
		if (batch_next_entry(&in, user, &type, &key, &val))
			return CAIRN_ECORRUPT;
	return in.len == 0 ? 0 : CAIRN_ECORRUPT;
}

static int iterate(struct slice rep, int user,
                   int (*fn)(void *ctx, uint64_t seq, enum value_type type, struct slice key,
                             struct slice value, int64_t time_ns),
                   void *ctx)
{
	struct slice in, key, val;
	enum value_type type;
	uint64_t seq;
	int64_t time_ns;
	uint32_t count, i;
	int r;

	r = batch_validate(rep, user);
	if (r)
		return r;
	seq = batch_seq(rep);
	count = batch_count(rep);
	time_ns = batch_time(rep);
	in = slice_make(rep.data + BATCH_HEADER, rep.len - BATCH_HEADER);
	for (i = 0; i < count; i++) {
		r = batch_next_entry(&in, user, &type, &key, &val);
		assert(r == 0);
		r = fn(ctx, seq + i, type, key, val, time_ns);
		if (r)
			return r;
	}
	return 0;
}

int batch_iterate(struct slice rep,
                  int (*fn)(void *ctx, uint64_t seq, enum value_type type, struct slice key,
                            struct slice value, int64_t time_ns),
                  void *ctx)
{
	return iterate(rep, 0, fn, ctx);
}

int batch_iterate_user(const struct cairn_batch *b,
                       int (*fn)(void *ctx, uint64_t seq, enum value_type type, struct slice key,
                                 struct slice value, int64_t time_ns),
                       void *ctx)
{
	return iterate(buf_slice(&b->rep), 1, fn, ctx);
}
