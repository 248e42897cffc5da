/*
 * env_posix.c - the environment of a real database: files, directories, the
 * LOCK, clocks and threads on top of POSIX (Linux first).
 *
 * Every engine file operation ends up here, so this is the one place that
 * knows about file descriptors and errno. Each operation maps errno to a
 * CAIRN_E* code (ENOSPC and EDQUOT to CAIRN_ENOSPC, ENOENT, EEXIST and ENOMEM
 * to their namesakes, everything else to CAIRN_EIO) and leaves a message
 * "op 'path': strerror" for env_errmsg(). The env itself holds no state: the
 * instance is a read-only ops table, and the only mutable thing is the
 * per-thread buffer of the last error message, so one shared instance serves
 * every database in the process.
 *
 * Writable files are opened O_APPEND, so after a truncate the next append
 * lands at the new end instead of leaving a hole. Reads and writes loop on
 * EINTR and on short transfers, so callers see whole operations. The LOCK is
 * a flock() on the LOCK file; flock locks belong to the open file
 * description, so even the same process opening a database twice is refused.
 * The holder writes its pid into the file so a refused opener can name it.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#include "env.h"
#include "util.h"

#define POSIX_MSG_LEN 512

/* The last error message of this thread: the only mutable state of the env. */
static _Thread_local char posix_msg[POSIX_MSG_LEN];

struct posix_file {
	struct env_file_base base; /* must be first: env_of() reads it */
	int fd;
	char path[]; /* for error messages */
};

struct env_lock {
	int fd;
};

struct env_thread {
	pthread_t tid;
};

static int posix_code(int err)
{
	switch (err) {
	case ENOSPC:
	case EDQUOT:
		return CAIRN_ENOSPC;
	case ENOENT:
		return CAIRN_ENOENT;
	case EEXIST:
		return CAIRN_EEXIST;
	case ENOMEM:
		return CAIRN_ENOMEM;
	default:
		return CAIRN_EIO;
	}
}

/* Records "op 'path': strerror(err)" and returns the code for err. */
static int posix_fail(int err, const char *op, const char *path)
{
	char ebuf[128];
	const char *s = strerror_r(err, ebuf, sizeof(ebuf));

	fmt_msg(posix_msg, sizeof(posix_msg), "%s '%s': %s", op, path, s);
	return posix_code(err);
}

static struct posix_file *pf(struct env_file *f)
{
	return (struct posix_file *)f;
}

static int posix_open(struct cairn_env *env, const char *path, int flags, const char *op,
                      struct env_file **fp)
{
	size_t plen = strlen(path);
	struct posix_file *f;
	int fd;

	*fp = NULL;
	f = malloc(sizeof(*f) + plen + 1);
	if (!f) {
		fmt_msg(posix_msg, sizeof(posix_msg), "%s '%s': out of memory", op, path);
		return CAIRN_ENOMEM;
	}
	do {
		fd = open(path, flags | O_CLOEXEC, 0644);
	} while (fd < 0 && errno == EINTR);
	if (fd < 0) {
		int err = errno;
		free(f);
		return posix_fail(err, op, path);
	}
	f->base.env = env;
	f->fd = fd;
	memcpy(f->path, path, plen + 1);
	*fp = (struct env_file *)f;
	return 0;
}

static int posix_open_read(struct cairn_env *env, const char *path, struct env_file **fp)
{
	return posix_open(env, path, O_RDONLY, "open", fp);
}

/* O_RDWR so a file being written can also be read back through the same
 * handle (a table or blob file checked right after it is written). */
static int posix_open_write(struct cairn_env *env, const char *path, struct env_file **fp)
{
	return posix_open(env, path, O_RDWR | O_CREAT | O_TRUNC | O_APPEND, "open", fp);
}

static int posix_open_append(struct cairn_env *env, const char *path, struct env_file **fp)
{
	return posix_open(env, path, O_RDWR | O_APPEND, "open", fp);
}

