/*
 * sparse.c: holes in files stored as pieces: st_blocks, SEEK_DATA and
 * SEEK_HOLE, fallocate.
 * The daemon as a whole, its state and its locking rule: cfs.h.
 *
 * A large file is 64 KiB pieces (extent.h) and a piece that does not exist
 * reads as zeros, so the holes of a file are its missing pieces: one scan of
 * the keys "\0d" ID from a piece on finds them. A small file (one value) has
 * no holes: all of it is stored.
 */
#include "cfs.h"

/* The first stored piece of id at or after idx: 1 and *found, or 0. */
static int cfs_piece_at(struct cairn_iter *it, uint64_t id, uint64_t idx, uint64_t *found)
{
	char k[EXT_KEY_LEN];
	const char *key;
	size_t klen;
	uint64_t kid;

	ext_key(id, idx, k);
	cfs_seek_within(it, k, EXT_KEY_LEN, k, EXT_PFX_LEN);
	if (!cairn_iter_valid(it))
		return 0;
	key = cairn_iter_key(it, &klen);
	return pk_has_prefix(key, klen, k, EXT_PFX_LEN) && !ext_key_decode(key, klen, &kid, found);
}

/* Commits what the node buffers and learns its layout, so the database
 * holds what a read shows. Under fs->mu; fills path. */
static int cfs_sparse_prepare(struct cairnfs *fs, fuse_ino_t ino, struct cfs_node **np, char *path,
                              size_t *plen)
{
	struct cfs_node *n = cfs_node_get(fs, ino);
	int rc;

	*np = n;
	if (cfs_is_ctl(ino))
		return -EINVAL;
	if (!n)
		return -ENOENT;
	rc = cfs_node_path(fs, n, path, plen);
	if (!rc)
		rc = cfs_commit(fs, n);
	if (!rc)
		rc = cfs_layout(fs, n, path, *plen);
	return rc;
}

/* The bytes a file stored as pieces takes: the sum of its pieces. Kept on
 * the node until its next commit. Under fs->mu. */
int cfs_stored_bytes(struct cairnfs *fs, struct cfs_node *n, uint64_t *bytes)
{
	struct cairn_iter *it;
	char k[EXT_KEY_LEN];
	int rc;

	if (n->stored_known) {
		*bytes = n->stored;
		return 0;
	}
	rc = cfs_iter(fs, &it);
	if (rc)
		return rc;
	n->stored = 0;
	ext_key(n->ext_id, 0, k);
	for (cfs_seek_within(it, k, EXT_KEY_LEN, k, EXT_PFX_LEN); cairn_iter_valid(it);
	     cairn_iter_next(it)) {
		struct cairn_key_info info;
		size_t klen;
		const char *key = cairn_iter_key(it, &klen);

		if (!pk_has_prefix(key, klen, k, EXT_PFX_LEN))
			break;
		cairn_iter_info(it, &info);
		n->stored += info.size;
	}
	rc = -cfs_errno(cairn_iter_status(it), EIO);
	cairn_iter_free(it);
	if (rc)
		return rc;
	n->stored_known = 1;
	*bytes = n->stored;
	return 0;
}

/* st_blocks of a regular file whose size says it may be stored as pieces. */
int cfs_fix_blocks(struct cairnfs *fs, struct cfs_node *n, struct stat *st)
{
	char path[PK_KEY_BUF];
	uint64_t bytes;
	size_t plen;
	int rc;

	if (!S_ISREG(st->st_mode) || (uint64_t)st->st_size <= fs->cfg.inline_max ||
	    (n->wb && n->wb->dirty))
		return 0;
	rc = cfs_node_path(fs, n, path, &plen);
	if (!rc)
		rc = cfs_layout(fs, n, path, plen);
	if (rc || n->lay != CFS_LAY_PIECES)
		return rc == -ENOENT ? 0 : rc;
	rc = cfs_stored_bytes(fs, n, &bytes);
	if (!rc)
		st->st_blocks = (blkcnt_t)((bytes + 511) / 512);
	return rc;
}

/* SEEK_DATA and SEEK_HOLE over the committed pieces; the result in *res. */
static int cfs_seek_pieces(struct cairnfs *fs, struct cfs_node *n, uint64_t off, int whence,
                           uint64_t *res)
{
	uint64_t size = n->base, idx = off / EXT_SIZE, p;
	struct cairn_iter *it;
	int rc = cfs_iter(fs, &it), got;

	if (rc)
		return rc;
	if (whence == SEEK_DATA) {
		got = cfs_piece_at(it, n->ext_id, idx, &p);
		rc = !got || p * EXT_SIZE >= size ? -ENXIO : 0;
		*res = p * EXT_SIZE > off ? p * EXT_SIZE : off;
	} else {
		/* walk the run of pieces from idx to its first gap */
		for (got = cfs_piece_at(it, n->ext_id, idx, &p); got && p == idx;
		     got = cfs_piece_at(it, n->ext_id, idx, &p))
			idx++;
		*res = idx * EXT_SIZE > off ? idx * EXT_SIZE : off;
		if (*res > size)
			*res = size;
	}
	if (!rc && cairn_iter_status(it))
		rc = -cfs_errno(cairn_iter_status(it), EIO);
	cairn_iter_free(it);
	return rc;
}

