/*
 * namespace.c: creating, removing and renaming names.
 * The daemon as a whole, its state and its locking rule: cfs.h.
 */
#include "cfs.h"

/* ---- creating names -------------------------------------------------------- */

/* The stat of an entry just written with record r (and, for a file, an
 * empty value): what a probe would find, without the probe. */
static void cfs_made_stat(struct cairnfs *fs, const struct meta_rec *r, struct stat *st)
{
	struct meta_defaults d = cfs_defaults(fs);
	struct meta_probe p;

	memset(&p, 0, sizeof(p));
	p.has_meta = 1;
	p.meta = *r;
	p.data_file = r->type == META_FILE;
	meta_decide(&p, &d, st);
	st->st_ino = r->ino;
}

/* Writes a new entry (file, directory or symlink) and replies with it. */
static void cfs_make(fuse_req_t req, fuse_ino_t parent, const char *name, int type, mode_t mode,
                     dev_t rdev, const char *target, struct fuse_file_info *fi)
{
	struct cairnfs *fs = cfs_of(req);
	const struct fuse_ctx *ctx = fuse_req_ctx(req);
	struct cairn_batch *b = NULL;
	struct fuse_entry_param e;
	char path[PK_KEY_BUF];
	struct cfs_node *pn, *n;
	struct meta_rec r;
	struct stat st;
	size_t plen;
	uint32_t gid;
	int rc;

	if (fs->cfg.read_only) {
		fuse_reply_err(req, EROFS);
		return;
	}
	if (parent == CFS_INO_CTLDIR || (parent == CFS_INO_ROOT && !strcmp(name, CFS_CTL_NAME))) {
		fuse_reply_err(req, parent == CFS_INO_CTLDIR ? EPERM : EEXIST);
		return;
	}
	cfs_entry_init(fs, &e);
	pthread_mutex_lock(&fs->mu);
	rc = cfs_child_path(fs, parent, name, &pn, path, &plen);
	if (rc == -ENOENT && pk_name_check(name, strlen(name)) == -EINVAL)
		rc = -EINVAL;
	if (rc)
		goto out;
	rc = cfs_stat_path(fs, path, plen, &st, NULL, NULL);
	if (rc >= 0) {
		rc = -EEXIST;
		goto out;
	}
	if (rc != -ENOENT)
		goto out;
	gid = ctx->gid;
	mode &= 07777;
	rc = cfs_new_owner(fs, pn, type, &mode, &gid);
	if (rc)
		goto out;
	meta_init(&r, type, mode, ctx->uid, gid, cfs_now());
	r.rdev = rdev;
	rc = cfs_ino_alloc(fs, &r.ino);
	if (rc)
		goto out;
	if (target) {
		r.target = target;
		r.tlen = strlen(target);
	}
	rc = -cfs_errno(cairn_batch_new(&b), EIO);
	if (!rc && type == META_FILE)
		rc = -cfs_errno(cairn_batch_put(b, path, plen, "", 0), ENAMETOOLONG);
	if (!rc)
		rc = cfs_batch_meta(b, path, plen, &r);
	if (!rc)
		rc = cfs_batch_touch_parent(fs, b, path, plen, r.ctime_ns);
	if (rc >= 0)
		rc = cfs_write_batch(fs, b, ENAMETOOLONG);
	if (rc < 0)
		goto out;
	cfs_made_stat(fs, &r, &e.attr);
	n = cfs_node_ref(fs, pn, name, strlen(name));
	if (!n) {
		rc = -ENOMEM;
		goto out;
	}
	if (type == META_DIR) {
		n->nsub_known = 1; /* new: no subdirectories */
		n->nsub = 0;
		e.attr.st_nlink = 2;
		cfs_nsub_add(pn, 1);
	}
	if (type == META_FILE && !n->wb) {
		/* just written: an empty value at the key PATH, no lookup needed */
		n->lay = CFS_LAY_INLINE;
		n->base = 0;
	}
	e.ino = n->ino;
	e.generation = n->gen;
	if (fi) {
		/* with open=0 the kernel sends no release once an open was
		 * answered ENOSYS, even for files created before: counted, the
		 * handle would keep the node (and an unlinked file's orphan) until
		 * unmount. The kernel's lookup holds the node while it is open. */
		if (fs->cfg.open)
			n->nopen++;
		fi->keep_cache = 1;
	}
out:
	pthread_mutex_unlock(&fs->mu);
	cairn_batch_free(b);
	if (rc)
		fuse_reply_err(req, -rc);
	else if (fi)
		fuse_reply_create(req, &e, fi);
	else
		fuse_reply_entry(req, &e);
}

