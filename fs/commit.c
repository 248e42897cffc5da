/*
 * commit.c: write buffers, pieces of large files and commits.
 * The daemon as a whole, its state and its locking rule: cfs.h.
 */
#include "cfs.h"

const char cfs_next_id_key[2] = {'\0', PK_TAG_NEXT_ID};

/* ---- write buffers and commits ------------------------------------------ */

/* Learns how n's content is stored, under fs->mu: the key PATH when it
 * exists (an embedding program may have written it), else the pieces named
 * by an extent record, else nothing yet (an empty inline file). */
int cfs_layout(struct cairnfs *fs, struct cfs_node *n, const char *path, size_t plen)
{
	char mk[PK_KEY_BUF], mbuf[META_BUF];
	struct cairn_key_info info;
	struct meta_rec r;
	size_t got = 0;
	int mkl, rc;

	if (n->mo) {
		rc = cfs_orphan_store(fs, n); /* about to be changed or read by key */
		if (rc)
			return rc;
	}
	if (n->lay != CFS_LAY_UNKNOWN)
		return 0;
	rc = cairn_key_info(fs->db, NULL, path, plen, &info);
	if (rc == 0) {
		n->lay = CFS_LAY_INLINE;
		n->base = info.size;
		return 0;
	}
	if (rc != CAIRN_ENOTFOUND)
		return -cfs_errno(rc, ENAMETOOLONG);
	mkl = pk_sys_key(PK_TAG_META, path, plen, mk);
	if (mkl < 0)
		return mkl;
	rc = cairn_get_range(fs->db, NULL, mk, (size_t)mkl, 0, mbuf, sizeof(mbuf), &got);
	if (rc && rc != CAIRN_ENOTFOUND) {
		cfs_log_engine(fs, "read", rc);
		return -cfs_errno(rc, EIO);
	}
	n->lay = CFS_LAY_INLINE;
	n->base = 0;
	if (!rc && !meta_decode(mbuf, got, &r) && r.type == META_FILE && r.ext_id) {
		n->lay = CFS_LAY_PIECES;
		n->ext_id = r.ext_id;
		n->base = r.size;
	}
	return 0;
}

/* Reads [off, off + len) of a file stored as pieces into buf, as of snap;
 * missing pieces and the bytes past a short piece read as zeros. */
int cfs_pieces_read(struct cairnfs *fs, const struct cairn_snapshot *snap, uint64_t id,
                    uint64_t off, char *buf, size_t len)
{
	char k[EXT_KEY_LEN];

	while (len) {
		uint64_t idx = off / EXT_SIZE, in = off % EXT_SIZE;
		size_t l = (size_t)(EXT_SIZE - in) < len ? (size_t)(EXT_SIZE - in) : len, got = 0;
		int rc;

		ext_key(id, idx, k);
		rc = cairn_get_range(fs->db, snap, k, EXT_KEY_LEN, in, buf, l, &got);
		if (rc && rc != CAIRN_ENOTFOUND) {
			cfs_log_engine(fs, "read", rc);
			return -cfs_errno(rc, EIO);
		}
		memset(buf + got, 0, l - got);
		buf += l;
		off += l;
		len -= l;
	}
	return 0;
}

/* Reads committed content of n (layout known) into buf; *got is what the
 * committed value holds there: inline up to its end, pieces all of len. */
static int cfs_base_read(struct cairnfs *fs, struct cfs_node *n, const char *path, size_t plen,
                         uint64_t off, char *buf, size_t len, size_t *got)
{
	int rc;

	*got = 0;
	if (n->lay == CFS_LAY_PIECES) {
		rc = cfs_pieces_read(fs, NULL, n->ext_id, off, buf, len);
		if (!rc)
			*got = len;
		return rc;
	}
	rc = cairn_get_range(fs->db, NULL, path, plen, off, buf, len, got);
	if (rc && rc != CAIRN_ENOTFOUND) {
		cfs_log_engine(fs, "read", rc);
		return -cfs_errno(rc, EIO);
	}
	return 0;
}

/* Makes sure n has a write buffer over its committed value. */
int cfs_wb_get(struct cairnfs *fs, struct cfs_node *n, const char *path, size_t plen)
{
	int rc;

	if (n->wb)
		return 0;
	rc = cfs_layout(fs, n, path, plen);
	if (rc)
		return rc;
	n->wb = malloc(sizeof(*n->wb));
	if (!n->wb)
		return -ENOMEM;
	wbuf_init(n->wb, n->base);
	return 0;
}

