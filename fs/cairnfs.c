/*
 * cairnfs.c - the request handlers of cairnfs (see cairnfs.h).
 *
 * The daemon owns its inode numbers: a node table maps each inode the kernel
 * knows to (parent node, name), so a path is rebuilt by walking up, and a
 * rename moves a whole subtree by relinking one node. Each node counts the
 * kernel's lookups (dropped by forget), its children and its open handles;
 * it is freed when all three reach zero.
 *
 * What a path is comes from the database alone (meta.h has the rule): the
 * key PATH holds the content of a small file, 64 KiB pieces named by the
 * record hold a large one (extent.h), "\0m" PATH is the metadata record,
 * and a directory exists while it has a record or any key lies below it. A
 * lookup answers with point lookups or one iterator and a few seeks; a
 * listing walks the children of a directory, seeking past each child's
 * subtree so its cost follows the number of children.
 *
 * With flush=0 (the default) each write is committed as it arrives, straight
 * from the request. With flush=1 all handles of one inode share one write
 * buffer (wbuf.h) hung on the node, so a read sees every handle's writes at
 * once, committed at flush, fsync and release, and when it fills. A commit
 * writes a small file's value whole, or only the pieces a large file's
 * writes touched, together with its record in one cairn_write batch.
 *
 * One mutex (fs->mu) guards the node table and the buffers and is held
 * across every namespace change, so a path computed under it is the path
 * the database holds. It is released around what may take long and needs
 * no table: reads of unbuffered data, the log sync of fsync, control
 * commands.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

#include "cairnfs.h"
#include "meta.h"
#include "pathkey.h"
#include "extent.h"
#include "wbuf.h"

/* Fixed inode numbers: the root and the control files. */
#define CFS_INO_ROOT   1
#define CFS_INO_CTLDIR 2
#define CFS_INO_CTL0   3 /* CFS_INO_CTL0 + enum ctl_file */
#define CFS_INO_FIRST  16
#define CFS_INO_SNAP0  (1ull << 62) /* statistics snapshots: CFS_INO_SNAP0 + n */
#define CFS_CTL_NAME   ".cairn"
/* The system key holding the next extent id (pathkey.h). */
static const char cfs_next_id_key[] = {'\0', PK_TAG_NEXT_ID};

#define CFS_MAX_WRITE (1024 * 1024)

struct cfs_node {
	struct cfs_node *name_next; /* chain in the (parent, name) table */
	struct cfs_node *ino_next;  /* chain in the inode table */
	struct cfs_node *parent;
	char *name;
	size_t nlen;
	uint64_t hash; /* cfs_hash_name(parent, name): compared before the name */
	uint64_t ino;
	uint64_t nlookup; /* lookups the kernel holds */
	unsigned nchild;  /* child nodes pointing here */
	unsigned nopen;   /* open file handles */
	int hashed;       /* reachable by name: not unlinked or replaced */
	struct wbuf *wb;  /* buffered writes, or NULL */
	int lay;          /* how the content is stored: enum cfs_layout */
	uint64_t ext_id;  /* CFS_LAY_PIECES: the extent id */
	uint64_t base;    /* committed size, once lay is known */
};

/* How a regular file's content is stored (extent.h). Only this daemon
 * changes the database while it is mounted, so once learned the layout of a
 * node stays true until its own commits change it. */
enum cfs_layout {
	CFS_LAY_UNKNOWN,
	CFS_LAY_INLINE, /* the value of the key PATH (or nothing yet) */
	CFS_LAY_PIECES, /* pieces "\0d" ID INDEX named by a version 2 record */
};

struct cfs_table {
	struct cfs_node **b;
	size_t size; /* power of two */
	size_t count;
};

/* A directory handle: the listing, built on the first readdir. */
struct cfs_dent {
	size_t name_off;
	size_t nlen;
	struct meta_probe p;
};

struct cfs_dir {
	char *names;
	size_t nused, ncap;
	struct cfs_dent *d;
	size_t n, cap;
	int built;
	int err;
};

struct cairnfs {
	struct cairnfs_config cfg;
	char *dbdir;
	struct cairn_db *db;
	struct fuse_session *se;
	pthread_mutex_t mu;
	struct cfs_table by_name, by_ino;
	struct cfs_node root;
	uint64_t next_ino;
	size_t buffered;
	int64_t start_ns;
	uint64_t next_snap;
	uint64_t wgen;         /* writes so far: a listing older than this is stale */
	struct cfs_dir lcache; /* the listing of lcache_ino, when opendir is off */
	fuse_ino_t lcache_ino;
	uint64_t lcache_gen;
	int any_xattr;            /* whether some "\0x" key may exist (cfs_may_have_xattrs) */
	uint64_t next_ext_id;     /* the extent id the next large file gets */
	struct cfs_ctlsnap *ctls; /* rendered statistics files the kernel holds */
	char result[CAIRNFS_RESULT_MAX]; /* outcome of the last control command */
	struct cairnfs_counters cnt;
};

/* A statistics file as rendered at one lookup. Each lookup of a statistics
 * file gets a fresh inode number and a fresh rendering, and the entry is not
 * cached, so every open(2) sees new figures while a read(2) loop sees one
 * snapshot: with open answered ENOSYS there is no open to render at. */
struct cfs_ctlsnap {
	struct cfs_ctlsnap *next;
	uint64_t ino;
	uint64_t nlookup;
	int which;
	char *buf;
	size_t len;
};

/* ---- small helpers ------------------------------------------------------ */

static struct cairnfs *cfs_of(fuse_req_t req)
{
	return fuse_req_userdata(req);
}

static int64_t cfs_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Maps a cairn status to an errno; toobig is what CAIRN_ETOOBIG means here. */
static int cfs_errno(int rc, int toobig)
{
	switch (rc) {
	case CAIRN_OK:
		return 0;
	case CAIRN_ENOTFOUND:
	case CAIRN_ENOENT:
		return ENOENT;
	case CAIRN_EINVAL:
		return EINVAL;
	case CAIRN_ENOSPC:
		return ENOSPC;
	case CAIRN_ENOMEM:
		return ENOMEM;
	case CAIRN_ETOOBIG:
		return toobig;
	case CAIRN_EREADONLY:
		return EROFS;
	case CAIRN_ENOTSUP:
		return ENOTSUP;
	case CAIRN_EBUSY:
		return EBUSY;
	case CAIRN_EEXIST:
		return EEXIST;
	default:
		return EIO;
	}
}

static void cfs_log_engine(struct cairnfs *fs, const char *what, int rc)
{
	char msg[512];

	if (rc == CAIRN_OK || rc == CAIRN_ENOTFOUND)
		return;
	msg[0] = '\0';
	cairn_errmsg(fs->db, msg, sizeof(msg));
	fuse_log(FUSE_LOG_ERR, "cairnfs: %s: %s (%s)\n", what, cairn_strerror(rc), msg);
}

/* ---- node table --------------------------------------------------------- */

static uint64_t cfs_hash_name(const struct cfs_node *parent, const char *name, size_t nlen)
{
	uint64_t h = 1469598103934665603ull ^ (uint64_t)(uintptr_t)parent;

	for (size_t i = 0; i < nlen; i++)
		h = (h ^ (unsigned char)name[i]) * 1099511628211ull;
	return h;
}

static uint64_t cfs_hash_ino(uint64_t ino)
{
	return ino * 0x9e3779b97f4a7c15ull;
}

static int cfs_table_grow(struct cfs_table *t, int by_name)
{
	size_t nsize = t->size ? t->size * 2 : 1024;
	struct cfs_node **nb = calloc(nsize, sizeof(*nb));

	if (!nb)
		return -ENOMEM;
	for (size_t i = 0; i < t->size; i++) {
		struct cfs_node *n = t->b[i], *next;

		for (; n; n = next) {
			uint64_t h;

			if (by_name) {
				next = n->name_next;
				h = n->hash & (nsize - 1);
				n->name_next = nb[h];
			} else {
				next = n->ino_next;
				h = cfs_hash_ino(n->ino) & (nsize - 1);
				n->ino_next = nb[h];
			}
			nb[h] = n;
		}
	}
	free(t->b);
	t->b = nb;
	t->size = nsize;
	return 0;
}

