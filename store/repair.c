/*
 * repair.c - cairn_repair: rebuilds a database from whatever of its files can
 * still be read, when CURRENT or the manifest is lost or damaged, or a table,
 * log or blob file is.
 *
 * The old manifest is not trusted at all: every table, log and blob file in
 * the directory is read for what it holds. Tables that verify whole are read
 * as they are; from a damaged one every block that still checks is taken;
 * logs are replayed up to their first damage. All entries are merged by
 * sequence number (the newest version of a key wins, wherever it was found),
 * and the live ones are written as new tables on one level, so no assumption
 * about the old level layout (which may be what was lost) is needed. A new
 * manifest records them and the blob files their entries refer to.
 *
 * Nothing is deleted: every file replaced (CURRENT, the manifests, the logs,
 * the old tables, blob files no entry refers to) is moved into lost/ before
 * CURRENT names the new manifest, so a crash during repair leaves either the
 * old state or the new one, and a second repair can always run again.
 */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "blob.h"
#include "cairn.h"
#include "db.h"
#include "dbformat.h"
#include "env.h"
#include "logscan.h"
#include "memtable.h"
#include "sstable.h"
#include "util.h"
#include "version.h"
#include "wal.h"

#define RP_PATH 4096
#define RP_NAME 64

enum rp_kind { RP_OTHER, RP_CURRENT, RP_MANIFEST, RP_LOG, RP_TABLE, RP_BLOB };

struct rp_file {
	char name[RP_NAME];
	enum rp_kind kind;    /* by its name */
	enum rp_kind content; /* by its magic number; RP_OTHER: none */
	uint64_t number;
	uint64_t size;
	int damaged;
};

struct rp_blob {
	uint64_t number, size, live;
	int damaged, referenced;
	struct blob_reader *rd; /* NULL: the header cannot be read */
};

struct rp_output {
	uint64_t number, size, min_seq, max_seq, entries;
	struct buf smallest, largest;
};

struct repair {
	struct cairn_env *env;
	const char *dir;
	const struct cairn_options *opts;
	const struct cairn_repair_callbacks *cb;
	struct cairn_repair_report *rep;
	char *err;
	size_t errlen;

	struct rp_file *files;
	size_t nfiles, cap_files;
	uint64_t next_number;
	uint64_t max_seq;

	struct memtable *mem; /* entries of damaged tables and of logs */
	struct iter **its;    /* one per whole table, then mem */
	int nits;
	struct table **tables;
	int ntables;

	struct rp_blob *blobs;
	size_t nblobs;
	struct rp_output *outs;
	size_t nouts, cap_outs;
	uint64_t broken_notes;

	const char *cur_name; /* the file being read, for the lost callback */
	struct rp_file *cur_file;
};

static void rp_note(struct repair *rp, const char *file, uint64_t off, uint64_t len,
                    const char *fmt, ...) __attribute__((format(printf, 5, 6)));
static void rp_note(struct repair *rp, const char *file, uint64_t off, uint64_t len,
                    const char *fmt, ...)
{
	char what[768];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(what, sizeof(what), fmt, ap);
	va_end(ap);
	if (rp->cb && rp->cb->note)
		rp->cb->note(rp->cb->ctx, file, off, len, what);
}

static int rp_fail(struct repair *rp, int code, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));
static int rp_fail(struct repair *rp, int code, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	if (rp->err && rp->errlen)
		vsnprintf(rp->err, rp->errlen, fmt, ap);
	va_end(ap);
	return code;
}

static void rp_path(const struct repair *rp, const char *name, char *out, size_t len)
{
	fmt_msg(out, len, "%s/%s", rp->dir, name);
}

/* ---- listing ---------------------------------------------------------- */

static const char *kind_name(enum rp_kind k)
{
	static const char *names[] = {"file", "CURRENT", "manifest", "log", "table", "blob file"};
	return names[k];
}

static int parse_number(const char *s, const char *suffix, uint64_t *n)
{
	size_t digits = strspn(s, "0123456789");
	if (digits == 0 || digits > 19 || strcmp(s + digits, suffix) != 0)
		return 0;
	*n = strtoull(s, NULL, 10);
	return 1;
}

static enum rp_kind classify(const char *name, uint64_t *n)
{
	*n = 0;
	if (strcmp(name, "CURRENT") == 0 || strcmp(name, "CURRENT.tmp") == 0)
		return RP_CURRENT;
	if (strncmp(name, "MANIFEST-", 9) == 0 && parse_number(name + 9, "", n))
		return RP_MANIFEST;
	if (parse_number(name, ".log", n))
		return RP_LOG;
	if (parse_number(name, ".sst", n))
		return RP_TABLE;
	if (parse_number(name, ".blob", n))
		return RP_BLOB;
	/* LOCK, RESERVE (the space reserve, whose bytes mean nothing) and
	 * unknown names: left in place, neither read nor moved */
	return RP_OTHER;
}

