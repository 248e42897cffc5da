/*
 * table.c - writing and reading sorted string tables (sstable.h).
 *
 * A table is written front to back in one pass: data blocks as they fill,
 * then the bloom filter, the index block, the properties block and the
 * 64-byte footer that locates those three. Every stored block is followed by
 * a 5-byte trailer (compression type, masked CRC32C). The index maps a short
 * separator key per data block (>= the block's last key, < the next block's
 * first) to the block's handle, so a lookup costs one index binary search and
 * one data block. docs/format.md ("Tables") describes every byte.
 *
 * A reader keeps the index and the filter in memory for the table's life and
 * reads data blocks through the block cache, verifying the checksum of every
 * block it loads from the file. Nothing read from the file is trusted before
 * it is checked: handles must lie before the footer, lengths inside their
 * blocks, compressed sizes within a bound.
 */
#include <assert.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include <lz4.h>

#include "block.h"
#include "bloom.h"
#include "cairn.h"
#include "dbformat.h"
#include "sstable.h"

#define TABLE_MAGIC   UINT64_C(0x5453534e52494143) /* "CAIRNSST" in file order */
#define TABLE_VERSION 1
/* 1: no file number; 2: the file number follows the ten counters */
#define TABLE_PROPS_VERSION 2
#define FOOTER_SIZE         64
#define FOOTER_CRC_OFF      52
#define TRAILER_SIZE        5
#define MAX_UNCOMPRESSED    (64u * 1024 * 1024)
#define DUMP_VALUE_MAX      64

enum { COMP_NONE = 0, COMP_LZ4 = 1 };

struct block_handle {
	uint64_t offset, size; /* size excludes the trailer */
};

static void handle_encode(struct block_handle h, char *p, int *n)
{
	int k = enc_varint64(p, h.offset);
	*n = k + enc_varint64(p + k, h.size);
}

static int handle_decode(struct slice in, struct block_handle *h)
{
	if (slice_get_varint64(&in, &h->offset) || slice_get_varint64(&in, &h->size) || in.len)
		return CAIRN_ECORRUPT;
	return 0;
}

/* Whether h and its trailer lie inside [0, end). */
static int handle_inside(struct block_handle h, uint64_t end)
{
	return h.size <= end && end - h.size >= TRAILER_SIZE &&
	       h.offset <= end - h.size - TRAILER_SIZE;
}

void table_props_free(struct table_props *p)
{
	buf_free(&p->smallest);
	buf_free(&p->largest);
}

static int props_copy(struct table_props *dst, const struct table_props *src)
{
	*dst = *src;
	memset(&dst->smallest, 0, sizeof(dst->smallest));
	memset(&dst->largest, 0, sizeof(dst->largest));
	int r = buf_set(&dst->smallest, src->smallest.data, src->smallest.len);
	if (!r)
		r = buf_set(&dst->largest, src->largest.data, src->largest.len);
	if (r)
		table_props_free(dst);
	return r;
}

/* ------------------------------------------------------------------------ */
/* Writing                                                                   */

struct table_builder {
	struct table_options o;
	struct env_file *f;
	uint64_t offset; /* bytes written so far */
	int status;      /* the first error; sticks */
	int finished;
	struct block_builder data, index;
	struct buf last_key;
	int pending_index; /* a data block was written; its index entry waits
	                    * for the next key, to pick a short separator */
	struct block_handle pending;
	uint32_t *hashes; /* bloom hashes of the distinct user keys */
	size_t nhashes, hcap;
	struct buf comp, sep;
	struct table_props props;
};

int tb_new(const struct table_options *o, struct env_file *f, struct table_builder **tbp)
{
	*tbp = NULL;
	if (o->block_size == 0 || o->restart_interval < 1 || o->bloom_bits_per_key < 0 ||
	    o->compression < 0 || o->compression > 1)
		return CAIRN_EINVAL;
	struct table_builder *tb = calloc(1, sizeof(*tb));
	if (!tb)
		return CAIRN_ENOMEM;
	tb->o = *o;
	tb->f = f;
	tb->props.file_number = o->file_number;
	bb_init(&tb->data, o->restart_interval);
	/* every index entry is a restart point: binary search finds any block */
	bb_init(&tb->index, 1);
	*tbp = tb;
	return 0;
}

void tb_free(struct table_builder *tb)
{
	if (!tb)
		return;
	bb_free(&tb->data);
	bb_free(&tb->index);
	buf_free(&tb->last_key);
	buf_free(&tb->comp);
	buf_free(&tb->sep);
	free(tb->hashes);
	table_props_free(&tb->props);
	free(tb);
}

uint64_t tb_file_size(const struct table_builder *tb)
{
	return tb->offset + (bb_empty(&tb->data) ? 0 : bb_size_estimate(&tb->data));
}

uint64_t tb_entries(const struct table_builder *tb)
{
	return tb->props.num_entries;
}

/* Stored LZ4 form of raw in tb->comp if it saves at least 1/8, else 0. */
static int tb_compress(struct table_builder *tb, struct slice raw)
{
	if (!tb->o.compression || raw.len == 0 || raw.len > MAX_UNCOMPRESSED)
		return 0;
	int bound = LZ4_compressBound((int)raw.len);
	buf_clear(&tb->comp);
	if (bound <= 0 || buf_reserve(&tb->comp, (size_t)bound + 5))
		return 0; /* storing it raw is always correct */
	int n = enc_varint32(tb->comp.data, (uint32_t)raw.len);
	int c = LZ4_compress_default(raw.data, tb->comp.data + n, (int)raw.len, bound);
	if (c <= 0 || ((uint64_t)n + (uint64_t)c) * 8 > (uint64_t)raw.len * 7)
		return 0;
	tb->comp.len = (size_t)n + (size_t)c;
	return 1;
}

static int tb_write_block(struct table_builder *tb, struct slice raw, int may_compress,
                          struct block_handle *h)
{
	struct slice stored = raw;
	char trailer[TRAILER_SIZE];

	trailer[0] = COMP_NONE;
	if (may_compress && tb_compress(tb, raw)) {
		stored = buf_slice(&tb->comp);
		trailer[0] = COMP_LZ4;
	}
	uint32_t crc = crc32c_extend(crc32c(stored.data, stored.len), trailer, 1);
	enc_fixed32(trailer + 1, crc32c_mask(crc));
	int r = env_append(tb->f, stored.data, stored.len);
	if (!r)
		r = env_append(tb->f, trailer, TRAILER_SIZE);
	if (r)
		return tb->status = r;
	h->offset = tb->offset;
	h->size = stored.len;
	tb->offset += stored.len + TRAILER_SIZE;
	return 0;
}

static int tb_add_index(struct table_builder *tb, struct slice sep, struct block_handle h)
{
	char enc[20];
	int n;
	handle_encode(h, enc, &n);
	int r = bb_add(&tb->index, sep, slice_make(enc, (size_t)n));
	return r ? (tb->status = r) : 0;
}

