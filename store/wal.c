/*
 * wal.c - the record log: an append-only file of checksummed records. The
 * write-ahead log stores one committed write batch per record and the
 * manifest one version edit per record; both are replayed from the start at
 * open. The format is in docs/format.md, "Record logs".
 *
 * Writing: each record is a 12-byte header (payload length, payload CRC32C,
 * CRC32C of those 8 bytes) followed by the payload, back to back. A record
 * normally goes to the env in one append from a reusable buffer, so a crash
 * tears at most the last record; very large records go out in pieces, which
 * the reader still sees as a torn tail if a crash cuts them.
 *
 * Reading: records are read with env_pread through one buffer (64 KiB, grown
 * to the size of a larger record while it is read). Because the header has
 * its own checksum the length can be trusted before the payload is read, and
 * the reader can tell the torn end of the last write (a crash) from damage in
 * the middle of the file (corruption): only a short tail, a zero-filled tail
 * or a bad checksum on the very last record count as torn.
 */
#include "wal.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

/* Format versions: a manifest of version 2 may hold log marks (version edit
 * tag 10), which version 1 readers cannot skip. A log of version 2 starts
 * with a start note and may hold notes (logscan.h), which version 1 readers
 * would take for malformed batches. */
#define WAL_LOG_VERSION      2
#define WAL_MANIFEST_VERSION 2

static unsigned wal_version(enum wal_kind kind)
{
	return kind == WAL_KIND_MANIFEST ? WAL_MANIFEST_VERSION : WAL_LOG_VERSION;
}
/* Records up to this size go out in a single append from the scratch buffer;
 * above it, copying would double the memory for little gain. */
#define WAL_SINGLE_APPEND_MAX (1u << 20)
/* Read buffer size when records are small. */
#define WAL_READ_CHUNK (64u * 1024)

static const char wal_magic_log[8] = {'c', 'a', 'i', 'r', 'n', 'l', 'o', 'g'};
static const char wal_magic_manifest[8] = {'c', 'a', 'i', 'r', 'n', 'm', 'a', 'n'};

static const char *wal_magic(enum wal_kind kind)
{
	return kind == WAL_KIND_MANIFEST ? wal_magic_manifest : wal_magic_log;
}

static const char *wal_kind_name(enum wal_kind kind)
{
	return kind == WAL_KIND_MANIFEST ? "manifest" : "log";
}

/* ---- writer ---- */

struct wal_writer {
	struct env_file *f;
	uint64_t size;      /* bytes in the file, as far as we appended */
	int failed;         /* first append error: later appends return it */
	struct buf scratch; /* header + payload of one small record */
};

int wal_writer_new(struct env_file *f, enum wal_kind kind, struct wal_writer **wp)
{
	char hdr[WAL_FILE_HEADER];
	struct wal_writer *w;
	int r;

	*wp = NULL;
	assert(kind == WAL_KIND_LOG || kind == WAL_KIND_MANIFEST);
	w = calloc(1, sizeof(*w));
	if (!w) {
		env_close(f);
		return CAIRN_ENOMEM;
	}
	w->f = f;
	memcpy(hdr, wal_magic(kind), 8);
	enc_fixed16(hdr + 8, (uint16_t)wal_version(kind));
	enc_fixed16(hdr + 10, (uint16_t)kind);
	enc_fixed32(hdr + 12, crc32c_mask(crc32c(hdr, 12)));
	r = env_append(f, hdr, sizeof(hdr));
	if (r) {
		wal_writer_close(w);
		return r;
	}
	w->size = WAL_FILE_HEADER;
	*wp = w;
	return 0;
}

int wal_writer_reopen(struct env_file *f, struct wal_writer **wp)
{
	struct wal_writer *w;
	uint64_t size = 0;
	int r = env_size(f, &size);

	*wp = NULL;
	if (!r && size < WAL_FILE_HEADER)
		r = CAIRN_EINVAL;
	w = r ? NULL : calloc(1, sizeof(*w));
	if (!w) {
		env_close(f);
		return r ? r : CAIRN_ENOMEM;
	}
	w->f = f;
	w->size = size;
	*wp = w;
	return 0;
}