/* Reads [off, off + len) of the content as the buffer sees it into buf. */
int cfs_wb_read(struct cairnfs *fs, struct cfs_node *n, const char *path, size_t plen, uint64_t off,
                char *buf, size_t len, size_t *got)
{
	struct wbuf *w = n->wb;
	size_t n_base = 0, rd = 0;
	int rc;

	if (off >= w->size) {
		*got = 0;
		return 0;
	}
	if (len > w->size - off)
		len = (size_t)(w->size - off);
	if (off < w->keep)
		n_base = (size_t)((w->keep - off) < len ? (w->keep - off) : len);
	if (n_base) {
		rc = cfs_base_read(fs, n, path, plen, off, buf, n_base, &rd);
		if (rc)
			return rc;
	}
	memset(buf + rd, 0, len - rd);
	wbuf_overlay(w, off, buf, len);
	*got = len;
	return 0;
}

/* Adds to b the deletion of every key from start on that begins with pfx
 * (plen bytes, a prefix of start). */
int cfs_batch_drop_from(struct cairn_iter *it, struct cairn_batch *b, const char *start,
                        size_t slen, size_t plen)
{
	const char *key;
	size_t klen;
	int rc = 0;

	for (cfs_seek_within(it, start, slen, start, plen); !rc && cairn_iter_valid(it);
	     cairn_iter_next(it)) {
		key = cairn_iter_key(it, &klen);
		if (!pk_has_prefix(key, klen, start, plen))
			break;
		rc = -cfs_errno(cairn_batch_delete(b, key, klen), EIO);
	}
	if (!rc && cairn_iter_status(it))
		rc = -cfs_errno(cairn_iter_status(it), EIO);
	return rc;
}

/* Adds to b the deletion of every piece of file id from piece idx on: the
 * pieces that exist, found by a scan, so a sparse file costs its pieces. */
int cfs_drop_pieces(struct cairn_iter *it, struct cairn_batch *b, uint64_t id, uint64_t idx)
{
	char k[EXT_KEY_LEN];

	ext_key(id, idx, k);
	return cfs_batch_drop_from(it, b, k, EXT_KEY_LEN, EXT_PFX_LEN);
}

/* Same, with an iterator of its own. */
static int cfs_drop_pieces_from(struct cairnfs *fs, struct cairn_batch *b, uint64_t id,
                                uint64_t idx)
{
	struct cairn_iter *it;
	int rc = cfs_iter(fs, &it);

	if (rc)
		return rc;
	rc = cfs_drop_pieces(it, b, id, idx);
	cairn_iter_free(it);
	if (rc)
		cfs_log_engine(fs, "scan", -rc);
	return rc;
}

/* What a commit builds: the batch, and for pieces a buffer of one piece. */
struct cfs_commit {
	struct cairnfs *fs;
	struct cfs_node *n;
	const char *path;
	size_t plen;
	struct cairn_batch *b;
	uint64_t id;    /* the extent id the pieces go to */
	uint64_t moved; /* pieces below this were written by a conversion */
	uint64_t bytes; /* value bytes put */
	char *piece;
};

static int cfs_put_piece(void *ctx, uint64_t idx)
{
	struct cfs_commit *c = ctx;
	char k[EXT_KEY_LEN];
	const char *data;
	size_t len;
	int rc;

	if (idx < c->moved)
		return 0;
	ext_key(c->id, idx, k);
	len = ext_len(c->n->wb->size, idx);
	data = wbuf_covering(c->n->wb, idx * EXT_SIZE, len);
	if (!data) {
		rc = cfs_wb_read(c->fs, c->n, c->path, c->plen, idx * EXT_SIZE, c->piece, len,
		                 &len);
		if (rc)
			return rc;
		data = c->piece;
	}
	c->bytes += len;
	return -cfs_errno(cairn_batch_put(c->b, k, EXT_KEY_LEN, data, len), EFBIG);
}

/* The commit of a file that stays or becomes small: its whole value at the
 * key PATH; pieces it had are deleted. */
static int cfs_commit_inline(struct cfs_commit *c)
{
	struct cfs_node *n = c->n;
	size_t got;
	char *val = bufpool_get(&c->fs->pool, (size_t)n->wb->size);
	int rc;

	if (!val)
		return -ENOMEM;
	rc = cfs_wb_read(c->fs, n, c->path, c->plen, 0, val, (size_t)n->wb->size, &got);
	if (!rc)
		rc = -cfs_errno(cairn_batch_put(c->b, c->path, c->plen, val, got), EFBIG);
	c->bytes = got;
	bufpool_put(&c->fs->pool, val);
	return rc;
}

/* Records the next extent id in the batch that first uses the one before it:
 * a record may name an id that has no piece (a file only ever extended by
 * truncate), so the pieces alone cannot tell a mount which ids are taken. */
