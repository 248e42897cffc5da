/*
 * logscan.c - judging the write-ahead logs before recovery acts (logscan.h).
 */
#include "logscan.h"

#include <string.h>

#include "batch.h"
#include "cairn.h"
#include "version.h"
#include "wal.h"

/* ---- log notes ---- */

void logscan_note_encode(const struct log_note *n, char out[LOG_NOTE_SIZE])
{
	enc_fixed64(out, n->seq);
	enc_fixed32(out + 8, 0);
	enc_fixed64(out + 12, 0);
	out[20] = (char)n->kind;
	out[21] = (char)n->flags;
	enc_fixed64(out + 22, n->prev);
	enc_fixed64(out + 30, n->length);
	enc_fixed64(out + 38, n->synced);
}

int logscan_is_note(struct slice rec)
{
	return rec.len >= BATCH_HEADER && batch_count(rec) == 0;
}

int logscan_note_decode(struct slice rec, struct log_note *n)
{
	if (rec.len != LOG_NOTE_SIZE || batch_count(rec) != 0 || batch_time(rec) != 0)
		return CAIRN_ECORRUPT;
	const unsigned char *p = (const unsigned char *)rec.data;
	n->seq = batch_seq(rec);
	n->kind = p[20];
	n->flags = p[21];
	n->prev = dec_fixed64(rec.data + 22);
	n->length = dec_fixed64(rec.data + 30);
	n->synced = dec_fixed64(rec.data + 38);
	if ((n->kind != LOG_NOTE_START && n->kind != LOG_NOTE_SYNCED) ||
	    (n->flags & ~LOG_NOTE_HOLDS_WRITES) || n->synced > n->length)
		return CAIRN_ECORRUPT;
	if (!n->prev && (n->length || n->flags || n->kind != LOG_NOTE_START))
		return CAIRN_ECORRUPT;
	return 0;
}

/* ---- one log ---- */

static int count_entry(void *ctx, uint64_t seq, enum value_type type, struct slice key,
                       struct slice value, int64_t time_ns)
{
	(void)seq, (void)type, (void)key, (void)value, (void)time_ns;
	(*(uint32_t *)ctx)++;
	return 0;
}

static void damaged(struct logscan_log *l, uint64_t off)
{
	l->corrupt = 1;
	l->bad_offset = off;
}

/* Judges a note at off. Returns 1 if rec was one (accepted or damage). */
static int judge_note(struct logscan_log *l, const char *path, struct slice rec, uint64_t off)
{
	if (!logscan_is_note(rec))
		return 0;
	struct log_note n;
	int first = off == WAL_FILE_HEADER;
	if (l->version < 2 || logscan_note_decode(rec, &n)) {
		fmt_msg(l->why, sizeof(l->why),
		        "log '%s': record at offset %llu is not a well-formed batch (no entries)",
		        path, (unsigned long long)off);
		damaged(l, off);
	} else if (first != (n.kind == LOG_NOTE_START) ||
	           (n.kind == LOG_NOTE_SYNCED && (!l->has_start || n.prev != l->start.prev))) {
		fmt_msg(l->why, sizeof(l->why), "log '%s': log note at offset %llu is out of place",
		        path, (unsigned long long)off);
		damaged(l, off);
	} else if (first) {
		l->has_start = 1;
		l->start = n;
	} else {
		l->prev_synced = 1;
	}
	return 1;
}

/* Judges one record that the log format accepted. Returns 0 (accepted or
 * judged: l->corrupt, l->torn), or an I/O error. */
