/*
 * orphan.c: files unlinked or replaced while the kernel holds them.
 * The daemon as a whole, its state and its locking rule: cfs.h.
 *
 * A program may go on reading and writing a file after its name is gone
 * (temporary files, databases, editors), as long as it holds a descriptor.
 * With open=0 the daemon never hears of open(2) or close(2): what it knows is
 * the kernel's lookup count, so a regular file whose node the kernel holds
 * when its name is unlinked or renamed over becomes an orphan. A large
 * file's record moves to "\0o" INO "m" (pathkey.h) in the batch that removes
 * the name, so its pieces, which stay where they are, always have an owner;
 * a small file is kept in memory until something changes it, and then
 * written to "\0o" INO (cfs_batch_orphan). The node then answers for the pseudo-path
 * "\0o" INO, so reads, writes, setattr and fsync need nothing of their own.
 * The orphan's keys are deleted when the kernel forgets the node (in the
 * common case with the next batch written anyway, cfs_orphan_gone); those left
 * by a daemon that stopped first are deleted at the next mount (and at an
 * orderly unmount).
 */
#include "cfs.h"

/* Whether the kernel may still use n: it holds a lookup, or a handle. */
int cfs_node_held(const struct cfs_node *n)
{
	return n && (n->nlookup || n->nopen);
}

/* Prepares the orphan of the regular file at path, found by probe p, whose
 * name the batch b removes: its record (ctime now, as unlink sets it) and
 * content. A file stored as pieces keeps them: its record goes to the orphan
 * keys in b, and 1 is returned (the caller must not drop the pieces). A
 * small file's value is read into *mo and stays in memory, costing b
 * nothing: most such files are never read again and are forgotten at once
 * (the kernel looked the name up to remove it), and after a crash the
 * kernel can use no orphan anyway; cfs_orphan_store() writes it to the
 * orphan keys at the first change. Returns 0 then, or a negative errno. */
int cfs_batch_orphan(struct cairnfs *fs, struct cairn_batch *b, struct cfs_node *n,
                     const char *path, size_t plen, const struct meta_probe *p,
                     struct cfs_memorphan **mo)
{
	struct meta_defaults d = cfs_defaults(fs);
	char opath[PK_ORPHAN_LEN];
	struct meta_rec r;
	struct stat st;
	size_t size = p->data_file ? (size_t)p->data.size : 0, got = 0;
	int rc;

	if (meta_decide(p, &d, &st) != META_FILE)
		return -EINVAL;
	cfs_meta_of(p, META_FILE, &st, &r);
	r.ino = cfs_ino_of(p, META_FILE, path, plen); /* the number it had */
	r.ctime_ns = cfs_now();
	if (r.ext_id && !p->data_file) {
		pk_orphan_path(n->ino, opath);
		rc = cfs_batch_meta(b, opath, PK_ORPHAN_LEN, &r);
		return rc ? rc : 1;
	}
	/* the key PATH holds the content; pieces a record names are stale */
	r.ext_id = 0;
	r.size = 0;
	*mo = malloc(sizeof(**mo) + (size ? size : 1));
	if (!*mo)
		return -ENOMEM;
	rc = size ? cairn_get_range(fs->db, NULL, path, plen, 0, (*mo)->data, size, &got) : 0;
	if (rc && rc != CAIRN_ENOTFOUND) {
		cfs_log_engine(fs, "read for orphan", rc);
		free(*mo);
		*mo = NULL;
		return -cfs_errno(rc, EIO);
	}
	(*mo)->r = r;
	(*mo)->len = rc ? 0 : got;
	return 0;
}

/* Turns n into the orphan cfs_batch_orphan() prepared, once its batch is
 * written, taking mo (NULL for a file stored as pieces): its layout is what
 * the probe p found, so no lookup is needed to read it. */