/*
 * A short key in [last, next): the user key of last cut after the first
 * byte where it differs from next's, that byte raised by one, when that
 * stays below next's user key. It keeps last's trailer; as its user key is
 * already greater than last's, the trailer only has to be some valid one.
 * Otherwise last itself.
 */
static int tb_separator(struct buf *out, struct slice last, struct slice next)
{
	struct slice ul = ikey_user(last), un = ikey_user(next);
	size_t n = ul.len < un.len ? ul.len : un.len, i = 0;
	while (i < n && ul.data[i] == un.data[i])
		i++;
	if (i < n) {
		unsigned char c = (unsigned char)ul.data[i];
		if (c < 0xff && c + 1 < (unsigned char)un.data[i]) {
			int r = buf_set(out, ul.data, i + 1);
			if (r)
				return r;
			out->data[i] = (char)(c + 1);
			return buf_append(out, last.data + ul.len, IKEY_TRAILER);
		}
	}
	return buf_set(out, last.data, last.len);
}

/* A short key >= last: its user key cut after the first byte that can be
 * raised, raised. For the last block, which has no next key. */
static int tb_successor(struct buf *out, struct slice last)
{
	struct slice ul = ikey_user(last);
	for (size_t i = 0; i < ul.len; i++) {
		unsigned char c = (unsigned char)ul.data[i];
		if (c == 0xff)
			continue;
		int r = buf_set(out, ul.data, i + 1);
		if (r)
			return r;
		out->data[i] = (char)(c + 1);
		return buf_append(out, last.data + ul.len, IKEY_TRAILER);
	}
	return buf_set(out, last.data, last.len);
}

static int tb_flush(struct table_builder *tb)
{
	struct slice raw;
	if (bb_empty(&tb->data))
		return 0;
	assert(!tb->pending_index);
	int r = bb_finish(&tb->data, &raw);
	if (r)
		return tb->status = r;
	r = tb_write_block(tb, raw, 1, &tb->pending);
	if (r)
		return r;
	tb->pending_index = 1;
	tb->props.num_data_blocks++;
	bb_reset(&tb->data);
	return 0;
}

static int tb_add_hash(struct table_builder *tb, struct slice ukey)
{
	if (tb->nhashes == tb->hcap) {
		size_t cap = tb->hcap ? tb->hcap * 2 : 256;
		uint32_t *h = realloc(tb->hashes, cap * sizeof(*h));
		if (!h)
			return tb->status = CAIRN_ENOMEM;
		tb->hashes = h;
		tb->hcap = cap;
	}
	tb->hashes[tb->nhashes++] = bloom_hash(ukey);
	return 0;
}

static void tb_count(struct table_builder *tb, struct slice ikey, struct slice ival)
{
	struct table_props *p = &tb->props;
	uint64_t seq = ikey_seq(ikey);
	if (p->num_entries == 0 || seq < p->min_seq)
		p->min_seq = seq;
	if (p->num_entries == 0 || seq > p->max_seq)
		p->max_seq = seq;
	p->num_entries++;
	if (ikey_type(ikey) == TYPE_DELETION)
		p->num_deletions++;
	p->raw_key_bytes += ikey.len;
	p->raw_value_bytes += ival.len;
}

int tb_add(struct table_builder *tb, struct slice ikey, struct slice ival)
{
	int r;
	if (tb->status)
		return tb->status;
	assert(!tb->finished);
	if (!ikey_valid(ikey))
		return CAIRN_EINVAL;
	int first = tb->props.num_entries == 0;
	if (!first && ikey_cmp(buf_slice(&tb->last_key), ikey) >= 0)
		return CAIRN_EINVAL; /* out of order: the caller's bug, nothing written */
	if (tb->pending_index) {
		if ((r = tb_separator(&tb->sep, buf_slice(&tb->last_key), ikey)))
			return tb->status = r;
		if ((r = tb_add_index(tb, buf_slice(&tb->sep), tb->pending)))
			return r;
		tb->pending_index = 0;
	}
	if (tb->o.bloom_bits_per_key > 0 &&
	    (first || !slice_eq(ikey_user(buf_slice(&tb->last_key)), ikey_user(ikey)))) {
		if ((r = tb_add_hash(tb, ikey_user(ikey))))
			return r;
	}
	if (first && (r = buf_set(&tb->props.smallest, ikey.data, ikey.len)))
		return tb->status = r;
	if ((r = bb_add(&tb->data, ikey, ival)) ||
	    (r = buf_set(&tb->last_key, ikey.data, ikey.len)))
		return tb->status = r;
	tb_count(tb, ikey, ival);
	if (bb_size_estimate(&tb->data) >= tb->o.block_size)
		return tb_flush(tb);
	return 0;
}

/*
 * Properties: u32 version, ten fixed64 counters in struct order, (version 2)
 * fixed64 file number, then the smallest and largest internal keys, each
 * varint32 length + bytes. A builder that does not know its file number
 * writes version 1, which every reader since the first understands.
 */
static int props_encode(const struct table_props *p, struct buf *out)
{
	const uint64_t v[10] = {p->num_entries,     p->num_deletions,   p->raw_key_bytes,
	                        p->raw_value_bytes, p->data_bytes,      p->index_bytes,
	                        p->filter_bytes,    p->num_data_blocks, p->min_seq,
	                        p->max_seq};
	int r = buf_put_fixed32(out, p->file_number ? TABLE_PROPS_VERSION : 1);
	for (int i = 0; !r && i < 10; i++)
		r = buf_put_fixed64(out, v[i]);
	if (!r && p->file_number)
		r = buf_put_fixed64(out, p->file_number);
	if (!r)
		r = buf_put_lenprefixed(out, p->smallest.data, p->smallest.len);
	if (!r)
		r = buf_put_lenprefixed(out, p->largest.data, p->largest.len);
	return r;
}

static int props_decode(struct slice in, struct table_props *p)
{
	uint32_t version;
	uint64_t v[10], number = 0;
	struct slice small, large;

	memset(p, 0, sizeof(*p));
	if (slice_get_fixed32(&in, &version))
		return CAIRN_ECORRUPT;
	if (version < 1 || version > TABLE_PROPS_VERSION)
		return CAIRN_EVERSION;
	for (int i = 0; i < 10; i++)
		if (slice_get_fixed64(&in, &v[i]))
			return CAIRN_ECORRUPT;
	if (version >= 2 && (slice_get_fixed64(&in, &number) || number == 0))
		return CAIRN_ECORRUPT;
	if (slice_get_lenprefixed(&in, &small) || slice_get_lenprefixed(&in, &large) || in.len)
		return CAIRN_ECORRUPT;
	/* a table with entries knows its key range; an empty one has none */
	if (v[0] ? !ikey_valid(small) || !ikey_valid(large) : small.len || large.len)
		return CAIRN_ECORRUPT;
	p->num_entries = v[0];
	p->num_deletions = v[1];
	p->raw_key_bytes = v[2];
	p->raw_value_bytes = v[3];
	p->data_bytes = v[4];
	p->index_bytes = v[5];
	p->filter_bytes = v[6];
	p->num_data_blocks = v[7];
	p->min_seq = v[8];
	p->max_seq = v[9];
	p->file_number = number;
	if (buf_set(&p->smallest, small.data, small.len) ||
	    buf_set(&p->largest, large.data, large.len)) {
		table_props_free(p);
		return CAIRN_ENOMEM;
	}
	return 0;
}

