/*
 * control.c - the files under MOUNT/.cairn/: statistics to read and a
 * control file that takes commands.
 *
 * Each read-only file is rendered once when it is looked up (so one read(2)
 * loop sees one consistent snapshot of the counters) and served from that
 * buffer. All three statistics formats come from one table of fields, so
 * they always agree. "result" holds the outcome of the last command written
 * to "control": "ok CMD" or "error: WHY (ERRNO)". A failed command also
 * fails its write(2) (open=1: the file is direct-I/O) or, under the writeback
 * cache with open=0, the close(2) that sends the write (as EIO).
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cairnfs.h"
#include "selfpath.h"

static const char *const ctl_names[CTL_NFILES] = {
        [CTL_STATS] = "stats", [CTL_STATS_JSON] = "stats.json", [CTL_METRICS] = "metrics",
        [CTL_DBDIR] = "dbdir", [CTL_RESULT] = "result",         [CTL_CONTROL] = "control",
};

const char *ctl_name(int which)
{
	return which >= 0 && which < CTL_NFILES ? ctl_names[which] : "";
}

/* A growing output buffer; an allocation failure sticks in err. */
struct ctl_out {
	char *buf;
	size_t len, cap;
	int err;
};

static void ctl_printf(struct ctl_out *o, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (o->err)
		return;
	for (;;) {
		va_start(ap, fmt);
		n = vsnprintf(o->buf + o->len, o->cap - o->len, fmt, ap);
		va_end(ap);
		if (n < 0) {
			o->err = -EINVAL;
			return;
		}
		if ((size_t)n < o->cap - o->len) {
			o->len += (size_t)n;
			return;
		}
		size_t ncap = (o->cap + (size_t)n + 1) * 2;
		char *nb = realloc(o->buf, ncap);

		if (!nb) {
			o->err = -ENOMEM;
			return;
		}
		o->buf = nb;
		o->cap = ncap;
	}
}

struct ctl_field {
	const char *name;
	uint64_t value;
	int gauge;
	const char *help;
};

#define CTL_NFIELDS 80