static int posix_close(struct env_file *f)
{
	struct posix_file *p = pf(f);
	int rc = 0;

	/* Never retry close on EINTR: on Linux the descriptor is already gone. */
	if (close(p->fd) < 0 && errno != EINTR)
		rc = posix_fail(errno, "close", p->path);
	free(p);
	return rc;
}

static int posix_append(struct env_file *f, const void *data, size_t n)
{
	struct posix_file *p = pf(f);
	const char *d = data;

	while (n > 0) {
		ssize_t w = write(p->fd, d, n);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			return posix_fail(errno, "write", p->path);
		}
		if (w == 0)
			return posix_fail(EIO, "write", p->path);
		d += w;
		n -= (size_t)w;
	}
	return 0;
}

static int posix_pread(struct env_file *f, uint64_t off, void *buf, size_t n, size_t *got)
{
	struct posix_file *p = pf(f);
	char *b = buf;
	size_t done = 0;

	*got = 0;
	if (off > (uint64_t)INT64_MAX) {
		fmt_msg(posix_msg, sizeof(posix_msg), "read '%s': offset %llu out of range",
		        p->path, (unsigned long long)off);
		return CAIRN_EINVAL;
	}
	while (done < n) {
		ssize_t r = pread(p->fd, b + done, n - done, (off_t)(off + done));
		if (r < 0) {
			if (errno == EINTR)
				continue;
			return posix_fail(errno, "read", p->path);
		}
		if (r == 0)
			break;
		done += (size_t)r;
	}
	*got = done;
	return 0;
}

static int posix_sync(struct env_file *f)
{
	struct posix_file *p = pf(f);

	while (fdatasync(p->fd) < 0) {
		if (errno != EINTR)
			return posix_fail(errno, "fdatasync", p->path);
	}
	return 0;
}

static int posix_size(struct env_file *f, uint64_t *size)
{
	struct posix_file *p = pf(f);
	struct stat st;

	if (fstat(p->fd, &st) < 0)
		return posix_fail(errno, "stat", p->path);
	*size = (uint64_t)st.st_size;
	return 0;
}

static int posix_truncate(struct env_file *f, uint64_t size)
{
	struct posix_file *p = pf(f);

	if (size > (uint64_t)INT64_MAX)
		return posix_fail(EFBIG, "truncate", p->path);
	while (ftruncate(p->fd, (off_t)size) < 0) {
		if (errno != EINTR)
			return posix_fail(errno, "truncate", p->path);
	}
	return 0;
}

static int posix_exists(struct cairn_env *env, const char *path)
{
	struct stat st;

	(void)env;
	if (stat(path, &st) == 0)
		return 1;
	if (errno == ENOENT || errno == ENOTDIR)
		return 0;
	return posix_fail(errno, "stat", path);
}

static int posix_file_size(struct cairn_env *env, const char *path, uint64_t *size)
{
	struct stat st;

	(void)env;
	if (stat(path, &st) < 0)
		return posix_fail(errno, "stat", path);
	*size = (uint64_t)st.st_size;
	return 0;
}

static int posix_unlink(struct cairn_env *env, const char *path)
{
	(void)env;
	if (unlink(path) < 0)
		return posix_fail(errno, "unlink", path);
	return 0;
}

static int posix_rename(struct cairn_env *env, const char *from, const char *to)
{
	(void)env;
	if (rename(from, to) < 0) {
		int rc = posix_fail(errno, "rename", from);
		size_t n = strlen(posix_msg);
		fmt_msg(posix_msg + n, sizeof(posix_msg) - n, " (to '%s')", to);
		return rc;
	}
	return 0;
}

static int posix_link(struct cairn_env *env, const char *from, const char *to)
{
	int err, rc;
	size_t n;

	(void)env;
	if (link(from, to) == 0)
		return 0;
	err = errno;
	rc = posix_fail(err, "link", from);
	n = strlen(posix_msg);
	fmt_msg(posix_msg + n, sizeof(posix_msg) - n, " (to '%s')", to);
	/* The file system or the layout cannot link: the caller copies instead. */
	if (err == EXDEV || err == EPERM || err == EMLINK || err == EOPNOTSUPP)
		return CAIRN_ENOTSUP;
	return rc;
}