void cfs_create(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
                struct fuse_file_info *fi)
{
	cfs_make(req, parent, name, META_FILE, mode, 0, NULL, fi);
}

/* Special files are records of their type (and device number) alone: the
 * kernel serves FIFOs and sockets itself, and devices stay inert unless the
 * mount allows them (-o dev). */
void cfs_mknod(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode, dev_t rdev)
{
	int type;

	switch (mode & S_IFMT) {
	case S_IFREG:
		type = META_FILE;
		break;
	case S_IFIFO:
		type = META_FIFO;
		break;
	case S_IFCHR:
		type = META_CHR;
		break;
	case S_IFBLK:
		type = META_BLK;
		break;
	case S_IFSOCK:
		type = META_SOCK;
		break;
	default:
		fuse_reply_err(req, EINVAL);
		return;
	}
	if (type != META_CHR && type != META_BLK)
		rdev = 0;
	cfs_make(req, parent, name, type, mode, rdev, NULL, NULL);
}

void cfs_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode)
{
	cfs_make(req, parent, name, META_DIR, mode, 0, NULL, NULL);
}

void cfs_symlink(fuse_req_t req, const char *link, fuse_ino_t parent, const char *name)
{
	if (strlen(link) > META_TARGET_MAX) {
		fuse_reply_err(req, ENAMETOOLONG);
		return;
	}
	cfs_make(req, parent, name, META_SYMLINK, 0777, 0, link, NULL);
}

void cfs_readlink(fuse_req_t req, fuse_ino_t ino)
{
	struct cairnfs *fs = cfs_of(req);
	char path[PK_KEY_BUF], mbuf[META_BUF], target[META_TARGET_MAX + 1];
	struct meta_probe p;
	struct cfs_node *n;
	struct stat st;
	size_t plen;
	int rc = -ENOENT;

	pthread_mutex_lock(&fs->mu);
	n = cfs_node_get(fs, ino);
	if (n)
		rc = cfs_node_path(fs, n, path, &plen);
	if (!rc)
		rc = cfs_stat_path(fs, path, plen, &st, &p, mbuf);
	if (rc >= 0 && rc != META_SYMLINK)
		rc = -EINVAL;
	if (rc == META_SYMLINK) {
		memcpy(target, p.meta.target, p.meta.tlen);
		target[p.meta.tlen] = '\0';
		rc = 0;
	}
	pthread_mutex_unlock(&fs->mu);
	if (rc)
		fuse_reply_err(req, -rc);
	else
		fuse_reply_readlink(req, target);
}

/* ---- removing and moving names ------------------------------------------ */

/* One group of keys that belongs to an entry: head + PATH + suffix, either
 * exactly (file data, record) or as a prefix (subtree, attributes). */
struct cfs_range {
	const char *head;
	size_t hlen;
	const char *suffix;
	size_t slen;
	int exact;
	int dir_only;
	int file_only;
};

static const struct cfs_range cfs_ranges[] = {
        {"", 0, "", 0, 1, 0, 1},      /* the content */
        {"\0m", 2, "", 0, 1, 0, 0},   /* the record */
        {"\0x", 2, "\0", 1, 0, 0, 0}, /* its extended attributes */
        {"", 0, "/", 1, 0, 1, 0},     /* a directory's subtree ... */
        {"\0m", 2, "/", 1, 0, 1, 0},  /* ... its records */
        {"\0x", 2, "/", 1, 0, 1, 0},  /* ... and their attributes */
};

enum { CFS_DEL, CFS_PUT, CFS_DROP };

/* The extent id a record value names, or 0. */
static uint64_t cfs_record_ext_id(const void *val, size_t vlen)
{
	struct meta_rec r;

	if (meta_decode(val, vlen, &r) || r.type != META_FILE)
		return 0;
	return r.ext_id;
}