static void footer_put_handle(char *p, struct block_handle h)
{
	enc_fixed64(p, h.offset);
	enc_fixed64(p + 8, h.size);
}

static int tb_write_footer(struct table_builder *tb, struct block_handle filter,
                           struct block_handle props, struct block_handle index)
{
	char footer[FOOTER_SIZE];
	footer_put_handle(footer, filter);
	footer_put_handle(footer + 16, props);
	footer_put_handle(footer + 32, index);
	enc_fixed32(footer + 48, TABLE_VERSION);
	enc_fixed32(footer + FOOTER_CRC_OFF, crc32c_mask(crc32c(footer, FOOTER_CRC_OFF)));
	enc_fixed64(footer + 56, TABLE_MAGIC);
	int r = env_append(tb->f, footer, FOOTER_SIZE);
	if (r)
		return tb->status = r;
	tb->offset += FOOTER_SIZE;
	return 0;
}

static int tb_write_meta(struct table_builder *tb, struct block_handle *filter,
                         struct block_handle *index)
{
	struct slice raw;
	int r;

	memset(filter, 0, sizeof(*filter));
	tb->props.data_bytes = tb->offset;
	if (tb->o.bloom_bits_per_key > 0) {
		buf_clear(&tb->sep);
		if ((r = bloom_build(tb->o.bloom_bits_per_key, tb->hashes, tb->nhashes, &tb->sep)))
			return tb->status = r;
		/* the filter is random bits: never worth compressing */
		if ((r = tb_write_block(tb, buf_slice(&tb->sep), 0, filter)))
			return r;
		tb->props.filter_bytes = filter->size + TRAILER_SIZE;
	}
	if (tb->pending_index) {
		if ((r = tb_successor(&tb->sep, buf_slice(&tb->last_key))) ||
		    (r = tb_add_index(tb, buf_slice(&tb->sep), tb->pending)))
			return tb->status = r;
		tb->pending_index = 0;
	}
	if ((r = bb_finish(&tb->index, &raw)))
		return tb->status = r;
	if ((r = tb_write_block(tb, raw, 1, index)))
		return r;
	tb->props.index_bytes = index->size + TRAILER_SIZE;
	return 0;
}

int tb_finish(struct table_builder *tb, struct table_props *props)
{
	struct block_handle filter, index, ph;
	int r;

	if (tb->status)
		return tb->status;
	assert(!tb->finished);
	if ((r = tb_flush(tb)) || (r = tb_write_meta(tb, &filter, &index)))
		return r;
	if (tb->props.num_entries &&
	    (r = buf_set(&tb->props.largest, tb->last_key.data, tb->last_key.len)))
		return tb->status = r;
	buf_clear(&tb->sep);
	if ((r = props_encode(&tb->props, &tb->sep)))
		return tb->status = r;
	if ((r = tb_write_block(tb, buf_slice(&tb->sep), 0, &ph)) ||
	    (r = tb_write_footer(tb, filter, ph, index)))
		return r;
	tb->finished = 1;
	if (props && (r = props_copy(props, &tb->props)))
		return r;
	return 0;
}

/* ------------------------------------------------------------------------ */
/* Reading                                                                   */

struct table {
	struct env_file *f;
	char *path;
	uint64_t file_size;
	uint64_t meta_end; /* where the footer starts: every block lies before */
	struct cache *bc;
	uint64_t cache_id;
	struct block_handle filter_h, props_h, index_h;
	struct block index; /* owns its bytes */
	char *filter;       /* NULL: no filter */
	size_t filter_len;
	struct table_props props;
	struct table_read_stats *stats;
	pthread_mutex_t mu; /* guards lasterr */
	char lasterr[256];
};

/* Formats "table 'path': " + the message into err. */
static void table_msg(const char *path, char *err, size_t errlen, const char *fmt, ...)
        __attribute__((format(printf, 4, 5)));
static void table_msg(const char *path, char *err, size_t errlen, const char *fmt, ...)
{
	char what[200];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(what, sizeof(what), fmt, ap);
	va_end(ap);
	fmt_msg(err, errlen, "table '%s': %s", path, what);
}

static void table_set_error(struct table *t, const char *msg)
{
	pthread_mutex_lock(&t->mu);
	snprintf(t->lasterr, sizeof(t->lasterr), "%s", msg);
	pthread_mutex_unlock(&t->mu);
}

void table_last_error(struct table *t, char *buf, size_t len)
{
	pthread_mutex_lock(&t->mu);
	fmt_msg(buf, len, "%s", t->lasterr);
	pthread_mutex_unlock(&t->mu);
}

static int table_pread(struct env_file *f, const char *path, uint64_t off, char *buf, size_t n,
                       char *err, size_t errlen)
{
	size_t got = 0;
	int r = env_pread(f, off, buf, n, &got);
	if (r) {
		char os[160];
		env_errmsg(env_of(f), os, sizeof(os));
		table_msg(path, err, errlen, "read of %zu bytes at offset %" PRIu64 ": %s", n, off,
		          os);
		return r;
	}
	if (got != n) {
		table_msg(path, err, errlen, "block at offset %" PRIu64 ": truncated file", off);
		return CAIRN_ECORRUPT;
	}
	return 0;
}

/* Uncompresses an LZ4 block: varint32 size, then the LZ4 block data. */
static int table_lz4(const char *path, uint64_t off, const char *p, size_t n, char **out,
                     size_t *outlen, char *err, size_t errlen)
{
	uint32_t ulen;
	const char *q = dec_varint32(p, p + n, &ulen);
	if (!q || ulen > MAX_UNCOMPRESSED || (size_t)(p + n - q) > INT32_MAX) {
		table_msg(path, err, errlen, "block at offset %" PRIu64 ": bad uncompressed size",
		          off);
		return CAIRN_ECORRUPT;
	}
	char *u = malloc(ulen ? ulen : 1);
	if (!u)
		return CAIRN_ENOMEM;
	int got = LZ4_decompress_safe(q, u, (int)(p + n - q), (int)ulen);
	if (got < 0 || (uint32_t)got != ulen) {
		free(u);
		table_msg(path, err, errlen, "block at offset %" PRIu64 ": LZ4 data is corrupt",
		          off);
		return CAIRN_ECORRUPT;
	}
	*out = u;
	*outlen = ulen;
	return 0;
}

/* Compressed blocks up to this size are read into a buffer on the stack:
 * only the uncompressed block, which the cache keeps, is allocated. */
#define TABLE_STACK_READ 8192

