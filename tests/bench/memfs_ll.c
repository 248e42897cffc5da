/*
 * memfs_ll.c - a small in-memory file system on the libfuse3 low-level API,
 * the ceiling for cairnfs in scripts/bench-fs.
 *
 * It answers every request from memory under one mutex, so what it costs is
 * what FUSE itself costs, and it pulls every kernel-cache lever cairnfs may
 * pull: long entry, attribute and negative-entry timeouts, no open/opendir
 * (answered ENOSYS, so the kernel keeps pages and listings cached and sends
 * no open/release), no flush, the writeback cache, readdirplus and 1 MiB
 * writes. Each lever can be turned off with -o, so the same program measures
 * what each is worth:
 *
 *   memfs_ll [-o writeback=0|1] [-o open=0|1] [-o flush=0|1]
 *            [-o readdirplus=0|1|2] [-o timeout=SECONDS] MOUNTPOINT
 *
 * Regular files, directories and symbolic links; no hard links, no xattrs
 * (ENOTSUP, which the kernel then stops asking for). Inode numbers are never
 * reused; a node is freed when it is unlinked and the kernel forgot it.
 * Benchmark code, not a product: memory is bounded only by what is stored.
 */
#define FUSE_USE_VERSION 35
#include <errno.h>
#include <fuse_lowlevel.h>
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

struct mnode {
	struct mnode *hnext;               /* chain in the (parent, name) hash */
	struct mnode *sib_prev, *sib_next; /* siblings in the parent's list */
	struct mnode *kids;                /* children (directories) */
	struct mnode *parent;
	char *name;
	struct stat st;
	char *data; /* file content or symlink target */
	size_t cap;
	uint64_t nlookup;
	int linked;
};

struct memfs {
	pthread_mutex_t mu;
	struct mnode **byino; /* index: ino - 1 */
	size_t nino, capino;
	struct mnode **hash;
	size_t hsize, hcount;
	double timeout;
	int writeback, open, flush, readdirplus;
};

static struct memfs *mfs(fuse_req_t req)
{
	return fuse_req_userdata(req);
}

static uint64_t mf_hash(const struct mnode *parent, const char *name)
{
	uint64_t h = 1469598103934665603ull ^ (uint64_t)(uintptr_t)parent;

	for (; *name; name++)
		h = (h ^ (unsigned char)*name) * 1099511628211ull;
	return h;
}

static struct mnode *mf_get(struct memfs *fs, fuse_ino_t ino)
{
	return ino >= 1 && ino <= fs->nino ? fs->byino[ino - 1] : NULL;
}

static struct mnode *mf_find(struct memfs *fs, struct mnode *parent, const char *name)
{
	struct mnode *n = fs->hash[mf_hash(parent, name) & (fs->hsize - 1)];

	while (n && (n->parent != parent || strcmp(n->name, name)))
		n = n->hnext;
	return n;
}

static int mf_grow(struct memfs *fs)
{
	size_t ns = fs->hsize * 2;
	struct mnode **nh = calloc(ns, sizeof(*nh));

	if (!nh)
		return -1;
	for (size_t i = 0; i < fs->hsize; i++) {
		struct mnode *n = fs->hash[i], *next;

		for (; n; n = next) {
			uint64_t h = mf_hash(n->parent, n->name) & (ns - 1);

			next = n->hnext;
			n->hnext = nh[h];
			nh[h] = n;
		}
	}
	free(fs->hash);
	fs->hash = nh;
	fs->hsize = ns;
	return 0;
}

static void mf_link(struct memfs *fs, struct mnode *parent, struct mnode *n, const char *name)
{
	uint64_t h;

	n->parent = parent;
	n->name = strdup(name);
	h = mf_hash(parent, n->name) & (fs->hsize - 1);
	n->hnext = fs->hash[h];
	fs->hash[h] = n;
	fs->hcount++;
	n->sib_prev = NULL;
	n->sib_next = parent->kids;
	if (parent->kids)
		parent->kids->sib_prev = n;
	parent->kids = n;
	n->linked = 1;
}

