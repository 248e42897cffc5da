/*
 * dbformat.h - the internal key and value forms shared by the memtable, the
 * tables, compaction and the read path.
 *
 * An internal key is the user key followed by an 8-byte little-endian trailer
 * (sequence << 8 | type). Internal keys order by user key ascending, then by
 * sequence descending, so the newest version of a key comes first and a
 * lookup for (key, snapshot seq) lands on the newest version the snapshot can
 * see.
 *
 * An internal value is an 8-byte little-endian write time (nanoseconds since
 * the epoch, from the env's clock) followed by the value bytes. Tombstones
 * carry the time too, with no value bytes.
 */
#ifndef CAIRN_DBFORMAT_H
#define CAIRN_DBFORMAT_H

#include <stdint.h>

#include "util.h"

enum value_type {
	TYPE_DELETION = 0,
	TYPE_VALUE = 1,
	/* a value kept in a blob file: the internal value is the write time
	 * followed by an encoded reference (blob.h) */
	TYPE_BLOB = 2,
	/* the highest type: seeks use it so that (key, seq) sorts before every
	 * entry of key at seq or older */
	TYPE_SEEK = TYPE_BLOB,
};

#define MAX_SEQUENCE ((UINT64_C(1) << 56) - 1)
#define IKEY_TRAILER 8
#define IVAL_HEADER  8

static inline uint64_t ikey_pack(uint64_t seq, enum value_type t)
{
	return (seq << 8) | (uint64_t)t;
}

/* Appends user_key + trailer to b. */
static inline int ikey_append(struct buf *b, struct slice ukey, uint64_t seq, enum value_type t)
{
	int r = buf_append(b, ukey.data, ukey.len);
	return r ? r : buf_put_fixed64(b, ikey_pack(seq, t));
}

/* The parts of an internal key. Callers must know len >= 8 (check with
 * ikey_valid on anything read from disk). */
static inline int ikey_valid(struct slice ik)
{
	return ik.len >= IKEY_TRAILER && (ik.data[ik.len - 8] & 0xff) <= TYPE_BLOB;
}
static inline struct slice ikey_user(struct slice ik)
{
	return slice_make(ik.data, ik.len - IKEY_TRAILER);
}
static inline uint64_t ikey_trailer(struct slice ik)
{
	return dec_fixed64(ik.data + ik.len - IKEY_TRAILER);
}
static inline uint64_t ikey_seq(struct slice ik)
{
	return ikey_trailer(ik) >> 8;
}
static inline enum value_type ikey_type(struct slice ik)
{
	return (enum value_type)(ikey_trailer(ik) & 0xff);
}

/* The order of internal keys: user key ascending, then trailer descending. */
static inline int ikey_cmp(struct slice a, struct slice b)
{
	int r = slice_cmp(ikey_user(a), ikey_user(b));
	if (r)
		return r;
	uint64_t ta = ikey_trailer(a), tb = ikey_trailer(b);
	return ta > tb ? -1 : ta < tb;
}

/* Internal values. ival_valid checks the 8-byte header is there. */
static inline int ival_valid(struct slice iv)
{
	return iv.len >= IVAL_HEADER;
}
static inline int64_t ival_time(struct slice iv)
{
	return (int64_t)dec_fixed64(iv.data);
}
static inline struct slice ival_value(struct slice iv)
{
	return slice_make(iv.data + IVAL_HEADER, iv.len - IVAL_HEADER);
}

#endif
