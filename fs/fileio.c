/*
 * fileio.c: open, read, write, flush, release and fsync.
 * The daemon as a whole, its state and its locking rule: cfs.h.
 */
#include "cfs.h"

/* ---- open files ------------------------------------------------------------ */

/* Only reached with cfg.open set (the "open" lever off): the statistics
 * files are then read with direct I/O, their inode's snapshot taken at lookup. */
static void cfs_open_ctl(fuse_req_t req, struct cairnfs *fs, fuse_ino_t ino,
                         struct fuse_file_info *fi)
{
	fi->direct_io = 1;
	fi->fh = 0;
	if (ino == CFS_INO_CTLDIR) {
		fuse_reply_err(req, EISDIR);
		return;
	}
	if (ino == CFS_INO_CTL0 + CTL_CONTROL) {
		if (fs->cfg.read_only && (fi->flags & O_ACCMODE) != O_RDONLY) {
			fuse_reply_err(req, EROFS);
			return;
		}
		if (fi->flags & O_TRUNC) { /* atomic_o_trunc: no setattr follows */
			pthread_mutex_lock(&fs->mu);
			cfs_ctl_truncate(fs, 0);
			pthread_mutex_unlock(&fs->mu);
		}
	} else if ((fi->flags & O_ACCMODE) != O_RDONLY) {
		fuse_reply_err(req, EACCES);
		return;
	}
	fuse_reply_open(req, fi);
}

/* With -o open=0 answered ENOSYS: the kernel then never sends open or
 * release for an existing file (only create does), keeps its pages cached and
 * handles O_TRUNC with a setattr; nothing needs per-open state, since the
 * write buffer hangs on the node. With open=1 (the default) open counts the
 * handle and keeps the page cache (keep_cache). */
void cfs_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct cairnfs *fs = cfs_of(req);
	char path[PK_KEY_BUF];
	struct cfs_node *n;
	size_t plen;
	int rc = 0;

	if (!fs->cfg.open) {
		fuse_reply_err(req, ENOSYS);
		return;
	}
	if (cfs_is_ctl(ino)) {
		cfs_open_ctl(req, fs, ino, fi);
		return;
	}
	if (fs->cfg.read_only && (fi->flags & O_ACCMODE) != O_RDONLY) {
		fuse_reply_err(req, EROFS);
		return;
	}
	pthread_mutex_lock(&fs->mu);
	n = cfs_node_get(fs, ino);
	if (!n) {
		rc = -ENOENT;
	} else if (fi->flags & O_TRUNC) {
		rc = cfs_node_path(fs, n, path, &plen);
		if (!rc)
			rc = cfs_truncate(fs, n, path, plen, 0);
		if (rc > 0)
			rc = 0; /* deferred until the writes */
	}
	if (!rc)
		n->nopen++;
	pthread_mutex_unlock(&fs->mu);
	if (rc) {
		fuse_reply_err(req, -rc);
		return;
	}
	/* only this daemon changes the database, so cached pages stay valid */
	fi->keep_cache = 1;
	fuse_reply_open(req, fi);
}

static void cfs_read_ctl(fuse_req_t req, struct cairnfs *fs, fuse_ino_t ino, size_t size, off_t off)
{
	struct cfs_ctlsnap *c;
	const char *text = NULL;
	char *buf = NULL;
	size_t got = 0, len = 0;

	pthread_mutex_lock(&fs->mu);
	c = cfs_snap_get(fs, ino);
	if (c) {
		text = c->buf;
		len = c->len;
	} else if (ino == CFS_INO_CTL0 + CTL_CONTROL) {
		text = fs->ctl_text; /* the kernel fills a partly written page */
		len = fs->ctl_len;
	}
	if (text && off >= 0 && (uint64_t)off < len) {
		got = len - (size_t)off < size ? len - (size_t)off : size;
		buf = malloc(got);
		if (buf)
			memcpy(buf, text + off, got);
		else
			got = 0;
	}
	pthread_mutex_unlock(&fs->mu);
	fuse_reply_buf(req, buf, got);
	free(buf);
}

/* Reads a file stored as pieces, called under fs->mu which it releases:
 * the snapshot taken under the lock matches the layout the node records, so
 * a commit racing the read is seen whole or not at all. */