/* Collects every figure shown, engine and daemon, in one order. */
static int ctl_fields(struct cairnfs *fs, struct ctl_field *f, struct cairn_stats *st)
{
	struct cairnfs_counters c;
	int n = 0, rc = cairn_stats_get(cairnfs_db(fs), st);

	if (rc)
		return -EIO;
	cairnfs_counters(fs, &c);
#define G(nm, v, h) f[n++] = (struct ctl_field){nm, (v), 1, h}
#define C(nm, v, h)                                                                                \
	f[n++] = (struct ctl_field)                                                                \
	{                                                                                          \
		nm, (v), 0, h                                                                      \
	}
	G("last_sequence", st->last_sequence, "sequence number of the last write");
	C("puts", st->puts, "puts applied");
	C("deletes", st->deletes, "deletes applied");
	C("batches", st->batches, "write batches applied");
	C("gets", st->gets, "point reads");
	C("gets_found", st->gets_found, "point reads that found a value");
	C("iterators", st->iterators, "iterators created");
	C("user_bytes_written", st->user_bytes_written, "key and value bytes submitted");
	C("wal_bytes_written", st->wal_bytes_written, "bytes appended to the log");
	C("wal_syncs", st->wal_syncs, "log syncs");
	C("wal_group_commits", st->wal_group_commits, "writes that shared a log write");
	C("wal_bytes_dropped", st->wal_bytes_dropped, "log bytes dropped by recovery");
	G("memtable_bytes", st->memtable_bytes, "bytes in memtables");
	G("memtable_limit", st->memtable_limit, "memtable size limit");
	G("block_cache_bytes", st->block_cache_bytes, "bytes in the block cache");
	G("block_cache_capacity", st->block_cache_capacity, "block cache capacity");
	G("open_tables", st->open_tables, "open table files");
	G("max_open_tables", st->max_open_tables, "table cache capacity");
	G("memory_in_use", st->memory_in_use, "engine buffer bytes");
	C("block_cache_hits", st->block_cache_hits, "block cache hits");
	C("block_cache_misses", st->block_cache_misses, "block cache misses");
	C("table_cache_hits", st->table_cache_hits, "table cache hits");
	C("table_cache_misses", st->table_cache_misses, "table cache misses");
	C("bloom_checks", st->bloom_checks, "bloom filter checks");
	C("bloom_negatives", st->bloom_negatives, "bloom filter negatives");
	C("bloom_false_positives", st->bloom_false_positives, "bloom false positives");
	C("flushes", st->flushes, "memtable flushes");
	C("flush_bytes_written", st->flush_bytes_written, "bytes written by flushes");
	C("compactions", st->compactions, "compactions");
	C("compaction_bytes_read", st->compaction_bytes_read, "bytes read by compactions");
	C("compaction_bytes_written", st->compaction_bytes_written, "bytes written by compactions");
	G("pending_compaction_bytes", st->pending_compaction_bytes, "bytes awaiting compaction");
	C("slowdowns", st->slowdowns, "writes slowed");
	C("slowdown_micros", st->slowdown_micros, "microseconds writes were slowed");
	C("stops", st->stops, "writes stopped");
	C("stop_micros", st->stop_micros, "microseconds writes were stopped");
	G("table_bytes", st->table_bytes, "bytes in table files");
	G("wal_bytes", st->wal_bytes, "bytes in log files");
	G("total_disk_bytes", st->total_disk_bytes, "bytes on disk");
	G("blob_files", st->blob_files, "blob files");
	G("blob_bytes_live", st->blob_bytes_live, "bytes of live values in blob files");
	G("blob_bytes_garbage", st->blob_bytes_garbage, "bytes of dead values in blob files");
	C("blob_collections", st->blob_collections, "blob files collected");
	C("blob_bytes_moved", st->blob_bytes_moved, "live bytes moved by blob collection");
	G("reserve_bytes", st->reserve_bytes, "bytes held in the space reserve (0: given up)");
	C("reserve_releases", st->reserve_releases, "times the space reserve was given up");
	C("reserve_restores", st->reserve_restores, "times the space reserve was written again");
	C("fs_commits", c.commits, "cairnfs write-buffer commits");
	C("fs_commit_bytes", c.commit_bytes, "value bytes written by commits");
	C("fs_fsyncs", c.fsyncs, "fsync and fsyncdir requests");
	C("fs_hidden_keys", c.hidden_keys, "keys seen that cannot be shown as paths");
	C("fs_bad_records", c.bad_records, "metadata records that cannot be decoded (EIO)");
	G("fs_inodes", c.nodes, "inodes the kernel holds");
	G("fs_buffered_bytes", c.buffered_bytes, "bytes in write buffers");
	G("fs_node_bytes", c.node_bytes, "bytes of the node table");
	G("fs_listing_bytes", c.listing_bytes, "bytes of listings kept");
	G("fs_buffers_in_use_bytes", c.buffers_in_use, "bytes of request buffers in use");
	G("fs_buffers_cached_bytes", c.buffers_cached, "bytes of idle request buffers kept");
	G("fs_buffers_cached_limit", c.buffers_limit, "most bytes of idle buffers kept");
	C("fs_buffers_mapped", c.buffers_maps, "request buffers mapped from the kernel");
	C("fs_buffers_reused", c.buffers_reused, "request buffers reused");
	G("process_rss_bytes", c.rss_bytes, "resident memory of the cairnfs process");
#undef G
#undef C
	return n;
}

static void ctl_text(struct ctl_out *o, const struct ctl_field *f, int n,
                     const struct cairn_stats *st)
{
	for (int i = 0; i < n; i++)
		ctl_printf(o, "%-26s %llu\n", f[i].name, (unsigned long long)f[i].value);
	ctl_printf(o, "%-26s %.3f\n", "write_amp", cairn_stats_write_amp(st));
	ctl_printf(o, "level      files        bytes  compactions\n");
	for (int l = 0; l < st->num_levels && l < CAIRN_MAX_LEVELS; l++)
		ctl_printf(o, "%5d %10llu %12llu %12llu\n", l,
		           (unsigned long long)st->levels[l].files,
		           (unsigned long long)st->levels[l].bytes,
		           (unsigned long long)st->levels[l].compactions);
}

static void ctl_json(struct ctl_out *o, const struct ctl_field *f, int n,
                     const struct cairn_stats *st)
{
	ctl_printf(o, "{\n");
	for (int i = 0; i < n; i++)
		ctl_printf(o, "  \"%s\": %llu,\n", f[i].name, (unsigned long long)f[i].value);
	ctl_printf(o, "  \"write_amp\": %.6f,\n  \"levels\": [", cairn_stats_write_amp(st));
	for (int l = 0; l < st->num_levels && l < CAIRN_MAX_LEVELS; l++)
		ctl_printf(o,
		           "%s\n    {\"level\": %d, \"files\": %llu, \"bytes\": %llu, "
		           "\"compactions\": %llu, \"bytes_read\": %llu, \"bytes_written\": %llu}",
		           l ? "," : "", l, (unsigned long long)st->levels[l].files,
		           (unsigned long long)st->levels[l].bytes,
		           (unsigned long long)st->levels[l].compactions,
		           (unsigned long long)st->levels[l].bytes_read,
		           (unsigned long long)st->levels[l].bytes_written);
	ctl_printf(o, "\n  ]\n}\n");
}

