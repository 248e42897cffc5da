/*
 * entry.c: control-file inodes, lookup, forget and getattr.
 * The daemon as a whole, its state and its locking rule: cfs.h.
 */
#include "cfs.h"

/* ---- control files ------------------------------------------------------ */

int cfs_is_ctl(fuse_ino_t ino)
{
	return (ino >= CFS_INO_CTLDIR && ino < CFS_INO_CTL0 + CTL_NFILES) || ino >= CFS_INO_SNAP0;
}

/* The snapshot of a statistics inode, under fs->mu. */
struct cfs_ctlsnap *cfs_snap_get(struct cairnfs *fs, fuse_ino_t ino)
{
	struct cfs_ctlsnap *c = fs->ctls;

	while (c && c->ino != ino)
		c = c->next;
	return c;
}

/* Drops nlookup lookups of a snapshot inode, under fs->mu. */
static void cfs_snap_forget(struct cairnfs *fs, fuse_ino_t ino, uint64_t nlookup)
{
	struct cfs_ctlsnap **pp = &fs->ctls, *c;

	while (*pp && (*pp)->ino != ino)
		pp = &(*pp)->next;
	c = *pp;
	if (!c)
		return;
	c->nlookup = c->nlookup > nlookup ? c->nlookup - nlookup : 0;
	if (c->nlookup)
		return;
	*pp = c->next;
	free(c->buf);
	free(c);
}

/* stat of a control inode, under fs->mu. */
void cfs_ctl_stat(struct cairnfs *fs, fuse_ino_t ino, struct stat *st)
{
	struct meta_defaults d = cfs_defaults(fs);
	struct cfs_ctlsnap *c = ino >= CFS_INO_SNAP0 ? cfs_snap_get(fs, ino) : NULL;
	struct meta_probe p;

	memset(&p, 0, sizeof(p));
	p.below = 1;
	meta_decide(&p, &d, st);
	st->st_ino = ino;
	if (ino == CFS_INO_CTLDIR)
		st->st_mode = S_IFDIR | 0555;
	else if (ino == CFS_INO_CTL0 + CTL_CONTROL) {
		st->st_mode = S_IFREG | 0200;
		st->st_size = (off_t)fs->ctl_len; /* as the kernel's cache has it */
	} else
		st->st_mode = S_IFREG | 0444;
	if (c) {
		st->st_size = (off_t)c->len;
		st->st_mtim.tv_sec = cfs_now() / 1000000000;
	}
}

void cairnfs_set_result(struct cairnfs *fs, const char *msg)
{
	pthread_mutex_lock(&fs->mu);
	snprintf(fs->result, sizeof(fs->result), "%s", msg);
	pthread_mutex_unlock(&fs->mu);
}

void cairnfs_get_result(struct cairnfs *fs, char *buf, size_t len)
{
	pthread_mutex_lock(&fs->mu);
	snprintf(buf, len, "%s", fs->result);
	pthread_mutex_unlock(&fs->mu);
}

static int cfs_ctl_lookup(const char *name)
{
	for (int i = 0; i < CTL_NFILES; i++)
		if (!strcmp(name, ctl_name(i)))
			return CFS_INO_CTL0 + i;
	return 0;
}

/* ---- entries ------------------------------------------------------------- */

/* Renders a statistics file into a fresh snapshot inode, named in *e; its
 * entry and attributes are not cached, so the next open looks it up anew. */
static int cfs_snap_new(struct cairnfs *fs, int which, struct fuse_entry_param *e)
{
	struct cfs_ctlsnap *c = calloc(1, sizeof(*c));
	int rc;

	if (!c)
		return -ENOMEM;
	rc = ctl_render(fs, which, &c->buf, &c->len); /* takes fs->mu itself */
	if (rc) {
		free(c);
		return rc;
	}
	c->which = which;
	c->nlookup = 1;
	pthread_mutex_lock(&fs->mu);
	c->ino = CFS_INO_SNAP0 + fs->next_snap++;
	c->next = fs->ctls;
	fs->ctls = c;
	pthread_mutex_unlock(&fs->mu);
	e->ino = c->ino;
	e->entry_timeout = 0;
	e->attr_timeout = 0;
	return 0;
}

