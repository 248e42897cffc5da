/*
 * blob.c - blob files: the writer that appends records of chunked values,
 * the reader that serves range reads verifying only the chunks they touch,
 * and the scanner that walks every record (collection, check, dump).
 *
 * Layout (docs/format.md, "Blob files"): a 16-byte file header like the
 * record log's, then records. A record at offset R is
 *
 *   u32 klen | u32 hcrc | key | chunk 0 | chunk 1 | ... | chunk n-1
 *
 * with hcrc = mask(crc32c(fixed64 R, fixed32 klen, key)), and chunk j is
 *
 *   u32 len | len bytes | u32 mask(crc32c(fixed64 R, fixed64 j, u32 len, bytes))
 *
 * Every chunk but the last holds exactly BLOB_CHUNK bytes and the last holds
 * fewer (possibly none), so a reader that knows the value length finds chunk
 * j by arithmetic, and a scanner knows a record ended at its short chunk.
 * Binding R and j into each checksum means a read that lands on the wrong
 * record or the wrong chunk (a damaged reference, a shifted file) fails its
 * check instead of returning someone else's bytes.
 *
 * The writer never holds more than BLOB_WRITE_BUF bytes plus one chunk: it
 * gathers whole chunks in its buffer and appends them when it is full, so a
 * stream of any length is written with bounded memory.
 */
#include "blob.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char blob_magic[8] = {'c', 'a', 'i', 'r', 'n', 'b', 'l', 'b'};

#define CHUNK_OVERHEAD 8u /* u32 len + u32 crc */
#define CHUNK_STRIDE   (BLOB_CHUNK + CHUNK_OVERHEAD)
/* Chunks fetched by one pread of a range read. */
#define READ_CHUNKS 16u

/* ---- references ---- */

int blob_ref_encode(const struct blob_ref *ref, struct buf *out)
{
	int r = buf_put_varint64(out, ref->file);
	if (!r)
		r = buf_put_varint64(out, ref->offset);
	if (!r)
		r = buf_put_varint64(out, ref->size);
	if (!r)
		r = buf_put_fixed32(out, ref->hcrc);
	if (!r && (ref->has_time || ref->moved))
		r = buf_put_fixed64(out, (uint64_t)ref->time_ns);
	if (!r && ref->moved)
		r = buf_put_varint32(out, ref->rklen);
	return r;
}

int blob_ref_decode(struct slice in, struct blob_ref *ref)
{
	uint64_t t = 0;
	if (slice_get_varint64(&in, &ref->file) || slice_get_varint64(&in, &ref->offset) ||
	    slice_get_varint64(&in, &ref->size) || slice_get_fixed32(&in, &ref->hcrc))
		return CAIRN_ECORRUPT;
	ref->has_time = in.len > 0;
	if (ref->has_time && slice_get_fixed64(&in, &t))
		return CAIRN_ECORRUPT;
	ref->time_ns = (int64_t)t;
	ref->moved = in.len > 0;
	ref->rklen = 0;
	if (ref->moved &&
	    (slice_get_varint32(&in, &ref->rklen) || in.len || ref->rklen > CAIRN_MAX_KEY_SIZE))
		return CAIRN_ECORRUPT;
	if (ref->offset < BLOB_FILE_HEADER)
		return CAIRN_ECORRUPT;
	return 0;
}

static uint64_t chunk_count(uint64_t vlen)
{
	return vlen / BLOB_CHUNK + 1;
}

uint64_t blob_record_size(uint64_t klen, uint64_t vlen)
{
	return 8 + klen + vlen + chunk_count(vlen) * CHUNK_OVERHEAD;
}

uint64_t blob_ref_record_size(const struct blob_ref *ref, uint64_t klen)
{
	return blob_record_size(ref->moved ? ref->rklen : klen, ref->size);
}

void blob_file_name(char *out, size_t len, const char *dir, uint64_t number)
{
	snprintf(out, len, "%s/%06llu.blob", dir, (unsigned long long)number);
}

