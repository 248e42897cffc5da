/*
 * link.c: hard links, files with several names.
 * The daemon as a whole, its state and its locking rule: cfs.h.
 *
 * A key has one name, so a file that gets a second name moves, the way a
 * large file keeps its content under an extent id, to keys named by its
 * inode number: its content to "\0h" INO, its record (with the link count)
 * to "\0h" INO "m", its attributes to "\0h" INO "x" NAME, its pieces (a
 * large file) stay where they are. Each name keeps only a record of type
 * META_LINKED holding INO; a probe of the name reads the shared record
 * (probe.c), and the node of a name answers for the pseudo-path "\0h" INO
 * (node.c), so reads, writes and setattr need nothing of their own. Removing
 * a name lowers the count; the last one removes the file, unless the kernel
 * still holds one of its nodes: then "\0u" INO marks it, and the file goes at
 * the forget of its last node, or at the next mount.
 *
 * Such a file has one node whatever name the kernel looked up (node.c,
 * fs->by_link), so the kernel keeps one inode for all its names.
 */
#include "cfs.h"

static int cfs_batch_stub(struct cairn_batch *b, const char *path, size_t plen, uint64_t id)
{
	struct meta_rec r;

	meta_init(&r, META_LINKED, 0, 0, 0, 0);
	r.ino = id;
	return cfs_batch_meta(b, path, plen, &r);
}

/* Adds to b the deletion of file id: its content, record and attributes,
 * its pieces (extent id ext) and its mark. */
int cfs_batch_drop_link(struct cairn_iter *it, struct cairn_batch *b, uint64_t id, uint64_t ext)
{
	char lpath[PK_ORPHAN_LEN];
	int rc;

	pk_pseudo_path(PK_TAG_UNLINK, id, lpath);
	rc = -cfs_errno(cairn_batch_delete(b, lpath, PK_ORPHAN_LEN), EIO);
	pk_pseudo_path(PK_TAG_LINK, id, lpath);
	if (!rc)
		rc = cfs_batch_drop_from(it, b, lpath, PK_ORPHAN_LEN, PK_ORPHAN_LEN);
	if (!rc && ext)
		rc = cfs_drop_pieces(it, b, ext, 0);
	return rc;
}

/* Adds to b the move of the attributes of path to those of file id. */
static int cfs_batch_share_xattrs(struct cairnfs *fs, struct cairn_batch *b, const char *path,
                                  size_t plen, const char *lpath)
{
	char k[PK_KEY_BUF], nk[PK_KEY_BUF];
	struct cairn_iter *it;
	int kl, nkl, rc;

	if (fs->any_xattr == CFS_XATTR_NONE)
		return 0;
	kl = pk_xattr_key(path, plen, NULL, 0, k);
	nkl = pk_xattr_key(lpath, PK_ORPHAN_LEN, NULL, 0, nk);
	if (kl < 0)
		return kl;
	rc = cfs_iter(fs, &it);
	if (rc)
		return rc;
	for (cfs_seek_within(it, k, (size_t)kl, k, (size_t)kl); !rc && cairn_iter_valid(it);
	     cairn_iter_next(it)) {
		size_t klen;
		const char *key = cairn_iter_key(it, &klen);

		if (!pk_has_prefix(key, klen, k, (size_t)kl))
			break;
		memcpy(nk + nkl, key + kl, klen - (size_t)kl);
		/* the engine moves the value, or fails the whole write: an
		 * attribute it cannot read is never shared as an empty one */
		rc = cairn_batch_copy(b, key, klen, nk, (size_t)nkl + klen - (size_t)kl);
		if (!rc)
			rc = cairn_batch_delete(b, key, klen);
		rc = -cfs_errno(rc, EIO);
	}
	if (!rc && cairn_iter_status(it))
		rc = -cfs_errno(cairn_iter_status(it), EIO);
	cairn_iter_free(it);
	return rc;
}

/* Adds to b the move of the entry at path (of the given type, found by p
 * with its stat st) to the keys of file id, with two names. */
static int cfs_batch_share(struct cairnfs *fs, struct cairn_batch *b, const char *path, size_t plen,
                           int type, const struct meta_probe *p, const struct stat *st, uint64_t id)
{
	char lpath[PK_ORPHAN_LEN];
	struct meta_rec r;
	int rc = 0;

	cfs_meta_of(p, type, st, &r);
	r.ino = id;
	r.nlink = 2;
	r.ctime_ns = cfs_now();
	pk_pseudo_path(PK_TAG_LINK, id, lpath);
	if (type == META_FILE && p->data_file) {
		r.ext_id = 0; /* the key PATH holds the content */
		r.size = 0;
		/* moved by the engine: a value in a blob file by reference */
		rc = cairn_batch_copy(b, path, plen, lpath, PK_ORPHAN_LEN);
		if (!rc)
			rc = cairn_batch_delete(b, path, plen);
		rc = -cfs_errno(rc, EIO);
	}
	if (!rc)
		rc = cfs_batch_meta(b, lpath, PK_ORPHAN_LEN, &r);
	if (!rc)
		rc = cfs_batch_share_xattrs(fs, b, path, plen, lpath);
	if (!rc)
		rc = cfs_batch_stub(b, path, plen, id);
	return rc;
}

/* Adds to b what removing one name of the file with links that probe p
 * found does (the name's own record is the caller's): the count lowered,
 * and with the last name the file deleted, or marked when the kernel still
 * holds its node n (NULL when it has none). */
int cfs_batch_unshare(struct cairnfs *fs, struct cairn_batch *b, const struct meta_probe *p,
                      struct cfs_node *n)
{
	char lpath[PK_ORPHAN_LEN];
	struct cairn_iter *it;
	struct meta_rec r = p->meta;
	int rc;