static struct cfs_node *cfs_node_get(struct cairnfs *fs, fuse_ino_t ino)
{
	struct cfs_node *n;

	if (ino == CFS_INO_ROOT)
		return &fs->root;
	if (ino < CFS_INO_FIRST || !fs->by_ino.size)
		return NULL;
	n = fs->by_ino.b[cfs_hash_ino(ino) & (fs->by_ino.size - 1)];
	while (n && n->ino != ino)
		n = n->ino_next;
	return n;
}

static struct cfs_node *cfs_node_find(struct cairnfs *fs, struct cfs_node *parent, const char *name,
                                      size_t nlen)
{
	uint64_t h = cfs_hash_name(parent, name, nlen);
	struct cfs_node *n;

	if (!fs->by_name.size)
		return NULL;
	n = fs->by_name.b[h & (fs->by_name.size - 1)];
	for (; n; n = n->name_next)
		if (n->hash == h && n->parent == parent && n->nlen == nlen &&
		    !memcmp(n->name, name, nlen))
			return n;
	return NULL;
}

static void cfs_hash_insert_name(struct cairnfs *fs, struct cfs_node *n)
{
	uint64_t h;

	n->hash = cfs_hash_name(n->parent, n->name, n->nlen);
	h = n->hash & (fs->by_name.size - 1);
	n->name_next = fs->by_name.b[h];
	fs->by_name.b[h] = n;
	fs->by_name.count++;
	n->hashed = 1;
}

static void cfs_node_unhash(struct cairnfs *fs, struct cfs_node *n)
{
	struct cfs_node **pp;

	if (!n->hashed)
		return;
	pp = &fs->by_name.b[n->hash & (fs->by_name.size - 1)];
	while (*pp != n)
		pp = &(*pp)->name_next;
	*pp = n->name_next;
	fs->by_name.count--;
	n->hashed = 0;
}

static struct cfs_node *cfs_node_add(struct cairnfs *fs, struct cfs_node *parent, const char *name,
                                     size_t nlen)
{
	struct cfs_node *n;
	uint64_t h;

	if ((fs->by_name.count >= fs->by_name.size && cfs_table_grow(&fs->by_name, 1)) ||
	    (fs->by_ino.count >= fs->by_ino.size && cfs_table_grow(&fs->by_ino, 0)))
		return NULL;
	n = calloc(1, sizeof(*n));
	if (!n)
		return NULL;
	n->name = malloc(nlen + 1);
	if (!n->name) {
		free(n);
		return NULL;
	}
	memcpy(n->name, name, nlen);
	n->name[nlen] = '\0';
	n->nlen = nlen;
	n->parent = parent;
	parent->nchild++;
	n->ino = fs->next_ino++;
	cfs_hash_insert_name(fs, n);
	h = cfs_hash_ino(n->ino) & (fs->by_ino.size - 1);
	n->ino_next = fs->by_ino.b[h];
	fs->by_ino.b[h] = n;
	fs->by_ino.count++;
	fs->cnt.nodes++;
	return n;
}

static void cfs_wb_drop(struct cairnfs *fs, struct cfs_node *n)
{
	if (!n->wb)
		return;
	fs->buffered -= n->wb->bytes;
	wbuf_free(n->wb);
	free(n->wb);
	n->wb = NULL;
}

/* Frees n, and then its parent, while nothing refers to them. */
static void cfs_node_maybe_free(struct cairnfs *fs, struct cfs_node *n)
{
	while (n != &fs->root && !n->nlookup && !n->nchild && !n->nopen) {
		struct cfs_node *parent = n->parent, **pp;

		cfs_node_unhash(fs, n);
		pp = &fs->by_ino.b[cfs_hash_ino(n->ino) & (fs->by_ino.size - 1)];
		while (*pp != n)
			pp = &(*pp)->ino_next;
		*pp = n->ino_next;
		fs->by_ino.count--;
		fs->cnt.nodes--;
		cfs_wb_drop(fs, n);
		free(n->name);
		free(n);
		parent->nchild--;
		n = parent;
	}
}

/* Relinks n as (parent, name): the rename of a whole subtree. */
static int cfs_node_move(struct cairnfs *fs, struct cfs_node *n, struct cfs_node *parent,
                         const char *name, size_t nlen)
{
	char *nm = malloc(nlen + 1);
	struct cfs_node *old = n->parent;

	if (!nm)
		return -ENOMEM;
	memcpy(nm, name, nlen);
	nm[nlen] = '\0';
	cfs_node_unhash(fs, n);
	free(n->name);
	n->name = nm;
	n->nlen = nlen;
	parent->nchild++;
	n->parent = parent;
	cfs_hash_insert_name(fs, n);
	old->nchild--;
	cfs_node_maybe_free(fs, old);
	return 0;
}

/* Rebuilds the path of n into buf (PK_KEY_BUF bytes). */
static int cfs_node_path(struct cairnfs *fs, struct cfs_node *n, char *buf, size_t *len)
{
	size_t total = 0, pos;
	struct cfs_node *p;

	for (p = n; p != &fs->root; p = p->parent) {
		if (!p->hashed)
			return -ENOENT; /* unlinked, or below something unlinked */
		total += p->nlen + (p->parent != &fs->root);
	}
	if (total > PK_PATH_MAX)
		return -ENAMETOOLONG;
	pos = total;
	buf[total] = '\0';
	for (p = n; p != &fs->root; p = p->parent) {
		pos -= p->nlen;
		memcpy(buf + pos, p->name, p->nlen);
		if (p->parent != &fs->root)
			buf[--pos] = '/';
	}
	*len = total;
	return 0;
}

/* ---- probing the database ------------------------------------------------ */

static int cfs_iter(struct cairnfs *fs, struct cairn_iter **it)
{
	int rc = cairn_iter_new(fs->db, NULL, it);

	if (rc)
		cfs_log_engine(fs, "iterator", rc);
	return rc ? -cfs_errno(rc, EIO) : 0;
}

static int cfs_iter_is(struct cairn_iter *it, const void *k, size_t kl)
{
	size_t klen;
	const void *key;

	if (!cairn_iter_valid(it))
		return 0;
	key = cairn_iter_key(it, &klen);
	return klen == kl && !memcmp(key, k, kl);
}

/* With the iterator at the first key after k, tells whether some key lies
 * under k + "/". A sibling such as k + ".txt" sorts between, so when one is
 * found the exact prefix is sought. tmp holds PK_KEY_BUF bytes. */
/* Seeks to the first key >= key with the iterator bounded to keys that
 * start with pfx, so a probe stops at the end of what it asks about instead
 * of stepping over whatever follows (after a mass delete, a long run of
 * tombstones). */
static void cfs_seek_within(struct cairn_iter *it, const char *key, size_t klen, const char *pfx,
                            size_t plen)
{
	char up[PK_KEY_BUF];
	size_t n = plen < sizeof(up) ? plen : 0;

	memcpy(up, pfx, n);
	/* the smallest key above every key with this prefix */
	while (n > 0 && (unsigned char)up[n - 1] == 0xff)
		n--;
	if (n > 0) {
		up[n - 1] = (char)((unsigned char)up[n - 1] + 1);
		cairn_iter_set_bounds(it, NULL, 0, up, n);
	} else {
		cairn_iter_set_bounds(it, NULL, 0, NULL, 0);
	}
	cairn_iter_seek(it, key, klen);
}

static int cfs_below(struct cairn_iter *it, const char *k, size_t kl, char *tmp)
{
	const char *key;
	size_t klen;

	if (!cairn_iter_valid(it))
		return 0;
	key = cairn_iter_key(it, &klen);
	if (!pk_has_prefix(key, klen, k, kl))
		return 0;
	if (klen > kl && key[kl] == '/')
		return 1;
	memcpy(tmp, k, kl);
	tmp[kl] = '/';
	cairn_iter_seek(it, tmp, kl + 1);
	if (!cairn_iter_valid(it))
		return 0;
	key = cairn_iter_key(it, &klen);
	return pk_has_prefix(key, klen, tmp, kl + 1);
}

