/*
 * version.c - the version set: which table files are live at each level, the
 * manifest that records every change to that, and compaction picking.
 *
 * A version is an immutable array of file_meta pointers per level. A change
 * (flush, compaction, trivial move) is a version edit. vset_log_and_apply
 * copies the current version's arrays into a builder, applies the edit there,
 * sorts and validates the result, appends the encoded edit to the manifest
 * (a record log of kind WAL_KIND_MANIFEST), syncs it, and only then installs
 * the new version. file_meta objects are shared by reference count between
 * the versions (and edits) that name them, so a version costs one pointer per
 * file. Every version still referenced by a reader stays on a doubly linked
 * list, which is how the database learns which files are still live.
 *
 * Recovery replays every edit of the manifest that CURRENT names into one
 * builder (checking each deletion and addition as it goes), validates the
 * final shape, then starts a fresh manifest holding one snapshot edit of the
 * recovered state and switches CURRENT to it. The manifest also rolls over
 * to a fresh snapshot once it passes VSET_MANIFEST_ROLL bytes, so replay time
 * stays bounded. Old manifests are never deleted here: the database removes
 * every file no live version or CURRENT names.
 *
 * Picking follows a fixed rule (see version.h) so two runs with the same
 * operations make the same choices; the shape of a compaction (level-0
 * overlap expansion, boundary files, LevelDB's "expand inputs at level L
 * while level L+1 stays the same") follows LevelDB's version_set.cc.
 *
 * Format of an edit: docs/format.md, "Manifest".
 */
#include "version.h"

#include <assert.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dbformat.h"
#include "wal.h"

/* A manifest larger than this is replaced by a fresh snapshot. */
#define VSET_MANIFEST_ROLL (4u << 20)
/* CURRENT is one short line; anything longer is damage. */
#define CURRENT_MAX_SIZE 64
#define PATH_LEN         4096

enum edit_tag {
	TAG_LOG_NUMBER = 1,
	TAG_NEXT_FILE = 2,
	TAG_LAST_SEQ = 3,
	TAG_POINTER = 4,
	TAG_DELETED = 5,
	TAG_NEW_FILE = 6,
	TAG_BLOB_FILE = 7,
	TAG_BLOB_GARBAGE = 8,
	TAG_DELETED_BLOB = 9,
	TAG_LOG_MARK = 10,
	TAG_BLOB_SHARED = 11,
};

/* The blob files the manifest knows, sorted by number. */
struct blob_set {
	struct blob_file_meta *files;
	int n, cap;
};

struct version_set {
	struct cairn_env *env;
	char *dbdir;
	struct cairn_options opts;
	struct table_cache *tc;
	uint64_t next_file, manifest_number, last_seq, log_number;
	uint64_t loaded_next_file;   /* as the manifest recorded it */
	struct wal_writer *manifest; /* NULL until created or first edited */
	/* recovered for writing: the first edit starts a new manifest (the old
	 * one may end in a torn record, after which nothing may be appended) */
	int roll_pending;
	struct log_mark mark;           /* the last one recorded */
	int failed;                     /* a manifest write failed: tail unknown */
	struct buf pointer[NUM_LEVELS]; /* round-robin compaction pointers */
	struct version list;            /* dummy head of the live versions */
	struct version *current;
	struct blob_set blobs;
	/* vset_set_mutex: the lock callers hold, dropped while an edit is
	 * appended and synced; writing is set meanwhile, and the next edit
	 * waits on write_cv for it to clear. */
	struct env_mutex *mu;
	struct env_cond write_cv;
	int writing;
	uint64_t manifest_bytes; /* size of the manifest, for the stats */
};

/* ------------------------------------------------------------------------ */
/* File names                                                                */

void manifest_file_name(char *out, size_t len, const char *dbdir, uint64_t number)
{
	fmt_msg(out, len, "%s/MANIFEST-%06llu", dbdir, (unsigned long long)number);
}

void log_file_name(char *out, size_t len, const char *dbdir, uint64_t number)
{
	fmt_msg(out, len, "%s/%06llu.log", dbdir, (unsigned long long)number);
}

void current_file_name(char *out, size_t len, const char *dbdir)
{
	fmt_msg(out, len, "%s/CURRENT", dbdir);
}

/* The base name, for messages: "MANIFEST-000007". */
static const char *base_name(const char *path)
{
	const char *s = strrchr(path, '/');
	return s ? s + 1 : path;
}

/* ------------------------------------------------------------------------ */
/* File metadata                                                             */

/*
 * A lookup that searches a table in vain and goes on to the next one pays a
 * seek (an index and data block read, when the filter lets it through) that
 * merging the table into the level below would save. Compacting a table
 * costs about as much I/O as some tens of seeks per MiB, so a table may be
 * passed over once per SEEK_BUDGET_BYTES of its size, and at least
 * SEEK_BUDGET_MIN times so small tables do not churn, before it is worth
 * compacting.
 */
#define SEEK_BUDGET_BYTES (16 * 1024)
#define SEEK_BUDGET_MIN   100

static int64_t seek_budget(uint64_t size)
{
	uint64_t n = size / SEEK_BUDGET_BYTES;
	return n < SEEK_BUDGET_MIN ? SEEK_BUDGET_MIN : n > INT32_MAX ? INT32_MAX : (int64_t)n;
}

static void file_ref(struct file_meta *f)
{
	f->refs++;
}

static void file_unref(struct file_meta *f)
{
	assert(f->refs > 0);
	if (--f->refs > 0)
		return;
	buf_free(&f->smallest);
	buf_free(&f->largest);
	free(f);
}

static struct slice fsmall(const struct file_meta *f)
{
	return buf_slice(&f->smallest);
}
static struct slice flarge(const struct file_meta *f)
{
	return buf_slice(&f->largest);
}
static struct slice fsmall_user(const struct file_meta *f)
{
	return ikey_user(fsmall(f));
}
static struct slice flarge_user(const struct file_meta *f)
{
	return ikey_user(flarge(f));
}

static uint64_t files_bytes(struct file_meta *const *fs, int n)
{
	uint64_t sum = 0;
	for (int i = 0; i < n; i++)
		sum += fs[i]->size;
	return sum;
}

/* ------------------------------------------------------------------------ */
/* Version edits                                                             */

void edit_init(struct version_edit *e)
{
	memset(e, 0, sizeof(*e));
}

void edit_free(struct version_edit *e)
{
	for (int i = 0; i < e->nadded; i++)
		file_unref(e->added[i].f);
	for (int i = 0; i < e->npointers; i++)
		buf_free(&e->pointers[i].key);
	free(e->added);
	free(e->deleted);
	free(e->pointers);
	free(e->deleted_blobs);
	free(e->blobs);
	free(e->garbage);
	free(e->shared);
	edit_init(e);
}

/* Grows an array of elements of size sz to hold one more. */
static int grow(void **arr, int n, int *cap, size_t sz)
{
	if (n < *cap)
		return 0;
	int ncap = *cap ? *cap * 2 : 8;
	void *p = realloc(*arr, (size_t)ncap * sz);
	if (!p)
		return CAIRN_ENOMEM;
	*arr = p;
	*cap = ncap;
	return 0;
}

/* The edit takes a reference on f (edit_free drops it). */
static int edit_add_meta(struct version_edit *e, int level, struct file_meta *f)
{
	int r = grow((void **)&e->added, e->nadded, &e->cap_added, sizeof(*e->added));
	if (r)
		return r;
	file_ref(f);
	e->added[e->nadded].level = level;
	e->added[e->nadded].f = f;
	e->nadded++;
	return 0;
}

int edit_add_file(struct version_edit *e, int level, uint64_t number, uint64_t size,
                  struct slice smallest, struct slice largest, uint64_t min_seq, uint64_t max_seq,
                  uint64_t num_entries)
{
	if (level < 0 || level >= NUM_LEVELS)
		return CAIRN_EINVAL;
	struct file_meta *f = calloc(1, sizeof(*f));
	if (!f)
		return CAIRN_ENOMEM;
	f->number = number;
	f->size = size;
	f->min_seq = min_seq;
	f->max_seq = max_seq;
	f->num_entries = num_entries;
	f->refs = 1;
	f->allowed_seeks = seek_budget(size);
	int r = buf_set(&f->smallest, smallest.data, smallest.len);
	if (!r)
		r = buf_set(&f->largest, largest.data, largest.len);
	if (!r)
		r = edit_add_meta(e, level, f);
	file_unref(f); /* the edit's reference is the only one left */
	return r;
}

int edit_delete_file(struct version_edit *e, int level, uint64_t number)
{
	if (level < 0 || level >= NUM_LEVELS)
		return CAIRN_EINVAL;
	int r = grow((void **)&e->deleted, e->ndeleted, &e->cap_deleted, sizeof(*e->deleted));
	if (r)
		return r;
	e->deleted[e->ndeleted].level = level;
	e->deleted[e->ndeleted].number = number;
	e->ndeleted++;
	return 0;
}

int edit_set_pointer(struct version_edit *e, int level, struct slice ikey)
{
	if (level < 0 || level >= NUM_LEVELS)
		return CAIRN_EINVAL;
	int r = grow((void **)&e->pointers, e->npointers, &e->cap_pointers, sizeof(*e->pointers));
	if (r)
		return r;
	struct edit_pointer *p = &e->pointers[e->npointers];
	memset(p, 0, sizeof(*p));
	p->level = level;
	r = buf_set(&p->key, ikey.data, ikey.len);
	if (r) {
		buf_free(&p->key);
		return r;
	}
	e->npointers++;
	return 0;
}

int edit_add_blob(struct version_edit *e, uint64_t number, uint64_t size, int sealed)
{
	int r = grow((void **)&e->blobs, e->nblobs, &e->cap_blobs, sizeof(*e->blobs));
	if (r)
		return r;
	e->blobs[e->nblobs].number = number;
	e->blobs[e->nblobs].size = size;
	e->blobs[e->nblobs].sealed = sealed != 0;
	e->nblobs++;
	return 0;
}

static int add_bytes(struct edit_garbage **a, int *n, int *cap, uint64_t number, uint64_t bytes)
{
	for (int i = 0; i < *n; i++) {
		if ((*a)[i].number == number) {
			(*a)[i].bytes += bytes;
			return 0;
		}
	}
	int r = grow((void **)a, *n, cap, sizeof(**a));
	if (r)
		return r;
	(*a)[*n].number = number;
	(*a)[*n].bytes = bytes;
	(*n)++;
	return 0;
}

int edit_add_shared(struct version_edit *e, uint64_t number, uint64_t bytes)
{
	return add_bytes(&e->shared, &e->nshared, &e->cap_shared, number, bytes);
}

int edit_add_garbage(struct version_edit *e, uint64_t number, uint64_t bytes)
{
	return add_bytes(&e->garbage, &e->ngarbage, &e->cap_garbage, number, bytes);
}

int edit_delete_blob(struct version_edit *e, uint64_t number)
{
	int r = grow((void **)&e->deleted_blobs, e->ndeleted_blobs, &e->cap_deleted_blobs,
	             sizeof(*e->deleted_blobs));
	if (r)
		return r;
	e->deleted_blobs[e->ndeleted_blobs++] = number;
	return 0;
}

