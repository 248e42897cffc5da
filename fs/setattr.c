/*
 * setattr.c: chmod, chown, utimens and truncate.
 * The daemon as a whole, its state and its locking rule: cfs.h.
 */
#include "cfs.h"

/* ---- setattr ------------------------------------------------------------- */

static int64_t cfs_ts_ns(const struct timespec *ts)
{
	return (int64_t)ts->tv_sec * 1000000000 + ts->tv_nsec;
}

int cfs_truncate(struct cairnfs *fs, struct cfs_node *n, const char *path, size_t plen, off_t size)
{
	int rc;

	if (size < 0)
		return -EINVAL;
	if ((uint64_t)size > EXT_MAX_FILE)
		return -EFBIG;
	rc = cfs_wb_get(fs, n, path, plen);
	if (rc)
		return rc;
	/* a rewrite by truncation: the writes that follow commit with it */
	if (size == 0 && (n->trunc_at || n->wb->size > 0) && (fs->cfg.flush || !n->wb->dirty)) {
		fs->buffered -= n->wb->bytes;
		wbuf_truncate(n->wb, 0);
		fs->buffered += n->wb->bytes;
		rc = cfs_defer_trunc(fs, n);
		if (!rc)
			return 1;
	}
	fs->buffered -= n->wb->bytes;
	wbuf_truncate(n->wb, (uint64_t)size);
	fs->buffered += n->wb->bytes;
	rc = cfs_commit(fs, n);
	/* with flush=0 a failed truncation is not kept for a later commit */
	if (!n->nopen || (rc && !fs->cfg.flush))
		cfs_wb_drop(fs, n);
	return rc;
}

/* Applies the owner, mode and times setattr asks for to r. */
static void cfs_attr_apply(struct cfs_node *n, struct meta_rec *r, const struct stat *attr,
                           int to_set, int64_t now)
{
	if (to_set & (FUSE_SET_ATTR_MODE | FUSE_SET_ATTR_GID))
		cfs_owner_forget(n);
	if (to_set & FUSE_SET_ATTR_MODE)
		r->mode = attr->st_mode & 07777;
	if (to_set & FUSE_SET_ATTR_UID)
		r->uid = attr->st_uid;
	if (to_set & FUSE_SET_ATTR_GID)
		r->gid = attr->st_gid;
	if (to_set & FUSE_SET_ATTR_ATIME_NOW)
		r->atime_ns = now;
	else if (to_set & FUSE_SET_ATTR_ATIME)
		r->atime_ns = cfs_ts_ns(&attr->st_atim);
	if (to_set & FUSE_SET_ATTR_MTIME_NOW)
		r->mtime_ns = now;
	else if (to_set & FUSE_SET_ATTR_MTIME)
		r->mtime_ns = cfs_ts_ns(&attr->st_mtim);
	r->ctime_ns = (to_set & FUSE_SET_ATTR_CTIME) ? cfs_ts_ns(&attr->st_ctim) : now;
}

static int cfs_setattr_locked(struct cairnfs *fs, fuse_ino_t ino, struct stat *attr, int to_set)
{
	char path[PK_KEY_BUF], mbuf[META_BUF];
	struct cairn_batch *b = NULL;
	struct meta_rec r;
	struct cfs_node *n;
	int64_t now = cfs_now();
	size_t plen;
	int rc, type;

	n = cfs_node_get(fs, ino);
	if (!n)
		return -ENOENT;
	rc = cfs_node_path(fs, n, path, &plen);
	if (rc == -ENOENT)
		return 0; /* unlinked or replaced while open: nothing left to change */
	if (!rc && n->mo && !(to_set & FUSE_SET_ATTR_SIZE)) {
		/* An orphan kept in memory has no name and goes at the last
		 * forget: its owner, mode and times change in memory alone (the
		 * kernel sends the ctime of every unlink of a file it holds,
		 * which cost three engine writes per unlink) */
		cfs_attr_apply(n, &n->mo->r, attr, to_set, now);
		return 0;
	}
	if (!rc)
		rc = cfs_orphan_store(fs, n);
	if (rc)
		return rc;
	type = cfs_get_meta(fs, path, plen, &r, mbuf);
	if (type < 0)
		return type;
	if (to_set & FUSE_SET_ATTR_SIZE) {
		if (fs->cfg.read_only)
			return -EROFS;
		if (type == META_DIR)
			return -EISDIR;
		if (type != META_FILE)
			return -EINVAL;
		rc = cfs_truncate(fs, n, path, plen, attr->st_size);
		if (rc < 0)
			return rc;
		to_set &= ~FUSE_SET_ATTR_SIZE;
		/* deferred (rc 1): the commit sets mtime and ctime itself, so the
		 * times the writeback cache sends with the truncation must not
		 * commit it now */
		if (rc == 1)
			to_set &= ~(FUSE_SET_ATTR_MTIME | FUSE_SET_ATTR_CTIME |
			            FUSE_SET_ATTR_MTIME_NOW);
		if (!to_set)
			return 0;
		type = cfs_get_meta(fs, path, plen, &r, mbuf);
		if (type < 0)
			return type;
	}
	if (!(to_set & (FUSE_SET_ATTR_MODE | FUSE_SET_ATTR_UID | FUSE_SET_ATTR_GID |
	                FUSE_SET_ATTR_ATIME | FUSE_SET_ATTR_MTIME | FUSE_SET_ATTR_ATIME_NOW |
	                FUSE_SET_ATTR_MTIME_NOW | FUSE_SET_ATTR_CTIME)))
		return 0;
	if (fs->cfg.read_only)
		return -EROFS;
	/* pending writes first, so their commit cannot overwrite a new mtime */
	if (n->wb && n->wb->dirty) {
		rc = cfs_commit(fs, n);
		if (rc)
			return rc;
		type = cfs_get_meta(fs, path, plen, &r, mbuf);
		if (type < 0)
			return type;
	}
	cfs_attr_apply(n, &r, attr, to_set, now);
	rc = -cfs_errno(cairn_batch_new(&b), EIO);
	if (!rc)
		rc = cfs_batch_meta(b, path, plen, &r);
	if (!rc)
		rc = cfs_write_batch(fs, b, ENAMETOOLONG);
	cairn_batch_free(b);
	return rc;
}

void cfs_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int to_set,
                 struct fuse_file_info *fi)
{
	struct cairnfs *fs = cfs_of(req);
	struct stat st;
	int rc = 0;

	(void)fi;
	pthread_mutex_lock(&fs->mu);
	if (!cfs_is_ctl(ino))
		rc = cfs_setattr_locked(fs, ino, attr, to_set);
	else if (ino == CFS_INO_CTL0 + CTL_CONTROL && (to_set & FUSE_SET_ATTR_SIZE))
		cfs_ctl_truncate(fs, attr->st_size); /* other control files ignore it */
	if (!rc)
		rc = cfs_stat_ino(fs, ino, &st);
	pthread_mutex_unlock(&fs->mu);
	cfs_reply_stat(req, fs, rc, &st);
}