void cfs_orphan_made(struct cfs_node *n, const struct meta_probe *p, struct cfs_memorphan *mo)
{
	n->orphan = 1;
	n->mo = mo;
	if (!mo) {
		n->lay = CFS_LAY_PIECES;
		n->ext_id = p->meta.ext_id;
		n->base = p->meta.size;
	} else {
		n->lay = CFS_LAY_INLINE;
		n->ext_id = 0;
		n->base = mo->len;
	}
	if (n->wb && !n->wb->dirty && n->wb->size != n->base) {
		wbuf_free(n->wb);
		wbuf_init(n->wb, n->base);
	}
}

/* Writes the orphan n keeps in memory to its keys, before anything changes
 * it (or reads it through the keys). Under fs->mu. */
int cfs_orphan_store(struct cairnfs *fs, struct cfs_node *n)
{
	char opath[PK_ORPHAN_LEN];
	struct cairn_batch *b = NULL;
	int rc;

	if (!n->mo)
		return 0;
	pk_orphan_path(n->ino, opath);
	rc = -cfs_errno(cairn_batch_new(&b), EIO);
	if (!rc)
		rc = -cfs_errno(cairn_batch_put(b, opath, PK_ORPHAN_LEN, n->mo->data, n->mo->len),
		                EFBIG);
	if (!rc)
		rc = cfs_batch_meta(b, opath, PK_ORPHAN_LEN, &n->mo->r);
	if (!rc)
		rc = cfs_write_batch(fs, b, EFBIG);
	cairn_batch_free(b);
	if (rc)
		return rc;
	free(n->mo);
	n->mo = NULL;
	return 0;
}

/* stat of an orphan kept in memory. */
void cfs_orphan_stat(struct cairnfs *fs, struct cfs_node *n, struct stat *st)
{
	struct meta_defaults d = cfs_defaults(fs);
	struct meta_probe p;

	memset(&p, 0, sizeof(p));
	p.has_meta = 1;
	p.meta = n->mo->r;
	p.data_file = 1;
	p.data.size = n->mo->len;
	meta_decide(&p, &d, st);
	st->st_ino = n->mo->r.ino;
}

/* Reads [off, off + size) of an orphan kept in memory into buf. */
size_t cfs_orphan_read(const struct cfs_node *n, uint64_t off, char *buf, size_t size)
{
	size_t len = n->mo->len;

	if (off >= len)
		return 0;
	if (size > len - off)
		size = (size_t)(len - off);
	memcpy(buf, n->mo->data + off, size);
	return size;
}

/* The extent id the orphan's record names, read when the node does not know. */
static uint64_t cfs_orphan_ext_id(struct cairnfs *fs, struct cfs_node *n, const char *opath)
{
	char k[PK_KEY_BUF], rec[META_BUF];
	struct meta_rec r;
	size_t got = 0;
	int kl;

	if (n->lay == CFS_LAY_PIECES)
		return n->ext_id;
	if (n->lay == CFS_LAY_INLINE)
		return 0;
	kl = pk_sys_key(PK_TAG_META, opath, PK_ORPHAN_LEN, k);
	if (kl < 0 || cairn_get_range(fs->db, NULL, k, (size_t)kl, 0, rec, sizeof(rec), &got) ||
	    meta_decode(rec, got, &r))
		return 0;
	return r.ext_id;
}

/* Queues the deletion of key in fs->gone. */
static int cfs_gone_add(struct cairnfs *fs, const char *key, size_t klen)
{
	if (fs->gone_len + 1 + klen > fs->gone_cap) {
		size_t ncap = fs->gone_cap ? fs->gone_cap * 2 : 1024;
		char *nb = realloc(fs->gone, ncap);

		if (!nb)
			return -ENOMEM;
		fs->gone = nb;
		fs->gone_cap = ncap;
	}
	fs->gone[fs->gone_len++] = (char)klen;
	memcpy(fs->gone + fs->gone_len, key, klen);
	fs->gone_len += klen;
	fs->gone_n++;
	return 0;
}

/* Adds the deletions queued in fs->gone to b; cfs_gone_done() forgets them
 * once b is written. */
