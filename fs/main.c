/*
 * main.c - cairnfs command line and mount lifecycle.
 *
 *   cairnfs [options] DBDIR MOUNTPOINT
 *
 * The first non-option argument is the database directory, the second the
 * mount point, so `mount -t fuse.cairnfs DBDIR MOUNTPOINT -o opts` and
 * /etc/fstab work through mount.fuse3. cairnfs's own options are -o
 * name=value and are taken out before the rest goes to libfuse.
 *
 * Order matters: the database is opened before the file system is mounted
 * (a database that cannot be opened is never mounted, and the error from
 * cairn_open is printed), and, when running in the background, after the
 * fork (the engine's threads would not survive it). The parent waits on a
 * pipe until the child has mounted, and exits 0 only then, so `mount` and
 * scripts see the failure and its message. When the session loop ends
 * (fusermount3 -u, umount, SIGINT, SIGTERM, SIGHUP) every buffered write is
 * committed, the log synced and the database closed before exit.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include "cairnfs.h"

struct main_opts {
	struct cairnfs_config cfg;
	char *dbdir;
	int nonopts;
	int create;
	int malloc_arenas;
	int bad;
};

enum {
	K_RO,
	K_CREATE,
	K_MEMTABLE,
	K_CACHE,
	K_OPEN_TABLES,
	K_SYNC_MS,
	K_BG_THREADS,
	K_WBUF,
	K_WBUF_TOTAL,
	K_INLINE_MAX,
	K_TIMEOUT,
	K_WRITEBACK,
	K_READDIRPLUS,
	K_OPEN,
	K_FLUSH,
	K_BUFFER_CACHE,
	K_MALLOC_ARENAS,
	K_RESERVE,
};

static const struct fuse_opt main_fuse_opts[] = {
        FUSE_OPT_KEY("ro", K_RO),
        FUSE_OPT_KEY("create", K_CREATE),
        FUSE_OPT_KEY("memtable_size=", K_MEMTABLE),
        FUSE_OPT_KEY("cache_size=", K_CACHE),
        FUSE_OPT_KEY("max_open_tables=", K_OPEN_TABLES),
        FUSE_OPT_KEY("sync_interval_ms=", K_SYNC_MS),
        FUSE_OPT_KEY("background_threads=", K_BG_THREADS),
        FUSE_OPT_KEY("write_buffer=", K_WBUF),
        FUSE_OPT_KEY("write_buffer_total=", K_WBUF_TOTAL),
        FUSE_OPT_KEY("inline_max=", K_INLINE_MAX),
        FUSE_OPT_KEY("timeout=", K_TIMEOUT),
        FUSE_OPT_KEY("writeback=", K_WRITEBACK),
        FUSE_OPT_KEY("readdirplus=", K_READDIRPLUS),
        FUSE_OPT_KEY("open=", K_OPEN),
        FUSE_OPT_KEY("flush=", K_FLUSH),
        FUSE_OPT_KEY("buffer_cache=", K_BUFFER_CACHE),
        FUSE_OPT_KEY("space_reserve=", K_RESERVE),
        FUSE_OPT_KEY("malloc_arenas=", K_MALLOC_ARENAS),
        FUSE_OPT_END,
};

static void main_usage(const char *prog)
{
	printf("usage: %s [options] DBDIR MOUNTPOINT\n\n"
	       "Mounts the cairn database in DBDIR (created when missing) on MOUNTPOINT:\n"
	       "each key is a file, each file a key.\n\n"
	       "cairnfs options (docs/cairnfs.md has more):\n"
	       "    -o ro                       read-only database and mount (default off)\n"
	       "    -o create                   create a database in a DBDIR that holds other\n"
	       "                                files (default off: refused)\n"
	       "    -o memtable_size=SIZE       engine memtable, 64K-4G (default 4M)\n"
	       "    -o cache_size=SIZE          engine block cache (default 8M)\n"
	       "    -o max_open_tables=N        engine table cache, 8 or more (default 64)\n"
	       "    -o sync_interval_ms=N       background log sync period (default 1000)\n"
	       "    -o background_threads=N     flush/compaction threads, 0-64 (default 1)\n"
	       "    -o write_buffer=SIZE        with flush=1: buffered writes per file\n"
	       "                                (default 4M)\n"
	       "    -o write_buffer_total=SIZE  with flush=1: buffered writes of all files\n"
	       "                                (default 64M)\n"
	       "    -o inline_max=SIZE          larger files are stored as 64K pieces, at\n"
	       "                                most 64M (default 1M)\n"
	       "    -o timeout=SECONDS          kernel entry/attribute cache time (default 1e6)\n"
	       "    -o writeback=0|1            kernel writeback cache (default 1)\n"
	       "    -o readdirplus=no|yes|auto  attributes with listings (default auto)\n"
	       "    -o open=0|1                 1: answer open/opendir, a round trip per open\n"
	       "                                (default 0: ENOSYS, the kernel skips them)\n"
	       "    -o flush=0|1                1: buffer writes per file, commit at close(2)\n"
	       "                                (default 0: commit each write as it arrives)\n"
	       "    -o buffer_cache=SIZE        idle read, listing and commit buffers kept\n"
	       "                                for reuse, at most 1G (default 4M)\n"
	       "    -o malloc_arenas=N          heaps malloc may keep, 1-64 (default 2)\n"
	       "    -o space_reserve=SIZE       disk kept for deletes on a full disk, at\n"
	       "                                most 1G, 0 for none (default 2M)\n"
	       "SIZE takes a K, M or G suffix (powers of 1024). With the defaults the\n"
	       "whole process stays within about 64M (docs/cairnfs.md, \"Memory\").\n\n",
	       prog);
}

/* Parses a size with an optional K/M/G suffix. */
static int main_size(const char *s, size_t *out)
{
	char *end;
	unsigned long long v;

	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno || end == s)
		return -1;
	switch (*end) {
	case 'k':
	case 'K':
		v <<= 10;
		end++;
		break;
	case 'm':
	case 'M':
		v <<= 20;
		end++;
		break;
	case 'g':
	case 'G':
		v <<= 30;
		end++;
		break;
	default:
		break;
	}
	if (*end == 'i' || *end == 'B')
		end += (end[0] == 'i' && end[1] == 'B') ? 2 : 1;
	if (*end)
		return -1;
	*out = (size_t)v;
	return 0;
}