static int posix_mkdir(struct cairn_env *env, const char *path)
{
	(void)env;
	if (mkdir(path, 0700) < 0)
		return posix_fail(errno, "mkdir", path);
	return 0;
}

static int posix_rmdir(struct cairn_env *env, const char *path)
{
	(void)env;
	if (rmdir(path) < 0)
		return posix_fail(errno, "rmdir", path);
	return 0;
}

static int posix_list_dir(struct cairn_env *env, const char *dir,
                          int (*fn)(void *ctx, const char *name), void *ctx)
{
	DIR *d;
	int rc = 0;

	(void)env;
	d = opendir(dir);
	if (!d)
		return posix_fail(errno, "opendir", dir);
	for (;;) {
		struct dirent *de;

		errno = 0;
		de = readdir(d);
		if (!de) {
			if (errno)
				rc = posix_fail(errno, "readdir", dir);
			break;
		}
		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		rc = fn(ctx, de->d_name);
		if (rc)
			break;
	}
	closedir(d);
	return rc;
}

static int posix_sync_dir(struct cairn_env *env, const char *dir)
{
	int fd, rc = 0;

	(void)env;
	do {
		fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	} while (fd < 0 && errno == EINTR);
	if (fd < 0)
		return posix_fail(errno, "open", dir);
	while (fsync(fd) < 0) {
		if (errno != EINTR) {
			rc = posix_fail(errno, "fsync", dir);
			break;
		}
	}
	close(fd);
	return rc;
}

/* ---- the LOCK ---- */

/* Reads a small text file (a pid, a comm) into buf, NUL-terminated, without
 * its trailing newline. Returns the length or -1. */
static ssize_t posix_read_small(int fd, char *buf, size_t len)
{
	ssize_t r;

	do {
		r = pread(fd, buf, len - 1, 0);
	} while (r < 0 && errno == EINTR);
	if (r < 0)
		return -1;
	buf[r] = '\0';
	while (r > 0 && (buf[r - 1] == '\n' || buf[r - 1] == '\r'))
		buf[--r] = '\0';
	return r;
}

/* A pid as written by the holder: decimal digits and a newline; anything
 * else (an empty, torn or foreign file) gives 0, "unknown". */
static long posix_parse_pid(const char *s)
{
	long pid = 0;

	if (!*s)
		return 0;
	for (; *s; s++) {
		if (*s < '0' || *s > '9' || pid > 4194304)
			return 0;
		pid = pid * 10 + (*s - '0');
	}
	return pid;
}

static long posix_pid_from_file(int fd)
{
	char buf[32];

	if (posix_read_small(fd, buf, sizeof(buf)) < 0)
		return 0;
	return posix_parse_pid(buf);
}

/* The kernel's own record of who holds a flock on this file: a line of
 * /proc/locks such as "1: FLOCK  ADVISORY  WRITE 1234 08:01:5678 0 EOF".
 * Trusted over the pid in the file, which a crashed holder leaves behind. */
static long posix_pid_from_proc_locks(int fd)
{
	struct stat st;
	FILE *fp;
	char line[256];
	long found = 0, inode_only = 0;

	if (fstat(fd, &st) < 0)
		return 0;
	fp = fopen("/proc/locks", "re");
	if (!fp)
		return 0;
	while (fgets(line, sizeof(line), fp)) {
		char type[16], mode[16], rw[16];
		unsigned int maj, min;
		unsigned long long ino;
		long pid;

		if (sscanf(line, "%*[^:]: %15s %15s %15s %ld %x:%x:%llu", type, mode, rw, &pid,
		           &maj, &min, &ino) != 7)
			continue;
		if (strcmp(type, "FLOCK") || ino != (unsigned long long)st.st_ino || pid <= 0)
			continue;
		/* Overlay and FUSE file systems may report another device number
		 * here than stat does, so an inode-only match is the fallback. */
		if (maj == major(st.st_dev) && min == minor(st.st_dev)) {
			found = pid;
			break;
		}
		if (!inode_only)
			inode_only = pid;
	}
	fclose(fp);
	return found ? found : inode_only;
}

