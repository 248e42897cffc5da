/*
 * dbiter.c - the public iterator (struct cairn_iter): snapshot visibility,
 * one entry per user key, tombstones hidden, over a merged internal iterator.
 *
 * Internal keys of one user key come newest first, so the two directions
 * work differently (the scheme of LevelDB's DBIter):
 *
 * - Forward: the internal iterator sits on the entry shown, the newest
 *   visible entry of its user key, and key/value point into it. Stepping
 *   on skips every entry whose user key is <= the one shown, and every
 *   entry of a key whose newest visible entry is a tombstone.
 *
 * - Reverse: walking back meets the versions of a key oldest first, so the
 *   entry shown is only known once the walk has passed all of them. The
 *   internal iterator then sits just before the entries of the key shown
 *   (on the last entry of an earlier key, or invalid), and the key, the
 *   internal value and the sequence are copied into saved_key/saved_value.
 *
 * Switching direction first brings the internal iterator back to the entries
 * of the key shown, then steps in the new direction as usual.
 */
#include <assert.h>
#include <stdlib.h>

#include "blob.h"
#include "cairn.h"
#include "dbformat.h"
#include "dbiter.h"

/* A saved value buffer bigger than this is given back when a small value
 * replaces it, so one huge value does not pin its memory for the life of
 * the iterator. */
#define DBITER_KEEP_VALUE_BUF (1u << 20)

enum dbiter_dir { DBITER_FORWARD, DBITER_REVERSE };

struct cairn_iter {
	struct iter *iter; /* merged internal iterator, owned */
	uint64_t seq;      /* entries with a higher sequence are invisible */
	void (*release)(void *ctx);
	void *release_ctx;
	enum dbiter_dir dir;
	int valid;
	/* The error that ended the iteration, ours (corruption, ENOMEM) or a
	 * blob value's that could not be read: it stays until the next seek, so
	 * a caller that checks only after its loop still sees it. */
	int status;
	/* reverse: the user key shown; forward: the key being skipped */
	struct buf saved_key;
	/* reverse: the internal value shown (write time + bytes) */
	struct buf saved_value;
	uint64_t saved_seq;
	enum value_type saved_type;
	/* values kept in blob files are read on demand by the engine */
	int (*load_blob)(void *ctx, struct slice key, struct slice ival, struct buf *out);
	void *load_ctx;
	struct buf blob_value;
	int blob_loaded;
	int blob_err; /* the load's error for the entry shown */
	/* cairn_iter_set_bounds: user keys in [lower, upper) */
	struct buf lower, upper;
	int has_lower, has_upper;
};

static int dbiter_above_upper(const struct cairn_iter *d, struct slice ukey)
{
	return d->has_upper && slice_cmp(ukey, buf_slice(&d->upper)) >= 0;
}

static int dbiter_below_lower(const struct cairn_iter *d, struct slice ukey)
{
	return d->has_lower && slice_cmp(ukey, buf_slice(&d->lower)) < 0;
}

void dbiter_set_blob_loader(struct cairn_iter *d,
                            int (*load)(void *ctx, struct slice key, struct slice ival,
                                        struct buf *out),
                            void *ctx)
{
	d->load_blob = load;
	d->load_ctx = ctx;
}

/* Forgets the blob value loaded for the entry shown (it is about to move). */
static void dbiter_drop_blob(struct cairn_iter *d)
{
	d->blob_loaded = 0;
	d->blob_err = 0;
	if (d->blob_value.cap > DBITER_KEEP_VALUE_BUF)
		buf_free(&d->blob_value);
	else
		buf_clear(&d->blob_value);
}

struct cairn_iter *dbiter_new(struct iter *internal, uint64_t seq, void (*release)(void *ctx),
                              void *release_ctx)
{
	struct cairn_iter *d = calloc(1, sizeof(*d));
	if (!d || !internal) {
		free(d);
		iter_free(internal);
		if (release)
			release(release_ctx);
		return NULL;
	}
	d->iter = internal;
	d->seq = seq;
	d->release = release;
	d->release_ctx = release_ctx;
	d->dir = DBITER_FORWARD;
	return d;
}

CAIRN_EXPORT void cairn_iter_free(struct cairn_iter *d)
{
	if (!d)
		return;
	iter_free(d->iter);
	if (d->release)
		d->release(d->release_ctx);
	buf_free(&d->saved_key);
	buf_free(&d->saved_value);
	buf_free(&d->blob_value);
	buf_free(&d->lower);
	buf_free(&d->upper);
	free(d);
}

/* Ends the iteration with an error that sticks. */
static void dbiter_fail(struct cairn_iter *d, int code)
{
	if (!d->status)
		d->status = code;
	d->valid = 0;
	buf_clear(&d->saved_key);
	buf_clear(&d->saved_value);
}