static int main_int(const char *s, int *out)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(s, &end, 10);
	if (errno || end == s || *end || v < 0 || v > INT_MAX)
		return -1;
	*out = (int)v;
	return 0;
}

static int main_value(struct main_opts *m, int key, const char *val)
{
	struct cairnfs_config *c = &m->cfg;
	char *end;

	switch (key) {
	case K_MEMTABLE:
		return main_size(val, &c->memtable_size) || c->memtable_size < (64u << 10) ||
		                       c->memtable_size > (4ull << 30)
		               ? -1
		               : 0;
	case K_CACHE:
		return main_size(val, &c->cache_size) || !c->cache_size ? -1 : 0;
	case K_OPEN_TABLES:
		return main_int(val, &c->max_open_tables) || c->max_open_tables < 8 ? -1 : 0;
	case K_SYNC_MS:
		return main_int(val, &c->sync_interval_ms);
	case K_BG_THREADS:
		return main_int(val, &c->background_threads) || c->background_threads > 64 ? -1 : 0;
	case K_WBUF:
		return main_size(val, &c->write_buffer) || !c->write_buffer ? -1 : 0;
	case K_WBUF_TOTAL:
		return main_size(val, &c->write_buffer_total) || !c->write_buffer_total ? -1 : 0;
	case K_INLINE_MAX:
		return main_size(val, &c->inline_max) || c->inline_max > CAIRN_MAX_VALUE_SIZE ? -1
		                                                                              : 0;
	case K_TIMEOUT:
		c->timeout = strtod(val, &end);
		return *end || end == val || c->timeout < 0 ? -1 : 0;
	case K_OPEN:
		return main_int(val, &c->open) || c->open > 1 ? -1 : 0;
	case K_FLUSH:
		return main_int(val, &c->flush) || c->flush > 1 ? -1 : 0;
	case K_BUFFER_CACHE:
		return main_size(val, &c->buffer_cache) || c->buffer_cache > (1u << 30) ? -1 : 0;
	case K_RESERVE:
		c->has_space_reserve = 1;
		return main_size(val, &c->space_reserve) || c->space_reserve > (1u << 30) ? -1 : 0;
	case K_MALLOC_ARENAS:
		return main_int(val, &m->malloc_arenas) || m->malloc_arenas < 1 ||
		                       m->malloc_arenas > 64
		               ? -1
		               : 0;
	case K_WRITEBACK:
		return main_int(val, &c->writeback) || c->writeback > 1 ? -1 : 0;
	case K_READDIRPLUS:
		if (!strcmp(val, "no") || !strcmp(val, "0"))
			c->readdirplus = 0;
		else if (!strcmp(val, "yes") || !strcmp(val, "1"))
			c->readdirplus = 1;
		else if (!strcmp(val, "auto"))
			c->readdirplus = 2;
		else
			return -1;
		return 0;
	}
	return -1;
}