static void wal_encode_header(char *hdr, uint32_t len, uint32_t payload_crc)
{
	enc_fixed32(hdr, len);
	enc_fixed32(hdr + 4, crc32c_mask(payload_crc));
	enc_fixed32(hdr + 8, crc32c_mask(crc32c(hdr, 8)));
}

/* Appends through the env; the first failure sticks, because a record cut
 * short in the middle of the file would make every later record unreadable. */
static int wal_append(struct wal_writer *w, const void *data, size_t n)
{
	int r;

	if (n == 0)
		return 0;
	r = env_append(w->f, data, n);
	if (r) {
		w->failed = r;
		return r;
	}
	w->size += n;
	return 0;
}

int wal_addv(struct wal_writer *w, const struct slice *parts, int nparts)
{
	char hdr[WAL_RECORD_HEADER];
	uint32_t crc = 0;
	size_t total = 0;
	int i, r;

	if (w->failed)
		return w->failed;
	for (i = 0; i < nparts; i++) {
		if (parts[i].len > WAL_MAX_RECORD - total)
			return CAIRN_ETOOBIG;
		total += parts[i].len;
		crc = crc32c_extend(crc, parts[i].data, parts[i].len);
	}
	wal_encode_header(hdr, (uint32_t)total, crc);

	if (total > WAL_SINGLE_APPEND_MAX) {
		r = wal_append(w, hdr, sizeof(hdr));
		for (i = 0; !r && i < nparts; i++)
			r = wal_append(w, parts[i].data, parts[i].len);
		return r;
	}
	buf_clear(&w->scratch);
	r = buf_reserve(&w->scratch, sizeof(hdr) + total);
	if (r)
		return r;
	buf_append(&w->scratch, hdr, sizeof(hdr));
	for (i = 0; i < nparts; i++)
		buf_append(&w->scratch, parts[i].data, parts[i].len);
	assert(w->scratch.len == sizeof(hdr) + total);
	return wal_append(w, w->scratch.data, w->scratch.len);
}

int wal_add(struct wal_writer *w, const void *data, size_t n)
{
	struct slice s = slice_make(data, n);

	return wal_addv(w, &s, 1);
}

int wal_sync(struct wal_writer *w)
{
	if (w->failed)
		return w->failed;
	return env_sync(w->f);
}

uint64_t wal_size(const struct wal_writer *w)
{
	return w->size;
}

int wal_truncate(struct wal_writer *w, uint64_t size)
{
	/* Only a cut back to a record boundary the writer itself reported makes
	 * the file well formed again; then appends may resume. */
	if (size > w->size || size < WAL_FILE_HEADER)
		return CAIRN_EINVAL;
	/* An append that failed without writing a byte (the usual ENOSPC)
	 * leaves nothing to cut; truncate itself may fail on a full disk. */
	uint64_t cur;
	int r = env_size(w->f, &cur);
	if (r || cur != size)
		r = env_truncate(w->f, size);
	if (r)
		return r;
	w->size = size;
	w->failed = 0;
	return 0;
}

int wal_writer_close(struct wal_writer *w)
{
	int r;

	if (!w)
		return 0;
	r = env_close(w->f);
	buf_free(&w->scratch);
	free(w);
	return r;
}

/* ---- reader ---- */

enum wal_bad {
	WAL_BAD_NONE,
	WAL_BAD_HEADER,
	WAL_BAD_LENGTH,
	WAL_BAD_PAYLOAD,
};

