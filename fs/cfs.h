/*
 * cfs.h - the internal header of the cairnfs daemon: its state, its node
 * table and the functions its files share (cairnfs.h is the outside view).
 * Each .c file of the daemon holds one concern and includes only this.
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
 * Locking rule. One mutex (fs->mu) guards the node table and the buffers
 * and is held across every namespace change, its probes and its engine
 * write included, so a path computed under it is the path the database
 * holds and two changes never interleave. What it covers must therefore
 * cost in proportion to names, never to file sizes: a rename lists the
 * subtree's keys and lets the engine move the values (cairn_batch_copy:
 * a blob value by reference), so renaming a directory of 200 files of
 * 1 MiB holds it for milliseconds and holds no file data in memory. It is
 * released around what may take long and needs no table: reads of
 * unbuffered data, the log sync of fsync, control commands. One thread of
 * the daemon's own, the sweeper (commit.c), started with the first
 * deferred truncation, takes fs->mu once a second to commit the
 * truncations no write followed. A read done outside it takes a snapshot
 * (or an iterator) under it together with the path, so it reads the key as
 * it was when the path named that inode, never what a rename put there
 * since.
 *
 * Every walk with an iterator checks cairn_iter_status() once it ends and
 * before any later seek (a seek starts afresh and would hide the error),
 * and a value it cannot read (cairn_iter_value() NULL) fails the operation:
 * nothing acts on part of what it meant to read.
 */
#ifndef CFS_H
#define CFS_H

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/statvfs.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

#include "cairnfs.h"
#include "meta.h"
#include "pathkey.h"
#include "extent.h"
#include "wbuf.h"
#include "bufpool.h"

/* Fixed inode numbers: the root and the control files. */
#define CFS_INO_ROOT   1
#define CFS_INO_CTLDIR 2
#define CFS_INO_CTL0   3 /* CFS_INO_CTL0 + enum ctl_file */
#define CFS_INO_FIRST  16
#define CFS_INO_SNAP0  (1ull << 62) /* statistics snapshots: CFS_INO_SNAP0 + n */
#define CFS_CTL_NAME   ".cairn"
/* Inode numbers shown in st_ino (docs/cairnfs.md, "Inode numbers"): those
 * records hold are allocated from CFS_INO_FIRST up; an entry without one
 * (written through the API, or by an older cairnfs) shows a number derived
 * from its path, with the top bit set. Node ids are the daemon's own. */
#define CFS_INO_DERIVED (1ull << 63)
#define CFS_INO_RESERVE 4096 /* numbers reserved by one write of "\0i" */
#define CFS_GONE_MAX    256  /* orphan keys queued for deletion before a write */
/* The system key holding the next extent id (pathkey.h), defined in commit.c. */
extern const char cfs_next_id_key[2];

#define CFS_MAX_WRITE (1024 * 1024)

struct cfs_node {
	struct cfs_node *name_next; /* chain in the (parent, name) table */
	struct cfs_node *ino_next;  /* chain in the inode table */
	struct cfs_node *parent;
	char *name;
	size_t nlen;
	uint64_t hash; /* cfs_hash_name(parent, name): compared before the name */
	uint64_t ino;
	uint64_t nlookup;           /* lookups the kernel holds */
	unsigned nchild;            /* child nodes pointing here */
	unsigned nopen;             /* open file handles */
	int hashed;                 /* reachable by name: not unlinked or replaced */
	int orphan;                 /* unlinked or replaced while held: data under "\0o" ino */
	struct cfs_memorphan *mo;   /* an orphan still kept in memory, or NULL */
	uint64_t link;              /* the node of the file with links "\0h" link */
	struct cfs_node *link_next; /* chain in fs->by_link */
	struct wbuf *wb;            /* buffered writes, or NULL */
	int lay;                    /* how the content is stored: enum cfs_layout */
	uint64_t ext_id;            /* CFS_LAY_PIECES: the extent id */
	uint64_t base;              /* committed size, once lay is known */
	uint64_t gen;               /* the generation the kernel is told with the inode number */
	int stale;     /* a write failed: the kernel's view is being dropped (fileio.c) */
	int own_known; /* a directory's mode and group below are known (perm.c) */
	uint32_t own_mode, own_gid;
	int64_t trunc_at; /* when a truncation to 0 was deferred (commit.c), or 0 */
	uint64_t stored;  /* CFS_LAY_PIECES: bytes of its pieces, when stored_known */
	int stored_known; /* (sparse.c; forgotten at each commit) */
	unsigned nsub;    /* a directory's subdirectories, when nsub_known (dir.c) */
	int nsub_known;
};

/* How a regular file's content is stored (extent.h). Only this daemon
 * changes the database while it is mounted, so once learned the layout of a
 * node stays true until its own commits change it. */