/* Decodes the record under the iterator into p; the value is copied into
 * mbuf (META_BUF bytes) when given, so a symlink target outlives the
 * iterator. An undecodable record counts as absent. */
static void cfs_take_meta(struct cairnfs *fs, struct cairn_iter *it, struct meta_probe *p,
                          char *mbuf)
{
	struct cairn_key_info info;
	const void *v;
	size_t vlen;

	v = cairn_iter_value(it, &vlen);
	if (mbuf && vlen <= META_BUF) {
		memcpy(mbuf, v, vlen);
		v = mbuf;
	}
	if (meta_decode(v, vlen, &p->meta) != 0) {
		fs->cnt.hidden_keys++;
		return;
	}
	if (!mbuf)
		p->meta.target = NULL;
	cairn_iter_info(it, &info);
	p->has_meta = 1;
	p->meta_seq = info.seq;
}

/* Gathers what the database holds for path (meta.h, struct meta_probe),
 * with the iterator it (left bounded to what it looked at last). */
static int cfs_probe_with(struct cairnfs *fs, struct cairn_iter *it, const char *path, size_t plen,
                          struct meta_probe *p, char *mbuf)
{
	char mk[PK_KEY_BUF], tmp[PK_KEY_BUF];
	int mkl, rc, need;

	memset(p, 0, sizeof(*p));
	mkl = pk_sys_key(PK_TAG_META, path, plen, mk);
	if (mkl < 0)
		return mkl;
	cfs_seek_within(it, mk, (size_t)mkl, mk, (size_t)mkl);
	if (cfs_iter_is(it, mk, (size_t)mkl)) {
		cfs_take_meta(fs, it, p, mbuf);
		cairn_iter_next(it);
	}
	if (plen == 0) {
		p->below = 1; /* the root always exists */
		goto out;
	}
	if (p->has_meta && p->meta.type != META_FILE)
		goto out;
	need = !cfs_below(it, mk, (size_t)mkl, tmp);
	if (!need)
		p->below = 1;
	cfs_seek_within(it, path, plen, path, plen);
	if (cfs_iter_is(it, path, plen)) {
		p->data_file = 1;
		cairn_iter_info(it, &p->data);
		cairn_iter_next(it);
	}
	if (need && !(p->has_meta && p->data_file))
		p->below = cfs_below(it, path, plen, tmp);
out:
	rc = cairn_iter_status(it);
	if (rc)
		cfs_log_engine(fs, "probe", rc);
	return rc ? -cfs_errno(rc, EIO) : 0;
}

/* The probe of an entry cairnfs wrote, by point lookups (bloom filters let
 * them skip tables; an iterator seeks every table): a directory or symlink
 * record settles it, a file record with its key PATH or extents too.
 * Returns 1 when settled, 0 when the iterator must look (no record: maybe a
 * directory made by keys below; a file record without its key), or a
 * negative errno. */
static int cfs_probe_point(struct cairnfs *fs, const char *path, size_t plen, struct meta_probe *p,
                           char *mbuf)
{
	char mk[PK_KEY_BUF], rec[META_BUF];
	struct cairn_key_info info;
	size_t got = 0;
	int mkl, rc;

	memset(p, 0, sizeof(*p));
	mkl = pk_sys_key(PK_TAG_META, path, plen, mk);
	if (mkl < 0)
		return mkl;
	if (plen == 0)
		return 0;
	rc = cairn_key_info(fs->db, NULL, mk, (size_t)mkl, &info);
	if (rc == CAIRN_OK)
		rc = cairn_get_range(fs->db, NULL, mk, (size_t)mkl, 0, rec, sizeof(rec), &got);
	if (rc == CAIRN_ENOTFOUND)
		return 0;
	if (rc) {
		cfs_log_engine(fs, "probe", rc);
		return -cfs_errno(rc, EIO);
	}
	if (info.size > META_BUF || meta_decode(rec, got, &p->meta) != 0)
		return 0; /* the iterator counts it as hidden */
	if (mbuf && p->meta.target) {
		memcpy(mbuf, rec, got);
		p->meta.target = mbuf + (p->meta.target - rec);
	} else {
		p->meta.target = NULL;
	}
	p->has_meta = 1;
	p->meta_seq = info.seq;
	if (p->meta.type != META_FILE)
		return 1;
	rc = cairn_key_info(fs->db, NULL, path, plen, &p->data);
	if (rc == CAIRN_OK)
		p->data_file = 1;
	else if (rc != CAIRN_ENOTFOUND)
		return -cfs_errno(rc, EIO);
	return p->data_file || p->meta.ext_id;
}

/* Same, with an iterator of its own. */
static int cfs_probe(struct cairnfs *fs, const char *path, size_t plen, struct meta_probe *p,
                     char *mbuf)
{
	struct cairn_iter *it;
	int rc = cfs_probe_point(fs, path, plen, p, mbuf);

	if (rc)
		return rc < 0 ? rc : 0;
	rc = cfs_iter(fs, &it);
	if (rc)
		return rc;
	rc = cfs_probe_with(fs, it, path, plen, p, mbuf);
	cairn_iter_free(it);
	return rc;
}

static struct meta_defaults cfs_defaults(struct cairnfs *fs)
{
	struct meta_defaults d = {fs->cfg.uid, fs->cfg.gid, fs->start_ns};

	return d;
}

/* stat of path: returns the meta_type or a negative errno. */
static int cfs_stat_path(struct cairnfs *fs, const char *path, size_t plen, struct stat *st,
                         struct meta_probe *p, char *mbuf)
{
	struct meta_defaults d = cfs_defaults(fs);
	struct meta_probe local;
	int rc;

	if (!p)
		p = &local;
	rc = cfs_probe(fs, path, plen, p, mbuf);
	if (rc)
		return rc;
	return meta_decide(p, &d, st);
}

/* Reads the record of path, or builds the default one for what it is now. */
static int cfs_get_meta(struct cairnfs *fs, const char *path, size_t plen, struct meta_rec *r,
                        char *mbuf)
{
	struct meta_probe p;
	struct stat st;
	int type = cfs_stat_path(fs, path, plen, &st, &p, mbuf);

	if (type < 0)
		return type;
	if (p.has_meta && p.meta.type == type) {
		*r = p.meta;
		if (type == META_FILE && p.data.seq > p.meta_seq)
			r->mtime_ns = r->ctime_ns = p.data.mtime_ns;
		return type;
	}
	meta_init(r, type, st.st_mode & 07777, st.st_uid, st.st_gid, 0);
	r->atime_ns = (int64_t)st.st_atim.tv_sec * 1000000000 + st.st_atim.tv_nsec;
	r->mtime_ns = (int64_t)st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec;
	r->ctime_ns = (int64_t)st.st_ctim.tv_sec * 1000000000 + st.st_ctim.tv_nsec;
	return type;
}

static int cfs_batch_meta(struct cairn_batch *b, const char *path, size_t plen,
                          const struct meta_rec *r)
{
	char mk[PK_KEY_BUF], rec[META_BUF];
	int mkl = pk_sys_key(PK_TAG_META, path, plen, mk);
	int rl = meta_encode(r, rec);

	if (mkl < 0)
		return mkl;
	if (rl < 0)
		return rl;
	return -cfs_errno(cairn_batch_put(b, mk, (size_t)mkl, rec, (size_t)rl), ENAMETOOLONG);
}

static int cfs_write_batch(struct cairnfs *fs, struct cairn_batch *b, int toobig)
{
	int rc = cairn_write(fs->db, b, 0);

	fs->wgen++;
	if (rc)
		cfs_log_engine(fs, "write", rc);
	return -cfs_errno(rc, toobig);
}

/* ---- control files ------------------------------------------------------ */

static int cfs_is_ctl(fuse_ino_t ino)
{
	return (ino >= CFS_INO_CTLDIR && ino < CFS_INO_CTL0 + CTL_NFILES) || ino >= CFS_INO_SNAP0;
}

/* The snapshot of a statistics inode, under fs->mu. */
static struct cfs_ctlsnap *cfs_snap_get(struct cairnfs *fs, fuse_ino_t ino)
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
static void cfs_ctl_stat(struct cairnfs *fs, fuse_ino_t ino, struct stat *st)
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
	else if (ino == CFS_INO_CTL0 + CTL_CONTROL)
		st->st_mode = S_IFREG | 0200;
	else
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