/* The errno of a value the iterator could not read. */
static int cfs_unreadable(struct cairn_iter *it)
{
	int rc = cairn_iter_status(it);

	return -cfs_errno(rc ? rc : CAIRN_EIO, EIO);
}

/* Adds to b, for every key of the entry at path (of the given type), either
 * its delete (CFS_DEL: the entry moves elsewhere), its delete with the
 * pieces of a large file (CFS_DROP: the entry goes away), or a put of its
 * value under the same key with path replaced by npath (CFS_PUT). */
static int cfs_batch_entry(struct cairn_iter *it, struct cairn_batch *b, const char *path,
                           size_t plen, int type, int op, const char *npath, size_t nplen)
{
	char k[PK_KEY_BUF], nk[PK_KEY_BUF];
	uint64_t drop_id = 0;

	for (size_t i = 0; i < sizeof(cfs_ranges) / sizeof(cfs_ranges[0]); i++) {
		const struct cfs_range *r = &cfs_ranges[i];
		size_t kl = r->hlen + plen + r->slen;

		if ((r->dir_only && type != META_DIR) || (r->file_only && type != META_FILE))
			continue;
		if (kl > CAIRN_MAX_KEY_SIZE)
			return -ENAMETOOLONG;
		memcpy(k, r->head, r->hlen);
		memcpy(k + r->hlen, path, plen);
		memcpy(k + r->hlen + plen, r->suffix, r->slen);
		for (cfs_seek_within(it, k, kl, k, kl); cairn_iter_valid(it); cairn_iter_next(it)) {
			size_t klen, vlen, tail;
			const char *key = cairn_iter_key(it, &klen);
			const void *val;
			int rc;

			if (r->exact ? !cfs_iter_is(it, k, kl) : !pk_has_prefix(key, klen, k, kl))
				break;
			if (op == CFS_DROP && type == META_FILE && r->exact && r->hlen) {
				val = cairn_iter_value(it, &vlen);
				if (!val)
					return cfs_unreadable(it);
				drop_id = cfs_record_ext_id(val, vlen);
			}
			if (op != CFS_PUT) {
				rc = cairn_batch_delete(b, key, klen);
			} else {
				tail = klen - r->hlen - plen;
				if (r->hlen + nplen + tail > CAIRN_MAX_KEY_SIZE)
					return -ENAMETOOLONG;
				memcpy(nk, r->head, r->hlen);
				memcpy(nk + r->hlen, npath, nplen);
				memcpy(nk + r->hlen + nplen, key + r->hlen + plen, tail);
				/* the engine moves the value: a value in a blob file
				 * by reference (no byte read or copied), so the cost
				 * follows the entries, not their size; one it cannot
				 * move fails the whole write */
				rc = cairn_batch_copy(b, key, klen, nk, r->hlen + nplen + tail);
			}
			if (rc)
				return -cfs_errno(rc, EXDEV);
			if (r->exact)
				break;
		}
		if (cairn_iter_status(it))
			return -cfs_errno(cairn_iter_status(it), EIO);
	}
	return drop_id ? cfs_drop_pieces(it, b, drop_id, 0) : 0;
}

/* Nonzero if some data key or record lies under dir "/". */
static int cfs_dir_nonempty(struct cairnfs *fs, const char *dir, size_t dlen, int *nonempty)
{
	char k[PK_KEY_BUF];
	struct cairn_iter *it;
	const char *key;
	size_t klen;
	int rc = cfs_iter(fs, &it);

	if (rc)
		return rc;
	*nonempty = 0;
	for (int sys = 0; sys < 2 && !*nonempty; sys++) {
		size_t kl = 0;

		if (sys) {
			k[0] = '\0';
			k[1] = PK_TAG_META;
			kl = 2;
		}
		memcpy(k + kl, dir, dlen);
		k[kl + dlen] = '/';
		kl += dlen + 1;
		cfs_seek_within(it, k, kl, k, kl);
		if (cairn_iter_valid(it)) {
			key = cairn_iter_key(it, &klen);
			*nonempty = pk_has_prefix(key, klen, k, kl);
		} else if (cairn_iter_status(it)) {
			break; /* before the next seek clears it */
		}
	}
	rc = cairn_iter_status(it);
	cairn_iter_free(it);
	return rc ? -cfs_errno(rc, EIO) : 0;
}