static int put_tag_u64(struct buf *out, uint32_t tag, uint64_t v)
{
	int r = buf_put_varint32(out, tag);
	return r ? r : buf_put_varint64(out, v);
}

static int encode_file(struct buf *out, int level, const struct file_meta *f)
{
	int r = buf_put_varint32(out, TAG_NEW_FILE);
	if (!r)
		r = buf_put_varint32(out, (uint32_t)level);
	if (!r)
		r = buf_put_varint64(out, f->number);
	if (!r)
		r = buf_put_varint64(out, f->size);
	if (!r)
		r = buf_put_lenprefixed(out, f->smallest.data, f->smallest.len);
	if (!r)
		r = buf_put_lenprefixed(out, f->largest.data, f->largest.len);
	if (!r)
		r = buf_put_varint64(out, f->min_seq);
	if (!r)
		r = buf_put_varint64(out, f->max_seq);
	if (!r)
		r = buf_put_varint64(out, f->num_entries);
	return r;
}

/* Fields go out in a fixed order (counters, pointers, deletions, additions),
 * so the same edit always encodes to the same bytes. */
int edit_encode(const struct version_edit *e, struct buf *out)
{
	int r = 0;
	if (e->has_log_number)
		r = put_tag_u64(out, TAG_LOG_NUMBER, e->log_number);
	if (!r && e->has_next_file)
		r = put_tag_u64(out, TAG_NEXT_FILE, e->next_file_number);
	if (!r && e->has_last_seq)
		r = put_tag_u64(out, TAG_LAST_SEQ, e->last_sequence);
	for (int i = 0; !r && i < e->npointers; i++) {
		const struct edit_pointer *p = &e->pointers[i];
		r = buf_put_varint32(out, TAG_POINTER);
		if (!r)
			r = buf_put_varint32(out, (uint32_t)p->level);
		if (!r)
			r = buf_put_lenprefixed(out, p->key.data, p->key.len);
	}
	for (int i = 0; !r && i < e->ndeleted; i++) {
		r = buf_put_varint32(out, TAG_DELETED);
		if (!r)
			r = buf_put_varint32(out, (uint32_t)e->deleted[i].level);
		if (!r)
			r = buf_put_varint64(out, e->deleted[i].number);
	}
	for (int i = 0; !r && i < e->nadded; i++)
		r = encode_file(out, e->added[i].level, e->added[i].f);
	for (int i = 0; !r && i < e->ndeleted_blobs; i++)
		r = put_tag_u64(out, TAG_DELETED_BLOB, e->deleted_blobs[i]);
	for (int i = 0; !r && i < e->nblobs; i++) {
		r = put_tag_u64(out, TAG_BLOB_FILE, e->blobs[i].number);
		if (!r)
			r = buf_put_varint64(out, e->blobs[i].size);
		if (!r)
			r = buf_put_varint32(out, (uint32_t)e->blobs[i].sealed);
	}
	for (int i = 0; !r && i < e->ngarbage; i++) {
		r = put_tag_u64(out, TAG_BLOB_GARBAGE, e->garbage[i].number);
		if (!r)
			r = buf_put_varint64(out, e->garbage[i].bytes);
	}
	for (int i = 0; !r && i < e->nshared; i++) {
		r = put_tag_u64(out, TAG_BLOB_SHARED, e->shared[i].number);
		if (!r)
			r = buf_put_varint64(out, e->shared[i].bytes);
	}
	if (!r && e->mark.set) {
		r = put_tag_u64(out, TAG_LOG_MARK, e->mark.log);
		if (!r)
			r = buf_put_varint64(out, e->mark.length);
		if (!r)
			r = buf_put_varint64(out, e->mark.seq);
	}
	return r;
}

static int get_level(struct slice *in, int *level)
{
	uint32_t v;
	if (slice_get_varint32(in, &v) || v >= NUM_LEVELS)
		return -1;
	*level = (int)v;
	return 0;
}

static int get_ikey(struct slice *in, struct slice *k)
{
	if (slice_get_lenprefixed(in, k))
		return -1;
	return ikey_valid(*k) && k->len <= CAIRN_MAX_KEY_SIZE + IKEY_TRAILER ? 0 : -1;
}

/* Decodes one new-file field; returns a description of the fault or NULL. */
static const char *decode_file(struct slice *in, struct version_edit *e)
{
	int level;
	uint64_t number, size, min_seq, max_seq, entries;
	struct slice smallest, largest;
	if (get_level(in, &level))
		return "new file: bad level";
	if (slice_get_varint64(in, &number) || slice_get_varint64(in, &size))
		return "new file: bad number or size";
	if (get_ikey(in, &smallest) || get_ikey(in, &largest))
		return "new file: bad key";
	if (ikey_cmp(smallest, largest) > 0)
		return "new file: smallest key above largest";
	if (slice_get_varint64(in, &min_seq) || slice_get_varint64(in, &max_seq) ||
	    slice_get_varint64(in, &entries))
		return "new file: bad sequence range or entry count";
	if (min_seq > max_seq || max_seq > MAX_SEQUENCE)
		return "new file: bad sequence range";
	if (edit_add_file(e, level, number, size, smallest, largest, min_seq, max_seq, entries))
		return "out of memory";
	return NULL;
}

static const char *decode_field(uint32_t tag, struct slice *in, struct version_edit *e)
{
	int level;
	uint64_t v;
	struct slice k;
	switch (tag) {
	case TAG_LOG_NUMBER:
		if (slice_get_varint64(in, &e->log_number))
			return "bad log number";
		e->has_log_number = 1;
		return NULL;
	case TAG_NEXT_FILE:
		if (slice_get_varint64(in, &e->next_file_number))
			return "bad next file number";
		e->has_next_file = 1;
		return NULL;
	case TAG_LAST_SEQ:
		if (slice_get_varint64(in, &e->last_sequence) || e->last_sequence > MAX_SEQUENCE)
			return "bad last sequence";
		e->has_last_seq = 1;
		return NULL;
	case TAG_POINTER:
		if (get_level(in, &level) || get_ikey(in, &k))
			return "bad compaction pointer";
		return edit_set_pointer(e, level, k) ? "out of memory" : NULL;
	case TAG_DELETED:
		if (get_level(in, &level) || slice_get_varint64(in, &v))
			return "bad deleted file";
		return edit_delete_file(e, level, v) ? "out of memory" : NULL;
	case TAG_NEW_FILE:
		return decode_file(in, e);
	case TAG_BLOB_FILE: {
		uint64_t size;
		uint32_t flags;
		if (slice_get_varint64(in, &v) || slice_get_varint64(in, &size) ||
		    slice_get_varint32(in, &flags) || flags > 1)
			return "bad blob file";
		return edit_add_blob(e, v, size, (int)flags) ? "out of memory" : NULL;
	}
	case TAG_BLOB_GARBAGE: {
		uint64_t bytes;
		if (slice_get_varint64(in, &v) || slice_get_varint64(in, &bytes))
			return "bad blob garbage";
		return edit_add_garbage(e, v, bytes) ? "out of memory" : NULL;
	}
	case TAG_BLOB_SHARED: {
		uint64_t bytes;
		if (slice_get_varint64(in, &v) || slice_get_varint64(in, &bytes))
			return "bad blob shared bytes";
		return edit_add_shared(e, v, bytes) ? "out of memory" : NULL;
	}
	case TAG_LOG_MARK:
		if (slice_get_varint64(in, &e->mark.log) ||
		    slice_get_varint64(in, &e->mark.length) ||
		    slice_get_varint64(in, &e->mark.seq) || e->mark.seq > MAX_SEQUENCE ||
		    e->mark.length < 16)
			return "bad log mark";
		e->mark.set = 1;
		return NULL;
	case TAG_DELETED_BLOB:
		if (slice_get_varint64(in, &v))
			return "bad deleted blob file";
		return edit_delete_blob(e, v) ? "out of memory" : NULL;
	default:
		return "unknown field tag";
	}
}

int edit_decode(struct slice in, struct version_edit *e, char *err, size_t errlen)
{
	const char *base = in.data;
	edit_init(e);
	while (in.len > 0) {
		const char *field = in.data;
		uint32_t tag = 0;
		const char *what;
		if (slice_get_varint32(&in, &tag))
			what = "bad field tag";
		else
			what = decode_field(tag, &in, e);
		if (what) {
			fmt_msg(err, errlen, "version edit: %s (tag %u at byte %zu)", what,
			        (unsigned)tag, (size_t)(field - base));
			edit_free(e);
			return CAIRN_ECORRUPT;
		}
	}
	return 0;
}

/* Prints up to 48 bytes of a key, escaping what is not printable. */
static void fmt_user_key(char *out, size_t len, struct slice k)
{
	size_t o = 0;
	for (size_t i = 0; i < k.len && i < 48 && o + 5 < len; i++) {
		unsigned char c = (unsigned char)k.data[i];
		if (c >= 0x20 && c < 0x7f && c != '\\' && c != '\'')
			out[o++] = (char)c;
		else
			o += (size_t)snprintf(out + o, len - o, "\\x%02x", c);
	}
	if (k.len > 48 && o + 4 < len) {
		memcpy(out + o, "...", 3);
		o += 3;
	}
	out[o < len ? o : len - 1] = 0;
}

static void fmt_ikey(char *out, size_t len, struct slice ik)
{
	char u[256];
	if (!ikey_valid(ik)) {
		fmt_msg(out, len, "<bad key of %zu bytes>", ik.len);
		return;
	}
	fmt_user_key(u, sizeof(u), ikey_user(ik));
	fmt_msg(out, len, "'%s' @%llu %s", u, (unsigned long long)ikey_seq(ik),
	        ikey_type(ik) == TYPE_DELETION ? "del" : "put");
}