	r.nlink = r.nlink ? r.nlink - 1 : 0;
	r.ctime_ns = cfs_now();
	pk_pseudo_path(PK_TAG_LINK, p->link, lpath);
	if (r.nlink || cfs_node_held(n)) {
		rc = cfs_batch_meta(b, lpath, PK_ORPHAN_LEN, &r);
		pk_pseudo_path(PK_TAG_UNLINK, p->link, lpath);
		if (!rc && !r.nlink)
			rc = -cfs_errno(cairn_batch_put(b, lpath, PK_ORPHAN_LEN, "", 0), EIO);
		return rc;
	}
	rc = cfs_iter(fs, &it);
	if (!rc)
		rc = cfs_batch_drop_link(it, b, p->link, r.type == META_FILE ? r.ext_id : 0);
	cairn_iter_free(it);
	return rc;
}

/* Deletes the file of node n, which the kernel forgot, when its last name
 * is gone. Under fs->mu. */
void cfs_link_gone(struct cairnfs *fs, struct cfs_node *n)
{
	char lpath[PK_ORPHAN_LEN];
	struct cairn_batch *b = NULL;
	struct cairn_iter *it = NULL;
	struct meta_probe p;
	struct stat st;
	int rc;

	if (fs->cfg.read_only)
		return;
	pk_pseudo_path(PK_TAG_LINK, n->link, lpath);
	rc = cfs_stat_path(fs, lpath, PK_ORPHAN_LEN, &st, &p, NULL);
	if (rc < 0 || !p.has_meta || p.meta.nlink)
		return;
	rc = -cfs_errno(cairn_batch_new(&b), EIO);
	if (!rc)
		rc = cfs_iter(fs, &it);
	if (!rc)
		rc = cfs_batch_drop_link(it, b, n->link,
		                         p.meta.type == META_FILE ? p.meta.ext_id : 0);
	if (!rc)
		rc = cfs_write_batch(fs, b, EIO);
	cairn_iter_free(it);
	cairn_batch_free(b);
	if (rc)
		fuse_log(FUSE_LOG_ERR,
		         "cairnfs: unlinked file %llu kept until the next mount: %s\n",
		         (unsigned long long)n->link, strerror(-rc));
}

/* link(2): the entry behind ino gets the name (newparent, newname). */
static int cfs_link_locked(struct cairnfs *fs, fuse_ino_t ino, fuse_ino_t newparent,
                           const char *newname, struct fuse_entry_param *e)
{
	char path[PK_KEY_BUF], npath[PK_KEY_BUF], mbuf[META_BUF];
	struct cairn_batch *b = NULL;
	struct cfs_node *n, *pn;
	struct meta_probe p;
	struct stat st;
	size_t plen, nplen;
	uint64_t id;
	int rc, type = 0;

	n = cfs_node_get(fs, ino);
	if (!n || n->orphan)
		return -ENOENT;
	rc = cfs_child_path(fs, newparent, newname, &pn, npath, &nplen);
	if (rc)
		return rc;
	rc = cfs_stat_path(fs, npath, nplen, &st, NULL, NULL);
	if (rc != -ENOENT)
		return rc < 0 ? rc : -EEXIST;
	if (n->wb && n->wb->dirty) {
		rc = cfs_commit(fs, n); /* the content moves as committed */
		if (rc)
			return rc;
	}
	rc = cfs_node_path(fs, n, path, &plen);
	if (!rc)
		rc = type = cfs_stat_path(fs, path, plen, &st, &p, mbuf);
	if (rc < 0)
		return rc;
	if (type == META_DIR)
		return -EPERM;
	if (n->link && !p.meta.nlink)
		return -ENOENT; /* its last name is gone */
	if (p.meta.nlink >= UINT32_MAX - 1)
		return -EMLINK;
	id = n->link ? n->link : st.st_ino;
	rc = -cfs_errno(cairn_batch_new(&b), EIO);
	if (!rc && !n->link) {
		rc = cfs_batch_share(fs, b, path, plen, type, &p, &st, id);
	} else if (!rc) {
		p.meta.nlink++;
		p.meta.ctime_ns = cfs_now();
		rc = cfs_batch_meta(b, path, plen, &p.meta);
	}
	if (!rc)
		rc = cfs_batch_stub(b, npath, nplen, id);
	/* a new entry changes the directory, as create does (make, find -newer) */
	if (!rc)
		rc = cfs_batch_touch_parent(fs, b, npath, nplen, cfs_now());
	if (rc >= 0)
		rc = cfs_write_batch(fs, b, ENAMETOOLONG);
	cairn_batch_free(b);
	if (rc)
		return rc;
	if (!n->link) {
		rc = cfs_link_insert(fs, n, id); /* one node for every name */
		if (rc)
			return rc;
	}
	n->nlookup++; /* the kernel's lookup of the new name */
	e->ino = n->ino;
	return cfs_stat_ino(fs, n->ino, &e->attr);
}

void cfs_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent, const char *newname)
{
	struct cairnfs *fs = cfs_of(req);
	struct fuse_entry_param e;
	int rc;

	if (fs->cfg.read_only) {
		fuse_reply_err(req, EROFS);
		return;
	}
	if (cfs_is_ctl(ino) || cfs_is_ctl(newparent) ||
	    (newparent == CFS_INO_ROOT && !strcmp(newname, CFS_CTL_NAME))) {
		fuse_reply_err(req, EPERM);
		return;
	}
	cfs_entry_init(fs, &e);
	pthread_mutex_lock(&fs->mu);
	rc = cfs_link_locked(fs, ino, newparent, newname, &e);
	pthread_mutex_unlock(&fs->mu);
	if (rc)
		fuse_reply_err(req, -rc);
	else
		fuse_reply_entry(req, &e);
}
