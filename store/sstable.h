/*
 * sstable.h - immutable sorted tables: the on-disk form of the LSM tree.
 *
 * A table is a sequence of data blocks (prefix-compressed internal keys with
 * restart points, each block LZ4-compressed when that pays, each with a
 * CRC32C trailer), a bloom filter over the user keys, a properties block, an
 * index block (one entry per data block: a separator key >= every key of the
 * block -> the block's offset and size) and a fixed-size footer. Byte by
 * byte in docs/format.md, "Tables". The same entries and options always
 * produce the same bytes.
 *
 * Readers read blocks through the block cache and verify every block's
 * checksum when it is loaded from disk. Every length and offset read from the
 * file is checked against the file size before it is used.
 */
#ifndef CAIRN_SSTABLE_H
#define CAIRN_SSTABLE_H

#include <stdint.h>

#include "cache.h"
#include "env.h"
#include "iter.h"
#include "util.h"

struct table_options {
	size_t block_size;      /* target uncompressed data block size */
	int restart_interval;   /* keys between restart points */
	int bloom_bits_per_key; /* 0: no filter */
	int compression;        /* 1: LZ4 when it saves >= 1/8 */
	/* The table's file number, recorded in its properties so that a
	 * table found under another file's name is caught. 0: not known
	 * (the properties are then written in version 1, without it). */
	uint64_t file_number;
};

/* What a table holds; written into its properties block. */
struct table_props {
	uint64_t num_entries, num_deletions;
	uint64_t raw_key_bytes, raw_value_bytes;
	uint64_t data_bytes, index_bytes, filter_bytes;
	uint64_t num_data_blocks;
	uint64_t min_seq, max_seq;
	struct buf smallest, largest; /* internal keys; owned */
	uint64_t file_number;         /* 0: not recorded (version 1 properties) */
};
void table_props_free(struct table_props *p);

/* ---- writing ---- */

struct table_builder;

/* Writes to f, which the builder does not own (the caller syncs and closes
 * it after tb_finish). */
int tb_new(const struct table_options *o, struct env_file *f, struct table_builder **tbp);
/* Adds an entry; keys must arrive in strictly increasing internal order. */
int tb_add(struct table_builder *tb, struct slice ikey, struct slice ival);
/* Writes filter, properties, index and footer. props (may be NULL) receives
 * a copy of the properties. */
int tb_finish(struct table_builder *tb, struct table_props *props);
/* Bytes written so far plus the pending block: for splitting output. */
uint64_t tb_file_size(const struct table_builder *tb);
uint64_t tb_entries(const struct table_builder *tb);
void tb_free(struct table_builder *tb);

/* ---- reading ---- */

struct table;

struct table_read_stats {
	uint64_t bloom_checks, bloom_negatives; /* atomically incremented */
	/* the filter passed but the table did not hold the key */
	uint64_t bloom_false_positives;
};

/* Opens a table of file_size bytes. Takes ownership of f (closed on failure
 * too). block_cache may be NULL. Every block's checksum is verified when it is
 * read from the file; blocks already in the cache are trusted. Errors:
 * CAIRN_ECORRUPT naming the file (path) and what failed, CAIRN_EVERSION,
 * CAIRN_EIO, CAIRN_ENOMEM. */
int table_open(struct env_file *f, const char *path, uint64_t file_size, struct cache *block_cache,
               struct table **tp, char *err, size_t errlen);
void table_close(struct table *t);

/* The message of the last read error of t (a block that failed its checksum
 * while iterating or in table_get): "table 'path': block at offset N: ...".
 * Empty when there was none. Thread-safe. */
void table_last_error(struct table *t, char *buf, size_t len);

/* Counters of bloom use, shared by all tables of a database (may be NULL). */
void table_set_stats(struct table *t, struct table_read_stats *st);

/* Finds the first entry with internal key >= ikey whose user key equals the
 * user key of ikey. Returns 1 and fills *found_key / *found_val (copied into
 * the caller's bufs; found_key is also used as scratch space, so its contents
 * are undefined on any other result), 0 when there is none (possibly decided by the bloom
 * filter without reading a data block), or a negative error. */
int table_get(struct table *t, struct slice ikey, struct buf *found_key, struct buf *found_val);

/* An iterator over the whole table. The caller keeps t alive while the
 * iterator exists (the table cache pins it through an iterator cleanup).
 * Its iter_may_hold answers from the bloom filter, reading no block. */