struct wal_reader {
	struct env_file *f;
	char *path;    /* for messages */
	uint64_t size; /* file size at open */
	uint64_t pos;  /* offset of the next record */
	uint64_t good; /* end of the last good record */
	int done;      /* reading ended: every later call returns result */
	int result;
	enum wal_bad bad; /* why a CAIRN_ECORRUPT result */
	unsigned version; /* of the file header; 0 when there is none */
	uint64_t bad_end; /* a bad record's bytes end here (header: pos + 12) */
	char *buf;        /* file bytes [buf_off, buf_off + buf_len) */
	size_t cap;
	uint64_t buf_off;
	size_t buf_len;
};

static void wal_env_err(struct wal_reader *r, char *err, size_t errlen)
{
	char msg[256];

	env_errmsg(env_of(r->f), msg, sizeof(msg));
	fmt_msg(err, errlen, "file %s: %s", r->path, msg);
}

static int wal_grow(struct wal_reader *r, size_t n)
{
	char *p = realloc(r->buf, n);

	if (!p)
		return CAIRN_ENOMEM;
	r->buf = p;
	r->cap = n;
	return 0;
}

/* Makes file bytes [off, off + n) available and points *p at them. The
 * caller has checked that they lie inside the file. Reads ahead as far as the
 * buffer allows; grows it only for a record bigger than the buffer, and gives
 * the memory back once records are small again. */
static int wal_fill(struct wal_reader *r, uint64_t off, size_t n, const char **p, char *err,
                    size_t errlen)
{
	size_t keep = 0, want;
	int rc;

	assert(off + n <= r->size);
	if (off >= r->buf_off && off + n <= r->buf_off + r->buf_len) {
		*p = r->buf + (off - r->buf_off);
		return 0;
	}
	if (off >= r->buf_off && off < r->buf_off + r->buf_len) {
		keep = (size_t)(r->buf_off + r->buf_len - off);
		memmove(r->buf, r->buf + (off - r->buf_off), keep);
	}
	r->buf_off = off;
	r->buf_len = keep;
	if (n > r->cap || (r->cap > WAL_READ_CHUNK && n <= WAL_READ_CHUNK && keep <= n)) {
		rc = wal_grow(r, n > WAL_READ_CHUNK ? n : WAL_READ_CHUNK);
		if (rc)
			return rc;
	}
	want = r->size - off < r->cap ? (size_t)(r->size - off) : r->cap;
	while (r->buf_len < want) {
		size_t got = 0;

		rc = env_pread(r->f, off + r->buf_len, r->buf + r->buf_len, want - r->buf_len,
		               &got);
		if (rc) {
			wal_env_err(r, err, errlen);
			return rc;
		}
		if (got == 0) {
			fmt_msg(err, errlen, "file %s: shrank to %llu bytes while being read",
			        r->path, (unsigned long long)(off + r->buf_len));
			return CAIRN_EIO;
		}
		r->buf_len += got;
	}
	*p = r->buf + (off - r->buf_off);
	return 0;
}

/* 1 if every byte from off to the end of the file is zero, 0 if not. */
static int wal_zero_to_eof(struct wal_reader *r, uint64_t off, char *err, size_t errlen)
{
	while (off < r->size) {
		size_t n =
		        r->size - off < WAL_READ_CHUNK ? (size_t)(r->size - off) : WAL_READ_CHUNK;
		const char *p;
		int rc = wal_fill(r, off, n, &p, err, errlen);

		if (rc)
			return rc;
		for (size_t i = 0; i < n; i++)
			if (p[i])
				return 0;
		off += n;
	}
	return 1;
}