int cfs_gone_batch(struct cairnfs *fs, struct cairn_batch *b)
{
	for (size_t off = 0; off < fs->gone_len;) {
		size_t klen = (unsigned char)fs->gone[off++];
		int rc = cairn_batch_delete(b, fs->gone + off, klen);

		if (rc)
			return -cfs_errno(rc, EIO);
		off += klen;
	}
	return 0;
}

void cfs_gone_done(struct cairnfs *fs)
{
	fs->gone_len = 0;
	fs->gone_n = 0;
}

/* Deletes the keys of orphan n, which the kernel forgot, under fs->mu. In
 * the common case (a small file on a mount without extended attributes) its
 * content and record are only queued, without looking: the next batch any
 * request writes carries them (cfs_write_batch), so an unlink costs no write
 * of its own at the forget; cfs_orphans_flush() writes them when many are
 * queued. With pieces or attributes, a scan finds them and a batch of its
 * own deletes them at once. Nothing here needs the log synced: an orphan a
 * crash brings back is deleted at the next mount. */
void cfs_orphan_gone(struct cairnfs *fs, struct cfs_node *n)
{
	char opath[PK_ORPHAN_LEN], k[PK_KEY_BUF];
	struct cairn_iter *it = NULL;
	struct cairn_batch *b = NULL;
	uint64_t id;
	int kl, rc;

	free(n->mo); /* never written: nothing to delete */
	n->mo = NULL;
	if (fs->cfg.read_only)
		return;
	pk_orphan_path(n->ino, opath);
	id = cfs_orphan_ext_id(fs, n, opath);
	kl = pk_sys_key(PK_TAG_META, opath, PK_ORPHAN_LEN, k);
	if (!id && fs->any_xattr == CFS_XATTR_NONE) {
		rc = cfs_gone_add(fs, opath, PK_ORPHAN_LEN);
		if (!rc)
			rc = cfs_gone_add(fs, k, (size_t)kl);
		if (rc)
			fuse_log(FUSE_LOG_ERR,
			         "cairnfs: orphan %llu kept until the next mount: %s\n",
			         (unsigned long long)n->ino, strerror(-rc));
		return;
	}
	rc = -cfs_errno(cairn_batch_new(&b), EIO);
	if (!rc)
		rc = -cfs_errno(cairn_batch_delete(b, opath, PK_ORPHAN_LEN), EIO);
	if (!rc)
		rc = -cfs_errno(cairn_batch_delete(b, k, (size_t)kl), EIO);
	if (!rc)
		rc = cfs_iter(fs, &it);
	if (!rc && id)
		rc = cfs_drop_pieces(it, b, id, 0);
	if (!rc && fs->any_xattr != CFS_XATTR_NONE) {
		kl = pk_xattr_key(opath, PK_ORPHAN_LEN, NULL, 0, k);
		rc = cfs_batch_drop_from(it, b, k, (size_t)kl, (size_t)kl);
	}
	if (!rc)
		rc = -cfs_errno(cairn_write(fs->db, b, 0), EIO);
	cairn_iter_free(it);
	cairn_batch_free(b);
	if (rc)
		fuse_log(FUSE_LOG_ERR, "cairnfs: orphan %llu kept until the next mount: %s\n",
		         (unsigned long long)n->ino, strerror(-rc));
}

/* Writes the queued deletions when many wait (or with force, any), under
 * fs->mu; cfs_write_batch() writes them sooner with the next batch. */
void cfs_orphans_flush(struct cairnfs *fs, int force)
{
	struct cairn_batch *b = NULL;
	int rc;

	if (!fs->gone_n || (!force && fs->gone_n < CFS_GONE_MAX))
		return;
	rc = cairn_batch_new(&b);
	if (!rc)
		rc = -cfs_gone_batch(fs, b);
	if (!rc)
		rc = cairn_write(fs->db, b, 0);
	cairn_batch_free(b);
	if (rc) {
		cfs_log_engine(fs, "deleting orphans", rc);
		return;
	}
	cfs_gone_done(fs);
}