static uint32_t header_crc(uint64_t rec, uint32_t klen, const char *key)
{
	char seed[12];
	enc_fixed64(seed, rec);
	enc_fixed32(seed + 8, klen);
	return crc32c_mask(crc32c_extend(crc32c(seed, sizeof(seed)), key, klen));
}

/* The checksum of chunk j of the record at rec; p points at its u32 len. */
static uint32_t chunk_crc(uint64_t rec, uint64_t j, const char *p, uint32_t len)
{
	char seed[16];
	enc_fixed64(seed, rec);
	enc_fixed64(seed + 8, j);
	return crc32c_mask(crc32c_extend(crc32c(seed, sizeof(seed)), p, 4 + (size_t)len));
}

/* ---- writer ---- */

struct blob_writer {
	struct env_file *file;
	uint64_t number;
	uint64_t written; /* bytes appended to the file */
	uint64_t good;    /* end of the last record ended */
	uint64_t synced;  /* end of the last record ended before the last sync */
	struct buf wb;    /* bytes not yet appended */
	int status;       /* first failure; sticky */
	int sync_status;  /* first failed sync; sticky */
	int in_record;
	uint64_t rec;   /* offset of the record being written */
	uint64_t vlen;  /* value bytes so far */
	uint64_t chunk; /* index of the open chunk */
	int chunk_open;
	size_t chunk_pos; /* offset in wb of the open chunk's len field */
	uint32_t fill;    /* bytes in the open chunk */
	uint32_t hcrc;
};

static int writer_flush(struct blob_writer *w)
{
	if (w->status)
		return w->status;
	if (!w->wb.len)
		return 0;
	int r = env_append(w->file, w->wb.data, w->wb.len);
	if (r) {
		w->status = r;
		return r;
	}
	w->written += w->wb.len;
	buf_clear(&w->wb);
	return 0;
}

int blob_writer_create(struct cairn_env *env, const char *path, uint64_t number,
                       struct blob_writer **wp)
{
	*wp = NULL;
	struct blob_writer *w = calloc(1, sizeof(*w));
	if (!w)
		return CAIRN_ENOMEM;
	int r = buf_reserve(&w->wb, BLOB_WRITE_BUF + CHUNK_STRIDE + 64);
	if (!r)
		r = env_open_write(env, path, &w->file);
	if (r) {
		buf_free(&w->wb);
		free(w);
		return r;
	}
	char h[BLOB_FILE_HEADER];
	memcpy(h, blob_magic, 8);
	enc_fixed16(h + 8, BLOB_VERSION);
	enc_fixed16(h + 10, BLOB_KIND);
	enc_fixed32(h + 12, crc32c_mask(crc32c(h, 12)));
	buf_append(&w->wb, h, sizeof(h)); /* reserved above: cannot fail */
	w->number = number;
	w->good = BLOB_FILE_HEADER;
	w->synced = BLOB_FILE_HEADER;
	*wp = w;
	return 0;
}

int blob_writer_begin(struct blob_writer *w, struct slice key)
{
	if (w->status)
		return w->status;
	if (w->in_record || key.len > CAIRN_MAX_KEY_SIZE)
		return CAIRN_EINVAL;
	if (w->wb.len + 8 + key.len > BLOB_WRITE_BUF) {
		int r = writer_flush(w);
		if (r)
			return r;
	}
	w->rec = w->written + w->wb.len;
	w->hcrc = header_crc(w->rec, (uint32_t)key.len, key.data);
	char h[8];
	enc_fixed32(h, (uint32_t)key.len);
	enc_fixed32(h + 4, w->hcrc);
	buf_append(&w->wb, h, sizeof(h));
	buf_append(&w->wb, key.data, key.len);
	w->in_record = 1;
	w->vlen = 0;
	w->chunk = 0;
	w->chunk_open = 0;
	return 0;
}

static void chunk_open(struct blob_writer *w)
{
	w->chunk_pos = w->wb.len;
	w->wb.len += 4; /* len, filled in when the chunk closes */
	w->fill = 0;
	w->chunk_open = 1;
}