static int wal_check_header(struct wal_reader *r, enum wal_kind kind, char *err, size_t errlen)
{
	const char *h;
	enum wal_kind other = kind == WAL_KIND_LOG ? WAL_KIND_MANIFEST : WAL_KIND_LOG;
	unsigned version, got_kind;
	int rc;

	rc = wal_fill(r, 0, WAL_FILE_HEADER, &h, err, errlen);
	if (rc)
		return rc;
	if (memcmp(h, wal_magic(kind), 8) != 0) {
		/* A file created and extended but never written (a crash before
		 * the data reached the disk) reads as zeros: an empty log. */
		rc = wal_zero_to_eof(r, 0, err, errlen);
		if (rc < 0)
			return rc;
		if (rc)
			return 0; /* pos stays 0: the first wal_next says WAL_TORN */
		if (memcmp(h, wal_magic(other), 8) == 0)
			fmt_msg(err, errlen, "file %s: is a %s, not a %s", r->path,
			        wal_kind_name(other), wal_kind_name(kind));
		else
			fmt_msg(err, errlen, "file %s: not a cairn %s (bad magic)", r->path,
			        wal_kind_name(kind));
		return CAIRN_ECORRUPT;
	}
	if (crc32c_unmask(dec_fixed32(h + 12)) != crc32c(h, 12)) {
		fmt_msg(err, errlen, "file %s: file header fails its checksum", r->path);
		return CAIRN_ECORRUPT;
	}
	version = dec_fixed16(h + 8);
	got_kind = dec_fixed16(h + 10);
	if (version > wal_version(kind)) {
		fmt_msg(err, errlen, "file %s: format version %u is newer than this library (%u)",
		        r->path, version, wal_version(kind));
		return CAIRN_EVERSION;
	}
	if (version == 0 || got_kind != (unsigned)kind) {
		fmt_msg(err, errlen, "file %s: bad version %u or kind %u in the file header",
		        r->path, version, got_kind);
		return CAIRN_ECORRUPT;
	}
	r->pos = r->good = WAL_FILE_HEADER;
	r->version = version;
	return 0;
}

int wal_reader_open(struct cairn_env *env, const char *path, enum wal_kind kind,
                    struct wal_reader **rp, char *err, size_t errlen)
{
	struct wal_reader *r;
	int rc;

	*rp = NULL;
	assert(kind == WAL_KIND_LOG || kind == WAL_KIND_MANIFEST);
	r = calloc(1, sizeof(*r));
	if (!r)
		return CAIRN_ENOMEM;
	r->path = strdup(path);
	if (!r->path) {
		free(r);
		return CAIRN_ENOMEM;
	}
	rc = env_open_read(env, path, &r->f);
	if (rc) {
		char msg[256];

		env_errmsg(env, msg, sizeof(msg));
		fmt_msg(err, errlen, "file %s: %s", path, msg);
		wal_reader_close(r);
		return rc;
	}
	rc = env_size(r->f, &r->size);
	if (rc) {
		wal_env_err(r, err, errlen);
		wal_reader_close(r);
		return rc;
	}
	rc = wal_grow(r, WAL_READ_CHUNK);
	/* Shorter than a header: created, then a crash. An empty log. */
	if (!rc && r->size >= WAL_FILE_HEADER)
		rc = wal_check_header(r, kind, err, errlen);
	if (rc) {
		wal_reader_close(r);
		return rc;
	}
	*rp = r;
	return 0;
}

static void wal_bad_msg(const struct wal_reader *r, char *err, size_t errlen)
{
	unsigned long long off = (unsigned long long)r->pos;

	if (r->bad == WAL_BAD_HEADER)
		fmt_msg(err, errlen, "file %s: bad record header at offset %llu", r->path, off);
	else if (r->bad == WAL_BAD_LENGTH)
		fmt_msg(err, errlen, "file %s: record at offset %llu is longer than %u bytes",
		        r->path, off, (unsigned)WAL_MAX_RECORD);
	else
		fmt_msg(err, errlen, "file %s: record at offset %llu fails its checksum", r->path,
		        off);
}

/* Ends reading: every later wal_next returns the same result. pos stays at
 * the record that ended it, so a CAIRN_ECORRUPT message can be repeated. */
static int wal_finish(struct wal_reader *r, int result, enum wal_bad bad, char *err, size_t errlen)
{
	r->done = 1;
	r->result = result;
	r->bad = bad;
	if (result == CAIRN_ECORRUPT)
		wal_bad_msg(r, err, errlen);
	return result;
}