void edit_dump(const struct version_edit *e, void (*fn)(void *ctx, const char *line), void *ctx)
{
	char line[1024], a[300], b[300];
	if (e->has_log_number) {
		fmt_msg(line, sizeof(line), "log_number %llu", (unsigned long long)e->log_number);
		fn(ctx, line);
	}
	if (e->has_next_file) {
		fmt_msg(line, sizeof(line), "next_file_number %llu",
		        (unsigned long long)e->next_file_number);
		fn(ctx, line);
	}
	if (e->has_last_seq) {
		fmt_msg(line, sizeof(line), "last_sequence %llu",
		        (unsigned long long)e->last_sequence);
		fn(ctx, line);
	}
	for (int i = 0; i < e->npointers; i++) {
		fmt_ikey(a, sizeof(a), buf_slice(&e->pointers[i].key));
		fmt_msg(line, sizeof(line), "compact_pointer L%d %s", e->pointers[i].level, a);
		fn(ctx, line);
	}
	for (int i = 0; i < e->ndeleted; i++) {
		fmt_msg(line, sizeof(line), "delete_file L%d #%llu", e->deleted[i].level,
		        (unsigned long long)e->deleted[i].number);
		fn(ctx, line);
	}
	for (int i = 0; i < e->nadded; i++) {
		const struct file_meta *f = e->added[i].f;
		fmt_ikey(a, sizeof(a), fsmall(f));
		fmt_ikey(b, sizeof(b), flarge(f));
		fmt_msg(line, sizeof(line),
		        "add_file L%d #%llu size %llu entries %llu seq %llu..%llu [%s .. %s]",
		        e->added[i].level, (unsigned long long)f->number,
		        (unsigned long long)f->size, (unsigned long long)f->num_entries,
		        (unsigned long long)f->min_seq, (unsigned long long)f->max_seq, a, b);
		fn(ctx, line);
	}
	for (int i = 0; i < e->ndeleted_blobs; i++) {
		fmt_msg(line, sizeof(line), "delete_blob #%llu",
		        (unsigned long long)e->deleted_blobs[i]);
		fn(ctx, line);
	}
	for (int i = 0; i < e->nblobs; i++) {
		fmt_msg(line, sizeof(line), "blob_file #%llu size %llu%s",
		        (unsigned long long)e->blobs[i].number,
		        (unsigned long long)e->blobs[i].size, e->blobs[i].sealed ? " sealed" : "");
		fn(ctx, line);
	}
	for (int i = 0; i < e->ngarbage; i++) {
		fmt_msg(line, sizeof(line), "blob_garbage #%llu +%llu",
		        (unsigned long long)e->garbage[i].number,
		        (unsigned long long)e->garbage[i].bytes);
		fn(ctx, line);
	}
	for (int i = 0; i < e->nshared; i++) {
		fmt_msg(line, sizeof(line), "blob_shared #%llu +%llu",
		        (unsigned long long)e->shared[i].number,
		        (unsigned long long)e->shared[i].bytes);
		fn(ctx, line);
	}
	if (e->mark.set) {
		fmt_msg(line, sizeof(line), "log_mark #%llu synced through %llu seq %llu",
		        (unsigned long long)e->mark.log, (unsigned long long)e->mark.length,
		        (unsigned long long)e->mark.seq);
		fn(ctx, line);
	}
}

/* ------------------------------------------------------------------------ */
/* Blob files                                                                */