/* What an option's value must be, for the message about a bad one. */
static const char *main_expect(int key)
{
	switch (key) {
	case K_MEMTABLE:
		return "a size from 64K to 4G";
	case K_CACHE:
		return "a size above 0 such as 512K, 8M or 1G";
	case K_WBUF:
	case K_WBUF_TOTAL:
		return "a size above 0 such as 4M";
	case K_INLINE_MAX:
		return "a size of at most 64M";
	case K_BUFFER_CACHE:
	case K_RESERVE:
		return "a size of at most 1G, 0 for none";
	case K_MALLOC_ARENAS:
		return "a whole number from 1 to 64";
	case K_OPEN_TABLES:
		return "a whole number, 8 or more";
	case K_BG_THREADS:
		return "a whole number from 0 to 64";
	case K_SYNC_MS:
		return "a whole number, 0 or more";
	case K_TIMEOUT:
		return "seconds, 0 or more";
	case K_OPEN:
	case K_FLUSH:
	case K_WRITEBACK:
		return "0 or 1";
	case K_READDIRPLUS:
		return "no, yes or auto";
	}
	return "a value";
}

static int main_opt_proc(void *data, const char *arg, int key, struct fuse_args *outargs)
{
	struct main_opts *m = data;
	const char *eq;

	(void)outargs;
	switch (key) {
	case FUSE_OPT_KEY_NONOPT:
		if (m->nonopts++ == 0) {
			m->dbdir = strdup(arg);
			return m->dbdir ? 0 : -1;
		}
		return 1; /* the mount point, for fuse_parse_cmdline */
	case K_CREATE:
		m->create = 1;
		return 0;
	case K_RO:
		m->cfg.read_only = 1;
		return 1; /* the kernel mount is read-only too */
	case FUSE_OPT_KEY_OPT:
		return 1;
	default:
		eq = strchr(arg, '=');
		if (!eq || main_value(m, key, eq + 1)) {
			fprintf(stderr, "cairnfs: bad option value: %s (expected %s)\n", arg,
			        main_expect(key));
			m->bad = 1;
		}
		return 0;
	}
}

/* DBDIR as an absolute path: the daemon runs in "/" and .cairn/dbdir shows it. */
static char *main_abs(const char *dir)
{
	char cwd[PATH_MAX], *r = realpath(dir, NULL);
	size_t n;

	if (r || dir[0] == '/')
		return r ? r : strdup(dir);
	if (!getcwd(cwd, sizeof(cwd)))
		return NULL;
	n = strlen(cwd) + strlen(dir) + 2;
	r = malloc(n);
	if (r)
		snprintf(r, n, "%s/%s", cwd, dir);
	return r;
}

/* Whether DBDIR holds something other than a database: files but no
 * CURRENT (a LOCK alone is what a creation cut short leaves). Mounting
 * there would mix a new database into someone's directory. */
static int main_foreign_dir(const char *dbdir)
{
	char path[PATH_MAX];
	struct dirent *de;
	DIR *d = opendir(dbdir);
	int foreign = 0;

	if (!d)
		return 0; /* missing: created; not a directory: cairn_open says so */
	snprintf(path, sizeof(path), "%s/CURRENT", dbdir);
	if (access(path, F_OK) == 0) {
		closedir(d);
		return 0;
	}
	while (!foreign && (de = readdir(d)))
		foreign = strcmp(de->d_name, ".") && strcmp(de->d_name, "..") &&
		          strcmp(de->d_name, "LOCK");
	closedir(d);
	return foreign;
}