static int collect(void *ctx, const char *name)
{
	struct repair *rp = ctx;
	uint64_t n;
	enum rp_kind k = classify(name, &n);
	if (k == RP_OTHER || strlen(name) >= RP_NAME)
		return 0;
	if (arr_room(&rp->files, &rp->cap_files, rp->nfiles, sizeof(*rp->files), 64))
		return CAIRN_ENOMEM;
	struct rp_file *f = &rp->files[rp->nfiles++];
	memset(f, 0, sizeof(*f));
	strcpy(f->name, name);
	f->kind = k;
	f->number = n;
	if (n >= rp->next_number)
		rp->next_number = n + 1;
	return 0;
}

/* Files in number order, so logs replay and notes print in a stable order. */
static int cmp_files(const void *a, const void *b)
{
	const struct rp_file *x = a, *y = b;
	if (x->kind != y->kind)
		return (int)x->kind - (int)y->kind;
	if (x->number != y->number)
		return x->number < y->number ? -1 : 1;
	return strcmp(x->name, y->name);
}

/* What a file holds by its magic number: a table ends in one, the other
 * kinds start with one. Files get swapped or renamed; their contents are
 * read for what they are. */
static int rp_sniff(struct repair *rp, struct rp_file *f)
{
	char path[RP_PATH], head[8], tail[8];
	struct env_file *fh = NULL;
	size_t got = 0;
	rp_path(rp, f->name, path, sizeof(path));
	f->content = RP_OTHER;
	int r = env_file_size(rp->env, path, &f->size);
	if (!r)
		r = env_open_read(rp->env, path, &fh);
	if (r)
		return rp_fail(rp, r, "cannot read '%s': %s", path, cairn_strerror(r));
	if (f->size >= 16 && !env_pread(fh, 0, head, 8, &got) && got == 8) {
		if (memcmp(head, "cairnlog", 8) == 0)
			f->content = RP_LOG;
		else if (memcmp(head, "cairnman", 8) == 0)
			f->content = RP_MANIFEST;
		else if (memcmp(head, "cairnblb", 8) == 0)
			f->content = RP_BLOB;
	}
	if (f->content == RP_OTHER && f->size >= 64 && !env_pread(fh, f->size - 8, tail, 8, &got) &&
	    got == 8 && memcmp(tail, "CAIRNSST", 8) == 0)
		f->content = RP_TABLE;
	env_close(fh);
	if (f->content != RP_OTHER && f->content != f->kind)
		rp_note(rp, f->name, 0, 0, "holds a %s", kind_name(f->content));
	return 0;
}

static int rp_list(struct repair *rp)
{
	int r = env_list_dir(rp->env, rp->dir, collect, rp);
	if (r)
		return rp_fail(rp, r, "cannot list '%s': %s", rp->dir, cairn_strerror(r));
	qsort(rp->files, rp->nfiles, sizeof(*rp->files), cmp_files);
	for (size_t i = 0; !r && i < rp->nfiles; i++)
		r = rp_sniff(rp, &rp->files[i]);
	return r;
}

/* ---- salvaging entries -------------------------------------------------- */

static void rp_see_seq(struct repair *rp, uint64_t seq)
{
	if (seq > rp->max_seq)
		rp->max_seq = seq;
}

/* A (key, seq) seen twice is the same write read from two places (a log
 * whose flush did finish, say): the first copy is kept. */
static int rp_add(struct repair *rp, uint64_t seq, enum value_type type, struct slice key,
                  int64_t time_ns, struct slice value)
{
	int r = mem_add(rp->mem, seq, type, key, time_ns, value);
	if (r == CAIRN_ECORRUPT)
		return 0;
	if (!r) {
		rp_see_seq(rp, seq);
		rp->rep->entries_read++;
	}
	return r;
}

static int salvage_entry(void *ctx, struct slice ikey, struct slice ival)
{
	return rp_add(ctx, ikey_seq(ikey), ikey_type(ikey), ikey_user(ikey), ival_time(ival),
	              ival_value(ival));
}

static void salvage_lost(void *ctx, uint64_t off, uint64_t len, const char *what)
{
	struct repair *rp = ctx;
	rp->rep->bytes_lost += len;
	rp->cur_file->damaged = 1;
	rp_note(rp, rp->cur_name, off, len, "lost: %s", what);
}

