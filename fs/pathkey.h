/*
 * pathkey.h - the pure mapping between file paths and cairn keys.
 *
 * A path is the file's name below the mount point without a leading slash:
 * MOUNT/a/b/c is the path "a/b/c", the root is the empty path "". The file's
 * content is the value of the key equal to its path. Metadata lives in the
 * system keyspace (keys that start with byte 0x00):
 *
 *   "\0m" PATH              the metadata record of PATH (see meta.h)
 *   "\0x" PATH "\0" NAME    the value of extended attribute NAME of PATH
 *   "\0d" ID INDEX          a piece of a large file (see extent.h)
 *   "\0n"                   the next extent id, u64 little-endian
 *   "\0i"                   above every inode number a record holds, u64
 *                           little-endian (a reservation: see cfs_ino_alloc)
 *   "\0o" INO               the content of an orphan: a file unlinked or
 *                           replaced while the kernel still held it (INO
 *                           8 bytes big-endian, the daemon's node id)
 *   "\0o" INO "m"           its metadata record
 *   "\0o" INO "x" NAME      its extended attribute NAME
 *
 *   "\0h" INO               the content of a file with several names (hard
 *                           links; INO 8 bytes big-endian, its inode number)
 *   "\0h" INO "m"           its metadata record, with the link count
 *   "\0h" INO "x" NAME      its extended attribute NAME
 *   "\0u" INO               a file with links whose last name is gone while
 *                           the kernel still holds it (empty value)
 *
 * An orphan is named by the pseudo-path "\0o" INO, a file with links by
 * "\0h" INO: the functions below that
 * build a record or attribute key from a path give an orphan's keys when
 * handed one, so the code that reads and writes a file works on an orphan
 * unchanged. Orphans live until the kernel forgets the inode, or until the
 * next mount when the daemon stopped first.
 *
 * Paths never contain a NUL byte, so the NUL after PATH ends it unambiguously.
 * Nothing here touches the database: these functions only compute bytes, so
 * they are unit tested and fuzzed on their own (tests/test_pathkey.c).
 */
#ifndef CAIRNFS_PATHKEY_H
#define CAIRNFS_PATHKEY_H

#include <stddef.h>
#include <stdint.h>

#include "cairn.h"

/* Longest name of one path component (NAME_MAX). */
#define PK_NAME_MAX 255
/* Longest path: PATH_MAX less its NUL, the longest path a system call
 * takes, so every path below the mount point a program can name from the
 * mount's root works. Deeper entries, reached through a relative path from
 * a directory below, are refused (ENAMETOOLONG). */
#define PK_PATH_MAX 4095
/* A buffer that holds any key these functions build, plus a NUL. */
#define PK_KEY_BUF (CAIRN_MAX_KEY_SIZE + 8)
/* Longest extended attribute name (XATTR_NAME_MAX). */
#define PK_XATTR_NAME_MAX 255
/* Every key built from a path fits: the longest is an attribute's. */
_Static_assert(2 + PK_PATH_MAX + 1 + PK_XATTR_NAME_MAX <= CAIRN_MAX_KEY_SIZE,
               "\\0x PATH \\0 NAME must fit in one key");

/* Second byte of a system key: which table of the system keyspace. */
#define PK_TAG_META    'm'
#define PK_TAG_XATTR   'x'
#define PK_TAG_PIECE   'd'
#define PK_TAG_NEXT_ID 'n'
#define PK_TAG_ORPHAN  'o'
#define PK_TAG_INO     'i'
#define PK_TAG_LINK    'h'
#define PK_TAG_UNLINK  'u'

/* Length of an orphan's pseudo-path "\0o" INO. */
#define PK_ORPHAN_LEN 10

/* Writes the pseudo-path of orphan ino into out (PK_ORPHAN_LEN bytes). */
void pk_orphan_path(uint64_t ino, char *out);

