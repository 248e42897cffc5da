/*
 * pathkey.c - path <-> key mapping for cairnfs (see pathkey.h).
 *
 * All functions are pure: they read their arguments, write the caller's
 * buffer and never allocate. Lengths are checked before every copy, so a
 * hostile name (from the kernel) or key (from the database) cannot overflow.
 */
#include <errno.h>
#include <string.h>

#include "pathkey.h"

int pk_name_check(const char *name, size_t len)
{
	if (len == 0)
		return -EINVAL;
	if (len > PK_NAME_MAX)
		return -ENAMETOOLONG;
	if (name[0] == '.' && (len == 1 || (len == 2 && name[1] == '.')))
		return -EINVAL;
	if (memchr(name, '/', len) || memchr(name, '\0', len))
		return -EINVAL;
	return 0;
}

int pk_key_is_path(const void *key, size_t klen)
{
	const char *k = key;
	size_t start = 0;

	if (klen == 0 || klen > PK_PATH_MAX || k[0] == '\0')
		return 0;
	for (size_t i = 0; i <= klen; i++) {
		if (i < klen && k[i] != '/')
			continue;
		if (pk_name_check(k + start, i - start) != 0)
			return 0;
		start = i + 1;
	}
	return 1;
}

int pk_join(const char *dir, size_t dlen, const char *name, size_t nlen, char *out, size_t cap,
            size_t *olen)
{
	size_t sep = dlen ? 1 : 0;
	size_t total = dlen + sep + nlen;

	if (total > PK_PATH_MAX || total + 1 > cap)
		return -ENAMETOOLONG;
	memmove(out, dir, dlen);
	if (sep)
		out[dlen] = '/';
	memcpy(out + dlen + sep, name, nlen);
	out[total] = '\0';
	*olen = total;
	return 0;
}

size_t pk_parent_len(const char *path, size_t len)
{
	while (len > 0 && path[len - 1] != '/')
		len--;
	return len ? len - 1 : 0;
}

const char *pk_base(const char *path, size_t len, size_t *blen)
{
	size_t p = pk_parent_len(path, len);
	size_t start = p ? p + 1 : 0;

	*blen = len - start;
	return path + start;
}

int pk_in_subtree(const char *dir, size_t dlen, const char *path, size_t plen)
{
	if (dlen == 0)
		return 1;
	if (plen < dlen || memcmp(dir, path, dlen) != 0)
		return 0;
	return plen == dlen || path[dlen] == '/';
}

size_t pk_dir_prefix(const char *dir, size_t dlen, char *out)
{
	if (dlen == 0)
		return 0;
	memcpy(out, dir, dlen);
	out[dlen] = '/';
	return dlen + 1;
}

int pk_child(const void *key, size_t klen, size_t plen, size_t *nlen, int *deeper)
{
	const char *rest = (const char *)key + plen;
	const char *slash;

	if (klen <= plen)
		return -1;
	slash = memchr(rest, '/', klen - plen);
	*nlen = slash ? (size_t)(slash - rest) : klen - plen;
	*deeper = slash != NULL;
	return 0;
}

int pk_subtree_end(const void *child, size_t clen, char *out)
{
	if (clen + 1 > CAIRN_MAX_KEY_SIZE)
		return -ENAMETOOLONG;
	memcpy(out, child, clen);
	out[clen] = '/' + 1;
	return (int)clen + 1;
}

void pk_pseudo_path(char tag, uint64_t ino, char *out)
{
	out[0] = '\0';
	out[1] = tag;
	for (int i = 0; i < 8; i++)
		out[2 + i] = (char)(ino >> (56 - 8 * i));
}

void pk_orphan_path(uint64_t ino, char *out)
{
	pk_pseudo_path(PK_TAG_ORPHAN, ino, out);
}

int pk_is_orphan(const char *path, size_t plen)
{
	return plen == PK_ORPHAN_LEN && path[0] == '\0' && path[1] == PK_TAG_ORPHAN;
}

int pk_is_pseudo(const char *path, size_t plen)
{
	return plen == PK_ORPHAN_LEN && path[0] == '\0' &&
	       (path[1] == PK_TAG_ORPHAN || path[1] == PK_TAG_LINK);
}

int pk_sys_key(char tag, const char *path, size_t plen, char *out)
{
	if (pk_is_pseudo(path, plen)) {
		memcpy(out, path, plen);
		out[plen] = tag;
		return (int)plen + 1;
	}
	if (plen + 2 > CAIRN_MAX_KEY_SIZE)
		return -ENAMETOOLONG;
	out[0] = '\0';
	out[1] = tag;
	memcpy(out + 2, path, plen);
	return (int)plen + 2;
}

int pk_xattr_key(const char *path, size_t plen, const char *name, size_t nlen, char *out)
{
	size_t n = name ? nlen : 0;

	if (n > PK_XATTR_NAME_MAX)
		return -ERANGE;
	if (plen + 3 + n > CAIRN_MAX_KEY_SIZE)
		return -ENAMETOOLONG;
	if (pk_is_pseudo(path, plen)) {
		memcpy(out, path, plen);
		out[plen] = PK_TAG_XATTR;
		if (n)
			memcpy(out + plen + 1, name, n);
		return (int)(plen + 1 + n);
	}
	out[0] = '\0';
	out[1] = PK_TAG_XATTR;
	memcpy(out + 2, path, plen);
	out[2 + plen] = '\0';
	if (n)
		memcpy(out + 3 + plen, name, n);
	return (int)(plen + 3 + n);
}

int pk_has_prefix(const void *key, size_t klen, const void *prefix, size_t plen)
{
	return klen >= plen && memcmp(key, prefix, plen) == 0;
}
