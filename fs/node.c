/*
 * node.c: small helpers and the node table (inode numbers <-> (parent, name)).
 * The daemon as a whole, its state and its locking rule: cfs.h.
 */
#include "cfs.h"

static void cfs_link_remove(struct cairnfs *fs, struct cfs_node *n);

/* ---- small helpers ------------------------------------------------------ */

struct cairnfs *cfs_of(fuse_req_t req)
{
	return fuse_req_userdata(req);
}

int64_t cfs_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Maps a cairn status to an errno; toobig is what CAIRN_ETOOBIG means here. */
int cfs_errno(int rc, int toobig)
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

void cfs_log_engine(struct cairnfs *fs, const char *what, int rc)
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

struct cfs_node *cfs_node_get(struct cairnfs *fs, fuse_ino_t ino)
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

struct cfs_node *cfs_node_find(struct cairnfs *fs, struct cfs_node *parent, const char *name,
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

void cfs_node_unhash(struct cairnfs *fs, struct cfs_node *n)
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

struct cfs_node *cfs_node_add(struct cairnfs *fs, struct cfs_node *parent, const char *name,
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
	fs->name_bytes += nlen + 1;
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

void cfs_wb_drop(struct cairnfs *fs, struct cfs_node *n)
{
	if (n->trunc_at) { /* a deferred truncation goes with its buffer */
		n->trunc_at = 0;
		fs->ntrunc--;
	}
	if (!n->wb)
		return;
	fs->buffered -= n->wb->bytes;
	wbuf_free(n->wb);
	free(n->wb);
	n->wb = NULL;
}

/* Frees n, and then its parent, while nothing refers to them. */
void cfs_node_maybe_free(struct cairnfs *fs, struct cfs_node *n)
{
	while (n != &fs->root && !n->nlookup && !n->nchild && !n->nopen) {
		struct cfs_node *parent = n->parent, **pp;
		int rc = n->trunc_at ? cfs_commit(fs, n) : 0; /* before the buffer goes */

		if (rc)
			fuse_log(FUSE_LOG_ERR, "cairnfs: deferred truncation: %s\n", strerror(-rc));

		if (n->orphan) {
			cfs_orphan_gone(fs, n);
		} else if (n->link) {
			cfs_link_remove(fs, n);
			cfs_link_gone(fs, n); /* its names may all be gone */
		}
		cfs_node_unhash(fs, n);
		pp = &fs->by_ino.b[cfs_hash_ino(n->ino) & (fs->by_ino.size - 1)];
		while (*pp != n)
			pp = &(*pp)->ino_next;
		*pp = n->ino_next;
		fs->by_ino.count--;
		fs->cnt.nodes--;
		fs->name_bytes -= n->nlen + 1;
		cfs_wb_drop(fs, n);
		free(n->name);
		free(n);
		parent->nchild--;
		n = parent;
	}
}

/* Relinks n as (parent, name): the rename of a whole subtree. */
int cfs_node_move(struct cairnfs *fs, struct cfs_node *n, struct cfs_node *parent, const char *name,
                  size_t nlen)
{
	char *nm = malloc(nlen + 1);
	struct cfs_node *old = n->parent;

	if (!nm)
		return -ENOMEM;
	memcpy(nm, name, nlen);
	nm[nlen] = '\0';
	cfs_node_unhash(fs, n);
	free(n->name);
	fs->name_bytes += nlen - n->nlen;
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
int cfs_node_path(struct cairnfs *fs, struct cfs_node *n, char *buf, size_t *len)
{
	size_t total = 0, pos;
	struct cfs_node *p;

	if (n->orphan || n->link) {
		/* its data does not live under a name */
		if (n->orphan)
			pk_orphan_path(n->ino, buf);
		else
			pk_pseudo_path(PK_TAG_LINK, n->link, buf);
		*len = PK_ORPHAN_LEN;
		return 0;
	}
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

/* ---- nodes of files with links ------------------------------------------ */

/* A file with several names has one node, whatever name the kernel looked
 * up, so the kernel keeps one inode (one page cache, one size) for it. That
 * node is reachable by its file id alone (fs->by_link), not by a name. */
#define CFS_LINK_BUCKETS 4096

struct cfs_node *cfs_link_node(struct cairnfs *fs, uint64_t id)
{
	struct cfs_node *n;

	if (!fs->by_link)
		return NULL;
	n = fs->by_link[cfs_hash_ino(id) % CFS_LINK_BUCKETS];
	while (n && n->link != id)
		n = n->link_next;
	return n;
}

/* Makes n the node of file id: it stops standing for a name. */
int cfs_link_insert(struct cairnfs *fs, struct cfs_node *n, uint64_t id)
{
	size_t h = cfs_hash_ino(id) % CFS_LINK_BUCKETS;

	if (!fs->by_link && !(fs->by_link = calloc(CFS_LINK_BUCKETS, sizeof(*fs->by_link))))
		return -ENOMEM;
	cfs_node_unhash(fs, n);
	n->link = id;
	n->link_next = fs->by_link[h];
	fs->by_link[h] = n;
	return 0;
}

static void cfs_link_remove(struct cairnfs *fs, struct cfs_node *n)
{
	struct cfs_node **pp = &fs->by_link[cfs_hash_ino(n->link) % CFS_LINK_BUCKETS];

	while (*pp && *pp != n)
		pp = &(*pp)->link_next;
	if (*pp)
		*pp = n->link_next;
}

/* Finds or makes the node of file id, met as (parent, name), and takes one
 * lookup on it. */
struct cfs_node *cfs_link_ref(struct cairnfs *fs, struct cfs_node *parent, const char *name,
                              size_t nlen, uint64_t id)
{
	struct cfs_node *n = cfs_link_node(fs, id);

	if (!n) {
		n = cfs_node_add(fs, parent, name, nlen);
		if (n && cfs_link_insert(fs, n, id)) {
			cfs_node_maybe_free(fs, n);
			n = NULL;
		}
	}
	if (n)
		n->nlookup++;
	return n;
}