static void mf_unlink(struct memfs *fs, struct mnode *n)
{
	struct mnode **pp = &fs->hash[mf_hash(n->parent, n->name) & (fs->hsize - 1)];

	while (*pp != n)
		pp = &(*pp)->hnext;
	*pp = n->hnext;
	fs->hcount--;
	if (n->sib_prev)
		n->sib_prev->sib_next = n->sib_next;
	else
		n->parent->kids = n->sib_next;
	if (n->sib_next)
		n->sib_next->sib_prev = n->sib_prev;
	free(n->name);
	n->name = NULL;
	n->linked = 0;
}

static void mf_maybe_free(struct memfs *fs, struct mnode *n)
{
	if (n->linked || n->nlookup || n->st.st_ino == FUSE_ROOT_ID)
		return;
	fs->byino[n->st.st_ino - 1] = NULL;
	free(n->data);
	free(n);
}

static struct mnode *mf_new(struct memfs *fs, struct mnode *parent, const char *name, mode_t mode,
                            const struct fuse_ctx *ctx)
{
	struct mnode *n;
	struct timespec now;

	if (fs->hcount >= fs->hsize && mf_grow(fs))
		return NULL;
	if (fs->nino == fs->capino) {
		size_t nc = fs->capino ? fs->capino * 2 : 1024;
		struct mnode **nb = realloc(fs->byino, nc * sizeof(*nb));

		if (!nb)
			return NULL;
		fs->byino = nb;
		fs->capino = nc;
	}
	n = calloc(1, sizeof(*n));
	if (!n)
		return NULL;
	clock_gettime(CLOCK_REALTIME, &now);
	fs->byino[fs->nino++] = n;
	n->st.st_ino = fs->nino;
	n->st.st_mode = mode;
	n->st.st_nlink = S_ISDIR(mode) ? 2 : 1;
	n->st.st_uid = ctx ? ctx->uid : getuid();
	n->st.st_gid = ctx ? ctx->gid : getgid();
	n->st.st_blksize = 4096;
	n->st.st_atim = n->st.st_mtim = n->st.st_ctim = now;
	if (parent)
		mf_link(fs, parent, n, name);
	return n;
}

static void mf_entry(struct memfs *fs, struct mnode *n, struct fuse_entry_param *e)
{
	memset(e, 0, sizeof(*e));
	e->attr_timeout = fs->timeout;
	e->entry_timeout = fs->timeout;
	if (!n)
		return;
	e->ino = n->st.st_ino;
	e->attr = n->st;
	e->attr.st_blocks = (blkcnt_t)((n->st.st_size + 511) / 512);
	n->nlookup++;
}

static void mf_init(void *userdata, struct fuse_conn_info *conn)
{
	struct memfs *fs = userdata;

	if (fs->writeback && (conn->capable & FUSE_CAP_WRITEBACK_CACHE))
		conn->want |= FUSE_CAP_WRITEBACK_CACHE;
	conn->want &= ~(unsigned)(FUSE_CAP_READDIRPLUS | FUSE_CAP_READDIRPLUS_AUTO);
	if (fs->readdirplus && (conn->capable & FUSE_CAP_READDIRPLUS))
		conn->want |= FUSE_CAP_READDIRPLUS;
	if (fs->readdirplus == 2 && (conn->capable & FUSE_CAP_READDIRPLUS_AUTO))
		conn->want |= FUSE_CAP_READDIRPLUS_AUTO;
	if (conn->capable & FUSE_CAP_CACHE_SYMLINKS)
		conn->want |= FUSE_CAP_CACHE_SYMLINKS;
	conn->max_write = 1024 * 1024;
	conn->time_gran = 1;
}

static void mf_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct memfs *fs = mfs(req);
	struct fuse_entry_param e;
	struct mnode *p, *n = NULL;

	pthread_mutex_lock(&fs->mu);
	p = mf_get(fs, parent);
	if (p)
		n = mf_find(fs, p, name);
	mf_entry(fs, n, &e); /* ino 0: a cached negative entry */
	pthread_mutex_unlock(&fs->mu);
	fuse_reply_entry(req, &e);
}