/* Whether some extended attribute may exist: learned with a few seeks the
 * first time it is asked, and set by setxattr (nothing else makes one), so
 * removals on a mount without attributes skip the attribute scan. A file
 * with links or an orphan keeps its attributes under "\0h" or "\0o" keys:
 * any such key counts, or those attributes would vanish after a remount. */
int cfs_may_have_xattrs(struct cairnfs *fs, struct cairn_iter *it)
{
	static const char tags[] = {PK_TAG_XATTR, PK_TAG_LINK, PK_TAG_ORPHAN};

	if (fs->any_xattr != CFS_XATTR_UNKNOWN || !it)
		return fs->any_xattr == CFS_XATTR_SOME;
	fs->any_xattr = CFS_XATTR_NONE;
	for (size_t i = 0; i < sizeof(tags); i++) {
		const char pfx[2] = {'\0', tags[i]};

		cfs_seek_within(it, pfx, sizeof(pfx), pfx, sizeof(pfx));
		if (cairn_iter_valid(it) || cairn_iter_status(it)) {
			fs->any_xattr = CFS_XATTR_SOME;
			break;
		}
	}
	return fs->any_xattr == CFS_XATTR_SOME;
}

/* Adds to b the deletion of every key of the entry at path that a removal
 * drops, from what the probe p found: the content (of a file) and the
 * record, deleted without looking (a delete of a missing key is harmless and
 * costs no seek), the pieces the record names, and the attributes. A
 * directory here is empty: only its own record and attributes go. *itp is
 * an iterator, made here when one is needed and none was. */
static int cfs_batch_remove(struct cairnfs *fs, struct cairn_iter **itp, struct cairn_batch *b,
                            const char *path, size_t plen, int type, const struct meta_probe *p,
                            int keep_pieces)
{
	struct cairn_iter *it;
	char k[PK_KEY_BUF];
	int kl, rc = 0;

	if (!*itp &&
	    (fs->any_xattr != CFS_XATTR_NONE || (p->has_meta && p->meta.ext_id && !keep_pieces))) {
		rc = cfs_iter(fs, itp);
		if (rc)
			return rc;
	}
	it = *itp;

	if (type == META_FILE)
		rc = -cfs_errno(cairn_batch_delete(b, path, plen), EIO);
	kl = pk_sys_key(PK_TAG_META, path, plen, k);
	if (kl < 0)
		return kl;
	if (!rc)
		rc = -cfs_errno(cairn_batch_delete(b, k, (size_t)kl), EIO);
	if (!rc && type == META_FILE && p->has_meta && p->meta.type == META_FILE &&
	    p->meta.ext_id && !keep_pieces)
		rc = cfs_drop_pieces(it, b, p->meta.ext_id, 0);
	if (rc || !cfs_may_have_xattrs(fs, it))
		return rc;
	kl = pk_xattr_key(path, plen, NULL, 0, k);
	if (kl < 0)
		return kl;
	return cfs_batch_drop_from(it, b, k, (size_t)kl, (size_t)kl);
}

/* Removes the entry (parent, name): unlink (want_dir 0) or rmdir (1). The
 * probe and the removal share one iterator, and need none for a file or
 * directory cairnfs made on a mount without extended attributes. */