static int blob_find(const struct blob_set *bs, uint64_t number)
{
	int lo = 0, hi = bs->n;
	while (lo < hi) {
		int mid = lo + (hi - lo) / 2;
		if (bs->files[mid].number < number)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

static int blob_known(const struct blob_set *bs, uint64_t number)
{
	int i = blob_find(bs, number);
	return i < bs->n && bs->files[i].number == number;
}

/* Checks that every blob deletion of e names a known file (or one the same
 * edit adds earlier, which no writer does). */
static int blobs_check(const struct blob_set *bs, const struct version_edit *e, char *err,
                       size_t errlen)
{
	for (int i = 0; i < e->ndeleted_blobs; i++) {
		if (!blob_known(bs, e->deleted_blobs[i])) {
			fmt_msg(err, errlen, "edit deletes blob file %llu, which is not live",
			        (unsigned long long)e->deleted_blobs[i]);
			return CAIRN_ECORRUPT;
		}
	}
	return 0;
}

/* Applies the blob part of e; blobs_check passed. Only ENOMEM can fail, and
 * room is made before anything changes. */
static int blobs_apply(struct blob_set *bs, const struct version_edit *e)
{
	int r = 0;
	if (bs->n + e->nblobs > bs->cap) {
		int cap = bs->cap ? bs->cap : 8;
		while (cap < bs->n + e->nblobs)
			cap *= 2;
		void *p = realloc(bs->files, (size_t)cap * sizeof(*bs->files));
		if (!p)
			return CAIRN_ENOMEM;
		bs->files = p;
		bs->cap = cap;
	}
	for (int i = 0; i < e->ndeleted_blobs; i++) {
		int at = blob_find(bs, e->deleted_blobs[i]);
		memmove(&bs->files[at], &bs->files[at + 1],
		        (size_t)(bs->n - at - 1) * sizeof(*bs->files));
		bs->n--;
	}
	for (int i = 0; i < e->nblobs; i++) {
		const struct edit_blob *b = &e->blobs[i];
		int at = blob_find(bs, b->number);
		if (at == bs->n || bs->files[at].number != b->number) {
			memmove(&bs->files[at + 1], &bs->files[at],
			        (size_t)(bs->n - at) * sizeof(*bs->files));
			memset(&bs->files[at], 0, sizeof(bs->files[at]));
			bs->files[at].number = b->number;
			bs->n++;
		}
		bs->files[at].size = b->size;
		bs->files[at].sealed = b->sealed;
	}
	for (int i = 0; i < e->ngarbage; i++) {
		int at = blob_find(bs, e->garbage[i].number);
		if (at == bs->n || bs->files[at].number != e->garbage[i].number)
			continue; /* collected already: its garbage went with it */
		bs->files[at].garbage += e->garbage[i].bytes;
	}
	for (int i = 0; i < e->nshared; i++) {
		int at = blob_find(bs, e->shared[i].number);
		if (at < bs->n && bs->files[at].number == e->shared[i].number)
			bs->files[at].shared += e->shared[i].bytes;
	}
	return r;
}

const struct blob_file_meta *vset_blob_files(struct version_set *vs, int *n)
{
	*n = vs->blobs.n;
	return vs->blobs.files;
}

const struct blob_file_meta *vset_find_blob(struct version_set *vs, uint64_t number)
{
	int at = blob_find(&vs->blobs, number);
	return at < vs->blobs.n && vs->blobs.files[at].number == number ? &vs->blobs.files[at]
	                                                                : NULL;
}

/* ------------------------------------------------------------------------ */
/* Versions                                                                  */

static struct version *version_alloc(struct version_set *vs)
{
	struct version *v = calloc(1, sizeof(*v));
	if (!v)
		return NULL;
	v->vs = vs;
	v->compaction_level = -1;
	return v;
}

/* Frees v, unlinking it from the live list if it is on it. */
static void version_destroy(struct version *v)
{
	if (v->prev) {
		v->prev->next = v->next;
		v->next->prev = v->prev;
	}
	for (int l = 0; l < NUM_LEVELS; l++) {
		for (int i = 0; i < v->nfiles[l]; i++)
			file_unref(v->files[l][i]);
		free(v->files[l]);
	}
	free(v);
}

void version_ref(struct version *v)
{
	v->refs++;
}

void version_unref(struct version *v)
{
	assert(v->refs > 0);
	if (--v->refs == 0)
		version_destroy(v);
}

uint64_t version_level_bytes(const struct version *v, int level)
{
	if (level < 0 || level >= NUM_LEVELS)
		return 0;
	return files_bytes(v->files[level], v->nfiles[level]);
}

static double level_max_bytes(const struct version_set *vs, int level)
{
	double max = (double)vs->opts.level1_target_size;
	for (int l = 1; l < level; l++)
		max *= vs->opts.level_size_ratio;
	return max;
}

/* The last level has nowhere to compact to, so it has no score. */
static double level_score(const struct version_set *vs, const struct version *v, int level)
{
	if (level >= NUM_LEVELS - 1)
		return 0;
	if (level == 0)
		return (double)v->nfiles[0] / vs->opts.l0_compaction_trigger;
	return (double)version_level_bytes(v, level) / level_max_bytes(vs, level);
}

static void version_compute_score(struct version *v)
{
	v->compaction_score = 0;
	v->compaction_level = -1;
	for (int l = 0; l < NUM_LEVELS - 1; l++) {
		double s = level_score(v->vs, v, l);
		if (v->compaction_level < 0 || s > v->compaction_score) {
			v->compaction_score = s;
			v->compaction_level = l;
		}
	}
}

/* The first file, by level then in the level's picking order, whose seek
 * budget ran out: the budgets of the files a new version keeps carry over,
 * so a candidate the previous version had is found again. The last level
 * has nowhere to compact to. */
static void version_find_seek_file(struct version *v)
{
	v->seek_file = NULL;
	v->seek_level = -1;
	for (int l = 0; l < NUM_LEVELS - 1; l++) {
		for (int i = 0; i < v->nfiles[l]; i++) {
			struct file_meta *f = v->files[l][l == 0 ? v->nfiles[l] - 1 - i : i];
			if (f->allowed_seeks <= 0) {
				v->seek_file = f;
				v->seek_level = l;
				return;
			}
		}
	}
}

/* ------------------------------------------------------------------------ */
/* The builder: a mutable copy of a version that edits are applied to        */

struct builder {
	struct file_meta **files[NUM_LEVELS];
	int n[NUM_LEVELS], cap[NUM_LEVELS];
};

static void builder_free(struct builder *b)
{
	for (int l = 0; l < NUM_LEVELS; l++) {
		for (int i = 0; i < b->n[l]; i++)
			file_unref(b->files[l][i]);
		free(b->files[l]);
	}
	memset(b, 0, sizeof(*b));
}

static int builder_push(struct builder *b, int level, struct file_meta *f)
{
	int r = grow((void **)&b->files[level], b->n[level], &b->cap[level], sizeof(f));
	if (r)
		return r;
	file_ref(f);
	b->files[level][b->n[level]++] = f;
	return 0;
}

static int builder_init(struct builder *b, const struct version *base)
{
	memset(b, 0, sizeof(*b));
	for (int l = 0; l < NUM_LEVELS; l++) {
		for (int i = 0; i < base->nfiles[l]; i++) {
			int r = builder_push(b, l, base->files[l][i]);
			if (r) {
				builder_free(b);
				return r;
			}
		}
	}
	return 0;
}

static int builder_find(const struct builder *b, int level, uint64_t number)
{
	for (int i = 0; i < b->n[level]; i++)
		if (b->files[level][i]->number == number)
			return i;
	return -1;
}

static int builder_has(const struct builder *b, uint64_t number)
{
	for (int l = 0; l < NUM_LEVELS; l++)
		if (builder_find(b, l, number) >= 0)
			return 1;
	return 0;
}

/* Deletions first, then additions, so one edit can move a file down. The
 * order inside a level does not matter here: builder_finish sorts. */
static int builder_apply(struct builder *b, const struct version_edit *e, char *err, size_t errlen)
{
	for (int i = 0; i < e->ndeleted; i++) {
		int l = e->deleted[i].level;
		int at = builder_find(b, l, e->deleted[i].number);
		if (at < 0) {
			fmt_msg(err, errlen, "edit deletes file %llu, which is not in level %d",
			        (unsigned long long)e->deleted[i].number, l);
			return CAIRN_ECORRUPT;
		}
		file_unref(b->files[l][at]);
		b->files[l][at] = b->files[l][--b->n[l]];
	}
	for (int i = 0; i < e->nadded; i++) {
		struct file_meta *f = e->added[i].f;
		if (builder_has(b, f->number)) {
			fmt_msg(err, errlen, "edit adds file %llu, which is already live",
			        (unsigned long long)f->number);
			return CAIRN_ECORRUPT;
		}
		if (!ikey_valid(fsmall(f)) || !ikey_valid(flarge(f)) ||
		    ikey_cmp(fsmall(f), flarge(f)) > 0) {
			fmt_msg(err, errlen, "edit adds file %llu with a bad key range",
			        (unsigned long long)f->number);
			return CAIRN_ECORRUPT;
		}
		int r = builder_push(b, e->added[i].level, f);
		if (r) {
			fmt_msg(err, errlen, "out of memory applying a version edit");
			return r;
		}
	}
	return 0;
}

/* Level 0: newest (highest number) first. */
static int cmp_newest_first(const void *a, const void *b)
{
	const struct file_meta *fa = *(struct file_meta *const *)a;
	const struct file_meta *fb = *(struct file_meta *const *)b;
	return fa->number < fb->number ? 1 : fa->number > fb->number ? -1 : 0;
}

/* Deeper levels: by smallest key (numbers break ties so the order is total). */
static int cmp_by_smallest(const void *a, const void *b)
{
	const struct file_meta *fa = *(struct file_meta *const *)a;
	const struct file_meta *fb = *(struct file_meta *const *)b;
	int r = ikey_cmp(fsmall(fa), fsmall(fb));
	if (r)
		return r;
	return fa->number < fb->number ? -1 : fa->number > fb->number;
}

/* Sorts, checks that levels >= 1 are runs of disjoint files, and moves the
 * arrays into a new version (the builder is left empty). */
static int builder_finish(struct builder *b, struct version_set *vs, struct version **out,
                          char *err, size_t errlen)
{
	for (int l = 0; l < NUM_LEVELS; l++) {
		if (b->n[l] > 1)
			qsort(b->files[l], (size_t)b->n[l], sizeof(*b->files[l]),
			      l == 0 ? cmp_newest_first : cmp_by_smallest);
		for (int i = 1; l > 0 && i < b->n[l]; i++) {
			struct file_meta *p = b->files[l][i - 1], *f = b->files[l][i];
			if (ikey_cmp(flarge(p), fsmall(f)) >= 0) {
				fmt_msg(err, errlen, "level %d: files %llu and %llu overlap", l,
				        (unsigned long long)p->number,
				        (unsigned long long)f->number);
				return CAIRN_ECORRUPT;
			}
		}
	}
	struct version *v = version_alloc(vs);
	if (!v) {
		fmt_msg(err, errlen, "out of memory building a version");
		return CAIRN_ENOMEM;
	}
	for (int l = 0; l < NUM_LEVELS; l++) {
		v->files[l] = b->files[l];
		v->nfiles[l] = b->n[l];
		b->files[l] = NULL;
		b->n[l] = b->cap[l] = 0;
	}
	version_compute_score(v);
	*out = v;
	return 0;
}

/* Makes v current: the set holds one reference on its current version.
 * The seek candidate is found here, not when v was built: lookups may have
 * spent budgets while the edit was written. */
static void vset_install(struct version_set *vs, struct version *v)
{
	version_find_seek_file(v);
	v->prev = vs->list.prev;
	v->next = &vs->list;
	v->prev->next = v;
	v->next->prev = v;
	version_ref(v);
	if (vs->current)
		version_unref(vs->current);
	vs->current = v;
}

static int vset_apply_pointers(struct version_set *vs, const struct version_edit *e)
{
	for (int i = 0; i < e->npointers; i++) {
		const struct edit_pointer *p = &e->pointers[i];
		int r = buf_set(&vs->pointer[p->level], p->key.data, p->key.len);
		if (r)
			return r;
	}
	return 0;
}

/* ------------------------------------------------------------------------ */
/* The version set                                                           */

int vset_new(struct cairn_env *env, const char *dbdir, const struct cairn_options *opts,
             struct table_cache *tc, struct version_set **vsp)
{
	*vsp = NULL;
	if (!env || !dbdir || !opts || strlen(dbdir) > PATH_LEN - 64)
		return CAIRN_EINVAL;
	/* divisors of the scores */
	if (opts->l0_compaction_trigger < 1 || opts->level_size_ratio < 1 ||
	    opts->level1_target_size < 1 || opts->table_target_size < 1)
		return CAIRN_EINVAL;
	struct version_set *vs = calloc(1, sizeof(*vs));
	if (!vs)
		return CAIRN_ENOMEM;
	vs->dbdir = strdup(dbdir);
	struct version *v = version_alloc(vs);
	if (!vs->dbdir || !v) {
		free(v);
		free(vs->dbdir);
		free(vs);
		return CAIRN_ENOMEM;
	}
	vs->env = env;
	vs->opts = *opts;
	vs->tc = tc;
	vs->next_file = 2;
	vs->manifest_number = 1;
	vs->list.prev = vs->list.next = &vs->list;
	env_cond_init(env, &vs->write_cv);
	version_compute_score(v);
	vset_install(vs, v);
	*vsp = vs;
	return 0;
}

void vset_free(struct version_set *vs)
{
	if (!vs)
		return;
	wal_writer_close(vs->manifest);
	version_unref(vs->current);
	/* Versions still held here are a caller's bug; free them so nothing
	 * leaks, dropping the set's last link to them. */
	while (vs->list.next != &vs->list)
		version_destroy(vs->list.next);
	for (int l = 0; l < NUM_LEVELS; l++)
		buf_free(&vs->pointer[l]);
	free(vs->blobs.files);
	free(vs->dbdir);
	env_cond_destroy(&vs->write_cv);
	free(vs);
}

void vset_set_mutex(struct version_set *vs, struct env_mutex *mu)
{
	vs->mu = mu;
}

struct version *vset_current(struct version_set *vs)
{
	return vs->current;
}
uint64_t vset_new_file_number(struct version_set *vs)
{
	return vs->next_file++;
}

uint64_t vset_loaded_next_file(const struct version_set *vs)
{
	return vs->loaded_next_file;
}

uint64_t vset_next_file(const struct version_set *vs)
{
	return vs->next_file;
}

void vset_mark_file_number_used(struct version_set *vs, uint64_t n)
{
	if (vs->next_file <= n)
		vs->next_file = n + 1;
}

uint64_t vset_last_sequence(const struct version_set *vs)
{
	return vs->last_seq;
}

void vset_set_last_sequence(struct version_set *vs, uint64_t s)
{
	assert(s >= vs->last_seq);
	vs->last_seq = s;
}

uint64_t vset_log_number(const struct version_set *vs)
{
	return vs->log_number;
}
struct log_mark vset_log_mark(const struct version_set *vs)
{
	struct log_mark m = vs->mark;
	if (m.log < vs->log_number)
		m.set = 0;
	return m;
}

int vset_failed(const struct version_set *vs)
{
	return vs->failed;
}

uint64_t vset_manifest_number(const struct version_set *vs)
{
	return vs->manifest_number;
}

uint64_t vset_manifest_size(const struct version_set *vs)
{
	return vs->manifest ? vs->manifest_bytes : 0;
}

int vset_num_level_files(struct version_set *vs, int level)
{
	if (level < 0 || level >= NUM_LEVELS)
		return 0;
	return vs->current->nfiles[level];
}

/* Fills err with "what: <env message>" after a failed env call. */
static int io_fail(struct version_set *vs, int r, char *err, size_t errlen, const char *what)
{
	char msg[512];
	env_errmsg(vs->env, msg, sizeof(msg));
	if (msg[0])
		fmt_msg(err, errlen, "%s: %s", what, msg);
	else
		fmt_msg(err, errlen, "%s: error %d", what, r);
	return r;
}

/* One edit that rebuilds v from nothing: counters, pointers, every file. */
static int snapshot_edit(struct version_set *vs, const struct version *v, uint64_t next_file,
                         struct version_edit *e)
{
	edit_init(e);
	e->has_log_number = e->has_next_file = e->has_last_seq = 1;
	e->log_number = vs->log_number;
	e->next_file_number = next_file;
	e->last_sequence = vs->last_seq;
	int r = 0;
	for (int l = 0; !r && l < NUM_LEVELS; l++)
		if (vs->pointer[l].len)
			r = edit_set_pointer(e, l, buf_slice(&vs->pointer[l]));
	for (int l = 0; !r && l < NUM_LEVELS; l++)
		for (int i = 0; !r && i < v->nfiles[l]; i++)
			r = edit_add_meta(e, l, v->files[l][i]);
	for (int i = 0; !r && i < vs->blobs.n; i++) {
		const struct blob_file_meta *b = &vs->blobs.files[i];
		r = edit_add_blob(e, b->number, b->size, b->sealed);
		if (!r && b->garbage)
			r = edit_add_garbage(e, b->number, b->garbage);
		if (!r && b->shared)
			r = edit_add_shared(e, b->number, b->shared);
	}
	e->mark = vset_log_mark(vs);
	if (r)
		edit_free(e);
	return r;
}

/* Writes, into dir, manifest `number` holding a snapshot of v and then (if
 * extra is given) one more record, and syncs it. The writer is returned open
 * in *wp, or closed when wp is NULL. */
static int write_manifest(struct version_set *vs, const char *dir, uint64_t number,
                          const struct version *v, uint64_t next_file, const struct buf *extra,
                          struct wal_writer **wp, char *err, size_t errlen)
{
	char path[PATH_LEN];
	struct env_file *f = NULL;
	struct wal_writer *w = NULL;
	struct version_edit e;
	struct buf rec = {0};
	manifest_file_name(path, sizeof(path), dir, number);
	int r = snapshot_edit(vs, v, next_file, &e);
	if (!r) {
		r = edit_encode(&e, &rec);
		edit_free(&e);
	}
	if (r) {
		buf_free(&rec);
		fmt_msg(err, errlen, "%s: out of memory", base_name(path));
		return r;
	}
	r = env_open_write(vs->env, path, &f);
	if (!r)
		r = wal_writer_new(f, WAL_KIND_MANIFEST, &w);
	if (!r)
		r = wal_add(w, rec.data, rec.len);
	if (!r && extra)
		r = wal_add(w, extra->data, extra->len);
	if (!r)
		r = wal_sync(w);
	buf_free(&rec);
	if (r) {
		io_fail(vs, r, err, errlen, base_name(path));
		wal_writer_close(w);
		return r;
	}
	if (wp)
		*wp = w;
	else
		r = wal_writer_close(w);
	return r;
}

/* Points dir/CURRENT at manifest `number`: write a temporary file, sync it,
 * rename it over CURRENT, sync the directory. A crash leaves either the old
 * CURRENT or the new one, never a torn one. */
int current_write(struct cairn_env *env, const char *dir, uint64_t number, const char **what)
{
	char tmp[PATH_LEN], cur[PATH_LEN], line[64];
	struct env_file *f = NULL;
	fmt_msg(tmp, sizeof(tmp), "%s/CURRENT.tmp", dir);
	current_file_name(cur, sizeof(cur), dir);
	fmt_msg(line, sizeof(line), "MANIFEST-%06llu\n", (unsigned long long)number);
	int r = env_open_write(env, tmp, &f);
	if (!r)
		r = env_append(f, line, strlen(line));
	if (!r)
		r = env_sync(f);
	if (f) {
		int rc = env_close(f);
		r = r ? r : rc;
	}
	if (r) {
		*what = "CURRENT.tmp";
		env_unlink(env, tmp);
		return r;
	}
	*what = "CURRENT";
	r = env_rename(env, tmp, cur);
	return r ? r : env_sync_dir(env, dir);
}

static int write_current(struct version_set *vs, const char *dir, uint64_t number, char *err,
                         size_t errlen)
{
	const char *what = NULL;
	int r = current_write(vs->env, dir, number, &what);
	return r ? io_fail(vs, r, err, errlen, what) : 0;
}

/* Starts manifest `number` as a snapshot of the current version and switches
 * CURRENT to it; the new writer replaces the old one. */
static int vset_new_manifest(struct version_set *vs, uint64_t number, const struct version *v,
                             const struct buf *extra, char *err, size_t errlen)
{
	struct wal_writer *w = NULL;
	int r = write_manifest(vs, vs->dbdir, number, v, vs->next_file, extra, &w, err, errlen);
	/* The manifest's directory entry is durable before CURRENT names it:
	 * otherwise power loss can keep the rename of CURRENT and lose the
	 * manifest (found by tests/sim, seed 36). */
	if (!r) {
		r = env_sync_dir(vs->env, vs->dbdir);
		if (r)
			io_fail(vs, r, err, errlen, vs->dbdir);
	}
	if (!r)
		r = write_current(vs, vs->dbdir, number, err, errlen);
	if (r) {
		wal_writer_close(w);
		return r;
	}
	wal_writer_close(vs->manifest);
	vs->manifest = w;
	vs->roll_pending = 0;
	vs->manifest_number = number;
	vs->manifest_bytes = wal_size(w);
	return 0;
}

int vset_create(struct version_set *vs, char *err, size_t errlen)
{
	if (vs->manifest || vs->failed) {
		fmt_msg(err, errlen, "version set already has a manifest");
		return CAIRN_EINVAL;
	}
	vs->next_file = 2;
	vs->log_number = 0;
	vs->last_seq = 0;
	return vset_new_manifest(vs, 1, vs->current, NULL, err, errlen);
}

/* Reads CURRENT and returns the manifest number it names. */
static int read_current(struct version_set *vs, uint64_t *number, char *err, size_t errlen)
{
	char path[PATH_LEN], data[CURRENT_MAX_SIZE + 1];
	struct env_file *f = NULL;
	uint64_t size = 0;
	size_t got = 0;
	current_file_name(path, sizeof(path), vs->dbdir);
	int r = env_exists(vs->env, path);
	if (r == 0) {
		fmt_msg(err, errlen, "CURRENT: no such file");
		return CAIRN_ENOENT;
	}
	if (r < 0)
		return io_fail(vs, r, err, errlen, "CURRENT");
	r = env_open_read(vs->env, path, &f);
	if (!r)
		r = env_size(f, &size);
	if (!r && size <= CURRENT_MAX_SIZE)
		r = env_pread(f, 0, data, (size_t)size, &got);
	env_close(f);
	if (r)
		return io_fail(vs, r, err, errlen, "CURRENT");
	if (size > CURRENT_MAX_SIZE || got != size) {
		fmt_msg(err, errlen, "CURRENT: %llu bytes, not one manifest name",
		        (unsigned long long)size);
		return CAIRN_ECORRUPT;
	}
	if (got == 0 || data[got - 1] != '\n') {
		fmt_msg(err, errlen, "CURRENT: does not end with a newline");
		return CAIRN_ECORRUPT;
	}
	data[got - 1] = 0;
	/* the prefix check comes first: p must stay inside the string */
	const char *p = data + 9;
	if (strlen(data) != got - 1 || strncmp(data, "MANIFEST-", 9) ||
	    strspn(p, "0123456789") != strlen(p) || strlen(p) == 0 || strlen(p) > 19) {
		fmt_msg(err, errlen, "CURRENT: does not name a MANIFEST-N file");
		return CAIRN_ECORRUPT;
	}
	*number = strtoull(p, NULL, 10);
	return 0;
}

struct replay {
	int has_log, has_next, has_last;
	uint64_t log_number, next_file, last_seq;
	int ends_in_mark; /* the last record was a clean close's log mark */
};

static int replay_record(struct version_set *vs, struct builder *b, struct replay *st,
                         struct slice rec, char *msg, size_t msglen)
{
	struct version_edit e;
	int r = edit_decode(rec, &e, msg, msglen);
	if (r)
		return r;
	r = builder_apply(b, &e, msg, msglen);
	if (!r)
		r = blobs_check(&vs->blobs, &e, msg, msglen);
	if (!r && blobs_apply(&vs->blobs, &e)) {
		fmt_msg(msg, msglen, "out of memory");
		r = CAIRN_ENOMEM;
	}
	if (!r && vset_apply_pointers(vs, &e)) {
		fmt_msg(msg, msglen, "out of memory");
		r = CAIRN_ENOMEM;
	}
	if (!r && e.has_log_number) {
		st->has_log = 1;
		st->log_number = e.log_number;
	}
	if (!r && e.has_next_file) {
		st->has_next = 1;
		st->next_file = e.next_file_number;
	}
	if (!r && e.has_last_seq) {
		st->has_last = 1;
		st->last_seq = e.last_sequence;
	}
	if (!r && e.mark.set)
		vs->mark = e.mark;
	st->ends_in_mark = !r && e.mark.set;
	edit_free(&e);
	return r;
}

/* Replays every record of the manifest into a new version. */
static int replay_manifest(struct version_set *vs, const char *path, struct version **vp,
                           struct replay *st, char *err, size_t errlen)
{
	struct builder b;
	struct wal_reader *rd = NULL;
	char msg[512];
	memset(&b, 0, sizeof(b));
	memset(st, 0, sizeof(*st));
	int r = wal_reader_open(vs->env, path, WAL_KIND_MANIFEST, &rd, err, errlen);
	if (r)
		return r;
	for (;;) {
		struct slice rec;
		uint64_t off = wal_good_offset(rd);
		r = wal_next(rd, &rec, err, errlen);
		if (r == WAL_EOF || r == WAL_TORN) {
			r = 0;
			break;
		}
		if (r < 0)
			goto out;
		r = replay_record(vs, &b, st, rec, msg, sizeof(msg));
		if (r) {
			fmt_msg(err, errlen, "%s: record at offset %llu: %s", base_name(path),
			        (unsigned long long)off, msg);
			goto out;
		}
	}
	if (!st->has_next || !st->has_last) {
		fmt_msg(err, errlen, "%s: no %s recorded", base_name(path),
		        st->has_next ? "last sequence" : "next file number");
		r = CAIRN_ECORRUPT;
		goto out;
	}
	r = builder_finish(&b, vs, vp, msg, sizeof(msg));
	if (r)
		fmt_msg(err, errlen, "%s: %s", base_name(path), msg);
out:
	wal_reader_close(rd);
	builder_free(&b);
	return r;
}

int vset_recover(struct version_set *vs, char *err, size_t errlen)
{
	char path[PATH_LEN];
	uint64_t number = 0;
	struct replay st;
	struct version *v = NULL;
	if (vs->manifest || vs->failed) {
		fmt_msg(err, errlen, "version set already has a manifest");
		return CAIRN_EINVAL;
	}
	int r = read_current(vs, &number, err, errlen);
	if (r)
		return r;
	manifest_file_name(path, sizeof(path), vs->dbdir, number);
	r = env_exists(vs->env, path);
	if (r <= 0) {
		if (r < 0)
			return io_fail(vs, r, err, errlen, base_name(path));
		fmt_msg(err, errlen, "CURRENT: names %s, which does not exist", base_name(path));
		return CAIRN_ECORRUPT;
	}
	r = replay_manifest(vs, path, &v, &st, err, errlen);
	if (r)
		return r;
	vs->next_file = vs->loaded_next_file = st.next_file;
	vs->last_seq = st.last_seq;
	vs->log_number = st.has_log ? st.log_number : 0;
	vs->manifest_number = number;
	vset_mark_file_number_used(vs, number);
	vset_mark_file_number_used(vs, vs->log_number);
	for (int l = 0; l < NUM_LEVELS; l++)
		for (int i = 0; i < v->nfiles[l]; i++)
			vset_mark_file_number_used(vs, v->files[l][i]->number);
	for (int i = 0; i < vs->blobs.n; i++)
		vset_mark_file_number_used(vs, vs->blobs.files[i].number);
	vset_install(vs, v);
	/* Nothing is written until something changes, so an open that changes
	 * nothing leaves the directory as it was (and works on a full disk). */
	vs->roll_pending = !vs->opts.read_only;
	/* A process that died between appending an edit and syncing it leaves
	 * the edit readable but not durable; open acts on it (deletes the files
	 * it dropped), so it is made durable first (tests/sim, seed 462). After
	 * a clean close, whose last edit was synced, there is nothing to do. */
	if (!vs->opts.read_only && !st.ends_in_mark) {
		struct env_file *f;
		r = env_open_append(vs->env, path, &f);
		if (!r) {
			r = env_sync(f);
			int c = env_close(f);
			r = r ? r : c;
		}
		if (r)
			return io_fail(vs, r, err, errlen, base_name(path));
	}
	return 0;
}

/* The version the edit makes of the current one; EINVAL if it cannot apply. */
static int build_next_version(struct version_set *vs, const struct version_edit *e,
                              struct version **vp, char *err, size_t errlen)
{
	struct builder b;
	char msg[512];
	int r = builder_init(&b, vs->current);
	if (!r)
		r = builder_apply(&b, e, msg, sizeof(msg));
	if (!r)
		r = builder_finish(&b, vs, vp, msg, sizeof(msg));
	builder_free(&b);
	if (r == CAIRN_ENOMEM)
		fmt_msg(err, errlen, "out of memory applying a version edit");
	else if (r)
		fmt_msg(err, errlen, "bad version edit: %s", msg);
	return r == CAIRN_ECORRUPT ? CAIRN_EINVAL : r;
}

/* Appends one encoded edit to the live manifest and syncs it, or (roll) puts
 * it in a fresh manifest behind a snapshot of the current version. */
static int write_edit(struct version_set *vs, const struct buf *rec, uint64_t roll_number,
                      char *err, size_t errlen)
{
	/* A roll snapshots the whole set: it stays under the lock (once per
	 * VSET_MANIFEST_ROLL bytes of edits). */
	if (roll_number)
		return vset_new_manifest(vs, roll_number, vs->current, rec, err, errlen);
	/* An append touches only the manifest file, which no one else uses
	 * while writing is set: readers and writers go on meanwhile. */
	int unlock = vs->mu != NULL;
	if (unlock) {
		vs->writing = 1;
		env_mutex_unlock(vs->mu);
	}
	int r = wal_add(vs->manifest, rec->data, rec->len);
	if (!r)
		r = wal_sync(vs->manifest);
	uint64_t size = wal_size(vs->manifest);
	if (unlock) {
		env_mutex_lock(vs->mu);
		vs->writing = 0;
		env_cond_broadcast(&vs->write_cv);
	}
	vs->manifest_bytes = size;
	if (r) {
		char name[64];
		fmt_msg(name, sizeof(name), "MANIFEST-%06llu",
		        (unsigned long long)vs->manifest_number);
		io_fail(vs, r, err, errlen, name);
	}
	return r;
}

int vset_log_and_apply(struct version_set *vs, struct version_edit *e, char *err, size_t errlen)
{
	struct version *v = NULL;
	struct buf rec = {0};
	/* one edit at a time: the next is built on the version this one
	 * installs */
	while (vs->mu && vs->writing)
		env_cond_wait(&vs->write_cv, vs->mu);
	if (vs->failed) {
		fmt_msg(err, errlen, "an earlier manifest write failed; reopen the database");
		return CAIRN_EFAILED;
	}
	if (!vs->manifest && !vs->roll_pending) {
		fmt_msg(err, errlen, "no manifest open for writing");
		return vs->opts.read_only ? CAIRN_EREADONLY : CAIRN_EINVAL;
	}
	if (e->has_log_number &&
	    (e->log_number < vs->log_number || e->log_number >= vs->next_file)) {
		fmt_msg(err, errlen, "edit log number %llu outside [%llu, %llu)",
		        (unsigned long long)e->log_number, (unsigned long long)vs->log_number,
		        (unsigned long long)vs->next_file);
		return CAIRN_EINVAL;
	}
	/* the roll's number is taken first so the edit's next file covers it */
	uint64_t roll = !vs->manifest || wal_size(vs->manifest) > VSET_MANIFEST_ROLL
	                        ? vset_new_file_number(vs)
	                        : 0;
	if (!e->has_log_number) {
		e->has_log_number = 1;
		e->log_number = vs->log_number;
	}
	e->has_next_file = e->has_last_seq = 1;
	e->next_file_number = vs->next_file;
	e->last_sequence = vs->last_seq;

	int r = build_next_version(vs, e, &v, err, errlen);
	if (r)
		return r; /* nothing was written */
	r = blobs_check(&vs->blobs, e, err, errlen);
	if (r) {
		version_destroy(v);
		return CAIRN_EINVAL;
	}
	r = edit_encode(e, &rec);
	if (r) {
		version_destroy(v);
		fmt_msg(err, errlen, "out of memory encoding a version edit");
		return r;
	}
	r = write_edit(vs, &rec, roll, err, errlen);
	buf_free(&rec);
	if (r) {
		/* the manifest's tail is unknown now: no later edit may follow it */
		vs->failed = 1;
		version_destroy(v);
		return r;
	}
	/* the pointers only steer picking: losing one to ENOMEM is harmless */
	(void)vset_apply_pointers(vs, e);
	if (blobs_apply(&vs->blobs, e)) {
		/* the manifest holds the edit but memory does not: stop here */
		vs->failed = 1;
		version_destroy(v);
		fmt_msg(err, errlen, "out of memory applying a blob edit");
		return CAIRN_ENOMEM;
	}
	vs->log_number = e->log_number;
	if (e->mark.set)
		vs->mark = e->mark;
	vset_install(vs, v);
	return 0;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

int vset_live_files(struct version_set *vs, uint64_t **nums, size_t *n)
{
	size_t total = 0, start = *n;
	for (struct version *v = vs->list.next; v != &vs->list; v = v->next)
		for (int l = 0; l < NUM_LEVELS; l++)
			total += (size_t)v->nfiles[l];
	if (total == 0)
		return 0;
	uint64_t *p = realloc(*nums, (start + total) * sizeof(*p));
	if (!p)
		return CAIRN_ENOMEM;
	*nums = p;
	for (struct version *v = vs->list.next; v != &vs->list; v = v->next)
		for (int l = 0; l < NUM_LEVELS; l++)
			for (int i = 0; i < v->nfiles[l]; i++)
				p[(*n)++] = v->files[l][i]->number;
	/* versions share most files: keep each number once */
	qsort(p + start, total, sizeof(*p), cmp_u64);
	size_t w = start;
	for (size_t i = start; i < start + total; i++)
		if (w == start || p[w - 1] != p[i])
			p[w++] = p[i];
	*n = w;
	return 0;
}

/* ------------------------------------------------------------------------ */
/* Reading a version                                                         */

/* A user-key range [*b, *e] (NULL = unbounded) and file f: */
static int range_ends_before(const struct slice *e, const struct file_meta *f)
{
	return e && slice_cmp(*e, fsmall_user(f)) < 0;
}

static int range_starts_after(const struct slice *b, const struct file_meta *f)
{
	return b && slice_cmp(*b, flarge_user(f)) > 0;
}

/* First file of a sorted level whose largest user key is >= ukey. */
static int find_file_user(struct file_meta *const *fs, int n, struct slice ukey)
{
	int lo = 0, hi = n;
	while (lo < hi) {
		int mid = lo + (hi - lo) / 2;
		if (slice_cmp(flarge_user(fs[mid]), ukey) < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

/* First file of a sorted level whose largest internal key is >= ikey. */
static int find_file(struct file_meta *const *fs, int n, struct slice ikey)
{
	int lo = 0, hi = n;
	while (lo < hi) {
		int mid = lo + (hi - lo) / 2;
		if (ikey_cmp(flarge(fs[mid]), ikey) < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

int version_overlaps(struct version *v, int level, const struct slice *smallest,
                     const struct slice *largest)
{
	if (level < 0 || level >= NUM_LEVELS)
		return 0;
	struct file_meta **fs = v->files[level];
	int n = v->nfiles[level];
	if (level == 0) {
		for (int i = 0; i < n; i++)
			if (!range_starts_after(smallest, fs[i]) &&
			    !range_ends_before(largest, fs[i]))
				return 1;
		return 0;
	}
	int i = smallest ? find_file_user(fs, n, *smallest) : 0;
	return i < n && !range_ends_before(largest, fs[i]);
}

/* Bytes of the files of a sorted level (>= 1) overlapping [b, e]. */
static uint64_t overlap_bytes(const struct version *v, int level, struct slice b, struct slice e)
{
	uint64_t sum = 0;
	struct file_meta *const *fs = v->files[level];
	for (int i = find_file_user(fs, v->nfiles[level], b); i < v->nfiles[level]; i++) {
		if (range_ends_before(&e, fs[i]))
			break;
		sum += fs[i]->size;
	}
	return sum;
}

static uint64_t max_grandparent_overlap(const struct version_set *vs)
{
	return 10 * (uint64_t)vs->opts.table_target_size;
}

/* LevelDB's PickLevelForMemTableOutput: pushing a flush below level 0 saves
 * compactions, as long as nothing above it overlaps and it would not make an
 * expensive compaction with the level below it later. */
int version_pick_level_for_flush(struct version *v, struct slice smallest, struct slice largest)
{
	const int max_level = 2;
	int level = 0;
	if (version_overlaps(v, 0, &smallest, &largest))
		return 0;
	while (level < max_level) {
		if (version_overlaps(v, level + 1, &smallest, &largest))
			break;
		if (level + 2 < NUM_LEVELS &&
		    overlap_bytes(v, level + 2, smallest, largest) > max_grandparent_overlap(v->vs))
			break;
		level++;
	}
	return level;
}

/* The seek state of one lookup: the first table it searched, and whether it
 * went on to search another. */
struct get_state {
	struct file_meta *first;
	int first_level, searched;
};

/* What the manifest says table f is, for the checks at its opening. */
static struct table_expect meta_expect(const struct file_meta *f)
{
	return (struct table_expect){.number = f->number,
	                             .size = f->size,
	                             .has_meta = 1,
	                             .smallest = fsmall(f),
	                             .largest = flarge(f),
	                             .num_entries = f->num_entries,
	                             .min_seq = f->min_seq,
	                             .max_seq = f->max_seq};
}

static int get_from(struct version *v, struct get_state *st, struct file_meta *f, int level,
                    struct slice lookup_ikey, struct buf *ikey_out, struct buf *ival_out, char *err,
                    size_t errlen)
{
	if (++st->searched == 1) {
		st->first = f;
		st->first_level = level;
	}
	struct table_expect x = meta_expect(f);
	return tcache_table_get(v->vs->tc, &x, lookup_ikey, ikey_out, ival_out, err, errlen);
}

int version_get(struct version *v, struct slice lookup_ikey, struct buf *ikey_out,
                struct buf *ival_out, struct seek_charge *charge, char *err, size_t errlen)
{
	struct slice ukey = ikey_user(lookup_ikey);
	struct get_state st = {0};
	int r = 0;
	if (charge)
		charge->f = NULL;
	/* level 0 files may overlap: the newest holding the key decides */
	for (int i = 0; !r && i < v->nfiles[0]; i++) {
		struct file_meta *f = v->files[0][i];
		if (range_starts_after(&ukey, f) || range_ends_before(&ukey, f))
			continue;
		r = get_from(v, &st, f, 0, lookup_ikey, ikey_out, ival_out, err, errlen);
	}
	for (int l = 1; !r && l < NUM_LEVELS; l++) {
		struct file_meta **fs = v->files[l];
		int i = find_file(fs, v->nfiles[l], lookup_ikey);
		if (i == v->nfiles[l] || range_ends_before(&ukey, fs[i]))
			continue;
		r = get_from(v, &st, fs[i], l, lookup_ikey, ikey_out, ival_out, err, errlen);
	}
	if (charge && r >= 0 && st.searched > 1) {
		charge->f = st.first;
		charge->level = st.first_level;
	}
	return r;
}

/* 1 if f is in level of v (the same metadata, not only the same number). */
static int version_holds(const struct version *v, int level, const struct file_meta *f)
{
	if (level == 0) {
		for (int i = 0; i < v->nfiles[0]; i++)
			if (v->files[0][i] == f)
				return 1;
		return 0;
	}
	int i = find_file(v->files[level], v->nfiles[level], fsmall(f));
	return i < v->nfiles[level] && v->files[level][i] == f;
}

int version_charge_seek(struct version_set *vs, const struct seek_charge *c)
{
	struct version *cur = vs->current;
	if (!c->f || c->level < 0 || c->level >= NUM_LEVELS - 1)
		return 0;
	if (c->f->allowed_seeks > INT32_MIN)
		c->f->allowed_seeks--;
	/* a lookup on an older version may charge a file the current one no
	 * longer holds (or holds as a trivially moved copy): nothing to do */
	if (c->f->allowed_seeks > 0 || cur->seek_file || !version_holds(cur, c->level, c->f))
		return 0;
	cur->seek_file = c->f;
	cur->seek_level = c->level;
	return 1;
}

/* An iterator over a sorted file list: key = the file's largest key, value =
 * the address of its file_meta (which the version the iterator was made from
 * keeps alive). The index of a level's two-level iterator. */
struct flist_iter {
	struct iter base;
	struct file_meta *const *files;
	int n, idx;
	char val[sizeof(struct file_meta *)];
};

static struct flist_iter *fli(struct iter *it)
{
	return (struct flist_iter *)it;
}
static int fl_valid(struct iter *it)
{
	return fli(it)->idx >= 0 && fli(it)->idx < fli(it)->n;
}
static void fl_seek_first(struct iter *it)
{
	fli(it)->idx = 0;
}
static void fl_seek_last(struct iter *it)
{
	fli(it)->idx = fli(it)->n - 1;
}
static void fl_next(struct iter *it)
{
	fli(it)->idx++;
}
static void fl_prev(struct iter *it)
{
	fli(it)->idx--;
}
static int fl_status(struct iter *it)
{
	(void)it;
	return 0;
}
static void fl_destroy(struct iter *it)
{
	free(it);
}

static void fl_seek(struct iter *it, struct slice target)
{
	fli(it)->idx = find_file(fli(it)->files, fli(it)->n, target);
}

static struct slice fl_key(struct iter *it)
{
	assert(fl_valid(it));
	return flarge(fli(it)->files[fli(it)->idx]);
}

static struct slice fl_value(struct iter *it)
{
	struct flist_iter *f = fli(it);
	assert(fl_valid(it));
	memcpy(f->val, &f->files[f->idx], sizeof(f->val));
	return slice_make(f->val, sizeof(f->val));
}

static const struct iter_ops flist_ops = {
        .valid = fl_valid,
        .seek_first = fl_seek_first,
        .seek_last = fl_seek_last,
        .seek = fl_seek,
        .next = fl_next,
        .prev = fl_prev,
        .key = fl_key,
        .value = fl_value,
        .status = fl_status,
        .destroy = fl_destroy,
};

static const struct file_meta *flist_meta(struct slice index_value)
{
	const struct file_meta *f;
	assert(index_value.len == sizeof(f));
	memcpy(&f, index_value.data, sizeof(f));
	return f;
}

static struct iter *open_table(void *arg, struct slice index_value)
{
	struct table_expect x = meta_expect(flist_meta(index_value));
	return tcache_iter(arg, &x);
}

/* A concatenating iterator over n sorted, disjoint files (borrowed: the
 * caller keeps the array alive while the iterator lives). */
static struct iter *level_iter_new(struct version_set *vs, struct file_meta *const *files, int n)
{
	struct flist_iter *f = calloc(1, sizeof(*f));
	if (!f)
		return NULL;
	f->base.ops = &flist_ops;
	f->files = files;
	f->n = n;
	f->idx = -1;
	return iter_two_level_new(&f->base, open_table, vs->tc);
}

/* Returns the count, or CAIRN_ENOMEM (with nothing left in its[]). */
int version_add_iters(struct version *v, struct iter **its)
{
	int n = 0;
	for (int i = 0; i < v->nfiles[0]; i++) {
		struct table_expect x = meta_expect(v->files[0][i]);
		its[n] = tcache_iter(v->vs->tc, &x);
		if (!its[n])
			goto nomem;
		n++;
	}
	for (int l = 1; l < NUM_LEVELS; l++) {
		if (!v->nfiles[l])
			continue;
		its[n] = level_iter_new(v->vs, v->files[l], v->nfiles[l]);
		if (!its[n])
			goto nomem;
		n++;
	}
	return n;
nomem:
	while (n > 0)
		iter_free(its[--n]);
	return CAIRN_ENOMEM;
}

/* ------------------------------------------------------------------------ */
/* Compactions                                                               */

/* A growable list of borrowed file pointers. */
struct flist {
	struct file_meta **f;
	int n, cap;
};

static int flist_push(struct flist *l, struct file_meta *f)
{
	int r = grow((void **)&l->f, l->n, &l->cap, sizeof(f));
	if (!r)
		l->f[l->n++] = f;
	return r;
}

static void flist_swap(struct flist *a, struct flist *b)
{
	struct flist t = *a;
	*a = *b;
	*b = t;
}

static int flist_busy(const struct flist *l)
{
	for (int i = 0; i < l->n; i++)
		if (l->f[i]->being_compacted)
			return 1;
	return 0;
}

/* The smallest and largest internal keys of the files of a and b. */
static void flist_range(const struct flist *a, const struct flist *b, struct slice *smallest,
                        struct slice *largest)
{
	int first = 1;
	for (int w = 0; w < 2; w++) {
		const struct flist *l = w ? b : a;
		for (int i = 0; l && i < l->n; i++) {
			if (first || ikey_cmp(fsmall(l->f[i]), *smallest) < 0)
				*smallest = fsmall(l->f[i]);
			if (first || ikey_cmp(flarge(l->f[i]), *largest) > 0)
				*largest = flarge(l->f[i]);
			first = 0;
		}
	}
}

/* The files of level overlapping the user-key range [b, e] (NULL =
 * unbounded) into out. In level 0 files overlap each other, so a file that
 * reaches beyond the range widens it and the search starts over. */
static int get_overlapping(const struct version *v, int level, const struct slice *b,
                           const struct slice *e, struct flist *out)
{
	struct slice ub, ue;
	const struct slice *pb = NULL, *pe = NULL;
	if (b) {
		ub = *b;
		pb = &ub;
	}
	if (e) {
		ue = *e;
		pe = &ue;
	}
	out->n = 0;
	for (int i = 0; i < v->nfiles[level];) {
		struct file_meta *f = v->files[level][i++];
		if (range_starts_after(pb, f) || range_ends_before(pe, f))
			continue;
		int r = flist_push(out, f);
		if (r)
			return r;
		if (level != 0)
			continue;
		if (pb && slice_cmp(fsmall_user(f), ub) < 0) {
			ub = fsmall_user(f);
			out->n = 0;
			i = 0;
		} else if (pe && slice_cmp(flarge_user(f), ue) > 0) {
			ue = flarge_user(f);
			out->n = 0;
			i = 0;
		}
	}
	return 0;
}

/* A user key may continue from one file of a level into the next (the
 * newer entries end one, the older start the next). Compacting only the
 * first would move the newer entries below the older ones, so the files
 * that continue the inputs' largest user key join the inputs. */
static int add_boundary_inputs(const struct version *v, int level, struct flist *in)
{
	struct slice smallest, largest;
	if (in->n == 0)
		return 0;
	flist_range(in, NULL, &smallest, &largest);
	for (;;) {
		struct file_meta *best = NULL;
		for (int i = 0; i < v->nfiles[level]; i++) {
			struct file_meta *f = v->files[level][i];
			if (ikey_cmp(fsmall(f), largest) > 0 &&
			    slice_eq(fsmall_user(f), ikey_user(largest)) &&
			    (!best || ikey_cmp(fsmall(f), fsmall(best)) < 0))
				best = f;
		}
		if (!best)
			return 0;
		int r = flist_push(in, best);
		if (r)
			return r;
		largest = flarge(best);
	}
}

static int get_overlapping_ikeys(const struct version *v, int level, struct slice smallest,
                                 struct slice largest, struct flist *out)
{
	struct slice b = ikey_user(smallest), e = ikey_user(largest);
	int r = get_overlapping(v, level, &b, &e, out);
	if (!r && level > 0)
		r = add_boundary_inputs(v, level, out);
	return r;
}

enum { SETUP_OK = 0, SETUP_BUSY = 1 };

/* LevelDB's expansion: take every level file inside the range of both
 * inputs, if that pulls in no more level+1 files, claims nothing busy and
 * stays under 25 tables' worth of bytes. Replaces in0 / in1 when it does. */
static int expand_inputs(struct version_set *vs, const struct version *v, int level,
                         struct flist *in0, struct flist *in1)
{
	struct flist ex0 = {0}, ex1 = {0};
	struct slice all_s, all_l, ns, nl;
	const uint64_t limit = 25 * (uint64_t)vs->opts.table_target_size;
	flist_range(in0, in1, &all_s, &all_l);
	int r = get_overlapping_ikeys(v, level, all_s, all_l, &ex0);
	if (r || ex0.n <= in0->n || flist_busy(&ex0) ||
	    files_bytes(in1->f, in1->n) + files_bytes(ex0.f, ex0.n) >= limit)
		goto out;
	flist_range(&ex0, NULL, &ns, &nl);
	r = get_overlapping_ikeys(v, level + 1, ns, nl, &ex1);
	/* ex1 covers in1, so the same count is the same files */
	if (!r && ex1.n == in1->n && !flist_busy(&ex1)) {
		flist_swap(in0, &ex0);
		flist_swap(in1, &ex1);
	}
out:
	free(ex0.f);
	free(ex1.f);
	return r;
}

/* Level+1 inputs for in0, the expansion above, and the grandparents. On
 * success *cp holds a new compaction owning the lists; SETUP_BUSY when a
 * running compaction holds some input; or a negative error. */
static int setup_compaction(struct version_set *vs, struct version *v, int level, struct flist *in0,
                            struct compaction **cp)
{
	struct flist in1 = {0}, gp = {0};
	struct slice smallest, largest;
	struct compaction *c = NULL;
	int r = level > 0 ? add_boundary_inputs(v, level, in0) : 0;
	if (r || flist_busy(in0))
		goto out;
	flist_range(in0, NULL, &smallest, &largest);
	r = get_overlapping_ikeys(v, level + 1, smallest, largest, &in1);
	if (r || flist_busy(&in1))
		goto out;
	if (in1.n > 0 && (r = expand_inputs(vs, v, level, in0, &in1)))
		goto out;
	flist_range(in0, &in1, &smallest, &largest);
	if (level + 2 < NUM_LEVELS &&
	    (r = get_overlapping_ikeys(v, level + 2, smallest, largest, &gp)))
		goto out;
	if (!(c = calloc(1, sizeof(*c)))) {
		r = CAIRN_ENOMEM;
		goto out;
	}
	c->level = level;
	c->inputs[0] = in0->f;
	c->ninputs[0] = in0->n;
	c->inputs[1] = in1.f;
	c->ninputs[1] = in1.n;
	c->grandparents = gp.f;
	c->ngrandparents = gp.n;
	memset(in0, 0, sizeof(*in0));
	in1.f = gp.f = NULL;
	c->input_version = v;
	version_ref(v);
	edit_init(&c->edit);
	c->max_output_size = vs->opts.table_target_size;
	*cp = c;
out:
	free(in1.f);
	free(gp.f);
	return r ? r : c ? SETUP_OK : SETUP_BUSY;
}

/* Claims the inputs and moves the level's round-robin pointer past them. */
static int compaction_commit(struct version_set *vs, struct compaction *c)
{
	struct flist in0 = {c->inputs[0], c->ninputs[0], c->ninputs[0]};
	struct slice smallest, largest;
	flist_range(&in0, NULL, &smallest, &largest);
	int r = edit_set_pointer(&c->edit, c->level, largest);
	if (!r)
		r = buf_set(&vs->pointer[c->level], largest.data, largest.len);
	if (r)
		return r;
	for (int w = 0; w < 2; w++)
		for (int i = 0; i < c->ninputs[w]; i++)
			c->inputs[w][i]->being_compacted = 1;
	return 0;
}

/* Level-0 candidates go oldest first, deeper levels in key order. */
static struct file_meta *candidate(const struct version *v, int level, int k)
{
	int n = v->nfiles[level];
	return v->files[level][level == 0 ? n - 1 - k : k];
}

/* The first candidate after the level's pointer whose compaction is free;
 * *cp stays NULL when there is none. */
static int pick_at_level(struct version_set *vs, struct version *v, int level,
                         struct compaction **cp)
{
	int n = v->nfiles[level], start = 0;
	const struct buf *ptr = &vs->pointer[level];
	if (n == 0)
		return 0;
	for (int i = 0; level == 0 && i < n; i++)
		if (v->files[0][i]->being_compacted)
			return 0;
	if (ptr->len) {
		while (start < n &&
		       ikey_cmp(flarge(candidate(v, level, start)), buf_slice(ptr)) <= 0)
			start++;
		if (start == n)
			start = 0; /* wrap around to the beginning of the key space */
	}
	for (int t = 0; t < n; t++) {
		struct file_meta *f = candidate(v, level, (start + t) % n);
		struct flist in0 = {0};
		int r;
		if (f->being_compacted)
			continue;
		if (level == 0) {
			struct slice b = fsmall_user(f), e = flarge_user(f);
			r = get_overlapping(v, 0, &b, &e, &in0);
		} else {
			r = flist_push(&in0, f);
		}
		if (!r)
			r = setup_compaction(vs, v, level, &in0, cp);
		free(in0.f);
		if (r != SETUP_BUSY)
			return r;
	}
	return 0;
}

/* The compaction of the version's seek candidate (with, at level 0, the
 * files overlapping it); NULL when there is none or it is busy. */
static struct compaction *pick_seek(struct version_set *vs, struct version *v)
{
	struct file_meta *f = v->seek_file;
	struct compaction *c = NULL;
	struct flist in0 = {0};
	int r;
	if (!f || f->being_compacted)
		return NULL;
	/* as pick_at_level: one level-0 compaction at a time */
	for (int i = 0; v->seek_level == 0 && i < v->nfiles[0]; i++)
		if (v->files[0][i]->being_compacted)
			return NULL;
	if (v->seek_level == 0) {
		struct slice b = fsmall_user(f), e = flarge_user(f);
		r = get_overlapping(v, 0, &b, &e, &in0);
	} else {
		r = flist_push(&in0, f);
	}
	if (!r)
		r = setup_compaction(vs, v, v->seek_level, &in0, &c);
	free(in0.f);
	return r < 0 ? NULL : c;
}

/* Levels with score >= 1, highest first, ties to the lower level; the first
 * that yields a free compaction wins. Only when none does, the seek
 * candidate. */
static struct compaction *pick(struct version_set *vs)
{
	struct version *v = vs->current;
	double score[NUM_LEVELS];
	int tried[NUM_LEVELS] = {0};
	for (int l = 0; l < NUM_LEVELS; l++)
		score[l] = level_score(vs, v, l);
	for (;;) {
		int best = -1;
		for (int l = 0; l < NUM_LEVELS - 1; l++)
			if (!tried[l] && score[l] >= 1 && (best < 0 || score[l] > score[best]))
				best = l;
		if (best < 0)
			return pick_seek(vs, v);
		tried[best] = 1;
		struct compaction *c = NULL;
		if (pick_at_level(vs, v, best, &c) < 0)
			return NULL;
		if (c)
			return c;
	}
}

struct compaction *vset_pick_compaction(struct version_set *vs)
{
	struct compaction *c = pick(vs);
	if (c && compaction_commit(vs, c)) {
		compaction_free(c);
		return NULL;
	}
	return c;
}

int vset_needs_compaction(struct version_set *vs)
{
	/* an uncommitted compaction claimed nothing, so freeing it is exact */
	struct compaction *c = pick(vs);
	compaction_free(c);
	return c != NULL;
}

struct compaction *vset_compact_range(struct version_set *vs, int level, const struct slice *begin,
                                      const struct slice *end, int *busy)
{
	struct version *v = vs->current;
	struct flist in0 = {0};
	struct compaction *c = NULL;
	if (busy)
		*busy = 0;
	if (level < 0 || level >= NUM_LEVELS - 1)
		return NULL;
	if (get_overlapping(v, level, begin, end, &in0) || in0.n == 0) {
		free(in0.f);
		return NULL;
	}
	/* a deep level may hold a lot in range: take a bounded slice of it and
	 * let the caller come back for the rest */
	uint64_t total = 0, limit = 25 * (uint64_t)vs->opts.table_target_size;
	for (int i = 0; level > 0 && i < in0.n; i++) {
		total += in0.f[i]->size;
		if (total >= limit) {
			in0.n = i + 1;
			break;
		}
	}
	int r = setup_compaction(vs, v, level, &in0, &c);
	free(in0.f);
	if (r == SETUP_BUSY && busy)
		*busy = 1;
	if (c && compaction_commit(vs, c)) {
		compaction_free(c);
		c = NULL;
	}
	return c;
}

int compaction_is_trivial_move(const struct compaction *c)
{
	struct version_set *vs = c->input_version->vs;
	return c->ninputs[0] == 1 && c->ninputs[1] == 0 &&
	       files_bytes(c->grandparents, c->ngrandparents) <= max_grandparent_overlap(vs);
}

int compaction_add_input_deletions(struct compaction *c)
{
	for (int w = 0; w < 2; w++) {
		for (int i = 0; i < c->ninputs[w]; i++) {
			int r = edit_delete_file(&c->edit, c->level + w, c->inputs[w][i]->number);
			if (r)
				return r;
		}
	}
	return 0;
}

int compaction_is_base_level_for_key(struct compaction *c, struct slice user_key)
{
	struct version *v = c->input_version;
	for (int l = c->level + 2; l < NUM_LEVELS; l++) {
		struct file_meta **fs = v->files[l];
		while (c->level_ptrs[l] < v->nfiles[l]) {
			struct file_meta *f = fs[c->level_ptrs[l]];
			if (slice_cmp(user_key, flarge_user(f)) <= 0) {
				/* key falls in or before this file's range */
				if (slice_cmp(user_key, fsmall_user(f)) >= 0)
					return 0;
				break;
			}
			c->level_ptrs[l]++;
		}
	}
	return 1;
}

int compaction_should_stop_before(struct compaction *c, struct slice ikey)
{
	struct version_set *vs = c->input_version->vs;
	while (c->grand_index < c->ngrandparents &&
	       ikey_cmp(ikey, flarge(c->grandparents[c->grand_index])) > 0) {
		if (c->seen_key)
			c->overlapped_bytes += c->grandparents[c->grand_index]->size;
		c->grand_index++;
	}
	c->seen_key = 1;
	if (c->overlapped_bytes > max_grandparent_overlap(vs)) {
		c->overlapped_bytes = 0;
		return 1;
	}
	return 0;
}

static void uncached_table_close(void *a, void *b)
{
	(void)b;
	table_close(a);
}

/* An iterator over one input table of a compaction, opened outside the
 * table cache and without the block cache: a compaction reads each block
 * once, and through the caches it would push out the blocks readers use and
 * keep the index and filter of tables about to be deleted (up to the whole
 * 8 MiB block cache during a fill that nobody reads). */
static struct iter *uncached_table_iter(struct version_set *vs, const struct file_meta *m)
{
	char path[PATH_LEN];
	struct env_file *f;
	struct table *t;
	struct table_expect x = meta_expect(m);
	table_file_name(path, sizeof(path), vs->dbdir, m->number);
	int r = env_open_read(vs->env, path, &f);
	if (!r)
		r = table_open(f, path, m->size, NULL, &t, NULL, 0);
	if (!r && (r = table_check_expect(t, &x, NULL, 0)) != 0)
		table_close(t);
	if (r)
		return iter_empty_new(r);
	struct iter *it = table_iter_new(t);
	if (!it) {
		table_close(t);
		return NULL;
	}
	iter_set_cleanup(it, uncached_table_close, t, NULL);
	return it;
}

static struct iter *open_input_table(void *arg, struct slice index_value)
{
	return uncached_table_iter(arg, flist_meta(index_value));
}

/* A concatenating iterator over the n sorted, disjoint input files of one
 * level, opening one at a time. */
static struct iter *input_level_iter_new(struct version_set *vs, struct file_meta *const *files,
                                         int n)
{
	struct flist_iter *f = calloc(1, sizeof(*f));
	if (!f)
		return NULL;
	f->base.ops = &flist_ops;
	f->files = files;
	f->n = n;
	f->idx = -1;
	return iter_two_level_new(&f->base, open_input_table, vs);
}

/* Returns NULL when out of memory. */
struct iter *compaction_input_iter(struct compaction *c)
{
	struct version_set *vs = c->input_version->vs;
	int cap = c->ninputs[0] + 2, n = 0;
	struct iter **its = calloc((size_t)cap, sizeof(*its));
	if (!its)
		return NULL;
	for (int w = 0; w < 2; w++) {
		if (c->ninputs[w] == 0)
			continue;
		if (c->level + w == 0) {
			for (int i = 0; i < c->ninputs[w]; i++) {
				struct file_meta *f = c->inputs[w][i];
				if (!(its[n] = uncached_table_iter(vs, f)))
					goto nomem;
				n++;
			}
		} else {
			if (!(its[n] = input_level_iter_new(vs, c->inputs[w], c->ninputs[w])))
				goto nomem;
			n++;
		}
	}
	struct iter *m = iter_merge_new(its, n);
	free(its);
	return m;
nomem:
	while (n > 0)
		iter_free(its[--n]);
	free(its);
	return NULL;
}

uint64_t compaction_input_bytes(const struct compaction *c)
{
	return files_bytes(c->inputs[0], c->ninputs[0]) + files_bytes(c->inputs[1], c->ninputs[1]);
}

void compaction_free(struct compaction *c)
{
	if (!c)
		return;
	for (int w = 0; w < 2; w++) {
		for (int i = 0; i < c->ninputs[w]; i++)
			c->inputs[w][i]->being_compacted = 0;
		free(c->inputs[w]);
	}
	free(c->grandparents);
	edit_free(&c->edit);
	version_unref(c->input_version);
	free(c);
}

/* ------------------------------------------------------------------------ */
/* Checkpoints and inspection                                                */

int vset_write_snapshot_manifest(struct version_set *vs, const char *dir, uint64_t manifest_number,
                                 char *err, size_t errlen)
{
	uint64_t next = vs->next_file > manifest_number ? vs->next_file : manifest_number + 1;
	if (strlen(dir) > PATH_LEN - 64) {
		fmt_msg(err, errlen, "checkpoint directory name too long");
		return CAIRN_EINVAL;
	}
	int r = write_manifest(vs, dir, manifest_number, vs->current, next, NULL, NULL, err,
	                       errlen);
	return r ? r : write_current(vs, dir, manifest_number, err, errlen);
}

int manifest_dump(struct cairn_env *env, const char *path, void (*fn)(void *ctx, const char *line),
                  void *ctx, char *err, size_t errlen)
{
	struct wal_reader *rd = NULL;
	char line[600], msg[512];
	int r = wal_reader_open(env, path, WAL_KIND_MANIFEST, &rd, err, errlen);
	if (r)
		return r;
	for (;;) {
		struct slice rec;
		struct version_edit e;
		uint64_t off = wal_good_offset(rd);
		r = wal_next(rd, &rec, err, errlen);
		if (r == WAL_EOF) {
			r = 0;
			break;
		}
		if (r == WAL_TORN) {
			fmt_msg(line, sizeof(line), "torn tail at offset %llu (ignored)",
			        (unsigned long long)wal_good_offset(rd));
			fn(ctx, line);
			r = 0;
			break;
		}
		if (r < 0)
			break;
		fmt_msg(line, sizeof(line),
		        "edit at offset %llu, %zu bytes:", (unsigned long long)off, rec.len);
		fn(ctx, line);
		r = edit_decode(rec, &e, msg, sizeof(msg));
		if (r) {
			fmt_msg(err, errlen, "%s: record at offset %llu: %s", base_name(path),
			        (unsigned long long)off, msg);
			break;
		}
		edit_dump(&e, fn, ctx);
		edit_free(&e);
	}
	wal_reader_close(rd);
	return r;
}