void cfs_entry_init(struct cairnfs *fs, struct fuse_entry_param *e)
{
	memset(e, 0, sizeof(*e));
	e->attr_timeout = fs->cfg.timeout;
	e->entry_timeout = fs->cfg.timeout;
}

/* Finds or makes the node of (parent, name) and takes one lookup on it. */
struct cfs_node *cfs_node_ref(struct cairnfs *fs, struct cfs_node *parent, const char *name,
                              size_t nlen)
{
	struct cfs_node *n = cfs_node_find(fs, parent, name, nlen);

	if (!n)
		n = cfs_node_add(fs, parent, name, nlen);
	if (n)
		n->nlookup++;
	return n;
}

void cfs_fix_size(struct cfs_node *n, struct stat *st)
{
	if (n->wb && S_ISREG(st->st_mode)) {
		st->st_size = (off_t)n->wb->size;
		st->st_blocks = (blkcnt_t)((n->wb->size + 511) / 512);
	}
}

/* Builds the path of (parent, name), checking the name. */
int cfs_child_path(struct cairnfs *fs, fuse_ino_t parent, const char *name, struct cfs_node **pn,
                   char *path, size_t *plen)
{
	char dir[PK_KEY_BUF];
	size_t dlen, nlen = strlen(name);
	int rc = pk_name_check(name, nlen);

	if (rc)
		return rc == -EINVAL ? -ENOENT : rc;
	*pn = cfs_node_get(fs, parent);
	if (!*pn)
		return parent == CFS_INO_CTLDIR ? -EPERM : -ENOENT;
	rc = cfs_node_path(fs, *pn, dir, &dlen);
	if (rc)
		return rc;
	return pk_join(dir, dlen, name, nlen, path, PK_KEY_BUF, plen);
}

void cfs_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct cairnfs *fs = cfs_of(req);
	struct fuse_entry_param e;
	struct cfs_node *pn, *n;
	char path[PK_KEY_BUF];
	struct meta_probe p;
	size_t plen;
	int rc;

	cfs_entry_init(fs, &e);
	if (parent == CFS_INO_CTLDIR || (parent == CFS_INO_ROOT && !strcmp(name, CFS_CTL_NAME))) {
		e.ino = parent == CFS_INO_CTLDIR ? (fuse_ino_t)cfs_ctl_lookup(name)
		                                 : CFS_INO_CTLDIR;
		rc = 0;
		if (e.ino >= CFS_INO_CTL0 && e.ino != CFS_INO_CTL0 + CTL_CONTROL)
			rc = cfs_snap_new(fs, (int)(e.ino - CFS_INO_CTL0), &e);
		if (rc) {
			fuse_reply_err(req, -rc);
			return;
		}
		pthread_mutex_lock(&fs->mu);
		if (e.ino)
			cfs_ctl_stat(fs, e.ino, &e.attr);
		pthread_mutex_unlock(&fs->mu);
		fuse_reply_entry(req, &e);
		return;
	}
	pthread_mutex_lock(&fs->mu);
	rc = cfs_child_path(fs, parent, name, &pn, path, &plen);
	if (rc == 0)
		rc = cfs_stat_path(fs, path, plen, &e.attr, &p, NULL);
	if (rc == -ENOENT) {
		pthread_mutex_unlock(&fs->mu);
		fuse_reply_entry(req, &e); /* ino 0: a cached negative entry */
		return;
	}
	if (rc < 0)
		goto err;
	if (p.link)
		n = cfs_link_ref(fs, pn, name, strlen(name), p.link);
	else
		n = cfs_node_ref(fs, pn, name, strlen(name));
	if (!n) {
		rc = -ENOMEM;
		goto err;
	}
	cfs_fix_size(n, &e.attr);
	if (S_ISDIR(e.attr.st_mode) && n->nsub_known)
		e.attr.st_nlink = 2 + n->nsub;
	else if (S_ISDIR(e.attr.st_mode))
		e.attr_timeout = 0; /* no walk for a lookup: a stat learns the count */
	else if (S_ISREG(e.attr.st_mode) && (uint64_t)e.attr.st_size > fs->cfg.inline_max)
		e.attr_timeout = 0; /* no scan of pieces for a lookup: a stat learns st_blocks */
	e.ino = n->ino;             /* the node id; st_ino is the file's own number */
	e.generation = n->gen;
	pthread_mutex_unlock(&fs->mu);
	fuse_reply_entry(req, &e);
	return;