void cfs_lseek(fuse_req_t req, fuse_ino_t ino, off_t off, int whence, struct fuse_file_info *fi)
{
	struct cairnfs *fs = cfs_of(req);
	char path[PK_KEY_BUF];
	struct cfs_node *n;
	uint64_t res = 0;
	size_t plen;
	int rc;

	(void)fi;
	if (whence != SEEK_DATA && whence != SEEK_HOLE) {
		fuse_reply_err(req, EINVAL); /* the kernel does the others itself */
		return;
	}
	pthread_mutex_lock(&fs->mu);
	rc = cfs_sparse_prepare(fs, ino, &n, path, &plen);
	if (!rc && (off < 0 || (uint64_t)off >= n->base))
		rc = -ENXIO;
	else if (!rc && n->lay == CFS_LAY_PIECES)
		rc = cfs_seek_pieces(fs, n, (uint64_t)off, whence, &res);
	else if (!rc)
		res = whence == SEEK_DATA ? (uint64_t)off : n->base; /* one value: all data */
	pthread_mutex_unlock(&fs->mu);
	if (rc)
		fuse_reply_err(req, -rc);
	else
		fuse_reply_lseek(req, (off_t)res);
}

/* Writes zeros over [off, end) through the node's buffer and commits. */
static int cfs_zero(struct cairnfs *fs, struct cfs_node *n, const char *path, size_t plen,
                    uint64_t off, uint64_t end)
{
	char *zeros;
	int rc;

	if (off >= end)
		return 0;
	zeros = calloc(1, (size_t)(end - off));
	if (!zeros)
		return -ENOMEM;
	rc = cfs_wb_get(fs, n, path, plen);
	if (!rc) {
		size_t before = n->wb->bytes;

		rc = wbuf_write(n->wb, off, zeros, (size_t)(end - off));
		if (!rc)
			fs->buffered += n->wb->bytes - before;
	}
	free(zeros);
	if (!rc)
		rc = cfs_commit(fs, n);
	return rc;
}

/* Deletes the pieces [from, to) of a file stored as pieces. */
static int cfs_drop_range(struct cairnfs *fs, struct cfs_node *n, uint64_t from, uint64_t to)
{
	struct cairn_batch *b = NULL;
	struct cairn_iter *it;
	uint64_t p;
	int rc = cfs_iter(fs, &it), any = 0;

	if (!rc)
		rc = -cfs_errno(cairn_batch_new(&b), EIO);
	for (int got = rc ? 0 : cfs_piece_at(it, n->ext_id, from, &p); !rc && got && p < to;) {
		char k[EXT_KEY_LEN];

		ext_key(n->ext_id, p, k);
		rc = -cfs_errno(cairn_batch_delete(b, k, EXT_KEY_LEN), EIO);
		any = 1;
		got = cfs_piece_at(it, n->ext_id, p + 1, &p);
	}
	if (!rc && it && cairn_iter_status(it))
		rc = -cfs_errno(cairn_iter_status(it), EIO);
	if (!rc && any)
		rc = cfs_write_batch(fs, b, EIO);
	n->stored_known = 0;
	cairn_batch_free(b);
	cairn_iter_free(it);
	return rc;
}

/* PUNCH_HOLE over [off, end) of the file (end at most its size): whole
 * pieces are deleted, the partly covered ones get zeros. A small file gets
 * zeros. Two batches: a crash between them leaves part of the range
 * zeroed, never other bytes. */
static int cfs_punch(struct cairnfs *fs, struct cfs_node *n, const char *path, size_t plen,
                     uint64_t off, uint64_t end)
{
	uint64_t first, last;
	int rc;

	if (n->lay != CFS_LAY_PIECES)
		return cfs_zero(fs, n, path, plen, off, end);
	first = (off + EXT_SIZE - 1) / EXT_SIZE;
	last = end == n->base ? ext_count(end) : end / EXT_SIZE;
	if (first >= last)
		return cfs_zero(fs, n, path, plen, off, end);
	rc = cfs_zero(fs, n, path, plen, off, first * EXT_SIZE);
	if (!rc && last * EXT_SIZE < end)
		rc = cfs_zero(fs, n, path, plen, last * EXT_SIZE, end);
	if (!rc)
		rc = cfs_drop_range(fs, n, first, last);
	return rc;
}

/* Space is never reserved: a store of keys has no blocks to allocate, so
 * the default mode only extends the size (a hole) and KEEP_SIZE alone does
 * nothing; a later write may still meet a full disk (docs/cairnfs.md). */
void cfs_fallocate(fuse_req_t req, fuse_ino_t ino, int mode, off_t off, off_t len,
                   struct fuse_file_info *fi)
{
	struct cairnfs *fs = cfs_of(req);
	char path[PK_KEY_BUF];
	struct cfs_node *n;
	uint64_t end;
	size_t plen;
	int rc;

	(void)fi;
	if (mode & ~(FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE)) {
		fuse_reply_err(req, EOPNOTSUPP);
		return;
	}
	if (off < 0 || len <= 0) {
		fuse_reply_err(req, EINVAL);
		return;
	}
	end = (uint64_t)off + (uint64_t)len;
	if (fs->cfg.read_only) {
		fuse_reply_err(req, EROFS);
		return;
	}
	pthread_mutex_lock(&fs->mu);
	rc = cfs_sparse_prepare(fs, ino, &n, path, &plen);
	if (!rc && (mode & FALLOC_FL_PUNCH_HOLE) && (uint64_t)off < n->base)
		rc = cfs_punch(fs, n, path, plen, (uint64_t)off, end < n->base ? end : n->base);
	else if (!rc && !(mode & FALLOC_FL_KEEP_SIZE) && end > n->base)
		rc = end > EXT_MAX_FILE ? -EFBIG : cfs_truncate(fs, n, path, plen, (off_t)end);
	if (n && !n->nopen && n->wb && !n->wb->dirty)
		cfs_wb_drop(fs, n); /* committed: nothing to keep */
	pthread_mutex_unlock(&fs->mu);
	fuse_reply_err(req, rc < 0 ? -rc : 0);
}
