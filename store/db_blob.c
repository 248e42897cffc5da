/*
 * db_blob.c - large values in the engine: the shared blob file that
 * cairn_put/cairn_write move large values to, the streaming writer, reads
 * through references, sealing at open and close, and the garbage collector.
 * The file format is blob.c's; this file decides which file takes what and
 * keeps the manifest and the tree in step with the files.
 *
 * Durability order: a blob file's directory entry is synced and the file is
 * recorded in the manifest before any reference to it can be written. The
 * values of a batch are appended to the shared file, unsynced, before the
 * entries that refer to them enter the write path; the shared file is synced
 * (db_blob_sync_active) before every sync of the log, so a reference becomes
 * durable only after the bytes it points to (tables are written only from
 * memtables whose log was synced, a file is synced when it is sealed). An
 * unsynced write costs no sync at all. After a power loss the log may still
 * hold a reference whose bytes never reached the disk: recovery checks the
 * reference of every replayed entry (db_blob_check_ref) and cuts the newest
 * log before the first record whose bytes are lost, as at a torn tail.
 *
 * Garbage. Compaction reports every TYPE_BLOB entry it drops; the record's
 * bytes are added to its file's garbage in the compaction's own edit.
 *
 * Collection of file A (one at a time, on a background thread or at the end
 * of cairn_compact_range):
 *   1. scan A's records; for each whose key's newest entry still refers to
 *      exactly that record, copy the value (verified, 1 MiB at a time) into a
 *      new file B, keeping the original write time in the new reference;
 *   2. sync B and its directory entry, record B in the manifest;
 *   3. write the new references with one synced conditional write: its
 *      group-commit leader (the only writer at that moment) drops every
 *      entry whose key changed since step 1, so a user write always wins;
 *   4. record A's deletion in the manifest; A becomes a zombie, unlinked once
 *      no snapshot, iterator or read in flight older than that write exists.
 * A crash before 4 leaves A whole and listed (B at worst holds uncounted
 * garbage); after 4 every live reference is durable in B.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "db.h"
#include "dbiter.h"
#include "reserve.h"

#define GC_COPY_BUF (1u << 20)

void db_fmt_key(char *out, size_t len, struct slice k)
{
	size_t o = 0;
	for (size_t i = 0; i < k.len && i < 64 && o + 5 < len; i++) {
		unsigned char c = (unsigned char)k.data[i];
		if (c >= 0x20 && c < 0x7f && c != '\\' && c != '\'')
			out[o++] = (char)c;
		else
			o += (size_t)snprintf(out + o, len - o, "\\x%02x", c);
	}
	if (k.len > 64 && o + 4 < len) {
		memcpy(out + o, "...", 3);
		o += 3;
	}
	out[o < len ? o : len - 1] = 0;
}

int db_blob_ref(struct slice ival, struct blob_ref *ref)
{
	if (!ival_valid(ival))
		return CAIRN_ECORRUPT;
	return blob_ref_decode(ival_value(ival), ref);
}

int64_t db_blob_time(struct slice ival)
{
	struct blob_ref ref;
	if (db_blob_ref(ival, &ref) == 0 && ref.has_time)
		return ref.time_ns;
	return ival_time(ival);
}

int db_blob_note_garbage(struct version_edit *e, struct slice ukey, struct slice ival)
{
	struct blob_ref ref;
	if (db_blob_ref(ival, &ref))
		return 0; /* a damaged reference frees nothing it could name */
	return edit_add_garbage(e, ref.file, blob_ref_record_size(&ref, ukey.len));
}

/* With mu held: records blob file number in the manifest. A failed manifest
 * write stops the database (its tail is unknown). */
static int record_blob(struct cairn_db *db, uint64_t number, uint64_t size, int sealed,
                       uint64_t garbage, int del, char *err, size_t errlen)
{
	struct version_edit e;
	edit_init(&e);
	int r = del ? edit_delete_blob(&e, number) : edit_add_blob(&e, number, size, sealed);
	if (!r && garbage)
		r = edit_add_garbage(&e, number, garbage);
	if (!r)
		r = vset_log_and_apply(db->vs, &e, err, errlen);
	edit_free(&e);
	if (r && r != CAIRN_EINVAL && r != CAIRN_ENOMEM) {
		char msg[600];
		fmt_msg(msg, sizeof(msg), "manifest write for blob file %06llu failed: %s",
		        (unsigned long long)number, err);
		db_set_bg_error(db, r, msg);
	}
	return r;
}

/* ---- the shared blob file (blob_mu held) ---- */

/* Records a failed sync of the shared file (r nonzero) for good: log records
 * not yet synced may refer to its unsynced records, so no log sync may
 * succeed from now on, and the database stops. Returns r. */
static int sync_failed(struct cairn_db *db, struct blob_writer *w, int r)
{
	if (!r)
		return 0;
	char detail[256], msg[400];
	db_io_detail(db, detail, sizeof(detail), r);
	fmt_msg(msg, sizeof(msg), "sync of blob file %06llu failed: %s",
	        (unsigned long long)blob_writer_number(w), detail);
	if (!db->blob_sync_err)
		db->blob_sync_err = r;
	env_mutex_lock(&db->mu);
	db_set_bg_error(db, r, msg);
	env_mutex_unlock(&db->mu);
	db_err(db, r, "%s", msg);
	return r;
}