static void verify_problem(void *ctx, uint64_t off, const char *what)
{
	struct repair *rp = ctx;
	rp_note(rp, rp->cur_name, off, 0, "damaged: %s", what);
}

static int rp_keep_table(struct repair *rp, struct table *t)
{
	struct table **tp = realloc(rp->tables, (size_t)(rp->ntables + 1) * sizeof(*tp));
	if (!tp)
		return CAIRN_ENOMEM;
	rp->tables = tp;
	struct iter **ip = realloc(rp->its, (size_t)(rp->nits + 1) * sizeof(*ip));
	if (!ip)
		return CAIRN_ENOMEM;
	rp->its = ip;
	struct iter *it = table_iter_new(t);
	if (!it)
		return CAIRN_ENOMEM;
	rp->tables[rp->ntables++] = t;
	rp->its[rp->nits++] = it;
	return 0;
}

/* A file that cannot be read for a reason other than damage (too many open
 * files, an I/O error, a newer format) stops the repair before it changes
 * anything: going on would move the file into lost/ with its data. */
static int rp_cannot_read(struct repair *rp, const char *path, int r, const char *detail)
{
	char env_detail[256] = "";
	if (!detail || !detail[0]) {
		env_errmsg(rp->env, env_detail, sizeof(env_detail));
		detail = env_detail[0] ? env_detail : cairn_strerror(r);
	}
	return rp_fail(rp, r, "cannot read '%s': %s; nothing was changed", path, detail);
}

/* A table whose footer or index cannot be read: its data blocks are found
 * by their checksums from offset 0. */
static int rp_table_raw(struct repair *rp, struct rp_file *f, const char *path, const char *why)
{
	struct env_file *fh = NULL;
	uint64_t n = 0;
	f->damaged = 1;
	rp->rep->tables_damaged++;
	rp_note(rp, f->name, 0, 0, "damaged: %s; looking for its blocks one by one", why);
	int r = env_open_read(rp->env, path, &fh);
	if (r)
		return rp_cannot_read(rp, path, r, NULL);
	struct table_salvage_cb cb = {salvage_entry, salvage_lost, rp};
	r = table_salvage_raw(fh, path, f->size, &cb, &n);
	env_close(fh);
	if (r == CAIRN_ENOMEM)
		return rp_fail(rp, r, "salvaging '%s': %s", path, cairn_strerror(r));
	if (r)
		salvage_lost(rp, 0, 0, cairn_strerror(r));
	rp_note(rp, f->name, 0, 0, "salvaged %" PRIu64 " entries", n);
	return 0;
}

static int rp_table(struct repair *rp, struct rp_file *f)
{
	char path[RP_PATH], err[512] = "";
	struct env_file *fh = NULL;
	struct table *t = NULL;
	rp_path(rp, f->name, path, sizeof(path));
	rp->cur_name = f->name;
	rp->cur_file = f;
	rp->rep->tables++;
	int r = env_open_read(rp->env, path, &fh);
	if (r)
		return rp_cannot_read(rp, path, r, NULL);
	r = table_open(fh, path, f->size, NULL, &t, err, sizeof(err));
	if (r == CAIRN_ECORRUPT)
		return rp_table_raw(rp, f, path, err);
	if (r)
		return rp_cannot_read(rp, path, r, err);
	const struct table_props *p = table_properties(t);
	if (table_verify(t, verify_problem, rp) == 0) {
		rp_see_seq(rp, p->max_seq);
		rp->rep->entries_read += p->num_entries;
		rp_note(rp, f->name, 0, 0,
		        "read whole: %" PRIu64 " entries, sequences %" PRIu64 "..%" PRIu64,
		        p->num_entries, p->min_seq, p->max_seq);
		r = rp_keep_table(rp, t);
		if (r) {
			table_close(t);
			return rp_fail(rp, r, "out of memory reading '%s'", path);
		}
		return 0;
	}
	rp->rep->tables_damaged++;
	f->damaged = 1;
	uint64_t n = 0, had = p->num_entries;
	struct table_salvage_cb cb = {salvage_entry, salvage_lost, rp};
	r = table_salvage(t, &cb, &n);
	table_close(t);
	if (r)
		return rp_fail(rp, r, "salvaging '%s': %s", path, cairn_strerror(r));
	rp_note(rp, f->name, 0, 0, "salvaged %" PRIu64 " of %" PRIu64 " entries", n, had);
	return 0;
}

static int replay_entry(void *ctx, uint64_t seq, enum value_type type, struct slice key,
                        struct slice value, int64_t time_ns)
{
	return rp_add(ctx, seq, type, key, time_ns, value);
}

/* 1 if a whole record with both checksums right starts at pos; *len is its
 * payload length. */
