/*
 * reserve.h - the space reserve: a preallocated file (RESERVE) in the
 * database directory, given up when the disk is full so that the work that
 * frees space (deletes, flush, compaction, blob collection, the manifest
 * writes of open) can go on, and written again once space is back. The
 * policy is in docs/design.md ("Full disk and failing disks").
 *
 * Every function runs with db->mu held (or before other threads exist).
 */
#ifndef CAIRN_RESERVE_H
#define CAIRN_RESERVE_H

#include "db.h"

/* The reserve file's name inside the database directory. */
#define RESERVE_FILE "RESERVE"

/* Open of a writable handle: keeps RESERVE if it has the configured size,
 * else writes it (or removes it when space_reserve is 0). A disk too full
 * to hold it leaves the reserve given up; that is no error. */
void reserve_open(struct cairn_db *db);

/* Gives the reserve up (unlinks RESERVE) so that work that frees space
 * can use its room. Returns 1 if a reserve was given up, 0 if none was
 * held. Marks the database short of space. */
int reserve_release(struct cairn_db *db);

/* Tries to write the reserve again when it is given up. Returns 1 if the
 * reserve is held now. */
int reserve_restore(struct cairn_db *db);

/* Whether a write of b may go on: always while the reserve is held (or
 * none is configured), and for a batch that frees space (reserve_frees);
 * otherwise only if the reserve could be written again. */
int reserve_admits(struct cairn_db *db, const struct cairn_batch *b);

/* 1 if b is a write that frees space: at least one delete, and puts of at
 * most RESERVE_PUT_SLACK bytes of keys and values in all (the metadata a
 * removal carries, such as a directory's times), no copies. */
#define RESERVE_PUT_SLACK (64u * 1024)
int reserve_frees(const struct cairn_batch *b);

#endif