static int seal_active(struct cairn_db *db)
{
	struct blob_writer *w = db->blob_active;
	if (!w)
		return 0;
	db->blob_active = NULL;
	__atomic_store_n(&db->blob_active_size, 0, __ATOMIC_RELAXED);
	/* Log records not yet synced may refer to any record ended so far
	 * (after a failed append too): all of them are synced now, as the
	 * next log sync will no longer see this file. */
	int r = sync_failed(db, w, blob_writer_sync(w));
	uint64_t n = blob_writer_number(w), size = blob_writer_synced_size(w);
	blob_writer_close(w);
	if (r)
		return r; /* left unsealed: the next open finds its good end */
	char err[512] = "";
	env_mutex_lock(&db->mu);
	r = db->bg_error ? CAIRN_EFAILED : record_blob(db, n, size, 1, 0, 0, err, sizeof(err));
	env_mutex_unlock(&db->mu);
	return r;
}

/* Creates a blob file: numbered, created, header synced, directory entry
 * synced. It stays a pending output until the caller records it. */
static int create_file(struct cairn_db *db, uint64_t *number, struct blob_writer **wp)
{
	char path[4096];
	*wp = NULL;
	env_mutex_lock(&db->mu);
	int r = db->bg_error ? CAIRN_EFAILED : 0;
	if (r)
		db_err(db, r, "writes stopped: %s", db->bg_errmsg);
	if (!r) {
		*number = vset_new_file_number(db->vs);
		r = db_pending_add(db, *number);
	}
	env_mutex_unlock(&db->mu);
	if (r)
		return r;
	blob_file_name(path, sizeof(path), db->dir, *number);
	r = blob_writer_create(db->env, path, *number, wp);
	if (!r)
		r = blob_writer_sync(*wp);
	if (!r)
		r = env_sync_dir(db->env, db->dir);
	if (r) {
		char detail[256];
		db_io_detail(db, detail, sizeof(detail), r);
		db_err(db, r, "cannot create blob file '%s': %s", path, detail);
		blob_writer_close(*wp);
		*wp = NULL;
		env_unlink(db->env, path);
		env_mutex_lock(&db->mu);
		db_pending_remove(db, *number);
		env_mutex_unlock(&db->mu);
	}
	return r;
}

static int open_active(struct cairn_db *db)
{
	struct blob_writer *w;
	uint64_t n;
	char err[512] = "";
	int r = create_file(db, &n, &w);
	if (r)
		return r;
	env_mutex_lock(&db->mu);
	r = record_blob(db, n, BLOB_FILE_HEADER, 0, 0, 0, err, sizeof(err));
	db_pending_remove(db, n);
	env_mutex_unlock(&db->mu);
	if (r) {
		char path[4096];
		blob_writer_close(w);
		/* After a failed manifest write (the handle has failed) the edit
		 * naming the file may be on disk all the same: leave the file to
		 * recovery, which removes it if no manifest names it. */
		blob_file_name(path, sizeof(path), db->dir, n);
		if (!db->bg_error)
			env_unlink(db->env, path);
		return db_err(db, r, "cannot record blob file %06llu: %s", (unsigned long long)n,
		              err);
	}
	db->blob_active = w;
	return 0;
}

/* Reports a failed write of the active file and seals it at the last record
 * ended: nothing is ever appended after a partial one, and the next value
 * starts a new file. */
static int active_failed(struct cairn_db *db, int r)
{
	char detail[256];
	db_io_detail(db, detail, sizeof(detail), r);
	db_err(db, r, "blob file %06llu: write failed: %s",
	       (unsigned long long)blob_writer_number(db->blob_active), detail);
	seal_active(db);
	return r;
}

/* Appends one value as a record of the shared file, unsynced: the next log
 * sync syncs it first (db_blob_sync_active). */
static int append_value(struct cairn_db *db, struct slice key, struct slice val,
                        struct blob_ref *ref)
{
	int r = 0;
	if (db->blob_active && blob_writer_size(db->blob_active) >= db->opts.blob_file_size)
		r = seal_active(db);
	if (!r && !db->blob_active)
		r = open_active(db);
	if (r)
		return r;
	struct blob_writer *w = db->blob_active;
	r = blob_writer_begin(w, key);
	if (!r)
		r = blob_writer_append(w, val.data, val.len);
	if (!r)
		r = blob_writer_end(w, ref);
	if (r)
		return active_failed(db, r);
	__atomic_store_n(&db->blob_active_size, blob_writer_size(w), __ATOMIC_RELAXED);
	return 0;
}

int db_blob_sync_active(struct cairn_db *db)
{
	env_mutex_lock(&db->blob_mu);
	int r = db->blob_sync_err;
	struct blob_writer *w = db->blob_active;
	if (!r && w && blob_writer_synced_size(w) < blob_writer_good_size(w))
		r = sync_failed(db, w, blob_writer_sync(w));
	env_mutex_unlock(&db->blob_mu);
	return r;
}

struct convert_ctx {
	struct cairn_db *db;
	struct cairn_batch *out;
	int large; /* scan: a value goes to a blob */
};

static int find_large(void *ctx, uint64_t seq, enum value_type type, struct slice key,
                      struct slice value, int64_t time_ns)
{
	struct convert_ctx *c = ctx;
	(void)seq, (void)key, (void)time_ns;
	if (type == TYPE_VALUE && value.len >= c->db->opts.blob_threshold) {
		c->large = 1;
		return 1;
	}
	return 0;
}

static int convert_entry(void *ctx, uint64_t seq, enum value_type type, struct slice key,
                         struct slice value, int64_t time_ns)
{
	struct convert_ctx *c = ctx;
	(void)seq, (void)time_ns;
	if (type == TYPE_DELETION)
		return cairn_batch_delete(c->out, key.data, key.len);
	if (type == (enum value_type)BATCH_TYPE_COPY)
		return cairn_batch_copy(c->out, value.data, value.len, key.data, key.len);
	if (value.len < c->db->opts.blob_threshold)
		return cairn_batch_put(c->out, key.data, key.len, value.data, value.len);
	struct blob_ref ref;
	char enc[BLOB_REF_MAX];
	struct buf b = {0};
	int r = append_value(c->db, key, value, &ref);
	if (!r)
		r = blob_ref_encode(&ref, &b);
	if (!r) {
		memcpy(enc, b.data, b.len);
		r = batch_put_blob(c->out, key, slice_make(enc, b.len));
	}
	buf_free(&b);
	return r;
}