static int rec_ok(const char *d, uint64_t size, uint64_t pos, uint64_t *len)
{
	if (pos + WAL_RECORD_HEADER > size ||
	    crc32c_unmask(dec_fixed32(d + pos + 8)) != crc32c(d + pos, 8))
		return 0;
	*len = dec_fixed32(d + pos);
	return *len <= WAL_MAX_RECORD && *len <= size - pos - WAL_RECORD_HEADER &&
	       crc32c_unmask(dec_fixed32(d + pos + 4)) ==
	               crc32c(d + pos + WAL_RECORD_HEADER, (size_t)*len);
}

static int all_zero(const char *d, uint64_t from, uint64_t to)
{
	for (uint64_t i = from; i < to; i++)
		if (d[i])
			return 0;
	return 1;
}

static void rp_log_lost(struct repair *rp, struct rp_file *f, uint64_t from, uint64_t to,
                        const char *why)
{
	if (!f->damaged)
		rp->rep->logs_damaged++;
	f->damaged = 1;
	rp->rep->bytes_lost += to - from;
	rp_note(rp, f->name, from, to - from, "lost: bytes %" PRIu64 "..%" PRIu64 ": %s", from, to,
	        why);
}

static int rp_read_whole(struct repair *rp, const char *path, uint64_t size, char **out)
{
	struct env_file *fh = NULL;
	size_t got = 0;
	char *d = size < SIZE_MAX ? malloc(size ? (size_t)size : 1) : NULL;
	if (!d)
		return rp_fail(rp, CAIRN_ENOMEM, "out of memory reading '%s'", path);
	int r = env_open_read(rp->env, path, &fh);
	if (!r)
		r = env_pread(fh, 0, d, (size_t)size, &got);
	if (fh)
		env_close(fh);
	if (r || got != size) {
		free(d);
		return rp_fail(rp, r ? r : CAIRN_EIO, "cannot read '%s': %s", path,
		               cairn_strerror(r ? r : CAIRN_EIO));
	}
	*out = d;
	return 0;
}

/* Replays every record whose checksums hold. The log's own reader stops at
 * the first damage, since recovery must not apply writes past a hole as if
 * nothing were missing; repair instead looks for the next whole record (its
 * header checksum makes a false match unlikely), reports the bytes between as
 * lost and goes on, as LevelDB's repair does. */
static int rp_log(struct repair *rp, struct rp_file *f)
{
	char path[RP_PATH], *d = NULL;
	uint64_t records = 0, pos = WAL_FILE_HEADER, len;
	rp_path(rp, f->name, path, sizeof(path));
	rp->rep->logs++;
	int r = rp_read_whole(rp, path, f->size, &d);
	if (r)
		return r;
	if (f->size < WAL_FILE_HEADER) {
		if (!all_zero(d, 0, f->size))
			rp_log_lost(rp, f, 0, f->size, "shorter than the file header");
		free(d);
		return 0;
	}
	if (memcmp(d, "cairnlog", 8) != 0 || crc32c_unmask(dec_fixed32(d + 12)) != crc32c(d, 12)) {
		rp_note(rp, f->name, 0, WAL_FILE_HEADER, "damaged: bad file header");
	} else if (dec_fixed16(d + 8) > 2) {
		free(d);
		return rp_cannot_read(rp, path, CAIRN_EVERSION, "written by a newer cairn");
	}
	while (pos < f->size) {
		if (rec_ok(d, f->size, pos, &len)) {
			struct slice rec = slice_make(d + pos + WAL_RECORD_HEADER, (size_t)len);
			if (logscan_is_note(rec)) { /* holds no writes (logscan.h) */
				pos += WAL_RECORD_HEADER + len;
				continue;
			}
			r = batch_iterate(rec, replay_entry, rp);
			if (r == CAIRN_ENOMEM)
				break;
			if (r)
				rp_log_lost(rp, f, pos, pos + WAL_RECORD_HEADER + len,
				            "a record that is no write batch");
			else
				records++;
			r = 0;
			pos += WAL_RECORD_HEADER + len;
			continue;
		}
		uint64_t next = pos + 1;
		while (next < f->size && !rec_ok(d, f->size, next, &len))
			next++;
		if (!all_zero(d, pos, next))
			rp_log_lost(rp, f, pos, next,
			            next < f->size
			                    ? "damaged records, skipped"
			                    : "no whole record (a write cut short, or damage)");
		pos = next;
	}
	free(d);
	if (r)
		return rp_fail(rp, r, "replaying '%s': %s", path, cairn_strerror(r));
	rp->rep->log_records += records;
	rp_note(rp, f->name, 0, 0, "replayed %" PRIu64 " records", records);
	return 0;
}

