/*
 * meta.c - metadata record codec and the path-type rule (see meta.h).
 *
 * Fixed-width little-endian fields keep the record trivially portable and
 * checkable: a reader validates version, type and exact length before it
 * trusts a single field.
 */
#include <errno.h>
#include <string.h>

#include "meta.h"

static void meta_put32(char *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (char)(v >> (8 * i));
}

static void meta_put64(char *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (char)(v >> (8 * i));
}

static uint32_t meta_get32(const unsigned char *p)
{
	uint32_t v = 0;

	for (int i = 3; i >= 0; i--)
		v = (v << 8) | p[i];
	return v;
}

static uint64_t meta_get64(const unsigned char *p)
{
	uint64_t v = 0;

	for (int i = 7; i >= 0; i--)
		v = (v << 8) | p[i];
	return v;
}

int meta_encode(const struct meta_rec *r, char *out)
{
	size_t tlen = r->type == META_SYMLINK ? r->tlen : 0;

	if (tlen > META_TARGET_MAX)
		return -ENAMETOOLONG;
	if (r->ino)
		out[0] = META_VERSION_INO;
	else
		out[0] = r->type == META_FILE && r->ext_id ? META_VERSION_EXT : META_VERSION;
	out[1] = (char)r->type;
	out[2] = (char)(tlen & 0xff);
	out[3] = (char)(tlen >> 8);
	meta_put32(out + 4, r->mode & 07777);
	meta_put32(out + 8, r->uid);
	meta_put32(out + 12, r->gid);
	meta_put64(out + 16, (uint64_t)r->atime_ns);
	meta_put64(out + 24, (uint64_t)r->mtime_ns);
	meta_put64(out + 32, (uint64_t)r->ctime_ns);
	if (out[0] == META_VERSION_INO) {
		meta_put64(out + 40, r->ino);
		meta_put64(out + 48, r->type == META_FILE && r->ext_id ? r->size : 0);
		meta_put64(out + 56, r->type == META_FILE ? r->ext_id : 0);
		meta_put64(out + 64, r->type == META_CHR || r->type == META_BLK ? r->rdev : 0);
		meta_put32(out + 72, r->nlink);
		meta_put32(out + 76, 0);
		if (tlen)
			memcpy(out + META_INO_FIXED, r->target, tlen);
		return (int)(META_INO_FIXED + tlen);
	}
	if (tlen)
		memcpy(out + META_FIXED, r->target, tlen);
	if (out[0] == META_VERSION_EXT) {
		meta_put64(out + 40, r->size);
		meta_put64(out + 48, r->ext_id);
		return META_EXT_LEN;
	}
	return (int)(META_FIXED + tlen);
}

int meta_decode(const void *buf, size_t len, struct meta_rec *r)
{
	const unsigned char *p = buf;
	size_t tlen;

	if (len < META_FIXED || p[0] < META_VERSION || p[0] > META_VERSION_INO)
		return -EIO;
	if (p[1] < META_FILE || p[1] > (p[0] == META_VERSION_INO ? META_LINKED : META_SYMLINK))
		return -EIO;
	tlen = (size_t)p[2] | ((size_t)p[3] << 8);
	r->ext_id = 0;
	r->size = 0;
	r->ino = 0;
	r->rdev = 0;
	r->nlink = 0;
	r->target = (const char *)p + META_FIXED;
	if (p[0] == META_VERSION_INO) {
		if (len != META_INO_FIXED + tlen || (tlen && p[1] != META_SYMLINK) ||
		    tlen > META_TARGET_MAX)
			return -EIO;
		r->ino = meta_get64(p + 40);
		r->size = meta_get64(p + 48);
		r->ext_id = meta_get64(p + 56);
		r->rdev = meta_get64(p + 64);
		r->nlink = meta_get32(p + 72);
		r->target = (const char *)p + META_INO_FIXED;
		if (!r->ino || r->size > META_SIZE_MAX ||
		    ((r->ext_id || r->size) && p[1] != META_FILE) || (r->size && !r->ext_id) ||
		    (r->rdev && p[1] != META_CHR && p[1] != META_BLK) || meta_get32(p + 76))
			return -EIO;
	} else if (p[0] == META_VERSION_EXT) {
		if (len != META_EXT_LEN || p[1] != META_FILE || tlen)
			return -EIO;
		r->size = meta_get64(p + 40);
		r->ext_id = meta_get64(p + 48);
		if (!r->ext_id || r->size > META_SIZE_MAX)
			return -EIO;
	} else if (len != META_FIXED + tlen || (tlen && p[1] != META_SYMLINK) ||
	           tlen > META_TARGET_MAX) {
		return -EIO;
	}
	r->type = p[1];
	r->mode = meta_get32(p + 4) & 07777;
	r->uid = meta_get32(p + 8);
	r->gid = meta_get32(p + 12);
	r->atime_ns = (int64_t)meta_get64(p + 16);
	r->mtime_ns = (int64_t)meta_get64(p + 24);
	r->ctime_ns = (int64_t)meta_get64(p + 32);
	r->tlen = tlen;
	return 0;
}