int db_blob_convert(struct cairn_db *db, const struct cairn_batch *b, struct cairn_batch *priv,
                    const struct cairn_batch **out)
{
	*out = b;
	if (!db->opts.blob_threshold || !b->count)
		return 0;
	struct convert_ctx c = {.db = db, .out = priv};
	int r = batch_iterate_user(b, find_large, &c);
	if (r < 0)
		return r;
	if (!c.large)
		return 0;
	r = batch_init(priv);
	if (r)
		return r;
	env_mutex_lock(&db->blob_mu);
	r = batch_iterate_user(b, convert_entry, &c);
	env_mutex_unlock(&db->blob_mu);
	if (r) {
		batch_destroy(priv);
		return r;
	}
	priv->user_bytes = b->user_bytes;
	*out = priv;
	return 0;
}

int db_blob_seal_active(struct cairn_db *db)
{
	env_mutex_lock(&db->blob_mu);
	int r = seal_active(db);
	env_mutex_unlock(&db->blob_mu);
	return r;
}

/* With blob_mu and mu held: whether the shared file's dead share (counted
 * by compactions) reached blob_gc_ratio with at least min_garbage bytes. */
static int active_garbage_due(struct cairn_db *db, uint64_t min_garbage)
{
	const struct blob_file_meta *m =
	        vset_find_blob(db->vs, blob_writer_number(db->blob_active));
	uint64_t size = __atomic_load_n(&db->blob_active_size, __ATOMIC_RELAXED);
	if (!m || m->sealed || size <= BLOB_FILE_HEADER)
		return 0;
	uint64_t garbage = blob_net_garbage(m);
	return garbage > 0 && garbage >= min_garbage &&
	       (double)garbage >= db->opts.blob_gc_ratio * (double)(size - BLOB_FILE_HEADER);
}

int db_blob_seal_garbage(struct cairn_db *db, uint64_t min_garbage)
{
	int r = 0;
	env_mutex_lock(&db->blob_mu);
	if (db->blob_active) {
		env_mutex_lock(&db->mu);
		int due = active_garbage_due(db, min_garbage);
		env_mutex_unlock(&db->mu);
		if (due)
			r = seal_active(db);
	}
	env_mutex_unlock(&db->blob_mu);
	return r;
}

/* ---- reading ---- */

int db_blob_read(struct cairn_db *db, struct slice key, struct slice ival, uint64_t off, void *buf,
                 size_t len, size_t *got)
{
	char k[300], path[4096], err[512] = "";
	struct blob_ref ref;
	struct blob_reader *rd = NULL;
	*got = 0;
	db_fmt_key(k, sizeof(k), key);
	if (db_blob_ref(ival, &ref))
		return db_err(db, CAIRN_ECORRUPT, "key '%s': malformed blob reference", k);
	blob_file_name(path, sizeof(path), db->dir, ref.file);
	int r = blob_reader_open(db->env, path, &rd, err, sizeof(err));
	if (r && env_exists(db->env, path) == 0)
		return db_err(db, CAIRN_ECORRUPT, "key '%s': blob file %06llu.blob is missing", k,
		              (unsigned long long)ref.file);
	if (!r)
		r = blob_read(rd, &ref, key, off, buf, len, got, err, sizeof(err));
	blob_reader_close(rd);
	if (r)
		return db_err(db, r, "key '%s': %s", k, err);
	return 0;
}

/* ---- copies (cairn_batch_copy) ---- */

struct copy_ctx {
	struct cairn_db *db;
	struct cairn_batch *out;
	struct version_edit edit; /* the shared bytes per file */
	struct blob_reader *rd;   /* the blob file last checked */
	uint64_t rd_file;
};

/* Checks that the record ref points at is there and whole (not its value),
 * keeping the file open for the next copy from it. */
static int copy_check(struct copy_ctx *c, struct slice from, const struct blob_ref *ref)
{
	struct cairn_db *db = c->db;
	char path[4096], k[300], err[512] = "";
	int r = 0;
	db_fmt_key(k, sizeof(k), from);
	if (!c->rd || c->rd_file != ref->file) {
		blob_reader_close(c->rd);
		c->rd = NULL;
		blob_file_name(path, sizeof(path), db->dir, ref->file);
		r = blob_reader_open(db->env, path, &c->rd, err, sizeof(err));
		c->rd_file = ref->file;
		if (r && env_exists(db->env, path) == 0)
			return db_err(db, CAIRN_ECORRUPT,
			              "copy of key '%s': blob file %06llu.blob is missing", k,
			              (unsigned long long)ref->file);
	}
	if (!r)
		r = blob_check(c->rd, ref, from, err, sizeof(err));
	return r ? db_err(db, r, "copy of key '%s': %s", k, err) : 0;
}

/* Puts to the value from holds: its bytes, or a new reference to its blob
 * record that keeps the value's write time and the record's key length. */