static int chunk_close(struct blob_writer *w)
{
	char *p = w->wb.data + w->chunk_pos;
	enc_fixed32(p, w->fill);
	uint32_t c = chunk_crc(w->rec, w->chunk, p, w->fill);
	enc_fixed32(w->wb.data + w->wb.len, c);
	w->wb.len += 4;
	w->chunk++;
	w->chunk_open = 0;
	return w->wb.len >= BLOB_WRITE_BUF ? writer_flush(w) : 0;
}

int blob_writer_append(struct blob_writer *w, const void *data, size_t n)
{
	const char *p = data;
	if (w->status)
		return w->status;
	if (!w->in_record)
		return CAIRN_EINVAL;
	while (n > 0) {
		if (!w->chunk_open)
			chunk_open(w);
		size_t k = BLOB_CHUNK - w->fill;
		if (k > n)
			k = n;
		memcpy(w->wb.data + w->wb.len, p, k);
		w->wb.len += k;
		w->fill += (uint32_t)k;
		w->vlen += k;
		p += k;
		n -= k;
		if (w->fill == BLOB_CHUNK) {
			int r = chunk_close(w);
			if (r)
				return r;
		}
	}
	return 0;
}

int blob_writer_end(struct blob_writer *w, struct blob_ref *ref)
{
	if (w->status)
		return w->status;
	if (!w->in_record)
		return CAIRN_EINVAL;
	/* the short (maybe empty) last chunk tells a scanner the record ends */
	if (!w->chunk_open)
		chunk_open(w);
	int r = chunk_close(w);
	if (!r)
		r = writer_flush(w);
	if (r)
		return r;
	w->in_record = 0;
	w->good = w->written;
	ref->file = w->number;
	ref->offset = w->rec;
	ref->size = w->vlen;
	ref->hcrc = w->hcrc;
	/* the entry that takes the reference records the write time; only a
	 * collector's copy carries the original one (it sets it itself) */
	ref->has_time = 0;
	ref->time_ns = 0;
	ref->moved = 0;
	ref->rklen = 0;
	return 0;
}

int blob_writer_sync(struct blob_writer *w)
{
	if (w->sync_status)
		return w->sync_status;
	/* After a failed append the records ended before it are whole in the
	 * file and may be referred to already: they can still be made
	 * durable. After a failed sync nothing is retried (the kernel may have
	 * dropped the pages it could not write). */
	uint64_t good = w->good;
	int r = w->status ? 0 : writer_flush(w);
	if (!r)
		r = env_sync(w->file);
	if (r) {
		if (!w->status)
			w->status = r;
		w->sync_status = r;
		return r;
	}
	w->synced = good;
	return 0;
}

uint64_t blob_writer_size(const struct blob_writer *w)
{
	return w->written + w->wb.len;
}

uint64_t blob_writer_good_size(const struct blob_writer *w)
{
	return w->good;
}

uint64_t blob_writer_synced_size(const struct blob_writer *w)
{
	return w->synced;
}

uint64_t blob_writer_number(const struct blob_writer *w)
{
	return w->number;
}

int blob_writer_failed(const struct blob_writer *w)
{
	return w->status;
}

int blob_writer_close(struct blob_writer *w)
{
	if (!w)
		return 0;
	int r = env_close(w->file);
	buf_free(&w->wb);
	free(w);
	return r;
}

/* ---- reader ---- */

struct blob_reader {
	struct env_file *file;
	uint64_t size;
	char path[4096];
	char *scratch; /* READ_CHUNKS chunks, allocated on first use */
	size_t scratch_cap;
};

static const char *base_name(const char *path)
{
	const char *s = strrchr(path, '/');
	return s ? s + 1 : path;
}