static void mf_forget_one(struct memfs *fs, fuse_ino_t ino, uint64_t nl)
{
	struct mnode *n = mf_get(fs, ino);

	if (!n)
		return;
	n->nlookup = n->nlookup > nl ? n->nlookup - nl : 0;
	mf_maybe_free(fs, n);
}

static void mf_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup)
{
	struct memfs *fs = mfs(req);

	pthread_mutex_lock(&fs->mu);
	mf_forget_one(fs, ino, nlookup);
	pthread_mutex_unlock(&fs->mu);
	fuse_reply_none(req);
}

static void mf_forget_multi(fuse_req_t req, size_t count, struct fuse_forget_data *f)
{
	struct memfs *fs = mfs(req);

	pthread_mutex_lock(&fs->mu);
	for (size_t i = 0; i < count; i++)
		mf_forget_one(fs, f[i].ino, f[i].nlookup);
	pthread_mutex_unlock(&fs->mu);
	fuse_reply_none(req);
}

static void mf_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct memfs *fs = mfs(req);
	struct mnode *n;
	struct stat st;

	(void)fi;
	pthread_mutex_lock(&fs->mu);
	n = mf_get(fs, ino);
	if (n) {
		st = n->st;
		st.st_blocks = (blkcnt_t)((st.st_size + 511) / 512);
	}
	pthread_mutex_unlock(&fs->mu);
	if (n)
		fuse_reply_attr(req, &st, fs->timeout);
	else
		fuse_reply_err(req, ENOENT);
}

static int mf_resize(struct mnode *n, size_t size)
{
	if (size > n->cap) {
		size_t nc = n->cap ? n->cap : 128;
		char *nd;

		while (nc < size)
			nc *= 2;
		nd = realloc(n->data, nc);
		if (!nd)
			return ENOMEM;
		n->data = nd;
		n->cap = nc;
	}
	if (size > (size_t)n->st.st_size)
		memset(n->data + n->st.st_size, 0, size - (size_t)n->st.st_size);
	n->st.st_size = (off_t)size;
	return 0;
}

static void mf_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *a, int set,
                       struct fuse_file_info *fi)
{
	struct memfs *fs = mfs(req);
	struct timespec now;
	struct mnode *n;
	struct stat st;
	int err = 0;

	(void)fi;
	clock_gettime(CLOCK_REALTIME, &now);
	pthread_mutex_lock(&fs->mu);
	n = mf_get(fs, ino);
	if (!n) {
		err = ENOENT;
		goto out;
	}
	if (set & FUSE_SET_ATTR_SIZE)
		err = mf_resize(n, (size_t)a->st_size);
	if (set & FUSE_SET_ATTR_MODE)
		n->st.st_mode = (n->st.st_mode & S_IFMT) | (a->st_mode & 07777);
	if (set & FUSE_SET_ATTR_UID)
		n->st.st_uid = a->st_uid;
	if (set & FUSE_SET_ATTR_GID)
		n->st.st_gid = a->st_gid;
	if (set & FUSE_SET_ATTR_ATIME)
		n->st.st_atim = a->st_atim;
	if (set & FUSE_SET_ATTR_ATIME_NOW)
		n->st.st_atim = now;
	if (set & FUSE_SET_ATTR_MTIME)
		n->st.st_mtim = a->st_mtim;
	if (set & FUSE_SET_ATTR_MTIME_NOW)
		n->st.st_mtim = now;
	n->st.st_ctim = (set & FUSE_SET_ATTR_CTIME) ? a->st_ctim : now;
	st = n->st;
	st.st_blocks = (blkcnt_t)((st.st_size + 511) / 512);
out:
	pthread_mutex_unlock(&fs->mu);
	if (err)
		fuse_reply_err(req, err);
	else
		fuse_reply_attr(req, &st, fs->timeout);
}