static int copy_one(struct copy_ctx *c, struct slice from, struct slice to)
{
	struct cairn_db *db = c->db;
	struct buf ival = {0}, enc = {0};
	enum value_type type;
	struct blob_ref ref;
	char k[300];
	int r = db_lookup_latest(db, from, &type, &ival);
	if (r == CAIRN_ENOTFOUND || (!r && !ival_valid(buf_slice(&ival)))) {
		db_fmt_key(k, sizeof(k), from);
		r = db_err(db, r ? r : CAIRN_ECORRUPT, "copy of key '%s': %s", k,
		           r ? "it has no value" : "malformed entry");
	} else if (r) {
		db_fmt_key(k, sizeof(k), from);
		r = db_err(db, r, "copy of key '%s': cannot read it", k);
	} else if (type == TYPE_VALUE) {
		struct slice v = ival_value(buf_slice(&ival));
		r = cairn_batch_put(c->out, to.data, to.len, v.data, v.len);
	} else if (db_blob_ref(buf_slice(&ival), &ref)) {
		db_fmt_key(k, sizeof(k), from);
		r = db_err(db, CAIRN_ECORRUPT, "copy of key '%s': malformed blob reference", k);
	} else if (!(r = copy_check(c, from, &ref))) {
		uint64_t rec = blob_ref_record_size(&ref, from.len);
		ref.time_ns = db_blob_time(buf_slice(&ival));
		ref.has_time = 1;
		if (!ref.moved) {
			ref.moved = 1;
			ref.rklen = (uint32_t)from.len;
		}
		r = blob_ref_encode(&ref, &enc);
		if (!r)
			r = batch_put_blob(c->out, to, buf_slice(&enc));
		if (!r)
			r = edit_add_shared(&c->edit, ref.file, rec);
	}
	buf_free(&ival);
	buf_free(&enc);
	return r;
}

static int copy_entry(void *ctx, uint64_t seq, enum value_type type, struct slice key,
                      struct slice value, int64_t time_ns)
{
	struct copy_ctx *c = ctx;
	(void)seq, (void)time_ns;
	if (type == TYPE_DELETION)
		return cairn_batch_delete(c->out, key.data, key.len);
	if (type == TYPE_VALUE)
		return cairn_batch_put(c->out, key.data, key.len, value.data, value.len);
	if (type == TYPE_BLOB)
		return batch_put_blob(c->out, key, value);
	return copy_one(c, value, key); /* BATCH_TYPE_COPY: key is the destination */
}

int db_blob_resolve_copies(struct cairn_db *db, const struct cairn_batch *b,
                           struct cairn_batch *out, int *shared)
{
	struct copy_ctx c = {.db = db, .out = out};
	char err[512] = "";
	*shared = 0;
	edit_init(&c.edit);
	int r = batch_init(out);
	if (!r)
		r = batch_iterate_user(b, copy_entry, &c);
	blob_reader_close(c.rd);
	if (!r)
		out->user_bytes = b->user_bytes;
	if (!r && c.edit.nshared) {
		/* Recorded before any reference can reach the log: a collection
		 * must know that a record may be reached under another key. A
		 * write that fails afterwards leaves the count too high, which
		 * only makes collection look at the file later. */
		env_mutex_lock(&db->mu);
		db->blob_copies_begun++;
		*shared = 1;
		r = db->bg_error ? CAIRN_EFAILED
		                 : vset_log_and_apply(db->vs, &c.edit, err, sizeof(err));
		if (r && r != CAIRN_EINVAL && r != CAIRN_ENOMEM && r != CAIRN_EFAILED)
			db_set_bg_error(db, r, err);
		env_mutex_unlock(&db->mu);
		if (r)
			db_err(db, r, "copy: manifest write failed: %s",
			       err[0] ? err : cairn_strerror(r));
	}
	edit_free(&c.edit);
	return r;
}

/* ---- open and close ---- */

int db_blob_recover(struct cairn_db *db, char *err, size_t errlen)
{
	int n;
	const struct blob_file_meta *files = vset_blob_files(db->vs, &n);
	for (int i = 0; i < n; i++) {
		if (files[i].sealed)
			continue;
		/* A crash left this file taking appends: its good part ends at
		 * the last whole record (a torn one was never referred to). */
		char path[4096], msg[512] = "";
		struct blob_reader *rd;
		uint64_t number = files[i].number, good = BLOB_FILE_HEADER;
		blob_file_name(path, sizeof(path), db->dir, number);
		int r = blob_reader_open(db->env, path, &rd, msg, sizeof(msg));
		if (!r) {
			r = blob_scan(rd, UINT64_MAX, 1, NULL, NULL, &good, msg, sizeof(msg));
			blob_reader_close(rd);
		}
		if (r < 0) {
			/* left unsealed: never collected, reads report the damage */
			continue;
		}
		r = record_blob(db, number, good, 1, 0, 0, err, errlen);
		if (r)
			return r;
		files = vset_blob_files(db->vs, &n); /* the array may have moved */
	}
	return 0;
}

int db_blob_sync_unsealed(struct cairn_db *db, char *err, size_t errlen)
{
	int n;
	const struct blob_file_meta *files = vset_blob_files(db->vs, &n);
	for (int i = 0; i < n; i++) {
		if (files[i].sealed)
			continue;
		char path[4096];
		struct env_file *f;
		blob_file_name(path, sizeof(path), db->dir, files[i].number);
		int r = env_open_append(db->env, path, &f);
		if (r == CAIRN_ENOENT)
			continue; /* replay reports the references to it */
		if (!r) {
			r = env_sync(f);
			int c = env_close(f);
			r = r ? r : c;
		}
		if (r) {
			char detail[256];
			db_io_detail(db, detail, sizeof(detail), r);
			fmt_msg(err, errlen, "cannot sync blob file '%s': %s", path, detail);
			return r;
		}
	}
	return 0;
}