/* Adds to b the deletion of every file with links whose last name is gone
 * (marked "\0u" INO), counting the keys in *keys. */
static int cfs_links_clean(struct cairnfs *fs, struct cairn_iter *it, struct cairn_iter *pit,
                           struct cairn_batch *b, unsigned long *keys)
{
	static const char pfx[2] = {'\0', PK_TAG_UNLINK};
	int rc = 0;

	for (cfs_seek_within(it, pfx, 2, pfx, 2); !rc && cairn_iter_valid(it);
	     cairn_iter_next(it)) {
		char lpath[PK_ORPHAN_LEN];
		struct meta_probe p;
		struct stat st;
		size_t klen;
		const char *key = cairn_iter_key(it, &klen);
		uint64_t id = 0;

		if (klen != PK_ORPHAN_LEN)
			continue;
		for (int i = 0; i < 8; i++)
			id = id << 8 | (unsigned char)key[2 + i];
		pk_pseudo_path(PK_TAG_LINK, id, lpath);
		rc = cfs_stat_path(fs, lpath, PK_ORPHAN_LEN, &st, &p, NULL);
		if (rc == -ENOENT || (rc >= 0 && !p.meta.nlink))
			rc = cfs_batch_drop_link(pit, b, id,
			                         p.meta.type == META_FILE ? p.meta.ext_id : 0);
		else if (rc >= 0)
			rc = -cfs_errno(cairn_batch_delete(b, key, klen), EIO); /* named again */
		(*keys)++;
	}
	if (!rc && cairn_iter_status(it))
		rc = -cfs_errno(cairn_iter_status(it), EIO);
	return rc;
}

/* Deletes every orphan in the database, and the pieces their records name:
 * at mount, what a daemon that stopped without its forgets left behind, and
 * at unmount what the kernel still held. */
int cfs_orphans_clean(struct cairnfs *fs)
{
	static const char pfx[2] = {'\0', PK_TAG_ORPHAN};
	struct cairn_iter *it = NULL, *pit = NULL;
	struct cairn_batch *b = NULL;
	unsigned long orphans = 0, keys = 0;
	int rc = cfs_iter(fs, &it);

	if (!rc)
		rc = cfs_iter(fs, &pit);
	if (!rc)
		rc = -cfs_errno(cairn_batch_new(&b), EIO);
	for (cfs_seek_within(it, pfx, 2, pfx, 2); !rc && cairn_iter_valid(it);
	     cairn_iter_next(it)) {
		size_t klen, vlen;
		const char *key = cairn_iter_key(it, &klen);
		const void *val;
		struct meta_rec r;

		rc = -cfs_errno(cairn_batch_delete(b, key, klen), EIO);
		keys++;
		if (rc || klen != PK_ORPHAN_LEN + 1 || key[PK_ORPHAN_LEN] != PK_TAG_META)
			continue;
		orphans++;
		val = cairn_iter_value(it, &vlen);
		if (!val) {
			/* unreadable: its pieces would be left behind unnamed */
			rc = cfs_iter_check(fs, it, "orphan record");
			rc = rc ? rc : -EIO;
		} else if (!meta_decode(val, vlen, &r) && r.type == META_FILE && r.ext_id) {
			rc = cfs_drop_pieces(pit, b, r.ext_id, 0);
		}
	}
	if (!rc && cairn_iter_status(it))
		rc = -cfs_errno(cairn_iter_status(it), EIO);
	if (!rc)
		rc = cfs_links_clean(fs, it, pit, b, &keys);
	if (!rc && keys)
		rc = -cfs_errno(cairn_write(fs->db, b, 0), EIO);
	if (!rc && orphans)
		fuse_log(FUSE_LOG_INFO, "cairnfs: deleted %lu orphaned files\n", orphans);
	cairn_batch_free(b);
	cairn_iter_free(pit);
	cairn_iter_free(it);
	return rc;
}