static int cfs_read_pieces(struct cairnfs *fs, struct cfs_node *n, uint64_t off, char *buf,
                           size_t size, size_t *got)
{
	const struct cairn_snapshot *snap = NULL;
	uint64_t id = n->ext_id, end = n->base;
	int rc = -cfs_errno(cairn_snapshot_new(fs->db, &snap), EIO);

	pthread_mutex_unlock(&fs->mu);
	*got = 0;
	if (rc || off >= end)
		goto out;
	*got = end - off < size ? (size_t)(end - off) : size;
	rc = cfs_pieces_read(fs, snap, id, off, buf, *got);
out:
	cairn_snapshot_release(fs->db, snap);
	return rc;
}

/* Reads a file whose layout is inline or not yet known, outside fs->mu: the
 * key PATH first (small files, the common case, cost one lookup); only when
 * it is missing is the layout learned, and a file stored as pieces read.
 * snap was taken under fs->mu together with path, so the key is read as it
 * was when path named this file: a rename that moves another file to path
 * meanwhile cannot make this read return that file's bytes. */
static int cfs_read_inline(struct cairnfs *fs, fuse_ino_t ino, const struct cairn_snapshot *snap,
                           const char *path, size_t plen, uint64_t off, char *buf, size_t size,
                           size_t *got)
{
	char cur[PK_KEY_BUF];
	struct cfs_node *n;
	size_t clen;
	int rc = cairn_get_range(fs->db, snap, path, plen, off, buf, size, got);

	if (rc && rc != CAIRN_ENOTFOUND)
		cfs_log_engine(fs, "read", rc);
	if (rc != CAIRN_ENOTFOUND)
		return -cfs_errno(rc, EIO);
	*got = 0;
	pthread_mutex_lock(&fs->mu);
	n = cfs_node_get(fs, ino);
	/* the name may have changed while unlocked (a rename): only the path as
	 * it is now, under the lock, may teach the node its layout */
	rc = n ? cfs_node_path(fs, n, cur, &clen) : -ENOENT;
	if (!rc && n->lay == CFS_LAY_INLINE && clen == plen && !memcmp(cur, path, plen))
		n->lay = CFS_LAY_UNKNOWN; /* inline, yet no key: look again */
	if (!rc)
		rc = cfs_layout(fs, n, cur, clen);
	if (!rc && n->wb) {
		rc = cfs_wb_read(fs, n, cur, clen, off, buf, size, got);
	} else if (!rc && n->lay == CFS_LAY_PIECES) {
		return cfs_read_pieces(fs, n, off, buf, size, got);
	} else if (!rc) {
		rc = cairn_get_range(fs->db, NULL, cur, clen, off, buf, size, got);
		if (rc && rc != CAIRN_ENOTFOUND)
			cfs_log_engine(fs, "read", rc);
		rc = rc == CAIRN_ENOTFOUND ? 0 : -cfs_errno(rc, EIO);
	}
	pthread_mutex_unlock(&fs->mu);
	return rc;
}

void cfs_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi)
{
	struct cairnfs *fs = cfs_of(req);
	const struct cairn_snapshot *snap = NULL;
	char path[PK_KEY_BUF];
	struct cfs_node *n;
	size_t plen, got = 0;
	char *buf;
	int rc;

	(void)fi;
	if (cfs_is_ctl(ino)) {
		cfs_read_ctl(req, fs, ino, size, off);
		return;
	}
	buf = bufpool_get(&fs->pool, size);
	if (!buf) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	pthread_mutex_lock(&fs->mu);
	n = cfs_node_get(fs, ino);
	rc = n ? cfs_node_path(fs, n, path, &plen) : -ENOENT;
	if (!rc && n->mo) {
		got = cfs_orphan_read(n, (uint64_t)off, buf, size);
		pthread_mutex_unlock(&fs->mu);
	} else if (!rc && n->wb) {
		rc = cfs_wb_read(fs, n, path, plen, (uint64_t)off, buf, size, &got);
		pthread_mutex_unlock(&fs->mu);
	} else if (!rc && n->lay == CFS_LAY_PIECES) {
		rc = cfs_read_pieces(fs, n, (uint64_t)off, buf, size, &got);
	} else {
		if (!rc)
			rc = -cfs_errno(cairn_snapshot_new(fs->db, &snap), EIO);
		pthread_mutex_unlock(&fs->mu);
		if (!rc)
			rc = cfs_read_inline(fs, ino, snap, path, plen, (uint64_t)off, buf, size,
			                     &got);
		cairn_snapshot_release(fs->db, snap);
	}
	if (rc == -ENOENT)
		rc = 0, got = 0; /* gone: an empty read, as from an unlinked file */
	if (rc)
		fuse_reply_err(req, -rc);
	else
		fuse_reply_buf(req, buf, got);
	bufpool_put(&fs->pool, buf);
}

