/*
 * dir.c: directory listings.
 * The daemon as a whole, its state and its locking rule: cfs.h.
 */
#include "cfs.h"

/* ---- directories ------------------------------------------------------------ */

static int cfs_dir_add(struct cfs_dir *d, const char *name, size_t nlen, struct cfs_dent **out)
{
	if (d->n == d->cap) {
		size_t ncap = d->cap ? d->cap * 2 : 64;
		struct cfs_dent *nd = realloc(d->d, ncap * sizeof(*nd));

		if (!nd)
			return -ENOMEM;
		d->d = nd;
		d->cap = ncap;
	}
	if (d->nused + nlen > d->ncap) {
		size_t ncap = d->ncap ? d->ncap * 2 : 4096;
		char *nn;

		while (ncap < d->nused + nlen)
			ncap *= 2;
		nn = realloc(d->names, ncap);
		if (!nn)
			return -ENOMEM;
		d->names = nn;
		d->ncap = ncap;
	}
	memcpy(d->names + d->nused, name, nlen);
	*out = &d->d[d->n++];
	memset(*out, 0, sizeof(**out));
	(*out)->name_off = d->nused;
	(*out)->nlen = nlen;
	d->nused += nlen;
	return 0;
}

/* Walks the children of one keyspace (data: sys 0, records: sys 1) of dir
 * with prefix pfx, adding one entry per child key and seeking past each
 * child's subtree. */
static int cfs_dir_scan(struct cairnfs *fs, struct cairn_iter *it, struct cfs_dir *d,
                        const char *pfx, size_t pl, int sys, int root)
{
	char end[PK_KEY_BUF];

	if (root && !sys)
		cfs_seek_within(it, "\x01", 1, "", 0); /* past the system keyspace */
	else
		cfs_seek_within(it, pfx, pl, pfx, pl);
	while (cairn_iter_valid(it)) {
		size_t klen, nlen;
		const char *key = cairn_iter_key(it, &klen);
		struct cfs_dent *e;
		int deeper, rc;

		if (!pk_has_prefix(key, klen, pfx, pl))
			break;
		if (pk_child(key, klen, pl, &nlen, &deeper) < 0) {
			cairn_iter_next(it); /* the directory's own record */
			continue;
		}
		if (pk_name_check(key + pl, nlen) || (root && nlen == sizeof(CFS_CTL_NAME) - 1 &&
		                                      !memcmp(key + pl, CFS_CTL_NAME, nlen))) {
			fs->cnt.hidden_keys++;
			e = NULL;
		} else if ((rc = cfs_dir_add(d, key + pl, nlen, &e))) {
			return rc;
		}
		if (deeper) {
			if (e)
				e->p.below = 1;
			rc = pk_subtree_end(key, pl + nlen, end);
			if (rc < 0)
				return rc;
			cairn_iter_seek(it, end, (size_t)rc);
			continue;
		}
		if (e && sys)
			cfs_take_meta(fs, it, &e->p, NULL);
		else if (e) {
			e->p.data_file = 1;
			cairn_iter_info(it, &e->p.data);
		}
		cairn_iter_next(it);
	}
	return -cfs_errno(cairn_iter_status(it), EIO);
}

static int cfs_dent_cmp(const void *a, const void *b, void *names)
{
	const struct cfs_dent *x = a, *y = b;
	size_t n = x->nlen < y->nlen ? x->nlen : y->nlen;
	const char *nm = names;
	int c = memcmp(nm + x->name_off, nm + y->name_off, n);

	if (c)
		return c;
	return (x->nlen > y->nlen) - (x->nlen < y->nlen);
}

/* Merges the entries of one name found in both keyspaces, then drops the
 * ones the rule of meta_decide() says do not exist. */
static void cfs_dir_merge(struct cairnfs *fs, struct cfs_dir *d)
{
	struct meta_defaults def = cfs_defaults(fs);
	size_t out = 0;

	for (size_t i = 0; i < d->n; i++) {
		struct cfs_dent *e = &d->d[i];

		if (out && !cfs_dent_cmp(&d->d[out - 1], e, d->names)) {
			struct meta_probe *p = &d->d[out - 1].p;

			if (e->p.has_meta) {
				p->has_meta = 1;
				p->meta = e->p.meta;
				p->meta_seq = e->p.meta_seq;
			}
			if (e->p.data_file) {
				p->data_file = 1;
				p->data = e->p.data;
			}
			p->below |= e->p.below;
			p->bad_meta |= e->p.bad_meta;
			continue;
		}
		d->d[out++] = *e;
	}
	d->n = out;
	out = 0;
	for (size_t i = 0; i < d->n; i++) {
		struct stat st;
		int type = meta_decide(&d->d[i].p, &def, &st);

		if (type < 0 && type != -EIO)
			continue; /* a bad record is listed: its lookup fails with EIO */
		if (type == META_DIR && d->d[i].p.data_file)
			fs->cnt.hidden_keys++; /* the file key under a directory's name */
		d->d[out++] = d->d[i];
	}
	d->n = out;
}