static void ctl_prom(struct ctl_out *o, const struct ctl_field *f, int n,
                     const struct cairn_stats *st)
{
	static const char *const lv[] = {"files", "bytes", "compactions"};

	for (int i = 0; i < n; i++) {
		const char *sfx = f[i].gauge ? "" : "_total";

		ctl_printf(o, "# HELP cairn_%s%s %s\n# TYPE cairn_%s%s %s\ncairn_%s%s %llu\n",
		           f[i].name, sfx, f[i].help, f[i].name, sfx,
		           f[i].gauge ? "gauge" : "counter", f[i].name, sfx,
		           (unsigned long long)f[i].value);
	}
	ctl_printf(o,
	           "# HELP cairn_write_amp bytes written to disk per user byte\n"
	           "# TYPE cairn_write_amp gauge\ncairn_write_amp %.6f\n",
	           cairn_stats_write_amp(st));
	for (int k = 0; k < 3; k++) {
		ctl_printf(o, "# HELP cairn_level_%s level %s\n# TYPE cairn_level_%s gauge\n",
		           lv[k], lv[k], lv[k]);
		for (int l = 0; l < st->num_levels && l < CAIRN_MAX_LEVELS; l++) {
			uint64_t v = k == 0   ? st->levels[l].files
			             : k == 1 ? st->levels[l].bytes
			                      : st->levels[l].compactions;

			ctl_printf(o, "cairn_level_%s{level=\"%d\"} %llu\n", lv[k], l,
			           (unsigned long long)v);
		}
	}
}

int ctl_render(struct cairnfs *fs, int which, char **out, size_t *len)
{
	struct ctl_field f[CTL_NFIELDS];
	struct ctl_out o = {0};
	struct cairn_stats st;
	int n = 0;

	if (which == CTL_DBDIR) {
		ctl_printf(&o, "%s\n", cairnfs_dbdir(fs));
	} else if (which == CTL_RESULT) {
		char res[CAIRNFS_RESULT_MAX];

		cairnfs_get_result(fs, res, sizeof(res));
		ctl_printf(&o, "%s", res);
	} else if (which == CTL_CONTROL) {
		ctl_printf(&o, "%s", "");
	} else {
		n = ctl_fields(fs, f, &st);
		if (n < 0)
			return n;
		if (which == CTL_STATS)
			ctl_text(&o, f, n, &st);
		else if (which == CTL_STATS_JSON)
			ctl_json(&o, f, n, &st);
		else
			ctl_prom(&o, f, n, &st);
	}
	if (!o.err && !o.buf)
		o.buf = calloc(1, 1);
	if (o.err || !o.buf) {
		free(o.buf);
		return o.err ? o.err : -ENOMEM;
	}
	*out = o.buf;
	*len = o.len;
	return 0;
}

/* A command's outcome: its errno and, on failure, why in words. */
struct ctl_res {
	char msg[CAIRNFS_RESULT_MAX];
};

static const char *ctl_errname(int err)
{
	switch (err) {
	case EINVAL:
		return "EINVAL";
	case EEXIST:
		return "EEXIST";
	case ENOSPC:
		return "ENOSPC";
	case EROFS:
		return "EROFS";
	case ENOMEM:
		return "ENOMEM";
	case EFBIG:
		return "EFBIG";
	default:
		return "EIO";
	}
}

/* Copies at most 64 bytes of a command into out (65 bytes) for a message,
 * unprintable bytes as '?'. */
static void ctl_quote(const char *cmd, size_t len, char *out)
{
	size_t n = len < 64 ? len : 64;

	for (size_t i = 0; i < n; i++)
		out[i] = cmd[i] >= 0x20 && cmd[i] < 0x7f ? cmd[i] : '?';
	out[n] = '\0';
}

/* Records a failure; returns -err. */
static int ctl_fail(struct ctl_res *r, int err, const char *fmt, ...)
{
	char why[CAIRNFS_RESULT_MAX - 32];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(why, sizeof(why), fmt, ap);
	va_end(ap);
	snprintf(r->msg, sizeof(r->msg), "error: %s (%s)\n", why, ctl_errname(err));
	return -err;
}

/* The result of an engine call made for command what. */
static int ctl_engine(struct cairnfs *fs, struct ctl_res *r, const char *what, int rc)
{
	char emsg[256];
	int err;

	if (rc == CAIRN_OK)
		return 0;
	switch (rc) {
	case CAIRN_EINVAL:
		err = EINVAL;
		break;
	case CAIRN_EEXIST:
		err = EEXIST;
		break;
	case CAIRN_ENOSPC:
		err = ENOSPC;
		break;
	case CAIRN_EREADONLY:
		err = EROFS;
		break;
	default:
		err = EIO;
	}
	emsg[0] = '\0';
	cairn_errmsg(cairnfs_db(fs), emsg, sizeof(emsg));
	return ctl_fail(r, err, "%s: %s", what, emsg[0] ? emsg : cairn_strerror(rc));
}