static void cfs_entry_init(struct cairnfs *fs, struct fuse_entry_param *e)
{
	memset(e, 0, sizeof(*e));
	e->attr_timeout = fs->cfg.timeout;
	e->entry_timeout = fs->cfg.timeout;
}

/* Finds or makes the node of (parent, name) and takes one lookup on it. */
static struct cfs_node *cfs_node_ref(struct cairnfs *fs, struct cfs_node *parent, const char *name,
                                     size_t nlen)
{
	struct cfs_node *n = cfs_node_find(fs, parent, name, nlen);

	if (!n)
		n = cfs_node_add(fs, parent, name, nlen);
	if (n)
		n->nlookup++;
	return n;
}

static void cfs_fix_size(struct cfs_node *n, struct stat *st)
{
	if (n->wb && S_ISREG(st->st_mode)) {
		st->st_size = (off_t)n->wb->size;
		st->st_blocks = (blkcnt_t)((n->wb->size + 511) / 512);
	}
}

/* Builds the path of (parent, name), checking the name. */
static int cfs_child_path(struct cairnfs *fs, fuse_ino_t parent, const char *name,
                          struct cfs_node **pn, char *path, size_t *plen)
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

static void cfs_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct cairnfs *fs = cfs_of(req);
	struct fuse_entry_param e;
	struct cfs_node *pn, *n;
	char path[PK_KEY_BUF];
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
		rc = cfs_stat_path(fs, path, plen, &e.attr, NULL, NULL);
	if (rc == -ENOENT) {
		pthread_mutex_unlock(&fs->mu);
		fuse_reply_entry(req, &e); /* ino 0: a cached negative entry */
		return;
	}
	if (rc < 0)
		goto err;
	n = cfs_node_ref(fs, pn, name, strlen(name));
	if (!n) {
		rc = -ENOMEM;
		goto err;
	}
	cfs_fix_size(n, &e.attr);
	e.ino = n->ino;
	e.attr.st_ino = n->ino;
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

static void cfs_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup)
{
	struct cairnfs *fs = cfs_of(req);

	pthread_mutex_lock(&fs->mu);
	cfs_forget_one(fs, ino, nlookup);
	pthread_mutex_unlock(&fs->mu);
	fuse_reply_none(req);
}

static void cfs_forget_multi(fuse_req_t req, size_t count, struct fuse_forget_data *forgets)
{
	struct cairnfs *fs = cfs_of(req);

	pthread_mutex_lock(&fs->mu);
	for (size_t i = 0; i < count; i++)
		cfs_forget_one(fs, forgets[i].ino, forgets[i].nlookup);
	pthread_mutex_unlock(&fs->mu);
	fuse_reply_none(req);
}

/* stat of an inode, under fs->mu. */
static int cfs_stat_ino(struct cairnfs *fs, fuse_ino_t ino, struct stat *st)
{
	char path[PK_KEY_BUF];
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
	if (rc == -ENOENT && (n->nopen || !fs->cfg.open)) {
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
	st->st_ino = ino;
	return 0;
}

static void cfs_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct cairnfs *fs = cfs_of(req);
	struct stat st;
	int rc;

	(void)fi;
	pthread_mutex_lock(&fs->mu);
	rc = cfs_stat_ino(fs, ino, &st);
	pthread_mutex_unlock(&fs->mu);
	if (rc)
		fuse_reply_err(req, -rc);
	else
		fuse_reply_attr(req, &st, fs->cfg.timeout);
}

/* ---- write buffers and commits ------------------------------------------ */

/* Learns how n's content is stored, under fs->mu: the key PATH when it
 * exists (an embedding program may have written it), else the pieces named
 * by an extent record, else nothing yet (an empty inline file). */
static int cfs_layout(struct cairnfs *fs, struct cfs_node *n, const char *path, size_t plen)
{
	char mk[PK_KEY_BUF], mbuf[META_BUF];
	struct cairn_key_info info;
	struct meta_rec r;
	size_t got = 0;
	int mkl, rc;

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
static int cfs_pieces_read(struct cairnfs *fs, const struct cairn_snapshot *snap, uint64_t id,
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
static int cfs_wb_get(struct cairnfs *fs, struct cfs_node *n, const char *path, size_t plen)
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
static int cfs_wb_read(struct cairnfs *fs, struct cfs_node *n, const char *path, size_t plen,
                       uint64_t off, char *buf, size_t len, size_t *got)
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

/* Adds to b the deletion of every piece of file id from piece idx on: the
 * pieces that exist, found by a scan, so a sparse file costs its pieces. */
static int cfs_drop_pieces(struct cairn_iter *it, struct cairn_batch *b, uint64_t id, uint64_t idx)
{
	char k[EXT_KEY_LEN];
	const char *key;
	size_t klen;
	int rc = 0;

	ext_key(id, idx, k);
	for (cfs_seek_within(it, k, EXT_KEY_LEN, k, EXT_PFX_LEN); !rc && cairn_iter_valid(it);
	     cairn_iter_next(it)) {
		key = cairn_iter_key(it, &klen);
		if (!pk_has_prefix(key, klen, k, EXT_PFX_LEN))
			break;
		rc = -cfs_errno(cairn_batch_delete(b, key, klen), EIO);
	}
	if (!rc && cairn_iter_status(it))
		rc = -cfs_errno(cairn_iter_status(it), EIO);
	return rc;
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
	char *val = malloc(n->wb->size ? (size_t)n->wb->size : 1);
	int rc;

	if (!val)
		return -ENOMEM;
	rc = cfs_wb_read(c->fs, n, c->path, c->plen, 0, val, (size_t)n->wb->size, &got);
	if (!rc)
		rc = -cfs_errno(cairn_batch_put(c->b, c->path, c->plen, val, got), EFBIG);
	c->bytes = got;
	free(val);
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

	c->piece = malloc(EXT_SIZE);
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
	free(c->piece);
	return rc;
}

/* Commits the buffered writes of n with its record in one batch: a small
 * file as its whole value, a large one as the pieces the writes touched
 * (extent.h). Under fs->mu. */
static int cfs_commit(struct cairnfs *fs, struct cfs_node *n)
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
static int cfs_commit_subtree(struct cairnfs *fs, const char *dir, size_t dlen)
{
	char path[PK_KEY_BUF];
	size_t plen;

	if (!fs->cfg.flush)
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

/* ---- setattr ------------------------------------------------------------- */

static int64_t cfs_ts_ns(const struct timespec *ts)
{
	return (int64_t)ts->tv_sec * 1000000000 + ts->tv_nsec;
}

static int cfs_truncate(struct cairnfs *fs, struct cfs_node *n, const char *path, size_t plen,
                        off_t size)
{
	int rc;

	if (size < 0)
		return -EINVAL;
	if ((uint64_t)size > EXT_MAX_FILE)
		return -EFBIG;
	rc = cfs_wb_get(fs, n, path, plen);
	if (rc)
		return rc;
	fs->buffered -= n->wb->bytes;
	wbuf_truncate(n->wb, (uint64_t)size);
	fs->buffered += n->wb->bytes;
	rc = cfs_commit(fs, n);
	/* with flush=0 a failed truncation is not kept for a later commit */
	if (!n->nopen || (rc && !fs->cfg.flush))
		cfs_wb_drop(fs, n);
	return rc;
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
		if (rc)
			return rc;
		to_set &= ~FUSE_SET_ATTR_SIZE;
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
	if (to_set & FUSE_SET_ATTR_MODE)
		r.mode = attr->st_mode & 07777;
	if (to_set & FUSE_SET_ATTR_UID)
		r.uid = attr->st_uid;
	if (to_set & FUSE_SET_ATTR_GID)
		r.gid = attr->st_gid;
	if (to_set & FUSE_SET_ATTR_ATIME_NOW)
		r.atime_ns = now;
	else if (to_set & FUSE_SET_ATTR_ATIME)
		r.atime_ns = cfs_ts_ns(&attr->st_atim);
	if (to_set & FUSE_SET_ATTR_MTIME_NOW)
		r.mtime_ns = now;
	else if (to_set & FUSE_SET_ATTR_MTIME)
		r.mtime_ns = cfs_ts_ns(&attr->st_mtim);
	r.ctime_ns = (to_set & FUSE_SET_ATTR_CTIME) ? cfs_ts_ns(&attr->st_ctim) : now;
	rc = -cfs_errno(cairn_batch_new(&b), EIO);
	if (!rc)
		rc = cfs_batch_meta(b, path, plen, &r);
	if (!rc)
		rc = cfs_write_batch(fs, b, ENAMETOOLONG);
	cairn_batch_free(b);
	return rc;
}

static void cfs_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int to_set,
                        struct fuse_file_info *fi)
{
	struct cairnfs *fs = cfs_of(req);
	struct stat st;
	int rc = 0;

	(void)fi;
	pthread_mutex_lock(&fs->mu);
	if (!cfs_is_ctl(ino)) /* truncating a control file is a no-op */
		rc = cfs_setattr_locked(fs, ino, attr, to_set);
	if (!rc)
		rc = cfs_stat_ino(fs, ino, &st);
	pthread_mutex_unlock(&fs->mu);
	if (rc)
		fuse_reply_err(req, -rc);
	else
		fuse_reply_attr(req, &st, fs->cfg.timeout);
}

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
}

/* Writes a new entry (file, directory or symlink) and replies with it. */
static void cfs_make(fuse_req_t req, fuse_ino_t parent, const char *name, int type, mode_t mode,
                     const char *target, struct fuse_file_info *fi)
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
	meta_init(&r, type, mode, ctx->uid, ctx->gid, cfs_now());
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
		rc = cfs_write_batch(fs, b, ENAMETOOLONG);
	if (rc < 0)
		goto out;
	cfs_made_stat(fs, &r, &e.attr);
	n = cfs_node_ref(fs, pn, name, strlen(name));
	if (!n) {
		rc = -ENOMEM;
		goto out;
	}
	if (type == META_FILE && !n->wb) {
		/* just written: an empty value at the key PATH, no lookup needed */
		n->lay = CFS_LAY_INLINE;
		n->base = 0;
	}
	e.ino = n->ino;
	e.attr.st_ino = n->ino;
	if (fi) {
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

static void cfs_create(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
                       struct fuse_file_info *fi)
{
	cfs_make(req, parent, name, META_FILE, mode, NULL, fi);
}

static void cfs_mknod(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode, dev_t rdev)
{
	(void)rdev;
	if (!S_ISREG(mode)) {
		fuse_reply_err(req, EPERM); /* no devices, fifos or sockets */
		return;
	}
	cfs_make(req, parent, name, META_FILE, mode, NULL, NULL);
}

static void cfs_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode)
{
	cfs_make(req, parent, name, META_DIR, mode, NULL, NULL);
}

static void cfs_symlink(fuse_req_t req, const char *link, fuse_ino_t parent, const char *name)
{
	if (strlen(link) > META_TARGET_MAX) {
		fuse_reply_err(req, ENAMETOOLONG);
		return;
	}
	cfs_make(req, parent, name, META_SYMLINK, 0777, link, NULL);
}

static void cfs_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent, const char *newname)
{
	(void)ino;
	(void)newparent;
	(void)newname;
	fuse_reply_err(req, ENOTSUP); /* no hard links: a key has one name */
}