static void cfs_remove(fuse_req_t req, fuse_ino_t parent, const char *name, int want_dir)
{
	struct cairnfs *fs = cfs_of(req);
	struct meta_defaults d = cfs_defaults(fs);
	struct cairn_batch *b = NULL;
	struct cairn_iter *it = NULL;
	char path[PK_KEY_BUF];
	struct cfs_node *pn, *n = NULL;
	struct meta_probe p;
	struct stat st;
	size_t plen;
	int rc, type, nonempty = 0, orphan = 0, touched = 0;
	struct cfs_memorphan *mo = NULL;
	char mbuf[META_BUF];

	if (fs->cfg.read_only) {
		fuse_reply_err(req, EROFS);
		return;
	}
	if (parent == CFS_INO_CTLDIR || (parent == CFS_INO_ROOT && !strcmp(name, CFS_CTL_NAME))) {
		fuse_reply_err(req, EPERM);
		return;
	}
	pthread_mutex_lock(&fs->mu);
	rc = cfs_child_path(fs, parent, name, &pn, path, &plen);
	if (!rc)
		n = cfs_node_find(fs, pn, name, strlen(name));
	if (!rc && n && n->wb && n->wb->dirty)
		rc = cfs_commit(fs, n); /* an orphan takes what is committed */
	if (!rc)
		rc = cfs_probe_point(fs, path, plen, &p, mbuf);
	if (rc == 0)
		rc = cfs_iter(fs, &it);
	if (rc == 0)
		rc = cfs_probe_with(fs, it, path, plen, &p, mbuf);
	if (rc < 0)
		goto out;
	type = rc = meta_decide(&p, &d, &st);
	if (rc < 0)
		goto out;
	rc = 0;
	if (want_dir && type != META_DIR)
		rc = -ENOTDIR;
	else if (!want_dir && type == META_DIR)
		rc = -EISDIR;
	else if (want_dir)
		rc = cfs_dir_nonempty(fs, path, plen, &nonempty);
	if (!rc && nonempty)
		rc = -ENOTEMPTY;
	if (!rc)
		rc = -cfs_errno(cairn_batch_new(&b), EIO);
	if (!rc && p.link) {
		rc = cfs_batch_unshare(fs, b, &p, cfs_link_node(fs, p.link));
		orphan = 1; /* the pieces belong to the file, not the name */
	} else if (!rc && type == META_FILE && cfs_node_held(n)) {
		orphan = cfs_batch_orphan(fs, b, n, path, plen, &p, &mo);
		rc = orphan < 0 ? orphan : 0;
	}
	if (!rc)
		rc = cfs_batch_remove(fs, &it, b, path, plen, type, &p, orphan == 1);
	if (!rc)
		rc = touched = cfs_batch_touch_parent(fs, b, path, plen, cfs_now());
	if (rc >= 0)
		rc = cfs_write_batch(fs, b, EIO);
	if (rc)
		goto out;
	if (type == META_DIR)
		cfs_nsub_add(pn, -1);
	if (!touched) /* the parent existed only through this key: it may be gone */
		cfs_nsub_add(pn->parent, 0);
	if (n) {
		cfs_node_unhash(fs, n);
		if (type == META_FILE && cfs_node_held(n) && !p.link)
			cfs_orphan_made(n, &p, mo), mo = NULL;
		else
			cfs_wb_drop(fs, n);
	}
out:
	pthread_mutex_unlock(&fs->mu);
	free(mo);
	cairn_iter_free(it);
	cairn_batch_free(b);
	fuse_reply_err(req, -rc);
}

void cfs_unlink(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	cfs_remove(req, parent, name, 0);
}

void cfs_rmdir(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	cfs_remove(req, parent, name, 1);
}

struct cfs_side {
	struct cfs_node *pn;
	const char *name;
	char path[PK_KEY_BUF];
	size_t plen;
	int type; /* meta_type, or -ENOENT */
	struct meta_probe p;
	struct stat st;
	char mbuf[META_BUF];      /* the record p holds */
	struct cfs_node *n;       /* its node, if the kernel knows it */
	int orphan;               /* a replaced file the kernel holds: kept as an orphan */
	struct cfs_memorphan *mo; /* its content, when kept in memory */
};

/* Checks a rename as POSIX says; returns 0 or the errno to give. */
static int cfs_rename_check(struct cairnfs *fs, struct cfs_side *s, struct cfs_side *d,
                            unsigned flags)
{
	int nonempty = 0, rc;

	if (s->type < 0)
		return s->type;
	if (d->type < 0 && d->type != -ENOENT)
		return d->type;
	if (s->type == META_DIR && pk_in_subtree(s->path, s->plen, d->path, d->plen))
		return -EINVAL;
	if (flags & RENAME_EXCHANGE) {
		if (d->type < 0)
			return -ENOENT;
		if (d->type == META_DIR && pk_in_subtree(d->path, d->plen, s->path, s->plen))
			return -EINVAL;
		return 0;
	}
	if (d->type < 0)
		return 0;
	if (flags & RENAME_NOREPLACE)
		return -EEXIST;
	if (s->type == META_DIR && d->type != META_DIR)
		return -ENOTDIR;
	if (s->type != META_DIR && d->type == META_DIR)
		return -EISDIR;
	if (d->type == META_DIR) {
		rc = cfs_dir_nonempty(fs, d->path, d->plen, &nonempty);
		if (rc)
			return rc;
		if (nonempty)
			return -ENOTEMPTY;
	}
	return 0;
}

