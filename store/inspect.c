/*
 * inspect.c - offline inspection of a database directory: cairn_check, which
 * reads every file and reports what is damaged, missing or left over, and
 * cairn_dump_file, which prints one log, manifest or table in readable form.
 * They serve `cairn check` and `cairn dump`.
 *
 * Neither opens the database: they take no lock, open files read-only through
 * the POSIX env and never write, so they work on a database another process
 * holds open. cairn_check learns the live files by replaying the manifest that
 * CURRENT names (edit_decode on every record), then verifies every table with
 * table_verify and every log record with the wal reader and batch_iterate.
 * Everything read from disk is untrusted: the readers it calls check every
 * length and checksum, and a damaged file is reported and skipped, never
 * followed.
 *
 * On a database in use, a flush or compaction may change the set of files
 * while the check runs. The check therefore collects its problems first, and
 * when CURRENT or the size of the manifest changed meanwhile it starts over
 * (a few times at most), so a report describes one state of the directory.
 * Files numbered at or above the manifest's next file number are being
 * written (or were left by a crash, or named by a manifest record that was
 * lost; the engine keeps them): they are verified when they are logs and
 * otherwise left alone. A log the manifest's log mark names (a clean close)
 * is held to the engine's rule: whole records up to the marked length.
 */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "batch.h"
#include "blob.h"
#include "cairn.h"
#include "env.h"
#include "logscan.h"
#include "sstable.h"
#include "util.h"
#include "version.h"
#include "wal.h"

#define INSPECT_PATH_LEN 4096
/* Problems kept in memory before they are reported; later ones are counted. */
#define INSPECT_MAX_PROBLEMS 10000
/* Times the check starts over when the database changes under it. */
#define INSPECT_ATTEMPTS 3
/* Bytes of a value that a dump prints before it elides the rest. */
#define DUMP_VALUE_MAX 256

enum file_kind {
	KIND_OTHER = 0,
	KIND_TABLE,
	KIND_LOG,
	KIND_MANIFEST,
	KIND_CURRENT,
	KIND_TEMP,
	KIND_BLOB,
};

/* One directory entry, as a number and a kind where the name has them. */
struct dir_entry {
	char *name;
	enum file_kind kind;
	uint64_t number;
	uint64_t size;
	int has_size;
};

/* A file the manifest says is live. */
struct live_file {
	uint64_t number, size;
	int level;  /* LIVE_BLOB for a blob file */
	int sealed; /* blob files: size is final */
	/* tables: what the manifest says the table holds (owned), checked
	 * against its properties */
	struct buf smallest, largest;
	uint64_t min_seq, max_seq, entries;
};

#define LIVE_BLOB (-1)

struct problem {
	char *file;
	uint64_t offset;
	char *what;
};

struct check {
	const char *dir;
	struct cairn_env *env;
	const struct cairn_check_callbacks *cb;
	struct dir_entry *ents;
	size_t nents, cap_ents;
	struct live_file *live;
	size_t nlive, cap_live;
	struct problem *probs;
	size_t nprobs;
	uint64_t count; /* problems found, kept or not */
	/* what CURRENT and the manifest say */
	int have_manifest;
	uint64_t manifest_number, manifest_size, log_number, next_file;
	int has_log_number, has_next_file;
	struct log_mark mark; /* the manifest's last one */
	uint64_t last_seq;    /* the manifest's last sequence */
	uint64_t done, total;
};

/* ------------------------------------------------------------------------ */
/* Names                                                                     */

/* Parses "<digits><suffix>" into *number. */
static int parse_numbered(const char *name, const char *suffix, uint64_t *number)
{
	size_t nd = strspn(name, "0123456789");
	if (nd == 0 || nd > 19 || strcmp(name + nd, suffix) != 0)
		return 0;
	*number = strtoull(name, NULL, 10);
	return 1;
}

static enum file_kind classify(const char *name, uint64_t *number)
{
	size_t n = strlen(name);
	*number = 0;
	if (n > 4 && strcmp(name + n - 4, ".tmp") == 0)
		return KIND_TEMP;
	if (parse_numbered(name, ".sst", number))
		return KIND_TABLE;
	if (parse_numbered(name, ".log", number))
		return KIND_LOG;
	if (parse_numbered(name, ".blob", number))
		return KIND_BLOB;
	if (strncmp(name, "MANIFEST-", 9) == 0 && parse_numbered(name + 9, "", number))
		return KIND_MANIFEST;
	if (strcmp(name, "CURRENT") == 0)
		return KIND_CURRENT;
	/* LOCK, RESERVE (the space reserve: zeros, never read) and unknown
	 * names are not checked */
	return KIND_OTHER;
}

static const char *base_name(const char *path)
{
	const char *s = strrchr(path, '/');
	return s ? s + 1 : path;
}

/* Engine messages often start with the file they concern ("table 'P': ",
 * "file P: "); the check names the file itself, so drop that. */