static int judge_record(struct logscan_log *l, const char *path, struct slice rec, uint64_t off,
                        logscan_ref_fn ref, void *ctx)
{
	if (judge_note(l, path, rec, off))
		return 0;
	if (l->version >= 2 && !l->has_start) {
		fmt_msg(l->why, sizeof(l->why),
		        "log '%s': a log of version %u must start with a start note", path,
		        l->version);
		damaged(l, off);
		return 0;
	}
	uint32_t entries = 0;
	if (rec.len < BATCH_HEADER || batch_iterate(rec, count_entry, &entries) || entries == 0) {
		fmt_msg(l->why, sizeof(l->why),
		        "log '%s': record at offset %llu is not a well-formed batch", path,
		        (unsigned long long)off);
		damaged(l, off);
		return 0;
	}
	int lost = 0;
	if (ref) {
		char why[512] = "";
		int r = ref(ctx, rec, &lost, why, sizeof(why));
		if (r) {
			fmt_msg(l->why, sizeof(l->why), "log '%s': record at offset %llu: %s", path,
			        (unsigned long long)off, why[0] ? why : cairn_strerror(r));
			if (r != CAIRN_ECORRUPT)
				return r;
			damaged(l, off);
			return 0;
		}
	}
	if (lost && l->may_tear && off >= l->strict_to) {
		/* its large values never reached the disk, so neither it nor
		 * anything after it was synced */
		l->torn = 1;
		return 0;
	}
	if (lost) {
		fmt_msg(l->why, sizeof(l->why),
		        "log '%s': record at offset %llu refers to large values that are not on "
		        "disk, in a part of the log that was synced",
		        path, (unsigned long long)off);
		damaged(l, off);
		return 0;
	}
	/* Within one log a gap is no proof of damage: writes lost in a crash
	 * leave one where a later open appends. */
	uint64_t seq = batch_seq(rec);
	if (!l->records)
		l->first_seq = seq;
	l->last_seq = seq + entries - 1;
	l->records++;
	return 0;
}

/* The log's records end at off (a torn record or the end of the file). */
static void judge_end(struct logscan_log *l, const char *path, uint64_t off, int torn)
{
	if (off < l->strict_to) {
		fmt_msg(l->why, sizeof(l->why),
		        "log '%s': its records end at offset %llu, but it was synced through "
		        "offset %llu (%s): the log is damaged or cut short",
		        path, (unsigned long long)off, (unsigned long long)l->strict_to,
		        l->strict_why ? l->strict_why : "");
		damaged(l, off);
	} else if (torn && off < 16 && !l->may_tear && l->size >= 16) {
		fmt_msg(l->why, sizeof(l->why),
		        "log '%s': %llu bytes with no valid file header (zeros?) in a log that is "
		        "not the newest",
		        path, (unsigned long long)l->size);
		damaged(l, 0);
	} else if (torn && off >= 16 && !l->may_tear) {
		fmt_msg(l->why, sizeof(l->why),
		        "log '%s': truncated record at offset %llu in a log that is not the newest",
		        path, (unsigned long long)off);
		damaged(l, off);
	} else if (torn && l->may_tear) {
		l->torn = 1;
	}
}

/* A record that fails its checksum at off: a hole power loss left where the
 * log may be torn ends it like a torn tail; anything else is damage.
 * Returns 0 or an I/O error. */
static int judge_bad(struct logscan_log *l, struct wal_reader *rd, const char *path, uint64_t off,
                     char *err, size_t errlen)
{
	int hole = 0;
	if (l->may_tear && off >= l->strict_to) {
		char ioerr[512] = "";
		hole = wal_bad_is_hole(rd, ioerr, sizeof(ioerr));
		if (hole < 0) {
			fmt_msg(err, errlen, "%s", ioerr);
			return hole;
		}
	}
	if (hole) {
		judge_end(l, path, off, 1);
		return 0;
	}
	damaged(l, off);
	return 0;
}

static void scan_reset(struct logscan_log *l)
{
	l->size = l->good = 0;
	l->version = 0;
	l->records = l->torn = l->corrupt = l->short_cut = 0;
	l->has_start = l->prev_synced = 0;
	memset(&l->start, 0, sizeof(l->start));
	l->first_seq = l->last_seq = l->bad_offset = 0;
	l->why[0] = 0;
}

