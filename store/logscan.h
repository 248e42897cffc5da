/*
 * logscan.h - the one policy that says what the write-ahead logs found in a
 * database directory may hold, shared by open (db.c, before recovery changes
 * anything) and `cairn check` (inspect.c), so the two never disagree.
 *
 * A log is read whole without changing it, and judged:
 * - every record must be a well-formed batch of at least one entry, or (in
 *   a log of version 2) a log note: the start note that opens the log and
 *   accounts for the log before it, or a note that the log before it was
 *   synced whole;
 * - a log is strict (whole records, no torn tail, no hole) up to the length
 *   known synced: from the log mark of a clean close, or from the next log's
 *   notes (the length synced at the switch, or all of it once a note says
 *   it was synced since);
 * - past that, a torn tail (a cut record, a zero-filled tail, a record
 *   holding a zero-filled page that power loss left unwritten) is a crash's
 *   in the newest log and in a log whose successor says it was not synced
 *   whole; anywhere else it is damage. A checksum failure that is no hole,
 *   followed by more bytes, is damage everywhere;
 * - a log that the next log's start note says held more than it does was
 *   not synced (a crash kept the later log's bytes and lost its own): its
 *   good prefix is kept and every later log dropped, for nothing in them
 *   can have been acknowledged as synced (the engine syncs a log before the
 *   first sync of the next one);
 * - a log that the next log names as holding writes must exist, and must
 *   not hold records past the length named;
 * - the first sequence number of each log must follow the last one of the
 *   log before it, so a missing log, or one cut at a record boundary, shows
 *   in logs of version 1 too;
 * - the log the manifest's log number names must exist when the manifest
 *   counts writes that no table holds.
 */
#ifndef CAIRN_LOGSCAN_H
#define CAIRN_LOGSCAN_H

#include <stdint.h>

#include "env.h"
#include "util.h"

/* A log note: a record of a version-2 log that is a batch of no entries
 * followed by the note (docs/format.md, "Log notes"). */
enum log_note_kind {
	LOG_NOTE_START = 1,  /* first record of every version-2 log */
	LOG_NOTE_SYNCED = 2, /* the log before this one is synced whole */
};

#define LOG_NOTE_SIZE         46
#define LOG_NOTE_HOLDS_WRITES 1u /* flag: the previous log holds a batch */

struct log_note {
	int kind;
	unsigned flags;
	uint64_t seq;    /* start: the sequence number the log's first batch takes */
	uint64_t prev;   /* the previous log's number; 0: none */
	uint64_t length; /* its length when this log was started */
	uint64_t synced; /* how much of it was synced then (<= length) */
};

void logscan_note_encode(const struct log_note *n, char out[LOG_NOTE_SIZE]);
/* Whether record rec is a note (a batch header with no entries). */
int logscan_is_note(struct slice rec);
/* Decodes a note. Returns 0 or CAIRN_ECORRUPT. */
int logscan_note_decode(struct slice rec, struct log_note *n);

struct logscan_log {
	/* set by the caller */
	uint64_t number;
	int newest; /* the highest-numbered log of the directory */
	/* set by logscan_all from the log mark and the next log */
	uint64_t strict_to;     /* known synced up to here, else 0 */
	const char *strict_why; /* where strict_to comes from */
	int may_tear;           /* a crash may have torn it past strict_to */
	uint64_t expect_len;    /* the next log's start note length, else 0 */
	/* the verdict */
	uint64_t size;                /* file size when read */
	unsigned version;             /* of the file header, 0 if none */
	uint64_t good;                /* the records accepted end here */
	int records;                  /* batches accepted */
	uint64_t first_seq, last_seq; /* of the accepted batches */
	int has_start;                /* start is the log's start note */
	struct log_note start;
	int prev_synced; /* a note says the previous log is synced whole */
	int torn;        /* a crash's torn tail from good on, to cut */
	int short_cut;   /* shorter than the next log says and not synced */
	int corrupt;     /* damage at bad_offset; why says what */
	uint64_t bad_offset;
	char why[600];
};

/* Checks the blob references of a record before it is accepted (the engine
 * passes one, check none): *lost says its large values never reached the
 * disk, which makes it a torn tail in the newest log. Returns 0, or an error
 * with err set (CAIRN_ECORRUPT: the record is damage). */
typedef int (*logscan_ref_fn)(void *ctx, struct slice rec, int *lost, char *err, size_t errlen);

/* Every log of a directory at or above the manifest's log number. */
struct logscan_set {
	/* set by the caller */
	const char *dir;
	struct logscan_log *logs; /* numbers ascending, each >= min_log */
	size_t n;
	uint64_t min_log; /* the manifest's log number */
	int mark_set;     /* the manifest's log mark */
	uint64_t mark_log, mark_length, mark_seq;
	uint64_t manifest_seq;    /* the manifest's last sequence */
	uint64_t tables_seq;      /* the highest sequence in a live table */
	uint64_t next_file;       /* the manifest's next file number */
	uint64_t manifest_number; /* for messages */
	/* the verdict */
	size_t replay;     /* logs[0..replay) are replayed, each up to its good */
	size_t bad;        /* damage or a gap at logs[bad] when damaged */
	int damaged;       /* CAIRN_ECORRUPT: err (and logs[bad].why) says why */
	int keep_bad;      /* damaged: logs[bad]'s good prefix is replayable */
	int cut;           /* a crash lost the end of logs[replay - 1]: later logs dropped */
	uint64_t missing;  /* the number of a missing log, else 0 */
	int first_missing; /* it is the manifest's log number's (no log judged) */
};

/* Reads the log at path and fills in the verdict by the policy fields the
 * caller (or logscan_all) set. Returns 0 when the log could be judged
 * (l->corrupt says whether it is damaged, l->why then names the file and
 * offset), or an I/O error with err set. */
int logscan_one(struct cairn_env *env, const char *path, struct logscan_log *l, logscan_ref_fn ref,
                void *ctx, char *err, size_t errlen);

/* Judges every log of s, changing nothing. Returns 0 when they could be
 * judged (s->damaged says whether they hold damage, err then says which and
 * where), or an I/O error with err set. */
int logscan_all(struct cairn_env *env, struct logscan_set *s, logscan_ref_fn ref, void *ctx,
                char *err, size_t errlen);

#endif
