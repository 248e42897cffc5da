/*
 * db.c - the database handle: open and recovery, the write path with group
 * commit, the read path, snapshots, iterators, statistics and checkpoints.
 * Flushes and compactions live in compact.c.
 *
 * Write path. Writers queue on db->mu; the writer at the head is the leader.
 * It makes room (freezing a full memtable, slowing or stopping when level 0
 * is too deep), merges the batches queued behind it into one log record,
 * then drops the mutex to append (and, if any writer asked, sync) that record
 * once and to insert the entries into the memtable. Only then does it publish
 * the new last sequence, so readers never see a half-applied batch, and wake
 * the writers it carried. A sync request (cairn_sync, the periodic syncer)
 * is a writer with no batch, so syncs and appends never race on the log.
 *
 * Read path. A read takes refs on the memtable, the frozen memtable and the
 * current version under the mutex, then searches them without it.
 *
 * Recovery. Open replays every log at or after the version set's log number
 * into a memtable, writes that memtable as a level-0 table, starts a fresh
 * log and records both in one manifest edit; then the old logs are obsolete.
 * A torn record at the end of the newest log was never acknowledged and is
 * dropped; damage anywhere else is corruption (or, with
 * CAIRN_WAL_TOLERATE_CORRUPT, the end of what is recovered).
 */
#include "db.h"
#include "reserve.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dbiter.h"
#include "logscan.h"

#define GROUP_MAX_BYTES   (1u << 20)
#define GROUP_SMALL_BYTES (128u << 10)

int db_err(struct cairn_db *db, int code, const char *fmt, ...)
{
	if (!db || code == 0)
		return code;
	if (code == CAIRN_ENOSPC)
		db_note_full(db);
	env_mutex_lock(&db->err_mu);
	db->last_err = code;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(db->errmsg, sizeof(db->errmsg), fmt, ap);
	va_end(ap);
	env_mutex_unlock(&db->err_mu);
	return code;
}

/* The table cache's error hook: a table an iterator could not open names
 * itself in the handle's message, as a failed get does. */
static void note_table_error(void *ctx, int code, const char *msg)
{
	db_err(ctx, code, "%s", msg);
}

void db_io_detail(struct cairn_db *db, char *out, size_t len, int code)
{
	out[0] = 0;
	env_errmsg(db->env, out, len);
	if (!out[0])
		fmt_msg(out, len, "%s", cairn_strerror(code));
}

CAIRN_EXPORT const char *cairn_version(void)
{
	return CAIRN_VERSION_STRING;
}

CAIRN_EXPORT const char *cairn_strerror(int code)
{
	switch (code) {
	case CAIRN_OK:
		return "success";
	case CAIRN_ENOTFOUND:
		return "not found";
	case CAIRN_EINVAL:
		return "invalid argument";
	case CAIRN_ECORRUPT:
		return "corruption";
	case CAIRN_EIO:
		return "I/O error";
	case CAIRN_ENOSPC:
		return "no space left on device";
	case CAIRN_ENOMEM:
		return "out of memory";
	case CAIRN_EBUSY:
		return "database locked by another process";
	case CAIRN_EEXIST:
		return "already exists";
	case CAIRN_ENOENT:
		return "database does not exist";
	case CAIRN_ETOOBIG:
		return "too big";
	case CAIRN_EREADONLY:
		return "database is read-only";
	case CAIRN_EFAILED:
		return "database stopped after an earlier error";
	case CAIRN_ENOTSUP:
		return "not supported";
	case CAIRN_EVERSION:
		return "unknown format version";
	default:
		return "unknown error";
	}
}

CAIRN_EXPORT void cairn_free(void *p)
{
	free(p);
}

CAIRN_EXPORT void cairn_options_init(struct cairn_options *o)
{
	memset(o, 0, sizeof(*o));
	o->create_if_missing = 1;
	o->memtable_size = 4u << 20;
	o->block_cache_size = 8u << 20;
	o->max_open_tables = 64;
	o->block_size = 4096;
	o->block_restart_interval = 16;
	o->bloom_bits_per_key = 10;
	o->compression = 1;
	o->table_target_size = 2u << 20;
	o->level1_target_size = 8u << 20;
	o->level_size_ratio = 10;
	o->l0_compaction_trigger = 4;
	o->l0_slowdown_trigger = 8;
	o->l0_stop_trigger = 12;
	o->background_threads = 1;
	o->sync_interval_ms = 1000;
	o->wal_recovery = CAIRN_WAL_STRICT;
	o->blob_threshold = 64u << 10;
	o->blob_file_size = 64u << 20;
	o->blob_gc_ratio = 0.5;
	o->space_reserve = 2u << 20;
}

static int check_options(const struct cairn_options *o, char *err, size_t errlen)
{
#define BAD(cond, what)                                                                            \
	do {                                                                                       \
		if (cond) {                                                                        \
			fmt_msg(err, errlen, "invalid option: %s", what);                          \
			return CAIRN_EINVAL;                                                       \
		}                                                                                  \
	} while (0)
	BAD(o->create_if_missing < 0 || o->create_if_missing > 2,
	    "create_if_missing must be 0, 1 or 2");
	BAD(o->memtable_size < (64u << 10) || o->memtable_size > (1ull << 32),
	    "memtable_size must be between 64 KiB and 4 GiB");
	BAD(o->max_open_tables < 8, "max_open_tables must be at least 8");
	BAD(o->block_size < 256 || o->block_size > (4u << 20),
	    "block_size must be between 256 bytes and 4 MiB");
	BAD(o->block_restart_interval < 1 || o->block_restart_interval > 1024,
	    "block_restart_interval must be between 1 and 1024");
	BAD(o->bloom_bits_per_key < 0 || o->bloom_bits_per_key > 64,
	    "bloom_bits_per_key must be between 0 and 64");
	BAD(o->table_target_size < (64u << 10), "table_target_size must be at least 64 KiB");
	BAD(o->level1_target_size < (64u << 10), "level1_target_size must be at least 64 KiB");
	BAD(o->level_size_ratio < 2 || o->level_size_ratio > 100,
	    "level_size_ratio must be between 2 and 100");
	BAD(o->l0_compaction_trigger < 1, "l0_compaction_trigger must be at least 1");
	BAD(o->l0_slowdown_trigger < o->l0_compaction_trigger,
	    "l0_slowdown_trigger must be >= l0_compaction_trigger");
	BAD(o->l0_stop_trigger < o->l0_slowdown_trigger,
	    "l0_stop_trigger must be >= l0_slowdown_trigger");
	BAD(o->background_threads < 0 || o->background_threads > 64,
	    "background_threads must be between 0 and 64");
	BAD(o->sync_interval_ms < 0, "sync_interval_ms must be >= 0");
	BAD(o->wal_recovery != CAIRN_WAL_STRICT && o->wal_recovery != CAIRN_WAL_TOLERATE_CORRUPT,
	    "wal_recovery must be CAIRN_WAL_STRICT or CAIRN_WAL_TOLERATE_CORRUPT");
	BAD(o->blob_file_size < (1u << 20), "blob_file_size must be at least 1 MiB");
	BAD(!(o->blob_gc_ratio >= 0.01 && o->blob_gc_ratio <= 1.0),
	    "blob_gc_ratio must be between 0.01 and 1");
	BAD(o->space_reserve > (1ull << 30), "space_reserve must be at most 1 GiB");
#undef BAD
	return 0;
}

/* ---- file names in the directory ---- */

enum db_file_kind { FILE_OTHER, FILE_LOG, FILE_TABLE, FILE_MANIFEST, FILE_TEMP, FILE_BLOB };

static enum db_file_kind parse_file_name(const char *name, uint64_t *number)
{
	char *end;
	*number = 0;
	if (strncmp(name, "MANIFEST-", 9) == 0) {
		errno = 0;
		*number = strtoull(name + 9, &end, 10);
		return (!errno && end != name + 9 && !*end) ? FILE_MANIFEST : FILE_OTHER;
	}
	size_t n = strlen(name);
	if (n > 4 && strcmp(name + n - 4, ".tmp") == 0)
		return FILE_TEMP;
	/* LOCK, CURRENT, RESERVE (the space reserve) and anything unknown:
	 * never obsolete, never evidence of a lost CURRENT */
	if (name[0] < '0' || name[0] > '9')
		return FILE_OTHER;
	errno = 0;
	*number = strtoull(name, &end, 10);
	if (errno)
		return FILE_OTHER;
	if (strcmp(end, ".log") == 0)
		return FILE_LOG;
	if (strcmp(end, ".sst") == 0)
		return FILE_TABLE;
	if (strcmp(end, ".blob") == 0)
		return FILE_BLOB;
	return FILE_OTHER;
}

struct dir_scan {
	struct cairn_db *db;
	uint64_t *logs;
	size_t nlogs, cap;
	uint64_t next_file; /* the manifest's next file number */
	int err;
};

static int push_u64(uint64_t **arr, size_t *n, size_t *cap, uint64_t v)
{
	if (arr_room(arr, cap, *n, sizeof(**arr), 8))
		return CAIRN_ENOMEM;
	(*arr)[(*n)++] = v;
	return 0;
}

/* Lists the logs, and makes sure no number present in the directory is ever
 * handed out again. A file at or above the manifest's next file number was
 * named by no record that survived: it is left in place (db->unclaimed) for
 * check and repair, never deleted as obsolete, since the record that named
 * it may be the one that was lost. */
static int collect_logs(void *ctx, const char *name)
{
	struct dir_scan *s = ctx;
	struct cairn_db *db = s->db;
	uint64_t num;
	enum db_file_kind kind = parse_file_name(name, &num);
	if (kind == FILE_OTHER || kind == FILE_TEMP)
		return 0;
	vset_mark_file_number_used(db->vs, num);
	if ((kind == FILE_TABLE || kind == FILE_BLOB) && num >= s->next_file &&
	    push_u64(&db->unclaimed, &db->nunclaimed, &db->cap_unclaimed, num)) {
		s->err = CAIRN_ENOMEM;
		return 1;
	}
	if (kind == FILE_LOG && push_u64(&s->logs, &s->nlogs, &s->cap, num)) {
		s->err = CAIRN_ENOMEM;
		return 1;
	}
	return 0;
}