static void cfs_readlink(fuse_req_t req, fuse_ino_t ino)
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
				val = cairn_iter_value(it, &vlen);
				rc = cairn_batch_put(b, nk, r->hlen + nplen + tail, val, vlen);
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
		}
	}
	rc = cairn_iter_status(it);
	cairn_iter_free(it);
	return rc ? -cfs_errno(rc, EIO) : 0;
}

/* What fs->any_xattr knows. */
enum { CFS_XATTR_UNKNOWN, CFS_XATTR_NONE, CFS_XATTR_SOME };

/* Whether some extended attribute may exist: learned with one seek the
 * first time it is asked, and set by setxattr (nothing else makes one), so
 * removals on a mount without attributes skip the attribute scan. */
static int cfs_may_have_xattrs(struct cairnfs *fs, struct cairn_iter *it)
{
	static const char pfx[2] = {'\0', PK_TAG_XATTR};

	if (fs->any_xattr == CFS_XATTR_UNKNOWN && it) {
		cfs_seek_within(it, pfx, sizeof(pfx), pfx, sizeof(pfx));
		fs->any_xattr = CFS_XATTR_NONE;
		if (cairn_iter_valid(it) || cairn_iter_status(it))
			fs->any_xattr = CFS_XATTR_SOME;
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
                            const char *path, size_t plen, int type, const struct meta_probe *p)
{
	struct cairn_iter *it;
	char k[PK_KEY_BUF];
	const char *key;
	size_t klen;
	int kl, rc = 0;

	if (!*itp && (fs->any_xattr != CFS_XATTR_NONE || (p->has_meta && p->meta.ext_id))) {
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
	if (!rc && type == META_FILE && p->has_meta && p->meta.type == META_FILE && p->meta.ext_id)
		rc = cfs_drop_pieces(it, b, p->meta.ext_id, 0);
	if (rc || !cfs_may_have_xattrs(fs, it))
		return rc;
	kl = pk_xattr_key(path, plen, NULL, 0, k);
	if (kl < 0)
		return kl;
	for (cfs_seek_within(it, k, (size_t)kl, k, (size_t)kl); !rc && cairn_iter_valid(it);
	     cairn_iter_next(it)) {
		key = cairn_iter_key(it, &klen);
		if (!pk_has_prefix(key, klen, k, (size_t)kl))
			break;
		rc = -cfs_errno(cairn_batch_delete(b, key, klen), EIO);
	}
	if (!rc && cairn_iter_status(it))
		rc = -cfs_errno(cairn_iter_status(it), EIO);
	return rc;
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
	struct cfs_node *pn, *n;
	struct meta_probe p;
	struct stat st;
	size_t plen;
	int rc, type, nonempty = 0;

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
		rc = cfs_probe_point(fs, path, plen, &p, NULL);
	if (rc == 0)
		rc = cfs_iter(fs, &it);
	if (rc == 0)
		rc = cfs_probe_with(fs, it, path, plen, &p, NULL);
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
	if (!rc)
		rc = cfs_batch_remove(fs, &it, b, path, plen, type, &p);
	if (!rc)
		rc = cfs_write_batch(fs, b, EIO);
	if (rc)
		goto out;
	n = cfs_node_find(fs, pn, name, strlen(name));
	if (n) {
		cfs_node_unhash(fs, n);
		cfs_wb_drop(fs, n);
	}
out:
	pthread_mutex_unlock(&fs->mu);
	cairn_iter_free(it);
	cairn_batch_free(b);
	fuse_reply_err(req, -rc);
}

static void cfs_unlink(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	cfs_remove(req, parent, name, 0);
}

static void cfs_rmdir(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	cfs_remove(req, parent, name, 1);
}

struct cfs_side {
	struct cfs_node *pn;
	const char *name;
	char path[PK_KEY_BUF];
	size_t plen;
	int type; /* meta_type, or -ENOENT */
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

/* The batch of a rename: every delete first, then every put, so an exchange
 * never deletes what it has just written. */
static int cfs_rename_batch(struct cairnfs *fs, struct cfs_side *s, struct cfs_side *d,
                            unsigned flags, struct cairn_batch *b)
{
	struct cairn_iter *it;
	int rc = cfs_iter(fs, &it);

	if (rc)
		return rc;
	if (d->type >= 0)
		rc = cfs_batch_entry(it, b, d->path, d->plen, d->type,
		                     flags & RENAME_EXCHANGE ? CFS_DEL : CFS_DROP, NULL, 0);
	if (!rc)
		rc = cfs_batch_entry(it, b, s->path, s->plen, s->type, CFS_DEL, NULL, 0);
	if (!rc)
		rc = cfs_batch_entry(it, b, s->path, s->plen, s->type, CFS_PUT, d->path, d->plen);
	if (!rc && (flags & RENAME_EXCHANGE))
		rc = cfs_batch_entry(it, b, d->path, d->plen, d->type, CFS_PUT, s->path, s->plen);
	cairn_iter_free(it);
	return rc;
}

static int cfs_rename_locked(struct cairnfs *fs, struct cfs_side *s, struct cfs_side *d,
                             unsigned flags)
{
	struct cairn_batch *b = NULL;
	struct cfs_node *sn, *dn;
	struct stat st;
	int rc;

	s->type = cfs_stat_path(fs, s->path, s->plen, &st, NULL, NULL);
	d->type = cfs_stat_path(fs, d->path, d->plen, &st, NULL, NULL);
	rc = cfs_rename_check(fs, s, d, flags);
	if (rc || (s->plen == d->plen && !memcmp(s->path, d->path, s->plen)))
		return rc;
	rc = cfs_commit_subtree(fs, s->path, s->plen);
	if (!rc && (flags & RENAME_EXCHANGE))
		rc = cfs_commit_subtree(fs, d->path, d->plen);
	if (!rc)
		rc = -cfs_errno(cairn_batch_new(&b), EIO);
	if (!rc)
		rc = cfs_rename_batch(fs, s, d, flags, b);
	if (!rc)
		rc = cfs_write_batch(fs, b, EXDEV);
	cairn_batch_free(b);
	if (rc)
		return rc;
	sn = cfs_node_find(fs, s->pn, s->name, strlen(s->name));
	dn = cfs_node_find(fs, d->pn, d->name, strlen(d->name));
	if (dn && !(flags & RENAME_EXCHANGE)) {
		cfs_node_unhash(fs, dn);
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

static void cfs_rename(fuse_req_t req, fuse_ino_t parent, const char *name, fuse_ino_t newparent,
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
	free(s);
	fuse_reply_err(req, -rc);
}

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
static void cfs_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
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
	char *buf = NULL;
	size_t got = 0;

	pthread_mutex_lock(&fs->mu);
	c = cfs_snap_get(fs, ino);
	if (c && off >= 0 && (uint64_t)off < c->len) {
		got = c->len - (size_t)off < size ? c->len - (size_t)off : size;
		buf = malloc(got);
		if (buf)
			memcpy(buf, c->buf + off, got);
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
 * it is missing is the layout learned, and a file stored as pieces read. */
static int cfs_read_inline(struct cairnfs *fs, fuse_ino_t ino, const char *path, size_t plen,
                           uint64_t off, char *buf, size_t size, size_t *got)
{
	char cur[PK_KEY_BUF];
	struct cfs_node *n;
	size_t clen;
	int rc = cairn_get_range(fs->db, NULL, path, plen, off, buf, size, got);

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

static void cfs_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                     struct fuse_file_info *fi)
{
	struct cairnfs *fs = cfs_of(req);
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
	buf = malloc(size ? size : 1);
	if (!buf) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	pthread_mutex_lock(&fs->mu);
	n = cfs_node_get(fs, ino);
	rc = n ? cfs_node_path(fs, n, path, &plen) : -ENOENT;
	if (!rc && n->wb) {
		rc = cfs_wb_read(fs, n, path, plen, (uint64_t)off, buf, size, &got);
		pthread_mutex_unlock(&fs->mu);
	} else if (!rc && n->lay == CFS_LAY_PIECES) {
		rc = cfs_read_pieces(fs, n, (uint64_t)off, buf, size, &got);
	} else {
		pthread_mutex_unlock(&fs->mu);
		if (!rc)
			rc = cfs_read_inline(fs, ino, path, plen, (uint64_t)off, buf, size, &got);
	}
	if (rc == -ENOENT)
		rc = 0, got = 0; /* gone: an empty read, as from an unlinked file */
	if (rc)
		fuse_reply_err(req, -rc);
	else
		fuse_reply_buf(req, buf, got);
	free(buf);
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

static void cfs_write(fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size, off_t off,
                      struct fuse_file_info *fi)
{
	struct cairnfs *fs = cfs_of(req);
	char path[PK_KEY_BUF];
	struct cfs_node *n;
	size_t plen, before;
	int rc;

	(void)fi;
	if (ino == CFS_INO_CTL0 + CTL_CONTROL) {
		rc = ctl_command(fs, buf, size);
		if (rc)
			fuse_reply_err(req, -rc);
		else
			fuse_reply_write(req, size);
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
	pthread_mutex_unlock(&fs->mu);
	if (rc)
		fuse_reply_err(req, -rc);
	else
		fuse_reply_write(req, size);
}

static void cfs_flush(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct cairnfs *fs = cfs_of(req);
	struct cfs_node *n;
	int rc = 0;

	(void)fi;
	if (!fs->cfg.flush) {
		fuse_reply_err(req, ENOSYS); /* the writes commit themselves */
		return;
	}
	pthread_mutex_lock(&fs->mu);
	n = cfs_node_get(fs, ino);
	if (n && n->wb && n->wb->dirty)
		rc = cfs_commit(fs, n);
	pthread_mutex_unlock(&fs->mu);
	fuse_reply_err(req, -rc);
}

static void cfs_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
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

static void cfs_fsync(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi)
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

static void cfs_fsyncdir(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi)
{
	struct cairnfs *fs = cfs_of(req);

	(void)ino;
	(void)datasync;
	(void)fi;
	fuse_reply_err(req, fs->cfg.read_only ? 0 : -cfs_sync(fs));
}

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
			continue;
		}
		d->d[out++] = *e;
	}
	d->n = out;
	out = 0;
	for (size_t i = 0; i < d->n; i++) {
		struct stat st;
		int type = meta_decide(&d->d[i].p, &def, &st);

		if (type < 0)
			continue;
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
static void cfs_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
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

static void cfs_releasedir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
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

/* Adds one entry to a readdir(plus) reply; returns its size, 0 if full. */
static size_t cfs_dir_emit(fuse_req_t req, struct cairnfs *fs, struct cfs_node *dn,
                           struct cfs_dir *d, size_t i, char *buf, size_t rem, int plus, off_t next)
{
	struct meta_defaults def = cfs_defaults(fs);
	struct fuse_entry_param e;
	struct cfs_dent *de = &d->d[i];
	char name[PK_NAME_MAX + 1];
	struct cfs_node *n = NULL;
	size_t sz;

	memcpy(name, d->names + de->name_off, de->nlen);
	name[de->nlen] = '\0';
	cfs_entry_init(fs, &e);
	meta_decide(&de->p, &def, &e.attr);
	if (!dn) {
		/* the control directory: no lookup is handed out (ino 0) */
		cfs_ctl_stat(fs, CFS_INO_CTL0 + i, &e.attr);
		if (plus)
			return fuse_add_direntry_plus(req, buf, rem, name, &e, next);
		return fuse_add_direntry(req, buf, rem, name, &e.attr, next);
	} else {
		n = cfs_node_find(fs, dn, name, de->nlen);
		e.attr.st_ino = n ? n->ino : 0xffffffffu; /* unknown until looked up */
	}
	if (!plus)
		return fuse_add_direntry(req, buf, rem, name, &e.attr, next);
	if (!n) {
		n = cfs_node_add(fs, dn, name, de->nlen);
		if (!n)
			return 0;
	}
	cfs_fix_size(n, &e.attr);
	e.ino = n->ino;
	e.attr.st_ino = n->ino;
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
	size_t used = 0;
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
			sz = cfs_dir_emit(req, fs, dn, d, (size_t)(i - 2), buf + used, size - used,
			                  plus, i + 1);
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

static void cfs_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                        struct fuse_file_info *fi)
{
	cfs_do_readdir(req, ino, size, off, fi, 0);
}

static void cfs_readdirplus(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                            struct fuse_file_info *fi)
{
	cfs_do_readdir(req, ino, size, off, fi, 1);
}

/* ---- extended attributes ------------------------------------------------------ */

/* Builds the attribute key of (ino, name) under fs->mu; name NULL gives the
 * prefix of all of them. */
static int cfs_xattr_key(struct cairnfs *fs, fuse_ino_t ino, const char *name, char *key,
                         size_t *klen)
{
	char path[PK_KEY_BUF];
	struct cfs_node *n;
	size_t plen;
	int rc;

	if (cfs_is_ctl(ino))
		return -ENOTSUP;
	n = cfs_node_get(fs, ino);
	if (!n)
		return -ENOENT;
	/* no probe: a node that is still hashed names an existing entry */
	rc = cfs_node_path(fs, n, path, &plen);
	if (rc < 0)
		return rc;
	rc = pk_xattr_key(path, plen, name, name ? strlen(name) : 0, key);
	if (rc < 0)
		return rc;
	*klen = (size_t)rc;
	return 0;
}

static void cfs_setxattr(fuse_req_t req, fuse_ino_t ino, const char *name, const char *value,
                         size_t size, int flags)
{
	struct cairnfs *fs = cfs_of(req);
	char key[PK_KEY_BUF];
	struct cairn_key_info info;
	size_t klen;
	int rc;

	if (fs->cfg.read_only) {
		fuse_reply_err(req, EROFS);
		return;
	}
	if (size > XATTR_SIZE_MAX) {
		fuse_reply_err(req, E2BIG);
		return;
	}
	pthread_mutex_lock(&fs->mu);
	rc = cfs_xattr_key(fs, ino, name, key, &klen);
	if (!rc) {
		int found = cairn_key_info(fs->db, NULL, key, klen, &info) == CAIRN_OK;

		if ((flags & XATTR_CREATE) && found)
			rc = -EEXIST;
		else if ((flags & XATTR_REPLACE) && !found)
			rc = -ENODATA;
	}
	if (!rc)
		rc = -cfs_errno(cairn_put(fs->db, key, klen, value, size, 0), ERANGE);
	if (!rc)
		fs->any_xattr = CFS_XATTR_SOME; /* removals must look for attributes */
	pthread_mutex_unlock(&fs->mu);
	fuse_reply_err(req, -rc);
}

/* The reply of getxattr and listxattr: an error, the size the caller asked
 * for with size 0, ERANGE when its buffer is too small, or the bytes. */
static void cfs_reply_xattr(fuse_req_t req, int rc, const void *buf, size_t len, size_t size)
{
	if (rc)
		fuse_reply_err(req, -rc);
	else if (size == 0)
		fuse_reply_xattr(req, len);
	else if (len > size)
		fuse_reply_err(req, ERANGE);
	else
		fuse_reply_buf(req, buf, len);
}

static void cfs_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name, size_t size)
{
	struct cairnfs *fs = cfs_of(req);
	char key[PK_KEY_BUF];
	void *val = NULL;
	size_t klen, vlen = 0;
	int rc;

	pthread_mutex_lock(&fs->mu);
	rc = cfs_xattr_key(fs, ino, name, key, &klen);
	/* the kernel asks for security.capability at each file's first write:
	 * on a mount without attributes that costs no lookup */
	if (!rc && fs->any_xattr == CFS_XATTR_NONE)
		rc = -ENODATA;
	pthread_mutex_unlock(&fs->mu);
	if (rc == -ENOTSUP || rc == -ERANGE)
		rc = -ENODATA;
	if (!rc) {
		rc = cairn_get(fs->db, NULL, key, klen, &val, &vlen);
		rc = rc == CAIRN_ENOTFOUND ? -ENODATA : -cfs_errno(rc, EIO);
	}
	cfs_reply_xattr(req, rc, val, vlen, size);
	cairn_free(val);
}

static void cfs_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size)
{
	struct cairnfs *fs = cfs_of(req);
	struct cairn_iter *it = NULL;
	char key[PK_KEY_BUF];
	char *out = NULL;
	size_t klen, used = 0, cap = 0;
	int rc;

	pthread_mutex_lock(&fs->mu);
	rc = cfs_xattr_key(fs, ino, NULL, key, &klen);
	pthread_mutex_unlock(&fs->mu);
	if (rc == -ENOTSUP) {
		fuse_reply_xattr(req, 0);
		return;
	}
	if (!rc)
		rc = cfs_iter(fs, &it);
	if (!rc)
		cfs_seek_within(it, key, klen, key, klen);
	for (; !rc && cairn_iter_valid(it); cairn_iter_next(it)) {
		size_t kl;
		const char *k = cairn_iter_key(it, &kl);
		size_t nl = kl - klen;

		if (!pk_has_prefix(k, kl, key, klen))
			break;
		if (used + nl + 1 > cap) {
			size_t ncap = (used + nl + 1) * 2;
			char *no = realloc(out, ncap);

			if (!no) {
				rc = -ENOMEM;
				break;
			}
			out = no;
			cap = ncap;
		}
		memcpy(out + used, k + klen, nl);
		out[used + nl] = '\0';
		used += nl + 1;
	}
	if (!rc && it)
		rc = -cfs_errno(cairn_iter_status(it), EIO);
	cairn_iter_free(it);
	cfs_reply_xattr(req, rc, out, used, size);
	free(out);
}

static void cfs_removexattr(fuse_req_t req, fuse_ino_t ino, const char *name)
{
	struct cairnfs *fs = cfs_of(req);
	struct cairn_key_info info;
	char key[PK_KEY_BUF];
	size_t klen;
	int rc;

	if (fs->cfg.read_only) {
		fuse_reply_err(req, EROFS);
		return;
	}
	pthread_mutex_lock(&fs->mu);
	rc = cfs_xattr_key(fs, ino, name, key, &klen);
	if (rc == -ERANGE)
		rc = -ENODATA;
	if (!rc && cairn_key_info(fs->db, NULL, key, klen, &info) != CAIRN_OK)
		rc = -ENODATA;
	if (!rc)
		rc = -cfs_errno(cairn_delete(fs->db, key, klen, 0), EIO);
	pthread_mutex_unlock(&fs->mu);
	fuse_reply_err(req, -rc);
}

/* ---- the rest ---------------------------------------------------------------- */

static void cfs_statfs(fuse_req_t req, fuse_ino_t ino)
{
	struct cairnfs *fs = cfs_of(req);
	struct statvfs sv;

	(void)ino;
	if (statvfs(fs->dbdir, &sv) != 0) {
		fuse_reply_err(req, errno);
		return;
	}
	sv.f_namemax = PK_NAME_MAX;
	fuse_reply_statfs(req, &sv);
}

static void cfs_access(fuse_req_t req, fuse_ino_t ino, int mask)
{
	struct cairnfs *fs = cfs_of(req);
	const struct fuse_ctx *ctx = fuse_req_ctx(req);
	struct stat st;
	mode_t bits;
	int rc;

	pthread_mutex_lock(&fs->mu);
	rc = cfs_stat_ino(fs, ino, &st);
	pthread_mutex_unlock(&fs->mu);
	if (!rc && (mask & W_OK) && fs->cfg.read_only)
		rc = -EROFS;
	if (rc || mask == F_OK) {
		fuse_reply_err(req, -rc);
		return;
	}
	if (ctx->uid == 0) {
		/* root may do anything but execute a file nobody may execute */
		bits = (mask & X_OK) && !S_ISDIR(st.st_mode) && !(st.st_mode & 0111);
		fuse_reply_err(req, bits ? EACCES : 0);
		return;
	}
	if (ctx->uid == st.st_uid)
		bits = (st.st_mode >> 6) & 7;
	else if (ctx->gid == st.st_gid)
		bits = (st.st_mode >> 3) & 7;
	else
		bits = st.st_mode & 7;
	fuse_reply_err(req, ((unsigned)mask & ~bits & 7) ? EACCES : 0);
}

static void cfs_init(void *userdata, struct fuse_conn_info *conn)
{
	struct cairnfs *fs = userdata;

	if (conn->capable & FUSE_CAP_WRITEBACK_CACHE && fs->cfg.writeback && !fs->cfg.read_only)
		conn->want |= FUSE_CAP_WRITEBACK_CACHE;
	if (conn->capable & FUSE_CAP_CACHE_SYMLINKS)
		conn->want |= FUSE_CAP_CACHE_SYMLINKS;
	conn->want &= ~(unsigned)(FUSE_CAP_READDIRPLUS | FUSE_CAP_READDIRPLUS_AUTO);
	if (fs->cfg.readdirplus && conn->capable & FUSE_CAP_READDIRPLUS)
		conn->want |= FUSE_CAP_READDIRPLUS;
	if (fs->cfg.readdirplus == 2 && conn->capable & FUSE_CAP_READDIRPLUS_AUTO)
		conn->want |= FUSE_CAP_READDIRPLUS_AUTO;
	/* without open the kernel would truncate O_TRUNC opens on its own */
	if (!fs->cfg.open)
		conn->want &= ~(unsigned)FUSE_CAP_ATOMIC_O_TRUNC;
	conn->max_write = CFS_MAX_WRITE;
	conn->time_gran = 1;
}

static void cfs_destroy(void *userdata)
{
	struct cairnfs *fs = userdata;
	int rc = cairnfs_commit_all(fs);

	if (rc)
		fuse_log(FUSE_LOG_ERR, "cairnfs: commit at unmount: %s\n", strerror(-rc));
}

static const struct fuse_lowlevel_ops cfs_ops = {
        .init = cfs_init,
        .destroy = cfs_destroy,
        .lookup = cfs_lookup,
        .forget = cfs_forget,
        .forget_multi = cfs_forget_multi,
        .getattr = cfs_getattr,
        .setattr = cfs_setattr,
        .readlink = cfs_readlink,
        .mknod = cfs_mknod,
        .mkdir = cfs_mkdir,
        .unlink = cfs_unlink,
        .rmdir = cfs_rmdir,
        .symlink = cfs_symlink,
        .rename = cfs_rename,
        .link = cfs_link,
        .open = cfs_open,
        .read = cfs_read,
        .write = cfs_write,
        .flush = cfs_flush,
        .release = cfs_release,
        .fsync = cfs_fsync,
        .opendir = cfs_opendir,
        .readdir = cfs_readdir,
        .readdirplus = cfs_readdirplus,
        .releasedir = cfs_releasedir,
        .fsyncdir = cfs_fsyncdir,
        .statfs = cfs_statfs,
        .setxattr = cfs_setxattr,
        .getxattr = cfs_getxattr,
        .listxattr = cfs_listxattr,
        .removexattr = cfs_removexattr,
        .access = cfs_access,
        .create = cfs_create,
};

const struct fuse_lowlevel_ops *cairnfs_ops(void)
{
	return &cfs_ops;
}

/* ---- lifecycle ---------------------------------------------------------------- */

/* The first extent id nothing uses: the high-water mark commits keep
 * (cfs_next_id_key), and past the largest id any piece has, so a new large
 * file never meets pieces or records left by anything before it. */
static int cfs_first_ext_id(struct cairnfs *fs, uint64_t *next)
{
	char end[2] = {'\0', PK_TAG_PIECE + 1};
	unsigned char v[8];
	struct cairn_iter *it;
	uint64_t id, idx;
	size_t klen, got = 0;
	int rc = cairn_get_range(fs->db, NULL, cfs_next_id_key, sizeof(cfs_next_id_key), 0, v,
	                         sizeof(v), &got);

	if (rc && rc != CAIRN_ENOTFOUND)
		return -cfs_errno(rc, EIO);
	*next = 1;
	if (!rc && got == sizeof(v)) {
		uint64_t hw = 0;

		for (int i = 7; i >= 0; i--)
			hw = hw << 8 | v[i];
		if (hw > *next)
			*next = hw;
	}
	rc = cfs_iter(fs, &it);
	if (rc)
		return rc;
	cairn_iter_seek_for_prev(it, end, sizeof(end));
	if (cairn_iter_valid(it)) {
		const char *key = cairn_iter_key(it, &klen);

		if (!ext_key_decode(key, klen, &id, &idx) && id < UINT64_MAX && id + 1 > *next)
			*next = id + 1;
	}
	rc = cairn_iter_status(it);
	cairn_iter_free(it);
	return rc ? -cfs_errno(rc, EIO) : 0;
}

void cairnfs_config_init(struct cairnfs_config *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->sync_interval_ms = -1;
	cfg->background_threads = -1;
	cfg->write_buffer = 4u << 20;
	cfg->write_buffer_total = 64u << 20;
	cfg->inline_max = 1u << 20;
	cfg->timeout = 1e6;
	cfg->writeback = 1;
	cfg->readdirplus = 2;
	cfg->open = 0;
	cfg->flush = 0;
	cfg->uid = getuid();
	cfg->gid = getgid();
}

int cairnfs_open(const struct cairnfs_config *cfg, struct cairnfs **fsp, char *err, size_t errlen)
{
	struct cairn_options o;
	struct cairnfs *fs;
	int rc;

	*fsp = NULL;
	fs = calloc(1, sizeof(*fs));
	if (!fs || !(fs->dbdir = strdup(cfg->dbdir))) {
		free(fs);
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	fs->cfg = *cfg;
	fs->cfg.dbdir = fs->dbdir;
	cairn_options_init(&o);
	o.create_if_missing = 1;
	o.read_only = cfg->read_only;
	if (cfg->memtable_size)
		o.memtable_size = cfg->memtable_size;
	if (cfg->cache_size)
		o.block_cache_size = cfg->cache_size;
	if (cfg->max_open_tables)
		o.max_open_tables = cfg->max_open_tables;
	if (cfg->sync_interval_ms >= 0)
		o.sync_interval_ms = cfg->sync_interval_ms;
	if (cfg->background_threads >= 0)
		o.background_threads = cfg->background_threads;
	rc = cairn_open(cfg->dbdir, &o, &fs->db, err, errlen);
	if (rc) {
		free(fs->dbdir);
		free(fs);
		return -cfs_errno(rc, EINVAL);
	}
	pthread_mutex_init(&fs->mu, NULL);
	fs->root.ino = CFS_INO_ROOT;
	fs->root.hashed = 1;
	fs->root.name = NULL;
	fs->next_ino = CFS_INO_FIRST;
	fs->start_ns = cfs_now();
	rc = cfs_first_ext_id(fs, &fs->next_ext_id);
	if (!rc) {
		struct cairn_iter *it = NULL;

		rc = cfs_iter(fs, &it);
		if (!rc)
			cfs_may_have_xattrs(fs, it); /* learn it now: getxattr asks often */
		cairn_iter_free(it);
	}
	if (rc) {
		snprintf(err, errlen, "cannot scan the extent keys: %s", strerror(-rc));
		cairn_close(fs->db);
		pthread_mutex_destroy(&fs->mu);
		free(fs->dbdir);
		free(fs);
		return rc;
	}
	*fsp = fs;
	return 0;
}

void cairnfs_set_session(struct cairnfs *fs, struct fuse_session *se)
{
	fs->se = se;
}

int cairnfs_close(struct cairnfs *fs)
{
	int rc, rc2;

	if (!fs)
		return 0;
	rc = cairnfs_commit_all(fs);
	for (size_t i = 0; i < fs->by_ino.size; i++) {
		struct cfs_node *n = fs->by_ino.b[i], *next;

		for (; n; n = next) {
			next = n->ino_next;
			cfs_wb_drop(fs, n);
			free(n->name);
			free(n);
		}
	}
	free(fs->by_ino.b);
	free(fs->by_name.b);
	free(fs->lcache.names);
	free(fs->lcache.d);
	while (fs->ctls) {
		struct cfs_ctlsnap *c = fs->ctls;

		fs->ctls = c->next;
		free(c->buf);
		free(c);
	}
	rc2 = cairn_close(fs->db);
	if (rc2 && !rc)
		rc = -cfs_errno(rc2, EIO);
	pthread_mutex_destroy(&fs->mu);
	free(fs->dbdir);
	free(fs);
	return rc;
}

struct cairn_db *cairnfs_db(struct cairnfs *fs)
{
	return fs->db;
}

const char *cairnfs_dbdir(struct cairnfs *fs)
{
	return fs->dbdir;
}

void cairnfs_counters(struct cairnfs *fs, struct cairnfs_counters *c)
{
	pthread_mutex_lock(&fs->mu);
	*c = fs->cnt;
	c->buffered_bytes = fs->buffered;
	pthread_mutex_unlock(&fs->mu);
}
