/*
 * compact.c - flushes and compactions, and the threads that run them.
 *
 * A flush writes the frozen memtable as one level-0 table (or deeper, when
 * nothing overlaps it) and records it in the manifest together with the new
 * log number, after which the log that held the memtable is obsolete.
 *
 * A compaction merges the input tables of one level with the overlapping
 * tables of the next, keeps the newest version of each key plus every
 * version a live snapshot can still see, drops tombstones once no deeper
 * level can hold their key, and splits its output by size and by overlap
 * with the level below (so later compactions stay small). Its inputs are
 * marked while it runs, so several compactions with disjoint inputs can run
 * on several threads at once.
 *
 * With background_threads = 0 nothing here starts a thread: the write path
 * calls db_flush_imm and db_compact_inline at fixed points, so a simulation
 * is single threaded and replays exactly from its seed.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "db.h"
#include "reserve.h"

void db_bg_failed(struct cairn_db *db, int code, const char *msg)
{
	if (code == CAIRN_ENOSPC) {
		/* The engine's own work frees space (or must run for deletes
		 * to): it may use the reserve, and is retried at once. */
		if (reserve_release(db))
			return;
		db->bg_nospace = 1;
		env_cond_broadcast(&db->bg_cv);
		return;
	}
	db_set_bg_error(db, code, msg);
}

void db_set_bg_error(struct cairn_db *db, int code, const char *msg)
{
	if (db->bg_error)
		return;
	db->bg_error = code ? code : CAIRN_EIO;
	fmt_msg(db->bg_errmsg, sizeof(db->bg_errmsg), "%s", msg);
	env_cond_broadcast(&db->bg_cv);
}

int db_pending_add(struct cairn_db *db, uint64_t number)
{
	if (db->npending == db->cap_pending) {
		size_t cap = db->cap_pending ? db->cap_pending * 2 : 8;
		uint64_t *p = realloc(db->pending_outputs, cap * sizeof(*p));
		if (!p)
			return CAIRN_ENOMEM;
		db->pending_outputs = p;
		db->cap_pending = cap;
	}
	db->pending_outputs[db->npending++] = number;
	return 0;
}

void db_pending_remove(struct cairn_db *db, uint64_t number)
{
	for (size_t i = 0; i < db->npending; i++) {
		if (db->pending_outputs[i] == number) {
			db->pending_outputs[i] = db->pending_outputs[--db->npending];
			return;
		}
	}
}

static struct table_options table_opts(const struct cairn_db *db)
{
	struct table_options o = {
	        .block_size = db->opts.block_size,
	        .restart_interval = db->opts.block_restart_interval,
	        .bloom_bits_per_key = db->opts.bloom_bits_per_key,
	        .compression = db->opts.compression,
	};
	return o;
}

/* One table being written by a flush or a compaction. */
struct output {
	uint64_t number;
	struct env_file *file;
	struct table_builder *tb;
	char path[4096];
};

/* In threaded mode flushes and compactions build tables without mu and take
 * it for the short bookkeeping steps; inline they run entirely under it. */
static void bookkeeping_lock(struct cairn_db *db)
{
	if (db->opts.background_threads > 0)
		env_mutex_lock(&db->mu);
}

static void bookkeeping_unlock(struct cairn_db *db)
{
	if (db->opts.background_threads > 0)
		env_mutex_unlock(&db->mu);
}

static int output_open(struct cairn_db *db, struct output *out, char *err, size_t errlen)
{
	memset(out, 0, sizeof(*out));
	bookkeeping_lock(db);
	out->number = vset_new_file_number(db->vs);
	int r = db_pending_add(db, out->number);
	bookkeeping_unlock(db);
	if (r)
		return r;
	table_file_name(out->path, sizeof(out->path), db->dir, out->number);
	struct table_options o = table_opts(db);
	o.file_number = out->number;
	r = env_open_write(db->env, out->path, &out->file);
	if (!r)
		r = tb_new(&o, out->file, &out->tb);
	if (r) {
		char detail[256];
		db_io_detail(db, detail, sizeof(detail), r);
		fmt_msg(err, errlen, "cannot create table '%s': %s", out->path, detail);
	}
	return r;
}

