/*
 * meta.h - the metadata record cairnfs keeps for a path, and the rule that
 * turns what the database holds for a path into a struct stat.
 *
 * The record is stored as the value of the key "\0m" PATH (pathkey.h), in the
 * same write batch as the data it describes. Its encoding, little-endian:
 *
 *   offset size  field
 *   0      1     version, 1
 *   1      1     type: 1 regular file, 2 directory, 3 symbolic link
 *   2      2     length T of the symlink target (0 for other types)
 *   4      4     mode: permission bits (07777); the type bits are not stored
 *   8      4     uid
 *   12     4     gid
 *   16     8     atime, signed nanoseconds since the epoch
 *   24     8     mtime, likewise
 *   32     8     ctime, likewise
 *   40     T     symlink target bytes (no NUL)
 *
 * Version 2 is the record of a regular file stored as extents (extent.h):
 * bytes 0-39 as above with version 2, type 1 and T 0, then
 *
 *   40     8     file size in bytes
 *   48     8     extent file id (not 0): the file's data is in the keys
 *                "\0d" ID INDEX (extent.h)
 *
 * Version 3 is the record of an entry that has an inode number of its own
 * (every entry cairnfs creates), of any type: bytes 0-39 as above with
 * version 3 (type 1 to 8: 4 FIFO, 5 character device, 6 block device,
 * 7 socket, 8 a name of an entry with several names, whose own record is
 * "\0h" INO "m" and holds the link count), then
 *
 *   40     8     inode number (not 0)
 *   48     8     file size in bytes, with an extent id; else 0
 *   56     8     extent file id, or 0 (the content is the key PATH)
 *   64     8     device number (rdev) of a device, else 0
 *   72     4     link count: 0 for an entry with one name, else the number
 *                 of names (the "\0h" record of an entry with links)
 *   76     4     reserved, 0
 *   80     T     symlink target bytes (no NUL)
 *
 * A record of any other version, an unknown type, or a length other than
 * 40 + T (version 1), 56 (version 2) or 80 + T (version 3) is rejected
 * (EIO): cairnfs never guesses at metadata. Versions 1 and 2 have no inode
 * number: cairnfs derives one from the path (docs/cairnfs.md) and writes
 * version 3 when it rewrites the record with a number.
 */
#ifndef CAIRNFS_META_H
#define CAIRNFS_META_H

#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>

#include "cairn.h"

#define META_VERSION     1
#define META_VERSION_EXT 2
#define META_FIXED       40
#define META_EXT_LEN     56
#define META_VERSION_INO 3
#define META_INO_FIXED   80
/* Largest file size a version 2 record may hold (extent.h, EXT_MAX_FILE):
 * the kernel's own limit for FUSE files (MAX_LFS_FILESIZE), so a write past
 * it fails with EFBIG in write(2), never later at write-back. */
#define META_SIZE_MAX   ((uint64_t)INT64_MAX)
#define META_TARGET_MAX 4095
#define META_BUF        (META_INO_FIXED + META_TARGET_MAX + 1)

enum meta_type {
	META_FILE = 1,
	META_DIR = 2,
	META_SYMLINK = 3,
	META_FIFO = 4,
	META_CHR = 5,
	META_BLK = 6,
	META_SOCK = 7,
	META_LINKED = 8, /* a name of a file with links: see its "\0h" record */
};

struct meta_rec {
	int type;
	uint32_t mode; /* permission bits only */
	uint32_t uid, gid;
	int64_t atime_ns, mtime_ns, ctime_ns;
	size_t tlen;        /* symlink target length */
	const char *target; /* points into the buffer that was decoded */
	uint64_t ext_id;    /* regular file stored as extents: its id, else 0 */
	uint64_t size;      /* with ext_id: the file size */
	uint64_t ino;       /* its inode number, or 0 (versions 1 and 2) */
	uint64_t rdev;      /* a device's number */
	uint32_t nlink;     /* link count, 0 for one name */
};

/* Encodes r into out (at least META_BUF bytes). Returns the length, or
 * -ENAMETOOLONG for a target over META_TARGET_MAX bytes. */
int meta_encode(const struct meta_rec *r, char *out);

/* Decodes a record; r->target then points into buf. Returns 0 or -EIO. */
int meta_decode(const void *buf, size_t len, struct meta_rec *r);

/* Fills a fresh record of the given type: mode, owner, all three times
 * set to now_ns, no target. */
void meta_init(struct meta_rec *r, int type, uint32_t mode, uint32_t uid, uint32_t gid,
               int64_t now_ns);

/* What the database holds for one path, gathered by a lookup or a listing. */
struct meta_probe {
	int has_meta;               /* "\0m" PATH exists and decoded */
	int bad_meta;               /* "\0m" PATH exists but cannot be decoded */
	struct meta_rec meta;       /* valid when has_meta (target not kept) */
	uint64_t meta_seq;          /* sequence of the record's write */
	int data_file;              /* the key PATH exists */
	struct cairn_key_info data; /* valid when data_file */
	int below;                  /* some data or metadata key lies under PATH "/" */
	uint64_t link;              /* PATH is a name of the file with links "\0h" link */
};

/* Owner and time shown for entries that have no record of their own. */
struct meta_defaults {
	uint32_t uid, gid;
	int64_t time_ns;
};

/* The one rule deciding what a path is (docs/cairnfs.md, "Key schema"):
 *   1. a directory record makes a directory, a symlink record a symlink,
 *      the record of a FIFO, device or socket that special file;
 *   2. a file record together with the key PATH makes a regular file; a
 *      file record with extents (version 2) makes one without the key;
 *   3. otherwise any key under PATH "/" makes a directory (the directory
 *      wins over a file key of the same name, which is then hidden);
 *   4. otherwise the key PATH alone makes a regular file, mode 0644, owned by
 *      the defaults, its times the key's write time;
 *   5. otherwise the path does not exist.
 * When the key PATH was written after its record (by an embedding program),
 * the key's write time is the mtime and ctime. A record that cannot be
 * decoded makes the path fail closed: -EIO, never defaults. Fills *st (all
 * but st_ino) and returns the enum meta_type, -ENOENT or -EIO. */
int meta_decide(const struct meta_probe *p, const struct meta_defaults *d, struct stat *st);

#endif /* CAIRNFS_META_H */