/* Checks an internal key before its parts are read. */
static int dbiter_check_key(struct cairn_iter *d, struct slice ik)
{
	if (ikey_valid(ik))
		return 0;
	dbiter_fail(d, CAIRN_ECORRUPT);
	return -1;
}

static int dbiter_save_key(struct cairn_iter *d, struct slice ukey)
{
	if (!buf_set(&d->saved_key, ukey.data, ukey.len))
		return 0;
	dbiter_fail(d, CAIRN_ENOMEM);
	return -1;
}

static int dbiter_save_value(struct cairn_iter *d, struct slice iv)
{
	if (d->saved_value.cap > DBITER_KEEP_VALUE_BUF && iv.len < d->saved_value.cap / 4)
		buf_free(&d->saved_value);
	if (!buf_set(&d->saved_value, iv.data, iv.len))
		return 0;
	dbiter_fail(d, CAIRN_ENOMEM);
	return -1;
}

/* Forward: from the internal position, finds the first visible live entry.
 * With skipping, entries whose user key is <= saved_key are hidden. */
static void dbiter_find_next(struct cairn_iter *d, int skipping)
{
	assert(iter_valid(d->iter) && d->dir == DBITER_FORWARD);
	do {
		struct slice ik = iter_key(d->iter);
		if (dbiter_check_key(d, ik))
			return;
		struct slice ukey = ikey_user(ik);
		/* past the bound: stop without stepping over what lies beyond
		 * (a long run of tombstones, say) */
		if (dbiter_above_upper(d, ukey))
			break;
		if (ikey_seq(ik) <= d->seq) {
			if (ikey_type(ik) == TYPE_DELETION) {
				/* every older entry of this key is hidden */
				if (dbiter_save_key(d, ukey))
					return;
				skipping = 1;
			} else if (!skipping || slice_cmp(ukey, buf_slice(&d->saved_key)) > 0) {
				if (!ival_valid(iter_value(d->iter))) {
					dbiter_fail(d, CAIRN_ECORRUPT);
					return;
				}
				d->valid = 1;
				buf_clear(&d->saved_key);
				return;
			}
		}
		iter_next(d->iter);
	} while (iter_valid(d->iter));
	buf_clear(&d->saved_key);
	d->valid = 0;
}

/* Reverse: walks back from the internal position over the entries of one
 * user key (oldest first, so the last visible one seen is the newest) and
 * stops on the first visible entry of an earlier key, once the key has a
 * live value. */
static void dbiter_find_prev(struct cairn_iter *d)
{
	assert(d->dir == DBITER_REVERSE);
	enum value_type type = TYPE_DELETION;
	while (iter_valid(d->iter)) {
		struct slice ik = iter_key(d->iter);
		if (dbiter_check_key(d, ik))
			return;
		struct slice ukey = ikey_user(ik);
		if (dbiter_below_lower(d, ukey))
			break;
		if (ikey_seq(ik) <= d->seq) {
			if (type != TYPE_DELETION && slice_cmp(ukey, buf_slice(&d->saved_key)) < 0)
				break; /* the key shown is complete */
			type = ikey_type(ik);
			if (type == TYPE_DELETION) {
				buf_clear(&d->saved_key);
				buf_clear(&d->saved_value);
			} else {
				if (dbiter_save_key(d, ukey) ||
				    dbiter_save_value(d, iter_value(d->iter)))
					return;
				d->saved_seq = ikey_seq(ik);
				d->saved_type = type;
			}
		}
		iter_prev(d->iter);
	}
	if (!iter_valid(d->iter) && iter_status(d->iter)) {
		/* an error, not the beginning: what was gathered may be stale */
		d->valid = 0;
		return;
	}
	if (type == TYPE_DELETION) {
		d->valid = 0;
		buf_clear(&d->saved_key);
		buf_clear(&d->saved_value);
		d->dir = DBITER_FORWARD;
		return;
	}
	if (!ival_valid(buf_slice(&d->saved_value))) {
		dbiter_fail(d, CAIRN_ECORRUPT);
		return;
	}
	d->valid = 1;
}

/* Every seek starts here: it forgets the error of the last walk and tries
 * again (the internal iterators do the same on a seek). */
static void dbiter_start(struct cairn_iter *d, enum dbiter_dir dir)
{
	dbiter_drop_blob(d);
	d->status = 0;
	d->dir = dir;
	buf_clear(&d->saved_value);
}