/* Finishes the table, syncs and closes it; props receives its properties. */
static int output_finish(struct cairn_db *db, struct output *out, struct table_props *props,
                         uint64_t *size, char *err, size_t errlen)
{
	int r = tb_finish(out->tb, props);
	*size = tb_file_size(out->tb);
	if (!r)
		r = env_sync(out->file);
	/* The manifest will name this table: its directory entry must be as
	 * durable as its bytes before that. */
	if (!r)
		r = env_sync_dir(db->env, db->dir);
	int c = env_close(out->file);
	out->file = NULL;
	tb_free(out->tb);
	out->tb = NULL;
	if (!r)
		r = c;
	if (r) {
		char detail[256];
		db_io_detail(db, detail, sizeof(detail), r);
		fmt_msg(err, errlen, "cannot write table '%s': %s", out->path, detail);
	}
	return r;
}

/* Drops a table that will not be recorded (an error, or no entries).
 * locked: the caller holds mu. */
static void output_abandon(struct cairn_db *db, struct output *out, int locked)
{
	if (out->tb)
		tb_free(out->tb);
	if (out->file)
		env_close(out->file);
	if (out->path[0])
		env_unlink(db->env, out->path);
	if (!locked)
		env_mutex_lock(&db->mu);
	db_pending_remove(db, out->number);
	if (!locked)
		env_mutex_unlock(&db->mu);
	memset(out, 0, sizeof(*out));
}

/* Builds a table from m. Called without mu. *props is filled on success;
 * an empty memtable gives *written = 0 and no file. A version that a newer
 * one of its key hides from every reader (none older than snap) is left
 * out, as compaction would drop it, and its blob record counted as garbage
 * in edit: so a delete right after a put costs no table space, and a flush
 * on a nearly full disk writes only what is live. */
static int build_table(struct cairn_db *db, struct memtable *m, uint64_t snap,
                       struct version_edit *edit, struct output *out, struct table_props *props,
                       uint64_t *written, char *err, size_t errlen)
{
	*written = 0;
	struct iter *it = mem_iter_new(m);
	if (!it)
		return CAIRN_ENOMEM;
	iter_seek_first(it);
	if (!iter_valid(it)) {
		iter_free(it);
		return 0;
	}
	struct buf prev = {0};
	uint64_t prev_seq = MAX_SEQUENCE + 1;
	int r = output_open(db, out, err, errlen);
	for (; !r && iter_valid(it); iter_next(it)) {
		struct slice ik = iter_key(it), uk = ikey_user(ik);
		if (prev_seq > MAX_SEQUENCE || !slice_eq(uk, buf_slice(&prev))) {
			r = buf_set(&prev, uk.data, uk.len);
			prev_seq = MAX_SEQUENCE + 1;
		}
		int hidden = prev_seq <= snap;
		prev_seq = ikey_seq(ik);
		if (!r && hidden && ikey_type(ik) == TYPE_BLOB)
			r = db_blob_note_garbage(edit, uk, iter_value(it));
		else if (!r && !hidden)
			r = tb_add(out->tb, ik, iter_value(it));
	}
	buf_free(&prev);
	if (!r && iter_status(it)) { /* never a table of part of the memtable */
		r = iter_status(it);
		fmt_msg(err, errlen, "flush stopped reading the memtable: %s", cairn_strerror(r));
	}
	iter_free(it);
	if (r && !err[0]) {
		char detail[256];
		db_io_detail(db, detail, sizeof(detail), r);
		fmt_msg(err, errlen, "cannot write table '%s': %s", out->path, detail);
	}
	if (!r)
		r = output_finish(db, out, props, written, err, errlen);
	return r;
}