enum cfs_layout {
	CFS_LAY_UNKNOWN,
	CFS_LAY_INLINE, /* the value of the key PATH (or nothing yet) */
	CFS_LAY_PIECES, /* pieces "\0d" ID INDEX named by a version 2 record */
};

/* A small orphan not yet written to its keys (orphan.c). */
struct cfs_memorphan {
	struct meta_rec r;
	size_t len;
	char data[];
};

/* What fs->any_xattr knows. */
enum { CFS_XATTR_UNKNOWN, CFS_XATTR_NONE, CFS_XATTR_SOME };

struct cfs_table {
	struct cfs_node **b;
	size_t size; /* power of two */
	size_t count;
};

/* A listing, kept in cookie order. A readdir offset is the cookie of the
 * last entry returned (dir.c): a hash of the name, so a listing rebuilt
 * after the directory changed resumes after the same name and returns every
 * entry not added or removed meanwhile exactly once. */
struct cfs_dent {
	size_t name_off;
	size_t nlen;
	uint64_t cookie;
	struct meta_probe p;
};

struct cfs_dir {
	char *names;
	size_t nused, ncap;
	struct cfs_dent *d;
	size_t n, cap;
	uint64_t gen; /* fs->wgen when built: older means stale */
	int built;
	int err;
};