/* Reads exactly n bytes at off; a short read is the file ending early. */
static int read_exact(struct blob_reader *rd, uint64_t off, void *buf, size_t n, char *err,
                      size_t errlen)
{
	size_t got = 0;
	int r = env_pread(rd->file, off, buf, n, &got);
	if (r) {
		char detail[256] = "";
		env_errmsg(env_of(rd->file), detail, sizeof(detail));
		fmt_msg(err, errlen, "blob file %s: read at offset %llu failed: %s",
		        base_name(rd->path), (unsigned long long)off,
		        detail[0] ? detail : cairn_strerror(r));
		return r;
	}
	if (got != n) {
		fmt_msg(err, errlen, "blob file %s: ends at %llu, inside data at offset %llu",
		        base_name(rd->path), (unsigned long long)(off + got),
		        (unsigned long long)off);
		return CAIRN_ECORRUPT;
	}
	return 0;
}

int blob_reader_open(struct cairn_env *env, const char *path, struct blob_reader **rp, char *err,
                     size_t errlen)
{
	*rp = NULL;
	struct blob_reader *rd = calloc(1, sizeof(*rd));
	if (!rd)
		return CAIRN_ENOMEM;
	fmt_msg(rd->path, sizeof(rd->path), "%s", path);
	int r = env_open_read(env, path, &rd->file);
	if (r) {
		char detail[256] = "";
		env_errmsg(env, detail, sizeof(detail));
		fmt_msg(err, errlen, "blob file %s: cannot open: %s", base_name(path),
		        detail[0] ? detail : cairn_strerror(r));
		free(rd);
		return r == CAIRN_ENOENT || r == CAIRN_EIO ? r : r;
	}
	char h[BLOB_FILE_HEADER];
	r = env_size(rd->file, &rd->size);
	if (!r && rd->size < BLOB_FILE_HEADER) {
		fmt_msg(err, errlen, "blob file %s: too short for a header", base_name(path));
		r = CAIRN_ECORRUPT;
	}
	if (!r)
		r = read_exact(rd, 0, h, sizeof(h), err, errlen);
	if (!r && (memcmp(h, blob_magic, 8) || dec_fixed32(h + 12) != crc32c_mask(crc32c(h, 12)))) {
		fmt_msg(err, errlen, "blob file %s: bad header", base_name(path));
		r = CAIRN_ECORRUPT;
	}
	if (!r && dec_fixed16(h + 8) > BLOB_VERSION) {
		fmt_msg(err, errlen, "blob file %s: format version %u is newer than this cairn",
		        base_name(path), dec_fixed16(h + 8));
		r = CAIRN_EVERSION;
	}
	if (!r && (dec_fixed16(h + 8) == 0 || dec_fixed16(h + 10) != BLOB_KIND)) {
		fmt_msg(err, errlen, "blob file %s: bad version or kind", base_name(path));
		r = CAIRN_ECORRUPT;
	}
	if (r) {
		blob_reader_close(rd);
		return r;
	}
	*rp = rd;
	return 0;
}

void blob_reader_close(struct blob_reader *rd)
{
	if (!rd)
		return;
	env_close(rd->file);
	free(rd->scratch);
	free(rd);
}

uint64_t blob_reader_file_size(const struct blob_reader *rd)
{
	return rd->size;
}

static int corrupt(char *err, size_t errlen, const struct blob_reader *rd, uint64_t off,
                   const char *what)
{
	fmt_msg(err, errlen, "blob file %s: record at offset %llu: %s", base_name(rd->path),
	        (unsigned long long)off, what);
	return CAIRN_ECORRUPT;
}

/* Checks that the record at ref->offset is the one ref names, under key. */
static int check_header(struct blob_reader *rd, const struct blob_ref *ref, struct slice key,
                        char *err, size_t errlen)
{
	char h[8 + CAIRN_MAX_KEY_SIZE];
	/* a moved reference names a record written under another key: the
	 * header checksum, which covers R and that key, identifies it */
	size_t rkl = ref->moved ? ref->rklen : key.len;
	if (rkl > CAIRN_MAX_KEY_SIZE || ref->offset < BLOB_FILE_HEADER || ref->offset > rd->size ||
	    ref->size > UINT64_MAX / 2 || blob_record_size(rkl, ref->size) > rd->size - ref->offset)
		return corrupt(err, errlen, rd, ref->offset, "runs past the end of the file");
	int r = read_exact(rd, ref->offset, h, 8 + rkl, err, errlen);
	if (r)
		return r;
	uint32_t klen = dec_fixed32(h), stored = dec_fixed32(h + 4);
	if (klen != rkl || (!ref->moved && rkl && memcmp(h + 8, key.data, rkl)))
		return corrupt(err, errlen, rd, ref->offset, "holds another key");
	if (stored != header_crc(ref->offset, klen, h + 8))
		return corrupt(err, errlen, rd, ref->offset, "header checksum mismatch");
	if (stored != ref->hcrc)
		return corrupt(err, errlen, rd, ref->offset, "is not the record referenced");
	return 0;
}

