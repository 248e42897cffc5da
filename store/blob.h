/*
 * blob.h - blob files: append-only files that hold values too large for the
 * tree (docs/format.md, "Blob files"). The tree keeps a small reference
 * (file number, record offset, value length, header checksum) in an entry of
 * type TYPE_BLOB; the value bytes never pass through the memtable, the log or
 * compaction.
 *
 * A blob file is a 16-byte header and records. A record is the key and the
 * value cut in chunks of BLOB_CHUNK bytes, each with its length and its own
 * checksum, so that a range read verifies only the chunks it touches and a
 * stream of unknown length can be written in one pass with bounded memory:
 * every chunk but the last is full, so chunk j of a value is found by
 * arithmetic, and the last one is short (possibly empty), which ends the
 * record for a reader that scans.
 *
 * This module knows files only: the engine (db.c, compact.c) decides which
 * file takes which value, records files in the manifest and collects garbage.
 * Nothing here takes a lock; a writer or reader belongs to one thread at a
 * time.
 */
#ifndef CAIRN_BLOB_H
#define CAIRN_BLOB_H

#include <stdint.h>

#include "cairn.h"
#include "env.h"
#include "util.h"

#define BLOB_FILE_HEADER 16
#define BLOB_CHUNK       65536u
#define BLOB_KIND        3
#define BLOB_VERSION     1
/* Room for an encoded reference: three varint64, a fixed32, a fixed64. */
#define BLOB_REF_MAX 42
/* A writer gathers chunks up to this many bytes before it appends them. */
#define BLOB_WRITE_BUF (1u << 20)

/* Where a value lives. */
struct blob_ref {
	uint64_t file;   /* blob file number */
	uint64_t offset; /* offset of the record in the file */
	uint64_t size;   /* value length */
	uint32_t hcrc;   /* the record header's stored (masked) checksum */
	/* A reference written by garbage collection keeps the value's original
	 * write time, which its new entry's commit time would otherwise hide. */
	int has_time;
	int64_t time_ns;
	/* A reference made by cairn_batch_copy: the record was written under
	 * another key, of rklen bytes (always with has_time). Its identity is
	 * then checked by its header checksum alone, not by the key. */
	int moved;
	uint32_t rklen;
};

/* Reference encoding: varint64 file, varint64 offset, varint64 size,
 * fixed32 hcrc, then (has_time only) fixed64 time_ns, then (moved only)
 * varint32 rklen, nothing after. decode returns 0 or CAIRN_ECORRUPT. */
int blob_ref_encode(const struct blob_ref *ref, struct buf *out);
int blob_ref_decode(struct slice in, struct blob_ref *ref);

/* Bytes a record of a klen-byte key and a vlen-byte value takes on disk. */
uint64_t blob_record_size(uint64_t klen, uint64_t vlen);
/* Bytes of the record ref points at, found under a klen-byte key. */
uint64_t blob_ref_record_size(const struct blob_ref *ref, uint64_t klen);

/* "dir/NNNNNN.blob" */
void blob_file_name(char *out, size_t len, const char *dir, uint64_t number);

/* ---- writing ---- */

struct blob_writer;

/* Creates (truncating) path and writes the file header into the writer's
 * buffer. Nothing is synced. number is the file's number, recorded in every
 * reference the writer returns. */
int blob_writer_create(struct cairn_env *env, const char *path, uint64_t number,
                       struct blob_writer **wp);
/* Starts a record for key (at most CAIRN_MAX_KEY_SIZE bytes). */
int blob_writer_begin(struct blob_writer *w, struct slice key);
/* Appends value bytes to the record begun; memory stays under
 * BLOB_WRITE_BUF + BLOB_CHUNK whatever n is. */
int blob_writer_append(struct blob_writer *w, const void *data, size_t n);
/* Ends the record, writes every buffered byte to the file (not synced) and
 * fills *ref, without a write time (has_time 0). */
int blob_writer_end(struct blob_writer *w, struct blob_ref *ref);
/* Syncs the file's data. */
int blob_writer_sync(struct blob_writer *w);
/* Bytes in the file once everything buffered is written: the offset of the
 * next record. good_size is the end of the last record ended. */
uint64_t blob_writer_size(const struct blob_writer *w);
uint64_t blob_writer_good_size(const struct blob_writer *w);
/* The end of the last record that was ended before the last successful sync:
 * what a crash cannot take away. */
uint64_t blob_writer_synced_size(const struct blob_writer *w);
uint64_t blob_writer_number(const struct blob_writer *w);
/* After a failed append the writer refuses everything but a sync (returning
 * the first error): bytes after a partial record are never written, but the
 * records ended before the failure can still be made durable. After a failed
 * sync it refuses everything, syncs included. */
int blob_writer_failed(const struct blob_writer *w);
/* Closes the file (no sync) and frees the writer. NULL is accepted. */
int blob_writer_close(struct blob_writer *w);

/* ---- reading ---- */

struct blob_reader;

/* Opens a blob file and checks its header. Errors: CAIRN_ECORRUPT (bad
 * header, message names the file), CAIRN_EVERSION, CAIRN_EIO, and
 * CAIRN_ENOENT-like env errors when the file is missing. */
int blob_reader_open(struct cairn_env *env, const char *path, struct blob_reader **rp, char *err,
                     size_t errlen);
void blob_reader_close(struct blob_reader *rd);
uint64_t blob_reader_file_size(const struct blob_reader *rd);

/* Reads up to len bytes of the value ref points at, from byte off, into buf;
 * *got is the count (0 at or past the end). key is the user key the
 * reference was found under: the record header must hold it (or, for a
 * moved reference, a key of ref->rklen bytes) and its checksum must equal
 * ref->hcrc. Only the chunks that hold the range are read
 * and verified. Errors: CAIRN_ECORRUPT with a message naming the file and
 * offset, CAIRN_EIO, CAIRN_ENOMEM. */
int blob_read(struct blob_reader *rd, const struct blob_ref *ref, struct slice key, uint64_t off,
              void *buf, size_t len, size_t *got, char *err, size_t errlen);

/* Checks only that the record ref points at is there, whole by the file's
 * size, under key, with ref's header checksum; the value is not read. The
 * errors are blob_read's. Recovery uses it to find references whose bytes a
 * power loss took. */
int blob_check(struct blob_reader *rd, const struct blob_ref *ref, struct slice key, char *err,
               size_t errlen);

/* One record met by blob_scan. key points into the scanner's memory and is
 * valid during the callback only. */
struct blob_record {
	uint64_t offset, end; /* [offset, end) in the file */
	struct slice key;
	uint64_t size; /* value length */
	uint32_t hcrc;
};

enum { BLOB_SCAN_TORN = 1 };

/* Walks the records of the file from the header up to limit bytes (the
 * file size when larger), calling fn for each (a nonzero return stops the
 * walk and is returned). With verify every chunk's checksum is checked (the
 * data is read); without, only the chunk lengths are. Returns 0 at a clean
 * end, BLOB_SCAN_TORN when the bytes after the last whole record do not
 * form one (a crash while appending), or CAIRN_ECORRUPT for damage before
 * it. *good_end (may be NULL) is the end of the last whole record. */
int blob_scan(struct blob_reader *rd, uint64_t limit, int verify,
              int (*fn)(void *ctx, const struct blob_record *rec), void *ctx, uint64_t *good_end,
              char *err, size_t errlen);

#endif