int logscan_one(struct cairn_env *env, const char *path, struct logscan_log *l, logscan_ref_fn ref,
                void *ctx, char *err, size_t errlen)
{
	struct wal_reader *rd;
	scan_reset(l);
	env_file_size(env, path, &l->size);
	int r = wal_reader_open(env, path, WAL_KIND_LOG, &rd, l->why, sizeof(l->why));
	if (r == CAIRN_ECORRUPT) {
		damaged(l, 0);
		return 0;
	}
	if (r) {
		fmt_msg(err, errlen, "%s", l->why);
		return r;
	}
	l->version = wal_reader_version(rd);
	while (!r && !l->corrupt && !l->torn) {
		struct slice rec;
		uint64_t off = wal_good_offset(rd);
		r = wal_next(rd, &rec, l->why, sizeof(l->why));
		if (r == WAL_RECORD) {
			r = judge_record(l, path, rec, off, ref, ctx);
			if (!r && !l->corrupt && !l->torn)
				l->good = wal_good_offset(rd);
		} else if (r == WAL_EOF || r == WAL_TORN) {
			l->good = wal_good_offset(rd);
			judge_end(l, path, l->good, r == WAL_TORN);
			break;
		} else if (r == CAIRN_ECORRUPT) {
			r = judge_bad(l, rd, path, off, err, errlen);
			break;
		} else if (r < 0) {
			fmt_msg(err, errlen, "%s", l->why);
		}
	}
	wal_reader_close(rd);
	return r < 0 ? r : 0;
}

/* ---- every log ---- */

static void log_path(const struct logscan_set *s, uint64_t number, char *out, size_t n)
{
	log_file_name(out, n, s->dir, number);
}

/* Sets the policy of logs[k] from the mark and the next log's notes. */
static void set_policy(struct logscan_set *s, size_t k)
{
	struct logscan_log *l = &s->logs[k];
	const struct logscan_log *next = k + 1 < s->n ? &s->logs[k + 1] : NULL;
	l->strict_to = 0;
	l->strict_why = NULL;
	l->may_tear = l->newest;
	l->expect_len = 0;
	if (s->mark_set && s->mark_log == l->number) {
		l->strict_to = s->mark_length;
		l->strict_why = "log mark of a clean close in the manifest";
	}
	/* a next log that lost even its start note in a crash holds nothing
	 * synced: whatever this one lost, no later write survived it */
	if (next && !next->has_start && !next->records && next->good <= WAL_FILE_HEADER &&
	    next->version != 1)
		l->may_tear = 1;
	if (!next || !next->has_start || next->start.prev != l->number)
		return;
	/* the next log accounts for this one: it may have lost what was not
	 * synced when the next one was started (or since) */
	l->may_tear = 1;
	l->expect_len = next->start.length;
	uint64_t synced = next->prev_synced ? next->start.length : next->start.synced;
	if (synced > l->strict_to) {
		l->strict_to = synced;
		l->strict_why = next->prev_synced
		                        ? "the next log records that it was synced whole"
		                        : "the next log's start note records the synced length";
	}
}

/* Judges logs[k] against what the next log's start note says of it. */
static void judge_length(struct logscan_set *s, size_t k)
{
	struct logscan_log *l = &s->logs[k];
	char path[4096];
	if (l->corrupt || !l->expect_len)
		return;
	log_path(s, l->number, path, sizeof(path));
	if (l->good < l->expect_len) {
		l->short_cut = 1; /* strict_to held, so it was not synced there */
	} else if (l->good > l->expect_len) {
		fmt_msg(l->why, sizeof(l->why),
		        "log '%s': holds records past offset %llu, where the next log's start "
		        "note says it ended",
		        path, (unsigned long long)l->expect_len);
		damaged(l, l->expect_len);
	}
}

/* A gap before logs[k]: the log its start note names holding writes is
 * missing, or its sequence numbers do not follow the last log's with any. */