/* With mu held. Builds m into a table (dropping the lock in threaded mode)
 * and adds it to edit at the level chosen for it, or at level 0 when
 * level0_only: recovery puts several tables into one edit, and a deeper
 * level chosen against the current version could receive two of them that
 * overlap, the older one shadowing the newer. */
static int flush_memtable(struct cairn_db *db, struct memtable *m, struct version_edit *edit,
                          int level0_only, char *err, size_t errlen)
{
	struct output out = {0};
	struct table_props props = {0};
	uint64_t written = 0;
	int threaded = db->opts.background_threads > 0;
	uint64_t snap = db_smallest_snapshot(db);
	if (threaded)
		env_mutex_unlock(&db->mu);
	int r = build_table(db, m, snap, edit, &out, &props, &written, err, errlen);
	if (threaded)
		env_mutex_lock(&db->mu);
	if (r) {
		output_abandon(db, &out, 1);
		table_props_free(&props);
		db_err(db, r, "flush failed: %s", err);
		return r;
	}
	if (written == 0)
		return 0;
	struct slice smallest = buf_slice(&props.smallest), largest = buf_slice(&props.largest);
	int level = level0_only
	                    ? 0
	                    : version_pick_level_for_flush(vset_current(db->vs),
	                                                   ikey_user(smallest), ikey_user(largest));
	r = edit_add_file(edit, level, out.number, written, smallest, largest, props.min_seq,
	                  props.max_seq, props.num_entries);
	table_props_free(&props);
	if (r) {
		output_abandon(db, &out, 1);
		fmt_msg(err, errlen, "cannot record table %06llu: %s",
		        (unsigned long long)out.number, cairn_strerror(r));
		return r;
	}
	atomic_fetch_add(&db->st.flushes, 1);
	atomic_fetch_add(&db->st.flush_bytes_written, written);
	atomic_fetch_add(&db->st.level_bytes_written[level], written);
	/* stays pending until the edit is applied (the caller removes it) */
	return 0;
}

/* With mu held: removes the finished tables of an edit that will not be
 * applied. */
static void drop_outputs(struct cairn_db *db, struct version_edit *edit)
{
	for (int i = 0; i < edit->nadded; i++) {
		char path[4096];
		table_file_name(path, sizeof(path), db->dir, edit->added[i].f->number);
		env_unlink(db->env, path);
	}
}

static void edit_unpend(struct cairn_db *db, struct version_edit *edit)
{
	for (int i = 0; i < edit->nadded; i++)
		db_pending_remove(db, edit->added[i].f->number);
}

int db_write_level0(struct cairn_db *db, struct memtable *m, struct version_edit *edit, char *err,
                    size_t errlen)
{
	return flush_memtable(db, m, edit, 1, err, errlen);
}

int db_flush_imm(struct cairn_db *db)
{
	if (!db->imm)
		return 0;
	if (db->bg_error)
		return CAIRN_EFAILED;
	struct memtable *imm = db->imm;
	struct version_edit edit;
	char err[512] = "";
	edit_init(&edit);
	db->flushing = 1;
	int r = flush_memtable(db, imm, &edit, 0, err, sizeof(err));
	if (!r) {
		/* The imm's log and all before it are no longer needed. */
		edit.has_log_number = 1;
		edit.log_number = db->log_number;
		r = vset_log_and_apply(db->vs, &edit, err, sizeof(err));
		if (r)
			db_err(db, r, "flush failed: %s", err);
	}
	edit_unpend(db, &edit);
	edit_free(&edit);
	db->flushing = 0;
	if (r) {
		char msg[600];
		fmt_msg(msg, sizeof(msg), "flush failed: %s", err[0] ? err : cairn_strerror(r));
		db_bg_failed(db, r, msg);
	} else {
		db->bg_nospace = 0;
		db->imm = NULL;
		mem_unref(imm);
		db_delete_obsolete(db);
	}
	env_cond_broadcast(&db->bg_cv);
	return r;
}

/* ---- compaction ---- */