/* Whether a buffered write (flush=1) commits at once: writes are buffered
 * and commit at flush, fsync, release, or when the buffer fills; a large
 * file's buffer counts as full when the pieces its commit would rewrite fill
 * it, so scattered small writes cost a piece each. */
static int cfs_commit_now(struct cairnfs *fs, struct cfs_node *n)
{
	struct wbuf *w = n->wb;

	if (w->bytes >= fs->cfg.write_buffer || fs->buffered >= fs->cfg.write_buffer_total)
		return 1;
	if (w->size <= fs->cfg.inline_max || w->n < 2)
		return 0;
	return ext_dirty_count(w, n->base) >= fs->cfg.write_buffer / EXT_SIZE;
}

/* A write with flush=0 (the default). The daemon never hears of close(2),
 * but with the writeback cache the kernel writes a file's dirty pages before
 * close returns, so each write commits as it arrives: data reaches the log
 * at close, as the durability contract says, and nothing waits for a
 * release the kernel may send seconds later. It costs the pieces it touches,
 * or the whole value of a small file, and is committed straight from the
 * request's memory through a write buffer that borrows it (no copy). No
 * buffer is ever left dirty in this mode: a truncation commits at once too,
 * and one whose commit failed is dropped. Under fs->mu. */
static int cfs_write_through(struct cairnfs *fs, struct cfs_node *n, const char *path, size_t plen,
                             const char *buf, size_t size, uint64_t off)
{
	struct wbuf *own = n->wb, w;
	struct wbuf_ext slot;
	int rc = cfs_layout(fs, n, path, plen);

	if (rc)
		return rc;
	if (n->trunc_at) {
		/* the deferred truncation and this write commit as one */
		size_t before = own->bytes;

		rc = wbuf_write(own, off, buf, size);
		if (rc)
			return rc;
		fs->buffered += own->bytes - before;
		rc = cfs_commit(fs, n);
		if (!n->nopen)
			cfs_wb_drop(fs, n);
		return rc;
	}
	wbuf_borrow(&w, n->base, &slot, off, buf, size);
	n->wb = &w;
	rc = cfs_commit(fs, n);
	n->wb = own;
	if (own) {
		/* it held nothing; start it again over the new committed size */
		wbuf_free(own);
		wbuf_init(own, n->base);
	}
	return rc;
}

/* ---- a failed write-back ------------------------------------------------- */

/* With the writeback cache the kernel has already taken a write that the
 * daemon fails at write-back (a full disk): it keeps the pages, clean now,
 * and the file size, and would show data that was never stored. The kernel
 * trusts its own size while it holds the inode, so the daemon drops the
 * inode: its pages (notify_inval_inode) and its name (notify_inval_entry),
 * and gives the next lookup a new generation, which makes the kernel take
 * a fresh inode with the stored size and content. Descriptors still open on
 * the old inode then fail with EIO, as after any lost write-back.
 *
 * A notification must not be sent from the request it is about (the kernel
 * may wait on that very request to drop the pages), so a thread sends it;
 * failures of one file while it runs share it. */
struct cfs_stale_note {
	struct cairnfs *fs;
	fuse_ino_t ino, parent;
	char *name;
	size_t nlen;
};

static void *cfs_stale_run(void *arg)
{
	struct cfs_stale_note *s = arg;
	struct cairnfs *fs = s->fs;
	struct cfs_node *n;

	fuse_lowlevel_notify_inval_inode(fs->se, s->ino, 0, 0);
	fuse_lowlevel_notify_inval_entry(fs->se, s->parent, s->name, s->nlen);
	pthread_mutex_lock(&fs->mu);
	n = cfs_node_get(fs, s->ino);
	if (n)
		n->stale = 0;
	fs->notifying--;
	pthread_mutex_unlock(&fs->mu);
	free(s->name);
	free(s);
	return NULL;
}

