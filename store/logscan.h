/*
 * logscan.h - the one policy that says what the write-ahead logs found in a
 * database directory may hold, shared by open (db.c, before recovery changes
 * anything) and `cairn check` (inspect.c), so the two never disagree.
 *
 * A log is read whole without changing it, and judged:
 * - a torn last record is a write a crash cut short only in the newest log,
 *   and only past the offset a clean close marked as synced (the log mark);
 *   anywhere else it is damage;
 * - a log that is not the newest and holds 16 bytes or more with no valid
 *   file header (zeros: a log once written) is damage; a shorter one never
 *   took its header and held nothing;
 * - every record must be a well-formed batch of at least one entry;
 * - the first sequence number of each log must follow the last one of the
 *   log before it (a new log is only started after the old one is synced),
 *   so a missing log, or an older one cut at a record boundary, shows.
 */
#ifndef CAIRN_LOGSCAN_H
#define CAIRN_LOGSCAN_H

#include <stdint.h>

#include "env.h"
#include "util.h"

struct logscan_log {
	/* set by the caller */
	uint64_t number;
	int newest;         /* the highest-numbered log of the directory */
	uint64_t strict_to; /* the log mark's length for this log, else 0 */
	/* the verdict */
	uint64_t size;                /* file size when read */
	uint64_t good;                /* the records accepted end here */
	int records;                  /* batches accepted */
	uint64_t first_seq, last_seq; /* of the accepted batches */
	int torn;                     /* newest log: a torn tail from good on, to cut */
	int corrupt;                  /* damage at bad_offset; err says what */
	uint64_t bad_offset;
};

/* Checks the blob references of a record before it is accepted (the engine
 * passes one, check none): *lost says its large values never reached the
 * disk, which makes it a torn tail in the newest log. Returns 0, or an error
 * with err set (CAIRN_ECORRUPT: the record is damage). */
typedef int (*logscan_ref_fn)(void *ctx, struct slice rec, int *lost, char *err, size_t errlen);

/* Reads the log at path and fills in the verdict. Returns 0 when the log
 * could be judged (l->corrupt says whether it is damaged, err then names
 * the file and offset), or an I/O error with err set. */
int logscan_one(struct cairn_env *env, const char *path, struct logscan_log *l, logscan_ref_fn ref,
                void *ctx, char *err, size_t errlen);

/* Whether log b (scanned, the next log after a) continues a's sequence
 * numbers. Returns 0, or CAIRN_ECORRUPT with err naming both. */
int logscan_continues(const char *path_a, const struct logscan_log *a, const char *path_b,
                      const struct logscan_log *b, char *err, size_t errlen);

#endif