/*
 * Reads the block at h (inside the file: the caller checked), verifies its
 * checksum and returns its uncompressed contents in a malloc'ed buffer.
 */
static int table_read_raw(struct env_file *f, const char *path, struct block_handle h, char **out,
                          size_t *outlen, char *err, size_t errlen)
{
	char stackbuf[TABLE_STACK_READ];
	size_t n = (size_t)h.size + TRAILER_SIZE;
	/* a block that turns out not to be compressed is copied out once */
	char *raw = n <= sizeof(stackbuf) ? stackbuf : malloc(n);
	if (!raw)
		return CAIRN_ENOMEM;
	int r = table_pread(f, path, h.offset, raw, n, err, errlen);
	if (r)
		goto fail;
	uint32_t crc = crc32c(raw, (size_t)h.size + 1);
	if (crc32c_unmask(dec_fixed32(raw + h.size + 1)) != crc) {
		table_msg(path, err, errlen, "block at offset %" PRIu64 ": checksum mismatch",
		          h.offset);
		r = CAIRN_ECORRUPT;
		goto fail;
	}
	switch ((unsigned char)raw[h.size]) {
	case COMP_NONE:
		if (raw == stackbuf) {
			raw = malloc(h.size ? (size_t)h.size : 1);
			if (!raw)
				return CAIRN_ENOMEM;
			memcpy(raw, stackbuf, (size_t)h.size);
		}
		*out = raw;
		*outlen = (size_t)h.size;
		return 0;
	case COMP_LZ4:
		r = table_lz4(path, h.offset, raw, (size_t)h.size, out, outlen, err, errlen);
		break;
	default:
		table_msg(path, err, errlen, "block at offset %" PRIu64 ": unknown compression %d",
		          h.offset, (unsigned char)raw[h.size]);
		r = CAIRN_ECORRUPT;
	}
fail:
	if (raw != stackbuf)
		free(raw);
	return r;
}

static int table_read_footer(struct table *t, char *err, size_t errlen)
{
	char ft[FOOTER_SIZE];
	if (t->file_size < FOOTER_SIZE) {
		table_msg(t->path, err, errlen,
		          "file of %" PRIu64 " bytes is too short for a footer", t->file_size);
		return CAIRN_ECORRUPT;
	}
	t->meta_end = t->file_size - FOOTER_SIZE;
	int r = table_pread(t->f, t->path, t->meta_end, ft, FOOTER_SIZE, err, errlen);
	if (r)
		return r;
	if (dec_fixed64(ft + 56) != TABLE_MAGIC) {
		table_msg(t->path, err, errlen, "footer: bad magic number (not a table)");
		return CAIRN_ECORRUPT;
	}
	if (crc32c_unmask(dec_fixed32(ft + FOOTER_CRC_OFF)) != crc32c(ft, FOOTER_CRC_OFF)) {
		table_msg(t->path, err, errlen, "footer: checksum mismatch");
		return CAIRN_ECORRUPT;
	}
	uint32_t version = dec_fixed32(ft + 48);
	if (version != TABLE_VERSION) {
		table_msg(t->path, err, errlen, "unknown format version %" PRIu32, version);
		return CAIRN_EVERSION;
	}
	struct block_handle *hs[3] = {&t->filter_h, &t->props_h, &t->index_h};
	for (int i = 0; i < 3; i++) {
		hs[i]->offset = dec_fixed64(ft + 16 * i);
		hs[i]->size = dec_fixed64(ft + 16 * i + 8);
		int absent = i == 0 && hs[i]->offset == 0 && hs[i]->size == 0;
		if (!absent && !handle_inside(*hs[i], t->meta_end)) {
			table_msg(t->path, err, errlen,
			          "footer: block handle %" PRIu64 "+%" PRIu64 " outside the file",
			          hs[i]->offset, hs[i]->size);
			return CAIRN_ECORRUPT;
		}
	}
	return 0;
}

static int table_read_meta(struct table *t, char *err, size_t errlen)
{
	char *data;
	size_t n;
	int r = table_read_raw(t->f, t->path, t->index_h, &data, &n, err, errlen);
	if (r)
		return r;
	if (block_parse(data, n, &t->index)) {
		free(data);
		table_msg(t->path, err, errlen, "index block at offset %" PRIu64 ": malformed",
		          t->index_h.offset);
		return CAIRN_ECORRUPT;
	}
	t->index.owned = data;
	if (t->filter_h.size) {
		r = table_read_raw(t->f, t->path, t->filter_h, &t->filter, &t->filter_len, err,
		                   errlen);
		if (r)
			return r;
	}
	r = table_read_raw(t->f, t->path, t->props_h, &data, &n, err, errlen);
	if (r)
		return r;
	r = props_decode(slice_make(data, n), &t->props);
	free(data);
	if (r && r != CAIRN_ENOMEM)
		table_msg(t->path, err, errlen, "properties block at offset %" PRIu64 ": %s",
		          t->props_h.offset, r == CAIRN_EVERSION ? "unknown version" : "malformed");
	return r;
}

int table_open(struct env_file *f, const char *path, uint64_t file_size, struct cache *block_cache,
               struct table **tp, char *err, size_t errlen)
{
	*tp = NULL;
	struct table *t = calloc(1, sizeof(*t));
	char *p = strdup(path ? path : "");
	if (!t || !p) {
		free(t);
		free(p);
		env_close(f);
		fmt_msg(err, errlen, "table '%s': out of memory", path ? path : "");
		return CAIRN_ENOMEM;
	}
	t->f = f;
	t->path = p;
	t->file_size = file_size;
	t->bc = block_cache;
	pthread_mutex_init(&t->mu, NULL);
	int r = table_read_footer(t, err, errlen);
	if (!r)
		r = table_read_meta(t, err, errlen);
	if (r) {
		table_close(t);
		return r;
	}
	t->cache_id = block_cache ? cache_new_id(block_cache) : 0;
	*tp = t;
	return 0;
}

void table_close(struct table *t)
{
	if (!t)
		return;
	/* cached blocks of this table are keyed by its cache id, which no one
	 * will ask for again: they age out of the LRU like any other block */
	env_close(t->f);
	block_release(&t->index);
	free(t->filter);
	table_props_free(&t->props);
	pthread_mutex_destroy(&t->mu);
	free(t->path);
	free(t);
}

void table_set_stats(struct table *t, struct table_read_stats *st)
{
	t->stats = st;
}

const struct table_props *table_properties(const struct table *t)
{
	return &t->props;
}