/* Under fs->mu, after a write of n failed. */
static void cfs_write_failed(struct cairnfs *fs, struct cfs_node *n, int rc)
{
	struct cfs_stale_note *s;
	pthread_attr_t a;
	pthread_t t;

	fuse_log(FUSE_LOG_ERR,
	         "cairnfs: write-back of inode %llu failed (%s): its cached "
	         "pages and size are dropped\n",
	         (unsigned long long)n->ino, strerror(-rc));
	if (n->stale || !fs->se || !n->parent || !n->hashed)
		return;
	s = calloc(1, sizeof(*s));
	if (!s || !(s->name = malloc(n->nlen))) {
		free(s);
		return;
	}
	memcpy(s->name, n->name, n->nlen);
	s->nlen = n->nlen;
	s->fs = fs;
	s->ino = n->ino;
	s->parent = n->parent->ino;
	n->gen++;
	n->stale = 1;
	fs->notifying++;
	pthread_attr_init(&a);
	pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
	if (pthread_create(&t, &a, cfs_stale_run, s) != 0) {
		n->stale = 0;
		fs->notifying--;
		free(s->name);
		free(s);
	}
	pthread_attr_destroy(&a);
}

/* The control file holds what was written to it, up to CFS_CTL_TEXT_MAX
 * bytes, until a truncation (O_TRUNC) empties it, and runs each command
 * once: the writeback cache sends a whole page again from its start when a
 * second command dirties it, so only the bytes a write changes or adds are
 * commands, from the start of the first changed line. */
#define CFS_CTL_TEXT_MAX (1024 * 1024)

void cfs_ctl_truncate(struct cairnfs *fs, off_t size)
{
	if (size >= 0 && (uint64_t)size < fs->ctl_len)
		fs->ctl_len = (size_t)size;
}

/* Takes in a write to the control file under fs->mu: sets *cmd (malloc'd,
 * or NULL when nothing is new) to the text to run. */
static int cfs_ctl_take(struct cairnfs *fs, const char *buf, size_t size, size_t off, char **cmd,
                        size_t *clen)
{
	size_t end = off + size, p = off, start;

	*cmd = NULL;
	if (end > fs->ctl_len) {
		char *t = realloc(fs->ctl_text, end);

		if (!t)
			return -ENOMEM;
		fs->ctl_text = t;
		if (off > fs->ctl_len)
			memset(t + fs->ctl_len, 0, off - fs->ctl_len);
	}
	while (p < end && p < fs->ctl_len && fs->ctl_text[p] == buf[p - off])
		p++;
	start = p;
	if (p < fs->ctl_len) /* an old line rewritten: run it whole */
		while (start > 0 && fs->ctl_text[start - 1] != '\n')
			start--;
	memcpy(fs->ctl_text + off, buf, size);
	if (end > fs->ctl_len)
		fs->ctl_len = end;
	if (p == end)
		return 0;
	*clen = end - start;
	*cmd = malloc(*clen);
	if (!*cmd)
		return -ENOMEM;
	memcpy(*cmd, fs->ctl_text + start, *clen);
	return 0;
}

static void cfs_write_ctl(fuse_req_t req, struct cairnfs *fs, const char *buf, size_t size,
                          off_t off)
{
	char *cmd = NULL;
	size_t clen = 0;
	int rc;

	if (off < 0 || (uint64_t)off + size > CFS_CTL_TEXT_MAX) {
		fuse_reply_err(req, EFBIG);
		return;
	}
	pthread_mutex_lock(&fs->mu);
	rc = cfs_ctl_take(fs, buf, size, (size_t)off, &cmd, &clen);
	pthread_mutex_unlock(&fs->mu);
	if (!rc && cmd)
		rc = ctl_command(fs, cmd, clen); /* unlocked: a compaction takes long */
	free(cmd);
	if (rc)
		fuse_reply_err(req, -rc);
	else
		fuse_reply_write(req, size);
}

void cfs_write(fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size, off_t off,
               struct fuse_file_info *fi)
{
	struct cairnfs *fs = cfs_of(req);
	char path[PK_KEY_BUF];
	struct cfs_node *n;
	size_t plen, before;
	int rc;