/* Writes into out (PK_ORPHAN_LEN bytes) the pseudo-path "\0" tag INO of
 * orphan ino (tag PK_TAG_ORPHAN) or of the file with links ino (PK_TAG_LINK). */
void pk_pseudo_path(char tag, uint64_t ino, char *out);

/* Nonzero if path is an orphan's pseudo-path. */
int pk_is_orphan(const char *path, size_t plen);

/* Nonzero if path is a pseudo-path, an orphan's or a file's with links. */
int pk_is_pseudo(const char *path, size_t plen);

/* Checks one path component: 0 if it can be a file name, -EINVAL if it is
 * empty, "." or "..", or holds '/' or NUL, -ENAMETOOLONG if it is longer than
 * PK_NAME_MAX bytes. */
int pk_name_check(const char *name, size_t len);

/* Nonzero if the key is a path every component of which passes
 * pk_name_check(), i.e. a key cairnfs can show as a file. System keys and the
 * empty key are not paths. */
int pk_key_is_path(const void *key, size_t klen);

/* Writes dir + "/" + name (or just name when dir is the root "") to out,
 * which holds cap bytes, NUL-terminates it and stores its length in *olen.
 * Returns 0, or -ENAMETOOLONG when the result exceeds PK_PATH_MAX or cap. */
int pk_join(const char *dir, size_t dlen, const char *name, size_t nlen, char *out, size_t cap,
            size_t *olen);

/* Length of the parent of path: 0 for a top-level name ("a"), else the
 * length up to the last '/' ("a/b/c" -> 3, "a/b"). */
size_t pk_parent_len(const char *path, size_t len);

/* The last component of path; its length goes to *blen. */
const char *pk_base(const char *path, size_t len, size_t *blen);

/* Nonzero if path is dir itself or lies under it ("a" contains "a" and
 * "a/b", not "ab"). The root contains every path. */
int pk_in_subtree(const char *dir, size_t dlen, const char *path, size_t plen);

/* Writes the prefix shared by the keys of dir's children into out: "" for
 * the root, else dir + "/". Returns its length. out holds PK_KEY_BUF bytes. */
size_t pk_dir_prefix(const char *dir, size_t dlen, char *out);

/* Given a key that starts with a directory prefix of plen bytes, finds the
 * child it belongs to: *nlen is the length of the child's name (which starts
 * at key + plen) and *deeper is 1 when the key lies below that child (the
 * child is a directory), 0 when the key is the child itself. Returns 0, or -1
 * when the key is the prefix itself (no child). */
int pk_child(const void *key, size_t klen, size_t plen, size_t *nlen, int *deeper);

/* Writes into out the first key after every key under child + "/", i.e.
 * child + "0" ('0' is '/' + 1), where child is the key (or key prefix) of one
 * child. Seeking there skips the child's whole subtree but not siblings such
 * as child + ".txt", which sort before child + "/". Returns the length, or
 * -ENAMETOOLONG if it does not fit in a key. */
int pk_subtree_end(const void *child, size_t clen, char *out);

/* Writes "\0" tag + path into out (PK_KEY_BUF bytes); for a pseudo-path,
 * path + tag. Returns the length, or -ENAMETOOLONG if the key
 * would exceed CAIRN_MAX_KEY_SIZE. */
int pk_sys_key(char tag, const char *path, size_t plen, char *out);

/* Writes "\0x" + path + "\0" + name into out (PK_KEY_BUF bytes), for an
 * pseudo-path path + "x" + name. With name
 * NULL writes the prefix shared by all attributes of path ("\0x" path "\0").
 * Returns the length, or -ENAMETOOLONG (-ERANGE for a name over
 * PK_XATTR_NAME_MAX). */
int pk_xattr_key(const char *path, size_t plen, const char *name, size_t nlen, char *out);

/* Nonzero if key starts with the prefix. */
int pk_has_prefix(const void *key, size_t klen, const void *prefix, size_t plen);

#endif /* CAIRNFS_PATHKEY_H */
