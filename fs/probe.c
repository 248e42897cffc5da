/*
 * probe.c: what a path is, read from the database (records, content, subtrees).
 * The daemon as a whole, its state and its locking rule: cfs.h.
 */
#include "cfs.h"

/* ---- probing the database ------------------------------------------------ */

int cfs_iter(struct cairnfs *fs, struct cairn_iter **it)
{
	int rc = cairn_iter_new(fs->db, NULL, it);

	if (rc)
		cfs_log_engine(fs, "iterator", rc);
	return rc ? -cfs_errno(rc, EIO) : 0;
}

int cfs_iter_is(struct cairn_iter *it, const void *k, size_t kl)
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
void cfs_seek_within(struct cairn_iter *it, const char *key, size_t klen, const char *pfx,
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

/* Returns 1 or 0, or -1 when the iterator failed (its status says why). */
static int cfs_below(struct cairn_iter *it, const char *k, size_t kl, char *tmp)
{
	const char *key;
	size_t klen;

	if (!cairn_iter_valid(it))
		return cairn_iter_status(it) ? -1 : 0;
	key = cairn_iter_key(it, &klen);
	if (!pk_has_prefix(key, klen, k, kl))
		return 0;
	if (klen > kl && key[kl] == '/')
		return 1;
	memcpy(tmp, k, kl);
	tmp[kl] = '/';
	cairn_iter_seek(it, tmp, kl + 1);
	if (!cairn_iter_valid(it))
		return cairn_iter_status(it) ? -1 : 0;
	key = cairn_iter_key(it, &klen);
	return pk_has_prefix(key, klen, tmp, kl + 1);
}

/* Turns the probe of a name of a file with links (a META_LINKED record)
 * into the probe of that file: its record "\0h" INO "m" (copied into mbuf
 * when given) and its content "\0h" INO, by point lookups. A name whose file
 * is missing counts as no record, one whose record is bad as a bad record. */
static int cfs_link_resolve(struct cairnfs *fs, struct meta_probe *p, char *mbuf)
{
	char lpath[PK_ORPHAN_LEN], mk[PK_KEY_BUF], rec[META_BUF];
	struct cairn_key_info info;
	uint64_t id = p->meta.ino;
	size_t got = 0;
	int mkl, rc;

	p->has_meta = 0;
	pk_pseudo_path(PK_TAG_LINK, id, lpath);
	mkl = pk_sys_key(PK_TAG_META, lpath, PK_ORPHAN_LEN, mk);
	rc = cairn_key_info(fs->db, NULL, mk, (size_t)mkl, &info);
	if (rc == CAIRN_OK)
		rc = cairn_get_range(fs->db, NULL, mk, (size_t)mkl, 0, rec, sizeof(rec), &got);
	if (rc == CAIRN_OK && !meta_decode(rec, got, &p->meta) && p->meta.type != META_LINKED &&
	    p->meta.type != META_DIR) {
		p->has_meta = 1;
		p->meta_seq = info.seq;
		p->link = id;
		if (mbuf) {
			memcpy(mbuf, rec, got);
			p->meta.target = mbuf + (p->meta.target - rec);
		} else {
			p->meta.target = NULL;
		}
		rc = cairn_key_info(fs->db, NULL, lpath, PK_ORPHAN_LEN, &p->data);
		p->data_file = rc == CAIRN_OK;
	} else if (rc == CAIRN_OK) {
		p->bad_meta = 1; /* fails closed, as a bad record of the name would */
		fs->cnt.bad_records++;
	}
	if (rc && rc != CAIRN_ENOTFOUND) {
		cfs_log_engine(fs, "probe", rc);
		return -cfs_errno(rc, EIO);
	}
	return 0;
}

/* Decodes the record under the iterator into p; the value is copied into
 * mbuf (META_BUF bytes) when given, so a symlink target outlives the
 * iterator. An undecodable record marks the path bad (meta_decide fails it
 * with EIO) and is counted and logged; one that cannot be read at all is an
 * error (-EIO), never a missing record. */
int cfs_take_meta(struct cairnfs *fs, struct cairn_iter *it, struct meta_probe *p, char *mbuf)
{
	struct cairn_key_info info;
	const void *v;
	size_t vlen;

	v = cairn_iter_value(it, &vlen);
	if (!v) {
		int rc = cairn_iter_status(it);

		cfs_log_engine(fs, "record read", rc ? rc : CAIRN_EIO);
		return -cfs_errno(rc ? rc : CAIRN_EIO, EIO);
	}
	if (mbuf && vlen <= META_BUF) {
		memcpy(mbuf, v, vlen);
		v = mbuf;
	}
	if (meta_decode(v, vlen, &p->meta) != 0) {
		size_t klen;
		const char *k = cairn_iter_key(it, &klen);

		p->bad_meta = 1;
		fs->cnt.bad_records++;
		fuse_log(FUSE_LOG_ERR,
		         "cairnfs: the metadata record of '%.*s' (%zu bytes) cannot be decoded: "
		         "EIO\n",
		         klen > 2 ? (int)(klen - 2) : 0, k + 2, vlen);
		return 0;
	}
	if (!mbuf)
		p->meta.target = NULL;
	cairn_iter_info(it, &info);
	p->has_meta = 1;
	p->meta_seq = info.seq;
	if (p->meta.type == META_LINKED)
		return cfs_link_resolve(fs, p, mbuf);
	return 0;
}

/* The iterator's error as a negative errno (logged), or 0. An iterator
 * error is checked after every move that could end a walk early, before the
 * next seek: a seek starts afresh and would hide it. */
int cfs_iter_check(struct cairnfs *fs, struct cairn_iter *it, const char *what)
{
	int rc = cairn_iter_status(it);

	if (rc)
		cfs_log_engine(fs, what, rc);
	return rc ? -cfs_errno(rc, EIO) : 0;
}

/* Gathers what the database holds for path (meta.h, struct meta_probe),
 * with the iterator it (left bounded to what it looked at last). */
int cfs_probe_with(struct cairnfs *fs, struct cairn_iter *it, const char *path, size_t plen,
                   struct meta_probe *p, char *mbuf)
{
	char mk[PK_KEY_BUF], tmp[PK_KEY_BUF];
	int mkl, rc, below;

	memset(p, 0, sizeof(*p));
	mkl = pk_sys_key(PK_TAG_META, path, plen, mk);
	if (mkl < 0)
		return mkl;
	cfs_seek_within(it, mk, (size_t)mkl, mk, (size_t)mkl);
	if (cfs_iter_is(it, mk, (size_t)mkl)) {
		rc = cfs_take_meta(fs, it, p, mbuf);
		if (rc)
			return rc;
		cairn_iter_next(it);
	}
	if ((rc = cfs_iter_check(fs, it, "probe")) || plen == 0) {
		p->below = 1; /* the root always exists */
		return rc;
	}
	if (p->has_meta && p->meta.type != META_FILE)
		return 0;
	below = cfs_below(it, mk, (size_t)mkl, tmp);
	if (below < 0)
		return cfs_iter_check(fs, it, "probe");
	p->below = below;
	cfs_seek_within(it, path, plen, path, plen);
	if (cfs_iter_is(it, path, plen)) {
		p->data_file = 1;
		cairn_iter_info(it, &p->data);
		cairn_iter_next(it);
	}
	if ((rc = cfs_iter_check(fs, it, "probe")))
		return rc;
	if (!below && !(p->has_meta && p->data_file)) {
		below = cfs_below(it, path, plen, tmp);
		p->below = below > 0;
	}
	return cfs_iter_check(fs, it, "probe");
}

/* The probe of an entry cairnfs wrote, by point lookups (bloom filters let
 * them skip tables; an iterator seeks every table): a directory or symlink
 * record settles it, a file record with its key PATH or extents too.
 * Returns 1 when settled, 0 when the iterator must look (no record: maybe a
 * directory made by keys below; a file record without its key), or a
 * negative errno. */
int cfs_probe_point(struct cairnfs *fs, const char *path, size_t plen, struct meta_probe *p,
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
		return 0; /* the iterator marks it bad */
	if (mbuf && p->meta.target) {
		memcpy(mbuf, rec, got);
		p->meta.target = mbuf + (p->meta.target - rec);
	} else {
		p->meta.target = NULL;
	}
	p->has_meta = 1;
	p->meta_seq = info.seq;
	if (p->meta.type == META_LINKED) {
		rc = cfs_link_resolve(fs, p, mbuf);
		return rc ? rc : p->has_meta;
	}
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

struct meta_defaults cfs_defaults(struct cairnfs *fs)
{
	struct meta_defaults d = {fs->cfg.uid, fs->cfg.gid, fs->start_ns};

	return d;
}

/* stat of path: returns the meta_type or a negative errno. */
int cfs_stat_path(struct cairnfs *fs, const char *path, size_t plen, struct stat *st,
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
	rc = meta_decide(p, &d, st);
	if (rc >= 0)
		st->st_ino = cfs_ino_of(p, rc, path, plen);
	return rc;
}

/* The inode number of an entry without one of its own: FNV-1a of its path
 * with the top bit set, so it never meets an allocated one; the root is 1. */
uint64_t cfs_path_ino(const char *path, size_t plen)
{
	uint64_t h = 1469598103934665603ull;

	if (plen == 0)
		return CFS_INO_ROOT;
	for (size_t i = 0; i < plen; i++)
		h = (h ^ (unsigned char)path[i]) * 1099511628211ull;
	return h | CFS_INO_DERIVED;
}

/* The inode number of the entry of the given type at path, found by p. */
uint64_t cfs_ino_of(const struct meta_probe *p, int type, const char *path, size_t plen)
{
	if (p->has_meta && p->meta.type == type && p->meta.ino)
		return p->meta.ino;
	return cfs_path_ino(path, plen);
}

static const char cfs_ino_key[2] = {'\0', PK_TAG_INO};

/* Reads the reservation at mount: numbers from it up are free. */
int cfs_ino_load(struct cairnfs *fs)
{
	unsigned char v[8];
	size_t got = 0;
	int rc = cairn_get_range(fs->db, NULL, cfs_ino_key, sizeof(cfs_ino_key), 0, v, sizeof(v),
	                         &got);

	fs->ino_next = CFS_INO_FIRST;
	if (rc == CAIRN_ENOTFOUND)
		rc = CAIRN_OK, got = 0;
	if (rc)
		return -cfs_errno(rc, EIO);
	if (got == sizeof(v)) {
		uint64_t hw = 0;

		for (int i = 7; i >= 0; i--)
			hw = hw << 8 | v[i];
		if (hw > fs->ino_next && hw < CFS_INO_DERIVED)
			fs->ino_next = hw;
	}
	fs->ino_limit = fs->ino_next;
	return 0;
}

/* Hands out a new inode number, under fs->mu. Numbers are reserved
 * CFS_INO_RESERVE at a time by a write of "\0i" of its own, logged before
 * any record that holds one of them, so a crash can skip numbers but never
 * hand one out twice; a create costs no extra key. */
int cfs_ino_alloc(struct cairnfs *fs, uint64_t *ino)
{
	if (fs->ino_next >= fs->ino_limit) {
		uint64_t lim = fs->ino_next + CFS_INO_RESERVE;
		char v[8];
		int rc;

		if (lim >= CFS_INO_DERIVED)
			return -ENOSPC;
		for (int i = 0; i < 8; i++)
			v[i] = (char)(lim >> (8 * i));
		rc = cairn_put(fs->db, cfs_ino_key, sizeof(cfs_ino_key), v, sizeof(v), 0);
		if (rc) {
			cfs_log_engine(fs, "inode number reservation", rc);
			return -cfs_errno(rc, EIO);
		}
		fs->ino_limit = lim;
	}
	*ino = fs->ino_next++;
	return 0;
}

/* Reads the record of path, or builds the default one for what it is now. */
int cfs_get_meta(struct cairnfs *fs, const char *path, size_t plen, struct meta_rec *r, char *mbuf)
{
	struct meta_probe p;
	struct stat st;
	int type = cfs_stat_path(fs, path, plen, &st, &p, mbuf);

	if (type < 0)
		return type;
	cfs_meta_of(&p, type, &st, r);
	return type;
}

/* The record of an entry of the given type from what its probe found, or
 * the default one (its stat st) when it has none of its own. */
void cfs_meta_of(const struct meta_probe *p, int type, const struct stat *st, struct meta_rec *r)
{
	if (p->has_meta && p->meta.type == type) {
		*r = p->meta;
		if (type == META_FILE && p->data.seq > p->meta_seq)
			r->mtime_ns = r->ctime_ns = p->data.mtime_ns;
		return;
	}
	meta_init(r, type, st->st_mode & 07777, st->st_uid, st->st_gid, 0);
	r->atime_ns = (int64_t)st->st_atim.tv_sec * 1000000000 + st->st_atim.tv_nsec;
	r->mtime_ns = (int64_t)st->st_mtim.tv_sec * 1000000000 + st->st_mtim.tv_nsec;
	r->ctime_ns = (int64_t)st->st_ctim.tv_sec * 1000000000 + st->st_ctim.tv_nsec;
}

int cfs_batch_meta(struct cairn_batch *b, const char *path, size_t plen, const struct meta_rec *r)
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

/* Writes b, with the deletions of forgotten orphans queued so far
 * (orphan.c): they ride along instead of costing a write each. */
int cfs_write_batch(struct cairnfs *fs, struct cairn_batch *b, int toobig)
{
	int gone = fs->gone_n && !cfs_gone_batch(fs, b);
	int rc = cairn_write(fs->db, b, 0);

	fs->wgen++;
	if (rc)
		cfs_log_engine(fs, "write", rc);
	else if (gone)
		cfs_gone_done(fs);
	return -cfs_errno(rc, toobig);
}

/* Puts into b the record of the directory holding path with its mtime and
 * ctime set to now, as an entry added, removed or renamed in it changes
 * them. Only a directory with a record has times of its own (and the root,
 * which gets one): a directory that exists only because keys lie below it
 * shows the mount time and must still vanish with its last key. Returns 1
 * when a record was put, 0 when the parent has none, or a negative errno. */
int cfs_batch_touch_parent(struct cairnfs *fs, struct cairn_batch *b, const char *path, size_t plen,
                           int64_t now)
{
	char mk[PK_KEY_BUF], rec[META_BUF];
	size_t dlen = plen, got = 0;
	struct meta_defaults d;
	struct meta_rec r;
	int mkl, rc;

	while (dlen > 0 && path[dlen - 1] != '/')
		dlen--;
	if (dlen > 0)
		dlen--; /* the slash */
	mkl = pk_sys_key(PK_TAG_META, path, dlen, mk);
	if (mkl < 0)
		return mkl;
	rc = cairn_get_range(fs->db, NULL, mk, (size_t)mkl, 0, rec, sizeof(rec), &got);
	if (rc == CAIRN_OK && got < sizeof(rec) && !meta_decode(rec, got, &r) &&
	    r.type == META_DIR) {
		/* decoded: fields kept, times moved */
	} else if (rc == CAIRN_ENOTFOUND && dlen == 0) {
		d = cfs_defaults(fs);
		meta_init(&r, META_DIR, 0755, d.uid, d.gid, d.time_ns);
	} else if (rc == CAIRN_OK || rc == CAIRN_ENOTFOUND) {
		return 0;
	} else {
		cfs_log_engine(fs, "directory record", rc);
		return -cfs_errno(rc, EIO);
	}
	r.mtime_ns = r.ctime_ns = now;
	rc = cfs_batch_meta(b, path, dlen, &r);
	return rc < 0 ? rc : 1;
}