static int rp_blob_scan_rec(void *ctx, const struct blob_record *rec)
{
	(void)ctx;
	(void)rec;
	return 0;
}

static int rp_blob(struct repair *rp, struct rp_file *f, struct rp_blob *b)
{
	char path[RP_PATH], err[512] = "";
	uint64_t good = 0;
	rp_path(rp, f->name, path, sizeof(path));
	b->number = f->number;
	b->size = f->size;
	rp->rep->blob_files++;
	int r = blob_reader_open(rp->env, path, &b->rd, err, sizeof(err));
	if (r && r != CAIRN_ECORRUPT)
		return rp_cannot_read(rp, path, r, err);
	if (!r)
		r = blob_scan(b->rd, f->size, 1, rp_blob_scan_rec, NULL, &good, err, sizeof(err));
	if (r == CAIRN_ENOMEM || r == CAIRN_EIO)
		return rp_fail(rp, r, "reading '%s': %s", path, err[0] ? err : cairn_strerror(r));
	if (r == BLOB_SCAN_TORN) {
		rp_note(rp, f->name, good, f->size - good,
		        "damaged: bytes %" PRIu64 "..%" PRIu64 " after the last whole record", good,
		        f->size);
		b->damaged = f->damaged = 1;
	} else if (r) {
		rp_note(rp, f->name, good, f->size - good, "damaged: %s",
		        err[0] ? err : cairn_strerror(r));
		b->damaged = f->damaged = 1;
	}
	if (b->damaged)
		rp->rep->blob_files_damaged++;
	return 0;
}

static struct rp_blob *rp_find_blob(struct repair *rp, uint64_t number)
{
	for (size_t i = 0; i < rp->nblobs; i++)
		if (rp->blobs[i].number == number)
			return &rp->blobs[i];
	return NULL;
}

static int rp_read_all(struct repair *rp)
{
	size_t nb = 0;
	for (size_t i = 0; i < rp->nfiles; i++)
		nb += rp->files[i].kind == RP_BLOB;
	rp->blobs = calloc(nb ? nb : 1, sizeof(*rp->blobs));
	if (!rp->blobs)
		return rp_fail(rp, CAIRN_ENOMEM, "out of memory");
	for (size_t i = 0; i < rp->nfiles; i++) {
		struct rp_file *f = &rp->files[i];
		/* the magic number decides; without one, the name */
		enum rp_kind k = f->content != RP_OTHER ? f->content : f->kind;
		int r = 0;
		if (k == RP_TABLE)
			r = rp_table(rp, f);
		else if (k == RP_LOG)
			r = rp_log(rp, f);
		else if (k == RP_BLOB && f->kind == RP_BLOB)
			r = rp_blob(rp, f, &rp->blobs[rp->nblobs++]);
		if (r)
			return r;
	}
	return 0;
}

/* ---- writing the new tables --------------------------------------------- */

struct rp_writer {
	struct env_file *f;
	struct table_builder *tb;
	struct rp_output *out;
};

static int rp_out_open(struct repair *rp, struct rp_writer *w)
{
	if (arr_room(&rp->outs, &rp->cap_outs, rp->nouts, sizeof(*rp->outs), 8))
		return CAIRN_ENOMEM;
	w->out = &rp->outs[rp->nouts++];
	memset(w->out, 0, sizeof(*w->out));
	w->out->number = rp->next_number++;
	char path[RP_PATH];
	table_file_name(path, sizeof(path), rp->dir, w->out->number);
	struct table_options o = {rp->opts->block_size, rp->opts->block_restart_interval,
	                          rp->opts->bloom_bits_per_key, rp->opts->compression,
	                          w->out->number};
	int r = env_open_write(rp->env, path, &w->f);
	if (!r)
		r = tb_new(&o, w->f, &w->tb);
	if (r)
		return rp_fail(rp, r, "cannot write '%s': %s", path, cairn_strerror(r));
	return 0;
}

static int rp_out_close(struct repair *rp, struct rp_writer *w)
{
	struct table_props p = {0};
	int r = tb_finish(w->tb, &p);
	if (!r)
		r = env_sync(w->f);
	int rc = env_close(w->f);
	r = r ? r : rc;
	tb_free(w->tb);
	w->tb = NULL;
	w->f = NULL;
	if (r) {
		table_props_free(&p);
		return rp_fail(rp, r, "cannot write table %06" PRIu64 ": %s", w->out->number,
		               cairn_strerror(r));
	}
	struct rp_output *o = w->out;
	char path[RP_PATH];
	table_file_name(path, sizeof(path), rp->dir, o->number);
	env_file_size(rp->env, path, &o->size);
	o->min_seq = p.min_seq;
	o->max_seq = p.max_seq;
	o->entries = p.num_entries;
	o->smallest = p.smallest;
	o->largest = p.largest;
	rp->rep->tables_written++;
	return 0;
}

