/*
 * xattr.c: extended attributes.
 * The daemon as a whole, its state and its locking rule: cfs.h.
 */
#include "cfs.h"

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

/* POSIX ACLs are refused (docs/cairnfs.md, "Permissions"): stored as plain
 * attributes the kernel would neither apply them nor keep the mode in step,
 * so cp -p, sed -i and mv would leave files 0600. Refused, tools fall back
 * to chmod. */
static int cfs_xattr_is_acl(const char *name, size_t nlen)
{
	static const char pfx[] = "system.posix_acl_";

	return nlen >= sizeof(pfx) - 1 && !memcmp(name, pfx, sizeof(pfx) - 1);
}

/* Every other system.* name is refused too, as ext4 does: the kernel checks
 * no permission for that namespace and leaves it to the file system, so
 * stored as plain attributes any user could set or remove them on any file,
 * root's included. */
static int cfs_xattr_is_system(const char *name)
{
	return !strncmp(name, "system.", 7);
}

void cfs_setxattr(fuse_req_t req, fuse_ino_t ino, const char *name, const char *value, size_t size,
                  int flags)
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
	if (cfs_xattr_is_system(name)) {
		fuse_reply_err(req, EOPNOTSUPP);
		return;
	}
	pthread_mutex_lock(&fs->mu);
	rc = cfs_xattr_key(fs, ino, name, key, &klen);
	if (!rc) {
		int got = cairn_key_info(fs->db, NULL, key, klen, &info), found = got == CAIRN_OK;

		if (got && got != CAIRN_ENOTFOUND)
			rc = -cfs_errno(got, EIO); /* unknown is not absent */
		else if ((flags & XATTR_CREATE) && found)
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

void cfs_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name, size_t size)
{
	struct cairnfs *fs = cfs_of(req);
	const struct cairn_snapshot *snap = NULL;
	char key[PK_KEY_BUF];
	void *val = NULL;
	size_t klen, vlen = 0;
	int rc;

	pthread_mutex_lock(&fs->mu);
	rc = cfs_xattr_key(fs, ino, name, key, &klen);
	/* the kernel asks for security.capability at each file's first write:
	 * on a mount without attributes that costs no lookup */
	if (!rc && (fs->any_xattr == CFS_XATTR_NONE || cfs_xattr_is_acl(name, strlen(name))))
		rc = -ENODATA; /* an ACL stored by an older cairnfs is not applied either */
	/* read as of when the key named this inode (a rename may follow) */
	if (!rc)
		rc = -cfs_errno(cairn_snapshot_new(fs->db, &snap), EIO);
	pthread_mutex_unlock(&fs->mu);
	if (rc == -ENOTSUP || rc == -ERANGE)
		rc = -ENODATA;
	if (!rc) {
		rc = cairn_get(fs->db, snap, key, klen, &val, &vlen);
		rc = rc == CAIRN_ENOTFOUND ? -ENODATA : -cfs_errno(rc, EIO);
	}
	cairn_snapshot_release(fs->db, snap);
	cfs_reply_xattr(req, rc, val, vlen, size);
	cairn_free(val);
}

void cfs_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size)
{
	struct cairnfs *fs = cfs_of(req);
	struct cairn_iter *it = NULL;
	char key[PK_KEY_BUF];
	char *out = NULL;
	size_t klen, used = 0, cap = 0;
	int rc;

	pthread_mutex_lock(&fs->mu);
	rc = cfs_xattr_key(fs, ino, NULL, key, &klen);
	/* the iterator reads the state in which key named this inode */
	if (!rc)
		rc = cfs_iter(fs, &it);
	pthread_mutex_unlock(&fs->mu);
	if (rc == -ENOTSUP) {
		fuse_reply_xattr(req, 0);
		return;
	}
	if (!rc)
		cfs_seek_within(it, key, klen, key, klen);
	for (; !rc && cairn_iter_valid(it); cairn_iter_next(it)) {
		size_t kl;
		const char *k = cairn_iter_key(it, &kl);
		size_t nl = kl - klen;

		if (!pk_has_prefix(k, kl, key, klen))
			break;
		if (cfs_xattr_is_acl(k + klen, nl))
			continue;
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

void cfs_removexattr(fuse_req_t req, fuse_ino_t ino, const char *name)
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
	/* one stored by an older cairnfs: only root may clear it (the kernel
	 * has checked ownership for an ACL) */
	if (cfs_xattr_is_system(name) && !cfs_xattr_is_acl(name, strlen(name)) &&
	    fuse_req_ctx(req)->uid != 0) {
		fuse_reply_err(req, EPERM);
		return;
	}
	pthread_mutex_lock(&fs->mu);
	rc = cfs_xattr_key(fs, ino, name, key, &klen);
	if (rc == -ERANGE)
		rc = -ENODATA;
	if (!rc) {
		rc = cairn_key_info(fs->db, NULL, key, klen, &info);
		rc = rc == CAIRN_ENOTFOUND ? -ENODATA : -cfs_errno(rc, EIO);
	}
	if (!rc)
		rc = -cfs_errno(cairn_delete(fs->db, key, klen, 0), EIO);
	pthread_mutex_unlock(&fs->mu);
	fuse_reply_err(req, -rc);
}