static void mf_make(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
                    const char *target, struct fuse_file_info *fi)
{
	struct memfs *fs = mfs(req);
	struct fuse_entry_param e;
	struct mnode *p, *n = NULL;
	int err = 0;

	pthread_mutex_lock(&fs->mu);
	p = mf_get(fs, parent);
	if (!p)
		err = ENOENT;
	else if (mf_find(fs, p, name))
		err = EEXIST;
	else if (!(n = mf_new(fs, p, name, mode, fuse_req_ctx(req))))
		err = ENOMEM;
	if (n && target) {
		n->data = strdup(target);
		n->st.st_size = (off_t)strlen(target);
		n->cap = (size_t)n->st.st_size + 1;
	}
	if (n)
		mf_entry(fs, n, &e);
	pthread_mutex_unlock(&fs->mu);
	if (err)
		fuse_reply_err(req, err);
	else if (fi)
		fuse_reply_create(req, &e, fi);
	else
		fuse_reply_entry(req, &e);
}

static void mf_create(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
                      struct fuse_file_info *fi)
{
	fi->keep_cache = 1;
	mf_make(req, parent, name, S_IFREG | (mode & 07777), NULL, fi);
}

static void mf_mknod(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode, dev_t rdev)
{
	(void)rdev;
	if (!S_ISREG(mode)) {
		fuse_reply_err(req, EPERM);
		return;
	}
	mf_make(req, parent, name, mode, NULL, NULL);
}

static void mf_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode)
{
	mf_make(req, parent, name, S_IFDIR | (mode & 07777), NULL, NULL);
}

static void mf_symlink(fuse_req_t req, const char *link, fuse_ino_t parent, const char *name)
{
	mf_make(req, parent, name, S_IFLNK | 0777, link, NULL);
}

static void mf_readlink(fuse_req_t req, fuse_ino_t ino)
{
	struct memfs *fs = mfs(req);
	char buf[4097];
	struct mnode *n;
	int ok;

	pthread_mutex_lock(&fs->mu);
	n = mf_get(fs, ino);
	ok = n && S_ISLNK(n->st.st_mode);
	if (ok)
		snprintf(buf, sizeof(buf), "%s", n->data);
	pthread_mutex_unlock(&fs->mu);
	if (ok)
		fuse_reply_readlink(req, buf);
	else
		fuse_reply_err(req, EINVAL);
}

static void mf_remove(fuse_req_t req, fuse_ino_t parent, const char *name, int dir)
{
	struct memfs *fs = mfs(req);
	struct mnode *p, *n = NULL;
	int err = 0;

	pthread_mutex_lock(&fs->mu);
	p = mf_get(fs, parent);
	if (p)
		n = mf_find(fs, p, name);
	if (!n)
		err = ENOENT;
	else if (dir && !S_ISDIR(n->st.st_mode))
		err = ENOTDIR;
	else if (!dir && S_ISDIR(n->st.st_mode))
		err = EISDIR;
	else if (dir && n->kids)
		err = ENOTEMPTY;
	if (!err) {
		mf_unlink(fs, n);
		mf_maybe_free(fs, n);
	}
	pthread_mutex_unlock(&fs->mu);
	fuse_reply_err(req, err);
}

static void mf_unlink_op(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	mf_remove(req, parent, name, 0);
}

static void mf_rmdir(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	mf_remove(req, parent, name, 1);
}

static void mf_rename(fuse_req_t req, fuse_ino_t parent, const char *name, fuse_ino_t newparent,
                      const char *newname, unsigned int flags)
{
	struct memfs *fs = mfs(req);
	struct mnode *p, *np, *n = NULL, *old = NULL;
	int err = 0;

	if (flags) {
		fuse_reply_err(req, EINVAL);
		return;
	}
	pthread_mutex_lock(&fs->mu);
	p = mf_get(fs, parent);
	np = mf_get(fs, newparent);
	if (p && np)
		n = mf_find(fs, p, name);
	if (!n) {
		err = ENOENT;
		goto out;
	}
	old = mf_find(fs, np, newname);
	if (old == n)
		goto out;
	if (old && S_ISDIR(old->st.st_mode) && old->kids) {
		err = ENOTEMPTY;
		goto out;
	}
	if (old) {
		mf_unlink(fs, old);
		mf_maybe_free(fs, old);
	}
	mf_unlink(fs, n);
	mf_link(fs, np, n, newname);
out:
	pthread_mutex_unlock(&fs->mu);
	fuse_reply_err(req, err);
}