/* Checks a kept reference: counts the live bytes of its blob file and
 * reports a value that reads cannot return (the key is kept: reading it
 * reports the error, which is better than a key that silently vanished). */
static void rp_check_ref(struct repair *rp, struct slice ukey, struct slice ival)
{
	struct blob_ref ref;
	char err[512] = "";
	struct rp_blob *b = NULL;
	int bad = db_blob_ref(ival, &ref) != 0;
	if (!bad)
		b = rp_find_blob(rp, ref.file);
	if (b) {
		b->referenced = 1;
		b->live += blob_record_size(ukey.len, ref.size);
		bad = !b->rd || blob_check(b->rd, &ref, ukey, err, sizeof(err)) != 0;
	} else if (!bad) {
		fmt_msg(err, sizeof(err), "blob file %06" PRIu64 " is missing", ref.file);
		bad = 1;
	}
	if (!bad)
		return;
	rp->rep->blob_refs_broken++;
	if (rp->broken_notes++ < 20)
		rp_note(rp, "", 0, 0,
		        "a key of %zu bytes keeps a large value that cannot be read: %s", ukey.len,
		        err[0] ? err : "bad reference");
}

static int rp_write_entry(struct repair *rp, struct rp_writer *w, struct iter *m)
{
	int r = 0;
	if (!w->tb && (r = rp_out_open(rp, w)))
		return r;
	struct slice k = iter_key(m), v = iter_value(m);
	if (ikey_type(k) == TYPE_BLOB)
		rp_check_ref(rp, ikey_user(k), v);
	r = tb_add(w->tb, k, v);
	if (r)
		return rp_fail(rp, r, "cannot write table %06" PRIu64 ": %s", w->out->number,
		               cairn_strerror(r));
	rp->rep->keys_kept++;
	if (tb_file_size(w->tb) >= rp->opts->table_target_size)
		return rp_out_close(rp, w);
	return 0;
}

/* Merges everything read, keeps the newest version of each key (tombstones
 * are dropped: nothing older survives below the new tables), and writes
 * tables of table_target_size. */
static int rp_write_tables(struct repair *rp)
{
	struct iter **ip = realloc(rp->its, (size_t)(rp->nits + 1) * sizeof(*ip));
	if (!ip)
		return rp_fail(rp, CAIRN_ENOMEM, "out of memory");
	rp->its = ip;
	struct iter *mi = mem_iter_new(rp->mem);
	if (!mi)
		return rp_fail(rp, CAIRN_ENOMEM, "out of memory");
	rp->its[rp->nits++] = mi;
	struct iter *m = iter_merge_new(rp->its, rp->nits);
	rp->nits = 0;
	if (!m)
		return rp_fail(rp, CAIRN_ENOMEM, "out of memory");
	struct rp_writer w = {0};
	struct buf last = {0};
	int have_last = 0, r = 0;
	for (iter_seek_first(m); !r && iter_valid(m); iter_next(m)) {
		struct slice uk = ikey_user(iter_key(m));
		if (have_last && slice_eq(uk, buf_slice(&last)))
			continue;
		if ((r = buf_set(&last, uk.data, uk.len)))
			break;
		have_last = 1;
		if (ikey_type(iter_key(m)) != TYPE_DELETION)
			r = rp_write_entry(rp, &w, m);
	}
	if (!r && iter_status(m))
		r = rp_fail(rp, iter_status(m), "reading the tables again: %s",
		            cairn_strerror(iter_status(m)));
	if (!r && w.tb)
		r = rp_out_close(rp, &w);
	if (w.tb) {
		tb_free(w.tb);
		env_close(w.f);
	}
	buf_free(&last);
	iter_free(m);
	return r;
}

/* ---- the new manifest ----------------------------------------------------- */

/* The shallowest level whose target holds everything, so the first writes
 * after repair do not start with a compaction of the whole database. */
static int rp_level(const struct repair *rp)
{
	uint64_t total = 0, target = rp->opts->level1_target_size;
	for (size_t i = 0; i < rp->nouts; i++)
		total += rp->outs[i].size;
	int level = 1;
	while (level < NUM_LEVELS - 1 && total > target) {
		target *= (uint64_t)rp->opts->level_size_ratio;
		level++;
	}
	return level;
}