static int judge_gap(struct logscan_set *s, size_t k)
{
	struct logscan_log *l = &s->logs[k];
	char path[4096], other[4096];
	log_path(s, l->number, path, sizeof(path));
	const struct log_note *st = &l->start;
	if (l->has_start && st->prev >= s->min_log && (st->flags & LOG_NOTE_HOLDS_WRITES) &&
	    (k == 0 || s->logs[k - 1].number < st->prev)) {
		log_path(s, st->prev, other, sizeof(other));
		/* the manifest's log number came from a manifest that may have
		 * lost the edit that made the log obsolete */
		fmt_msg(l->why, sizeof(l->why),
		        "log '%s' is missing: the start note of '%s' records that it held writes, "
		        "%llu bytes (synced through %llu), and MANIFEST-%06llu still needs it",
		        other, path, (unsigned long long)st->length, (unsigned long long)st->synced,
		        (unsigned long long)s->manifest_number);
		s->missing = st->prev;
		return 1;
	}
	size_t before = k;
	while (before > 0 && !s->logs[before - 1].records)
		before--;
	const struct logscan_log *a = before ? &s->logs[before - 1] : NULL;
	if (!a || !l->records || l->first_seq == a->last_seq + 1)
		return 0;
	log_path(s, a->number, other, sizeof(other));
	fmt_msg(l->why, sizeof(l->why),
	        "log '%s' starts at sequence %llu, but the log before it, '%s', ends at %llu: "
	        "%s",
	        path, (unsigned long long)l->first_seq, other, (unsigned long long)a->last_seq,
	        l->first_seq > a->last_seq + 1
	                ? "writes between them are missing (a log lost or cut short)"
	                : "their sequence numbers overlap");
	return 1;
}

/* The log the manifest's log number names is missing while the manifest
 * counts writes past every table: they lived in it. */
static int judge_first_missing(struct logscan_set *s, char *err, size_t errlen)
{
	/* a log number not yet allocated (repair leaves one) names no file */
	if ((s->n && s->logs[0].number == s->min_log) || !s->min_log ||
	    s->min_log >= s->next_file || s->manifest_seq <= s->tables_seq)
		return 0;
	char path[4096];
	log_path(s, s->min_log, path, sizeof(path));
	fmt_msg(err, errlen,
	        "log '%s' is missing: MANIFEST-%06llu names it as the oldest log needed and "
	        "counts writes up to sequence %llu, but the tables hold only up to %llu",
	        path, (unsigned long long)s->manifest_number, (unsigned long long)s->manifest_seq,
	        (unsigned long long)s->tables_seq);
	s->missing = s->min_log;
	s->first_missing = 1;
	return 1;
}

static void set_damage(struct logscan_set *s, size_t k, int keep, char *err, size_t errlen)
{
	s->damaged = CAIRN_ECORRUPT;
	s->bad = k;
	s->keep_bad = keep;
	s->replay = keep ? k + 1 : k;
	fmt_msg(err, errlen, "%s", s->logs[k].why);
}

int logscan_all(struct cairn_env *env, struct logscan_set *s, logscan_ref_fn ref, void *ctx,
                char *err, size_t errlen)
{
	char path[4096];
	s->replay = s->n;
	s->bad = 0;
	s->damaged = s->keep_bad = s->cut = 0;
	s->missing = 0;
	s->first_missing = 0;
	/* newest first: a log's policy comes from the log after it */
	for (size_t k = s->n; k-- > 0;) {
		set_policy(s, k);
		log_path(s, s->logs[k].number, path, sizeof(path));
		int r = logscan_one(env, path, &s->logs[k], ref, ctx, err, errlen);
		if (r)
			return r;
		judge_length(s, k);
	}
	if (judge_first_missing(s, err, errlen)) {
		s->damaged = CAIRN_ECORRUPT;
		s->replay = 0;
		return 0;
	}
	/* the first trouble in log order decides */
	for (size_t k = 0; k < s->n; k++) {
		struct logscan_log *l = &s->logs[k];
		if (judge_gap(s, k)) {
			set_damage(s, k, 0, err, errlen);
			return 0;
		}
		if (l->corrupt) {
			set_damage(s, k, 1, err, errlen);
			return 0;
		}
		if (l->short_cut) {
			/* nothing after it was synced: a crash's work, not damage */
			s->cut = 1;
			s->replay = k + 1;
			return 0;
		}
	}
	return 0;
}