/* Refuses, before anything is opened or forked, what would mount wrongly:
 * a mount point that is not a directory (the kernel would mount over a
 * file and every access would fail) and a DBDIR of someone else's files. */
static int main_check_paths(const char *dbdir, const char *mnt, int create)
{
	struct stat st;

	if (stat(mnt, &st) != 0) {
		fprintf(stderr, "cairnfs: mount point %s: %s\n", mnt, strerror(errno));
		return -1;
	}
	if (!S_ISDIR(st.st_mode)) {
		fprintf(stderr, "cairnfs: mount point %s is not a directory\n", mnt);
		return -1;
	}
	if (!create && main_foreign_dir(dbdir)) {
		fprintf(stderr,
		        "cairnfs: %s is not empty and holds no database (no CURRENT file); "
		        "give -o create to create one there\n",
		        dbdir);
		return -1;
	}
	return 0;
}

/* Forks: the parent waits for the child's word that the mount is up and
 * exits with its status; the child returns the pipe to report on. */
static int main_fork(void)
{
	int p[2];
	pid_t pid;
	char st = 1;

	if (pipe(p) != 0) {
		perror("cairnfs: pipe");
		exit(1);
	}
	pid = fork();
	if (pid < 0) {
		perror("cairnfs: fork");
		exit(1);
	}
	if (pid > 0) {
		close(p[1]);
		if (read(p[0], &st, 1) != 1)
			st = 1;
		_exit(st ? 1 : 0);
	}
	close(p[0]);
	setsid();
	return p[1];
}

/* fuse_log's levels are syslog's. */
static void main_syslog(enum fuse_log_level level, const char *fmt, va_list ap)
{
	vsyslog((int)level, fmt, ap);
}

/* In the background stderr is /dev/null: errors go to syslog (the journal). */
static void main_detach(int fd)
{
	int nul = open("/dev/null", O_RDWR);
	char ok = 0;

	if (chdir("/") != 0)
		perror("cairnfs: chdir");
	if (nul >= 0) {
		dup2(nul, 0);
		dup2(nul, 1);
		dup2(nul, 2);
		if (nul > 2)
			close(nul);
	}
	openlog("cairnfs", LOG_PID, LOG_DAEMON);
	fuse_set_log_func(main_syslog);
	if (write(fd, &ok, 1) != 1)
		_exit(1);
	close(fd);
}

/* Opens the database, waiting a little while another process (a daemon
 * still finishing its unmount) holds its LOCK. */
static int main_open(struct cairnfs_config *cfg, struct cairnfs **fs)
{
	char err[1024];
	int rc;

	for (int i = 0;; i++) {
		err[0] = '\0';
		rc = cairnfs_open(cfg, fs, err, sizeof(err));
		if (rc != -EBUSY || i == 30)
			break;
		nanosleep(&(struct timespec){0, 100 * 1000 * 1000}, NULL);
	}
	if (rc)
		fprintf(stderr, "cairnfs: cannot open database %s: %s\n", cfg->dbdir,
		        err[0] ? err : strerror(-rc));
	return rc;
}

static int main_fsname(struct fuse_args *args, const char *dbdir)
{
	char *esc = NULL, *opt;
	int rc;

	if (fuse_opt_add_opt_escaped(&esc, dbdir))
		return -1;
	opt = malloc(strlen(esc) + 16);
	if (!opt) {
		free(esc);
		return -1;
	}
	sprintf(opt, "-ofsname=%s", esc);
	rc = fuse_opt_add_arg(args, opt);
	free(esc);
	free(opt);
	return rc;
}

/* Bounds the C library's heaps before any thread starts. glibc gives each
 * thread of the session loop a heap (arena) of its own and seldom returns
 * what is freed in one, so the daemon's memory would follow the number of
 * threads that ever served a large request. Fewer heaps, a fixed mmap
 * threshold (glibc otherwise raises it after each large free, moving large
 * blocks back into the heaps) and a trim threshold give memory back. The
 * request-sized buffers of the daemon itself are mapped (bufpool.h). */
