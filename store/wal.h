/*
 * wal.h - the record log: an append-only file of checksummed records, used
 * for the write-ahead log (one write batch per record) and for the manifest
 * (one version edit per record). Format: docs/format.md, "Record logs".
 *
 * A file starts with a 16-byte header (magic, kind, version, checksum). Each
 * record is a 12-byte header (payload length, payload CRC32C, header CRC32C)
 * and the payload. The header checksum makes the length trustworthy, so a
 * reader can tell a torn tail (the last write cut short by a crash) from
 * corruption in the middle of the file.
 */
#ifndef CAIRN_WAL_H
#define CAIRN_WAL_H

#include <stdint.h>

#include "env.h"
#include "util.h"

enum wal_kind {
	WAL_KIND_LOG = 1,      /* NNNNNN.log: write batches */
	WAL_KIND_MANIFEST = 2, /* MANIFEST-NNNNNN: version edits */
};

#define WAL_FILE_HEADER   16
#define WAL_RECORD_HEADER 12
#define WAL_MAX_RECORD    (CAIRN_MAX_BATCH_SIZE + 4096u)

struct wal_writer;

/* Takes ownership of f (a new empty file opened for writing) and writes the
 * file header. */
int wal_writer_new(struct env_file *f, enum wal_kind kind, struct wal_writer **wp);
/* Takes ownership of f (an existing record log opened for appending, that a
 * reader found to end in a whole record) and appends after its last byte. */
int wal_writer_reopen(struct env_file *f, struct wal_writer **wp);
/* Appends one record with a single env append. Not thread-safe: the caller
 * serialises (the group-commit leader, the manifest lock). */
int wal_add(struct wal_writer *w, const void *data, size_t n);
/* Appends several pieces as ONE record (the group commit of many batches). */
int wal_addv(struct wal_writer *w, const struct slice *parts, int nparts);
int wal_sync(struct wal_writer *w);
/* Cuts the file back to size bytes (a size wal_size() returned earlier), to
 * undo an append that failed half way (a full disk). */
int wal_truncate(struct wal_writer *w, uint64_t size);
/* Bytes in the file so far. */
uint64_t wal_size(const struct wal_writer *w);
/* Closes the file (without syncing) and frees the writer. NULL is accepted. */
int wal_writer_close(struct wal_writer *w);

struct wal_reader;

/* Opens path for reading and checks its header is of this kind. Errors:
 * CAIRN_ECORRUPT (bad magic, kind or header checksum; an empty or short file
 * is reported as WAL_TORN by the first wal_next instead), CAIRN_EVERSION,
 * CAIRN_EIO. */
int wal_reader_open(struct cairn_env *env, const char *path, enum wal_kind kind,
                    struct wal_reader **rp, char *err, size_t errlen);

enum wal_read {
	WAL_RECORD = 1, /* *rec holds a record */
	WAL_EOF = 0,    /* clean end of file */
	WAL_TORN = 2,   /* the file ends in an incomplete last record (torn tail);
	                   wal_good_offset() says where the good part ends */
};

/* Reads the next record. *rec points into the reader's buffer until the next
 * call. Returns a wal_read value, or CAIRN_ECORRUPT with err naming the file
 * and the offset of the bad record (a checksum failure that is not a torn
 * tail), or CAIRN_EIO. Every length is checked against the file size and
 * WAL_MAX_RECORD before it is trusted. */
int wal_next(struct wal_reader *r, struct slice *rec, char *err, size_t errlen);
/* Offset just past the last good record read. */
uint64_t wal_good_offset(const struct wal_reader *r);
/* The format version of the file header (0: the file has none). */
unsigned wal_reader_version(const struct wal_reader *r);
/* After wal_next returned CAIRN_ECORRUPT: 1 if the bad record touches a page
 * that reads as zeros from the record (or the page start) to the page end
 * or the end of the file, as power loss leaves pages the file system
 * allocated but never wrote; 0 if not; or an I/O error with err set. */
int wal_bad_is_hole(struct wal_reader *r, char *err, size_t errlen);
void wal_reader_close(struct wal_reader *r);

#endif
