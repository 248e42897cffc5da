/*
 * logscan.c - judging the write-ahead logs before recovery acts (logscan.h).
 */
#include "logscan.h"

#include "batch.h"
#include "cairn.h"
#include "wal.h"

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

/* Judges one record that the log format accepted. Returns 0 (accepted or
 * judged: l->corrupt, l->torn), or an I/O error. */
static int judge_record(struct logscan_log *l, const char *path, struct slice rec, uint64_t off,
                        logscan_ref_fn ref, void *ctx, char *err, size_t errlen)
{
	uint32_t entries = 0;
	if (rec.len < BATCH_HEADER || batch_iterate(rec, count_entry, &entries) || entries == 0) {
		fmt_msg(err, errlen, "log '%s': record at offset %llu is not a well-formed batch%s",
		        path, (unsigned long long)off,
		        rec.len >= BATCH_HEADER && entries == 0 ? " (no entries)" : "");
		damaged(l, off);
		return 0;
	}
	int lost = 0;
	if (ref) {
		char why[512] = "";
		int r = ref(ctx, rec, &lost, why, sizeof(why));
		if (r) {
			fmt_msg(err, errlen, "log '%s': record at offset %llu: %s", path,
			        (unsigned long long)off, why[0] ? why : cairn_strerror(r));
			if (r != CAIRN_ECORRUPT)
				return r;
			damaged(l, off);
			return 0;
		}
	}
	if (lost && l->newest && off >= l->strict_to) {
		/* its large values never reached the disk, so neither it nor
		 * anything after it was synced */
		l->torn = 1;
		return 0;
	}
	if (lost) {
		fmt_msg(err, errlen,
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
static void judge_end(struct logscan_log *l, const char *path, uint64_t off, int torn, char *err,
                      size_t errlen)
{
	if (off < l->strict_to) {
		fmt_msg(err, errlen,
		        "log '%s': its records end at offset %llu, but it was synced through "
		        "offset %llu at a clean close (log mark in the manifest): the log is "
		        "damaged or cut short",
		        path, (unsigned long long)off, (unsigned long long)l->strict_to);
		damaged(l, off);
	} else if (torn && off < 16 && !l->newest && l->size >= 16) {
		fmt_msg(err, errlen,
		        "log '%s': %llu bytes with no valid file header (zeros?) in a log that is "
		        "not the newest",
		        path, (unsigned long long)l->size);
		damaged(l, 0);
	} else if (torn && off >= 16 && !l->newest) {
		fmt_msg(err, errlen,
		        "log '%s': truncated record at offset %llu in a log that is not the newest",
		        path, (unsigned long long)off);
		damaged(l, off);
	} else if (torn && l->newest) {
		l->torn = 1;
	}
}

int logscan_one(struct cairn_env *env, const char *path, struct logscan_log *l, logscan_ref_fn ref,
                void *ctx, char *err, size_t errlen)
{
	struct wal_reader *rd;
	l->size = l->good = 0;
	l->records = l->torn = l->corrupt = 0;
	l->first_seq = l->last_seq = l->bad_offset = 0;
	env_file_size(env, path, &l->size);
	int r = wal_reader_open(env, path, WAL_KIND_LOG, &rd, err, errlen);
	if (r == CAIRN_ECORRUPT) {
		damaged(l, 0);
		return 0;
	}
	if (r)
		return r;
	while (!r && !l->corrupt && !l->torn) {
		struct slice rec;
		uint64_t off = wal_good_offset(rd);
		r = wal_next(rd, &rec, err, errlen);
		if (r == WAL_RECORD) {
			r = judge_record(l, path, rec, off, ref, ctx, err, errlen);
			if (!r && !l->corrupt && !l->torn)
				l->good = wal_good_offset(rd);
		} else if (r == WAL_EOF || r == WAL_TORN) {
			l->good = wal_good_offset(rd);
			judge_end(l, path, l->good, r == WAL_TORN, err, errlen);
			break;
		} else if (r == CAIRN_ECORRUPT) {
			damaged(l, off);
			r = 0;
		}
	}
	wal_reader_close(rd);
	return r < 0 ? r : 0;
}

int logscan_continues(const char *path_a, const struct logscan_log *a, const char *path_b,
                      const struct logscan_log *b, char *err, size_t errlen)
{
	if (!a->records || !b->records || b->first_seq == a->last_seq + 1)
		return 0;
	fmt_msg(err, errlen,
	        "log '%s' starts at sequence %llu, but the log before it, '%s', ends at %llu: "
	        "%s",
	        path_b, (unsigned long long)b->first_seq, path_a, (unsigned long long)a->last_seq,
	        b->first_seq > a->last_seq + 1
	                ? "writes between them are missing (a log lost or cut short)"
	                : "their sequence numbers overlap");
	return CAIRN_ECORRUPT;
}