static int cfs_batch_next_ext_id(struct cairnfs *fs, struct cairn_batch *b)
{
	char v[8];

	for (int i = 0; i < 8; i++)
		v[i] = (char)(fs->next_ext_id >> (8 * i));
	return -cfs_errno(cairn_batch_put(b, cfs_next_id_key, sizeof(cfs_next_id_key), v, 8), EIO);
}

/* The commit of a large file: only the pieces the buffer touched (all of
 * the old value's when it moves from the key PATH to pieces), and the
 * deletion of the pieces a shrink left past the end. */
static int cfs_commit_pieces(struct cfs_commit *c)
{
	struct cfs_node *n = c->n;
	struct wbuf *w = n->wb;
	int rc = 0;

	c->piece = bufpool_get(&c->fs->pool, EXT_SIZE);
	if (!c->piece)
		return -ENOMEM;
	if (n->lay == CFS_LAY_PIECES) {
		c->id = n->ext_id;
	} else {
		uint64_t keep = w->keep < w->size ? w->keep : w->size;

		c->id = c->fs->next_ext_id++;
		rc = cfs_batch_next_ext_id(c->fs, c->b);
		for (uint64_t idx = 0; !rc && idx < ext_count(keep); idx++)
			rc = cfs_put_piece(c, idx);
		c->moved = ext_count(keep);
		if (!rc)
			rc = -cfs_errno(cairn_batch_delete(c->b, c->path, c->plen), EIO);
	}
	if (!rc)
		rc = ext_each_dirty(w, n->base, cfs_put_piece, c);
	if (!rc && n->lay == CFS_LAY_PIECES && w->size < n->base)
		rc = cfs_drop_pieces_from(c->fs, c->b, c->id, ext_count(w->size));
	bufpool_put(&c->fs->pool, c->piece);
	return rc;
}

/* Commits the buffered writes of n with its record in one batch: a small
 * file as its whole value, a large one as the pieces the writes touched
 * (extent.h). Under fs->mu. */
int cfs_commit(struct cairnfs *fs, struct cfs_node *n)
{
	char path[PK_KEY_BUF], mbuf[META_BUF];
	struct cfs_commit c = {.fs = fs, .n = n, .path = path};
	struct meta_rec r;
	uint64_t old_id;
	int rc, type, pieces;

	if (!n->wb || !n->wb->dirty)
		return 0;
	rc = cfs_node_path(fs, n, path, &c.plen);
	if (rc == -ENOENT) {
		if (!n->wb->borrowed)
			cfs_wb_drop(fs, n); /* unlinked: its writes go nowhere */
		return 0;
	}
	if (!rc)
		rc = cfs_layout(fs, n, path, c.plen);
	if (rc)
		return rc;
	type = cfs_get_meta(fs, path, c.plen, &r, mbuf);
	if (type < 0 && type != -ENOENT)
		return type;
	if (type != META_FILE)
		meta_init(&r, META_FILE, 0644, fs->cfg.uid, fs->cfg.gid, 0);
	old_id = r.ext_id; /* pieces the record names, the node's own or stale */
	r.mtime_ns = r.ctime_ns = cfs_now();
	pieces = n->wb->size > fs->cfg.inline_max;
	rc = -cfs_errno(cairn_batch_new(&c.b), EIO);
	if (!rc)
		rc = pieces ? cfs_commit_pieces(&c) : cfs_commit_inline(&c);
	r.ext_id = pieces ? c.id : 0;
	r.size = pieces ? n->wb->size : 0;
	if (!rc && old_id && old_id != r.ext_id)
		rc = cfs_drop_pieces_from(fs, c.b, old_id, 0);
	if (!rc)
		rc = cfs_batch_meta(c.b, path, c.plen, &r);
	if (!rc)
		rc = cfs_write_batch(fs, c.b, EFBIG);
	cairn_batch_free(c.b);
	if (rc)
		return rc;
	n->lay = pieces ? CFS_LAY_PIECES : CFS_LAY_INLINE;
	n->ext_id = r.ext_id;
	n->base = n->wb->size;
	n->stored_known = 0;
	if (n->trunc_at) {
		n->trunc_at = 0;
		fs->ntrunc--;
	}
	fs->buffered -= n->wb->bytes;
	wbuf_reset(n->wb);
	fs->cnt.commits++;
	fs->cnt.commit_bytes += c.bytes;
	return 0;
}

int cairnfs_commit_all(struct cairnfs *fs)
{
	int first = 0;

	pthread_mutex_lock(&fs->mu);
	for (size_t i = 0; i < fs->by_ino.size; i++) {
		for (struct cfs_node *n = fs->by_ino.b[i]; n; n = n->ino_next) {
			int rc = cfs_commit(fs, n);

			if (rc && !first)
				first = rc;
		}
	}
	pthread_mutex_unlock(&fs->mu);
	return first;
}