struct compaction_state {
	struct cairn_db *db;
	struct compaction *c;
	uint64_t smallest_snapshot;
	struct output out;
	struct buf out_smallest, out_largest;
	uint64_t out_min_seq, out_max_seq, out_entries;
	uint64_t bytes_written;
	int aborted; /* stopped for close; not an error */
	char err[512];
};

static int finish_output(struct compaction_state *cs)
{
	struct cairn_db *db = cs->db;
	struct table_props props = {0};
	uint64_t size = 0;
	if (!cs->out.tb)
		return 0;
	int r = output_finish(db, &cs->out, &props, &size, cs->err, sizeof(cs->err));
	if (!r) {
		bookkeeping_lock(db);
		r = edit_add_file(&cs->c->edit, cs->c->level + 1, cs->out.number, size,
		                  buf_slice(&props.smallest), buf_slice(&props.largest),
		                  props.min_seq, props.max_seq, props.num_entries);
		bookkeeping_unlock(db);
		cs->bytes_written += size;
	}
	table_props_free(&props);
	if (r) {
		/* not in the edit: nothing else will remove it */
		output_abandon(db, &cs->out, db->opts.background_threads == 0);
		return r;
	}
	memset(&cs->out, 0, sizeof(cs->out));
	return 0;
}

/* Merges the inputs into new tables. Runs without mu in threaded mode. */
static int compact_entries(struct compaction_state *cs)
{
	struct cairn_db *db = cs->db;
	struct compaction *c = cs->c;
	struct iter *it = compaction_input_iter(c);
	if (!it)
		return CAIRN_ENOMEM;
	struct buf cur_user = {0};
	int has_cur = 0;
	uint64_t last_seq_for_key = MAX_SEQUENCE + 1;
	int r = 0;
	uint64_t n = 0;
	for (iter_seek_first(it); !r && iter_valid(it); iter_next(it)) {
		struct slice ik = iter_key(it);
		/* In threaded mode a waiting flush goes first, so writers are
		 * not stalled behind a long compaction. */
		if ((++n & 1023) == 0 && db->opts.background_threads > 0) {
			env_mutex_lock(&db->mu);
			int stop = db->shutting_down;
			if (!stop && db->imm && !db->flushing)
				db_flush_imm(db);
			env_mutex_unlock(&db->mu);
			if (stop) {
				/* close is waiting: the inputs stay as they are */
				cs->aborted = 1;
				r = CAIRN_EFAILED;
				break;
			}
		}
		if (!ikey_valid(ik)) {
			fmt_msg(cs->err, sizeof(cs->err), "compaction input holds a malformed key");
			r = CAIRN_ECORRUPT;
			break;
		}
		if (cs->out.tb && compaction_should_stop_before(c, ik))
			r = finish_output(cs);
		if (r)
			break;
		struct slice uk = ikey_user(ik);
		uint64_t seq = ikey_seq(ik);
		if (!has_cur || !slice_eq(uk, buf_slice(&cur_user))) {
			r = buf_set(&cur_user, uk.data, uk.len);
			has_cur = 1;
			last_seq_for_key = MAX_SEQUENCE + 1;
		}
		int drop = 0;
		if (last_seq_for_key <= cs->smallest_snapshot) {
			drop = 1; /* a newer version is visible to every reader */
		} else if (ikey_type(ik) == TYPE_DELETION && seq <= cs->smallest_snapshot &&
		           compaction_is_base_level_for_key(c, uk)) {
			drop = 1; /* nothing older lies deeper for it to hide */
		}
		last_seq_for_key = seq;
		/* the dropped entry's blob record is garbage now */
		if (drop && !r && ikey_type(ik) == TYPE_BLOB)
			r = db_blob_note_garbage(&c->edit, uk, iter_value(it));
		if (drop || r)
			continue;
		if (!cs->out.tb)
			r = output_open(db, &cs->out, cs->err, sizeof(cs->err));
		if (!r && (r = tb_add(cs->out.tb, ik, iter_value(it))) != 0) {
			char detail[256];
			db_io_detail(db, detail, sizeof(detail), r);
			fmt_msg(cs->err, sizeof(cs->err), "cannot write table '%s': %s",
			        cs->out.path, detail);
		}
		if (!r && tb_file_size(cs->out.tb) >= c->max_output_size)
			r = finish_output(cs);
	}
	if (!r)
		r = iter_status(it);
	if (r && !cs->err[0])
		fmt_msg(cs->err, sizeof(cs->err), "compaction: %s", cairn_strerror(r));
	iter_free(it);
	buf_free(&cur_user);
	if (!r)
		r = finish_output(cs);
	return r;
}