CAIRN_EXPORT void cairn_iter_seek_first(struct cairn_iter *d)
{
	if (d->has_lower) {
		cairn_iter_seek(d, d->lower.data, d->lower.len);
		return;
	}
	dbiter_start(d, DBITER_FORWARD);
	iter_seek_first(d->iter);
	if (iter_valid(d->iter))
		dbiter_find_next(d, 0);
	else
		d->valid = 0;
}

static void dbiter_seek_before(struct cairn_iter *d, const void *key, size_t klen, int inclusive);

CAIRN_EXPORT void cairn_iter_seek_last(struct cairn_iter *d)
{
	if (d->has_upper) {
		dbiter_seek_before(d, d->upper.data, d->upper.len, 0);
		return;
	}
	dbiter_start(d, DBITER_REVERSE);
	iter_seek_last(d->iter);
	dbiter_find_prev(d);
}

CAIRN_EXPORT void cairn_iter_seek(struct cairn_iter *d, const void *key, size_t klen)
{
	if (d->has_lower && dbiter_below_lower(d, slice_make(key, klen))) {
		key = d->lower.data;
		klen = d->lower.len;
	}
	dbiter_start(d, DBITER_FORWARD);
	/* (key, snapshot seq) sorts before every entry of key the snapshot
	 * sees and after every newer one */
	buf_clear(&d->saved_key);
	if (ikey_append(&d->saved_key, slice_make(key, klen), d->seq, TYPE_SEEK)) {
		dbiter_fail(d, CAIRN_ENOMEM);
		return;
	}
	iter_seek(d->iter, buf_slice(&d->saved_key));
	if (iter_valid(d->iter))
		dbiter_find_next(d, 0);
	else
		d->valid = 0;
}

/* Positions on the last visible key < key, or <= key when inclusive
 * (reverse). key + 0x00 is the smallest user key above key; at the highest
 * sequence, (key, or key + 0x00) sorts before all of its entries, so the
 * seek lands on the first entry past the range and one step back is the last
 * entry in it. */
static void dbiter_seek_before(struct cairn_iter *d, const void *key, size_t klen, int inclusive)
{
	static const char zero = 0;
	dbiter_start(d, DBITER_REVERSE);
	buf_clear(&d->saved_key);
	if (buf_append(&d->saved_key, key, klen) ||
	    (inclusive && buf_append(&d->saved_key, &zero, 1)) ||
	    buf_put_fixed64(&d->saved_key, ikey_pack(MAX_SEQUENCE, TYPE_SEEK))) {
		dbiter_fail(d, CAIRN_ENOMEM);
		return;
	}
	iter_seek(d->iter, buf_slice(&d->saved_key));
	if (iter_valid(d->iter))
		iter_prev(d->iter);
	else if (!iter_status(d->iter))
		iter_seek_last(d->iter);
	dbiter_find_prev(d);
}

CAIRN_EXPORT void cairn_iter_seek_for_prev(struct cairn_iter *d, const void *key, size_t klen)
{
	if (dbiter_above_upper(d, slice_make(key, klen)))
		cairn_iter_seek_last(d);
	else
		dbiter_seek_before(d, key, klen, 1);
}

/* A move after an error (a blob value that could not be read) ends the
 * iteration instead of stepping over the entry: the caller learns of the
 * error from the status whenever it looks. Returns nonzero then. */
static int dbiter_stop_on_error(struct cairn_iter *d)
{
	if (!d->status)
		return 0;
	d->valid = 0;
	buf_clear(&d->saved_key);
	buf_clear(&d->saved_value);
	return 1;
}

CAIRN_EXPORT void cairn_iter_next(struct cairn_iter *d)
{
	if (!d->valid || dbiter_stop_on_error(d))
		return;
	dbiter_drop_blob(d);
	if (d->dir == DBITER_REVERSE) {
		/* back onto the entries of the key shown; saved_key holds it,
		 * and the skipping below passes them */
		d->dir = DBITER_FORWARD;
		buf_clear(&d->saved_value);
		if (iter_valid(d->iter))
			iter_next(d->iter);
		else if (!iter_status(d->iter))
			iter_seek_first(d->iter);
	} else {
		if (dbiter_save_key(d, ikey_user(iter_key(d->iter))))
			return;
		iter_next(d->iter);
	}
	if (!iter_valid(d->iter)) {
		d->valid = 0;
		buf_clear(&d->saved_key);
		return;
	}
	dbiter_find_next(d, 1);
}