struct iter *table_iter_new(struct table *t);

const struct table_props *table_properties(const struct table *t);
/* What the manifest says a table is. number and size are always set; with
 * has_meta, the key range, entry count and sequence range must equal the
 * table's properties too. */
struct table_expect {
	uint64_t number, size;
	int has_meta;
	struct slice smallest, largest; /* internal keys */
	uint64_t num_entries, min_seq, max_seq;
};

/* Compares the table's properties with x: returns 0, or CAIRN_ECORRUPT with
 * a message naming the file and the first property that differs (a table
 * swapped with, or copied over, another). A table whose properties predate
 * the file number is checked on the rest. */
int table_check_expect(const struct table *t, const struct table_expect *x, char *err,
                       size_t errlen);
/* Approximate file offset where ikey would be: for sizing compaction ranges. */
uint64_t table_approx_offset(struct table *t, struct slice ikey);

/* Reads every block and checks every checksum and the key order; reports
 * each problem through fn (file path, offset, description). Returns the
 * number of problems found, or a negative error if the table cannot be read
 * at all. For `cairn check`. */
int table_verify(struct table *t, void (*fn)(void *ctx, uint64_t off, const char *what), void *ctx);

/* Reads every data block whose checksum and format hold and passes each of
 * its entries to entry (a nonzero return stops and is returned); each block
 * that cannot be read goes to lost with its byte range and a message naming
 * the file and offset. *entries counts the entries passed. For `cairn
 * repair`. Errors: CAIRN_ENOMEM, or entry's. */
struct table_salvage_cb {
	int (*entry)(void *ctx, struct slice ikey, struct slice ival);
	void (*lost)(void *ctx, uint64_t off, uint64_t len, const char *what);
	void *ctx;
};
int table_salvage(struct table *t, struct table_salvage_cb *cb, uint64_t *entries);
/* The same for a table whose footer or index cannot be read (cut short, grown,
 * damaged at its end): data blocks start at offset 0 with no gaps, so each
 * is found by its checksum, up to the first byte range that holds no whole
 * block (reported lost) or the first block that is not data (the filter,
 * index or properties). f stays the caller's. */
int table_salvage_raw(struct env_file *f, const char *path, uint64_t size,
                      struct table_salvage_cb *cb, uint64_t *entries);

/* Prints the table's footer, properties, index and entries, one line each,
 * through fn. For `cairn dump`. A damaged block is printed as an error line
 * and the dump goes on; it then returns CAIRN_ECORRUPT at the end. */
int table_dump(struct table *t, void (*fn)(void *ctx, const char *line), void *ctx);

/* ---- the table cache: open tables by file number, bounded ---- */

struct table_cache;

int tcache_new(struct cairn_env *env, const char *dbdir, int max_open, struct cache *block_cache,
               struct table_read_stats *stats, struct table_cache **tcp);
void tcache_free(struct table_cache *tc);
/* Looks up (opening if needed) table x->number of x->size bytes; on success
 * *t is pinned until tcache_release(tc, *h). A table is checked against x
 * (table_check_expect) when it is opened, before it is cached. */
int tcache_get(struct table_cache *tc, const struct table_expect *x, struct table **t,
               struct cache_handle **h, char *err, size_t errlen);
void tcache_release(struct table_cache *tc, struct cache_handle *h);
/* An iterator over a table that pins it while the iterator lives; on error an
 * iterator whose status is the error, whose message goes to the error hook. */
struct iter *tcache_iter(struct table_cache *tc, const struct table_expect *x);
/* point lookup through the cache, as table_get */
int tcache_table_get(struct table_cache *tc, const struct table_expect *x, struct slice ikey,
                     struct buf *found_key, struct buf *found_val, char *err, size_t errlen);
/* Calls fn(ctx, code, message) when tcache_iter cannot open a table: an
 * iterator has only a status code, and the message names the file. */
void tcache_set_error_hook(struct table_cache *tc, void (*fn)(void *ctx, int code, const char *msg),
                           void *ctx);
/* Forgets a table whose file is being deleted. */
void tcache_evict(struct table_cache *tc, uint64_t number);
void tcache_counters(struct table_cache *tc, uint64_t *hits, uint64_t *misses, uint64_t *open);

/* The file name of table number in dbdir: "dbdir/000123.sst". */
void table_file_name(char *out, size_t len, const char *dbdir, uint64_t number);

#endif