static void posix_comm(long pid, char *buf, size_t len)
{
	char path[64];
	int fd;

	buf[0] = '\0';
	snprintf(path, sizeof(path), "/proc/%ld/comm", pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return;
	if (posix_read_small(fd, buf, len) < 0)
		buf[0] = '\0';
	close(fd);
}

/* The database directory of a LOCK path, for the message. */
static void posix_lock_dir(const char *path, char *buf, size_t len)
{
	const char *slash = strrchr(path, '/');

	if (!slash) {
		fmt_msg(buf, len, ".");
		return;
	}
	if (slash == path) {
		fmt_msg(buf, len, "/");
		return;
	}
	fmt_msg(buf, len, "%.*s", (int)(slash - path), path);
}

static int posix_lock_busy(int fd, const char *path)
{
	char dir[256], comm[64];
	long pid = posix_pid_from_proc_locks(fd);

	if (!pid)
		pid = posix_pid_from_file(fd);
	posix_lock_dir(path, dir, sizeof(dir));
	if (!pid) {
		fmt_msg(posix_msg, sizeof(posix_msg), "database '%s' is locked by another process",
		        dir);
		return CAIRN_EBUSY;
	}
	posix_comm(pid, comm, sizeof(comm));
	if (comm[0])
		fmt_msg(posix_msg, sizeof(posix_msg), "database '%s' is locked by process %ld (%s)",
		        dir, pid, comm);
	else
		fmt_msg(posix_msg, sizeof(posix_msg), "database '%s' is locked by process %ld", dir,
		        pid);
	return CAIRN_EBUSY;
}

/* Records our pid in the LOCK file. Failure is ignored: the pid only makes a
 * refusal message friendlier, and the lock itself is already held. */
static void posix_lock_write_pid(int fd)
{
	char buf[32];
	int n = snprintf(buf, sizeof(buf), "%ld\n", (long)getpid());

	if (ftruncate(fd, 0) == 0 && pwrite(fd, buf, (size_t)n, 0) != n)
		(void)ftruncate(fd, 0);
}

static int posix_lock(struct cairn_env *env, const char *path, struct env_lock **lkp)
{
	struct env_lock *lk;
	int fd, r;

	(void)env;
	*lkp = NULL;
	lk = malloc(sizeof(*lk));
	if (!lk) {
		fmt_msg(posix_msg, sizeof(posix_msg), "lock '%s': out of memory", path);
		return CAIRN_ENOMEM;
	}
	do {
		fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
	} while (fd < 0 && errno == EINTR);
	if (fd < 0) {
		int err = errno;
		free(lk);
		return posix_fail(err, "open", path);
	}
	do {
		r = flock(fd, LOCK_EX | LOCK_NB);
	} while (r < 0 && errno == EINTR);
	if (r < 0) {
		int err = errno;
		int rc = err == EWOULDBLOCK ? posix_lock_busy(fd, path)
		                            : posix_fail(err, "flock", path);
		close(fd);
		free(lk);
		return rc;
	}
	posix_lock_write_pid(fd);
	lk->fd = fd;
	*lkp = lk;
	return 0;
}

static int posix_unlock(struct env_lock *lk)
{
	if (!lk)
		return 0;
	/* Clear the pid while still holding the lock, so no one reads a stale
	 * one; closing the descriptor releases the flock. */
	(void)ftruncate(lk->fd, 0);
	close(lk->fd);
	free(lk);
	return 0;
}

/* ---- time and threads ---- */

static int64_t posix_now_ns(struct cairn_env *env)
{
	struct timespec ts;

	(void)env;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static uint64_t posix_mono_ns(struct cairn_env *env)
{
	struct timespec ts;

	(void)env;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void posix_sleep_us(struct cairn_env *env, uint64_t us)
{
	struct timespec ts = {(time_t)(us / 1000000), (long)(us % 1000000) * 1000};

	(void)env;
	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

static int posix_thread_start(struct cairn_env *env, void *(*fn)(void *), void *arg,
                              struct env_thread **tp)
{
	struct env_thread *t;
	int err;

	(void)env;
	*tp = NULL;
	t = malloc(sizeof(*t));
	if (!t) {
		fmt_msg(posix_msg, sizeof(posix_msg), "thread: out of memory");
		return CAIRN_ENOMEM;
	}
	err = pthread_create(&t->tid, NULL, fn, arg);
	if (err) {
		char ebuf[128];
		free(t);
		fmt_msg(posix_msg, sizeof(posix_msg), "pthread_create: %s",
		        strerror_r(err, ebuf, sizeof(ebuf)));
		return err == EAGAIN ? CAIRN_ENOMEM : CAIRN_EIO;
	}
	*tp = t;
	return 0;
}

static void posix_thread_join(struct env_thread *t)
{
	if (!t)
		return;
	pthread_join(t->tid, NULL);
	free(t);
}

/* ---- locks and waits (env.h): pthreads, unless the env schedules ---- */

void env_mutex_init(struct cairn_env *e, struct env_mutex *m)
{
	pthread_mutex_init(&m->pm, NULL);
	m->sched = e->ops->mutex_lock ? e : NULL;
	m->owner = NULL;
}

void env_mutex_destroy(struct env_mutex *m)
{
	pthread_mutex_destroy(&m->pm);
}

void env_cond_init(struct cairn_env *e, struct env_cond *c)
{
	pthread_cond_init(&c->pc, NULL);
	c->sched = e->ops->cond_wait ? e : NULL;
}

void env_cond_destroy(struct env_cond *c)
{
	pthread_cond_destroy(&c->pc);
}

void env_posix_cond_timedwait(pthread_cond_t *c, pthread_mutex_t *m, uint64_t timeout_us)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += (time_t)(timeout_us / 1000000);
	ts.tv_nsec += (long)(timeout_us % 1000000) * 1000;
	if (ts.tv_nsec >= 1000000000) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000;
	}
	pthread_cond_timedwait(c, m, &ts);
}

static void posix_errmsg(struct cairn_env *env, char *buf, size_t len)
{
	(void)env;
	fmt_msg(buf, len, "%s", posix_msg);
}

/* The process-wide instance never goes away. */
static void posix_destroy(struct cairn_env *env)
{
	(void)env;
}

static const struct env_ops posix_ops = {
        .open_read = posix_open_read,
        .open_write = posix_open_write,
        .open_append = posix_open_append,
        .close = posix_close,
        .append = posix_append,
        .pread = posix_pread,
        .sync = posix_sync,
        .size = posix_size,
        .truncate = posix_truncate,
        .exists = posix_exists,
        .file_size = posix_file_size,
        .unlink = posix_unlink,
        .rename = posix_rename,
        .link = posix_link,
        .mkdir = posix_mkdir,
        .rmdir = posix_rmdir,
        .list_dir = posix_list_dir,
        .sync_dir = posix_sync_dir,
        .lock = posix_lock,
        .unlock = posix_unlock,
        .now_ns = posix_now_ns,
        .mono_ns = posix_mono_ns,
        .sleep_us = posix_sleep_us,
        .thread_start = posix_thread_start,
        .thread_join = posix_thread_join,
        .errmsg = posix_errmsg,
        .destroy = posix_destroy,
};

/* Const, so the instance lives in read-only memory: nothing can change it. */
static const struct cairn_env posix_env = {&posix_ops, NULL};

struct cairn_env *env_posix(void)
{
	return (struct cairn_env *)&posix_env;
}