static int cfs_dir_build(struct cairnfs *fs, fuse_ino_t ino, struct cfs_dir *d)
{
	char path[PK_KEY_BUF], pfx[PK_KEY_BUF + 2];
	struct cairn_iter *it;
	struct cfs_node *n;
	size_t plen, pl;
	int rc;

	d->n = 0;
	d->nused = 0;
	if (ino == CFS_INO_CTLDIR) {
		for (int i = 0; i < CTL_NFILES; i++) {
			struct cfs_dent *e;

			rc = cfs_dir_add(d, ctl_name(i), strlen(ctl_name(i)), &e);
			if (rc)
				return rc;
			e->p.data_file = 1;
		}
		return 0;
	}
	n = cfs_node_get(fs, ino);
	if (!n)
		return -ENOENT;
	rc = cfs_node_path(fs, n, path, &plen);
	if (rc)
		return rc;
	rc = cfs_iter(fs, &it);
	if (rc)
		return rc;
	pfx[0] = '\0';
	pfx[1] = PK_TAG_META;
	pl = pk_dir_prefix(path, plen, pfx + 2);
	rc = cfs_dir_scan(fs, it, d, pfx, pl + 2, 1, plen == 0);
	if (!rc)
		rc = cfs_dir_scan(fs, it, d, pfx + 2, pl, 0, plen == 0);
	cairn_iter_free(it);
	if (rc)
		return rc;
	qsort_r(d->d, d->n, sizeof(d->d[0]), cfs_dent_cmp, d->names);
	cfs_dir_merge(fs, d);
	return 0;
}

/* With -o open=0 answered ENOSYS (the kernel then caches listings and sends
 * no opendir/releasedir, and readdir builds the listing at offset 0); with
 * open=1 (the default) the listing is built here and cached (cache_readdir). */
void cfs_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct cfs_dir *d;

	if (!cfs_of(req)->cfg.open) {
		fuse_reply_err(req, ENOSYS);
		return;
	}
	d = calloc(1, sizeof(*d));
	if (!d) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	fi->fh = (uint64_t)(uintptr_t)d;
	fi->cache_readdir = 1;
	fi->keep_cache = 1;
	(void)ino;
	fuse_reply_open(req, fi);
}

void cfs_releasedir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct cfs_dir *d = (struct cfs_dir *)(uintptr_t)fi->fh;

	(void)ino;
	if (d) {
		free(d->names);
		free(d->d);
		free(d);
	}
	fuse_reply_err(req, 0);
}

/* The inode number of entry de of the directory at dir: the one its record
 * holds, else the one derived from its path (cfs_path_ino). */
static uint64_t cfs_dent_ino(const struct cfs_dent *de, const char *name, int type, const char *dir,
                             size_t dlen)
{
	char path[PK_KEY_BUF];
	size_t plen;

	if (de->p.has_meta && de->p.meta.type == type && de->p.meta.ino)
		return de->p.meta.ino;
	if (pk_join(dir, dlen, name, de->nlen, path, sizeof(path), &plen))
		return 0;
	return cfs_path_ino(path, plen);
}

/* Adds one entry to a readdir(plus) reply; returns its size, 0 if full.
 * dir is the path of the directory dn. */