/* The end of the run of whole records, every chunk checked, that an unsealed
 * file begins with: the bytes a power loss can have taken lie past it. A file
 * system need not keep a prefix of unsynced appends (a page not yet written
 * back reads as zeros while the size and later pages survive), so a record
 * whose header survived may still have lost its value: only a checked record
 * counts. Scanned once per file during recovery (at most blob_file_size). */
static int verified_end(struct cairn_db *db, struct blob_reader *rd, uint64_t number, uint64_t *end,
                        char *err, size_t errlen)
{
	uint64_t good = BLOB_FILE_HEADER;
	if (db->blob_verified_file != number) {
		int r = blob_scan(rd, UINT64_MAX, 1, NULL, NULL, &good, err, errlen);
		if (r < 0 && r != CAIRN_ECORRUPT)
			return r; /* an I/O error says nothing about what was lost */
		db->blob_verified_file = number;
		db->blob_verified_end = good;
	}
	*end = db->blob_verified_end;
	return 0;
}

int db_blob_check_ref(struct cairn_db *db, struct slice key, struct slice enc, int *lost, char *err,
                      size_t errlen)
{
	char path[4096], k[300], msg[512] = "";
	struct blob_ref ref;
	struct blob_reader *rd = NULL;
	*lost = 0;
	if (blob_ref_decode(enc, &ref))
		return 0; /* damage: its reads report it */
	const struct blob_file_meta *meta = vset_find_blob(db->vs, ref.file);
	if (!meta && ref.file >= db->recovered_next_file) {
		/* Created after the last edit that survived: the edit that
		 * recorded it (written before any reference) is lost. */
		db_fmt_key(k, sizeof(k), key);
		fmt_msg(err, errlen,
		        "key '%s' refers to blob file %06llu.blob, which MANIFEST-%06llu does not "
		        "know (numbered at or above its next file number %llu): a record of the "
		        "manifest is lost or damaged",
		        k, (unsigned long long)ref.file,
		        (unsigned long long)vset_manifest_number(db->vs),
		        (unsigned long long)db->recovered_next_file);
		return CAIRN_ECORRUPT;
	}
	if (!meta)
		return 0; /* collected: a newer entry, synced before, replaces it */
	if (meta->sealed)
		return 0; /* synced whole when sealed */
	blob_file_name(path, sizeof(path), db->dir, ref.file);
	int r = blob_reader_open(db->env, path, &rd, msg, sizeof(msg));
	if (!r)
		r = blob_check(rd, &ref, key, msg, sizeof(msg));
	if ((!r || r == CAIRN_ECORRUPT) && rd) { /* the file header was synced at creation */
		uint64_t end;
		int v = verified_end(db, rd, ref.file, &end, msg, sizeof(msg));
		if (v)
			r = v;
		else
			*lost = ref.offset + blob_ref_record_size(&ref, key.len) > end;
	}
	blob_reader_close(rd);
	/* Any other mismatch is damage, not a power loss (a file is created
	 * and synced before it is recorded, sealed files are synced whole):
	 * the entry is replayed and its reads report the damage, as for a
	 * reference in a table. */
	if (*lost || r == CAIRN_ECORRUPT || r == CAIRN_ENOENT)
		return 0;
	if (r) {
		db_fmt_key(k, sizeof(k), key);
		fmt_msg(err, errlen, "key '%s': %s", k, msg);
	}
	return r;
}

void db_blob_free(struct cairn_db *db)
{
	blob_writer_close(db->blob_active);
	db->blob_active = NULL;
	free(db->zombies);
	free(db->blob_gc_skip);
}

int db_blob_keep_file(struct cairn_db *db, uint64_t number)
{
	if (vset_find_blob(db->vs, number))
		return 1;
	for (size_t i = 0; i < db->npending; i++)
		if (db->pending_outputs[i] == number)
			return 1;
	for (size_t i = 0; i < db->nzombies; i++)
		if (db->zombies[i].number == number)
			return 1;
	return 0;
}

void db_blob_reap(struct cairn_db *db)
{
	if (!db->nzombies)
		return;
	uint64_t oldest = db_smallest_snapshot(db);
	for (size_t i = 0; i < db->nzombies;) {
		if (db->zombies[i].seq > oldest) {
			i++;
			continue;
		}
		char path[4096];
		blob_file_name(path, sizeof(path), db->dir, db->zombies[i].number);
		env_unlink(db->env, path);
		db->zombies[i] = db->zombies[--db->nzombies];
	}
}

/* ---- streams ---- */

struct cairn_stream {
	struct cairn_db *db;
	struct blob_writer *w;
	uint64_t number;
	struct buf key;
};

static void stream_drop(struct cairn_stream *s, int unlink_file)
{
	struct cairn_db *db = s->db;
	if (s->w)
		blob_writer_close(s->w);
	if (unlink_file) {
		char path[4096];
		blob_file_name(path, sizeof(path), db->dir, s->number);
		env_unlink(db->env, path);
	}
	env_mutex_lock(&db->mu);
	db_pending_remove(db, s->number);
	env_mutex_unlock(&db->mu);
	buf_free(&s->key);
	free(s);
}