/* Adds to b the record of the entry from, moved to to, with the inode
 * number it shows now when its record holds none (an older record, or none
 * at all), so a rename keeps the number. A directory made only by the keys
 * below it has no record to keep one in: it takes the number of its new path. */
static int cfs_batch_keep_ino(struct cairn_batch *b, const struct cfs_side *from,
                              const struct cfs_side *to)
{
	const struct meta_probe *p = &from->p;
	struct meta_rec r;

	if (from->type == META_DIR && !(p->has_meta && p->meta.type == META_DIR))
		return 0;
	if (p->has_meta && p->meta.type == from->type && p->meta.ino)
		return 0;
	cfs_meta_of(p, from->type, &from->st, &r);
	r.ino = cfs_path_ino(from->path, from->plen);
	return cfs_batch_meta(b, to->path, to->plen, &r);
}

/* The batch of a rename: every delete first, then every put, so an exchange
 * never deletes what it has just written. */
static int cfs_rename_batch(struct cairnfs *fs, struct cfs_side *s, struct cfs_side *d,
                            unsigned flags, struct cairn_batch *b)
{
	struct cairn_iter *it;
	int rc = cfs_iter(fs, &it);

	if (rc)
		return rc;
	if (d->type >= 0 && d->p.link && !(flags & RENAME_EXCHANGE)) {
		rc = cfs_batch_unshare(fs, b, &d->p, cfs_link_node(fs, d->p.link));
		if (!rc)
			rc = cfs_batch_entry(it, b, d->path, d->plen, d->type, CFS_DEL, NULL, 0);
	} else if (d->orphan) {
		rc = cfs_batch_orphan(fs, b, d->n, d->path, d->plen, &d->p, &d->mo);
		if (rc >= 0)
			rc = cfs_batch_entry(it, b, d->path, d->plen, d->type,
			                     rc == 1 ? CFS_DEL : CFS_DROP, NULL, 0);
	} else if (d->type >= 0) {
		rc = cfs_batch_entry(it, b, d->path, d->plen, d->type,
		                     flags & RENAME_EXCHANGE ? CFS_DEL : CFS_DROP, NULL, 0);
	}
	if (!rc)
		rc = cfs_batch_entry(it, b, s->path, s->plen, s->type, CFS_DEL, NULL, 0);
	if (!rc)
		rc = cfs_batch_entry(it, b, s->path, s->plen, s->type, CFS_PUT, d->path, d->plen);
	if (!rc && (flags & RENAME_EXCHANGE))
		rc = cfs_batch_entry(it, b, d->path, d->plen, d->type, CFS_PUT, s->path, s->plen);
	if (!rc)
		rc = cfs_batch_keep_ino(b, s, d);
	if (!rc && (flags & RENAME_EXCHANGE))
		rc = cfs_batch_keep_ino(b, d, s);
	cairn_iter_free(it);
	return rc;
}

/* Moves the subdirectory counts of both parents after a rename. */
static void cfs_rename_nsub(struct cfs_side *s, struct cfs_side *d, unsigned flags, int s_touched)
{
	int sdir = s->type == META_DIR, ddir = d->type == META_DIR;

	if (flags & RENAME_EXCHANGE) {
		if (sdir != ddir) {
			cfs_nsub_add(s->pn, ddir - sdir);
			cfs_nsub_add(d->pn, sdir - ddir);
		}
		return;
	}
	if (sdir) {
		cfs_nsub_add(s->pn, -1);
		cfs_nsub_add(d->pn, 1);
	}
	if (ddir)
		cfs_nsub_add(d->pn, -1);
	if (!s_touched) /* the source parent may have vanished with its last key */
		cfs_nsub_add(s->pn->parent, 0);
}