static void first_problem(void *ctx, uint64_t off, const char *what)
{
	char *out = ctx;
	(void)off;
	if (!out[0])
		fmt_msg(out, 300, "%s", what);
}

/* A damaged input stops the compaction, and would stop it again at every
 * retry and every reopen. The input tables were read without the caches, so
 * their read errors are gone: the inputs are verified again to name the
 * table and block in the message, with the way out. */
static void damaged_input(struct cairn_db *db, struct compaction *c, char *err, size_t errlen)
{
	char what[300] = "", was[512];
	fmt_msg(was, sizeof(was), "%s", err);
	for (int w = 0; w < 2 && !what[0]; w++)
		for (int i = 0; i < c->ninputs[w] && !what[0]; i++) {
			struct file_meta *f = c->inputs[w][i];
			struct table *t;
			struct cache_handle *h;
			struct table_expect x = {.number = f->number, .size = f->size};
			if (tcache_get(db->tc, &x, &t, &h, what, sizeof(what)))
				break;
			table_verify(t, first_problem, what);
			tcache_release(db->tc, h);
		}
	atomic_fetch_add(&db->st.compactions_damaged, 1);
	fmt_msg(err, errlen,
	        "%s; writes stop, reads go on; run `cairn repair` on the closed database",
	        what[0] ? what : was);
}

int db_run_compaction(struct cairn_db *db, struct compaction *c, int manual)
{
	int r, aborted = 0;
	char err[512] = "";
	int level = c->level;
	db->running_compactions++;
	/* A manual compaction exists to merge: moving a table down a level
	 * would leave every overwritten and deleted entry in place. */
	if (!manual && compaction_is_trivial_move(c)) {
		struct file_meta *f = c->inputs[0][0];
		r = edit_delete_file(&c->edit, level, f->number);
		if (!r)
			r = edit_add_file(&c->edit, level + 1, f->number, f->size,
			                  buf_slice(&f->smallest), buf_slice(&f->largest),
			                  f->min_seq, f->max_seq, f->num_entries);
		if (!r)
			r = vset_log_and_apply(db->vs, &c->edit, err, sizeof(err));
	} else {
		struct compaction_state cs = {.db = db, .c = c};
		cs.smallest_snapshot = db_smallest_snapshot(db);
		uint64_t in_bytes = compaction_input_bytes(c);
		int threaded = db->opts.background_threads > 0;
		if (threaded)
			env_mutex_unlock(&db->mu);
		r = compact_entries(&cs);
		if (r && cs.out.number)
			output_abandon(db, &cs.out, !threaded);
		if (threaded)
			env_mutex_lock(&db->mu);
		if (r)
			drop_outputs(db, &c->edit);
		aborted = cs.aborted;
		if (!r)
			r = compaction_add_input_deletions(c);
		if (!r)
			r = vset_log_and_apply(db->vs, &c->edit, err, sizeof(err));
		if (r && !err[0])
			fmt_msg(err, sizeof(err), "%s", cs.err);
		if (!r) {
			atomic_fetch_add(&db->st.compactions, 1);
			atomic_fetch_add(&db->st.compaction_bytes_read, in_bytes);
			atomic_fetch_add(&db->st.compaction_bytes_written, cs.bytes_written);
			atomic_fetch_add(&db->st.level_compactions[level + 1], 1);
			atomic_fetch_add(&db->st.level_bytes_read[level + 1], in_bytes);
			atomic_fetch_add(&db->st.level_bytes_written[level + 1], cs.bytes_written);
		}
		edit_unpend(db, &c->edit);
	}
	if (r == CAIRN_ECORRUPT)
		damaged_input(db, c, err, sizeof(err));
	compaction_free(c);
	db->running_compactions--;
	if (r && aborted) {
		r = 0;
	} else if (r) {
		char msg[600];
		fmt_msg(msg, sizeof(msg), "compaction of level %d failed: %s", level,
		        err[0] ? err : cairn_strerror(r));
		db_err(db, r, "%s", msg);
		db_bg_failed(db, r, msg);
	} else {
		db->bg_nospace = 0;
		db_delete_obsolete(db);
	}
	env_cond_broadcast(&db->bg_cv);
	return r;
}