struct cairnfs {
	struct cairnfs_config cfg;
	char *dbdir;
	struct cairn_db *db;
	int ro_lock; /* -o ro: a shared flock on LOCK (cairnfs.c), or -1 */
	struct fuse_session *se;
	pthread_mutex_t mu;
	struct cfs_table by_name, by_ino;
	struct cfs_node **by_link; /* nodes of files with links, by file id */
	struct cfs_node root;
	uint64_t next_ino;
	size_t buffered;
	int64_t start_ns;
	uint64_t next_snap;
	uint64_t wgen;         /* writes so far: a listing older than this is stale */
	struct cfs_dir lcache; /* the listing of lcache_ino, when opendir is off */
	size_t listing_bytes;  /* held by listings: lcache and open directories */
	size_t name_bytes;     /* held by the names of nodes */
	struct bufpool pool;   /* request-sized buffers (bufpool.h) */
	fuse_ino_t lcache_ino;
	int any_xattr;     /* whether some attribute key may exist (cfs_may_have_xattrs) */
	unsigned ntrunc;   /* nodes with a deferred truncation (trunc_at) */
	pthread_t sweeper; /* commits deferred truncations no write followed */
	pthread_cond_t sweep_cv;
	int sweep_state;          /* 0 none, 1 running, 2 asked to stop */
	int flush_enosys;         /* flush=0 may answer ENOSYS: the kernel writes back anyway */
	uint64_t next_ext_id;     /* the extent id the next large file gets */
	unsigned notifying;       /* threads telling the kernel of failed writes (fileio.c) */
	uint64_t ino_next;        /* the inode number the next new entry gets */
	uint64_t ino_limit;       /* numbers below it are reserved in "\0i" */
	struct cfs_ctlsnap *ctls; /* rendered statistics files the kernel holds */
	char *gone;               /* keys of forgotten orphans to delete: (u8 length, key)... */
	size_t gone_len, gone_cap, gone_n;
	char result[CAIRNFS_RESULT_MAX]; /* outcome of the last control command */
	char *ctl_text;                  /* what "control" holds: commands written (fileio.c) */
	size_t ctl_len;
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

/* ---- node.c: small helpers and the node table (inode numbers <-> (parent, name)) */

struct cairnfs *cfs_of(fuse_req_t req);
int64_t cfs_now(void);
int cfs_errno(int rc, int toobig);
void cfs_log_engine(struct cairnfs *fs, const char *what, int rc);
struct cfs_node *cfs_node_get(struct cairnfs *fs, fuse_ino_t ino);
struct cfs_node *cfs_node_find(struct cairnfs *fs, struct cfs_node *parent, const char *name,
                               size_t nlen);
void cfs_node_unhash(struct cairnfs *fs, struct cfs_node *n);
struct cfs_node *cfs_node_add(struct cairnfs *fs, struct cfs_node *parent, const char *name,
                              size_t nlen);
void cfs_wb_drop(struct cairnfs *fs, struct cfs_node *n);
void cfs_node_maybe_free(struct cairnfs *fs, struct cfs_node *n);
int cfs_node_move(struct cairnfs *fs, struct cfs_node *n, struct cfs_node *parent, const char *name,
                  size_t nlen);
int cfs_node_path(struct cairnfs *fs, struct cfs_node *n, char *buf, size_t *len);
struct cfs_node *cfs_link_node(struct cairnfs *fs, uint64_t id);
int cfs_link_insert(struct cairnfs *fs, struct cfs_node *n, uint64_t id);
struct cfs_node *cfs_link_ref(struct cairnfs *fs, struct cfs_node *parent, const char *name,
                              size_t nlen, uint64_t id);

/* ---- probe.c: what a path is, read from the database (records, content, subtrees) */

int cfs_iter(struct cairnfs *fs, struct cairn_iter **it);
int cfs_iter_is(struct cairn_iter *it, const void *k, size_t kl);
void cfs_seek_within(struct cairn_iter *it, const char *key, size_t klen, const char *pfx,
                     size_t plen);
int cfs_take_meta(struct cairnfs *fs, struct cairn_iter *it, struct meta_probe *p, char *mbuf);
int cfs_iter_check(struct cairnfs *fs, struct cairn_iter *it, const char *what);
int cfs_probe_with(struct cairnfs *fs, struct cairn_iter *it, const char *path, size_t plen,
                   struct meta_probe *p, char *mbuf);
int cfs_probe_point(struct cairnfs *fs, const char *path, size_t plen, struct meta_probe *p,
                    char *mbuf);
struct meta_defaults cfs_defaults(struct cairnfs *fs);
int cfs_stat_path(struct cairnfs *fs, const char *path, size_t plen, struct stat *st,
                  struct meta_probe *p, char *mbuf);
int cfs_get_meta(struct cairnfs *fs, const char *path, size_t plen, struct meta_rec *r, char *mbuf);
void cfs_meta_of(const struct meta_probe *p, int type, const struct stat *st, struct meta_rec *r);
int cfs_batch_meta(struct cairn_batch *b, const char *path, size_t plen, const struct meta_rec *r);
uint64_t cfs_path_ino(const char *path, size_t plen);
uint64_t cfs_ino_of(const struct meta_probe *p, int type, const char *path, size_t plen);
int cfs_ino_alloc(struct cairnfs *fs, uint64_t *ino);
int cfs_ino_load(struct cairnfs *fs);
int cfs_write_batch(struct cairnfs *fs, struct cairn_batch *b, int toobig);
int cfs_batch_touch_parent(struct cairnfs *fs, struct cairn_batch *b, const char *path, size_t plen,
                           int64_t now);

/* ---- entry.c: control-file inodes, lookup, forget and getattr */

int cfs_is_ctl(fuse_ino_t ino);
struct cfs_ctlsnap *cfs_snap_get(struct cairnfs *fs, fuse_ino_t ino);
void cfs_ctl_stat(struct cairnfs *fs, fuse_ino_t ino, struct stat *st);
void cfs_entry_init(struct cairnfs *fs, struct fuse_entry_param *e);
struct cfs_node *cfs_node_ref(struct cairnfs *fs, struct cfs_node *parent, const char *name,
                              size_t nlen);
void cfs_fix_size(struct cfs_node *n, struct stat *st);
int cfs_child_path(struct cairnfs *fs, fuse_ino_t parent, const char *name, struct cfs_node **pn,
                   char *path, size_t *plen);
void cfs_lookup(fuse_req_t req, fuse_ino_t parent, const char *name);
void cfs_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup);
void cfs_forget_multi(fuse_req_t req, size_t count, struct fuse_forget_data *forgets);
int cfs_stat_ino(struct cairnfs *fs, fuse_ino_t ino, struct stat *st);
/* Answers an attribute request: st on success (rc 0), else the error. */
void cfs_reply_stat(fuse_req_t req, struct cairnfs *fs, int rc, const struct stat *st);
void cfs_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);

/* ---- commit.c: write buffers, pieces of large files and commits */

int cfs_layout(struct cairnfs *fs, struct cfs_node *n, const char *path, size_t plen);
int cfs_pieces_read(struct cairnfs *fs, const struct cairn_snapshot *snap, uint64_t id,
                    uint64_t off, char *buf, size_t len);
int cfs_wb_get(struct cairnfs *fs, struct cfs_node *n, const char *path, size_t plen);
int cfs_wb_read(struct cairnfs *fs, struct cfs_node *n, const char *path, size_t plen, uint64_t off,
                char *buf, size_t len, size_t *got);
int cfs_batch_drop_from(struct cairn_iter *it, struct cairn_batch *b, const char *start,
                        size_t slen, size_t plen);
int cfs_drop_pieces(struct cairn_iter *it, struct cairn_batch *b, uint64_t id, uint64_t idx);
int cfs_commit(struct cairnfs *fs, struct cfs_node *n);
int cfs_commit_subtree(struct cairnfs *fs, const char *dir, size_t dlen);
int cfs_defer_trunc(struct cairnfs *fs, struct cfs_node *n);
void cfs_sweeper_stop(struct cairnfs *fs);

