/*
 * memtable.h - the in-memory ordered table that takes every write first.
 *
 * A skiplist of internal keys in an arena. One writer at a time inserts (the
 * group-commit leader); any number of readers search and iterate at the same
 * time without locks: nodes are published with release stores and read with
 * acquire loads, and nothing is ever removed or moved until the whole table
 * is freed. Memory comes from the arena in blocks; mem_usage() is what the
 * engine compares with the memtable_size option.
 *
 * Reference counted: the engine, each iterator and each flush hold a ref.
 */
#ifndef CAIRN_MEMTABLE_H
#define CAIRN_MEMTABLE_H

#include <stddef.h>
#include <stdint.h>

#include "dbformat.h"
#include "iter.h"

struct memtable;

int mem_new(struct memtable **mp);
void mem_ref(struct memtable *m);
void mem_unref(struct memtable *m); /* frees at zero */

/* Inserts one entry. The caller serialises writers; a (key, seq) already
 * present (only a damaged log replayed by recovery can repeat one) is
 * refused with CAIRN_ECORRUPT. Copies key and value into the arena.
 * Errors: CAIRN_ENOMEM, CAIRN_ECORRUPT. */
int mem_add(struct memtable *m, uint64_t seq, enum value_type type, struct slice key,
            int64_t time_ns, struct slice value);

enum mem_get_result {
	MEM_ABSENT = 0,  /* no version of key visible at seq */
	MEM_FOUND = 1,   /* *ival is the internal value (time + value) */
	MEM_DELETED = 2, /* the newest visible version is a tombstone */
	MEM_BLOB = 3,    /* *ival is time + a blob reference (TYPE_BLOB) */
};
/* Looks up the newest version of key with sequence <= seq. *ival points into
 * the arena and stays valid while the caller holds a ref. *found_seq gets
 * the entry's sequence number (may be NULL). */
enum mem_get_result mem_get(struct memtable *m, struct slice key, uint64_t seq, struct slice *ival,
                            uint64_t *found_seq);

/* Bytes of arena in use (what the memtable costs). */
size_t mem_usage(const struct memtable *m);
uint64_t mem_entries(const struct memtable *m);

/* An iterator over all entries (internal keys, internal values). Takes a
 * ref on m, dropped when the iterator is freed. NULL on ENOMEM. */
struct iter *mem_iter_new(struct memtable *m);

#endif
