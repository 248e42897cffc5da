/*
 * bloom.h - the bloom filter of a table: one filter over the user keys of the
 * whole table, so a point lookup for a key the table does not hold usually
 * costs no data block read at all.
 *
 * Internal to the table code (table.c). The filter bytes are a bit array
 * followed by one byte holding k, the number of probes; probes use double
 * hashing from one hash32() of the key. Byte by byte in
 * docs/format.md, "Tables", "Filter block".
 */
#ifndef CAIRN_BLOOM_H
#define CAIRN_BLOOM_H

#include <stddef.h>
#include <stdint.h>

#include "util.h"

/* The hash a filter stores for a user key. The builder keeps only these
 * (4 bytes per distinct key), not the keys. */
uint32_t bloom_hash(struct slice user_key);

/* Appends a filter over n key hashes with bits_per_key bits each (>= 1) to
 * out. The same hashes and bits_per_key always give the same bytes.
 * Returns 0 or CAIRN_ENOMEM. */
int bloom_build(int bits_per_key, const uint32_t *hashes, size_t n, struct buf *out);

/* 0 when the key is surely absent, 1 when it may be present. A filter too
 * short to hold anything, or with a probe count this version does not know
 * (k > 30, reserved), answers 1: a filter can only save reads, never lose
 * data. */
int bloom_may_contain(struct slice filter, struct slice user_key);

#endif