CAIRN_EXPORT void cairn_iter_prev(struct cairn_iter *d)
{
	if (!d->valid || dbiter_stop_on_error(d))
		return;
	dbiter_drop_blob(d);
	if (d->dir == DBITER_FORWARD) {
		/* walk back past the newer, invisible entries of the key shown */
		if (dbiter_save_key(d, ikey_user(iter_key(d->iter))))
			return;
		for (;;) {
			iter_prev(d->iter);
			if (!iter_valid(d->iter)) {
				d->valid = 0;
				buf_clear(&d->saved_key);
				buf_clear(&d->saved_value);
				return;
			}
			struct slice ik = iter_key(d->iter);
			if (dbiter_check_key(d, ik))
				return;
			if (slice_cmp(ikey_user(ik), buf_slice(&d->saved_key)) < 0)
				break;
		}
		d->dir = DBITER_REVERSE;
	}
	dbiter_find_prev(d);
}

CAIRN_EXPORT int cairn_iter_valid(const struct cairn_iter *d)
{
	return d->valid;
}

CAIRN_EXPORT const void *cairn_iter_key(const struct cairn_iter *d, size_t *klen)
{
	struct slice k = slice_make(NULL, 0);
	if (d->valid)
		k = d->dir == DBITER_FORWARD ? ikey_user(iter_key(d->iter))
		                             : buf_slice(&d->saved_key);
	if (klen)
		*klen = k.len;
	return k.data;
}

/* The internal value of the entry shown. */
static struct slice dbiter_ival(const struct cairn_iter *d)
{
	assert(d->valid);
	return d->dir == DBITER_FORWARD ? iter_value(d->iter) : buf_slice(&d->saved_value);
}

static enum value_type dbiter_type(const struct cairn_iter *d)
{
	return d->dir == DBITER_FORWARD ? ikey_type(iter_key(d->iter)) : d->saved_type;
}

/* Reads the blob value of the entry shown into blob_value (once). */
static int dbiter_load_blob(struct cairn_iter *d)
{
	if (d->blob_loaded)
		return 0;
	if (d->blob_err)
		return d->blob_err;
	struct slice key =
	        d->dir == DBITER_FORWARD ? ikey_user(iter_key(d->iter)) : buf_slice(&d->saved_key);
	int r = d->load_blob ? d->load_blob(d->load_ctx, key, dbiter_ival(d), &d->blob_value)
	                     : CAIRN_ENOTSUP;
	if (r) {
		d->blob_err = r;
		if (!d->status)
			d->status = r;
	} else
		d->blob_loaded = 1;
	return r;
}

CAIRN_EXPORT const void *cairn_iter_value(const struct cairn_iter *cd, size_t *vlen)
{
	/* loading a blob value caches it in the iterator: logically const */
	struct cairn_iter *d = (struct cairn_iter *)cd;
	struct slice v = slice_make(NULL, 0);
	if (d->valid && dbiter_type(d) == TYPE_BLOB) {
		if (dbiter_load_blob(d) == 0)
			v = slice_make(d->blob_value.data ? d->blob_value.data : "",
			               d->blob_value.len);
	} else if (d->valid) {
		v = ival_value(dbiter_ival(d));
	}
	if (vlen)
		*vlen = v.len;
	return v.data;
}

CAIRN_EXPORT void cairn_iter_info(const struct cairn_iter *d, struct cairn_key_info *info)
{
	if (!d->valid) {
		info->size = 0;
		info->mtime_ns = 0;
		info->seq = 0;
		return;
	}
	struct slice iv = dbiter_ival(d);
	struct blob_ref ref;
	info->size = iv.len - IVAL_HEADER;
	info->mtime_ns = ival_time(iv);
	if (dbiter_type(d) == TYPE_BLOB && blob_ref_decode(ival_value(iv), &ref) == 0) {
		info->size = ref.size;
		if (ref.has_time)
			info->mtime_ns = ref.time_ns;
	}
	info->seq = d->dir == DBITER_FORWARD ? ikey_seq(iter_key(d->iter)) : d->saved_seq;
}

CAIRN_EXPORT int cairn_iter_set_bounds(struct cairn_iter *d, const void *lower, size_t llen,
                                       const void *upper, size_t ulen)
{
	if (!d)
		return CAIRN_EINVAL;
	d->has_lower = lower != NULL;
	d->has_upper = upper != NULL;
	if ((lower && buf_set(&d->lower, lower, llen)) ||
	    (upper && buf_set(&d->upper, upper, ulen)))
		return CAIRN_ENOMEM;
	/* the current position may lie outside the new bounds */
	d->valid = 0;
	return 0;
}

CAIRN_EXPORT int cairn_iter_status(const struct cairn_iter *d)
{
	return d->status ? d->status : iter_status(d->iter);
}

int dbiter_raw(const struct cairn_iter *d, enum value_type *type, struct slice *ival)
{
	if (!d->valid)
		return 0;
	*type = dbiter_type(d);
	*ival = dbiter_ival(d);
	return 1;
}
