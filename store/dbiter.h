/*
 * dbiter.h - the database iterator: turns a merged internal iterator (keys
 * and values in dbformat.h form, from memtables and tables) into the public
 * struct cairn_iter of cairn.h.
 *
 * It shows one entry per user key, the newest one whose sequence number is
 * <= the snapshot's, hides keys whose newest visible entry is a tombstone,
 * and strips the write time from values (cairn_iter_info reports it). Both
 * directions work and can be mixed freely. A malformed internal key or value
 * ends the iteration with CAIRN_ECORRUPT; that error is sticky.
 */
#ifndef CAIRN_DBITER_H
#define CAIRN_DBITER_H

#include <stdint.h>

#include "dbformat.h"
#include "iter.h"
#include "util.h"

struct cairn_iter;

/* Makes a public iterator over internal (owned from now on, even on failure)
 * that sees entries with sequence <= seq. cairn_iter_free() frees internal
 * and then calls release(release_ctx) (when release is not NULL), so the
 * caller can drop what the internal iterator pinned. Returns NULL on
 * allocation failure, after freeing internal and calling release. */
struct cairn_iter *dbiter_new(struct iter *internal, uint64_t seq, void (*release)(void *ctx),
                              void *release_ctx);

/* Sets how cairn_iter_value reads an entry of type TYPE_BLOB: load fills
 * out with the whole value of key from its internal value ival, or returns
 * an error that cairn_iter_status reports until the iterator moves. Without
 * a loader such values read as CAIRN_ENOTSUP. */
void dbiter_set_blob_loader(struct cairn_iter *d,
                            int (*load)(void *ctx, struct slice key, struct slice ival,
                                        struct buf *out),
                            void *ctx);

/* The type and internal value (write time first) of the entry the
 * iterator is on: 1, or 0 when it is not valid. For the engine's own scans
 * (blob collection), which need a reference rather than the value. */
int dbiter_raw(const struct cairn_iter *d, enum value_type *type, struct slice *ival);

#endif
