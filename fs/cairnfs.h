/*
 * cairnfs.h - the cairnfs daemon: a cairn database served as a directory
 * through the libfuse3 low-level API.
 *
 * main.c parses the command line into a struct cairnfs_config, opens the
 * file system (which opens the database) with cairnfs_open(), hands
 * cairnfs_ops() to fuse_session_new() and runs the session loop; after the
 * loop cairnfs_close() commits every buffered write and closes the database.
 * The request handlers are split by concern (node.c, probe.c, entry.c,
 * commit.c, setattr.c, namespace.c, fileio.c, dir.c, xattr.c, cairnfs.c)
 * around the internal header cfs.h; control.c renders the files under
 * MOUNT/.cairn/;
 * pathkey.c, meta.c, wbuf.c and bufpool.c the pure parts (mapping, records,
 * write buffers, request buffers); selfpath.c tells whether a path leads
 * into the mount itself.
 */
#ifndef CAIRNFS_H
#define CAIRNFS_H

#define FUSE_USE_VERSION 35
#include <fuse_lowlevel.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "cairn.h"

#define CAIRNFS_VERSION "0.1.0"

struct cairnfs_config {
	const char *dbdir;         /* absolute path of the database directory */
	const char *mountpoint;    /* absolute path of the mount point, or NULL */
	int read_only;             /* -o ro */
	size_t memtable_size;      /* -o memtable_size=SIZE (engine default if 0) */
	size_t cache_size;         /* -o cache_size=SIZE: block cache */
	int max_open_tables;       /* -o max_open_tables=N */
	int sync_interval_ms;      /* -o sync_interval_ms=N (-1: engine default) */
	int background_threads;    /* -o background_threads=N (-1: engine default) */
	size_t write_buffer;       /* -o write_buffer=SIZE: per open file, default 4 MiB */
	size_t write_buffer_total; /* -o write_buffer_total=SIZE: all files, default 64 MiB */
	size_t inline_max;         /* -o inline_max=SIZE: larger files are extents, default 1 MiB */
	double timeout;            /* -o timeout=SECONDS: entry/attr/negative cache */
	int writeback;             /* -o writeback=0|1: kernel writeback cache */
	int readdirplus;           /* -o readdirplus=no|yes|auto: 0, 1, 2 */
	int open;                  /* -o open=1: answer open/opendir (default 0: ENOSYS) */
	int flush;                 /* -o flush=1: buffer, commit at close (default 0) */
	size_t buffer_cache;       /* -o buffer_cache=SIZE: idle request buffers kept */
	size_t space_reserve;      /* -o space_reserve=SIZE, when has_space_reserve */
	int has_space_reserve;
	uid_t uid; /* owner shown for keys without metadata */
	gid_t gid;
};

/* Fills *cfg with the defaults above. */
void cairnfs_config_init(struct cairnfs_config *cfg);

struct cairnfs;

/* Opens the database cfg->dbdir (creating it when missing) and allocates the
 * file system state. On failure returns a negative errno-style code and
 * writes why (from cairn_open's message) to err. */
int cairnfs_open(const struct cairnfs_config *cfg, struct cairnfs **fsp, char *err, size_t errlen);

/* The session, for notifications. Set before the loop starts. */
void cairnfs_set_session(struct cairnfs *fs, struct fuse_session *se);

/* The request handlers; the userdata passed to fuse_session_new() is fs. */
const struct fuse_lowlevel_ops *cairnfs_ops(void);

/* Commits every buffered write of every open file. Returns 0 or the first
 * negative errno met (the others are still tried). */
int cairnfs_commit_all(struct cairnfs *fs);

/* Commits everything, syncs and closes the database and frees fs. Returns 0
 * or the first negative errno. */
int cairnfs_close(struct cairnfs *fs);

/* ---- for control.c --------------------------------------------------- */

/* Counters kept by the daemon itself, shown next to the engine's stats. */
struct cairnfs_counters {
	uint64_t commits;        /* write-buffer commits */
	uint64_t commit_bytes;   /* value bytes written by commits */
	uint64_t fsyncs;         /* fsync and fsyncdir requests */
	uint64_t hidden_keys;    /* keys seen in listings that cannot be shown */
	uint64_t bad_records;    /* metadata records met that cannot be decoded (EIO) */
	uint64_t nodes;          /* inodes the kernel currently knows (gauge) */
	uint64_t buffered_bytes; /* bytes held in write buffers (gauge) */
	/* memory of the daemon itself (gauges) */
	uint64_t node_bytes;     /* the node table: nodes, names and buckets */
	uint64_t listing_bytes;  /* listings kept (readdir without opendir, open dirs) */
	uint64_t buffers_in_use; /* request buffers (reads, listings, commits) out now */
	uint64_t buffers_cached; /* idle request buffers kept for reuse */
	uint64_t buffers_limit;  /* the most kept: -o buffer_cache */
	uint64_t buffers_maps;   /* request buffers mapped from the kernel (counter) */
	uint64_t buffers_reused; /* request buffers served from the kept ones (counter) */
	uint64_t rss_bytes;      /* resident memory of the process (/proc/self/statm) */
};

struct cairn_db *cairnfs_db(struct cairnfs *fs);
const char *cairnfs_dbdir(struct cairnfs *fs);
/* The mount point (cfg.mountpoint), or NULL when not known. */
const char *cairnfs_mountpoint(struct cairnfs *fs);

/* The outcome of the last control command, shown in .cairn/result: with
 * open=0 the kernel's writeback cache sends a command's write only at
 * close(2), which then fails with EIO, so the reason has to be kept. */
#define CAIRNFS_RESULT_MAX 512
void cairnfs_set_result(struct cairnfs *fs, const char *msg);
/* Copies the last outcome (NUL-terminated, "" before any command) to buf. */
void cairnfs_get_result(struct cairnfs *fs, char *buf, size_t len);
void cairnfs_counters(struct cairnfs *fs, struct cairnfs_counters *c);

/* Control files (control.c). */
enum ctl_file {
	CTL_STATS,
	CTL_STATS_JSON,
	CTL_METRICS,
	CTL_DBDIR,
	CTL_RESULT,
	CTL_CONTROL,
	CTL_NFILES,
};

/* The name of each control file under .cairn/. */
const char *ctl_name(int which);
/* Renders a read-only control file into a malloc'd buffer. Returns 0 or a
 * negative errno. */
int ctl_render(struct cairnfs *fs, int which, char **out, size_t *len);
/* Runs the commands (one a line) written to the control file, stopping at
 * the first that fails, and records the outcome of the last one run with
 * cairnfs_set_result(). Returns 0, -EINVAL for an unknown command or bad
 * argument, -EIO (or -ENOSPC, -EEXIST, -EROFS) when the engine fails. */
int ctl_command(struct cairnfs *fs, const char *buf, size_t len);

#endif /* CAIRNFS_H */
