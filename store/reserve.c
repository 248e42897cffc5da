/*
 * reserve.c - the space reserve (reserve.h).
 *
 * RESERVE holds space_reserve bytes of zeros written for real (never a
 * sparse file, which would hold no blocks). Its content is never read: only
 * its size matters. It is synced when written (with its directory entry),
 * so that it is there after a crash; one found short is written again at
 * open. Writing it takes mu for a few milliseconds; on a disk still full
 * the first append fails at once.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "reserve.h"

#define RESERVE_CHUNK (64u * 1024)

static void reserve_path(const struct cairn_db *db, char *out, size_t len)
{
	snprintf(out, len, "%s/%s", db->dir, RESERVE_FILE);
}

/* Writes RESERVE whole; on failure (a full disk, mostly) removes what was
 * written, so a reserve is either whole or absent. */
static int reserve_fill(struct cairn_db *db)
{
	char path[4096];
	struct env_file *f = NULL;
	uint64_t target = db->opts.space_reserve, done = 0;
	char *zeros = calloc(1, RESERVE_CHUNK);
	reserve_path(db, path, sizeof(path));
	int r = zeros ? env_open_write(db->env, path, &f) : CAIRN_ENOMEM;
	while (!r && done < target) {
		size_t n = target - done < RESERVE_CHUNK ? (size_t)(target - done) : RESERVE_CHUNK;
		r = env_append(f, zeros, n);
		done += n;
	}
	/* synced, so that a crash right after cannot leave it empty just when
	 * the recovery of a full disk needs its room */
	if (!r)
		r = env_sync(f);
	int cr = env_close(f);
	if (!r)
		r = cr;
	if (r && f)
		env_unlink(db->env, path);
	if (!r)
		r = env_sync_dir(db->env, db->dir);
	free(zeros);
	return r;
}

void reserve_open(struct cairn_db *db)
{
	char path[4096];
	uint64_t size = 0;
	reserve_path(db, path, sizeof(path));
	db->reserve_held = 0;
	if (db->opts.space_reserve == 0) {
		if (env_exists(db->env, path) == 1)
			env_unlink(db->env, path);
		return;
	}
	if (env_file_size(db->env, path, &size) == 0 && size == db->opts.space_reserve) {
		db->reserve_held = 1;
		return;
	}
	reserve_restore(db);
	if (!db->reserve_held)
		db_note_full(db);
}

int reserve_release(struct cairn_db *db)
{
	char path[4096];
	if (!db->reserve_held)
		return 0;
	reserve_path(db, path, sizeof(path));
	db->reserve_held = 0;
	db_note_full(db);
	db->reserve_releases++;
	if (env_unlink(db->env, path) && env_exists(db->env, path) != 0)
		return 0; /* still there: its room is not free */
	/* some file systems (and the simulated disk) free the blocks of an
	 * unlinked file only once the unlink is durable */
	env_sync_dir(db->env, db->dir);
	/* a flush or compaction waiting out the full disk may go on now */
	db->bg_nospace = 0;
	env_cond_broadcast(&db->work_cv);
	env_cond_broadcast(&db->bg_cv);
	return 1;
}

int reserve_restore(struct cairn_db *db)
{
	if (db->opts.space_reserve == 0 || db->opts.read_only || db->reserve_held)
		return 1;
	if (reserve_fill(db))
		return 0;
	db->reserve_held = 1;
	db->reserve_restores++;
	return 1;
}

struct frees_scan {
	uint64_t deletes, put_bytes;
	int copies;
};

static int frees_entry(void *ctx, uint64_t seq, enum value_type type, struct slice key,
                       struct slice value, int64_t time_ns)
{
	struct frees_scan *s = ctx;
	(void)seq;
	(void)time_ns;
	if (type == TYPE_DELETION)
		s->deletes++;
	else if (type == BATCH_TYPE_COPY)
		s->copies = 1;
	else
		s->put_bytes += key.len + value.len;
	return 0;
}

int reserve_frees(const struct cairn_batch *b)
{
	struct frees_scan s = {0};
	if (!b || b->count == 0 || b->ncopy)
		return 0;
	if (batch_iterate_user(b, frees_entry, &s))
		return 0;
	return s.deletes > 0 && !s.copies && s.put_bytes <= RESERVE_PUT_SLACK;
}

int reserve_admits(struct cairn_db *db, const struct cairn_batch *b)
{
	if (db->opts.space_reserve == 0 || db->reserve_held || (b && b->count == 0))
		return 1;
	/* tried at every such write, not once a second: on a disk that is
	 * still full the first append fails at once, and a write must work
	 * as soon as room is back, whoever freed it */
	return (b && reserve_frees(b)) || reserve_restore(db);
}
