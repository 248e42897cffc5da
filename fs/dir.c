/*
 * dir.c: directory listings.
 * The daemon as a whole, its state and its locking rule: cfs.h.
 */
#include "cfs.h"

/* ---- directories ------------------------------------------------------------ */

/* Offsets 0 (start), 1 (after ".") and 2 (after "..") are fixed; every other
 * offset is the cookie of a name, in [3, 2^63): FNV-1a mixed so that names
 * that differ in their last byte land far apart, and positive as loff_t
 * wants. Two names of one directory share a cookie with odds of about
 * n^2 / 2^64; cfs_do_readdir never splits such a group across replies. */
#define CFS_COOKIE_FIRST 3

static uint64_t cfs_cookie(const char *name, size_t nlen)
{
	uint64_t h = 1469598103934665603ull;

	for (size_t i = 0; i < nlen; i++)
		h = (h ^ (unsigned char)name[i]) * 1099511628211ull;
	h ^= h >> 33;
	h *= 0xff51afd7ed558ccdull;
	h ^= h >> 33;
	h >>= 1;
	return h < CFS_COOKIE_FIRST ? h + CFS_COOKIE_FIRST : h;
}

/* A listing cached without opendir may keep its memory for the next one
 * up to this size; a larger one is freed once read to its end. */
#define CFS_LCACHE_KEEP (256u << 10)

size_t cfs_dir_bytes(const struct cfs_dir *d)
{
	return d->cap * sizeof(*d->d) + d->ncap;
}

/* Frees the memory of a listing held in fs (lcache or an open directory).
 * Under fs->mu. */
static void cfs_dir_release(struct cairnfs *fs, struct cfs_dir *d)
{
	fs->listing_bytes -= cfs_dir_bytes(d);
	free(d->names);
	free(d->d);
	d->names = NULL;
	d->d = NULL;
	d->n = d->cap = d->nused = d->ncap = 0;
	d->built = 0;
}

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
	(*out)->cookie = cfs_cookie(name, nlen);
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
		if (e && sys) {
			rc = cfs_take_meta(fs, it, &e->p, NULL);
			if (rc)
				return rc;
		} else if (e) {
			e->p.data_file = 1;
			cairn_iter_info(it, &e->p.data);
		}
		cairn_iter_next(it);
	}
	return -cfs_errno(cairn_iter_status(it), EIO);
}

/* Cookie order, then name order: one name found in both keyspaces sorts
 * into adjacent entries, which cfs_dir_merge() joins. */