static void mf_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct memfs *fs = mfs(req);

	(void)ino;
	if (!fs->open) {
		fuse_reply_err(req, ENOSYS); /* no open, no release, pages kept */
		return;
	}
	fi->keep_cache = 1;
	fuse_reply_open(req, fi);
}

static void mf_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct memfs *fs = mfs(req);

	(void)ino;
	if (!fs->open) {
		fuse_reply_err(req, ENOSYS);
		return;
	}
	fi->cache_readdir = 1;
	fi->keep_cache = 1;
	fuse_reply_open(req, fi);
}

static void mf_flush(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct memfs *fs = mfs(req);

	(void)ino;
	(void)fi;
	fuse_reply_err(req, fs->flush ? 0 : ENOSYS);
}

static void mf_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                    struct fuse_file_info *fi)
{
	struct memfs *fs = mfs(req);
	struct mnode *n;
	char *buf = NULL;
	size_t got = 0;

	(void)fi;
	pthread_mutex_lock(&fs->mu);
	n = mf_get(fs, ino);
	if (n && off < n->st.st_size) {
		got = (size_t)(n->st.st_size - off);
		if (got > size)
			got = size;
		buf = malloc(got);
		if (buf)
			memcpy(buf, n->data + off, got);
		else
			got = 0;
	}
	pthread_mutex_unlock(&fs->mu);
	fuse_reply_buf(req, buf, got);
	free(buf);
}

static void mf_write(fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size, off_t off,
                     struct fuse_file_info *fi)
{
	struct memfs *fs = mfs(req);
	struct mnode *n;
	int err = 0;

	(void)fi;
	pthread_mutex_lock(&fs->mu);
	n = mf_get(fs, ino);
	if (!n)
		err = ENOENT;
	else if ((size_t)off + size > (size_t)n->st.st_size)
		err = mf_resize(n, (size_t)off + size);
	if (!err) {
		memcpy(n->data + off, buf, size);
		clock_gettime(CLOCK_REALTIME, &n->st.st_mtim);
		n->st.st_ctim = n->st.st_mtim;
	}
	pthread_mutex_unlock(&fs->mu);
	if (err)
		fuse_reply_err(req, err);
	else
		fuse_reply_write(req, size);
}

static void mf_do_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, int plus)
{
	struct memfs *fs = mfs(req);
	struct mnode *d, *k;
	char *buf = malloc(size);
	size_t used = 0;
	off_t i = 0;

	if (!buf) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	pthread_mutex_lock(&fs->mu);
	d = mf_get(fs, ino);
	if (!d) {
		pthread_mutex_unlock(&fs->mu);
		free(buf);
		fuse_reply_err(req, ENOENT);
		return;
	}
	k = d->kids;
	for (; i < off - 2 && k; i++)
		k = k->sib_next;
	for (i = off; i < 2 || k; i++) {
		struct fuse_entry_param e;
		const char *name = i == 0 ? "." : i == 1 ? ".." : k->name;
		size_t sz;

		if (i < 2) {
			memset(&e, 0, sizeof(e));
			e.attr.st_ino = ino;
			e.attr.st_mode = S_IFDIR;
		} else {
			mf_entry(fs, k, &e);
			if (!plus)
				k->nlookup--;
		}
		sz = plus ? fuse_add_direntry_plus(req, buf + used, size - used, name, &e, i + 1)
		          : fuse_add_direntry(req, buf + used, size - used, name, &e.attr, i + 1);
		if (sz > size - used) {
			if (i >= 2 && plus)
				k->nlookup--;
			break;
		}
		used += sz;
		if (i >= 2)
			k = k->sib_next;
	}
	pthread_mutex_unlock(&fs->mu);
	fuse_reply_buf(req, buf, used);
	free(buf);
}

static void mf_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                       struct fuse_file_info *fi)
{
	(void)fi;
	mf_do_readdir(req, ino, size, off, 0);
}

static void mf_readdirplus(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                           struct fuse_file_info *fi)
{
	(void)fi;
	mf_do_readdir(req, ino, size, off, 1);
}