err:
	pthread_mutex_unlock(&fs->mu);
	fuse_reply_err(req, -rc);
}

static void cfs_forget_one(struct cairnfs *fs, fuse_ino_t ino, uint64_t nlookup)
{
	struct cfs_node *n;

	if (ino >= CFS_INO_SNAP0) {
		cfs_snap_forget(fs, ino, nlookup);
		return;
	}
	n = cfs_node_get(fs, ino);
	if (!n || n == &fs->root)
		return;
	n->nlookup = n->nlookup > nlookup ? n->nlookup - nlookup : 0;
	cfs_node_maybe_free(fs, n);
}

void cfs_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup)
{
	struct cairnfs *fs = cfs_of(req);

	pthread_mutex_lock(&fs->mu);
	cfs_forget_one(fs, ino, nlookup);
	cfs_orphans_flush(fs, 0);
	pthread_mutex_unlock(&fs->mu);
	fuse_reply_none(req);
}

void cfs_forget_multi(fuse_req_t req, size_t count, struct fuse_forget_data *forgets)
{
	struct cairnfs *fs = cfs_of(req);

	pthread_mutex_lock(&fs->mu);
	for (size_t i = 0; i < count; i++)
		cfs_forget_one(fs, forgets[i].ino, forgets[i].nlookup);
	cfs_orphans_flush(fs, 0); /* one batch for them all */
	pthread_mutex_unlock(&fs->mu);
	fuse_reply_none(req);
}

/* stat of an inode, under fs->mu. */
int cfs_stat_ino(struct cairnfs *fs, fuse_ino_t ino, struct stat *st)
{
	char path[PK_KEY_BUF];
	struct meta_probe p;
	struct cfs_node *n;
	size_t plen;
	int rc;

	if (cfs_is_ctl(ino)) {
		cfs_ctl_stat(fs, ino, st);
		return 0;
	}
	n = cfs_node_get(fs, ino);
	if (!n)
		return -ENOENT;
	rc = cfs_node_path(fs, n, path, &plen);
	if (rc == 0 && n->orphan) {
		if (n->mo)
			cfs_orphan_stat(fs, n, st);
		else
			rc = cfs_stat_path(fs, path, plen, st, NULL, NULL);
		st->st_nlink = 0;
	} else if (rc == 0 && n->link) {
		rc = cfs_stat_path(fs, path, plen, st, &p, NULL);
		if (rc >= 0 && !p.meta.nlink)
			st->st_nlink = 0; /* its last name is gone */
	} else if (rc == -ENOENT && (n->nopen || !fs->cfg.open)) {
		/* unlinked but still open: an empty file with no links */
		memset(st, 0, sizeof(*st));
		st->st_mode = S_IFREG | 0600;
		st->st_nlink = 0;
		rc = 0;
	} else if (rc == 0) {
		rc = cfs_stat_path(fs, path, plen, st, NULL, NULL);
	}
	if (rc < 0)
		return rc;
	cfs_fix_size(n, st);
	if (!st->st_ino)
		st->st_ino = ino;
	rc = cfs_fix_blocks(fs, n, st);
	return rc ? rc : cfs_dir_nlink(fs, n, st);
}

void cfs_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct cairnfs *fs = cfs_of(req);
	struct stat st;
	int rc;

	(void)fi;
	pthread_mutex_lock(&fs->mu);
	rc = cfs_stat_ino(fs, ino, &st);
	pthread_mutex_unlock(&fs->mu);
	cfs_reply_stat(req, fs, rc, &st);
}

void cfs_reply_stat(fuse_req_t req, struct cairnfs *fs, int rc, const struct stat *st)
{
	if (rc)
		fuse_reply_err(req, -rc);
	else
		fuse_reply_attr(req, st, fs->cfg.timeout);
}
