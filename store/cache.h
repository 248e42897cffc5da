/*
 * cache.h - a bounded LRU cache with reference-counted handles, used for the
 * block cache (uncompressed table blocks) and the table cache (open tables).
 *
 * Entries are charged against a capacity; when an insert goes over it, the
 * least recently used entries that no caller holds are evicted. An entry that
 * is still held when evicted or erased stays alive until its last handle is
 * released, then its deleter runs. Sharded by key hash (16 shards) so that
 * concurrent readers rarely meet on one lock. Thread-safe.
 */
#ifndef CAIRN_CACHE_H
#define CAIRN_CACHE_H

#include <stddef.h>
#include <stdint.h>

#include "util.h"

struct cache;
struct cache_handle;

/* capacity in charge units (bytes for the block cache, tables for the
 * table cache). Capacity 0 caches nothing: inserts return a handle that is
 * freed on release. */
int cache_new(size_t capacity, struct cache **cp);
void cache_free(struct cache *c);

/* Inserts key -> value with charge, replacing an older entry of the same key,
 * and returns a held handle (release it). deleter(key, value) runs when the
 * entry is gone and unheld. Returns NULL on ENOMEM (deleter has then run). */
struct cache_handle *cache_insert(struct cache *c, struct slice key, void *value, size_t charge,
                                  void (*deleter)(struct slice key, void *value));
/* Returns a held handle, or NULL on a miss. Counts hits and misses. */
struct cache_handle *cache_lookup(struct cache *c, struct slice key);
void *cache_value(struct cache_handle *h);
void cache_release(struct cache *c, struct cache_handle *h);
/* Drops key from the cache (its value lives on while held). */
void cache_erase(struct cache *c, struct slice key);
/* A fresh id, for building keys unique to one owner (a table's blocks). */
uint64_t cache_new_id(struct cache *c);

size_t cache_usage(struct cache *c);
size_t cache_capacity(const struct cache *c);
size_t cache_entries(struct cache *c);
void cache_counters(struct cache *c, uint64_t *hits, uint64_t *misses);

#endif