CAIRN_EXPORT int cairn_stream_new(struct cairn_db *db, const void *key, size_t klen,
                                  struct cairn_stream **sp)
{
	if (!db || !sp || (!key && klen))
		return CAIRN_EINVAL;
	*sp = NULL;
	if (db->opts.read_only)
		return db_err(db, CAIRN_EREADONLY, "the database was opened read-only");
	if (!db->opts.blob_threshold)
		return db_err(db, CAIRN_ENOTSUP, "streams need blob files (blob_threshold is 0)");
	if (klen > CAIRN_MAX_KEY_SIZE)
		return db_err(db, CAIRN_ETOOBIG, "key of %zu bytes is over the limit of %u", klen,
		              CAIRN_MAX_KEY_SIZE);
	int r = db_reserve_check(db, NULL); /* a stream adds data */
	if (r)
		return r;
	struct cairn_stream *s = calloc(1, sizeof(*s));
	if (!s)
		return CAIRN_ENOMEM;
	s->db = db;
	r = buf_set(&s->key, key ? key : "", klen);
	if (r) {
		free(s);
		return r;
	}
	r = create_file(db, &s->number, &s->w);
	if (r) {
		buf_free(&s->key);
		free(s);
		return r;
	}
	r = blob_writer_begin(s->w, buf_slice(&s->key));
	if (r) {
		stream_drop(s, 1);
		return r;
	}
	*sp = s;
	return 0;
}

CAIRN_EXPORT int cairn_stream_write(struct cairn_stream *s, const void *data, size_t len)
{
	if (!s || (!data && len))
		return CAIRN_EINVAL;
	int r = blob_writer_append(s->w, data, len);
	if (r) {
		char detail[256];
		db_io_detail(s->db, detail, sizeof(detail), r);
		db_err(s->db, r, "blob file %06llu: write failed: %s",
		       (unsigned long long)s->number, detail);
	}
	return r;
}

CAIRN_EXPORT int cairn_stream_commit(struct cairn_stream *s, unsigned flags)
{
	if (!s)
		return CAIRN_EINVAL;
	struct cairn_db *db = s->db;
	struct blob_ref ref;
	struct buf enc = {0};
	char err[512] = "";
	int r = blob_writer_end(s->w, &ref);
	if (!r)
		r = blob_writer_sync(s->w);
	uint64_t size = blob_writer_good_size(s->w);
	if (r) {
		char detail[256];
		db_io_detail(db, detail, sizeof(detail), r);
		db_err(db, r, "blob file %06llu: write failed: %s", (unsigned long long)s->number,
		       detail);
		stream_drop(s, 1);
		return r;
	}
	blob_writer_close(s->w);
	s->w = NULL;
	env_mutex_lock(&db->mu);
	r = db->bg_error ? CAIRN_EFAILED
	                 : record_blob(db, s->number, size, 1, 0, 0, err, sizeof(err));
	env_mutex_unlock(&db->mu);
	if (r) {
		db_err(db, r, "cannot record blob file %06llu: %s", (unsigned long long)s->number,
		       err[0] ? err : "writes stopped");
		env_mutex_lock(&db->mu);
		/* as in open_active: a failed manifest write may have named it */
		int known = vset_find_blob(db->vs, s->number) != NULL || db->bg_error;
		env_mutex_unlock(&db->mu);
		stream_drop(s, !known);
		return r;
	}
	struct cairn_batch b;
	r = batch_init(&b);
	if (!r)
		r = blob_ref_encode(&ref, &enc);
	if (!r)
		r = batch_put_blob(&b, buf_slice(&s->key), buf_slice(&enc));
	if (!r) {
		b.user_bytes = s->key.len + ref.size;
		r = db_do_write(db, &b, flags, NULL);
	}
	if (r) {
		/* the key never pointed at it: the whole file is garbage */
		env_mutex_lock(&db->mu);
		if (!db->bg_error)
			record_blob(db, s->number, size, 1, size - BLOB_FILE_HEADER, 0, err,
			            sizeof(err));
		env_mutex_unlock(&db->mu);
	}
	batch_destroy(&b);
	buf_free(&enc);
	stream_drop(s, 0);
	return r;
}

CAIRN_EXPORT void cairn_stream_abort(struct cairn_stream *s)
{
	if (s)
		stream_drop(s, 1);
}

/* ---- garbage collection ---- */

struct db_gc_filter {
	struct cairn_db *db;
	uint64_t old_file;
	uint64_t copies_begun;   /* db->blob_copies_begun when the collection began */
	struct cairn_batch cand; /* key -> new reference, for every value copied */
	uint64_t *old_offset;    /* per candidate: its record in the old file */
	uint64_t *new_bytes;     /* per candidate: its record size in the new file */
	size_t n, cap;
	size_t at;              /* candidate being filtered */
	struct cairn_batch out; /* what the leader decided to write */
	uint64_t moved, rejected;
	int err;
};

static int filter_entry(void *ctx, uint64_t seq, enum value_type type, struct slice key,
                        struct slice value, int64_t time_ns)
{
	struct db_gc_filter *f = ctx;
	(void)seq, (void)type, (void)time_ns;
	size_t i = f->at++;
	struct buf ival = {0};
	enum value_type cur;
	struct blob_ref ref, nref;
	int r = db_lookup_latest(f->db, key, &cur, &ival);
	int keep = r == 0 && cur == TYPE_BLOB && db_blob_ref(buf_slice(&ival), &ref) == 0 &&
	           ref.file == f->old_file && ref.offset == f->old_offset[i];
	buf_free(&ival);
	if (r && r != CAIRN_ENOTFOUND)
		return r;
	if (!keep) {
		f->rejected += f->new_bytes[i]; /* a user write got there first */
		return 0;
	}
	if (blob_ref_decode(value, &nref) == 0)
		f->moved += nref.size;
	return batch_put_blob(&f->out, key, value);
}

int db_blob_gc_filter(struct cairn_db *db, struct db_gc_filter *f, const struct cairn_batch **batch)
{
	env_mutex_lock(&db->mu);
	int copied = db->blob_copies_begun != f->copies_begun;
	env_mutex_unlock(&db->mu);
	*batch = &f->out;
	cairn_batch_clear(&f->out);
	if (copied)
		return CAIRN_EBUSY; /* a copy may have made a reference not scanned */
	f->at = 0;
	f->moved = f->rejected = 0;
	cairn_batch_clear(&f->out);
	int r = batch_iterate(buf_slice(&f->cand.rep), filter_entry, f);
	*batch = &f->out;
	return r;
}