	(void)fi;
	if (ino == CFS_INO_CTL0 + CTL_CONTROL) {
		cfs_write_ctl(req, fs, buf, size, off);
		return;
	}
	if (cfs_is_ctl(ino)) {
		fuse_reply_err(req, EACCES);
		return;
	}
	if (off < 0 || (uint64_t)off + size > EXT_MAX_FILE) {
		fuse_reply_err(req, EFBIG);
		return;
	}
	pthread_mutex_lock(&fs->mu);
	n = cfs_node_get(fs, ino);
	rc = n ? cfs_node_path(fs, n, path, &plen) : -ENOENT;
	if (rc == -ENOENT && n) {
		/* unlinked while open: the write goes nowhere, as documented */
		pthread_mutex_unlock(&fs->mu);
		fuse_reply_write(req, size);
		return;
	}
	if (!rc && !fs->cfg.flush) {
		rc = cfs_write_through(fs, n, path, plen, buf, size, (uint64_t)off);
	} else if (!rc) {
		rc = cfs_wb_get(fs, n, path, plen);
		if (!rc) {
			before = n->wb->bytes;
			rc = wbuf_write(n->wb, (uint64_t)off, buf, size);
			fs->buffered += n->wb->bytes - before;
		}
		if (!rc && cfs_commit_now(fs, n))
			rc = cfs_commit(fs, n);
	}
	if (rc && n && fi->writepage) /* a write(2) itself fails in its caller */
		cfs_write_failed(fs, n, rc);
	pthread_mutex_unlock(&fs->mu);
	if (rc)
		fuse_reply_err(req, -rc);
	else
		fuse_reply_write(req, size);
}

void cfs_flush(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct cairnfs *fs = cfs_of(req);
	struct cfs_node *n;
	int rc = 0;

	(void)fi;
	if (!fs->cfg.flush) {
		/* the writes commit themselves; an old kernel must still be asked
		 * for flush, or it skips the write-back at close (cairnfs.c) */
		fuse_reply_err(req, fs->flush_enosys ? ENOSYS : 0);
		return;
	}
	pthread_mutex_lock(&fs->mu);
	n = cfs_node_get(fs, ino);
	if (n && n->wb && n->wb->dirty)
		rc = cfs_commit(fs, n);
	pthread_mutex_unlock(&fs->mu);
	fuse_reply_err(req, -rc);
}

void cfs_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct cairnfs *fs = cfs_of(req);
	struct cfs_node *n;

	(void)fi;
	if (cfs_is_ctl(ino)) {
		fuse_reply_err(req, 0);
		return;
	}
	pthread_mutex_lock(&fs->mu);
	n = cfs_node_get(fs, ino);
	if (n && n->nopen && --n->nopen == 0) {
		int rc = cfs_commit(fs, n);

		if (rc)
			fuse_log(FUSE_LOG_ERR, "cairnfs: commit at release: %s\n", strerror(-rc));
		cfs_wb_drop(fs, n);
		cfs_node_maybe_free(fs, n);
		cfs_orphans_flush(fs, 0);
	}
	pthread_mutex_unlock(&fs->mu);
	fuse_reply_err(req, 0);
}

static int cfs_sync(struct cairnfs *fs)
{
	int rc = cairn_sync(fs->db);

	if (rc)
		cfs_log_engine(fs, "sync", rc);
	__atomic_add_fetch(&fs->cnt.fsyncs, 1, __ATOMIC_RELAXED);
	return -cfs_errno(rc, EIO);
}

void cfs_fsync(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi)
{
	struct cairnfs *fs = cfs_of(req);
	struct cfs_node *n;
	int rc = 0;

	(void)datasync;
	(void)fi;
	if (fs->cfg.read_only || cfs_is_ctl(ino)) {
		fuse_reply_err(req, 0);
		return;
	}
	pthread_mutex_lock(&fs->mu);
	n = cfs_node_get(fs, ino);
	if (n)
		rc = cfs_commit(fs, n);
	pthread_mutex_unlock(&fs->mu);
	if (!rc)
		rc = cfs_sync(fs); /* outside the lock: concurrent fsyncs share one sync */
	fuse_reply_err(req, -rc);
}

void cfs_fsyncdir(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi)
{
	struct cairnfs *fs = cfs_of(req);

	(void)ino;
	(void)datasync;
	(void)fi;
	fuse_reply_err(req, fs->cfg.read_only ? 0 : -cfs_sync(fs));
}
