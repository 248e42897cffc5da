/*
 * extent.h - how cairnfs stores a large file: fixed-size extents.
 *
 * A file up to inline_max bytes (-o inline_max, default 1 MiB) is one value,
 * the key PATH, so embedding programs see it as an ordinary key. A larger
 * file is split into EXT_SIZE pieces, each the value of its own key
 *
 *   "\0d" ID INDEX      ID and INDEX 8 bytes each, big-endian
 *
 * where ID is the file's extent id (kept in its metadata record, meta.h,
 * version 2, with the file size) and INDEX the piece's number: piece i holds
 * bytes [i * EXT_SIZE, i * EXT_SIZE + its length) of the file. A piece never
 * holds bytes at or past the file size; a missing piece below the size reads
 * as zeros (a hole). Keys are named by id, not path, so a rename moves only
 * the record. A commit rewrites only the pieces its buffered writes touch:
 * a random write into a large file costs one piece, never the file.
 *
 * This module is the pure part: key bytes and which pieces a commit of a
 * write buffer must rewrite. Nothing here touches the database.
 */
#ifndef CAIRNFS_EXTENT_H
#define CAIRNFS_EXTENT_H

#include <stddef.h>
#include <stdint.h>

#include "meta.h"
#include "pathkey.h"
#include "wbuf.h"

/* Bytes per piece. At the engine's blob threshold (64 KiB) a full piece
 * lives in a blob file and only its reference in the tree. */
#define EXT_SIZE ((uint64_t)64 * 1024)
/* Largest file cairnfs stores: 2^63 - 1 bytes, as the kernel allows. */
#define EXT_MAX_FILE META_SIZE_MAX
#define EXT_KEY_LEN  18
#define EXT_PFX_LEN  10

/* Writes the key of piece idx of file id into out (EXT_KEY_LEN bytes). */
void ext_key(uint64_t id, uint64_t idx, char *out);
/* Writes the prefix shared by the pieces of file id (EXT_PFX_LEN bytes). */
void ext_prefix(uint64_t id, char *out);
/* Reads a piece key: 0, or -1 when the key is not one. */
int ext_key_decode(const void *key, size_t klen, uint64_t *id, uint64_t *idx);

/* Number of pieces of a file of the given size (the last may be short). */
uint64_t ext_count(uint64_t size);
/* Length of piece idx in a file of the given size (0 past the end). */
size_t ext_len(uint64_t size, uint64_t idx);

/* Calls fn(ctx, idx) once for each piece, in ascending order, that a commit
 * of w over committed content of base bytes must rewrite: the pieces below
 * ext_count(w->size) that a buffered write touches, that hold committed
 * bytes a truncation invalidated ([w->keep, min(base, w->size))), or that a
 * shrink cuts (the piece holding the new end when it shrank below base).
 * Pieces at or past ext_count(w->size) are not visited: the caller deletes
 * them. Stops at and returns the first nonzero fn result; returns -ENOMEM
 * when it cannot allocate its work list. */
int ext_each_dirty(const struct wbuf *w, uint64_t base, int (*fn)(void *ctx, uint64_t idx),
                   void *ctx);
/* The number of pieces ext_each_dirty() would visit: the cost of the next
 * commit, in pieces. Returns UINT64_MAX when it cannot allocate. */
uint64_t ext_dirty_count(const struct wbuf *w, uint64_t base);

#endif /* CAIRNFS_EXTENT_H */