static int cfs_rename_locked(struct cairnfs *fs, struct cfs_side *s, struct cfs_side *d,
                             unsigned flags)
{
	struct cairn_batch *b = NULL;
	struct cfs_node *sn, *dn;
	int64_t now = cfs_now();
	int rc, s_touched = 0;

	d->n = cfs_node_find(fs, d->pn, d->name, strlen(d->name));
	if (d->n && d->n->wb && d->n->wb->dirty && !(flags & RENAME_EXCHANGE)) {
		rc = cfs_commit(fs, d->n); /* an orphan takes what is committed */
		if (rc)
			return rc;
	}
	s->type = cfs_stat_path(fs, s->path, s->plen, &s->st, &s->p, s->mbuf);
	d->type = cfs_stat_path(fs, d->path, d->plen, &d->st, &d->p, d->mbuf);
	rc = cfs_rename_check(fs, s, d, flags);
	if (rc || (s->plen == d->plen && !memcmp(s->path, d->path, s->plen)))
		return rc;
	if (s->type >= 0 && d->type >= 0 && s->p.link && s->p.link == d->p.link)
		return 0; /* two names of one file: POSIX says do nothing */
	d->orphan = d->type == META_FILE && !(flags & RENAME_EXCHANGE) && cfs_node_held(d->n) &&
	            !d->p.link;
	rc = cfs_commit_subtree(fs, s->path, s->plen);
	if (!rc && (flags & RENAME_EXCHANGE))
		rc = cfs_commit_subtree(fs, d->path, d->plen);
	if (!rc)
		rc = -cfs_errno(cairn_batch_new(&b), EIO);
	if (!rc)
		rc = cfs_rename_batch(fs, s, d, flags, b);
	if (!rc)
		rc = s_touched = cfs_batch_touch_parent(fs, b, s->path, s->plen, now);
	if (rc >= 0)
		rc = cfs_batch_touch_parent(fs, b, d->path, d->plen, now);
	if (rc >= 0)
		rc = cfs_write_batch(fs, b, EXDEV);
	cairn_batch_free(b);
	if (rc)
		return rc;
	cfs_rename_nsub(s, d, flags, s_touched);
	sn = cfs_node_find(fs, s->pn, s->name, strlen(s->name));
	dn = cfs_node_find(fs, d->pn, d->name, strlen(d->name));
	if (dn && !(flags & RENAME_EXCHANGE)) {
		cfs_node_unhash(fs, dn);
		if (d->orphan && dn == d->n)
			cfs_orphan_made(dn, &d->p, d->mo), d->mo = NULL;
		else
			cfs_wb_drop(fs, dn);
		dn = NULL;
	}
	if (dn)
		cfs_node_unhash(fs, dn);
	if (sn)
		rc = cfs_node_move(fs, sn, d->pn, d->name, strlen(d->name));
	if (dn && !rc)
		rc = cfs_node_move(fs, dn, s->pn, s->name, strlen(s->name));
	return rc;
}

void cfs_rename(fuse_req_t req, fuse_ino_t parent, const char *name, fuse_ino_t newparent,
                const char *newname, unsigned int flags)
{
	struct cairnfs *fs = cfs_of(req);
	struct cfs_side *s, *d;
	int rc;

	if (fs->cfg.read_only) {
		fuse_reply_err(req, EROFS);
		return;
	}
	if (flags & ~(unsigned)(RENAME_NOREPLACE | RENAME_EXCHANGE) ||
	    (flags & RENAME_NOREPLACE && flags & RENAME_EXCHANGE)) {
		fuse_reply_err(req, EINVAL);
		return;
	}
	if (cfs_is_ctl(parent) || cfs_is_ctl(newparent) ||
	    (parent == CFS_INO_ROOT && !strcmp(name, CFS_CTL_NAME)) ||
	    (newparent == CFS_INO_ROOT && !strcmp(newname, CFS_CTL_NAME))) {
		fuse_reply_err(req, EPERM);
		return;
	}
	s = calloc(2, sizeof(*s));
	if (!s) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	d = s + 1;
	s->name = name;
	d->name = newname;
	pthread_mutex_lock(&fs->mu);
	rc = cfs_child_path(fs, parent, name, &s->pn, s->path, &s->plen);
	if (!rc)
		rc = cfs_child_path(fs, newparent, newname, &d->pn, d->path, &d->plen);
	if (!rc)
		rc = cfs_rename_locked(fs, s, d, flags);
	pthread_mutex_unlock(&fs->mu);
	free(d->mo);
	free(s);
	fuse_reply_err(req, -rc);
}