int table_check_expect(const struct table *t, const struct table_expect *x, char *err,
                       size_t errlen)
{
	const struct table_props *p = &t->props;
	const char *what = NULL;
	uint64_t got = 0, want = 0;
	if (p->file_number && p->file_number != x->number) {
		what = "file number";
		got = p->file_number;
		want = x->number;
	} else if (!x->has_meta) {
		return 0;
	} else if (p->num_entries != x->num_entries) {
		what = "entry count";
		got = p->num_entries;
		want = x->num_entries;
	} else if (p->min_seq != x->min_seq) {
		what = "smallest sequence";
		got = p->min_seq;
		want = x->min_seq;
	} else if (p->max_seq != x->max_seq) {
		what = "largest sequence";
		got = p->max_seq;
		want = x->max_seq;
	} else if (!slice_eq(buf_slice(&p->smallest), x->smallest)) {
		what = "smallest key";
	} else if (!slice_eq(buf_slice(&p->largest), x->largest)) {
		what = "largest key";
	} else {
		return 0;
	}
	if (got != want)
		table_msg(t->path, err, errlen,
		          "not the table the manifest names as %06" PRIu64 ": its %s is %" PRIu64
		          ", the manifest records %" PRIu64,
		          x->number, what, got, want);
	else
		table_msg(t->path, err, errlen,
		          "not the table the manifest names as %06" PRIu64
		          ": its %s differs from the manifest's",
		          x->number, what);
	return CAIRN_ECORRUPT;
}

static void table_cache_key(const struct table *t, uint64_t off, char key[16])
{
	enc_fixed64(key, t->cache_id);
	enc_fixed64(key + 8, off);
}

static void table_block_deleter(struct slice key, void *value)
{
	(void)key;
	block_free(value);
}

/*
 * The data block at h, from the block cache or the file. *ch is the held
 * cache handle (release with cache_release) or NULL when the caller owns *bp
 * (no cache; free with block_free).
 */
static int table_block(struct table *t, struct block_handle h, struct block **bp,
                       struct cache_handle **ch)
{
	char key[16], err[256];
	char *data;
	size_t n;

	*bp = NULL;
	*ch = NULL;
	if (t->bc) {
		table_cache_key(t, h.offset, key);
		*ch = cache_lookup(t->bc, slice_make(key, sizeof(key)));
		if (*ch) {
			*bp = cache_value(*ch);
			return 0;
		}
	}
	int r = table_read_raw(t->f, t->path, h, &data, &n, err, sizeof(err));
	if (!r && (r = block_new_owned(data, n, bp)) == CAIRN_ECORRUPT)
		table_msg(t->path, err, sizeof(err),
		          "block at offset %" PRIu64 ": malformed restart array", h.offset);
	if (r) {
		if (r != CAIRN_ENOMEM)
			table_set_error(t, err);
		return r;
	}
	if (t->bc) {
		*ch = cache_insert(t->bc, slice_make(key, sizeof(key)), *bp, n ? n : 1,
		                   table_block_deleter);
		if (!*ch) {
			*bp = NULL;
			return CAIRN_ENOMEM;
		}
	}
	return 0;
}

static void table_block_unpin(void *a, void *b)
{
	struct table *t = a;
	if (t->bc)
		cache_release(t->bc, b);
	else
		block_free(b);
}

/* Decodes an index value into a handle of a data block inside the file. */
static int table_data_handle(struct table *t, struct slice v, struct block_handle *h)
{
	if (handle_decode(v, h) || !handle_inside(*h, t->meta_end)) {
		char err[256];
		table_msg(t->path, err, sizeof(err), "index block: bad block handle");
		table_set_error(t, err);
		return CAIRN_ECORRUPT;
	}
	return 0;
}

/* The two-level iterator's open_fn: index value -> data block iterator. */
static struct iter *table_block_iter(void *arg, struct slice index_value)
{
	struct table *t = arg;
	struct block_handle h;
	struct block *b;
	struct cache_handle *ch;

	int r = table_data_handle(t, index_value, &h);
	if (!r)
		r = table_block(t, h, &b, &ch);
	if (r)
		return iter_empty_new(r);
	struct iter *it = block_iter_new(b);
	if (!it) {
		table_block_unpin(t, ch ? (void *)ch : (void *)b);
		return NULL;
	}
	iter_set_cleanup(it, table_block_unpin, t, ch ? (void *)ch : (void *)b);
	return it;
}

/* The table iterator's may_hold: the bloom filter over user keys. Seeks are
 * not counted in the bloom statistics, which describe point lookups. */
static int table_may_hold(void *arg, struct slice target)
{
	const struct table *t = arg;
	if (!t->filter || target.len < IKEY_TRAILER)
		return 1;
	return bloom_may_contain(slice_make(t->filter, t->filter_len), ikey_user(target));
}

struct iter *table_iter_new(struct table *t)
{
	struct iter *index = block_iter_new(&t->index);
	struct iter *it = index ? iter_two_level_new(index, table_block_iter, t) : NULL;
	if (!it)
		return iter_empty_new(CAIRN_ENOMEM);
	iter_two_level_set_may_hold(it, table_may_hold);
	return it;
}

static void table_count(uint64_t *counter)
{
	__atomic_fetch_add(counter, 1, __ATOMIC_RELAXED);
}

/*
 * Only one data block can hold the answer: the index entry found is the first
 * separator >= ikey. If the block's keys all fall below ikey, the separator
 * lies in (last key, next first key) and was shortened, so its user key is
 * strictly between the two user keys, and the next block cannot start with
 * ikey's user key.
 */
int table_get(struct table *t, struct slice ikey, struct buf *found_key, struct buf *found_val)
{
	struct block_handle h;
	struct block *b;
	struct cache_handle *ch;

	if (ikey.len < IKEY_TRAILER)
		return CAIRN_EINVAL;
	struct slice ukey = ikey_user(ikey);
	if (t->filter) {
		if (t->stats)
			table_count(&t->stats->bloom_checks);
		if (!bloom_may_contain(slice_make(t->filter, t->filter_len), ukey)) {
			if (t->stats)
				table_count(&t->stats->bloom_negatives);
			return 0;
		}
	}
	/* found_key serves first as the index entry's key, then as the entry's */
	struct slice hv, v;
	int r = block_seek_once(&t->index, ikey, found_key, &hv);
	if (r <= 0)
		goto out;
	if ((r = table_data_handle(t, hv, &h)) || (r = table_block(t, h, &b, &ch)))
		goto out;
	r = block_seek_once(b, ikey, found_key, &v);
	if (r == 1 && !slice_eq(ikey_user(buf_slice(found_key)), ukey))
		r = 0;
	if (r == 1 && buf_set(found_val, v.data, v.len))
		r = CAIRN_ENOMEM;
	table_block_unpin(t, ch ? (void *)ch : (void *)b);
out:
	/* the filter said maybe and nothing was found: a false positive, except
	 * in the rare case of a key held only in versions newer than ikey */
	if (r == 0 && t->filter && t->stats)
		table_count(&t->stats->bloom_false_positives);
	return r;
}

uint64_t table_approx_offset(struct table *t, struct slice ikey)
{
	struct block_handle h;
	uint64_t off = t->props.data_bytes;
	struct iter *ix = block_iter_new(&t->index);
	if (!ix)
		return off;
	iter_seek(ix, ikey);
	if (iter_valid(ix) && handle_decode(iter_value(ix), &h) == 0 && h.offset < off)
		off = h.offset;
	iter_free(ix);
	return off;
}