static int ensure_scratch(struct blob_reader *rd, size_t n)
{
	if (rd->scratch_cap >= n)
		return 0;
	char *p = realloc(rd->scratch, n);
	if (!p)
		return CAIRN_ENOMEM;
	rd->scratch = p;
	rd->scratch_cap = n;
	return 0;
}

/* Stored length of chunk j of a value of vlen bytes. */
static uint32_t chunk_len(uint64_t vlen, uint64_t j)
{
	uint64_t left = vlen - j * BLOB_CHUNK;
	return left >= BLOB_CHUNK && j + 1 < chunk_count(vlen) ? BLOB_CHUNK : (uint32_t)left;
}

int blob_check(struct blob_reader *rd, const struct blob_ref *ref, struct slice key, char *err,
               size_t errlen)
{
	return check_header(rd, ref, key, err, errlen);
}

int blob_read(struct blob_reader *rd, const struct blob_ref *ref, struct slice key, uint64_t off,
              void *buf, size_t len, size_t *got, char *err, size_t errlen)
{
	*got = 0;
	int r = check_header(rd, ref, key, err, errlen);
	if (r || off >= ref->size || len == 0)
		return r;
	uint64_t end = ref->size - off < len ? ref->size : off + len;
	uint64_t data = ref->offset + 8 + (ref->moved ? ref->rklen : key.len);
	uint64_t j = off / BLOB_CHUNK, last = (end - 1) / BLOB_CHUNK;
	char *out = buf;
	while (j <= last) {
		uint64_t n = last - j + 1 < READ_CHUNKS ? last - j + 1 : READ_CHUNKS;
		/* every chunk but the value's last is full */
		uint64_t bytes =
		        (n - 1) * CHUNK_STRIDE + chunk_len(ref->size, j + n - 1) + CHUNK_OVERHEAD;
		r = ensure_scratch(rd, (size_t)bytes);
		if (!r)
			r = read_exact(rd, data + j * CHUNK_STRIDE, rd->scratch, (size_t)bytes, err,
			               errlen);
		if (r)
			return r;
		for (uint64_t i = 0; i < n; i++, j++) {
			const char *p = rd->scratch + i * CHUNK_STRIDE;
			uint32_t want = chunk_len(ref->size, j);
			if (dec_fixed32(p) != want ||
			    dec_fixed32(p + 4 + want) != chunk_crc(ref->offset, j, p, want)) {
				char what[96];
				fmt_msg(what, sizeof(what), "chunk %llu fails its checksum",
				        (unsigned long long)j);
				return corrupt(err, errlen, rd, ref->offset, what);
			}
			uint64_t cstart = j * BLOB_CHUNK;
			uint64_t from = off > cstart ? off - cstart : 0;
			uint64_t to = end - cstart < want ? end - cstart : want;
			memcpy(out, p + 4 + from, (size_t)(to - from));
			out += to - from;
		}
	}
	*got = (size_t)(end - off);
	return 0;
}

/* ---- scanning ---- */

/* 1 if every byte of [off, limit) is zero: a tail the file system extended
 * but never wrote, which a crash leaves, not damage. */