static void mf_statfs(fuse_req_t req, fuse_ino_t ino)
{
	struct statvfs sv;

	(void)ino;
	memset(&sv, 0, sizeof(sv));
	sv.f_bsize = sv.f_frsize = 4096;
	sv.f_blocks = sv.f_bfree = sv.f_bavail = 1u << 24;
	sv.f_files = sv.f_ffree = sv.f_favail = 1u << 24;
	sv.f_namemax = 255;
	fuse_reply_statfs(req, &sv);
}

static void mf_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name, size_t size)
{
	(void)ino;
	(void)name;
	(void)size;
	fuse_reply_err(req, ENOTSUP);
}

static void mf_fsync(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi)
{
	(void)ino;
	(void)datasync;
	(void)fi;
	fuse_reply_err(req, 0);
}

static const struct fuse_lowlevel_ops mf_ops = {
        .init = mf_init,
        .lookup = mf_lookup,
        .forget = mf_forget,
        .forget_multi = mf_forget_multi,
        .getattr = mf_getattr,
        .setattr = mf_setattr,
        .readlink = mf_readlink,
        .mknod = mf_mknod,
        .mkdir = mf_mkdir,
        .unlink = mf_unlink_op,
        .rmdir = mf_rmdir,
        .symlink = mf_symlink,
        .rename = mf_rename,
        .open = mf_open,
        .read = mf_read,
        .write = mf_write,
        .flush = mf_flush,
        .fsync = mf_fsync,
        .opendir = mf_opendir,
        .readdir = mf_readdir,
        .readdirplus = mf_readdirplus,
        .statfs = mf_statfs,
        .getxattr = mf_getxattr,
        .create = mf_create,
};

#define MF_OPT(t, p)                                                                               \
	{                                                                                          \
		t, offsetof(struct memfs, p), 0                                                    \
	}
static const struct fuse_opt mf_opts[] = {
        MF_OPT("writeback=%d", writeback), MF_OPT("open=%d", open),
        MF_OPT("flush=%d", flush),         MF_OPT("readdirplus=%d", readdirplus),
        MF_OPT("timeout=%lf", timeout),    FUSE_OPT_END,
};

int main(int argc, char *argv[])
{
	struct fuse_args args = FUSE_ARGS_INIT(argc, argv);
	struct fuse_cmdline_opts co;
	struct fuse_session *se;
	struct memfs fs;
	int ret = 1;

	memset(&fs, 0, sizeof(fs));
	fs.timeout = 1e6;
	fs.writeback = 1;
	fs.readdirplus = 2;
	pthread_mutex_init(&fs.mu, NULL);
	fs.hsize = 1024;
	fs.hash = calloc(fs.hsize, sizeof(*fs.hash));
	if (!fs.hash || fuse_opt_parse(&args, &fs, mf_opts, NULL) != 0 ||
	    fuse_parse_cmdline(&args, &co) != 0)
		return 1;
	if (co.show_help || !co.mountpoint) {
		printf("usage: %s [-o writeback=0|1,open=0|1,flush=0|1,readdirplus=0|1|2,"
		       "timeout=S] MOUNTPOINT\n",
		       argv[0]);
		return co.show_help ? 0 : 1;
	}
	if (!mf_new(&fs, NULL, NULL, S_IFDIR | 0755, NULL)) /* the root, ino 1 */
		return 1;
	se = fuse_session_new(&args, &mf_ops, sizeof(mf_ops), &fs);
	if (!se)
		goto out;
	if (fuse_set_signal_handlers(se) != 0)
		goto out_se;
	if (fuse_session_mount(se, co.mountpoint) != 0)
		goto out_sig;
	fuse_daemonize(co.foreground);
	if (co.singlethread) {
		ret = fuse_session_loop(se);
	} else {
		struct fuse_loop_config lc = {.clone_fd = co.clone_fd, .max_idle_threads = 10};

		ret = fuse_session_loop_mt(se, &lc);
	}
	fuse_session_unmount(se);
out_sig:
	fuse_remove_signal_handlers(se);
out_se:
	fuse_session_destroy(se);
out:
	free(co.mountpoint);
	fuse_opt_free_args(&args);
	return ret ? 1 : 0;
}