static size_t cfs_dir_emit(fuse_req_t req, struct cairnfs *fs, struct cfs_node *dn, const char *dir,
                           size_t dlen, struct cfs_dir *d, size_t i, char *buf, size_t rem,
                           int plus, off_t next)
{
	struct meta_defaults def = cfs_defaults(fs);
	struct fuse_entry_param e;
	struct cfs_dent *de = &d->d[i];
	char name[PK_NAME_MAX + 1];
	struct cfs_node *n = NULL;
	size_t sz;
	int type;

	memcpy(name, d->names + de->name_off, de->nlen);
	name[de->nlen] = '\0';
	cfs_entry_init(fs, &e);
	type = meta_decide(&de->p, &def, &e.attr);
	if (type < 0) {
		/* a bad record: the name only, ino 0 hands out no lookup */
		memset(&e.attr, 0, sizeof(e.attr));
		e.attr.st_ino = 0xffffffffu;
		if (plus)
			return fuse_add_direntry_plus(req, buf, rem, name, &e, next);
		return fuse_add_direntry(req, buf, rem, name, &e.attr, next);
	}
	if (!dn) {
		/* the control directory: no lookup is handed out (ino 0) */
		cfs_ctl_stat(fs, CFS_INO_CTL0 + i, &e.attr);
		if (plus)
			return fuse_add_direntry_plus(req, buf, rem, name, &e, next);
		return fuse_add_direntry(req, buf, rem, name, &e.attr, next);
	} else {
		if (de->p.link)
			n = cfs_link_node(fs, de->p.link);
		else
			n = cfs_node_find(fs, dn, name, de->nlen);
		e.attr.st_ino = cfs_dent_ino(de, name, type, dir, dlen);
	}
	if (!plus)
		return fuse_add_direntry(req, buf, rem, name, &e.attr, next);
	if (!n) {
		n = cfs_node_add(fs, dn, name, de->nlen);
		if (!n || (de->p.link && cfs_link_insert(fs, n, de->p.link))) {
			if (n)
				cfs_node_maybe_free(fs, n);
			return 0;
		}
	}
	cfs_fix_size(n, &e.attr);
	e.ino = n->ino;
	e.generation = n->gen;
	sz = fuse_add_direntry_plus(req, buf, rem, name, &e, next);
	if (sz <= rem)
		n->nlookup++; /* the kernel holds a lookup only for entries it got */
	else
		cfs_node_maybe_free(fs, n);
	return sz;
}

static void cfs_do_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                           struct fuse_file_info *fi, int plus)
{
	struct cairnfs *fs = cfs_of(req);
	struct cfs_dir *d = (struct cfs_dir *)(uintptr_t)fi->fh;
	struct cfs_node *dn = NULL;
	char dir[PK_KEY_BUF];
	size_t used = 0, dlen = 0;
	char *buf;
	int rc = 0;

	buf = malloc(size);
	if (!buf) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	pthread_mutex_lock(&fs->mu);
	if (!d) {
		/* no opendir: one listing kept for the directory being read, built
		 * again at offset 0 or when anything was written since */
		d = &fs->lcache;
		if (off > 0 && (fs->lcache_ino != ino || fs->lcache_gen != fs->wgen))
			d->built = 0;
		fs->lcache_ino = ino;
		fs->lcache_gen = fs->wgen;
	}
	if (off == 0 || !d->built) {
		rc = cfs_dir_build(fs, ino, d);
		d->built = !rc;
	}
	if (ino != CFS_INO_CTLDIR)
		dn = cfs_node_get(fs, ino);
	if (dn && cfs_node_path(fs, dn, dir, &dlen))
		dlen = 0; /* removed meanwhile: numbers from the name alone */
	for (off_t i = off; !rc && i < (off_t)d->n + 2; i++) {
		size_t sz;

		if (i < 2) {
			struct fuse_entry_param e;

			memset(&e, 0, sizeof(e));
			e.attr.st_ino = ino;
			e.attr.st_mode = S_IFDIR;
			sz = plus ? fuse_add_direntry_plus(req, buf + used, size - used,
			                                   i ? ".." : ".", &e, i + 1)
			          : fuse_add_direntry(req, buf + used, size - used, i ? ".." : ".",
			                              &e.attr, i + 1);
		} else {
			sz = cfs_dir_emit(req, fs, dn, dir, dlen, d, (size_t)(i - 2), buf + used,
			                  size - used, plus, i + 1);
		}
		if (sz == 0 || sz > size - used)
			break;
		used += sz;
	}
	pthread_mutex_unlock(&fs->mu);
	if (rc)
		fuse_reply_err(req, -rc);
	else
		fuse_reply_buf(req, buf, used);
	free(buf);
}

void cfs_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi)
{
	cfs_do_readdir(req, ino, size, off, fi, 0);
}

void cfs_readdirplus(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                     struct fuse_file_info *fi)
{
	cfs_do_readdir(req, ino, size, off, fi, 1);
}