/* ---- perm.c: owners and modes of new entries */

int cfs_new_owner(struct cairnfs *fs, struct cfs_node *pn, int type, mode_t *mode, uint32_t *gid);
void cfs_owner_forget(struct cfs_node *n);

/* ---- setattr.c: chmod, chown, utimens and truncate */

int cfs_truncate(struct cairnfs *fs, struct cfs_node *n, const char *path, size_t plen, off_t size);
void cfs_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int to_set,
                 struct fuse_file_info *fi);

/* ---- namespace.c: creating, removing and renaming names */

void cfs_create(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
                struct fuse_file_info *fi);
void cfs_mknod(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode, dev_t rdev);
void cfs_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode);
void cfs_symlink(fuse_req_t req, const char *link, fuse_ino_t parent, const char *name);
void cfs_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent, const char *newname);
void cfs_readlink(fuse_req_t req, fuse_ino_t ino);
int cfs_may_have_xattrs(struct cairnfs *fs, struct cairn_iter *it);
void cfs_unlink(fuse_req_t req, fuse_ino_t parent, const char *name);
void cfs_rmdir(fuse_req_t req, fuse_ino_t parent, const char *name);
void cfs_rename(fuse_req_t req, fuse_ino_t parent, const char *name, fuse_ino_t newparent,
                const char *newname, unsigned int flags);

/* ---- fileio.c: open, read, write, flush, release and fsync */

void cfs_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);
void cfs_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi);
void cfs_write(fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size, off_t off,
               struct fuse_file_info *fi);
void cfs_flush(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);
void cfs_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);
void cfs_fsync(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi);
void cfs_fsyncdir(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi);
void cfs_ctl_truncate(struct cairnfs *fs, off_t size);

/* ---- orphan.c: files unlinked or replaced while the kernel holds them */

int cfs_node_held(const struct cfs_node *n);
int cfs_batch_orphan(struct cairnfs *fs, struct cairn_batch *b, struct cfs_node *n,
                     const char *path, size_t plen, const struct meta_probe *p,
                     struct cfs_memorphan **mo);
void cfs_orphan_made(struct cfs_node *n, const struct meta_probe *p, struct cfs_memorphan *mo);
int cfs_orphan_store(struct cairnfs *fs, struct cfs_node *n);
void cfs_orphan_stat(struct cairnfs *fs, struct cfs_node *n, struct stat *st);
size_t cfs_orphan_read(const struct cfs_node *n, uint64_t off, char *buf, size_t size);
void cfs_orphan_gone(struct cairnfs *fs, struct cfs_node *n);
int cfs_gone_batch(struct cairnfs *fs, struct cairn_batch *b);
void cfs_gone_done(struct cairnfs *fs);
void cfs_orphans_flush(struct cairnfs *fs, int force);
int cfs_orphans_clean(struct cairnfs *fs);

/* ---- link.c: hard links, files with several names */

int cfs_batch_drop_link(struct cairn_iter *it, struct cairn_batch *b, uint64_t id, uint64_t ext);
int cfs_batch_unshare(struct cairnfs *fs, struct cairn_batch *b, const struct meta_probe *p,
                      struct cfs_node *n);
void cfs_link_gone(struct cairnfs *fs, struct cfs_node *n);

/* ---- dir.c: directory listings */

void cfs_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);
void cfs_releasedir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);
void cfs_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi);
void cfs_readdirplus(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                     struct fuse_file_info *fi);
int cfs_dir_nlink(struct cairnfs *fs, struct cfs_node *n, struct stat *st);
void cfs_nsub_add(struct cfs_node *dir, int delta);
size_t cfs_dir_bytes(const struct cfs_dir *d);

/* ---- sparse.c: st_blocks, SEEK_DATA/SEEK_HOLE and fallocate of files with holes */

int cfs_stored_bytes(struct cairnfs *fs, struct cfs_node *n, uint64_t *bytes);
int cfs_fix_blocks(struct cairnfs *fs, struct cfs_node *n, struct stat *st);
void cfs_lseek(fuse_req_t req, fuse_ino_t ino, off_t off, int whence, struct fuse_file_info *fi);
void cfs_fallocate(fuse_req_t req, fuse_ino_t ino, int mode, off_t off, off_t len,
                   struct fuse_file_info *fi);

/* ---- xattr.c: extended attributes */

void cfs_setxattr(fuse_req_t req, fuse_ino_t ino, const char *name, const char *value, size_t size,
                  int flags);
void cfs_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name, size_t size);
void cfs_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size);
void cfs_removexattr(fuse_req_t req, fuse_ino_t ino, const char *name);

#endif /* CFS_H */
