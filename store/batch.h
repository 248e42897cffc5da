/*
 * batch.h - the encoding of a write batch, which is also the payload of a
 * write-ahead log record, and iteration over its entries for replay.
 *
 * Encoding (docs/format.md, "Write batch"): fixed64 sequence of the first
 * entry, fixed32 entry count, fixed64 write time (ns), then per entry: a type
 * byte (0 delete, 1 put, 2 blob reference), varint32 key length, key, and
 * for puts and references varint32 value length, value. The sequence and time are filled in by the
 * writer when the batch is committed.
 */
#ifndef CAIRN_BATCH_H
#define CAIRN_BATCH_H

#include <stdint.h>

#include "cairn.h"
#include "dbformat.h"
#include "util.h"

#define BATCH_HEADER 20
/* An entry type only a user's batch holds (cairn_batch_copy): key is the
 * destination, value the source key. The write path resolves it into a put
 * or a blob reference before the batch reaches the log, so a log record
 * never holds one (batch_iterate refuses it). */
#define BATCH_TYPE_COPY 3

struct cairn_batch {
	struct buf rep; /* header + entries; always at least BATCH_HEADER bytes */
	uint32_t count;
	uint32_t ncopy;      /* entries of BATCH_TYPE_COPY */
	uint64_t user_bytes; /* sum of key and value lengths */
};

/* Initialise / release a batch embedded in another struct. */
int batch_init(struct cairn_batch *b);
void batch_destroy(struct cairn_batch *b);

static inline uint64_t batch_seq(struct slice rep)
{
	return dec_fixed64(rep.data);
}
static inline uint32_t batch_count(struct slice rep)
{
	return dec_fixed32(rep.data + 8);
}
static inline int64_t batch_time(struct slice rep)
{
	return (int64_t)dec_fixed64(rep.data + 12);
}
void batch_set_header(struct cairn_batch *b, uint64_t seq, int64_t time_ns);

/* Appends a TYPE_BLOB entry: key and an encoded blob reference (blob.h),
 * which stands for a value already written to a blob file. */
int batch_put_blob(struct cairn_batch *b, struct slice key, struct slice ref);

/* Appends the entries of src to dst (group commit merges batches). */
int batch_append(struct cairn_batch *dst, const struct cairn_batch *src);

/* Calls fn for each entry of an encoded batch (as read back from the log),
 * with the entry's sequence number. Validates the whole encoding first:
 * returns CAIRN_ECORRUPT if any length runs past the end or the count does
 * not match, without calling fn at all. Otherwise returns the first nonzero
 * value fn returns, or 0. */
int batch_iterate(struct slice rep,
                  int (*fn)(void *ctx, uint64_t seq, enum value_type type, struct slice key,
                            struct slice value, int64_t time_ns),
                  void *ctx);
/* The same over a user's batch, which may hold BATCH_TYPE_COPY entries. */
int batch_iterate_user(const struct cairn_batch *b,
                       int (*fn)(void *ctx, uint64_t seq, enum value_type type, struct slice key,
                                 struct slice value, int64_t time_ns),
                       void *ctx);

#endif