/* With mu held: the sealed file with the highest garbage share at or over
 * the ratio (ties to the lower number), or 0. */
static uint64_t gc_pick(struct cairn_db *db, uint64_t *sealed_size)
{
	int n;
	const struct blob_file_meta *files = vset_blob_files(db->vs, &n);
	uint64_t best = 0;
	double best_share = 0;
	for (int i = 0; i < n; i++) {
		const struct blob_file_meta *b = &files[i];
		if (!b->sealed || b->size <= BLOB_FILE_HEADER)
			continue;
		int skip = 0;
		for (size_t j = 0; j < db->nblob_gc_skip; j++)
			skip |= db->blob_gc_skip[j] == b->number;
		double share = (double)blob_net_garbage(b) / (double)(b->size - BLOB_FILE_HEADER);
		if (skip || share < db->opts.blob_gc_ratio || (best && share <= best_share))
			continue;
		best = b->number;
		best_share = share;
		*sealed_size = b->size;
	}
	return best;
}

int db_blob_gc_due(struct cairn_db *db)
{
	uint64_t size;
	return !db->opts.read_only && db->opts.blob_threshold && !db->bg_error &&
	       !db->blob_gc_running && gc_pick(db, &size) != 0;
}

struct gc_run {
	struct cairn_db *db;
	struct blob_reader *rd;
	struct db_gc_filter f;
	struct blob_writer *out;
	uint64_t out_number;
	char *copy;
	char err[512];
};

static int gc_push(struct gc_run *g, struct slice key, const struct blob_ref *nref,
                   uint64_t old_offset)
{
	struct db_gc_filter *f = &g->f;
	if (f->n == f->cap) {
		size_t cap = f->cap ? f->cap * 2 : 64;
		uint64_t *a = realloc(f->old_offset, cap * sizeof(*a));
		if (a)
			f->old_offset = a;
		uint64_t *b = a ? realloc(f->new_bytes, cap * sizeof(*b)) : NULL;
		if (!b)
			return CAIRN_ENOMEM;
		f->new_bytes = b;
		f->cap = cap;
	}
	struct buf enc = {0};
	int r = blob_ref_encode(nref, &enc);
	if (!r)
		r = batch_put_blob(&f->cand, key, buf_slice(&enc));
	buf_free(&enc);
	if (r)
		return r;
	f->old_offset[f->n] = old_offset;
	f->new_bytes[f->n] = blob_record_size(key.len, nref->size);
	f->n++;
	return 0;
}

/* Copies the value of one live record into the output file. */
static int gc_copy(struct gc_run *g, struct slice key, const struct blob_ref *ref, int64_t time_ns)
{
	struct cairn_db *db = g->db;
	int r = 0;
	if (!g->out)
		r = create_file(db, &g->out_number, &g->out);
	if (!r)
		r = blob_writer_begin(g->out, key);
	for (uint64_t off = 0; !r && off < ref->size;) {
		size_t got = 0;
		r = blob_read(g->rd, ref, key, off, g->copy, GC_COPY_BUF, &got, g->err,
		              sizeof(g->err));
		if (!r && got == 0)
			r = CAIRN_ECORRUPT;
		if (!r)
			r = blob_writer_append(g->out, g->copy, got);
		off += got;
	}
	struct blob_ref nref;
	if (!r)
		r = blob_writer_end(g->out, &nref);
	if (r)
		return r;
	nref.has_time = 1;
	nref.time_ns = time_ns;
	return gc_push(g, key, &nref, ref->offset);
}

static int gc_record(void *ctx, const struct blob_record *rec)
{
	struct gc_run *g = ctx;
	struct buf ival = {0};
	enum value_type type;
	struct blob_ref ref;
	int r = db_lookup_latest(g->db, rec->key, &type, &ival);
	if (r == CAIRN_ENOTFOUND) {
		r = 0;
	} else if (!r && type == TYPE_BLOB && db_blob_ref(buf_slice(&ival), &ref) == 0 &&
	           ref.file == g->f.old_file && ref.offset == rec->offset &&
	           ref.size == rec->size) {
		r = gc_copy(g, rec->key, &ref, db_blob_time(buf_slice(&ival)));
	}
	buf_free(&ival);
	return r;
}

/* Finds the references into the file by a scan of the whole tree, for a
 * file some of whose records cairn_batch_copy made reachable under other
 * keys: the record's own key no longer finds them all. Each referring key
 * gets its own copy of the value. */
static int gc_scan_tree(struct gc_run *g)
{
	struct cairn_iter *it;
	int r = cairn_iter_new(g->db, NULL, &it);
	for (cairn_iter_seek_first(it); !r && cairn_iter_valid(it); cairn_iter_next(it)) {
		enum value_type type;
		struct slice ival, key;
		struct blob_ref ref;
		if (!dbiter_raw(it, &type, &ival) || type != TYPE_BLOB || db_blob_ref(ival, &ref) ||
		    ref.file != g->f.old_file)
			continue;
		key.data = cairn_iter_key(it, &key.len);
		r = gc_copy(g, key, &ref, db_blob_time(ival));
	}
	if (!r && it)
		r = cairn_iter_status(it);
	cairn_iter_free(it);
	return r;
}

/* Collects file number (sealed, size bytes; shared: some records have
 * references under other keys). Runs without mu. */