static const char *strip_file_prefix(const char *msg, const char *path)
{
	const char *forms[] = {"table '%s': ", "file %s: ", "%s: "};
	const char *names[] = {path, base_name(path)};
	char pre[INSPECT_PATH_LEN + 16];
	for (size_t i = 0; i < sizeof(forms) / sizeof(forms[0]); i++) {
		for (size_t j = 0; j < 2; j++) {
			fmt_msg(pre, sizeof(pre), forms[i], names[j]);
			if (strncmp(msg, pre, strlen(pre)) == 0)
				return msg + strlen(pre);
		}
	}
	return msg;
}

/* ------------------------------------------------------------------------ */
/* Problems and progress                                                     */

static void report(struct check *c, const char *path, uint64_t off, const char *fmt, ...)
        __attribute__((format(printf, 4, 5)));
static void report(struct check *c, const char *path, uint64_t off, const char *fmt, ...)
{
	char what[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(what, sizeof(what), fmt, ap);
	va_end(ap);
	c->count++;
	if (c->nprobs >= INSPECT_MAX_PROBLEMS)
		return;
	if (c->nprobs == 0 && !c->probs) {
		c->probs = calloc(INSPECT_MAX_PROBLEMS, sizeof(*c->probs));
		if (!c->probs)
			return;
	}
	struct problem *p = &c->probs[c->nprobs];
	p->file = strdup(path);
	p->what = strdup(strip_file_prefix(what, path));
	p->offset = off;
	if (!p->file || !p->what) {
		free(p->file);
		free(p->what);
		return;
	}
	c->nprobs++;
}

static void progress(struct check *c, uint64_t bytes)
{
	c->done += bytes;
	if (c->done > c->total)
		c->total = c->done;
	if (c->cb && c->cb->progress)
		c->cb->progress(c->cb->ctx, c->done, c->total);
}

static void path_of(const struct check *c, const char *name, char *out, size_t len)
{
	fmt_msg(out, len, "%s/%s", c->dir, name);
}

/* ------------------------------------------------------------------------ */
/* The directory                                                             */

static int collect_entry(void *ctx, const char *name)
{
	struct check *c = ctx;
	if (c->nents == c->cap_ents) {
		size_t cap = c->cap_ents ? 2 * c->cap_ents : 64;
		struct dir_entry *e = realloc(c->ents, cap * sizeof(*e));
		if (!e)
			return CAIRN_ENOMEM;
		c->ents = e;
		c->cap_ents = cap;
	}
	struct dir_entry *e = &c->ents[c->nents];
	memset(e, 0, sizeof(*e));
	e->name = strdup(name);
	if (!e->name)
		return CAIRN_ENOMEM;
	e->kind = classify(name, &e->number);
	c->nents++;
	return 0;
}

/* By kind, then number (logs must be verified in number order, and
 * 1000000.log sorts before 999999.log by name), then name. */
static int entry_cmp(const void *a, const void *b)
{
	const struct dir_entry *x = a, *y = b;
	if (x->kind != y->kind)
		return x->kind < y->kind ? -1 : 1;
	if (x->number != y->number)
		return x->number < y->number ? -1 : 1;
	return strcmp(x->name, y->name);
}

static void free_entries(struct check *c)
{
	for (size_t i = 0; i < c->nents; i++)
		free(c->ents[i].name);
	c->nents = 0;
}

/* Lists the directory (sorted, so reports come in a stable order) and the
 * size of every file, which is also the total for progress. */
static int read_dir(struct check *c)
{
	char path[INSPECT_PATH_LEN];
	int r = env_list_dir(c->env, c->dir, collect_entry, c);
	if (r)
		return r;
	qsort(c->ents, c->nents, sizeof(*c->ents), entry_cmp);
	c->total = 0;
	for (size_t i = 0; i < c->nents; i++) {
		struct dir_entry *e = &c->ents[i];
		path_of(c, e->name, path, sizeof(path));
		e->has_size = env_file_size(c->env, path, &e->size) == 0;
		if (e->has_size && e->kind != KIND_OTHER && e->kind != KIND_TEMP)
			c->total += e->size;
	}
	return 0;
}

static struct dir_entry *find_entry(struct check *c, enum file_kind kind, uint64_t number)
{
	for (size_t i = 0; i < c->nents; i++)
		if (c->ents[i].kind == kind && c->ents[i].number == number)
			return &c->ents[i];
	return NULL;
}

/* ------------------------------------------------------------------------ */
/* CURRENT and the manifest                                                  */

/* Reads CURRENT into *number; reports and returns nonzero when it cannot. */
static int read_current(struct check *c, uint64_t *number)
{
	char path[INSPECT_PATH_LEN], data[65];
	struct env_file *f = NULL;
	uint64_t size = 0;
	size_t got = 0;
	current_file_name(path, sizeof(path), c->dir);
	if (env_exists(c->env, path) != 1) {
		report(c, path, 0, "missing: nothing names the live manifest");
		return -1;
	}
	int r = env_open_read(c->env, path, &f);
	if (!r)
		r = env_size(f, &size);
	if (!r && size < sizeof(data))
		r = env_pread(f, 0, data, (size_t)size, &got);
	env_close(f);
	if (r) {
		report(c, path, 0, "cannot be read: %s", cairn_strerror(r));
		return -1;
	}
	if (size >= sizeof(data) || got != size || got < 2 || data[got - 1] != '\n') {
		report(c, path, 0, "not one line naming a manifest (%" PRIu64 " bytes)", size);
		return -1;
	}
	data[got - 1] = 0;
	if (strncmp(data, "MANIFEST-", 9) || !parse_numbered(data + 9, "", number) ||
	    strlen(data) != got - 1) {
		report(c, path, 0, "does not name a MANIFEST-N file");
		return -1;
	}
	progress(c, size);
	return 0;
}

static struct live_file *find_live(struct check *c, uint64_t number)
{
	for (size_t i = 0; i < c->nlive; i++)
		if (c->live[i].number == number)
			return &c->live[i];
	return NULL;
}

static int add_live(struct check *c, uint64_t number, uint64_t size, int level)
{
	if (c->nlive == c->cap_live) {
		size_t cap = c->cap_live ? 2 * c->cap_live : 64;
		struct live_file *l = realloc(c->live, cap * sizeof(*l));
		if (!l)
			return CAIRN_ENOMEM;
		c->live = l;
		c->cap_live = cap;
	}
	c->live[c->nlive++] = (struct live_file){.number = number, .size = size, .level = level};
	return 0;
}

/* Forgets live file l (a pointer into c->live). */
static void drop_live(struct check *c, struct live_file *l)
{
	buf_free(&l->smallest);
	buf_free(&l->largest);
	*l = c->live[--c->nlive];
}

static int add_live_table(struct check *c, const struct file_meta *f, int level)
{
	if (add_live(c, f->number, f->size, level))
		return CAIRN_ENOMEM;
	struct live_file *l = &c->live[c->nlive - 1];
	l->min_seq = f->min_seq;
	l->max_seq = f->max_seq;
	l->entries = f->num_entries;
	if (buf_set(&l->smallest, f->smallest.data, f->smallest.len) ||
	    buf_set(&l->largest, f->largest.data, f->largest.len)) {
		drop_live(c, l);
		return CAIRN_ENOMEM;
	}
	return 0;
}

/* Applies one edit to the live set, reporting what cannot be right. */
static int apply_edit(struct check *c, const char *path, uint64_t off, const struct version_edit *e)
{
	if (e->mark.set)
		c->mark = e->mark;
	for (int i = 0; i < e->ndeleted; i++) {
		struct live_file *l = find_live(c, e->deleted[i].number);
		if (!l) {
			report(c, path, off, "edit deletes table %06" PRIu64 ", which is not live",
			       e->deleted[i].number);
			continue;
		}
		drop_live(c, l);
	}
	for (int i = 0; i < e->nadded; i++) {
		const struct file_meta *f = e->added[i].f;
		if (find_live(c, f->number)) {
			report(c, path, off, "edit adds table %06" PRIu64 " twice", f->number);
			continue;
		}
		if (add_live_table(c, f, e->added[i].level))
			return CAIRN_ENOMEM;
	}
	for (int i = 0; i < e->ndeleted_blobs; i++) {
		struct live_file *l = find_live(c, e->deleted_blobs[i]);
		if (!l || l->level != LIVE_BLOB) {
			report(c, path, off,
			       "edit deletes blob file %06" PRIu64 ", which is not live",
			       e->deleted_blobs[i]);
			continue;
		}
		drop_live(c, l);
	}
	for (int i = 0; i < e->nblobs; i++) {
		struct live_file *l = find_live(c, e->blobs[i].number);
		if (l && l->level != LIVE_BLOB) {
			report(c, path, off, "edit adds blob file %06" PRIu64 ", a table's number",
			       e->blobs[i].number);
			continue;
		}
		if (!l) {
			if (add_live(c, e->blobs[i].number, 0, LIVE_BLOB))
				return CAIRN_ENOMEM;
			l = &c->live[c->nlive - 1];
		}
		l->size = e->blobs[i].size;
		l->sealed = e->blobs[i].sealed;
	}
	if (e->has_log_number) {
		c->has_log_number = 1;
		c->log_number = e->log_number;
	}
	if (e->has_next_file) {
		c->has_next_file = 1;
		c->next_file = e->next_file_number;
	}
	if (e->has_last_seq)
		c->last_seq = e->last_sequence;
	return 0;
}

/* Replays the manifest into the live set. A torn last record is normal (it
 * was never acknowledged); damage before it is a problem, and the files that
 * later edits would name are then unknown, so no file is called unreferenced.
 */
static int replay_manifest(struct check *c, uint64_t number)
{
	char path[INSPECT_PATH_LEN], err[512];
	struct wal_reader *rd = NULL;
	manifest_file_name(path, sizeof(path), c->dir, number);
	struct dir_entry *ent = find_entry(c, KIND_MANIFEST, number);
	if (!ent) {
		report(c, path, 0, "missing, but CURRENT names it");
		return 0;
	}
	c->manifest_size = ent->size;
	int r = wal_reader_open(c->env, path, WAL_KIND_MANIFEST, &rd, err, sizeof(err));
	if (r) {
		report(c, path, 0, "%s", err);
		return r == CAIRN_ENOMEM ? r : 0;
	}
	int ok = 1;
	for (;;) {
		struct slice rec;
		struct version_edit e;
		uint64_t off = wal_good_offset(rd);
		r = wal_next(rd, &rec, err, sizeof(err));
		if (r == WAL_EOF || r == WAL_TORN)
			break;
		if (r < 0) {
			report(c, path, off, "%s", err);
			ok = 0;
			break;
		}
		if (edit_decode(rec, &e, err, sizeof(err))) {
			report(c, path, off, "%s", err);
			ok = 0;
			break;
		}
		r = apply_edit(c, path, off, &e);
		edit_free(&e);
		if (r) {
			wal_reader_close(rd);
			return r;
		}
	}
	wal_reader_close(rd);
	r = 0;
	if (ok && !c->has_next_file) {
		report(c, path, 0, "no next file number recorded");
		ok = 0;
	}
	c->have_manifest = ok;
	c->manifest_number = number;
	progress(c, ent->size);
	return 0;
}

/* ------------------------------------------------------------------------ */
/* Tables and logs                                                           */

struct table_ctx {
	struct check *c;
	const char *path;
};

static void table_problem(void *ctx, uint64_t off, const char *what)
{
	struct table_ctx *t = ctx;
	report(t->c, t->path, off, "%s", what);
}

static void verify_table(struct check *c, const struct dir_entry *e)
{
	char path[INSPECT_PATH_LEN], err[512];
	struct env_file *f = NULL;
	struct table *t = NULL;
	path_of(c, e->name, path, sizeof(path));
	int r = env_open_read(c->env, path, &f);
	if (r) {
		report(c, path, 0, "cannot be opened: %s", cairn_strerror(r));
		return;
	}
	r = table_open(f, path, e->size, NULL, &t, err, sizeof(err));
	if (r) {
		report(c, path, 0, "%s", err);
		return;
	}
	const struct live_file *l = find_live(c, e->number);
	if (l && l->level != LIVE_BLOB) {
		struct table_expect x = {.number = l->number,
		                         .size = l->size,
		                         .has_meta = 1,
		                         .smallest = buf_slice(&l->smallest),
		                         .largest = buf_slice(&l->largest),
		                         .num_entries = l->entries,
		                         .min_seq = l->min_seq,
		                         .max_seq = l->max_seq};
		if (table_check_expect(t, &x, err, sizeof(err)))
			report(c, path, 0, "%s", strip_file_prefix(err, path));
	}
	struct table_ctx tc = {.c = c, .path = path};
	r = table_verify(t, table_problem, &tc);
	if (r < 0)
		report(c, path, 0, "cannot be read: %s", cairn_strerror(r));
	table_close(t);
}

static uint64_t newest_log(const struct check *c)
{
	uint64_t n = 0;
	for (size_t i = 0; i < c->nents; i++)
		if (c->ents[i].kind == KIND_LOG && c->ents[i].number > n)
			n = c->ents[i].number;
	return n;
}

static int cmp_log(const void *a, const void *b)
{
	uint64_t x = ((const struct logscan_log *)a)->number;
	uint64_t y = ((const struct logscan_log *)b)->number;
	return x < y ? -1 : x > y;
}

static uint64_t tables_max_seq(const struct check *c)
{
	uint64_t m = 0;
	for (size_t i = 0; i < c->nlive; i++)
		if (c->live[i].level != LIVE_BLOB && c->live[i].max_seq > m)
			m = c->live[i].max_seq;
	return m;
}

/* Reports what logscan found in one log. */
static void report_log(struct check *c, const struct logscan_set *s, size_t k)
{
	char path[INSPECT_PATH_LEN];
	const struct logscan_log *l = &s->logs[k];
	if (s->damaged && k == s->bad && !s->keep_bad) {
		/* a gap before the log, or the log before it missing */
		log_file_name(path, sizeof(path), c->dir, s->missing ? s->missing : l->number);
		report(c, path, 0, "%s", strip_file_prefix(l->why, path));
		return;
	}
	if (!l->corrupt)
		return;
	log_file_name(path, sizeof(path), c->dir, l->number);
	report(c, path, l->bad_offset, "%s", strip_file_prefix(l->why, path));
}

/* Judges every log the manifest needs by the rules open applies
 * (logscan.h): damage, a torn record where none may be, a log missing or
 * shorter than the next one's start note says it was synced, sequence
 * numbers that do not run on. */
static void verify_logs(struct check *c)
{
	char err[1024] = "", path[INSPECT_PATH_LEN];
	struct logscan_set s = {.dir = c->dir};
	s.logs = calloc(c->nents ? c->nents : 1, sizeof(*s.logs));
	if (!s.logs) {
		report(c, c->dir, 0, "out of memory checking the logs");
		return;
	}
	uint64_t newest = newest_log(c);
	if (c->have_manifest) {
		s.min_log = c->log_number;
		s.mark_set = c->mark.set;
		s.mark_log = c->mark.log;
		s.mark_length = c->mark.length;
		s.mark_seq = c->mark.seq;
		s.manifest_seq = c->last_seq;
		s.tables_seq = tables_max_seq(c);
		s.next_file = c->has_next_file ? c->next_file : UINT64_MAX;
		s.manifest_number = c->manifest_number;
	}
	for (size_t i = 0; i < c->nents; i++) {
		const struct dir_entry *e = &c->ents[i];
		if (e->kind != KIND_LOG || e->number < s.min_log)
			continue;
		s.logs[s.n].number = e->number;
		s.logs[s.n].newest = e->number == newest;
		s.n++;
	}
	qsort(s.logs, s.n, sizeof(*s.logs), cmp_log);
	int r = logscan_all(c->env, &s, NULL, NULL, err, sizeof(err));
	if (r) {
		report(c, c->dir, 0, "a log cannot be read: %s", err);
	} else if (s.first_missing) {
		log_file_name(path, sizeof(path), c->dir, s.missing);
		report(c, path, 0, "%s", strip_file_prefix(err, path));
	} else {
		/* what open would drop after a crash's cut is no damage */
		size_t upto = s.cut ? s.replay : s.n;
		for (size_t k = 0; k < upto; k++)
			report_log(c, &s, k);
	}
	free(s.logs);
}

/* ------------------------------------------------------------------------ */
/* The whole check                                                           */

static int in_flight(const struct check *c, uint64_t number)
{
	return c->have_manifest && number >= c->next_file;
}

static void check_live_files(struct check *c)
{
	char path[INSPECT_PATH_LEN];
	for (size_t i = 0; i < c->nlive; i++) {
		const struct live_file *l = &c->live[i];
		if (l->level == LIVE_BLOB) {
			blob_file_name(path, sizeof(path), c->dir, l->number);
			const struct dir_entry *e = find_entry(c, KIND_BLOB, l->number);
			if (!e)
				report(c, path, 0, "missing (a blob file of the manifest)");
			else if (e->has_size && l->sealed && e->size < l->size)
				report(c, path, 0,
				       "%" PRIu64 " bytes, shorter than the %" PRIu64
				       " the manifest records",
				       e->size, l->size);
			continue;
		}
		table_file_name(path, sizeof(path), c->dir, l->number);
		const struct dir_entry *e = find_entry(c, KIND_TABLE, l->number);
		if (!e)
			report(c, path, 0, "missing (level %d of the manifest)", l->level);
		else if (e->has_size && e->size != l->size)
			report(c, path, 0, "%" PRIu64 " bytes, the manifest records %" PRIu64,
			       e->size, l->size);
	}
}

static void verify_blob(struct check *c, const struct dir_entry *e)
{
	char path[INSPECT_PATH_LEN], err[512] = "";
	struct blob_reader *rd;
	path_of(c, e->name, path, sizeof(path));
	const struct live_file *l = find_live(c, e->number);
	/* bytes past a sealed size are a torn append nobody refers to */
	uint64_t limit = l && l->sealed ? l->size : UINT64_MAX;
	int r = blob_reader_open(c->env, path, &rd, err, sizeof(err));
	if (!r) {
		r = blob_scan(rd, limit, 1, NULL, NULL, NULL, err, sizeof(err));
		blob_reader_close(rd);
	}
	if (r == BLOB_SCAN_TORN && l && !l->sealed)
		r = 0; /* the file still taking values may end in a partial one */
	if (r == BLOB_SCAN_TORN)
		report(c, path, 0, "ends inside a record");
	else if (r)
		report(c, path, 0, "%s", strip_file_prefix(err, path));
}

static void check_entry(struct check *c, const struct dir_entry *e)
{
	char path[INSPECT_PATH_LEN];
	path_of(c, e->name, path, sizeof(path));
	switch (e->kind) {
	case KIND_TABLE:
		if (in_flight(c, e->number))
			break;
		if (c->have_manifest && !find_live(c, e->number))
			report(c, path, 0, "not referenced by the manifest");
		verify_table(c, e);
		break;
	case KIND_BLOB:
		if (in_flight(c, e->number))
			break;
		if (c->have_manifest && !find_live(c, e->number))
			report(c, path, 0, "not referenced by the manifest");
		verify_blob(c, e);
		break;
	case KIND_LOG:
		if (c->have_manifest && e->number < c->log_number) {
			report(c, path, 0,
			       "not needed: older than the manifest's log number "
			       "%" PRIu64,
			       c->log_number);
			break;
		}
		break; /* judged together (verify_logs) */
	case KIND_MANIFEST:
		if (c->have_manifest && e->number != c->manifest_number && !in_flight(c, e->number))
			report(c, path, 0, "stray manifest: CURRENT names MANIFEST-%06" PRIu64,
			       c->manifest_number);
		if (e->number != c->manifest_number)
			break;
		return; /* the live one was read already */
	case KIND_TEMP:
		report(c, path, 0, "temporary file left behind");
		return;
	default:
		return;
	}
	progress(c, e->size);
}

static void reset(struct check *c)
{
	free_entries(c);
	for (size_t i = 0; i < c->nprobs; i++) {
		free(c->probs[i].file);
		free(c->probs[i].what);
	}
	c->nprobs = 0;
	c->count = 0;
	c->nlive = 0;
	c->have_manifest = c->has_log_number = c->has_next_file = 0;
	c->manifest_number = c->manifest_size = c->log_number = c->next_file = 0;
	memset(&c->mark, 0, sizeof(c->mark));
	c->last_seq = 0;
	c->done = 0;
}

/* One pass over the directory. */
static int check_once(struct check *c)
{
	uint64_t number;
	int r = read_dir(c);
	if (r)
		return r;
	if (read_current(c, &number) == 0) {
		r = replay_manifest(c, number);
		if (r)
			return r;
	}
	if (c->have_manifest)
		check_live_files(c);
	if (c->have_manifest && c->mark.set && c->mark.log >= c->log_number &&
	    c->mark.length > WAL_FILE_HEADER && !find_entry(c, KIND_LOG, c->mark.log)) {
		char path[INSPECT_PATH_LEN];
		log_file_name(path, sizeof(path), c->dir, c->mark.log);
		report(c, path, 0,
		       "missing: the manifest records it synced through offset %" PRIu64
		       " at a clean close",
		       c->mark.length);
	}
	for (size_t i = 0; i < c->nents; i++)
		check_entry(c, &c->ents[i]);
	verify_logs(c);
	return 0;
}

/* Whether CURRENT or the manifest changed since the pass read them. */
static int changed_since(struct check *c)
{
	char path[INSPECT_PATH_LEN];
	struct check now = {.dir = c->dir, .env = c->env};
	uint64_t number, size = 0;
	if (read_current(&now, &number) != 0) {
		reset(&now);
		free(now.probs);
		return 0;
	}
	free(now.probs);
	if (number != c->manifest_number)
		return 1;
	manifest_file_name(path, sizeof(path), c->dir, number);
	return env_file_size(c->env, path, &size) == 0 && size != c->manifest_size;
}

CAIRN_EXPORT int cairn_check(const char *dir, const struct cairn_check_callbacks *cb,
                             uint64_t *problems)
{
	struct check c = {.dir = dir, .env = env_posix(), .cb = cb};
	int r = 0;
	if (problems)
		*problems = 0;
	if (!dir || strlen(dir) > INSPECT_PATH_LEN - 64)
		return CAIRN_EINVAL;
	for (int attempt = 0; attempt < INSPECT_ATTEMPTS; attempt++) {
		reset(&c);
		r = check_once(&c);
		if (r || !c.have_manifest || !changed_since(&c))
			break;
	}
	if (!r && cb && cb->problem)
		for (size_t i = 0; i < c.nprobs; i++)
			cb->problem(cb->ctx, c.probs[i].file, c.probs[i].offset, c.probs[i].what);
	if (!r && problems)
		*problems = c.count;
	reset(&c);
	free(c.probs);
	free(c.ents);
	while (c.nlive)
		drop_live(&c, &c.live[c.nlive - 1]);
	free(c.live);
	return r;
}

/* ------------------------------------------------------------------------ */
/* Dumping one file                                                          */

struct dump {
	void (*emit)(void *ctx, const char *line);
	void *ctx;
	struct buf line;
	int failed; /* out of memory while formatting */
};

static void dump_printf(struct dump *d, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void dump_printf(struct dump *d, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0 || buf_reserve(&d->line, (size_t)n + 1)) {
		d->failed = 1;
		return;
	}
	va_start(ap, fmt);
	vsnprintf(d->line.data + d->line.len, (size_t)n + 1, fmt, ap);
	va_end(ap);
	d->line.len += (size_t)n;
}

/* Printable ASCII as is (a backslash doubled), anything else as \xNN; at most
 * max bytes, then a note of how many were left out. */
static void dump_escaped(struct dump *d, struct slice s, size_t max)
{
	size_t n = s.len < max ? s.len : max;
	if (buf_reserve(&d->line, 4 * n + 1)) {
		d->failed = 1;
		return;
	}
	for (size_t i = 0; i < n; i++) {
		unsigned char ch = (unsigned char)s.data[i];
		char *o = d->line.data + d->line.len;
		if (ch == '\\') {
			memcpy(o, "\\\\", 2);
			d->line.len += 2;
		} else if (ch >= 0x20 && ch < 0x7f) {
			*o = (char)ch;
			d->line.len++;
		} else {
			snprintf(o, 5, "\\x%02x", ch);
			d->line.len += 4;
		}
	}
	if (s.len > n)
		dump_printf(d, "... (%zu bytes)", s.len);
}

static void dump_flush(struct dump *d)
{
	if (buf_reserve(&d->line, 1)) {
		d->failed = 1;
		return;
	}
	d->line.data[d->line.len] = 0;
	d->emit(d->ctx, d->line.data);
	buf_clear(&d->line);
}

static int dump_batch_entry(void *ctx, uint64_t seq, enum value_type type, struct slice key,
                            struct slice value, int64_t time_ns)
{
	struct dump *d = ctx;
	(void)time_ns;
	dump_printf(d, "  @%" PRIu64 " %s '", seq, type == TYPE_DELETION ? "del" : "put");
	dump_escaped(d, key, CAIRN_MAX_KEY_SIZE);
	if (type != TYPE_DELETION) {
		dump_printf(d, "' = '");
		dump_escaped(d, value, DUMP_VALUE_MAX);
	}
	dump_printf(d, "'");
	dump_flush(d);
	return d->failed ? CAIRN_ENOMEM : 0;
}

/* A log note (logscan.h): what it says of the previous log. */
static int dump_note(struct dump *d, struct slice rec, uint64_t off, const char *path, char *err,
                     size_t errlen)
{
	struct log_note n;
	if (logscan_note_decode(rec, &n)) {
		fmt_msg(err, errlen, "%s: record at offset %" PRIu64 ": malformed log note", path,
		        off);
		return CAIRN_ECORRUPT;
	}
	dump_printf(d,
	            "%s note at offset %" PRIu64 ": previous log %06" PRIu64 ", %" PRIu64
	            " bytes, %" PRIu64 " synced%s",
	            n.kind == LOG_NOTE_START ? "start" : "synced", off, n.prev, n.length, n.synced,
	            n.flags & LOG_NOTE_HOLDS_WRITES ? ", holds writes" : "");
	if (n.kind == LOG_NOTE_START)
		dump_printf(d, "; next sequence %" PRIu64, n.seq);
	dump_flush(d);
	return d->failed ? CAIRN_ENOMEM : 0;
}

static int dump_log(struct cairn_env *env, const char *path, struct dump *d, char *err,
                    size_t errlen)
{
	struct wal_reader *rd = NULL;
	int r = wal_reader_open(env, path, WAL_KIND_LOG, &rd, err, errlen);
	if (r)
		return r;
	dump_printf(d, "log %s", path);
	dump_flush(d);
	for (;;) {
		struct slice rec;
		uint64_t off = wal_good_offset(rd);
		r = wal_next(rd, &rec, err, errlen);
		if (r == WAL_EOF) {
			r = 0;
			break;
		}
		if (r == WAL_TORN) {
			dump_printf(d, "torn tail at offset %" PRIu64 " (ignored by recovery)",
			            off);
			dump_flush(d);
			r = 0;
			break;
		}
		if (r < 0)
			break;
		if (rec.len < BATCH_HEADER) {
			fmt_msg(err, errlen,
			        "%s: record at offset %" PRIu64 ": %zu bytes, too short "
			        "for a batch",
			        path, off, rec.len);
			r = CAIRN_ECORRUPT;
			break;
		}
		if (logscan_is_note(rec)) {
			r = dump_note(d, rec, off, path, err, errlen);
			if (r)
				break;
			continue;
		}
		dump_printf(d,
		            "record at offset %" PRIu64 ", %zu bytes: seq %" PRIu64 ", %" PRIu32
		            " entries, time %" PRId64,
		            off, rec.len, batch_seq(rec), batch_count(rec), batch_time(rec));
		dump_flush(d);
		r = batch_iterate(rec, dump_batch_entry, d);
		if (r == CAIRN_ECORRUPT)
			fmt_msg(err, errlen, "%s: record at offset %" PRIu64 ": malformed batch",
			        path, off);
		if (r)
			break;
	}
	wal_reader_close(rd);
	return r;
}

static int dump_table(struct cairn_env *env, const char *path, struct dump *d, char *err,
                      size_t errlen)
{
	struct env_file *f = NULL;
	struct table *t = NULL;
	uint64_t size = 0;
	int r = env_file_size(env, path, &size);
	if (!r)
		r = env_open_read(env, path, &f);
	if (r) {
		char msg[256];
		env_errmsg(env, msg, sizeof(msg));
		fmt_msg(err, errlen, "%s", msg);
		return r;
	}
	r = table_open(f, path, size, NULL, &t, err, errlen);
	if (r)
		return r;
	dump_printf(d, "table %s, %" PRIu64 " bytes", path, size);
	dump_flush(d);
	r = table_dump(t, d->emit, d->ctx);
	if (r == CAIRN_ECORRUPT)
		fmt_msg(err, errlen, "%s: damaged (the error lines of the dump say where)", path);
	else if (r)
		fmt_msg(err, errlen, "%s: %s", path, cairn_strerror(r));
	table_close(t);
	return r;
}

static int dump_current(struct cairn_env *env, const char *path, struct dump *d, char *err,
                        size_t errlen)
{
	char data[256];
	struct env_file *f = NULL;
	size_t got = 0;
	int r = env_open_read(env, path, &f);
	if (!r)
		r = env_pread(f, 0, data, sizeof(data), &got);
	env_close(f);
	if (r) {
		fmt_msg(err, errlen, "%s: %s", path, cairn_strerror(r));
		return r;
	}
	if (got > 0 && data[got - 1] == '\n')
		got--;
	dump_printf(d, "CURRENT names '");
	dump_escaped(d, slice_make(data, got), sizeof(data));
	dump_printf(d, "'");
	dump_flush(d);
	return 0;
}

static int dump_blob_record(void *ctx, const struct blob_record *rec)
{
	struct dump *d = ctx;
	dump_printf(d, "@%" PRIu64 " key '", rec->offset);
	dump_escaped(d, rec->key, SIZE_MAX);
	dump_printf(d, "' length %" PRIu64 " end %" PRIu64 " hcrc 0x%08x", rec->size, rec->end,
	            rec->hcrc);
	dump_flush(d);
	return 0;
}

/* Prints a blob file: the header, then one line per record (every chunk
 * checksum is verified on the way). */
static int dump_blob(struct cairn_env *env, const char *path, struct dump *d, char *err,
                     size_t errlen)
{
	struct blob_reader *rd;
	int r = blob_reader_open(env, path, &rd, err, errlen);
	if (r)
		return r;
	dump_printf(d, "blob file %s: %" PRIu64 " bytes, version %d", path,
	            blob_reader_file_size(rd), BLOB_VERSION);
	dump_flush(d);
	uint64_t good = 0;
	r = blob_scan(rd, UINT64_MAX, 1, dump_blob_record, d, &good, err, errlen);
	if (r == BLOB_SCAN_TORN) {
		dump_printf(d, "torn record at offset %" PRIu64 " (a crash while appending)", good);
		dump_flush(d);
		r = 0;
	}
	blob_reader_close(rd);
	return r;
}

/* The kind by magic number: logs and manifests start with theirs, tables end
 * with theirs. */
static enum file_kind sniff(struct cairn_env *env, const char *path)
{
	static const char table_magic[8] = {'C', 'A', 'I', 'R', 'N', 'S', 'S', 'T'};
	char head[8], tail[8];
	struct env_file *f = NULL;
	uint64_t size = 0;
	size_t got = 0, got_tail = 0;
	enum file_kind kind = KIND_OTHER;
	if (env_open_read(env, path, &f))
		return KIND_OTHER;
	if (!env_size(f, &size) && size >= 8 && !env_pread(f, 0, head, 8, &got) && got == 8 &&
	    !env_pread(f, size - 8, tail, 8, &got_tail) && got_tail == 8) {
		if (memcmp(head, "cairnlog", 8) == 0)
			kind = KIND_LOG;
		else if (memcmp(head, "cairnblb", 8) == 0)
			kind = KIND_BLOB;
		else if (memcmp(head, "cairnman", 8) == 0)
			kind = KIND_MANIFEST;
		else if (memcmp(tail, table_magic, 8) == 0)
			kind = KIND_TABLE;
	}
	env_close(f);
	return kind;
}

CAIRN_EXPORT int cairn_dump_file(const char *path, void (*emit)(void *ctx, const char *line),
                                 void *ctx, char *errbuf, size_t errlen)
{
	struct cairn_env *env = env_posix();
	struct dump d = {.emit = emit, .ctx = ctx};
	uint64_t number;
	if (!path || !emit) {
		fmt_msg(errbuf, errlen, "no file or no output function");
		return CAIRN_EINVAL;
	}
	if (errbuf && errlen)
		errbuf[0] = 0;
	int e = env_exists(env, path);
	if (e != 1) {
		fmt_msg(errbuf, errlen, "%s: no such file", path);
		return e < 0 ? e : CAIRN_ENOENT;
	}
	enum file_kind kind = classify(base_name(path), &number);
	if (kind == KIND_OTHER || kind == KIND_TEMP)
		kind = sniff(env, path);
	int r;
	switch (kind) {
	case KIND_LOG:
		r = dump_log(env, path, &d, errbuf, errlen);
		break;
	case KIND_TABLE:
		r = dump_table(env, path, &d, errbuf, errlen);
		break;
	case KIND_MANIFEST:
		dump_printf(&d, "manifest %s", path);
		dump_flush(&d);
		r = manifest_dump(env, path, emit, ctx, errbuf, errlen);
		break;
	case KIND_CURRENT:
		r = dump_current(env, path, &d, errbuf, errlen);
		break;
	case KIND_BLOB:
		r = dump_blob(env, path, &d, errbuf, errlen);
		break;
	default:
		fmt_msg(errbuf, errlen, "%s: not a cairn log, manifest, table or blob file", path);
		r = CAIRN_EINVAL;
	}
	if (!r && d.failed)
		r = CAIRN_ENOMEM;
	buf_free(&d.line);
	return r;
}