/* Commits every buffer of a node under dir (for a rename of dir). With
 * flush=0 no buffer ever stays dirty (writes and truncations commit at once,
 * or are dropped when their commit fails), so there is nothing to look for:
 * the walk over every node would make each rename cost the number of files
 * the kernel knows. */
int cfs_commit_subtree(struct cairnfs *fs, const char *dir, size_t dlen)
{
	char path[PK_KEY_BUF];
	size_t plen;

	if (!fs->cfg.flush && !fs->ntrunc)
		return 0;
	for (size_t i = 0; i < fs->by_ino.size; i++) {
		for (struct cfs_node *n = fs->by_ino.b[i]; n; n = n->ino_next) {
			int rc;

			if (!n->wb || !n->wb->dirty || cfs_node_path(fs, n, path, &plen))
				continue;
			if (!pk_in_subtree(dir, dlen, path, plen))
				continue;
			rc = cfs_commit(fs, n);
			if (rc)
				return rc;
		}
	}
	return 0;
}

/* ---- deferred truncation (flush=0) ------------------------------------------
 * A rewrite by truncation (open with O_TRUNC, write, close) reaches the
 * daemon as a setattr of size 0 at open and the writes at close, seconds
 * apart under the writeback cache. Committed apart, a crash between them
 * leaves an empty file where an fsynced one was. So a truncation to zero of
 * a file that has content stays in the node's write buffer, and the first
 * write after it commits both in one batch (as ext4's auto_da_alloc does):
 * a crash leaves the old content or the new. fsync, a rename, a setattr
 * other than the truncation's own times, the node's release and unmount
 * commit it too, and so does the sweeper CFS_TRUNC_DELAY_NS after the
 * truncation when no write came (a file emptied on purpose). */
#define CFS_TRUNC_DELAY_NS 5000000000ll

static void cfs_sweep(struct cairnfs *fs, int64_t cutoff)
{
	for (size_t i = 0; fs->ntrunc && i < fs->by_ino.size; i++) {
		for (struct cfs_node *n = fs->by_ino.b[i]; n; n = n->ino_next) {
			int rc;

			if (!n->trunc_at || n->trunc_at > cutoff)
				continue;
			rc = cfs_commit(fs, n);
			if (rc)
				fuse_log(FUSE_LOG_ERR, "cairnfs: deferred truncation: %s\n",
				         strerror(-rc));
			if (n->trunc_at) { /* failed: no retry every second */
				n->trunc_at = 0;
				fs->ntrunc--;
			}
			/* flush=0 keeps no dirty buffer; flush=1 retries at close */
			if (!n->nopen && (!fs->cfg.flush || !n->wb || !n->wb->dirty))
				cfs_wb_drop(fs, n);
		}
	}
}

static void *cfs_sweeper_main(void *arg)
{
	struct cairnfs *fs = arg;

	pthread_mutex_lock(&fs->mu);
	while (fs->sweep_state == 1) {
		struct timespec ts;

		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_sec += 1;
		pthread_cond_timedwait(&fs->sweep_cv, &fs->mu, &ts);
		if (fs->ntrunc)
			cfs_sweep(fs, cfs_now() - CFS_TRUNC_DELAY_NS);
	}
	pthread_mutex_unlock(&fs->mu);
	return NULL;
}

/* Marks n's buffer, just truncated to 0, as a deferred truncation. Under
 * fs->mu. The sweeper starts with the first one (after the daemon forked). */
int cfs_defer_trunc(struct cairnfs *fs, struct cfs_node *n)
{
	if (!fs->sweep_state) {
		pthread_cond_init(&fs->sweep_cv, NULL);
		if (pthread_create(&fs->sweeper, NULL, cfs_sweeper_main, fs)) {
			pthread_cond_destroy(&fs->sweep_cv);
			return -EAGAIN;
		}
		fs->sweep_state = 1;
	}
	if (!n->trunc_at)
		fs->ntrunc++;
	n->trunc_at = cfs_now();
	return 0;
}

/* Stops the sweeper; the caller then commits what is left. */
void cfs_sweeper_stop(struct cairnfs *fs)
{
	pthread_mutex_lock(&fs->mu);
	if (fs->sweep_state != 1) {
		pthread_mutex_unlock(&fs->mu);
		return;
	}
	fs->sweep_state = 2;
	pthread_cond_signal(&fs->sweep_cv);
	pthread_mutex_unlock(&fs->mu);
	pthread_join(fs->sweeper, NULL);
	pthread_cond_destroy(&fs->sweep_cv);
}
