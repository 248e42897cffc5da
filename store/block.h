/*
 * block.h - the block: the unit of a table that is read, checksummed,
 * compressed and cached as one piece.
 *
 * Internal to the table code. A block holds entries with keys in increasing
 * internal-key order (dbformat.h), each key stored as the length it shares
 * with the previous key plus the rest ("prefix compression"). Every
 * restart_interval entries a restart point stores its key whole; the offsets
 * of the restart points follow the entries, then their count. Seeks binary
 * search the restart points, then scan at most restart_interval entries.
 * Byte by byte in docs/format.md, "Tables", "Data block".
 *
 * The reader trusts nothing in the bytes: a corrupt block makes its iterator
 * invalid with status CAIRN_ECORRUPT, never a read outside the block.
 */
#ifndef CAIRN_BLOCK_H
#define CAIRN_BLOCK_H

#include <stddef.h>
#include <stdint.h>

#include "iter.h"
#include "util.h"

/* ---- building ---- */

struct block_builder {
	int restart_interval;
	int counter; /* entries since the last restart point */
	uint32_t nrestarts;
	struct buf data;     /* entries, then (after finish) the trailer */
	struct buf restarts; /* restart offsets, already little-endian */
	struct buf last_key;
	uint64_t entries;
	int finished;
};

/* restart_interval >= 1. A zeroed builder after bb_free may be re-inited. */
void bb_init(struct block_builder *b, int restart_interval);
void bb_free(struct block_builder *b);
/* Empties the builder for the next block, keeping its memory. */
void bb_reset(struct block_builder *b);
/* key must be greater than every key added since the last reset. Returns 0,
 * CAIRN_ENOMEM, or CAIRN_ETOOBIG when the block would pass 4 GiB (restart
 * offsets are 32-bit). */
int bb_add(struct block_builder *b, struct slice key, struct slice value);
/* Appends the restart array and returns the whole block, valid until the
 * next reset. Returns 0 or CAIRN_ENOMEM. */
int bb_finish(struct block_builder *b, struct slice *out);
/* The size the block would have if finished now. */
size_t bb_size_estimate(const struct block_builder *b);
static inline int bb_empty(const struct block_builder *b)
{
	return b->entries == 0;
}

/* ---- reading ---- */

/* A parsed block over bytes it may own. */
struct block {
	const char *data;
	size_t size;
	uint32_t restart_offset; /* where entries end and the restart array begins */
	uint32_t nrestarts;
	char *owned; /* freed by block_free; NULL when borrowed */
};

/* Checks the restart array of data[0, n) (count fits, offsets increasing and
 * inside the entries) and fills *b. Returns 0 or CAIRN_ECORRUPT. On success
 * b borrows data; set b->owned to hand it over. */
int block_parse(const char *data, size_t n, struct block *b);
/* Frees the bytes b owns (not b itself). */
void block_release(struct block *b);
/* block_parse into a malloc'ed block that takes ownership of data (malloc'ed)
 * even on failure. For the block cache. */
int block_new_owned(char *data, size_t n, struct block **bp);
/* Frees a block from block_new_owned. */
void block_free(struct block *b);

/* An iterator over b in internal-key order, both directions. b must outlive
 * the iterator (callers pin it with iter_set_cleanup). NULL on ENOMEM. */
struct iter *block_iter_new(const struct block *b);

/* Finds the first entry >= target without allocating an iterator. Returns 1
 * with its key in *key (the caller's buffer, reused) and *value pointing into
 * b, 0 when every entry is < target, or CAIRN_ECORRUPT / CAIRN_ENOMEM. */
int block_seek_once(const struct block *b, struct slice target, struct buf *key,
                    struct slice *value);

/* Parses data as a block and walks it both ways, seeking to a few keys of its
 * own: for fuzz targets. Returns 0 when the block reads cleanly, else the
 * error; never reads outside data. */
int block_fuzz_one(const uint8_t *data, size_t n);

#endif