static int rp_build_edit(struct repair *rp, struct version_edit *e, uint64_t manifest)
{
	int level = rp_level(rp), r = 0;
	e->has_log_number = e->has_next_file = e->has_last_seq = 1;
	e->next_file_number = manifest + 1;
	e->log_number = manifest + 1;
	e->last_sequence = rp->max_seq;
	for (size_t i = 0; !r && i < rp->nouts; i++) {
		struct rp_output *o = &rp->outs[i];
		r = edit_add_file(e, level, o->number, o->size, buf_slice(&o->smallest),
		                  buf_slice(&o->largest), o->min_seq, o->max_seq, o->entries);
	}
	for (size_t i = 0; !r && i < rp->nblobs; i++) {
		struct rp_blob *b = &rp->blobs[i];
		if (!b->referenced)
			continue;
		r = edit_add_blob(e, b->number, b->size, 1);
		uint64_t used = b->live + BLOB_FILE_HEADER;
		if (!r && b->size > used)
			r = edit_add_garbage(e, b->number, b->size - used);
	}
	return r ? rp_fail(rp, r, "out of memory") : 0;
}

static int rp_write_manifest(struct repair *rp, uint64_t number)
{
	struct version_edit e;
	struct buf enc = {0};
	struct env_file *f = NULL;
	struct wal_writer *w = NULL;
	char path[RP_PATH];
	edit_init(&e);
	manifest_file_name(path, sizeof(path), rp->dir, number);
	int r = rp_build_edit(rp, &e, number);
	if (!r && (r = edit_encode(&e, &enc)))
		rp_fail(rp, r, "out of memory");
	if (!r && (r = env_open_write(rp->env, path, &f)))
		rp_fail(rp, r, "cannot create '%s': %s", path, cairn_strerror(r));
	if (!r) {
		r = wal_writer_new(f, WAL_KIND_MANIFEST, &w);
		if (r)
			env_close(f);
		if (!r)
			r = wal_add(w, enc.data, enc.len);
		if (!r)
			r = wal_sync(w);
		int rc = w ? wal_writer_close(w) : 0;
		r = r ? r : rc;
		if (!r)
			r = env_sync_dir(rp->env, rp->dir);
		if (r)
			rp_fail(rp, r, "cannot write '%s': %s", path, cairn_strerror(r));
	}
	edit_free(&e);
	buf_free(&enc);
	return r;
}

static int rp_write_current(struct repair *rp, uint64_t number)
{
	const char *what = NULL;
	int r = current_write(rp->env, rp->dir, number, &what);
	return r ? rp_fail(rp, r, "cannot write %s: %s", what, cairn_strerror(r)) : 0;
}

/* ---- setting files aside -------------------------------------------------- */

/* Moves name into lost/, under a name no earlier repair used. */
static int rp_set_aside(struct repair *rp, const char *name, const char *why)
{
	char from[RP_PATH], to[RP_PATH + 32], lost[RP_PATH];
	rp_path(rp, "lost", lost, sizeof(lost));
	rp_path(rp, name, from, sizeof(from));
	fmt_msg(to, sizeof(to), "%s/%s", lost, name);
	for (int i = 1; env_exists(rp->env, to) == 1; i++)
		fmt_msg(to, sizeof(to), "%s/%s.%d", lost, name, i);
	int r = env_rename(rp->env, from, to);
	if (r)
		return rp_fail(rp, r, "cannot move '%s' into '%s': %s", from, lost,
		               cairn_strerror(r));
	rp->rep->files_set_aside++;
	rp_note(rp, name, 0, 0, "moved into lost/ (%s)", why);
	return 0;
}

static const char *rp_aside_reason(const struct repair *rp, const struct rp_file *f)
{
	if (f->content != RP_OTHER && f->content != f->kind && f->kind != RP_OTHER)
		return f->content == RP_TABLE || f->content == RP_LOG
		               ? "misnamed; its entries are in the new tables"
		               : "misnamed";
	switch (f->kind) {
	case RP_CURRENT:
	case RP_MANIFEST:
		return "replaced by the new manifest";
	case RP_LOG:
	case RP_TABLE:
		return f->damaged ? "damaged; what could be read is in the new tables"
		                  : "its entries are in the new tables";
	case RP_BLOB: {
		for (size_t i = 0; i < rp->nblobs; i++)
			if (rp->blobs[i].number == f->number)
				return rp->blobs[i].referenced ? NULL : "no key refers to it";
		return NULL;
	}
	default:
		return NULL;
	}
}