int wal_next(struct wal_reader *r, struct slice *rec, char *err, size_t errlen)
{
	uint64_t left;
	uint32_t len;
	const char *p;
	int rc;

	if (r->done) {
		if (r->result == CAIRN_ECORRUPT)
			wal_bad_msg(r, err, errlen);
		return r->result;
	}
	if (r->pos == 0) /* no file header: torn at creation */
		return wal_finish(r, WAL_TORN, WAL_BAD_NONE, err, errlen);
	left = r->size - r->pos;
	if (left == 0)
		return wal_finish(r, WAL_EOF, WAL_BAD_NONE, err, errlen);
	if (left < WAL_RECORD_HEADER)
		return wal_finish(r, WAL_TORN, WAL_BAD_NONE, err, errlen);

	rc = wal_fill(r, r->pos, WAL_RECORD_HEADER, &p, err, errlen);
	if (rc)
		return rc;
	if (crc32c_unmask(dec_fixed32(p + 8)) != crc32c(p, 8)) {
		rc = wal_zero_to_eof(r, r->pos, err, errlen);
		if (rc < 0)
			return rc;
		r->bad_end = r->pos + WAL_RECORD_HEADER;
		return wal_finish(r, rc ? WAL_TORN : CAIRN_ECORRUPT, WAL_BAD_HEADER, err, errlen);
	}
	len = dec_fixed32(p);
	if (len > WAL_MAX_RECORD)
		return wal_finish(r, CAIRN_ECORRUPT, WAL_BAD_LENGTH, err, errlen);
	if (len > left - WAL_RECORD_HEADER)
		return wal_finish(r, WAL_TORN, WAL_BAD_NONE, err, errlen);

	rc = wal_fill(r, r->pos, WAL_RECORD_HEADER + (size_t)len, &p, err, errlen);
	if (rc)
		return rc;
	if (crc32c_unmask(dec_fixed32(p + 4)) != crc32c(p + WAL_RECORD_HEADER, len)) {
		int last = r->pos + WAL_RECORD_HEADER + len == r->size;
		r->bad_end = r->pos + WAL_RECORD_HEADER + len;

		return wal_finish(r, last ? WAL_TORN : CAIRN_ECORRUPT, WAL_BAD_PAYLOAD, err,
		                  errlen);
	}
	*rec = slice_make(p + WAL_RECORD_HEADER, len);
	r->pos += WAL_RECORD_HEADER + len;
	r->good = r->pos;
	return WAL_RECORD;
}

uint64_t wal_good_offset(const struct wal_reader *r)
{
	return r->good;
}

unsigned wal_reader_version(const struct wal_reader *r)
{
	return r->version;
}

#define WAL_PAGE 4096u

int wal_bad_is_hole(struct wal_reader *r, char *err, size_t errlen)
{
	if (!r->done || r->result != CAIRN_ECORRUPT || r->bad == WAL_BAD_LENGTH)
		return 0;
	/* Power loss leaves whole pages unwritten (zeros) from wherever the
	 * synced part ended: some page the record touches reads as zeros from
	 * the record (or the page start) to the page end or the file end. */
	uint64_t end = r->bad_end < r->size ? r->bad_end : r->size;
	for (uint64_t pg = r->pos / WAL_PAGE; pg * WAL_PAGE < end; pg++) {
		uint64_t lo = pg * WAL_PAGE < r->pos ? r->pos : pg * WAL_PAGE;
		uint64_t hi = (pg + 1) * WAL_PAGE < r->size ? (pg + 1) * WAL_PAGE : r->size;
		const char *p;
		int rc = wal_fill(r, lo, (size_t)(hi - lo), &p, err, errlen);
		if (rc)
			return rc;
		size_t i = 0;
		while (i < hi - lo && !p[i])
			i++;
		if (i == hi - lo)
			return 1;
	}
	return 0;
}

void wal_reader_close(struct wal_reader *r)
{
	if (!r)
		return;
	env_close(r->f);
	free(r->buf);
	free(r->path);
	free(r);
}