static int all_zero(struct blob_reader *rd, uint64_t off, uint64_t limit)
{
	char b[4096];
	while (off < limit) {
		size_t n = limit - off < sizeof(b) ? (size_t)(limit - off) : sizeof(b), got;
		if (env_pread(rd->file, off, b, n, &got) || got != n)
			return 0;
		for (size_t i = 0; i < n; i++)
			if (b[i])
				return 0;
		off += n;
	}
	return 1;
}

/* A bad record at off: torn when nothing but zeros follows, else damage. */
static int bad_record(struct blob_reader *rd, uint64_t off, uint64_t limit, const char *what,
                      char *err, size_t errlen)
{
	if (all_zero(rd, off, limit))
		return BLOB_SCAN_TORN;
	return corrupt(err, errlen, rd, off, what);
}

/* Walks the chunks of the record at rec whose data starts at pos. */
static int scan_chunks(struct blob_reader *rd, uint64_t rec, uint64_t pos, uint64_t limit,
                       int verify, uint64_t *vlen, uint64_t *end, char *err, size_t errlen)
{
	*vlen = 0;
	for (uint64_t j = 0;; j++) {
		char lb[4];
		if (limit - pos < CHUNK_OVERHEAD)
			return BLOB_SCAN_TORN;
		int r = read_exact(rd, pos, lb, 4, err, errlen);
		if (r)
			return r;
		uint32_t len = dec_fixed32(lb);
		if (len > BLOB_CHUNK)
			return bad_record(rd, rec, limit, "chunk length out of range", err, errlen);
		if (limit - pos < (uint64_t)len + CHUNK_OVERHEAD)
			return BLOB_SCAN_TORN;
		if (verify) {
			r = ensure_scratch(rd, CHUNK_STRIDE);
			if (!r)
				r = read_exact(rd, pos, rd->scratch, len + CHUNK_OVERHEAD, err,
				               errlen);
			if (r)
				return r;
			if (dec_fixed32(rd->scratch + 4 + len) !=
			    chunk_crc(rec, j, rd->scratch, len)) {
				char what[96];
				fmt_msg(what, sizeof(what), "chunk %llu fails its checksum",
				        (unsigned long long)j);
				return bad_record(rd, rec, limit, what, err, errlen);
			}
		}
		pos += len + CHUNK_OVERHEAD;
		*vlen += len;
		if (len < BLOB_CHUNK) {
			*end = pos;
			return 0;
		}
	}
}

int blob_scan(struct blob_reader *rd, uint64_t limit, int verify,
              int (*fn)(void *ctx, const struct blob_record *rec), void *ctx, uint64_t *good_end,
              char *err, size_t errlen)
{
	char h[8 + CAIRN_MAX_KEY_SIZE];
	uint64_t pos = BLOB_FILE_HEADER;
	int r = 0;
	if (limit > rd->size)
		limit = rd->size;
	while (pos < limit) {
		if (limit - pos < 8) {
			r = BLOB_SCAN_TORN;
			break;
		}
		r = read_exact(rd, pos, h, 8, err, errlen);
		if (r)
			break;
		uint32_t klen = dec_fixed32(h);
		if (klen > CAIRN_MAX_KEY_SIZE) {
			r = bad_record(rd, pos, limit, "key length out of range", err, errlen);
			break;
		}
		if (limit - pos < 8 + (uint64_t)klen) {
			r = BLOB_SCAN_TORN;
			break;
		}
		r = read_exact(rd, pos + 8, h + 8, klen, err, errlen);
		if (r)
			break;
		if (dec_fixed32(h + 4) != header_crc(pos, klen, h + 8)) {
			r = bad_record(rd, pos, limit, "header checksum mismatch", err, errlen);
			break;
		}
		struct blob_record rec = {
		        .offset = pos, .key = slice_make(h + 8, klen), .hcrc = dec_fixed32(h + 4)};
		r = scan_chunks(rd, pos, pos + 8 + klen, limit, verify, &rec.size, &rec.end, err,
		                errlen);
		if (r)
			break;
		pos = rec.end;
		if (fn && (r = fn(ctx, &rec)) != 0)
			break;
	}
	if (good_end)
		*good_end = pos;
	return r;
}