static int rp_set_all_aside(struct repair *rp)
{
	char lost[RP_PATH];
	rp_path(rp, "lost", lost, sizeof(lost));
	int r = env_mkdir(rp->env, lost);
	if (r && r != CAIRN_EEXIST)
		return rp_fail(rp, r, "cannot create '%s': %s", lost, cairn_strerror(r));
	for (size_t i = 0; i < rp->nfiles; i++) {
		const char *why = rp_aside_reason(rp, &rp->files[i]);
		if (why && (r = rp_set_aside(rp, rp->files[i].name, why)))
			return r;
	}
	r = env_sync_dir(rp->env, lost);
	if (!r)
		r = env_sync_dir(rp->env, rp->dir);
	return r ? rp_fail(rp, r, "cannot sync '%s': %s", rp->dir, cairn_strerror(r)) : 0;
}

/* ---- the whole ------------------------------------------------------------ */

static void rp_free(struct repair *rp)
{
	for (int i = 0; i < rp->nits; i++)
		iter_free(rp->its[i]);
	for (int i = 0; i < rp->ntables; i++)
		table_close(rp->tables[i]);
	for (size_t i = 0; i < rp->nblobs; i++)
		blob_reader_close(rp->blobs[i].rd);
	for (size_t i = 0; i < rp->nouts; i++) {
		buf_free(&rp->outs[i].smallest);
		buf_free(&rp->outs[i].largest);
	}
	if (rp->mem)
		mem_unref(rp->mem);
	free(rp->its);
	free(rp->tables);
	free(rp->blobs);
	free(rp->outs);
	free(rp->files);
}

static int rp_run(struct repair *rp)
{
	int r = rp_list(rp);
	if (r)
		return r;
	int any = 0;
	for (size_t i = 0; i < rp->nfiles; i++)
		any |= rp->files[i].kind != RP_CURRENT;
	if (!any)
		return rp_fail(rp, CAIRN_ENOENT, "'%s' holds no database files", rp->dir);
	if ((r = mem_new(&rp->mem)))
		return rp_fail(rp, r, "out of memory");
	if ((r = rp_read_all(rp)) || (r = rp_write_tables(rp)))
		return r;
	uint64_t manifest = rp->next_number++;
	if ((r = rp_write_manifest(rp, manifest)))
		return r;
	/* Every old file is aside before CURRENT names the new manifest: an
	 * open must never see the old tables as the new manifest's leftovers
	 * (and delete them), and a crash before CURRENT leaves a directory
	 * that the next repair reads the same way. */
	if ((r = rp_set_all_aside(rp)) || (r = rp_write_current(rp, manifest)))
		return r;
	rp->rep->manifest_number = manifest;
	rp->rep->last_sequence = rp->max_seq;
	rp_note(rp, "CURRENT", 0, 0,
	        "names MANIFEST-%06" PRIu64 ": %" PRIu64 " keys in %" PRIu64
	        " tables, last sequence %" PRIu64,
	        manifest, rp->rep->keys_kept, rp->rep->tables_written, rp->max_seq);
	return 0;
}

CAIRN_EXPORT int cairn_repair(const char *dir, const struct cairn_options *opts,
                              const struct cairn_repair_callbacks *cb,
                              struct cairn_repair_report *rep, char *errbuf, size_t errlen)
{
	struct cairn_options defaults;
	struct cairn_repair_report scratch = {0};
	struct repair rp = {.dir = dir, .cb = cb, .err = errbuf, .errlen = errlen};
	if (errbuf && errlen)
		errbuf[0] = 0;
	if (!opts) {
		cairn_options_init(&defaults);
		opts = &defaults;
	}
	rp.opts = opts;
	rp.rep = rep ? rep : &scratch;
	memset(rp.rep, 0, sizeof(*rp.rep));
	rp.env = opts->env ? opts->env : env_posix();
	if (!dir || strlen(dir) > RP_PATH - 128)
		return rp_fail(&rp, CAIRN_EINVAL, "bad database directory");
	if (opts->read_only)
		return rp_fail(&rp, CAIRN_EREADONLY, "repair writes: read_only must be 0");
	char lockpath[RP_PATH];
	struct env_lock *lock = NULL;
	rp_path(&rp, "LOCK", lockpath, sizeof(lockpath));
	if (env_exists(rp.env, dir) != 1)
		return rp_fail(&rp, CAIRN_ENOENT, "no database directory at '%s'", dir);
	int r = env_lock(rp.env, lockpath, &lock);
	if (r) {
		char detail[256] = "";
		env_errmsg(rp.env, detail, sizeof(detail));
		return rp_fail(&rp, r, "cannot lock '%s': %s", lockpath,
		               detail[0] ? detail : cairn_strerror(r));
	}
	rp.next_number = 2;
	r = rp_run(&rp);
	rp_free(&rp);
	env_unlock(rp.env, lock);
	return r;
}