int db_compact_inline(struct cairn_db *db)
{
	/* Bounded: each compaction lowers some score, but never loop forever
	 * on a picking bug. */
	for (int i = 0; i < 1000 && !db->bg_error; i++) {
		struct compaction *c = vset_pick_compaction(db->vs);
		if (!c)
			return 0;
		int r = db_run_compaction(db, c, 0);
		if (r)
			return r;
	}
	return db->bg_error ? CAIRN_EFAILED : 0;
}

/* ---- background threads ---- */

void db_schedule_work(struct cairn_db *db)
{
	if (db->opts.background_threads == 0) {
		if (db->imm && db_flush_imm(db) == 0)
			db_compact_inline(db);
		return;
	}
	env_cond_broadcast(&db->work_cv);
}

/* After a full disk, wait a second (or until woken) before trying again,
 * rather than spinning on a disk that has no room. */
static void bg_backoff(struct cairn_db *db)
{
	env_cond_timedwait(&db->work_cv, &db->mu, 1000000);
}

static void *bg_main(void *arg)
{
	struct cairn_db *db = arg;
	env_mutex_lock(&db->mu);
	while (!db->shutting_down) {
		if (db->bg_error) {
			env_cond_wait(&db->work_cv, &db->mu);
			continue;
		}
		int r = 0;
		struct compaction *c = NULL;
		if (db->imm && !db->flushing)
			r = db_flush_imm(db);
		else if (!db->manual_compaction && (c = vset_pick_compaction(db->vs)) != NULL)
			r = db_run_compaction(db, c, 0);
		/* blob files are collected once the tree is compacted: its
		 * compactions are what count their garbage */
		else if (!db->manual_compaction && db_blob_gc_due(db)) {
			/* a collection that could not run (a copy in flight, a
			 * file that failed) waits for a signal, not a spin; it
			 * dropped mu, so a close may have signalled meanwhile */
			if (!db_blob_collect(db, 0) && !db->shutting_down)
				env_cond_wait(&db->work_cv, &db->mu);
		} else {
			env_cond_wait(&db->work_cv, &db->mu);
		}
		if (r == CAIRN_ENOSPC && db->bg_nospace && !db->shutting_down)
			bg_backoff(db);
		/* an unsealed blob file is never collected: seal it once a
		 * compaction has found enough of it dead */
		if (c && !r && !db->shutting_down) {
			env_mutex_unlock(&db->mu);
			db_blob_seal_garbage(db, BLOB_SEAL_MIN_GARBAGE);
			env_mutex_lock(&db->mu);
		}
	}
	env_mutex_unlock(&db->mu);
	return NULL;
}

/* The reclaim pass runs at most once a second; while passes leave the disk
 * too full for the reserve (other files fill it), the wait doubles up to a
 * minute, so deletes on such a disk do not compact the database without
 * end. */
#define RECLAIM_EVERY_NS  1000000000ull
#define RECLAIM_MAX_NS    60000000000ull
#define RECLAIM_FOLLOW_NS 60000000000ull