static int gc_one(struct cairn_db *db, uint64_t number, uint64_t size, int shared,
                  uint64_t copies_begun)
{
	struct gc_run g = {.db = db};
	char path[4096];
	int r = batch_init(&g.f.cand);
	if (!r)
		r = batch_init(&g.f.out);
	g.f.db = db;
	g.f.old_file = number;
	g.f.copies_begun = copies_begun;
	g.copy = malloc(GC_COPY_BUF);
	if (!r && !g.copy)
		r = CAIRN_ENOMEM;
	blob_file_name(path, sizeof(path), db->dir, number);
	if (!r)
		r = blob_reader_open(db->env, path, &g.rd, g.err, sizeof(g.err));
	if (!r && shared) {
		r = gc_scan_tree(&g);
	} else if (!r) {
		r = blob_scan(g.rd, size, 0, gc_record, &g, NULL, g.err, sizeof(g.err));
		if (r == BLOB_SCAN_TORN)
			r = 0; /* past the last whole record nothing was referred to */
	}
	uint64_t out_size = 0;
	if (!r && g.out) {
		r = blob_writer_sync(g.out);
		out_size = blob_writer_good_size(g.out);
	}
	blob_writer_close(g.out);
	g.out = NULL;
	int recorded = 0;
	env_mutex_lock(&db->mu);
	if (!r && g.out_number) {
		r = record_blob(db, g.out_number, out_size, 1, 0, 0, g.err, sizeof(g.err));
		recorded = r == 0;
	}
	if (g.out_number)
		db_pending_remove(db, g.out_number);
	/* as in open_active: a failed manifest write may have named the copy */
	int keep = recorded || db->bg_error;
	env_mutex_unlock(&db->mu);
	if (r && g.out_number && !keep) {
		char opath[4096];
		blob_file_name(opath, sizeof(opath), db->dir, g.out_number);
		env_unlink(db->env, opath);
	}
	if (!r && g.f.n)
		r = db_do_write(db, &g.f.cand, CAIRN_SYNC | DB_GC, &g.f);
	env_mutex_lock(&db->mu);
	if (!r) {
		struct version_edit e;
		edit_init(&e);
		r = edit_delete_blob(&e, number);
		if (!r && g.f.rejected)
			r = edit_add_garbage(&e, g.out_number, g.f.rejected);
		if (!r)
			r = vset_log_and_apply(db->vs, &e, g.err, sizeof(g.err));
		edit_free(&e);
		if (r && r != CAIRN_EINVAL && r != CAIRN_ENOMEM)
			db_set_bg_error(db, r, g.err);
	} else if (recorded && !db->bg_error) {
		/* nothing refers to the copy: all of it is garbage */
		char e2[256];
		record_blob(db, g.out_number, out_size, 1, out_size - BLOB_FILE_HEADER, 0, e2,
		            sizeof(e2));
	}
	if (!r) {
		if (db->nzombies == db->cap_zombies) {
			size_t cap = db->cap_zombies ? db->cap_zombies * 2 : 8;
			struct db_blob_zombie *z = realloc(db->zombies, cap * sizeof(*z));
			if (z) {
				db->zombies = z;
				db->cap_zombies = cap;
			}
		}
		if (db->nzombies < db->cap_zombies) {
			db->zombies[db->nzombies].number = number;
			db->zombies[db->nzombies].seq = vset_last_sequence(db->vs);
			db->nzombies++;
		} /* else: no room to wait; the next open deletes it */
		atomic_fetch_add(&db->st.blob_collections, 1);
		atomic_fetch_add(&db->st.blob_bytes_moved, g.f.moved);
	} else if (r != CAIRN_EBUSY) {
		db_err(db, r, "collection of blob file %06llu failed: %s",
		       (unsigned long long)number, g.err[0] ? g.err : cairn_strerror(r));
	}
	env_mutex_unlock(&db->mu);
	blob_reader_close(g.rd);
	batch_destroy(&g.f.cand);
	batch_destroy(&g.f.out);
	free(g.f.old_offset);
	free(g.f.new_bytes);
	free(g.copy);
	return r;
}

int db_blob_collect(struct cairn_db *db, int all)
{
	int done = 0;
	while (db_blob_gc_due(db) && !db->shutting_down) {
		/* a write whose copies are not all in the tree yet: later */
		if (db->blob_copies_begun != db->blob_copies_done)
			break;
		uint64_t size = 0, number = gc_pick(db, &size);
		int shared = vset_find_blob(db->vs, number)->shared != 0;
		uint64_t begun = db->blob_copies_begun;
		db->blob_gc_running = 1;
		/* a leader waiting for this thread must now do the work itself */
		env_cond_broadcast(&db->bg_cv);
		env_mutex_unlock(&db->mu);
		int r = gc_one(db, number, size, shared, begun);
		env_mutex_lock(&db->mu);
		db->blob_gc_running = 0;
		if (r == CAIRN_EBUSY)
			break; /* a copy raced it: retried at the next chance */
		if (r == CAIRN_ENOSPC) {
			/* no damage: the disk is full. Collection frees space,
			 * so it may use the reserve; else it waits for room. */
			db_note_full(db);
			if (reserve_release(db))
				continue;
			break;
		}
		if (r) {
			/* do not spin on a damaged file: it waits for a reopen */
			uint64_t *p =
			        realloc(db->blob_gc_skip, (db->nblob_gc_skip + 1) * sizeof(*p));
			if (p) {
				db->blob_gc_skip = p;
				p[db->nblob_gc_skip++] = number;
			}
			break;
		}
		done = 1;
		if (!all)
			break;
	}
	db_blob_reap(db);
	env_cond_broadcast(&db->bg_cv);
	return done;
}