void meta_init(struct meta_rec *r, int type, uint32_t mode, uint32_t uid, uint32_t gid,
               int64_t now_ns)
{
	memset(r, 0, sizeof(*r));
	r->type = type;
	r->mode = mode & 07777;
	r->uid = uid;
	r->gid = gid;
	r->atime_ns = r->mtime_ns = r->ctime_ns = now_ns;
}

static struct timespec meta_ts(int64_t ns)
{
	struct timespec ts;
	int64_t s = ns / 1000000000;
	int64_t rem = ns % 1000000000;

	if (rem < 0) {
		rem += 1000000000;
		s--;
	}
	ts.tv_sec = (time_t)s;
	ts.tv_nsec = (long)rem;
	return ts;
}

static void meta_fill(struct stat *st, mode_t type, uint32_t mode, uint32_t uid, uint32_t gid,
                      int64_t at, int64_t mt, int64_t ct)
{
	st->st_mode = type | (mode & 07777);
	st->st_nlink = 1; /* directories too: 1 tells find(1) the count is unknown */
	st->st_uid = uid;
	st->st_gid = gid;
	st->st_atim = meta_ts(at);
	st->st_mtim = meta_ts(mt);
	st->st_ctim = meta_ts(ct);
	st->st_blksize = 128 * 1024;
}

static int meta_from_rec(const struct meta_probe *p, struct stat *st, mode_t type)
{
	const struct meta_rec *m = &p->meta;
	int64_t mt = m->mtime_ns, ct = m->ctime_ns;

	if (type == S_IFREG && p->data.seq > p->meta_seq) {
		/* written through the API after the record: its time wins */
		mt = p->data.mtime_ns;
		ct = p->data.mtime_ns;
	}
	meta_fill(st, type, m->mode, m->uid, m->gid, m->atime_ns, mt, ct);
	if (m->nlink)
		st->st_nlink = m->nlink;
	return 0;
}

int meta_decide(const struct meta_probe *p, const struct meta_defaults *d, struct stat *st)
{
	memset(st, 0, sizeof(*st));
	if (p->bad_meta)
		return -EIO;
	if (p->has_meta && p->meta.type == META_DIR) {
		meta_from_rec(p, st, S_IFDIR);
		return META_DIR;
	}
	if (p->has_meta && p->meta.type == META_SYMLINK) {
		meta_from_rec(p, st, S_IFLNK);
		st->st_size = (off_t)p->meta.tlen;
		return META_SYMLINK;
	}
	if (p->has_meta && p->meta.type >= META_FIFO && p->meta.type <= META_SOCK) {
		static const mode_t fmt[] = {S_IFIFO, S_IFCHR, S_IFBLK, S_IFSOCK};

		meta_from_rec(p, st, fmt[p->meta.type - META_FIFO]);
		st->st_rdev = (dev_t)p->meta.rdev;
		return p->meta.type;
	}
	if (p->has_meta && p->meta.type == META_FILE && p->data_file) {
		meta_from_rec(p, st, S_IFREG);
		st->st_size = (off_t)p->data.size;
		st->st_blocks = (blkcnt_t)((p->data.size + 511) / 512);
		return META_FILE;
	}
	if (p->has_meta && p->meta.type == META_FILE && p->meta.ext_id) {
		meta_fill(st, S_IFREG, p->meta.mode, p->meta.uid, p->meta.gid, p->meta.atime_ns,
		          p->meta.mtime_ns, p->meta.ctime_ns);
		if (p->meta.nlink)
			st->st_nlink = p->meta.nlink;
		st->st_size = (off_t)p->meta.size;
		st->st_blocks = (blkcnt_t)((p->meta.size + 511) / 512);
		return META_FILE;
	}
	if (p->below) {
		meta_fill(st, S_IFDIR, 0755, d->uid, d->gid, d->time_ns, d->time_ns, d->time_ns);
		return META_DIR;
	}
	if (p->data_file) {
		int64_t t = p->data.mtime_ns;

		meta_fill(st, S_IFREG, 0644, d->uid, d->gid, t, t, t);
		st->st_size = (off_t)p->data.size;
		st->st_blocks = (blkcnt_t)((p->data.size + 511) / 512);
		return META_FILE;
	}
	return -ENOENT;
}