/* Commits every buffered write before a command that needs them. */
static int ctl_commit(struct cairnfs *fs, struct ctl_res *r, const char *what)
{
	int rc = cairnfs_commit_all(fs);

	return rc ? ctl_fail(r, -rc, "%s: committing buffered writes: %s", what, strerror(-rc)) : 0;
}

/* Refuses a checkpoint into this very mount: its files would be written
 * through the daemon, whose requests wait for the engine the checkpoint
 * holds, and the daemon would stop (selfpath.h). */
static int ctl_outside_mount(struct cairnfs *fs, struct ctl_res *r, const char *path, const char *q)
{
	const char *mnt = cairnfs_mountpoint(fs);
	struct sp_points pts;
	int rc;

	if (!mnt)
		return 0;
	rc = sp_points_load("/proc/self/mountinfo", mnt, &pts);
	if (rc)
		return ctl_fail(r, -rc, "checkpoint: reading the mount table: %s", strerror(-rc));
	rc = sp_path_inside(path, &pts);
	sp_points_free(&pts);
	if (rc == 1)
		return ctl_fail(r, EINVAL,
		                "checkpoint target '%s' is inside this mount (%s): the daemon "
		                "cannot write into its own mount; choose a directory outside it",
		                q, mnt);
	if (rc < 0)
		return ctl_fail(r, -rc, "checkpoint target '%s': %s", q, strerror(-rc));
	return 0;
}

/* Runs one command line (without its newline). */
static int ctl_run(struct cairnfs *fs, struct ctl_res *r, const char *cmd, size_t len)
{
	struct cairn_db *db = cairnfs_db(fs);
	char path[4096], q[65];
	int rc;

	if (len == 5 && !memcmp(cmd, "flush", 5)) {
		rc = ctl_commit(fs, r, "flush");
		return rc ? rc : ctl_engine(fs, r, "flush", cairn_flush(db));
	}
	if (len == 4 && !memcmp(cmd, "sync", 4)) {
		rc = ctl_commit(fs, r, "sync");
		return rc ? rc : ctl_engine(fs, r, "sync", cairn_sync(db));
	}
	if (len == 7 && !memcmp(cmd, "compact", 7)) {
		rc = ctl_commit(fs, r, "compact");
		return rc ? rc
		          : ctl_engine(fs, r, "compact", cairn_compact_range(db, NULL, 0, NULL, 0));
	}
	if (len > 11 && !memcmp(cmd, "checkpoint ", 11)) {
		len -= 11;
		cmd += 11;
		ctl_quote(cmd, len, q);
		/* the daemon's working directory is "/": only absolute paths */
		if (cmd[0] != '/' || memchr(cmd, '\0', len))
			return ctl_fail(r, EINVAL, "checkpoint needs an absolute path: '%s'", q);
		if (len >= sizeof(path))
			return ctl_fail(r, EINVAL, "checkpoint path too long: '%s...'", q);
		memcpy(path, cmd, len);
		path[len] = '\0';
		rc = ctl_outside_mount(fs, r, path, q);
		if (!rc)
			rc = ctl_commit(fs, r, "checkpoint");
		return rc ? rc : ctl_engine(fs, r, "checkpoint", cairn_checkpoint(db, path));
	}
	ctl_quote(cmd, len, q);
	return ctl_fail(r, EINVAL, "unknown command '%s%s'", q, len > 64 ? "..." : "");
}

int ctl_command(struct cairnfs *fs, const char *buf, size_t len)
{
	struct ctl_res r;
	size_t start = 0;
	int rc = 0, ran = 0;

	/* one command per line; blank lines and surrounding blanks are ignored */
	while (start < len && !rc) {
		const char *nl = memchr(buf + start, '\n', len - start);
		size_t end = nl ? (size_t)(nl - buf) : len;
		size_t s = start, e = end;

		while (s < e && (buf[s] == ' ' || buf[s] == '\t' || buf[s] == '\r'))
			s++;
		while (e > s && (buf[e - 1] == ' ' || buf[e - 1] == '\t' || buf[e - 1] == '\r'))
			e--;
		if (e > s) {
			char q[65];

			ran = 1;
			rc = ctl_run(fs, &r, buf + s, e - s);
			if (!rc) {
				ctl_quote(buf + s, e - s, q);
				snprintf(r.msg, sizeof(r.msg), "ok %s\n", q);
			}
		}
		start = end + 1;
	}
	if (ran)
		cairnfs_set_result(fs, r.msg);
	return rc;
}