int db_is_unclaimed(const struct cairn_db *db, uint64_t num)
{
	for (size_t i = 0; i < db->nunclaimed; i++)
		if (db->unclaimed[i] == num)
			return 1;
	return 0;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

struct obsolete_scan {
	struct cairn_db *db;
	uint64_t *live;
	size_t nlive;
	char (*names)[64];
	size_t nnames, cap;
};

static int collect_obsolete(void *ctx, const char *name)
{
	struct obsolete_scan *s = ctx;
	struct cairn_db *db = s->db;
	uint64_t num;
	int keep = 1;
	enum db_file_kind kind = parse_file_name(name, &num);
	if ((kind == FILE_TABLE || kind == FILE_BLOB) && db_is_unclaimed(db, num))
		return 0;
	switch (kind) {
	case FILE_LOG:
		keep = num >= vset_log_number(db->vs) || num == db->log_number ||
		       (db->imm && num == db->imm_log_number);
		break;
	case FILE_TABLE:
		keep = s->nlive &&
		       bsearch(&num, s->live, s->nlive, sizeof(uint64_t), cmp_u64) != NULL;
		for (size_t i = 0; keep == 0 && i < db->npending; i++)
			keep = db->pending_outputs[i] == num;
		break;
	case FILE_MANIFEST:
		/* One this session made may be named by CURRENT on disk even
		 * when its roll failed; one above the live manifest that an
		 * earlier session left is a roll cut short before CURRENT named
		 * it, never live. */
		keep = num == vset_manifest_number(db->vs) || num >= db->session_first_file;
		break;
	case FILE_TEMP:
		keep = 0;
		break;
	case FILE_BLOB:
		keep = db_blob_keep_file(db, num);
		break;
	default:
		break;
	}
	if (keep || strlen(name) >= 64)
		return 0;
	if (s->nnames == s->cap) {
		size_t cap = s->cap ? s->cap * 2 : 16;
		char(*p)[64] = realloc(s->names, cap * sizeof(*p));
		if (!p)
			return 0; /* best effort: the next pass deletes the rest */
		s->names = p;
		s->cap = cap;
	}
	fmt_msg(s->names[s->nnames++], 64, "%s", name);
	return 0;
}

void db_delete_obsolete(struct cairn_db *db)
{
	if (db->opts.read_only || db->bg_error)
		return;
	struct obsolete_scan s = {.db = db};
	if (vset_live_files(db->vs, &s.live, &s.nlive))
		return;
	if (s.nlive)
		qsort(s.live, s.nlive, sizeof(uint64_t), cmp_u64);
	env_list_dir(db->env, db->dir, collect_obsolete, &s);
	/* Freeing the blocks of a compaction's inputs takes milliseconds:
	 * with background threads it is done without mu. A file once obsolete
	 * never becomes live again (numbers are not reused), so the list stays
	 * true; a temporary file could be the manifest's next CURRENT.tmp, and
	 * is removed under mu, where no manifest roll runs. */
	for (int pass = 0; pass < 2; pass++) {
		if (pass == 1 && db->unlocked_io)
			env_mutex_unlock(&db->mu);
		for (size_t i = 0; i < s.nnames; i++) {
			char path[4096];
			uint64_t num;
			enum db_file_kind kind = parse_file_name(s.names[i], &num);
			if ((kind == FILE_TEMP || !db->unlocked_io) != (pass == 0))
				continue;
			if (kind == FILE_TABLE)
				tcache_evict(db->tc, num);
			snprintf(path, sizeof(path), "%s/%s", db->dir, s.names[i]);
			env_unlink(db->env, path);
		}
		if (pass == 1 && db->unlocked_io)
			env_mutex_lock(&db->mu);
	}
	free(s.live);
	free(s.names);
}

/* ---- recovery ---- */

struct replay_ctx {
	struct cairn_db *db;
	struct memtable *mem;
	uint64_t max_seq;
	int flushed;          /* a memtable filled and went to a table mid-replay */
	int torn;             /* the newest log ends in a torn record ... */
	uint64_t torn_log;    /* ... this one */
	uint64_t torn_offset; /* ... whose good part ends here */
	int newest_unusable;  /* the newest log lost its header or start note */
	uint64_t *empty;      /* logs that hold no record */
	size_t nempty, cap_empty;
};

static int replay_entry(void *ctx, uint64_t seq, enum value_type type, struct slice key,
                        struct slice value, int64_t time_ns)
{
	struct replay_ctx *rc = ctx;
	int r = mem_add(rc->mem, seq, type, key, time_ns, value);
	if (r)
		return r;
	if (seq > rc->max_seq)
		rc->max_seq = seq;
	return 0;
}

struct ref_check {
	struct cairn_db *db;
	int lost, r;
	char *err;
	size_t errlen;
};

static int check_entry(void *ctx, uint64_t seq, enum value_type type, struct slice key,
                       struct slice value, int64_t time_ns)
{
	struct ref_check *c = ctx;
	(void)seq, (void)time_ns;
	if (type != TYPE_BLOB)
		return 0;
	c->r = db_blob_check_ref(c->db, key, value, &c->lost, c->err, c->errlen);
	return c->r ? c->r : c->lost;
}

/* Checks the blob references of log record rec before it is replayed. A
 * log record may reach the disk before the blob bytes it refers to when
 * neither was synced: such a record is where the durable history ends
 * (*lost). A malformed batch is left to the replay to report. */
static int check_refs(struct cairn_db *db, struct slice rec, int *lost, char *err, size_t errlen)
{
	struct ref_check c = {.db = db, .err = err, .errlen = errlen};
	batch_iterate(rec, check_entry, &c);
	*lost = c.lost;
	return c.r;
}

static int ref_check_cb(void *ctx, struct slice rec, int *lost, char *err, size_t errlen)
{
	return check_refs(ctx, rec, lost, err, errlen);
}

/* Replays the records of one log that the scan accepted (those before end)
 * into rc->mem, writing level-0 tables into edit whenever the memtable
 * fills. Everything was judged already: a failure here is I/O or memory, or
 * a log that changed since. */
static int replay_log(struct cairn_db *db, uint64_t number, uint64_t end, struct replay_ctx *rc,
                      struct version_edit *edit, char *err, size_t errlen)
{
	char path[4096];
	struct wal_reader *rd;
	log_file_name(path, sizeof(path), db->dir, number);
	int r = end < WAL_FILE_HEADER
	                ? 0
	                : wal_reader_open(db->env, path, WAL_KIND_LOG, &rd, err, errlen);
	if (r || end < WAL_FILE_HEADER)
		return r;
	while (!r && wal_good_offset(rd) < end) {
		struct slice rec;
		r = wal_next(rd, &rec, err, errlen);
		if (r != WAL_RECORD) {
			if (r >= 0)
				fmt_msg(err, errlen, "log '%s' changed while it was recovered",
				        path);
			r = r >= 0 ? CAIRN_EIO : r;
			break;
		}
		if (logscan_is_note(rec)) {
			r = 0; /* judged by the scan; holds no writes */
			continue;
		}
		r = batch_iterate(rec, replay_entry, rc);
		/* Read-only: nothing may be written, so everything stays in
		 * memory; so it does on a full disk (the open's second try),
		 * where the table may find no room. */
		if (!r && !db->opts.read_only && !db->open_released &&
		    mem_usage(rc->mem) >= db->opts.memtable_size) {
			r = db_write_level0(db, rc->mem, edit, err, errlen);
			if (!r) {
				rc->flushed = 1;
				mem_unref(rc->mem);
				r = mem_new(&rc->mem);
			}
		}
	}
	wal_reader_close(rd);
	return r;
}

/* The verdict on every log recovery needs. */
struct log_plan {
	struct logscan_set set;
	size_t replay; /* logs to replay: the first `replay` ones */
	int stop;      /* later logs are dropped (tolerated damage, a crash's cut) */
};

/* Drops every log from i on (keeping i's good part if keep_i). */
static void drop_from(struct cairn_db *db, struct log_plan *p, size_t i, int keep_i)
{
	p->stop = 1;
	p->replay = keep_i ? i + 1 : i;
	for (size_t j = i; j < p->set.n; j++) {
		uint64_t kept = j == i && keep_i ? p->set.logs[j].good : 0;
		if (p->set.logs[j].size > kept)
			atomic_fetch_add(&db->st.wal_bytes_dropped, p->set.logs[j].size - kept);
	}
}

static uint64_t tables_max_seq(const struct version *v)
{
	uint64_t m = 0;
	for (int lv = 0; lv < NUM_LEVELS; lv++)
		for (int i = 0; i < v->nfiles[lv]; i++)
			if (v->files[lv][i]->max_seq > m)
				m = v->files[lv][i]->max_seq;
	return m;
}

/* Decides, reading every log from min_log on and changing nothing, what
 * recovery will replay, cut and keep (logscan.h). Damage is CAIRN_ECORRUPT
 * naming the file and offset, unless wal_recovery tolerates it. */
static int plan_logs(struct cairn_db *db, const struct dir_scan *scan, uint64_t min_log,
                     struct log_plan *p, char *err, size_t errlen)
{
	struct log_mark mark = vset_log_mark(db->vs);
	struct logscan_set *s = &p->set;
	s->logs = calloc(scan->nlogs ? scan->nlogs : 1, sizeof(*s->logs));
	if (!s->logs)
		return CAIRN_ENOMEM;
	s->dir = db->dir;
	s->min_log = min_log;
	s->mark_set = mark.set;
	s->mark_log = mark.log;
	s->mark_length = mark.length;
	s->mark_seq = mark.seq;
	s->manifest_seq = vset_last_sequence(db->vs);
	s->tables_seq = tables_max_seq(vset_current(db->vs));
	s->next_file = vset_loaded_next_file(db->vs);
	s->manifest_number = vset_manifest_number(db->vs);
	for (size_t i = 0; i < scan->nlogs; i++) {
		if (scan->logs[i] < min_log)
			continue;
		s->logs[s->n].number = scan->logs[i];
		s->logs[s->n].newest = i + 1 == scan->nlogs;
		s->n++;
	}
	int r = logscan_all(db->env, s, ref_check_cb, db, err, errlen);
	if (r)
		return r;
	p->replay = s->replay;
	if (s->damaged && db->opts.wal_recovery != CAIRN_WAL_TOLERATE_CORRUPT)
		return s->damaged;
	if (s->damaged && s->n)
		drop_from(db, p, s->bad, s->keep_bad);
	else if (s->cut)
		drop_from(db, p, s->replay - 1, 1);
	return 0;
}

/* Creates log number as *wp. Touches nothing of db but its directory, so
 * it may run without mu. */
static int open_log(struct cairn_db *db, uint64_t number, const struct log_note *start,
                    struct wal_writer **wp, char *err, size_t errlen)
{
	char path[4096], note[LOG_NOTE_SIZE];
	struct env_file *f;
	log_file_name(path, sizeof(path), db->dir, number);
	logscan_note_encode(start, note);
	int r = env_open_write(db->env, path, &f);
	if (!r) {
		r = wal_writer_new(f, WAL_KIND_LOG, wp);
		if (!r)
			r = wal_add(*wp, note, sizeof(note));
		if (r && *wp) {
			wal_writer_close(*wp);
			*wp = NULL;
		}
		if (!r) {
			/* The new log's directory entry must be durable before any
			 * write in it is acknowledged as synced. */
			r = env_sync_dir(db->env, db->dir);
			if (!r)
				return 0;
			wal_writer_close(*wp);
		}
	}
	char detail[256];
	db_io_detail(db, detail, sizeof(detail), r);
	fmt_msg(err, errlen, "cannot start log '%s': %s", path, detail);
	/* A log that never took a record must not stay behind: once its
	 * header is lost in a crash, recovery would take it for a torn log
	 * in the middle of the sequence. */
	env_unlink(db->env, path); /* best effort */
	return r;
}

/* unsynced: bytes of w not known synced (a new log's header and note) */
static void use_log(struct cairn_db *db, uint64_t number, struct wal_writer *w, uint64_t unsynced)
{
	db->log = w;
	db->log_number = number;
	db->log_unsynced = unsynced;
	db->log_size = wal_size(w);
	db->log_holds_writes = 0;
}

static int new_log(struct cairn_db *db, const struct log_note *start, char *err, size_t errlen)
{
	struct wal_writer *w;
	uint64_t number = vset_new_file_number(db->vs);
	struct log_note n = *start;
	n.seq = vset_last_sequence(db->vs) + 1;
	int r = open_log(db, number, &n, &w, err, errlen);
	if (!r)
		use_log(db, number, w, wal_size(w));
	return r;
}

/* Goes on appending to the newest log when replay found it whole (or cut
 * its torn tail), so an open creates no file; starts a new one otherwise. */
static int reuse_or_new_log(struct cairn_db *db, const struct dir_scan *scan, uint64_t min_log,
                            const struct replay_ctx *rc, const struct log_note *start, char *err,
                            size_t errlen)
{
	if (!scan->nlogs)
		return new_log(db, start, err, errlen);
	uint64_t newest = scan->logs[scan->nlogs - 1];
	if (newest < min_log || rc->newest_unusable)
		return new_log(db, start, err, errlen);
	char path[4096];
	struct env_file *f;
	struct wal_writer *w;
	log_file_name(path, sizeof(path), db->dir, newest);
	int r = env_open_append(db->env, path, &f);
	if (!r)
		r = wal_writer_reopen(f, &w);
	if (r) {
		char detail[256];
		db_io_detail(db, detail, sizeof(detail), r);
		fmt_msg(err, errlen, "cannot append to log '%s': %s", path, detail);
		return r;
	}
	/* recovery synced it (sync_kept_logs) */
	use_log(db, newest, w, 0);
	db->log_holds_writes = 1;
	return 0;
}

/* Logs that hold no record are dropped once recovery is done: every open
 * used to leave one behind. */
static void remove_empty_logs(struct cairn_db *db, const struct replay_ctx *rc)
{
	char path[4096];
	int removed = 0;
	for (size_t i = 0; i < rc->nempty; i++) {
		/* the manifest's log number must name a file, so that a missing
		 * one shows (logscan.h) */
		if (rc->empty[i] == db->log_number || rc->empty[i] == vset_log_number(db->vs))
			continue;
		log_file_name(path, sizeof(path), db->dir, rc->empty[i]);
		removed |= env_unlink(db->env, path) == 0;
	}
	if (removed)
		env_sync_dir(db->env, db->dir); /* best effort: they are empty */
}

static int edit_is_empty(const struct version_edit *e)
{
	return !e->has_log_number && !e->nadded && !e->ndeleted && !e->npointers &&
	       !e->ndeleted_blobs && !e->nblobs && !e->ngarbage;
}

/* Whether the logs may stay, holding the replayed memtable. Not when a
 * crash lost writes the manifest had counted (its last sequence is past the
 * logs'): the next write would then start a gap after the logs kept, which
 * recovery takes for a lost log (tests/sim, seed 130). */
static int keep_recovered(struct cairn_db *db, const struct replay_ctx *rc, int oversize)
{
	return !rc->flushed && !atomic_load(&db->st.wal_bytes_dropped) &&
	       (oversize || mem_usage(rc->mem) < db->opts.memtable_size) &&
	       (rc->max_seq == 0 || rc->max_seq == vset_last_sequence(db->vs));
}

/* Makes a log file durable, first cutting it to truncate_to bytes unless
 * that is negative; returns the first error. */
static int sync_log_file(struct cairn_db *db, const char *path, int64_t truncate_to)
{
	struct env_file *f;
	int r = env_open_append(db->env, path, &f);
	if (r)
		return r;
	if (truncate_to >= 0)
		r = env_truncate(f, (uint64_t)truncate_to);
	if (!r)
		r = env_sync(f);
	int c = env_close(f);
	return r ? r : c;
}

/* Cuts a log back to its last good record (or removes it if not even its
 * header survived) and makes that durable. */
static int cut_torn_tail(struct cairn_db *db, uint64_t number, uint64_t good, char *err,
                         size_t errlen)
{
	char path[4096];
	log_file_name(path, sizeof(path), db->dir, number);
	/* A log that lost even its header stays as an empty file: the
	 * manifest's log number may name it, and a missing one is damage. */
	int r = sync_log_file(db, path, good < WAL_FILE_HEADER ? 0 : (int64_t)good);
	if (r) {
		char detail[256];
		db_io_detail(db, detail, sizeof(detail), r);
		fmt_msg(err, errlen, "cannot cut the torn tail of '%s': %s", path, detail);
	}
	return r;
}

/* Syncs the logs recovery keeps. A log a dead process left behind may hold
 * acknowledged writes that never reached the disk; once newer writes are
 * synced in the next log, losing those would leave a state that is no prefix
 * of the history (found by tests/sim, seed 23). */
static int sync_kept_logs(struct cairn_db *db, const struct dir_scan *scan, uint64_t min_log,
                          const struct replay_ctx *rc, char *err, size_t errlen)
{
	char path[4096];
	struct log_mark mark = vset_log_mark(db->vs);
	for (size_t i = 0; i < scan->nlogs; i++) {
		/* a torn log was cut (and synced) or removed already */
		if (scan->logs[i] < min_log || (rc->torn && scan->logs[i] == rc->torn_log))
			continue;
		log_file_name(path, sizeof(path), db->dir, scan->logs[i]);
		/* after a clean close nothing is left unsynced: writing nothing
		 * lets a full disk open */
		uint64_t size = 0;
		if (mark.set && (scan->logs[i] < mark.log ||
		                 (scan->logs[i] == mark.log &&
		                  env_file_size(db->env, path, &size) == 0 && size == mark.length)))
			continue;
		int r = sync_log_file(db, path, -1);
		if (r) {
			char detail[256];
			db_io_detail(db, detail, sizeof(detail), r);
			fmt_msg(err, errlen, "cannot sync log '%s': %s", path, detail);
			return r;
		}
	}
	return 0;
}

/* The start note of a log recovery starts: it names the newest log of the
 * plan (when kept: the newest that holds writes, as an empty one is
 * removed), its length as recovery leaves it (a torn tail is cut), and how
 * much of it is synced (the cut is; kept logs are: sync_kept_logs). */
static struct log_note next_start_note(const struct log_plan *p, int kept)
{
	struct log_note n = {.kind = LOG_NOTE_START};
	if (!p->set.n)
		return n;
	size_t last = p->set.n - 1;
	while (kept && last > 0 && !p->set.logs[last].records)
		last--;
	const struct logscan_log *l = &p->set.logs[last];
	int cut = last < p->replay && l->torn;
	n.prev = l->number;
	n.length = cut ? l->good : l->size;
	n.synced = cut || kept ? n.length : l->strict_to < n.length ? l->strict_to : n.length;
	n.flags = l->records ? LOG_NOTE_HOLDS_WRITES : 0;
	return n;
}

/* Cuts every torn log recovery replays back to its good part, before any
 * newer log exists: if this open is itself cut short, the next recovery
 * must find them as this one leaves them (and the start note of a log this
 * open starts says so). */
static int cut_torn_logs(struct cairn_db *db, const struct log_plan *p, char *err, size_t errlen)
{
	for (size_t i = 0; i < p->replay; i++) {
		const struct logscan_log *l = &p->set.logs[i];
		if (!l->torn)
			continue;
		int r = cut_torn_tail(db, l->number, l->good, err, errlen);
		if (r)
			return r;
	}
	return 0;
}

/* The log a clean close marked must be there (unless it held nothing). */
static int check_mark_log(struct cairn_db *db, const struct dir_scan *scan, char *err,
                          size_t errlen)
{
	struct log_mark mark = vset_log_mark(db->vs);
	if (!mark.set || mark.length <= WAL_FILE_HEADER)
		return 0;
	for (size_t i = 0; i < scan->nlogs; i++)
		if (scan->logs[i] == mark.log)
			return 0;
	char path[4096];
	log_file_name(path, sizeof(path), db->dir, mark.log);
	fmt_msg(err, errlen,
	        "log '%s' is missing: the manifest records it synced through offset %llu "
	        "(sequence %llu) at a clean close",
	        path, (unsigned long long)mark.length, (unsigned long long)mark.seq);
	return CAIRN_ECORRUPT;
}

/* Recovery keeps the logs and the replayed memtable. first_log is the
 * oldest log the plan holds (0: none). */
static int keep_logs(struct cairn_db *db, const struct dir_scan *scan, uint64_t min_log,
                     struct replay_ctx *rc, int stop, const struct log_note *start,
                     uint64_t first_log, struct version_edit *edit, char *err, size_t errlen)
{
	int r = sync_kept_logs(db, scan, min_log, rc, err, errlen);
	if (!r && !stop)
		r = reuse_or_new_log(db, scan, min_log, rc, start, err, errlen);
	else if (!r)
		r = new_log(db, start, err, errlen);
	/* the manifest's log number must name a log that exists (after a
	 * repair it names one never made), or a missing one would not show */
	uint64_t first = first_log ? first_log : db->log_number;
	if (!r && first != min_log) {
		edit->has_log_number = 1;
		edit->log_number = first;
	}
	if (!r && !edit_is_empty(edit))
		r = vset_log_and_apply(db->vs, edit, err, errlen);
	if (!r) {
		db->mem = rc->mem;
		rc->mem = NULL;
		remove_empty_logs(db, rc);
	}
	return r;
}

static int recover(struct cairn_db *db, char *err, size_t errlen)
{
	struct version_edit edit;
	db->recovered_next_file = vset_next_file(db->vs);
	struct dir_scan scan = {.db = db, .next_file = db->recovered_next_file};
	struct replay_ctx rc = {.db = db};
	int stop = 0;
	int r = env_list_dir(db->env, db->dir, collect_logs, &scan);
	if (!r)
		r = scan.err;
	if (r) {
		fmt_msg(err, errlen, "cannot list '%s'", db->dir);
		free(scan.logs);
		return r;
	}
	if (scan.nlogs)
		qsort(scan.logs, scan.nlogs, sizeof(uint64_t), cmp_u64);
	db->session_first_file = vset_next_file(db->vs);
	edit_init(&edit);
	/* before replay can make any reference durable (a level-0 table, a
	 * kept log synced, a cut tail) */
	if (!db->opts.read_only)
		r = db_blob_sync_unsealed(db, err, errlen);
	if (!r)
		r = mem_new(&rc.mem);
	uint64_t min_log = vset_log_number(db->vs);
	/* decide first: every log is judged before anything is replayed, cut,
	 * written or deleted */
	struct log_plan plan = {0};
	if (!r)
		r = check_mark_log(db, &scan, err, errlen);
	if (!r)
		r = plan_logs(db, &scan, min_log, &plan, err, errlen);
	stop = plan.stop;
	for (size_t i = 0; !r && i < plan.replay; i++) {
		const struct logscan_log *l = &plan.set.logs[i];
		if (l->newest)
			rc.newest_unusable =
			        l->good < WAL_FILE_HEADER || (l->version >= 2 && !l->has_start);
		if (l->torn && l->newest) {
			rc.torn = 1;
			rc.torn_log = l->number;
			rc.torn_offset = l->good;
		}
		if (!l->records && !l->corrupt &&
		    push_u64(&rc.empty, &rc.nempty, &rc.cap_empty, l->number))
			r = CAIRN_ENOMEM;
		if (!r)
			r = replay_log(db, l->number, l->good, &rc, &edit, err, errlen);
	}
	uint64_t first_log = plan.set.n ? plan.set.logs[0].number : 0;
	if (!r && rc.max_seq > vset_last_sequence(db->vs))
		vset_set_last_sequence(db->vs, rc.max_seq);
	if (db->opts.read_only) {
		/* Nothing may change on disk: keep what the logs held in memory. */
		if (!r) {
			db->mem = rc.mem;
			rc.mem = NULL;
		}
	}
	if (!r && !db->opts.read_only)
		r = cut_torn_logs(db, &plan, err, errlen);
	int keep = !r && !db->opts.read_only && keep_recovered(db, &rc, 0);
	struct log_note start = next_start_note(&plan, keep);
	struct log_note start_kept = next_start_note(&plan, 1); /* a full disk's */
	free(plan.set.logs);
	if (r || db->opts.read_only) {
		/* nothing more to do */
	} else if (keep) {
		/* The logs stay until this memtable is flushed, so an open that
		 * finds a little data (a command-line put, say) leaves no tiny
		 * table behind. */
		r = keep_logs(db, &scan, min_log, &rc, stop, &start, first_log, &edit, err, errlen);
	} else {
		/* Everything replayed goes to tables and every old log becomes
		 * obsolete: after a tolerated corruption the damaged log must
		 * never be read again, and after a flush during replay its
		 * entries are already in a table. */
		int plain = edit_is_empty(&edit);
		if (mem_entries(rc.mem) > 0)
			r = db_write_level0(db, rc.mem, &edit, err, errlen);
		if (r == CAIRN_ENOSPC && plain && db->open_released && keep_recovered(db, &rc, 1)) {
			/* No room for the table even with the reserve given
			 * up: the logs stay and the memtable stays in memory
			 * over its size, so that a full database still opens;
			 * it is flushed once the disk has room. */
			edit_free(&edit);
			edit_init(&edit);
			r = keep_logs(db, &scan, min_log, &rc, stop, &start_kept, first_log, &edit,
			              err, errlen);
		} else {
			if (!r)
				r = new_log(db, &start, err, errlen);
			if (!r) {
				edit.has_log_number = 1;
				edit.log_number = db->log_number;
				r = vset_log_and_apply(db->vs, &edit, err, errlen);
			}
			if (!r)
				r = mem_new(&db->mem);
		}
	}
	if (rc.mem)
		mem_unref(rc.mem);
	/* Tables written by replay are recorded (or, on failure, garbage):
	 * pending no longer, or no later pass could ever delete them once
	 * compaction drops them (found by tests/sim, seed 121). */
	for (int i = 0; i < edit.nadded; i++)
		db_pending_remove(db, edit.added[i].f->number);
	edit_free(&edit);
	free(scan.logs);
	free(rc.empty);
	return r;
}

/* ---- open and close ---- */

static void db_free(struct cairn_db *db)
{
	if (db->log)
		wal_writer_close(db->log);
	wal_writer_close(db->prev_log);
	if (db->mem)
		mem_unref(db->mem);
	if (db->imm)
		mem_unref(db->imm);
	if (db->vs)
		vset_free(db->vs);
	if (db->tc)
		tcache_free(db->tc);
	if (db->block_cache)
		cache_free(db->block_cache);
	if (db->lock)
		db->env->ops->unlock(db->lock);
	batch_destroy(&db->group);
	db_blob_free(db);
	env_mutex_destroy(&db->blob_mu);
	free(db->pending_outputs);
	free(db->unclaimed);
	free(db->threads);
	env_mutex_destroy(&db->mu);
	env_mutex_destroy(&db->err_mu);
	env_cond_destroy(&db->bg_cv);
	env_cond_destroy(&db->work_cv);
	free(db->dir);
	free(db);
}

struct orphan_scan {
	int n;
	char first[64];
};

static int count_orphan(void *ctx, const char *name)
{
	struct orphan_scan *s = ctx;
	uint64_t num;
	enum db_file_kind kind = parse_file_name(name, &num);
	if (kind == FILE_OTHER || kind == FILE_TEMP)
		return 0;
	/* a creation cut short before CURRENT leaves only the first manifest,
	 * which holds nothing */
	if (kind == FILE_MANIFEST && num == 1)
		return 0;
	if (s->n++ == 0)
		fmt_msg(s->first, sizeof(s->first), "%s", name);
	return 0;
}

/* No CURRENT: a database may still lie here, its CURRENT lost. Creating a
 * new one over its files would delete them as obsolete, so refuse. */
static int refuse_orphan_files(struct cairn_db *db, char *err, size_t errlen)
{
	struct orphan_scan s = {0};
	int r = env_list_dir(db->env, db->dir, count_orphan, &s);
	if (r) {
		fmt_msg(err, errlen, "cannot list '%s'", db->dir);
		return r;
	}
	if (!s.n)
		return 0;
	fmt_msg(err, errlen,
	        "'%s' has no CURRENT file but holds %d database file%s (%s%s): CURRENT was "
	        "lost or the directory is damaged; refusing to create a database over them. "
	        "Run 'cairn repair %s' to rebuild the manifest, or move the files away",
	        db->dir, s.n, s.n == 1 ? "" : "s", s.first, s.n > 1 ? ", ..." : "", db->dir);
	return CAIRN_ECORRUPT;
}

static int prepare_dir(struct cairn_db *db, int *created, char *err, size_t errlen)
{
	char path[4096];
	int exists = env_exists(db->env, db->dir);
	if (exists < 0) {
		fmt_msg(err, errlen, "cannot reach '%s'", db->dir);
		return exists;
	}
	if (!exists) {
		if (db->opts.read_only || db->opts.create_if_missing == 0) {
			fmt_msg(err, errlen, "database '%s' does not exist", db->dir);
			return CAIRN_ENOENT;
		}
		int r = env_mkdir(db->env, db->dir);
		if (r && r != CAIRN_EEXIST) {
			char detail[256];
			db_io_detail(db, detail, sizeof(detail), r);
			fmt_msg(err, errlen, "cannot create database directory: %s", detail);
			return r;
		}
		/* the new directory's own entry must survive a crash too */
		char parent[4096];
		fmt_msg(parent, sizeof(parent), "%s", db->dir);
		char *slash = strrchr(parent, '/');
		if (slash == parent)
			parent[1] = 0;
		else if (slash)
			*slash = 0;
		else
			fmt_msg(parent, sizeof(parent), ".");
		r = env_sync_dir(db->env, parent);
		if (r) {
			fmt_msg(err, errlen, "cannot sync '%s' after creating the database",
			        parent);
			return r;
		}
	}
	if (!db->opts.read_only) {
		snprintf(path, sizeof(path), "%s/LOCK", db->dir);
		int r = env_lock(db->env, path, &db->lock);
		if (r) {
			char detail[256] = "";
			env_errmsg(db->env, detail, sizeof(detail));
			fmt_msg(err, errlen, "%s", detail[0] ? detail : "cannot lock the database");
			return r;
		}
	}
	current_file_name(path, sizeof(path), db->dir);
	int have_current = env_exists(db->env, path);
	if (have_current < 0)
		return have_current;
	if (have_current && db->opts.create_if_missing == 2) {
		fmt_msg(err, errlen, "database '%s' already exists", db->dir);
		return CAIRN_EEXIST;
	}
	if (!have_current) {
		int r = refuse_orphan_files(db, err, errlen);
		if (r)
			return r;
		if (db->opts.read_only || db->opts.create_if_missing == 0) {
			fmt_msg(err, errlen, "'%s' holds no database (no CURRENT file)", db->dir);
			return CAIRN_ENOENT;
		}
		*created = 1;
		return vset_create(db->vs, err, errlen);
	}
	return 0;
}

static int open_once(const char *dir, const struct cairn_options *opts, struct cairn_db **dbp,
                     char *errbuf, size_t errlen, int released);

/* An open that must write (recovery's manifest, a level-0 table, a new log)
 * on a full disk gives up the reserve a handle before it left and tries
 * once more, then keeping a recovered memtable that has no room for its
 * table in memory: a database on a full disk always reopens. */
CAIRN_EXPORT int cairn_open(const char *dir, const struct cairn_options *opts,
                            struct cairn_db **dbp, char *errbuf, size_t errlen)
{
	struct cairn_options defaults;
	char scratch[8], path[4096];
	if (!errbuf) {
		errbuf = scratch;
		errlen = sizeof(scratch);
	}
	if (errlen)
		errbuf[0] = 0;
	if (!dbp || !dir || !*dir) {
		fmt_msg(errbuf, errlen, "cairn_open: missing directory or handle pointer");
		return CAIRN_EINVAL;
	}
	*dbp = NULL;
	if (!opts) {
		cairn_options_init(&defaults);
		opts = &defaults;
	}
	int r = check_options(opts, errbuf, errlen);
	if (r)
		return r;
	r = open_once(dir, opts, dbp, errbuf, errlen, 0);
	if (r != CAIRN_ENOSPC || opts->read_only)
		return r;
	struct cairn_env *env = opts->env ? opts->env : env_posix();
	snprintf(path, sizeof(path), "%s/%s", dir, RESERVE_FILE);
	if (env_exists(env, path) == 1 && env_unlink(env, path))
		return r;
	if (errlen)
		errbuf[0] = 0;
	return open_once(dir, opts, dbp, errbuf, errlen, 1);
}

static int open_once(const char *dir, const struct cairn_options *opts, struct cairn_db **dbp,
                     char *errbuf, size_t errlen, int released)
{
	int r;
	struct cairn_db *db = calloc(1, sizeof(*db));
	if (!db || !(db->dir = strdup(dir))) {
		free(db);
		return CAIRN_ENOMEM;
	}
	size_t dl = strlen(db->dir);
	while (dl > 1 && db->dir[dl - 1] == '/')
		db->dir[--dl] = 0;
	db->opts = *opts;
	db->open_released = released;
	db->env = opts->env ? opts->env : env_posix();
	db->opts.env = db->env;
	env_mutex_init(db->env, &db->mu);
	env_mutex_init(db->env, &db->err_mu);
	env_mutex_init(db->env, &db->blob_mu);
	env_cond_init(db->env, &db->bg_cv);
	env_cond_init(db->env, &db->work_cv);
	db->snapshots.next = db->snapshots.prev = &db->snapshots;
	r = batch_init(&db->group);
	if (!r)
		r = cache_new(db->opts.block_cache_size, &db->block_cache);
	if (!r)
		r = tcache_new(db->env, db->dir, db->opts.max_open_tables, db->block_cache,
		               &db->rstats, &db->tc);
	if (!r)
		tcache_set_error_hook(db->tc, note_table_error, db);
	if (!r)
		r = vset_new(db->env, db->dir, &db->opts, db->tc, &db->vs);
	if (r) {
		fmt_msg(errbuf, errlen, "cannot allocate the database handle");
		db_free(db);
		return r;
	}
	env_mutex_lock(&db->mu);
	int created = 0;
	r = prepare_dir(db, &created, errbuf, errlen);
	if (!r && !created)
		r = vset_recover(db->vs, errbuf, errlen); /* writes nothing if read_only */
	if (!r)
		r = recover(db, errbuf, errlen);
	if (!r && !db->opts.read_only)
		r = db_blob_recover(db, errbuf, errlen);
	if (!r) {
		db_delete_obsolete(db);
		if (!db->opts.read_only)
			db_compact_inline(db);
		if (!db->opts.read_only)
			reserve_open(db);
		db->reserve_releases = (uint64_t)released;
	}
	env_mutex_unlock(&db->mu);
	if (!r && !db->opts.read_only && db->opts.background_threads > 0) {
		/* from now on other threads may wait on mu: manifest edits are
		 * written without it */
		vset_set_mutex(db->vs, &db->mu);
		db->unlocked_io = 1;
		r = db_bg_start(db);
	}
	if (r) {
		if (!errbuf[0])
			fmt_msg(errbuf, errlen, "%s", cairn_strerror(r));
		db_bg_stop(db);
		db_free(db);
		return r;
	}
	*dbp = db;
	return 0;
}

static int do_write(struct cairn_db *db, const struct cairn_batch *b, unsigned flags);

/* Records in the manifest that the log is synced through its end, so the
 * next recovery knows nothing in it can have been torn. Skipped when the
 * manifest already says so (an open that changed nothing writes nothing);
 * when it fails the next open simply recovers as after a crash. */
static void mark_clean_close(struct cairn_db *db)
{
	char err[256];
	env_mutex_lock(&db->mu);
	if (db->log && !db->bg_error && !db->log_unsynced) {
		struct log_mark now = {.set = 1,
		                       .log = db->log_number,
		                       .length = wal_size(db->log),
		                       .seq = vset_last_sequence(db->vs)};
		struct log_mark had = vset_log_mark(db->vs);
		/* the file header of a log no write synced yet, too */
		if ((!had.set || had.log != now.log || had.length != now.length ||
		     had.seq != now.seq) &&
		    wal_sync(db->log) == 0) {
			struct version_edit e;
			edit_init(&e);
			e.mark = now;
			vset_log_and_apply(db->vs, &e, err, sizeof(err));
			edit_free(&e);
		}
		/* A close that rolled the manifest leaves no stray one behind;
		 * but after a failed manifest write its tail may name files the
		 * handle took for garbage, and only the next open can tell
		 * (tests/sim, seed 123). */
		if (!vset_failed(db->vs))
			db_delete_obsolete(db);
	}
	env_mutex_unlock(&db->mu);
}

CAIRN_EXPORT int cairn_close(struct cairn_db *db)
{
	if (!db)
		return 0;
	int r = 0;
	if (!db->opts.read_only) {
		/* a clean close leaves no blob file for the next open to scan */
		db_blob_seal_active(db);
		/* A failed handle syncs nothing: the caller must not take
		 * its unsynced writes for durable (tests/sim, seed 1223). */
		r = do_write(db, NULL, CAIRN_SYNC);
	}
	db_bg_stop(db);
	if (!r && !db->opts.read_only)
		mark_clean_close(db);
	db_free(db);
	return r;
}

CAIRN_EXPORT int cairn_errmsg(struct cairn_db *db, char *buf, size_t len)
{
	if (!db)
		return 0;
	env_mutex_lock(&db->err_mu);
	int code = db->last_err;
	fmt_msg(buf, len, "%s", db->errmsg);
	env_mutex_unlock(&db->err_mu);
	return code;
}

/* ---- the write path ---- */

/* Internal write flag: the leader freezes the memtable (cairn_flush). Only
 * the leader may switch the memtable and the log, because it alone appends
 * to them with the mutex dropped. */
#define DB_FREEZE (1u << 31)

/* With mu held, as the leader: freezes mem as imm and starts a new log.
 * imm must be NULL. The old log is not synced here (that sync wrote every
 * byte of every log to the disk): the new log starts with a note of the old
 * one's length and how much of it is synced, and the old one is synced
 * before the new one's first sync (sync_log_with_prev), so a crash can
 * never keep later writes that were synced and lose earlier ones; recovery
 * drops a later log when an earlier one came back shorter than its start
 * note says (logscan.h). A failed sync is fatal (see do_write); a full disk
 * while creating the new log changes nothing and is not.
 *
 * In threaded mode the creation of the new log (a directory sync) runs
 * with mu dropped: the leader alone touches the log, mem and imm, and the
 * writers queued behind it wait for it. */
static int switch_memtable(struct cairn_db *db)
{
	char err[256];
	struct memtable *fresh;
	int r = mem_new(&fresh);
	if (r)
		return db_err(db, r, "cannot allocate a memtable");
	struct wal_writer *old = db->log, *w = NULL;
	uint64_t old_number = db->log_number;
	uint64_t number = vset_new_file_number(db->vs);
	int threaded = db->opts.background_threads > 0;
	/* imm is gone, so the log before the old one is normally obsolete;
	 * if it is still needed it is synced now, so that at most one log
	 * waits for its sync */
	int sync_prev = db->prev_log && db->prev_log_unsynced &&
	                db->prev_log_number >= vset_log_number(db->vs);
	struct log_note note = {.kind = LOG_NOTE_START,
	                        .flags = db->log_holds_writes ? LOG_NOTE_HOLDS_WRITES : 0,
	                        .seq = vset_last_sequence(db->vs) + 1,
	                        .prev = old_number,
	                        .length = wal_size(old),
	                        .synced = wal_size(old) - db->log_unsynced};
	/* The blob file is synced, though the log is not: the flush of the
	 * frozen memtable makes its references durable in a table (and a
	 * blob file must be before any log that refers to it). Without mu,
	 * which blob_mu precedes; inline mode drops mu for that only, at a
	 * point where the leader has changed nothing yet. A blob file with
	 * nothing unsynced costs nothing. */
	env_mutex_unlock(&db->mu);
	r = db_blob_sync_active(db);
	if (!threaded)
		env_mutex_lock(&db->mu);
	if (r) {
		fmt_msg(err, sizeof(err), "%s", "the blob file sync before the log sync failed");
	} else if (sync_prev) {
		r = wal_sync(db->prev_log);
		atomic_fetch_add(&db->st.wal_syncs, 1);
		if (r) {
			char detail[256];
			db_io_detail(db, detail, sizeof(detail), r);
			fmt_msg(err, sizeof(err), "sync of log %06llu.log failed: %s",
			        (unsigned long long)db->prev_log_number, detail);
		}
	}
	int log_r = r ? 0 : open_log(db, number, &note, &w, err, sizeof(err));
	if (threaded)
		env_mutex_lock(&db->mu);
	if (r) {
		mem_unref(fresh);
		db_set_bg_error(db, r, err);
		return db_err(db, r, "%s", err);
	}
	if (log_r) {
		mem_unref(fresh);
		if (log_r != CAIRN_ENOSPC)
			db_set_bg_error(db, log_r, err);
		return db_err(db, log_r, "cannot switch to a new log: %s", err);
	}
	wal_writer_close(db->prev_log);
	db->prev_log = old;
	db->prev_log_number = old_number;
	db->prev_log_unsynced = db->log_unsynced != 0;
	use_log(db, number, w, wal_size(w));
	db->imm = db->mem;
	db->imm_log_number = old_number;
	db->mem = fresh;
	db_schedule_work(db);
	return 0;
}

/* With mu held, as the leader: whether waiting for the background thread
 * could wait forever. A blob collection's write queues behind the leader;
 * while the background thread runs one, it cannot flush or compact until
 * the leader is done, so the leader must do the work it would wait for. */
static int bg_cannot_help(const struct cairn_db *db)
{
	return db->opts.background_threads == 0 || db->blob_gc_running;
}

/* With mu held: waits until imm is gone (flushing it inline when the
 * background thread cannot). */
static int wait_for_imm(struct cairn_db *db)
{
	while (db->imm) {
		if (db->bg_error)
			return db_err(db, CAIRN_EFAILED, "writes stopped: %s", db->bg_errmsg);
		/* the threads that would flush it are gone (a reclaim pass
		 * racing a close) */
		if (db->shutting_down && db->opts.background_threads > 0)
			return db_err(db, CAIRN_EBUSY, "the handle is closing");
		/* the flush ran out of disk space and waits for room: fail
		 * rather than wake it again and again */
		if (db->bg_nospace && db->opts.background_threads > 0)
			return db_err(db, CAIRN_ENOSPC,
			              "no space left on device: the memtable cannot be written "
			              "to a table until space is freed");
		if (bg_cannot_help(db) && !db->flushing) {
			int r = db_flush_imm(db);
			if (r)
				return r;
			continue;
		}
		db_schedule_work(db);
		env_cond_wait(&db->bg_cv, &db->mu);
	}
	return 0;
}

/* With mu held, as the leader: freezes the memtable if it holds anything. */
static int freeze_for_flush(struct cairn_db *db)
{
	int r = wait_for_imm(db);
	if (r)
		return r;
	if (db->bg_error)
		return db_err(db, CAIRN_EFAILED, "writes stopped: %s", db->bg_errmsg);
	if (mem_entries(db->mem) == 0)
		return 0;
	return switch_memtable(db);
}

/* With mu held, as the leader: makes the memtable able to take size more
 * bytes, freezing it and starting a new log when it is full, and slowing or
 * stopping the writer while level 0 is too deep. */
static int make_room(struct cairn_db *db, size_t size, int gc)
{
	int allow_delay = 1;
	int inline_mode = db->opts.background_threads == 0;
	for (;;) {
		if (db->bg_error)
			return db_err(db, CAIRN_EFAILED, "writes stopped: %s", db->bg_errmsg);
		int l0 = vset_current(db->vs)->nfiles[0];
		if (!inline_mode && allow_delay && l0 >= db->opts.l0_slowdown_trigger &&
		    l0 < db->opts.l0_stop_trigger) {
			/* A delay that grows with the depth of level 0 spreads the
			 * stall over many writes instead of stopping one dead. */
			uint64_t us = 1000u * (uint64_t)(l0 - db->opts.l0_slowdown_trigger + 1);
			db_schedule_work(db);
			env_mutex_unlock(&db->mu);
			env_sleep_us(db->env, us);
			env_mutex_lock(&db->mu);
			atomic_fetch_add(&db->st.slowdowns, 1);
			atomic_fetch_add(&db->st.slowdown_micros, us);
			allow_delay = 0;
			continue;
		}
		if (mem_entries(db->mem) == 0 ||
		    mem_usage(db->mem) + size <= db->opts.memtable_size)
			return 0;
		if ((gc || db->blob_gc_running) && !inline_mode &&
		    (db->imm || l0 >= db->opts.l0_stop_trigger)) {
			/* A collection's write may run on the background thread
			 * that would make the room: it flushes itself and never
			 * waits for level 0, or it would wait for itself. So does
			 * any leader while a collection runs, since that
			 * collection's write may be queued behind it (fsstress
			 * -p 8 on cairnfs hung this way). */
			if (db->imm && !db->flushing) {
				int r = db_flush_imm(db);
				if (r)
					return r;
				continue;
			}
			if (!db->imm)
				break;
			env_cond_wait(&db->bg_cv, &db->mu);
			continue;
		}
		if (db->imm || l0 >= db->opts.l0_stop_trigger) {
			if (inline_mode) {
				int had_imm = db->imm != NULL;
				int r = had_imm ? db_flush_imm(db) : db_compact_inline(db);
				if (r)
					return r;
				if (!had_imm && vset_current(db->vs)->nfiles[0] >= l0)
					break; /* compaction cannot help: do not spin */
				continue;
			}
			if (db->bg_nospace)
				return db_err(
				        db, CAIRN_ENOSPC,
				        "no space left on device: the full memtable cannot be "
				        "written to a table until space is freed");
			uint64_t t0 = env_mono_ns(db->env);
			db_schedule_work(db);
			env_cond_wait(&db->bg_cv, &db->mu);
			atomic_fetch_add(&db->st.stops, 1);
			atomic_fetch_add(&db->st.stop_micros, (env_mono_ns(db->env) - t0) / 1000);
			continue;
		}
		break;
	}
	return switch_memtable(db);
}

struct insert_ctx {
	struct memtable *mem;
	uint64_t base_seq;  /* sequence of this batch's first entry */
	uint64_t batch_seq; /* the sequence the batch's own header holds */
	int64_t time_ns;
	uint64_t puts, deletes;
};

static int insert_entry(void *ctx, uint64_t seq, enum value_type type, struct slice key,
                        struct slice value, int64_t time_ns)
{
	struct insert_ctx *ic = ctx;
	(void)time_ns; /* the group's commit time replaces the batch's own */
	if (type == TYPE_DELETION)
		ic->deletes++;
	else
		ic->puts++;
	return mem_add(ic->mem, ic->base_seq + (seq - ic->batch_seq), type, key, ic->time_ns,
	               value);
}

/* Undoes a failed log append when the file can be cut back to its size
 * before the append: then the log stays well formed and the database can
 * take writes again once the disk has room. */
static int rollback_log(struct cairn_db *db, uint64_t size)
{
	return wal_truncate(db->log, size);
}

/* As the leader, with mu dropped, once the log before the current one is
 * synced: appends a note saying so, which makes recovery hold that log
 * strict to its end (logscan.h). */
static int note_prev_synced(struct cairn_db *db)
{
	uint64_t len = wal_size(db->prev_log);
	struct log_note n = {.kind = LOG_NOTE_SYNCED,
	                     .flags = LOG_NOTE_HOLDS_WRITES,
	                     .prev = db->prev_log_number,
	                     .length = len,
	                     .synced = len};
	char note[LOG_NOTE_SIZE];
	logscan_note_encode(&n, note);
	return wal_add(db->log, note, sizeof(note));
}

static int do_write(struct cairn_db *db, const struct cairn_batch *b, unsigned flags)
{
	return db_do_write(db, b, flags, NULL);
}

int db_do_write(struct cairn_db *db, const struct cairn_batch *b, unsigned flags,
                struct db_gc_filter *gc)
{
	if (db->opts.read_only)
		return db_err(db, CAIRN_EREADONLY, "the database was opened read-only");
	struct db_writer w = {.batch = b, .flags = flags, .gc = gc};
	env_cond_init(db->env, &w.cv);
	env_mutex_lock(&db->mu);
	/* The queue links writers' stack frames: each is unlinked by the
	 * leader before its owner returns. */
	if (db->wq_tail)
		db->wq_tail->next = &w;
	else
		db->wq_head = &w; // cppcheck-suppress autoVariables
	db->wq_tail = &w;         // cppcheck-suppress autoVariables
	while (!w.done && db->wq_head != &w)
		env_cond_wait(&w.cv, &db->mu);
	if (w.done) {
		env_mutex_unlock(&db->mu);
		env_cond_destroy(&w.cv);
		return w.status;
	}

	/* This writer leads the group. */
	int filter_r = 0, shared = 0;
	struct cairn_batch resolved = {0};
	if (flags & DB_GC) {
		/* As leader, nobody else can write: decide now which of the
		 * collection's entries still refer to what it copied. */
		env_mutex_unlock(&db->mu);
		filter_r = db_blob_gc_filter(db, gc, &b);
		env_mutex_lock(&db->mu);
		w.batch = b;
	} else if (flags & DB_COPY) {
		/* Copies read the state the batch applies to: as leader,
		 * nothing can change it until this batch is in. */
		env_mutex_unlock(&db->mu);
		filter_r = db_blob_resolve_copies(db, b, &resolved, &shared);
		env_mutex_lock(&db->mu);
		w.batch = b = &resolved;
	}
	size_t first = b ? b->rep.len : 0;
	int has_batch = b && b->count;
	int r;
	if (filter_r && (flags & DB_COPY))
		r = filter_r; /* the message names the key */
	else if (filter_r)
		r = db_err(db, filter_r, "blob collection: cannot check the current values");
	else if (flags & DB_FREEZE)
		r = freeze_for_flush(db);
	else if (has_batch)
		r = make_room(db, first, (flags & DB_GC) != 0);
	else if (db->bg_error)
		r = db_err(db, CAIRN_EFAILED, "writes stopped: %s", db->bg_errmsg);
	else
		r = 0;
	struct db_writer *last = &w;
	if (!r) {
		size_t limit =
		        first <= GROUP_SMALL_BYTES ? first + GROUP_SMALL_BYTES : GROUP_MAX_BYTES;
		size_t total = 0;
		int nparts = 1, sync = 0;
		uint32_t count = 0;
		for (struct db_writer *x = &w; x; x = x->next) {
			size_t n = x->batch ? x->batch->rep.len - BATCH_HEADER : 0;
			if (x != &w && total + n > limit)
				break;
			/* A leader that made no room carries no batches; a freeze
			 * must lead its own group. */
			if (x != &w && ((!has_batch && x->batch && x->batch->count) ||
			                (x->flags & (DB_FREEZE | DB_GC | DB_COPY)) ||
			                (flags & (DB_GC | DB_COPY))))
				break;
			total += n;
			sync |= (x->flags & CAIRN_SYNC) != 0;
			if (x->batch && x->batch->count) {
				count += x->batch->count;
				nparts++;
			}
			last = x;
		}
		struct slice *parts = calloc((size_t)nparts, sizeof(*parts));
		char header[BATCH_HEADER];
		uint64_t seq = vset_last_sequence(db->vs) + 1;
		int64_t now = env_now_ns(db->env);
		struct memtable *mem = db->mem;
		uint64_t unsynced = db->log_unsynced;
		uint64_t log_size = wal_size(db->log);
		int prev_pending = db->prev_log && db->prev_log_unsynced;
		int prev_needed = prev_pending && db->prev_log_number >= vset_log_number(db->vs);
		if (!parts) {
			r = db_err(db, CAIRN_ENOMEM, "cannot allocate a log record");
		} else if (seq + count > MAX_SEQUENCE) {
			r = db_err(db, CAIRN_EFAILED, "sequence numbers exhausted");
		}
		env_mutex_unlock(&db->mu);

		uint64_t wal_bytes = 0;
		int sync_failed = 0, blob_failed = 0, prev_failed = 0, attempted = !r;
		if (!r && count) {
			enc_fixed64(header, seq);
			enc_fixed32(header + 8, count);
			enc_fixed64(header + 12, (uint64_t)now);
			int np = 0;
			parts[np++] = slice_make(header, BATCH_HEADER);
			for (struct db_writer *x = &w;; x = x->next) {
				if (x->batch && x->batch->count)
					parts[np++] = slice_make(x->batch->rep.data + BATCH_HEADER,
					                         x->batch->rep.len - BATCH_HEADER);
				if (x == last)
					break;
			}
			r = wal_addv(db->log, parts, np);
		}
		if (!r && sync && (count || unsynced)) {
			/* Every batch of the group appended its large values
			 * before its record: they become durable first. */
			r = db_blob_sync_active(db);
			blob_failed = r != 0;
			if (!r && prev_needed) {
				/* before the first sync of this log (see
				 * switch_memtable) */
				r = wal_sync(db->prev_log);
				atomic_fetch_add(&db->st.wal_syncs, 1);
				prev_failed = sync_failed = r != 0;
				if (!r)
					r = note_prev_synced(db);
			}
			if (!r) {
				r = wal_sync(db->log);
				atomic_fetch_add(&db->st.wal_syncs, 1);
				sync_failed = r != 0;
			}
		}
		wal_bytes = wal_size(db->log) - log_size;
		uint64_t next_seq = seq;
		for (struct db_writer *x = &w; !r && count; x = x->next) {
			if (x->batch && x->batch->count) {
				struct insert_ctx ic = {
				        mem, next_seq, batch_seq(buf_slice(&x->batch->rep)),
				        now, 0,        0};
				r = batch_iterate(buf_slice(&x->batch->rep), insert_entry, &ic);
				next_seq += x->batch->count;
				atomic_fetch_add(&db->st.puts, ic.puts);
				atomic_fetch_add(&db->st.deletes, ic.deletes);
				atomic_fetch_add(&db->st.batches, 1);
				atomic_fetch_add(&db->st.user_bytes_written, x->batch->user_bytes);
			}
			if (x == last)
				break;
		}
		free(parts);

		env_mutex_lock(&db->mu);
		if (count) {
			atomic_fetch_add(&db->st.wal_bytes_written, wal_bytes);
			atomic_fetch_add(&db->st.wal_group_commits, 1);
		}
		/* A failed sync is never retried: the kernel may have dropped
		 * the dirty pages it could not write, so a later sync could
		 * succeed over lost data. */
		if (r && !attempted) {
			/* refused before touching the log: nothing to undo */
		} else if (r == CAIRN_ENOSPC && !sync_failed && rollback_log(db, log_size) == 0) {
			db_err(db, r,
			       "log '%06llu.log': no space left on device; nothing was written",
			       (unsigned long long)db->log_number);
		} else if (blob_failed) {
			/* the handle failed with the blob file's message */
			db_err(db, r, "writes stopped: %s", db->bg_errmsg);
		} else if (r) {
			char detail[256], msg[400];
			db_io_detail(db, detail, sizeof(detail), r);
			fmt_msg(msg, sizeof(msg), "%s of log %06llu.log failed: %s",
			        sync_failed ? "sync" : "write",
			        (unsigned long long)(prev_failed ? db->prev_log_number
			                                         : db->log_number),
			        detail);
			db_set_bg_error(db, r, msg);
			db_err(db, r, "%s", msg);
		} else {
			if (count)
				vset_set_last_sequence(db->vs, seq + count - 1);
			db->log_unsynced = sync ? 0 : unsynced + wal_bytes;
			db->log_size = log_size + wal_bytes;
			db->log_holds_writes |= count != 0;
			if (sync && prev_pending) {
				/* synced, or obsolete: no longer waits */
				wal_writer_close(db->prev_log);
				db->prev_log = NULL;
				db->prev_log_unsynced = 0;
			}
		}
	}
	for (;;) {
		struct db_writer *h = db->wq_head;
		db->wq_head = h->next;
		if (h != &w) {
			h->status = r;
			h->done = 1;
			env_cond_signal(&h->cv);
		}
		if (h == last)
			break;
	}
	if (db->wq_head)
		env_cond_signal(&db->wq_head->cv);
	else
		db->wq_tail = NULL;
	if (shared) {
		db->blob_copies_done++;
		env_cond_signal(&db->work_cv); /* a collection may wait for it */
	}
	env_mutex_unlock(&db->mu);
	env_cond_destroy(&w.cv);
	if (flags & DB_COPY)
		batch_destroy(&resolved);
	return r;
}

/* The user's write path: large values go to the shared blob file (synced
 * with the log, by db_blob_sync_active) before the batch, now holding
 * references, joins the queue. */
static int write_user_batch(struct cairn_db *db, const struct cairn_batch *b, unsigned flags)
{
	if (db->opts.read_only)
		return db_err(db, CAIRN_EREADONLY, "the database was opened read-only");
	int r = db_reserve_check(db, b);
	for (int retry = 0; !r; retry++) {
		struct cairn_batch priv;
		const struct cairn_batch *use = b;
		r = db_blob_convert(db, b, &priv, &use);
		if (!r)
			r = do_write(db, use, use->ncopy ? flags | DB_COPY : flags);
		if (use != b)
			batch_destroy(&priv);
		if (r != CAIRN_ENOSPC)
			break;
		/* A full disk: a write that frees space may use the reserve
		 * (one given up by another thread meanwhile too); nothing
		 * else may. Never after a failed sync (the handle failed):
		 * that write may be in the log, and its error must stand. */
		env_mutex_lock(&db->mu);
		int again = !db->bg_error && retry < 2 && reserve_frees(b) &&
		            (reserve_release(db) || (retry == 0 && !db->reserve_held));
		env_mutex_unlock(&db->mu);
		if (!again)
			break;
		r = 0;
	}
	return r;
}

int db_reserve_check(struct cairn_db *db, const struct cairn_batch *b)
{
	env_mutex_lock(&db->mu);
	int ok = reserve_admits(db, b);
	env_mutex_unlock(&db->mu);
	if (ok)
		return 0;
	return db_err(db, CAIRN_ENOSPC,
	              "no space left on device: the %llu-byte space reserve of '%s' is given "
	              "up until deletes free room; until then only writes that free space are "
	              "taken (a smaller space_reserve, or 0, lets a small disk take writes)",
	              (unsigned long long)db->opts.space_reserve, db->dir);
}

CAIRN_EXPORT int cairn_write(struct cairn_db *db, const struct cairn_batch *b, unsigned flags)
{
	if (!db || !b)
		return CAIRN_EINVAL;
	if (b->count == 0 && !(flags & CAIRN_SYNC))
		return 0;
	return write_user_batch(db, b, flags);
}

static int write_one(struct cairn_db *db, enum value_type type, const void *key, size_t klen,
                     const void *val, size_t vlen, unsigned flags)
{
	if (!db || (!key && klen) || (!val && vlen))
		return CAIRN_EINVAL;
	struct cairn_batch b;
	int r = batch_init(&b);
	if (!r)
		r = type == TYPE_VALUE ? cairn_batch_put(&b, key, klen, val, vlen)
		                       : cairn_batch_delete(&b, key, klen);
	if (r == CAIRN_ETOOBIG)
		db_err(db, r, "key of %zu bytes (limit %u) or value of %zu bytes (limit %u)", klen,
		       CAIRN_MAX_KEY_SIZE, vlen, CAIRN_MAX_VALUE_SIZE);
	if (!r)
		r = write_user_batch(db, &b, flags);
	batch_destroy(&b);
	return r;
}

CAIRN_EXPORT int cairn_put(struct cairn_db *db, const void *key, size_t klen, const void *val,
                           size_t vlen, unsigned flags)
{
	return write_one(db, TYPE_VALUE, key, klen, val ? val : "", vlen, flags);
}

CAIRN_EXPORT int cairn_delete(struct cairn_db *db, const void *key, size_t klen, unsigned flags)
{
	return write_one(db, TYPE_DELETION, key, klen, "", 0, flags);
}

CAIRN_EXPORT int cairn_sync(struct cairn_db *db)
{
	if (!db)
		return CAIRN_EINVAL;
	return do_write(db, NULL, CAIRN_SYNC);
}

/* ---- the read path ---- */

/* What a read holds while it searches without the mutex. */
struct read_refs {
	struct memtable *mem, *imm;
	struct version *v;
	uint64_t seq;
	/* Registered in the snapshot list while a read without a snapshot may
	 * still open blob files, so collection keeps the files it reads. */
	struct cairn_snapshot *pin;
	/* the table a lookup searched in vain, spent when the refs are dropped */
	struct seek_charge charge;
};

/* With mu held: links s at the tail (the newest end) of the snapshot list. */
static void snapshot_link(struct cairn_db *db, struct cairn_snapshot *s)
{
	s->prev = db->snapshots.prev;
	s->next = &db->snapshots;
	s->prev->next = s;
	db->snapshots.prev = s;
}

/* Drops a pin taken by refs_take; files collected meanwhile may go now. */
static void refs_unpin(struct cairn_db *db, struct read_refs *rr)
{
	if (!rr->pin)
		return;
	env_mutex_lock(&db->mu);
	rr->pin->prev->next = rr->pin->next;
	rr->pin->next->prev = rr->pin->prev;
	db_blob_reap(db);
	env_mutex_unlock(&db->mu);
	rr->pin = NULL;
}

/* Takes the refs; with rr->pin set and no snapshot, also registers the pin
 * at the read's sequence (a snapshot's reads are protected by it). */
static void refs_take(struct cairn_db *db, const struct cairn_snapshot *snap, struct read_refs *rr)
{
	env_mutex_lock(&db->mu);
	if (rr->pin && snap)
		rr->pin = NULL;
	if (rr->pin) {
		rr->pin->seq = vset_last_sequence(db->vs);
		snapshot_link(db, rr->pin);
	}
	rr->mem = db->mem;
	mem_ref(rr->mem);
	rr->imm = db->imm;
	if (rr->imm)
		mem_ref(rr->imm);
	rr->v = vset_current(db->vs);
	version_ref(rr->v);
	rr->seq = snap ? snap->seq : vset_last_sequence(db->vs);
	env_mutex_unlock(&db->mu);
}

static void refs_drop(struct cairn_db *db, struct read_refs *rr)
{
	env_mutex_lock(&db->mu);
	/* a compaction found this way runs on the threads; inline mode picks
	 * it at its next fixed point, never in a read */
	if (version_charge_seek(db->vs, &rr->charge) && db->opts.background_threads > 0)
		db_schedule_work(db);
	mem_unref(rr->mem);
	if (rr->imm)
		mem_unref(rr->imm);
	version_unref(rr->v);
	env_mutex_unlock(&db->mu);
}

/* Finds the newest entry of key visible at the snapshot. On success *ival
 * holds the internal value (time + bytes, or time + blob reference when
 * *type is TYPE_BLOB) and *seq its sequence. pin (may be NULL) is registered
 * as refs_take says and stays registered after the call: release it with
 * refs_unpin. */
static int lookup(struct cairn_db *db, const struct cairn_snapshot *snap, const void *key,
                  size_t klen, struct buf *ival, uint64_t *seq, enum value_type *type,
                  struct read_refs *pin, int count)
{
	/* the pin is registered only once refs_take has run */
	struct read_refs rr = {.pin = pin ? pin->pin : NULL};
	if (pin)
		pin->pin = NULL;
	if (!db || (!key && klen))
		return CAIRN_EINVAL;
	if (klen > CAIRN_MAX_KEY_SIZE)
		return db_err(db, CAIRN_ETOOBIG, "key of %zu bytes is over the limit of %u", klen,
		              CAIRN_MAX_KEY_SIZE);
	struct slice ukey = slice_make(key ? key : "", klen);
	struct slice found;
	if (count)
		atomic_fetch_add(&db->st.gets, 1);
	refs_take(db, snap, &rr);
	if (pin)
		pin->pin = rr.pin;
	enum mem_get_result m = mem_get(rr.mem, ukey, rr.seq, &found, seq);
	if (m == MEM_ABSENT && rr.imm)
		m = mem_get(rr.imm, ukey, rr.seq, &found, seq);
	int r;
	*type = m == MEM_BLOB ? TYPE_BLOB : TYPE_VALUE;
	if (m == MEM_FOUND || m == MEM_BLOB) {
		r = buf_set(ival, found.data, found.len);
	} else if (m == MEM_DELETED) {
		r = CAIRN_ENOTFOUND;
	} else {
		/* the lookup key on the stack: a read allocates as little as it can */
		char lk[CAIRN_MAX_KEY_SIZE + IKEY_TRAILER];
		struct buf fk = {0};
		char err[512] = "";
		if (klen)
			memcpy(lk, key, klen);
		enc_fixed64(lk + klen, ikey_pack(rr.seq, TYPE_SEEK));
		r = version_get(rr.v, slice_make(lk, klen + IKEY_TRAILER), &fk, ival, &rr.charge,
		                err, sizeof(err));
		if (r == 1) {
			struct slice fks = buf_slice(&fk);
			*seq = ikey_seq(fks);
			*type = ikey_type(fks);
			r = *type != TYPE_DELETION ? 0 : CAIRN_ENOTFOUND;
		} else if (r == 0) {
			r = CAIRN_ENOTFOUND;
		} else {
			db_err(db, r, "%s", err[0] ? err : cairn_strerror(r));
		}
		buf_free(&fk);
	}
	refs_drop(db, &rr);
	if (!r && !ival_valid(buf_slice(ival)))
		r = db_err(db, CAIRN_ECORRUPT, "value of a key has no write-time header");
	if (!r && count)
		atomic_fetch_add(&db->st.gets_found, 1);
	return r;
}

int db_lookup_latest(struct cairn_db *db, struct slice key, enum value_type *type, struct buf *ival)
{
	uint64_t seq;
	return lookup(db, NULL, key.data, key.len, ival, &seq, type, NULL, 0);
}

/* The size of the value an internal value of type stands for. */
static int value_size(struct cairn_db *db, struct slice key, enum value_type type,
                      struct slice ival, uint64_t *size)
{
	struct blob_ref ref;
	if (type != TYPE_BLOB) {
		*size = ival.len - IVAL_HEADER;
		return 0;
	}
	if (db_blob_ref(ival, &ref))
		return db_err(db, CAIRN_ECORRUPT, "key of %zu bytes: malformed blob reference",
		              key.len);
	*size = ref.size;
	return 0;
}

/* The value of a found internal value of a plain type, moved to the start
 * of ival's own memory, which becomes the caller's: no second copy. */
static void *take_value(struct buf *ival)
{
	size_t size = ival->len - IVAL_HEADER;
	memmove(ival->data, ival->data + IVAL_HEADER, size);
	void *out = ival->data;
	/* a large value gives back the slack the buffer grew with */
	if (ival->cap - size > 4096) {
		void *p = realloc(out, size ? size : 1);
		if (p)
			out = p;
	}
	*ival = (struct buf){0};
	return out;
}

CAIRN_EXPORT int cairn_get(struct cairn_db *db, const struct cairn_snapshot *snap, const void *key,
                           size_t klen, void **valp, size_t *vlenp)
{
	if (!valp || !vlenp)
		return CAIRN_EINVAL;
	*valp = NULL;
	*vlenp = 0;
	struct buf ival = {0};
	struct cairn_snapshot node;
	struct read_refs pin = {.pin = NULL};
	uint64_t seq, size = 0;
	enum value_type type;
	struct slice ukey = slice_make(key ? key : "", klen);
	/* Only a blob value needs the pin that keeps its file from collection;
	 * registering it costs a trip through the mutex, so a read takes it only
	 * when the first lookup finds a blob, and then looks again under it. */
	int r = lookup(db, snap, key, klen, &ival, &seq, &type, NULL, 1);
	if (!r && type == TYPE_BLOB && !snap) {
		pin.pin = &node;
		r = lookup(db, snap, key, klen, &ival, &seq, &type, &pin, 0);
	}
	if (!r)
		r = value_size(db, ukey, type, buf_slice(&ival), &size);
	if (!r && size > CAIRN_MAX_VALUE_SIZE)
		r = db_err(db, CAIRN_ETOOBIG,
		           "value of %llu bytes is over the limit of %u for cairn_get: read it "
		           "in pieces with cairn_get_range",
		           (unsigned long long)size, CAIRN_MAX_VALUE_SIZE);
	char *out = NULL;
	if (!r && type != TYPE_BLOB && ival.data) {
		out = take_value(&ival);
	} else if (!r) {
		out = malloc(size ? (size_t)size : 1);
		if (!out)
			r = db_err(db, CAIRN_ENOMEM, "cannot allocate %llu bytes for a value",
			           (unsigned long long)size);
	}
	if (!r && type == TYPE_BLOB) {
		size_t got = 0;
		r = db_blob_read(db, ukey, buf_slice(&ival), 0, out, (size_t)size, &got);
	}
	refs_unpin(db, &pin);
	buf_free(&ival);
	if (r) {
		free(out);
		return r;
	}
	*valp = out;
	*vlenp = (size_t)size;
	return 0;
}

CAIRN_EXPORT int cairn_get_range(struct cairn_db *db, const struct cairn_snapshot *snap,
                                 const void *key, size_t klen, uint64_t offset, void *buf,
                                 size_t len, size_t *got)
{
	if (!got || (!buf && len))
		return CAIRN_EINVAL;
	*got = 0;
	struct buf ival = {0};
	struct cairn_snapshot node;
	struct read_refs pin = {.pin = &node};
	uint64_t seq;
	enum value_type type;
	int r = lookup(db, snap, key, klen, &ival, &seq, &type, &pin, 1);
	if (!r && type == TYPE_BLOB) {
		r = db_blob_read(db, slice_make(key ? key : "", klen), buf_slice(&ival), offset,
		                 buf, len, got);
	} else if (!r) {
		uint64_t size = ival.len - IVAL_HEADER;
		if (offset < size) {
			size_t n = size - offset < len ? (size_t)(size - offset) : len;
			memcpy(buf, ival.data + IVAL_HEADER + offset, n);
			*got = n;
		}
	}
	refs_unpin(db, &pin);
	buf_free(&ival);
	return r;
}

CAIRN_EXPORT int cairn_key_info(struct cairn_db *db, const struct cairn_snapshot *snap,
                                const void *key, size_t klen, struct cairn_key_info *info)
{
	if (!info)
		return CAIRN_EINVAL;
	struct buf ival = {0};
	uint64_t seq = 0, size = 0;
	enum value_type type;
	int r = lookup(db, snap, key, klen, &ival, &seq, &type, NULL, 1);
	if (!r)
		r = value_size(db, slice_make(key ? key : "", klen), type, buf_slice(&ival), &size);
	if (!r) {
		info->size = size;
		info->mtime_ns = type == TYPE_BLOB ? db_blob_time(buf_slice(&ival))
		                                   : ival_time(buf_slice(&ival));
		info->seq = seq;
	}
	buf_free(&ival);
	return r;
}

/* ---- snapshots ---- */

CAIRN_EXPORT int cairn_snapshot_new(struct cairn_db *db, const struct cairn_snapshot **sp)
{
	if (!db || !sp)
		return CAIRN_EINVAL;
	struct cairn_snapshot *s = malloc(sizeof(*s));
	if (!s)
		return CAIRN_ENOMEM;
	env_mutex_lock(&db->mu);
	s->seq = vset_last_sequence(db->vs);
	/* newest at the tail, so the head is the oldest */
	s->prev = db->snapshots.prev;
	s->next = &db->snapshots;
	s->prev->next = s;
	db->snapshots.prev = s;
	env_mutex_unlock(&db->mu);
	*sp = s;
	return 0;
}

CAIRN_EXPORT void cairn_snapshot_release(struct cairn_db *db, const struct cairn_snapshot *cs)
{
	if (!db || !cs)
		return;
	struct cairn_snapshot *s = (struct cairn_snapshot *)cs;
	env_mutex_lock(&db->mu);
	s->prev->next = s->next;
	s->next->prev = s->prev;
	db_blob_reap(db);
	env_mutex_unlock(&db->mu);
	free(s);
}

CAIRN_EXPORT uint64_t cairn_snapshot_seq(const struct cairn_snapshot *s)
{
	return s ? s->seq : 0;
}

uint64_t db_smallest_snapshot(struct cairn_db *db)
{
	if (db->snapshots.next != &db->snapshots)
		return db->snapshots.next->seq;
	return vset_last_sequence(db->vs);
}

/* ---- iterators ---- */

struct iter_refs {
	struct cairn_db *db;
	struct read_refs rr;
	struct cairn_snapshot node; /* the pin of an iterator without snapshot */
};

static void iter_refs_release(void *ctx)
{
	struct iter_refs *ir = ctx;
	refs_unpin(ir->db, &ir->rr);
	refs_drop(ir->db, &ir->rr);
	free(ir);
}

/* Reads the whole value of a TYPE_BLOB entry for cairn_iter_value. */
static int iter_load_blob(void *ctx, struct slice key, struct slice ival, struct buf *out)
{
	struct iter_refs *ir = ctx;
	struct cairn_db *db = ir->db;
	struct blob_ref ref;
	char k[300];
	db_fmt_key(k, sizeof(k), key);
	if (db_blob_ref(ival, &ref))
		return db_err(db, CAIRN_ECORRUPT, "key '%s': malformed blob reference", k);
	if (ref.size > CAIRN_MAX_VALUE_SIZE)
		return db_err(db, CAIRN_ETOOBIG,
		              "key '%s': value of %llu bytes is over the limit of %u: read it in "
		              "pieces with cairn_get_range",
		              k, (unsigned long long)ref.size, CAIRN_MAX_VALUE_SIZE);
	buf_clear(out);
	int r = buf_reserve(out, (size_t)ref.size + 1);
	size_t got = 0;
	if (!r)
		r = db_blob_read(db, key, ival, 0, out->data, (size_t)ref.size, &got);
	if (!r)
		out->len = got;
	return r;
}

CAIRN_EXPORT int cairn_iter_new(struct cairn_db *db, const struct cairn_snapshot *snap,
                                struct cairn_iter **itp)
{
	if (!db || !itp)
		return CAIRN_EINVAL;
	*itp = NULL;
	struct iter_refs *ir = calloc(1, sizeof(*ir));
	if (!ir)
		return CAIRN_ENOMEM;
	ir->db = db;
	/* Iterators count as snapshots: blob files they may read outlive any
	 * collection that runs meanwhile. */
	ir->rr.pin = &ir->node;
	refs_take(db, snap, &ir->rr);
	struct version *v = ir->rr.v;
	int cap = 2 + NUM_LEVELS + v->nfiles[0];
	struct iter **kids = calloc((size_t)cap, sizeof(*kids));
	if (!kids) {
		iter_refs_release(ir);
		return CAIRN_ENOMEM;
	}
	int n = 0;
	kids[n++] = mem_iter_new(ir->rr.mem);
	if (ir->rr.imm)
		kids[n++] = mem_iter_new(ir->rr.imm);
	int nv = version_add_iters(v, kids + n);
	int failed = nv < 0;
	if (nv > 0)
		n += nv;
	for (int i = 0; i < n; i++)
		failed |= kids[i] == NULL;
	struct iter *merged = NULL;
	if (failed) {
		for (int i = 0; i < n; i++)
			iter_free(kids[i]);
	} else {
		merged = iter_merge_new(kids, n);
	}
	free(kids);
	if (!merged) {
		iter_refs_release(ir);
		return CAIRN_ENOMEM;
	}
	struct cairn_iter *it = dbiter_new(merged, ir->rr.seq, iter_refs_release, ir);
	if (!it)
		return CAIRN_ENOMEM;
	dbiter_set_blob_loader(it, iter_load_blob, ir);
	atomic_fetch_add(&db->st.iterators, 1);
	*itp = it;
	return 0;
}

/* ---- maintenance ---- */

CAIRN_EXPORT int cairn_flush(struct cairn_db *db)
{
	if (!db)
		return CAIRN_EINVAL;
	if (db->opts.read_only)
		return db_err(db, CAIRN_EREADONLY, "the database was opened read-only");
	/* The switch happens in the writer queue: only its leader may touch
	 * the memtable and the log, which it fills with the mutex dropped. */
	int r = do_write(db, NULL, CAIRN_SYNC | DB_FREEZE);
	if (r)
		return r;
	env_mutex_lock(&db->mu);
	r = wait_for_imm(db);
	if (r == CAIRN_EFAILED)
		db_err(db, r, "flush failed: %s", db->bg_errmsg);
	env_mutex_unlock(&db->mu);
	return r;
}

CAIRN_EXPORT int cairn_compact_range(struct cairn_db *db, const void *begin, size_t blen,
                                     const void *end, size_t elen)
{
	if (!db)
		return CAIRN_EINVAL;
	int r = cairn_flush(db);
	if (r)
		return r;
	struct slice b = slice_make(begin, blen), e = slice_make(end, elen);
	const struct slice *bp = begin ? &b : NULL, *ep = end ? &e : NULL;
	int retried = 0;
	env_mutex_lock(&db->mu);
	db->manual_compaction++;
	/* Down to and including the deepest level holding the range, so
	 * that even tables which never overlapped are merged into one run. */
	int deepest = 0;
	for (int level = 1; level < NUM_LEVELS; level++)
		if (version_overlaps(vset_current(db->vs), level, bp, ep))
			deepest = level;
	for (int level = 0; !r && level <= deepest && level < NUM_LEVELS - 1; level++) {
		for (;;) {
			int busy = 0;
			/* a compaction stopped for close leaves its inputs,
			 * which would be picked again and again */
			if (db->shutting_down) {
				r = db_err(db, CAIRN_EBUSY,
				           "compaction stopped: the handle is closing");
				break;
			}
			if (db->bg_error) {
				r = db_err(db, CAIRN_EFAILED, "compaction stopped: %s",
				           db->bg_errmsg);
				break;
			}
			struct compaction *c = vset_compact_range(db->vs, level, bp, ep, &busy);
			if (c) {
				/* a full disk is no failed state: stop, do not retry
				 * forever (found by tests/sim, seed 217) */
				r = db_run_compaction(db, c, 1);
				/* the reserve was given up for it: once more */
				if (r == CAIRN_ENOSPC && !db->bg_nospace && !retried) {
					retried = 1;
					r = 0;
				}
				if (r)
					break;
				continue;
			}
			if (!busy)
				break;
			env_cond_wait(&db->bg_cv, &db->mu);
		}
	}
	db->manual_compaction--;
	/* The compactions counted the garbage: collect every blob file over
	 * the ratio now, so a manual compaction frees blob space too. */
	while (!r && db->blob_gc_running && !db->bg_error)
		env_cond_wait(&db->bg_cv, &db->mu);
	if (!r) {
		/* the shared file's dead space too, which only a sealed file
		 * gives back */
		env_mutex_unlock(&db->mu);
		db_blob_seal_garbage(db, 0);
		env_mutex_lock(&db->mu);
		db_blob_collect(db, 1);
		/* what was freed may hold the reserve again */
		if (!db->shutting_down && !db->bg_error)
			reserve_restore(db);
	}
	env_cond_broadcast(&db->bg_cv);
	env_mutex_unlock(&db->mu);
	return r;
}

static int copy_file(struct cairn_env *env, const char *from, const char *to)
{
	struct env_file *in = NULL, *out = NULL;
	char *buf = malloc(1u << 20);
	int r = buf ? env_open_read(env, from, &in) : CAIRN_ENOMEM;
	if (!r)
		r = env_open_write(env, to, &out);
	uint64_t off = 0;
	while (!r) {
		size_t got;
		r = env_pread(in, off, buf, 1u << 20, &got);
		if (r || got == 0)
			break;
		r = env_append(out, buf, got);
		off += got;
	}
	if (!r)
		r = env_sync(out);
	env_close(in);
	int c = env_close(out);
	free(buf);
	return r ? r : c;
}

CAIRN_EXPORT int cairn_checkpoint(struct cairn_db *db, const char *dest)
{
	if (!db || !dest || !*dest)
		return CAIRN_EINVAL;
	if (db->opts.read_only)
		return db_err(db, CAIRN_EREADONLY, "checkpoint needs a writable handle");
	int r = env_mkdir(db->env, dest);
	if (r == CAIRN_EEXIST)
		return db_err(db, r, "checkpoint destination '%s' already exists", dest);
	if (r)
		return db_err(db, r, "cannot create checkpoint directory '%s'", dest);
	/* Everything acknowledged so far goes into tables, which are
	 * immutable, and sealed blob files: the checkpoint is then hard links
	 * plus a manifest. */
	r = db_blob_seal_active(db);
	if (!r)
		r = cairn_flush(db);
	if (r)
		return r;
	char err[512] = "";
	env_mutex_lock(&db->mu);
	struct version *v = vset_current(db->vs);
	version_ref(v);
	for (int level = 0; !r && level < NUM_LEVELS; level++) {
		for (int i = 0; !r && i < v->nfiles[level]; i++) {
			char from[4096], to[4096];
			uint64_t num = v->files[level][i]->number;
			table_file_name(from, sizeof(from), db->dir, num);
			table_file_name(to, sizeof(to), dest, num);
			r = env_link(db->env, from, to);
			if (r)
				r = copy_file(db->env, from, to);
			if (r)
				fmt_msg(err, sizeof(err), "cannot link or copy '%s' to '%s'", from,
				        to);
		}
	}
	int nblobs;
	const struct blob_file_meta *blobs = vset_blob_files(db->vs, &nblobs);
	for (int i = 0; !r && i < nblobs; i++) {
		char from[4096], to[4096];
		blob_file_name(from, sizeof(from), db->dir, blobs[i].number);
		blob_file_name(to, sizeof(to), dest, blobs[i].number);
		r = env_link(db->env, from, to);
		if (r)
			r = copy_file(db->env, from, to);
		if (r)
			fmt_msg(err, sizeof(err), "cannot link or copy '%s' to '%s'", from, to);
	}
	if (!r)
		r = vset_write_snapshot_manifest(db->vs, dest, vset_manifest_number(db->vs), err,
		                                 sizeof(err));
	if (!r)
		r = env_sync_dir(db->env, dest);
	version_unref(v);
	env_mutex_unlock(&db->mu);
	if (r)
		return db_err(db, r, "checkpoint to '%s' failed: %s", dest, err);
	return 0;
}

/* ---- statistics ---- */

#define LOAD(x) atomic_load(&db->st.x)

CAIRN_EXPORT int cairn_stats_get(struct cairn_db *db, struct cairn_stats *st)
{
	if (!db || !st)
		return CAIRN_EINVAL;
	memset(st, 0, sizeof(*st));
	st->puts = LOAD(puts);
	st->deletes = LOAD(deletes);
	st->batches = LOAD(batches);
	st->gets = LOAD(gets);
	st->gets_found = LOAD(gets_found);
	st->iterators = LOAD(iterators);
	st->user_bytes_written = LOAD(user_bytes_written);
	st->wal_bytes_written = LOAD(wal_bytes_written);
	st->wal_syncs = LOAD(wal_syncs);
	st->wal_group_commits = LOAD(wal_group_commits);
	st->wal_bytes_dropped = LOAD(wal_bytes_dropped);
	st->flushes = LOAD(flushes);
	st->flush_bytes_written = LOAD(flush_bytes_written);
	st->compactions = LOAD(compactions);
	st->compaction_bytes_read = LOAD(compaction_bytes_read);
	st->compaction_bytes_written = LOAD(compaction_bytes_written);
	st->slowdowns = LOAD(slowdowns);
	st->slowdown_micros = LOAD(slowdown_micros);
	st->stops = LOAD(stops);
	st->stop_micros = LOAD(stop_micros);
	st->bloom_checks = __atomic_load_n(&db->rstats.bloom_checks, __ATOMIC_RELAXED);
	st->bloom_negatives = __atomic_load_n(&db->rstats.bloom_negatives, __ATOMIC_RELAXED);
	cache_counters(db->block_cache, &st->block_cache_hits, &st->block_cache_misses);
	st->block_cache_bytes = cache_usage(db->block_cache);
	st->block_cache_capacity = cache_capacity(db->block_cache);
	uint64_t open = 0;
	tcache_counters(db->tc, &st->table_cache_hits, &st->table_cache_misses, &open);
	st->open_tables = open;
	st->max_open_tables = (uint64_t)db->opts.max_open_tables;
	st->memtable_limit = db->opts.memtable_size;

	env_mutex_lock(&db->mu);
	st->last_sequence = vset_last_sequence(db->vs);
	st->memtable_bytes = mem_usage(db->mem) + (db->imm ? mem_usage(db->imm) : 0);
	struct version *v = vset_current(db->vs);
	st->num_levels = NUM_LEVELS;
	for (int l = 0; l < NUM_LEVELS; l++) {
		st->levels[l].files = (uint64_t)v->nfiles[l];
		st->levels[l].bytes = version_level_bytes(v, l);
		st->levels[l].compactions = LOAD(level_compactions[l]);
		st->levels[l].bytes_read = LOAD(level_bytes_read[l]);
		st->levels[l].bytes_written = LOAD(level_bytes_written[l]);
		st->table_bytes += st->levels[l].bytes;
	}
	st->wal_bytes = db->log ? db->log_size : 0;
	uint64_t manifest = vset_manifest_size(db->vs);
	int nblobs;
	const struct blob_file_meta *blobs = vset_blob_files(db->vs, &nblobs);
	uint64_t active = __atomic_load_n(&db->blob_active_size, __ATOMIC_RELAXED);
	uint64_t blob_bytes = 0;
	for (int i = 0; i < nblobs; i++) {
		uint64_t size = blobs[i].size;
		if (!blobs[i].sealed && active > size)
			size = active; /* the shared file, still taking values */
		blob_bytes += size;
		st->blob_bytes_garbage += blob_net_garbage(&blobs[i]);
	}
	st->blob_files = (uint64_t)nblobs;
	st->blob_bytes_live =
	        blob_bytes > st->blob_bytes_garbage ? blob_bytes - st->blob_bytes_garbage : 0;
	st->blob_collections = LOAD(blob_collections);
	st->blob_bytes_moved = LOAD(blob_bytes_moved);
	st->compactions_damaged = LOAD(compactions_damaged);
	st->reserve_bytes = db->reserve_held ? db->opts.space_reserve : 0;
	st->reserve_releases = db->reserve_releases;
	st->reserve_restores = db->reserve_restores;
	env_mutex_unlock(&db->mu);

	/* false positives: the filter said maybe, the table had no such key;
	 * only table_get's misses after a positive are counted by tables */
	st->bloom_false_positives =
	        __atomic_load_n(&db->rstats.bloom_false_positives, __ATOMIC_RELAXED);
	st->total_disk_bytes = st->table_bytes + st->wal_bytes + manifest + blob_bytes;
	/* Index and filter blocks of open tables are held outside the block
	 * cache; they are bounded by max_open_tables. */
	st->memory_in_use = st->memtable_bytes + st->block_cache_bytes;
	return 0;
}

CAIRN_EXPORT double cairn_stats_write_amp(const struct cairn_stats *st)
{
	if (!st || st->user_bytes_written == 0)
		return 0;
	double disk = (double)(st->wal_bytes_written + st->flush_bytes_written +
	                       st->compaction_bytes_written);
	return disk / (double)st->user_bytes_written;
}