/* ------------------------------------------------------------------------ */
/* Verifying                                                                 */

struct verify {
	struct table *t;
	void (*fn)(void *ctx, uint64_t off, const char *what);
	void *ctx;
	int problems;
	struct buf prev_key; /* the last data key seen, across blocks */
	uint64_t entries;
	int have_prev;
	int skipped; /* a data block could not be read: counts cannot match */
};

/* msg is complete, path included */
static void verify_report_msg(struct verify *v, uint64_t off, const char *msg)
{
	if (v->problems < INT32_MAX)
		v->problems++;
	if (v->fn)
		v->fn(v->ctx, off, msg);
}

static void verify_report(struct verify *v, uint64_t off, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));
static void verify_report(struct verify *v, uint64_t off, const char *fmt, ...)
{
	char what[200], msg[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(what, sizeof(what), fmt, ap);
	va_end(ap);
	fmt_msg(msg, sizeof(msg), "table '%s': %s", v->t->path, what);
	verify_report_msg(v, off, msg);
}

/* Re-reads a meta block from the file to check its checksum. */
static void verify_meta(struct verify *v, struct block_handle h, const char *name)
{
	char err[256], msg[300], *data;
	size_t n;
	int r = table_read_raw(v->t->f, v->t->path, h, &data, &n, err, sizeof(err));
	if (r) {
		fmt_msg(msg, sizeof(msg), "%s (%s block)", err, name);
		verify_report_msg(v, h.offset, msg);
		return;
	}
	free(data);
}

/* Checks the entries of one data block; sep is its index key. */
static void verify_entries(struct verify *v, struct block_handle h, const struct block *b,
                           struct slice sep)
{
	struct iter *it = block_iter_new(b);
	if (!it) {
		verify_report(v, h.offset, "block at offset %" PRIu64 ": out of memory", h.offset);
		return;
	}
	int n = 0;
	for (iter_seek_first(it); iter_valid(it); iter_next(it), n++) {
		struct slice k = iter_key(it);
		if (!ikey_valid(k))
			verify_report(v, h.offset, "block at offset %" PRIu64 ": bad key type",
			              h.offset);
		if (!ival_valid(iter_value(it)))
			verify_report(v, h.offset,
			              "block at offset %" PRIu64 ": value shorter than its header",
			              h.offset);
		if (v->have_prev && ikey_cmp(buf_slice(&v->prev_key), k) >= 0)
			verify_report(v, h.offset,
			              "block at offset %" PRIu64 ": keys out of order at entry %d",
			              h.offset, n);
		if (ikey_cmp(k, sep) > 0)
			verify_report(v, h.offset,
			              "block at offset %" PRIu64 ": key above its index separator",
			              h.offset);
		buf_set(&v->prev_key, k.data, k.len);
		v->have_prev = 1;
		v->entries++;
	}
	if (iter_status(it)) {
		verify_report(v, h.offset, "block at offset %" PRIu64 ": malformed entry",
		              h.offset);
		v->skipped = 1;
	} else if (n == 0)
		verify_report(v, h.offset, "block at offset %" PRIu64 ": empty data block",
		              h.offset);
	iter_free(it);
}

static void verify_data(struct verify *v)
{
	struct table *t = v->t;
	struct buf prev_sep = {0};
	uint64_t blocks = 0;
	struct iter *ix = block_iter_new(&t->index);
	if (!ix) {
		verify_report(v, t->index_h.offset, "out of memory");
		return;
	}
	for (iter_seek_first(ix); iter_valid(ix); iter_next(ix), blocks++) {
		struct slice sep = iter_key(ix);
		struct block_handle h;
		char err[256], *data;
		size_t n;
		struct block b;

		if (prev_sep.len && ikey_cmp(buf_slice(&prev_sep), sep) >= 0)
			verify_report(v, t->index_h.offset, "index block: keys out of order");
		buf_set(&prev_sep, sep.data, sep.len);
		if (handle_decode(iter_value(ix), &h) || !handle_inside(h, t->meta_end)) {
			verify_report(v, t->index_h.offset, "index block: bad block handle");
			v->skipped = 1;
			continue;
		}
		if (table_read_raw(t->f, t->path, h, &data, &n, err, sizeof(err))) {
			verify_report_msg(v, h.offset, err);
			v->skipped = 1;
			continue;
		}
		if (block_parse(data, n, &b)) {
			verify_report(v, h.offset,
			              "block at offset %" PRIu64 ": malformed restart array",
			              h.offset);
			v->skipped = 1;
		} else {
			verify_entries(v, h, &b, sep);
		}
		free(data);
	}
	if (iter_status(ix))
		verify_report(v, t->index_h.offset, "index block: malformed entry");
	if (blocks != t->props.num_data_blocks)
		verify_report(v, t->props_h.offset,
		              "properties: %" PRIu64 " data blocks, index has %" PRIu64,
		              t->props.num_data_blocks, blocks);
	buf_free(&prev_sep);
	iter_free(ix);
}

int table_verify(struct table *t, void (*fn)(void *ctx, uint64_t off, const char *what), void *ctx)
{
	struct verify v = {.t = t, .fn = fn, .ctx = ctx};

	verify_meta(&v, t->index_h, "index");
	verify_meta(&v, t->props_h, "properties");
	if (t->filter_h.size)
		verify_meta(&v, t->filter_h, "filter");
	verify_data(&v);
	if (v.skipped)
		; /* the entries of unreadable blocks are missing from the count */
	else if (v.entries != t->props.num_entries)
		verify_report(&v, t->props_h.offset,
		              "properties: %" PRIu64 " entries, blocks hold %" PRIu64,
		              t->props.num_entries, v.entries);
	else if (v.entries && !slice_eq(buf_slice(&v.prev_key), buf_slice(&t->props.largest)))
		verify_report(&v, t->props_h.offset, "properties: largest key is not the last key");
	buf_free(&v.prev_key);
	return v.problems;
}

/* ------------------------------------------------------------------------ */
/* Salvaging                                                                 */

/* Passes the entries of one data block that read back whole; stops at the
 * first malformed one (a checksum that passed over a malformed block means
 * the writer erred, and what follows cannot be trusted). */
static int salvage_block(struct table *t, struct block_handle h, const struct block *b,
                         struct table_salvage_cb *cb, uint64_t *entries)
{
	struct iter *it = block_iter_new(b);
	if (!it)
		return CAIRN_ENOMEM;
	int r = 0;
	for (iter_seek_first(it); !r && iter_valid(it); iter_next(it)) {
		struct slice k = iter_key(it), v = iter_value(it);
		if (!ikey_valid(k) || !ival_valid(v))
			break;
		r = cb->entry(cb->ctx, k, v);
		(*entries)++;
	}
	if (!r && (iter_status(it) || iter_valid(it))) {
		char msg[300];
		fmt_msg(msg, sizeof(msg),
		        "table '%s': block at offset %" PRIu64 ": malformed entry", t->path,
		        h.offset);
		cb->lost(cb->ctx, h.offset, h.size + TRAILER_SIZE, msg);
	}
	iter_free(it);
	return r;
}

int table_salvage(struct table *t, struct table_salvage_cb *cb, uint64_t *entries)
{
	*entries = 0;
	struct iter *ix = block_iter_new(&t->index);
	if (!ix)
		return CAIRN_ENOMEM;
	int r = 0;
	for (iter_seek_first(ix); !r && iter_valid(ix); iter_next(ix)) {
		struct block_handle h;
		char err[256], *data;
		size_t n;
		struct block b;
		if (handle_decode(iter_value(ix), &h) || !handle_inside(h, t->meta_end)) {
			table_msg(t->path, err, sizeof(err), "index block: bad block handle");
			cb->lost(cb->ctx, t->index_h.offset, 0, err);
			continue;
		}
		r = table_read_raw(t->f, t->path, h, &data, &n, err, sizeof(err));
		if (r == CAIRN_ENOMEM)
			break;
		if (r) {
			cb->lost(cb->ctx, h.offset, h.size + TRAILER_SIZE, err);
			r = 0;
			continue;
		}
		if (block_parse(data, n, &b)) {
			table_msg(t->path, err, sizeof(err),
			          "block at offset %" PRIu64 ": malformed restart array", h.offset);
			cb->lost(cb->ctx, h.offset, h.size + TRAILER_SIZE, err);
		} else {
			r = salvage_block(t, h, &b, cb, entries);
		}
		free(data);
	}
	if (!r && iter_status(ix)) {
		char err[256];
		table_msg(t->path, err, sizeof(err), "index block: malformed entry");
		cb->lost(cb->ctx, t->index_h.offset, t->index_h.size, err);
	}
	iter_free(ix);
	return r;
}

/* The end of the block that starts at p: the first type byte (0 or 1) whose
 * following 4 bytes hold the checksum of everything from p through it. The
 * checksum grows a byte at a time, so the search costs one pass over the
 * bytes it covers. Returns 0 with *end (the type byte's offset), or 1 when
 * no block ends before the end of the data. */
static int raw_block_end(const char *data, uint64_t size, uint64_t p, uint64_t *end)
{
	uint32_t crc = 0;
	for (uint64_t e = p; e + TRAILER_SIZE <= size; e++) {
		uint32_t c = crc32c_extend(crc, data + e, 1);
		if ((unsigned char)data[e] <= COMP_LZ4 &&
		    crc32c_unmask(dec_fixed32(data + e + 1)) == c) {
			*end = e;
			return 0;
		}
		crc = c;
	}
	return 1;
}

/* 1 if every entry of b is a well-formed data entry above *prev (updated):
 * the first block that is not is the filter, index or properties block. */
static int raw_block_is_data(const struct block *b, struct buf *prev, int *have_prev)
{
	struct iter *it = block_iter_new(b);
	if (!it)
		return -1;
	int ok = 1, n = 0;
	for (iter_seek_first(it); ok && iter_valid(it); iter_next(it), n++) {
		struct slice k = iter_key(it);
		ok = ikey_valid(k) && ival_valid(iter_value(it)) &&
		     (!*have_prev || ikey_cmp(buf_slice(prev), k) < 0);
		if (ok && buf_set(prev, k.data, k.len)) {
			ok = -1;
			break;
		}
		*have_prev = 1;
	}
	if (ok == 1 && (iter_status(it) || n == 0))
		ok = 0;
	iter_free(it);
	return ok;
}

static int raw_emit(const struct block *b, struct table_salvage_cb *cb, uint64_t *entries)
{
	struct iter *it = block_iter_new(b);
	if (!it)
		return CAIRN_ENOMEM;
	int r = 0;
	for (iter_seek_first(it); !r && iter_valid(it); iter_next(it), (*entries)++)
		r = cb->entry(cb->ctx, iter_key(it), iter_value(it));
	iter_free(it);
	return r;
}

/* One block found by raw_block_end: 1 when it was data (emitted), 0 when it
 * was not (the meta blocks begin), or an error. */
static int raw_block(const char *path, const char *data, uint64_t p, uint64_t e,
                     struct table_salvage_cb *cb, uint64_t *entries, struct buf *prev,
                     int *have_prev)
{
	char err[256], *u = NULL;
	size_t n = (size_t)(e - p);
	struct block b;
	int r = 0;
	if ((unsigned char)data[e] == COMP_LZ4) {
		r = table_lz4(path, p, data + p, n, &u, &n, err, sizeof(err));
		if (r)
			return r == CAIRN_ENOMEM ? r : 0;
	}
	if (block_parse(u ? u : data + p, n, &b) == 0) {
		struct buf save = {0};
		int had = *have_prev;
		if ((r = buf_set(&save, prev->data, prev->len)) == 0) {
			r = raw_block_is_data(&b, prev, have_prev);
			if (r < 0 || (r == 1 && raw_emit(&b, cb, entries)))
				r = CAIRN_ENOMEM;
			if (r == 0) { /* not data: the last key stays what it was */
				buf_set(prev, save.data, save.len);
				*have_prev = had;
			}
		}
		buf_free(&save);
	}
	free(u);
	return r;
}

int table_salvage_raw(struct env_file *f, const char *path, uint64_t size,
                      struct table_salvage_cb *cb, uint64_t *entries)
{
	char err[256];
	*entries = 0;
	if (size > SIZE_MAX / 2)
		return CAIRN_ENOMEM;
	char *data = malloc(size ? (size_t)size : 1);
	if (!data)
		return CAIRN_ENOMEM;
	int r = table_pread(f, path, 0, data, (size_t)size, err, sizeof(err));
	if (r) {
		free(data);
		return r;
	}
	struct buf prev = {0};
	int have_prev = 0;
	uint64_t p = 0, e;
	while (p < size) {
		if (raw_block_end(data, size, p, &e)) {
			table_msg(path, err, sizeof(err),
			          "no whole block from offset %" PRIu64 " to the end (%" PRIu64 ")",
			          p, size);
			cb->lost(cb->ctx, p, size - p, err);
			break;
		}
		r = raw_block(path, data, p, e, cb, entries, &prev, &have_prev);
		if (r <= 0)
			break;
		p = e + TRAILER_SIZE;
	}
	buf_free(&prev);
	free(data);
	return r < 0 ? r : 0;
}

/* ------------------------------------------------------------------------ */
/* Dumping                                                                   */

static int line_printf(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int line_printf(struct buf *b, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0 || buf_reserve(b, (size_t)n + 1))
		return CAIRN_ENOMEM;
	va_start(ap, fmt);
	vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
	va_end(ap);
	b->len += (size_t)n;
	return 0;
}

/* Printable ASCII as is (a backslash doubled), anything else as \xNN; at
 * most max input bytes, then "...". */
static int line_escape(struct buf *b, struct slice s, size_t max)
{
	static const char hex[] = "0123456789abcdef";
	int r = buf_reserve(b, (s.len < max ? s.len : max) * 4 + 6);
	if (r)
		return r;
	char *p = b->data + b->len;
	*p++ = '\'';
	for (size_t i = 0; i < s.len && i < max; i++) {
		unsigned char c = (unsigned char)s.data[i];
		if (c == '\\' || c == '\'') {
			*p++ = '\\';
			*p++ = (char)c;
		} else if (c >= 0x20 && c < 0x7f) {
			*p++ = (char)c;
		} else {
			*p++ = '\\';
			*p++ = 'x';
			*p++ = hex[c >> 4];
			*p++ = hex[c & 15];
		}
	}
	*p++ = '\'';
	b->len = (size_t)(p - b->data);
	return s.len > max ? buf_append(b, "...", 3) : 0;
}

/* 'user key' @ seq : type */
static int line_ikey(struct buf *b, struct slice k)
{
	if (k.len < IKEY_TRAILER)
		return line_escape(b, k, SIZE_MAX);
	int r = line_escape(b, ikey_user(k), SIZE_MAX);
	unsigned type = (unsigned)(ikey_trailer(k) & 0xff);
	if (!r)
		r = line_printf(b, " @ %" PRIu64 " : %s", ikey_seq(k),
		                type == TYPE_VALUE      ? "value"
		                : type == TYPE_DELETION ? "deletion"
		                : type == TYPE_BLOB     ? "blob"
		                                        : "bad-type");
	return r;
}

struct dump {
	struct table *t;
	void (*fn)(void *ctx, const char *line);
	void *ctx;
	struct buf line;
	int damaged; /* an error line was printed: the dump fails at its end */
};

static int dump_emit(struct dump *d)
{
	int r = buf_reserve(&d->line, 1);
	if (r)
		return r;
	d->line.data[d->line.len] = '\0';
	d->fn(d->ctx, d->line.data);
	buf_clear(&d->line);
	return 0;
}

/* Prints an error line for damage met and goes on with the dump. */
static int dump_damage(struct dump *d, const char *what)
{
	d->damaged = 1;
	int r = line_printf(&d->line, "%s", what);
	return r ? r : dump_emit(d);
}

static int dump_head(struct dump *d)
{
	const struct table *t = d->t;
	const struct table_props *p = &t->props;
	int r = line_printf(&d->line,
	                    "footer: version %d, filter %" PRIu64 "+%" PRIu64
	                    ", properties %" PRIu64 "+%" PRIu64 ", index %" PRIu64 "+%" PRIu64
	                    ", file %" PRIu64 " bytes",
	                    TABLE_VERSION, t->filter_h.offset, t->filter_h.size, t->props_h.offset,
	                    t->props_h.size, t->index_h.offset, t->index_h.size, t->file_size);
	if (r || (r = dump_emit(d)))
		return r;
	r = line_printf(&d->line,
	                "properties: file %" PRIu64 ", entries %" PRIu64 ", deletions %" PRIu64
	                ", raw key bytes %" PRIu64 ", raw value bytes %" PRIu64
	                ", data bytes %" PRIu64 ", index bytes %" PRIu64 ", filter bytes %" PRIu64
	                ", data blocks %" PRIu64 ", seq %" PRIu64 "..%" PRIu64,
	                p->file_number, p->num_entries, p->num_deletions, p->raw_key_bytes,
	                p->raw_value_bytes, p->data_bytes, p->index_bytes, p->filter_bytes,
	                p->num_data_blocks, p->min_seq, p->max_seq);
	if (r || (r = dump_emit(d)))
		return r;
	if ((r = line_printf(&d->line, "smallest: ")) ||
	    (r = line_ikey(&d->line, buf_slice(&p->smallest))) || (r = dump_emit(d)))
		return r;
	if ((r = line_printf(&d->line, "largest: ")) ||
	    (r = line_ikey(&d->line, buf_slice(&p->largest))) || (r = dump_emit(d)))
		return r;
	return 0;
}

static int dump_entry(struct dump *d, struct slice k, struct slice v)
{
	int r = line_printf(&d->line, "  ");
	if (!r)
		r = line_ikey(&d->line, k);
	if (r)
		return r;
	if (!ival_valid(v))
		r = line_printf(&d->line, " = (bad value of %zu bytes)", v.len);
	else if ((r = line_printf(&d->line, ", time %" PRId64 ", %zu bytes ", ival_time(v),
	                          v.len - IVAL_HEADER)) == 0)
		r = line_escape(&d->line, ival_value(v), DUMP_VALUE_MAX);
	return r ? r : dump_emit(d);
}

static int dump_block(struct dump *d, struct slice sep, struct slice hv)
{
	struct block_handle h;
	struct block b;
	char err[256], *data;
	size_t n;

	int r = line_printf(&d->line, "index: ");
	if (!r)
		r = line_ikey(&d->line, sep);
	if (r)
		return r;
	if (handle_decode(hv, &h) || !handle_inside(h, d->t->meta_end)) {
		d->damaged = 1;
		if ((r = line_printf(&d->line, " -> bad block handle")))
			return r;
		return dump_emit(d);
	}
	if ((r = line_printf(&d->line, " -> block %" PRIu64 "+%" PRIu64, h.offset, h.size)) ||
	    (r = dump_emit(d)))
		return r;
	r = table_read_raw(d->t->f, d->t->path, h, &data, &n, err, sizeof(err));
	if (r == CAIRN_ENOMEM)
		return r;
	if (r) {
		/* a bad block is reported and the dump goes on; an I/O error ends it */
		d->damaged = 1;
		if (line_printf(&d->line, "  error: %s", err) || dump_emit(d))
			return CAIRN_ENOMEM;
		return r == CAIRN_ECORRUPT ? 0 : r;
	}
	if (block_parse(data, n, &b)) {
		free(data);
		return dump_damage(d, "  error: malformed restart array");
	}
	struct iter *it = block_iter_new(&b);
	if (!it) {
		free(data);
		return CAIRN_ENOMEM;
	}
	for (iter_seek_first(it); !r && iter_valid(it); iter_next(it))
		r = dump_entry(d, iter_key(it), iter_value(it));
	if (!r && iter_status(it))
		r = dump_damage(d, "  error: malformed entry");
	iter_free(it);
	free(data);
	return r;
}

int table_dump(struct table *t, void (*fn)(void *ctx, const char *line), void *ctx)
{
	struct dump d = {.t = t, .fn = fn, .ctx = ctx};
	struct iter *ix = NULL;
	int r = dump_head(&d);
	if (!r && (ix = block_iter_new(&t->index)) == NULL)
		r = CAIRN_ENOMEM;
	if (!r) {
		for (iter_seek_first(ix); !r && iter_valid(ix); iter_next(ix))
			r = dump_block(&d, iter_key(ix), iter_value(ix));
		if (!r && iter_status(ix))
			r = dump_damage(&d, "error: malformed index");
	}
	iter_free(ix);
	buf_free(&d.line);
	return r ? r : d.damaged ? CAIRN_ECORRUPT : 0;
}