void db_reclaim(struct cairn_db *db)
{
	env_mutex_lock(&db->mu);
	uint64_t deletes = atomic_load(&db->st.deletes), now = env_mono_ns(db->env);
	uint64_t wait = db->reclaim_wait_ns ? db->reclaim_wait_ns : RECLAIM_EVERY_NS;
	/* Deletes keep coming after a full disk (a directory removed file by
	 * file, orphans freed as the kernel forgets them): passes follow them
	 * for a minute after the disk was last found full, and as long as the
	 * reserve is given up. */
	if (__atomic_exchange_n(&db->space_short, 0, __ATOMIC_RELAXED))
		db->short_until_ns = now + RECLAIM_FOLLOW_NS;
	int shortage = now < db->short_until_ns || (db->opts.space_reserve && !db->reserve_held);
	int due = shortage && deletes != db->reclaim_deletes && !db->bg_error &&
	          !db->shutting_down && now - db->reclaim_ns >= wait;
	if (due) {
		db->reclaim_deletes = deletes;
		db->reclaim_ns = now;
	}
	env_mutex_unlock(&db->mu);
	if (!due)
		return;
	/* The deletes' tombstones reach the tables, compaction drops the
	 * values they hide (counting blob garbage), the shared blob file is
	 * sealed and collection frees the dead files: what `cairn compact`
	 * does, without waiting for compaction's size triggers. */
	cairn_compact_range(db, NULL, 0, NULL, 0);
	env_mutex_lock(&db->mu);
	if (!db->shutting_down && !db->bg_error && reserve_restore(db)) {
		db->reclaim_wait_ns = RECLAIM_EVERY_NS;
	} else if (wait < RECLAIM_MAX_NS) {
		db->reclaim_wait_ns = wait * 2;
	}
	env_mutex_unlock(&db->mu);
}

static void *sync_main(void *arg)
{
	struct cairn_db *db = arg;
	uint64_t interval_us = (uint64_t)db->opts.sync_interval_ms * 1000u;
	if (!interval_us)
		interval_us = 1000000; /* the reclaim pass alone */
	for (;;) {
		/* Sleep in short steps so close does not wait a whole interval. */
		for (uint64_t slept = 0; slept < interval_us; slept += 10000) {
			env_mutex_lock(&db->mu);
			int stop = db->shutting_down;
			env_mutex_unlock(&db->mu);
			if (stop)
				return NULL;
			env_sleep_us(db->env,
			             interval_us - slept < 10000 ? interval_us - slept : 10000);
		}
		env_mutex_lock(&db->mu);
		int dirty = db->log_unsynced > 0 && !db->bg_error && db->opts.sync_interval_ms > 0;
		env_mutex_unlock(&db->mu);
		if (dirty)
			cairn_sync(db);
		db_reclaim(db);
	}
}

int db_bg_start(struct cairn_db *db)
{
	int n = db->opts.background_threads;
	if (n == 0)
		return 0;
	db->threads = calloc((size_t)n, sizeof(*db->threads));
	if (!db->threads)
		return CAIRN_ENOMEM;
	for (int i = 0; i < n; i++) {
		int r = env_thread_start(db->env, bg_main, db, &db->threads[i]);
		if (r)
			return r;
		db->nthreads++;
	}
	if (db->opts.sync_interval_ms > 0 || db->opts.space_reserve > 0)
		return env_thread_start(db->env, sync_main, db, &db->sync_thread);
	env_mutex_lock(&db->mu);
	env_cond_broadcast(&db->work_cv);
	env_mutex_unlock(&db->mu);
	return 0;
}

void db_bg_stop(struct cairn_db *db)
{
	env_mutex_lock(&db->mu);
	db->shutting_down = 1;
	env_cond_broadcast(&db->work_cv);
	env_cond_broadcast(&db->bg_cv);
	env_mutex_unlock(&db->mu);
	for (int i = 0; i < db->nthreads; i++)
		db->env->ops->thread_join(db->threads[i]);
	db->nthreads = 0;
	if (db->sync_thread)
		db->env->ops->thread_join(db->sync_thread);
	db->sync_thread = NULL;
}