static void main_malloc(int arenas)
{
	mallopt(M_ARENA_MAX, arenas);
	mallopt(M_MMAP_THRESHOLD, 128 << 10);
	mallopt(M_TRIM_THRESHOLD, 1 << 20);
}

static int main_run(struct fuse_args *args, struct fuse_cmdline_opts *co, struct main_opts *m)
{
	struct fuse_session *se;
	struct cairnfs *fs = NULL;
	int fd = -1, rc, ret = 1;

	if (!co->foreground)
		fd = main_fork();
	if (main_open(&m->cfg, &fs))
		return 1;
	se = fuse_session_new(args, cairnfs_ops(), sizeof(*cairnfs_ops()), fs);
	if (!se)
		goto out_fs;
	cairnfs_set_session(fs, se);
	if (fuse_set_signal_handlers(se) != 0)
		goto out_se;
	if (fuse_session_mount(se, co->mountpoint) != 0)
		goto out_sig;
	if (fd >= 0)
		main_detach(fd);
	if (co->singlethread) {
		rc = fuse_session_loop(se);
	} else {
		struct fuse_loop_config lc = {.clone_fd = co->clone_fd,
		                              .max_idle_threads = co->max_idle_threads};

		if (lc.max_idle_threads > 1000)
			lc.max_idle_threads = 10; /* not given: libfuse's usual default */

		rc = fuse_session_loop_mt(se, &lc);
	}
	ret = rc ? 1 : 0;
	fuse_session_unmount(se);
out_sig:
	fuse_remove_signal_handlers(se);
out_se:
	fuse_session_destroy(se); /* calls destroy: buffered writes are committed */
out_fs:
	if (cairnfs_close(fs) != 0) {
		fuse_log(FUSE_LOG_ERR, "cairnfs: closing the database failed\n");
		ret = 1;
	}
	return ret;
}

int main(int argc, char *argv[])
{
	struct fuse_args args = FUSE_ARGS_INIT(argc, argv);
	struct fuse_cmdline_opts co;
	struct main_opts m;
	int ret = 1;

	memset(&m, 0, sizeof(m));
	memset(&co, 0, sizeof(co));
	cairnfs_config_init(&m.cfg);
	m.malloc_arenas = 2;
	if (fuse_opt_parse(&args, &m, main_fuse_opts, main_opt_proc) != 0 || m.bad)
		goto out;
	if (fuse_parse_cmdline(&args, &co) != 0)
		goto out;
	if (co.show_help) {
		main_usage(argv[0]);
		fuse_cmdline_help();
		fuse_lowlevel_help();
		ret = 0;
		goto out;
	}
	if (co.show_version) {
		printf("cairnfs %s (libcairn %s, libfuse %s)\n", CAIRNFS_VERSION, cairn_version(),
		       fuse_pkgversion());
		fuse_lowlevel_version();
		ret = 0;
		goto out;
	}
	if (!m.dbdir || !co.mountpoint) {
		fprintf(stderr, "usage: %s [options] DBDIR MOUNTPOINT (see --help)\n", argv[0]);
		goto out;
	}
	m.cfg.dbdir = main_abs(m.dbdir);
	m.cfg.mountpoint = co.mountpoint; /* libfuse made it absolute (realpath) */
	if (!m.cfg.dbdir || main_check_paths(m.cfg.dbdir, co.mountpoint, m.create))
		goto out;
	/* the kernel checks every access and the rules of chown and chmod */
	if (fuse_opt_add_arg(&args, "-odefault_permissions"))
		goto out;
	/* the source field of the mount table names the database, and the
	 * type is fuse.cairnfs even when -o fsname would have dropped it: the
	 * cairn CLI finds the mount of a database by these two alone */
	if (main_fsname(&args, m.cfg.dbdir) || fuse_opt_add_arg(&args, "-osubtype=cairnfs"))
		goto out;
	main_malloc(m.malloc_arenas);
	ret = main_run(&args, &co, &m);
out:
	free((char *)m.cfg.dbdir);
	free(m.dbdir);
	free(co.mountpoint);
	fuse_opt_free_args(&args);
	return ret;
}