static int cfs_dent_cmp(const void *a, const void *b, void *names)
{
	const struct cfs_dent *x = a, *y = b;
	size_t n = x->nlen < y->nlen ? x->nlen : y->nlen;
	const char *nm = names;
	int c;

	if (x->cookie != y->cookie)
		return x->cookie < y->cookie ? -1 : 1;
	c = memcmp(nm + x->name_off, nm + y->name_off, n);
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
	d->gen = fs->wgen;
	if (ino == CFS_INO_CTLDIR) {
		for (int i = 0; i < CTL_NFILES; i++) {
			struct cfs_dent *e;

			rc = cfs_dir_add(d, ctl_name(i), strlen(ctl_name(i)), &e);
			if (rc)
				return rc;
			e->p.data_file = 1;
		}
		qsort_r(d->d, d->n, sizeof(d->d[0]), cfs_dent_cmp, d->names);
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

/* A directory's link count is 2 plus its subdirectories (find's leaf
 * optimisation relies on it). The count is learned by one walk of the
 * children the first time the kernel asks for the directory's attributes,
 * kept on the node and moved by mkdir, rmdir and rename (cfs_nsub_add), so
 * a stat costs no walk while the kernel keeps the node. */
int cfs_dir_nlink(struct cairnfs *fs, struct cfs_node *n, struct stat *st)
{
	struct meta_defaults def = cfs_defaults(fs);
	struct cfs_dir d;
	int rc;

	if (!S_ISDIR(st->st_mode))
		return 0;
	if (!n->nsub_known) {
		memset(&d, 0, sizeof(d));
		rc = cfs_dir_build(fs, n->ino, &d);
		n->nsub = 0;
		for (size_t i = 0; !rc && i < d.n; i++) {
			struct stat cst;

			if (meta_decide(&d.d[i].p, &def, &cst) == META_DIR)
				n->nsub++;
		}
		free(d.names);
		free(d.d);
		if (rc)
			return rc;
		n->nsub_known = 1;
	}
	st->st_nlink = 2 + n->nsub;
	return 0;
}

/* A subdirectory made (+1) or removed (-1) in dir; 0: the count is no
 * longer known (an implicit directory may have vanished below). */
void cfs_nsub_add(struct cfs_node *dir, int delta)
{
	if (!dir || !dir->nsub_known)
		return;
	if (delta == 0 || (delta < 0 && dir->nsub == 0))
		dir->nsub_known = 0;
	else
		dir->nsub += (unsigned)delta;
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
		struct cairnfs *fs = cfs_of(req);

		pthread_mutex_lock(&fs->mu);
		cfs_dir_release(fs, d);
		pthread_mutex_unlock(&fs->mu);
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
		int which = 0;

		while (which < CTL_NFILES - 1 && strcmp(name, ctl_name(which)))
			which++;
		cfs_ctl_stat(fs, CFS_INO_CTL0 + (fuse_ino_t)which, &e.attr);
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
	if (S_ISDIR(e.attr.st_mode)) {
		if (n->nsub_known)
			e.attr.st_nlink = 2 + n->nsub;
		else
			e.attr_timeout = 0; /* a stat asks, and learns the count */
	} else if (S_ISREG(e.attr.st_mode) && (uint64_t)e.attr.st_size > fs->cfg.inline_max) {
		e.attr_timeout = 0; /* st_blocks: a stat asks (sparse.c) */
	}
	e.ino = n->ino;
	e.generation = n->gen;
	sz = fuse_add_direntry_plus(req, buf, rem, name, &e, next);
	if (sz <= rem)
		n->nlookup++; /* the kernel holds a lookup only for entries it got */
	else
		cfs_node_maybe_free(fs, n);
	return sz;
}

/* The index of the first entry whose cookie is past off. */
static size_t cfs_dir_seek(const struct cfs_dir *d, off_t off)
{
	size_t lo = 0, hi = d->n;

	if (off < CFS_COOKIE_FIRST)
		return 0;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (d->d[mid].cookie <= (uint64_t)off)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

/* Whether the entries from i that share its cookie fit in rem bytes: a
 * reply must end between cookies, or the next readdir, resuming past that
 * cookie, would skip the rest of the group. */
static int cfs_dir_group_fits(fuse_req_t req, const struct cfs_dir *d, size_t i, size_t rem,
                              int plus)
{
	size_t need = 0;

	for (size_t j = i; j < d->n && d->d[j].cookie == d->d[i].cookie; j++) {
		char name[PK_NAME_MAX + 1];

		memcpy(name, d->names + d->d[j].name_off, d->d[j].nlen);
		name[d->d[j].nlen] = '\0';
		need += plus ? fuse_add_direntry_plus(req, NULL, 0, name, NULL, 0)
		             : fuse_add_direntry(req, NULL, 0, name, NULL, 0);
	}
	return need <= rem;
}

static size_t cfs_dir_dot(fuse_req_t req, fuse_ino_t ino, char *buf, size_t rem, int plus,
                          int dotdot)
{
	struct fuse_entry_param e;
	const char *name = dotdot ? ".." : ".";

	memset(&e, 0, sizeof(e));
	e.attr.st_ino = ino;
	e.attr.st_mode = S_IFDIR;
	return plus ? fuse_add_direntry_plus(req, buf, rem, name, &e, dotdot + 1)
	            : fuse_add_direntry(req, buf, rem, name, &e.attr, dotdot + 1);
}

/* Offsets are cookies (cfs_cookie), so the listing may be rebuilt whenever
 * anything was written since it was built (a stale listing would hand the
 * kernel entries, and with readdirplus attributes, that are gone) and
 * still resume after the last name returned. */
static void cfs_do_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                           struct fuse_file_info *fi, int plus)
{
	struct cairnfs *fs = cfs_of(req);
	struct cfs_dir *d = (struct cfs_dir *)(uintptr_t)fi->fh;
	struct cfs_node *dn = NULL;
	char dir[PK_KEY_BUF];
	size_t used = 0, dlen = 0, sz;
	char *buf;
	int rc = 0;

	buf = bufpool_get(&fs->pool, size);
	if (!buf) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	pthread_mutex_lock(&fs->mu);
	if (!d) {
		/* no opendir: one listing kept for the directory being read */
		d = &fs->lcache;
		if (fs->lcache_ino != ino && cfs_dir_bytes(d) > CFS_LCACHE_KEEP)
			cfs_dir_release(fs, d); /* sized for another directory */
		if (fs->lcache_ino != ino)
			d->built = 0;
		fs->lcache_ino = ino;
	}
	if (off == 0 || !d->built || d->gen != fs->wgen) {
		size_t before = cfs_dir_bytes(d);

		rc = cfs_dir_build(fs, ino, d);
		d->built = !rc;
		fs->listing_bytes += cfs_dir_bytes(d) - before;
	}
	if (ino != CFS_INO_CTLDIR)
		dn = cfs_node_get(fs, ino);
	if (dn && cfs_node_path(fs, dn, dir, &dlen))
		dlen = 0; /* removed meanwhile: numbers from the name alone */
	for (int dot = off < 0 ? 0 : off > 2 ? 2 : (int)off; !rc && dot < 2; dot++) {
		sz = cfs_dir_dot(req, ino, buf + used, size - used, plus, dot);
		if (sz > size - used)
			goto out;
		used += sz;
	}
	for (size_t i = cfs_dir_seek(d, off); !rc && i < d->n; i++) {
		if ((i == 0 || d->d[i - 1].cookie != d->d[i].cookie) && i + 1 < d->n &&
		    d->d[i + 1].cookie == d->d[i].cookie && used &&
		    !cfs_dir_group_fits(req, d, i, size - used, plus))
			break;
		sz = cfs_dir_emit(req, fs, dn, dir, dlen, d, i, buf + used, size - used, plus,
		                  (off_t)d->d[i].cookie);
		if (sz == 0 || sz > size - used)
			break;
		used += sz;
	}
	/* the kernel's last call (nothing left) ends a large cached listing */
	if (d == &fs->lcache && !rc && !used && off && cfs_dir_bytes(d) > CFS_LCACHE_KEEP)
		cfs_dir_release(fs, d);
out:
	pthread_mutex_unlock(&fs->mu);
	if (rc)
		fuse_reply_err(req, -rc);
	else
		fuse_reply_buf(req, buf, used);
	bufpool_put(&fs->pool, buf);
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
