/*
 * env.h - the environment: every file operation, the clock and thread
 * start-up of the engine go through here, and nowhere else.
 *
 * Two environments exist. The POSIX one (env_posix.c) is what a real
 * database uses. The simulated one (env_sim.c) keeps files in memory and
 * models a disk that loses power: data not yet synced can vanish or be torn
 * at any byte, directory changes not yet synced can be undone, and a chosen
 * operation can fail with EIO or ENOSPC. It runs from a seed, so a failure
 * replays exactly. Fault injection lives here, never in the engine.
 *
 * All functions return 0 or a negative CAIRN_E* code (cairn.h); on error
 * they fill the environment's message (env_errmsg) with the path and what the
 * operating system said. Paths are ordinary strings ("dir/000012.sst").
 */
#ifndef CAIRN_ENV_H
#define CAIRN_ENV_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "cairn.h"

struct env_file; /* an open file; owned by the caller until env_close() */
struct env_lock; /* a held database lock */
struct env_thread;

/* The engine's locks and waits (env_mutex_*, env_cond_* below). An env that
 * schedules threads itself (the simulated one) sets sched and keeps its
 * bookkeeping in owner and ticket; otherwise they are plain pthread objects. */
struct env_mutex {
	pthread_mutex_t pm;
	struct cairn_env *sched; /* NULL: pm is the lock */
	void *owner;             /* the scheduling env's: who holds it */
};
struct env_cond {
	pthread_cond_t pc;
	struct cairn_env *sched; /* NULL: pc is the condition */
};

struct env_ops {
	/* Files. open_* create missing files where the name says so. */
	int (*open_read)(struct cairn_env *env, const char *path, struct env_file **f);
	/* create or truncate to zero, for writing sequentially */
	int (*open_write)(struct cairn_env *env, const char *path, struct env_file **f);
	/* open an existing file for appending at its end */
	int (*open_append)(struct cairn_env *env, const char *path, struct env_file **f);
	int (*close)(struct env_file *f);
	/* Appends n bytes at the end of a file opened for writing. */
	int (*append)(struct env_file *f, const void *data, size_t n);
	/* Reads up to n bytes at off into buf; *got < n only at end of file. */
	int (*pread)(struct env_file *f, uint64_t off, void *buf, size_t n, size_t *got);
	/* Makes the file's data durable (fdatasync). */
	int (*sync)(struct env_file *f);
	int (*size)(struct env_file *f, uint64_t *size);
	/* Truncates an open writable file to size (used to cut a torn log tail). */
	int (*truncate)(struct env_file *f, uint64_t size);

	/* Names. */
	int (*exists)(struct cairn_env *env, const char *path); /* 1, 0, or <0 */
	int (*file_size)(struct cairn_env *env, const char *path, uint64_t *size);
	int (*unlink)(struct cairn_env *env, const char *path);
	/* atomic replace of to by from, as rename(2) */
	int (*rename)(struct cairn_env *env, const char *from, const char *to);
	/* hard link; CAIRN_ENOTSUP where links are impossible */
	int (*link)(struct cairn_env *env, const char *from, const char *to);
	/* mkdir with mode 0700; CAIRN_EEXIST if it exists */
	int (*mkdir)(struct cairn_env *env, const char *path);
	int (*rmdir)(struct cairn_env *env, const char *path);
	/* Calls fn for each entry name of dir except "." and "..", in no
	 * particular order; stops early and returns fn's value if nonzero. */
	int (*list_dir)(struct cairn_env *env, const char *dir,
	                int (*fn)(void *ctx, const char *name), void *ctx);
	/* Makes the directory's entries (creates, renames, unlinks) durable. */
	int (*sync_dir)(struct cairn_env *env, const char *dir);

	/* Takes an exclusive lock on path (created if missing) that another
	 * process cannot take: CAIRN_EBUSY, with the holder's pid in the message
	 * where the platform tells. */
	int (*lock)(struct cairn_env *env, const char *path, struct env_lock **lk);
	int (*unlock)(struct env_lock *lk);

	/* Time: wall clock in nanoseconds since the epoch, monotonic time in
	 * nanoseconds, and a sleep. The simulated env advances a virtual clock. */
	int64_t (*now_ns)(struct cairn_env *env);
	uint64_t (*mono_ns)(struct cairn_env *env);
	void (*sleep_us)(struct cairn_env *env, uint64_t us);

	/* Threads. The simulated env runs them one at a time, switching only at
	 * env calls, in an order its seed decides. */
	int (*thread_start)(struct cairn_env *env, void *(*fn)(void *), void *arg,
	                    struct env_thread **t);
	void (*thread_join)(struct env_thread *t);

	/* Locks and waits, for an env that schedules threads itself; NULL in
	 * the POSIX env, where env_mutex_* and env_cond_* are pthread calls.
	 * cond_wait returns after a signal or, when timeout_us > 0, once that
	 * much time passed (spurious returns are allowed, as in pthreads). */
	void (*mutex_lock)(struct env_mutex *m);
	void (*mutex_unlock)(struct env_mutex *m);
	void (*cond_wait)(struct env_cond *c, struct env_mutex *m, uint64_t timeout_us);
	void (*cond_signal)(struct env_cond *c, int all);

	/* Copies the last error message of the calling thread on this env. */
	void (*errmsg)(struct cairn_env *env, char *buf, size_t len);

	void (*destroy)(struct cairn_env *env);
};

/* The public struct cairn_env is this header: an ops table and its state.
 * Every env_file starts with a pointer back to its env (see env_posix.c). */
struct cairn_env {
	const struct env_ops *ops;
	void *state;
};

/* The process-wide POSIX env. It keeps no mutable state of its own, so one
 * shared instance is safe; error messages are kept per thread. */
struct cairn_env *env_posix(void);

/* Convenience wrappers, so callers read env_append(f, ...) not f->...->op. */
struct env_file_base {
	struct cairn_env *env;
};
static inline struct cairn_env *env_of(struct env_file *f)
{
	return ((struct env_file_base *)f)->env;
}
static inline int env_open_read(struct cairn_env *e, const char *p, struct env_file **f)
{
	return e->ops->open_read(e, p, f);
}
static inline int env_open_write(struct cairn_env *e, const char *p, struct env_file **f)
{
	return e->ops->open_write(e, p, f);
}
static inline int env_open_append(struct cairn_env *e, const char *p, struct env_file **f)
{
	return e->ops->open_append(e, p, f);
}
static inline int env_close(struct env_file *f)
{
	return f ? env_of(f)->ops->close(f) : 0;
}
static inline int env_append(struct env_file *f, const void *d, size_t n)
{
	return env_of(f)->ops->append(f, d, n);
}
static inline int env_pread(struct env_file *f, uint64_t off, void *buf, size_t n, size_t *got)
{
	return env_of(f)->ops->pread(f, off, buf, n, got);
}
static inline int env_sync(struct env_file *f)
{
	return env_of(f)->ops->sync(f);
}
static inline int env_size(struct env_file *f, uint64_t *s)
{
	return env_of(f)->ops->size(f, s);
}
static inline int env_truncate(struct env_file *f, uint64_t s)
{
	return env_of(f)->ops->truncate(f, s);
}
static inline int env_exists(struct cairn_env *e, const char *p)
{
	return e->ops->exists(e, p);
}
static inline int env_file_size(struct cairn_env *e, const char *p, uint64_t *s)
{
	return e->ops->file_size(e, p, s);
}
static inline int env_unlink(struct cairn_env *e, const char *p)
{
	return e->ops->unlink(e, p);
}
static inline int env_rename(struct cairn_env *e, const char *a, const char *b)
{
	return e->ops->rename(e, a, b);
}
static inline int env_link(struct cairn_env *e, const char *a, const char *b)
{
	return e->ops->link(e, a, b);
}
static inline int env_mkdir(struct cairn_env *e, const char *p)
{
	return e->ops->mkdir(e, p);
}
static inline int env_rmdir(struct cairn_env *e, const char *p)
{
	return e->ops->rmdir(e, p);
}
static inline int env_list_dir(struct cairn_env *e, const char *d,
                               int (*fn)(void *ctx, const char *name), void *ctx)
{
	return e->ops->list_dir(e, d, fn, ctx);
}
static inline int env_sync_dir(struct cairn_env *e, const char *d)
{
	return e->ops->sync_dir(e, d);
}
static inline int env_lock(struct cairn_env *e, const char *p, struct env_lock **l)
{
	return e->ops->lock(e, p, l);
}
static inline int env_unlock(struct cairn_env *e, struct env_lock *l)
{
	return l ? e->ops->unlock(l) : 0;
}
static inline int64_t env_now_ns(struct cairn_env *e)
{
	return e->ops->now_ns(e);
}
static inline uint64_t env_mono_ns(struct cairn_env *e)
{
	return e->ops->mono_ns(e);
}
static inline void env_sleep_us(struct cairn_env *e, uint64_t us)
{
	e->ops->sleep_us(e, us);
}
static inline int env_thread_start(struct cairn_env *e, void *(*fn)(void *), void *arg,
                                   struct env_thread **t)
{
	return e->ops->thread_start(e, fn, arg, t);
}
static inline void env_thread_join(struct cairn_env *e, struct env_thread *t)
{
	if (t)
		e->ops->thread_join(t);
}
/* Every mutex or condition variable that the engine holds or waits on
 * across an env call is one of these, so that a scheduling env can hand the
 * processor to another thread while one waits. Under the POSIX env each is
 * the pthread call behind one well-predicted branch. */
void env_mutex_init(struct cairn_env *e, struct env_mutex *m);
void env_mutex_destroy(struct env_mutex *m);
void env_cond_init(struct cairn_env *e, struct env_cond *c);
void env_cond_destroy(struct env_cond *c);
/* pthread_cond_timedwait on the realtime clock, timeout_us from now */
void env_posix_cond_timedwait(pthread_cond_t *c, pthread_mutex_t *m, uint64_t timeout_us);

static inline void env_mutex_lock(struct env_mutex *m)
{
	if (__builtin_expect(m->sched != NULL, 0))
		m->sched->ops->mutex_lock(m);
	else
		pthread_mutex_lock(&m->pm);
}
static inline void env_mutex_unlock(struct env_mutex *m)
{
	if (__builtin_expect(m->sched != NULL, 0))
		m->sched->ops->mutex_unlock(m);
	else
		pthread_mutex_unlock(&m->pm);
}
static inline void env_cond_wait(struct env_cond *c, struct env_mutex *m)
{
	if (__builtin_expect(c->sched != NULL, 0))
		c->sched->ops->cond_wait(c, m, 0);
	else
		pthread_cond_wait(&c->pc, &m->pm);
}
/* Waits for a signal or timeout_us (> 0) microseconds of the env's time. */
static inline void env_cond_timedwait(struct env_cond *c, struct env_mutex *m, uint64_t timeout_us)
{
	if (c->sched)
		c->sched->ops->cond_wait(c, m, timeout_us);
	else
		env_posix_cond_timedwait(&c->pc, &m->pm, timeout_us);
}
static inline void env_cond_signal(struct env_cond *c)
{
	if (__builtin_expect(c->sched != NULL, 0))
		c->sched->ops->cond_signal(c, 0);
	else
		pthread_cond_signal(&c->pc);
}
static inline void env_cond_broadcast(struct env_cond *c)
{
	if (__builtin_expect(c->sched != NULL, 0))
		c->sched->ops->cond_signal(c, 1);
	else
		pthread_cond_broadcast(&c->pc);
}

/* Frees an env made by env_sim_new (the POSIX env ignores it). */
static inline void env_destroy(struct cairn_env *e)
{
	if (e)
		e->ops->destroy(e);
}
static inline void env_errmsg(struct cairn_env *e, char *buf, size_t len)
{
	e->ops->errmsg(e, buf, len);
}

/* ---- the simulated env (env_sim.c) ---- */

enum sim_fault {
	SIM_FAULT_NONE = 0,
	SIM_FAULT_EIO,    /* the operation fails with CAIRN_EIO */
	SIM_FAULT_ENOSPC, /* the operation fails with CAIRN_ENOSPC */
	SIM_FAULT_CRASH,  /* power is lost just before the operation */
	/* As EIO and ENOSPC, but an append first writes a prefix of its bytes
	 * (of a length the seed chooses, possibly none or all but one). */
	SIM_FAULT_EIO_PARTIAL,
	SIM_FAULT_ENOSPC_PARTIAL,
	/* The first file sync at or after the point fails with CAIRN_EIO and
	 * the file's unsynced data never reaches the disk, as Linux does after
	 * a writeback error: reads still see it, the next sync succeeds, and
	 * after power loss the file holds zeros there. */
	SIM_FAULT_SYNC_LOST,
	/* Read faults (env_sim_arm_read): the n-th read fails with CAIRN_EIO,
	 * or returns its bytes with one bit flipped. */
	SIM_FAULT_READ_EIO,
	SIM_FAULT_READ_FLIP,
};

/* Creates a simulated env with an empty file system, whose randomness (tear
 * points, which unsynced data survives a crash) comes from seed, and whose
 * clock starts at start_ns and advances 1 us on every call to now_ns. */
int env_sim_new(uint64_t seed, int64_t start_ns, struct cairn_env **envp);
void env_sim_free(struct cairn_env *env);

/* Counts "write points": every open_write, append, sync, truncate, rename,
 * unlink, link, mkdir, rmdir and sync_dir. The model (what survives a crash,
 * how faults fire) is described at the top of env_sim.c. */
uint64_t env_sim_write_points(struct cairn_env *env);

/* Arms a fault at the n-th write point from now (n >= 1). After a CRASH
 * fault every operation fails with CAIRN_EIO until env_sim_reboot().
 * SYNC_LOST waits for the first file sync at or after that point. */
void env_sim_arm(struct cairn_env *env, uint64_t n, enum sim_fault fault);
/* Makes every write point fail with fault from now on (EIO or ENOSPC), until
 * disarmed with SIM_FAULT_NONE. */
void env_sim_fail_all(struct cairn_env *env, enum sim_fault fault);
int env_sim_crashed(struct cairn_env *env);

/* A disk of bytes bytes (0, the default: no limit): an append that would
 * make the files hold more fails with CAIRN_ENOSPC and changes nothing.
 * A file counts what it holds now or, if more, what power loss would leave;
 * an unlinked file frees its bytes at once unless it is still open. env_sim_used
 * gives the figure. */
void env_sim_set_capacity(struct cairn_env *env, uint64_t bytes);
uint64_t env_sim_used(struct cairn_env *env);

/* Arms a read fault (READ_EIO or READ_FLIP) at the n-th pread from now
 * (n >= 1; 0 disarms). Reads are counted apart from write points. */
void env_sim_arm_read(struct cairn_env *env, uint64_t n, enum sim_fault fault);
uint64_t env_sim_read_points(struct cairn_env *env);

/* Power loss may also leave zero-filled 4 KiB holes in the unsynced data
 * that survives (a file system that extended the file but never wrote some
 * of its blocks) in files whose name ends with suffix ("" for every file;
 * NULL, the default, for none). */
void env_sim_set_holes(struct cairn_env *env, const char *suffix);

/* Figures: context switches of the scheduler, faults fired (armed write
 * and read faults; each failure of fail_all counts too). */
uint64_t env_sim_switches(struct cairn_env *env);
uint64_t env_sim_faults(struct cairn_env *env);

/* Simulates power loss now: for every file, data not synced is dropped or,
 * chosen by the seed, a prefix of it survives (a torn write); directory
 * entries created, renamed or removed since the directory's last sync_dir are
 * restored to their synced state (chosen by the seed, each may survive).
 * Open files become invalid (any use fails with CAIRN_EIO). */
void env_sim_crash(struct cairn_env *env);
/* After a crash: clears the crashed state so the database can be reopened. */
void env_sim_reboot(struct cairn_env *env);

/* Test helpers: direct access to a file's current bytes. They work even
 * while crashed and count no write point. read_file returns a malloc'd copy
 * (free() it); write_file sets both the current and the durable contents
 * (as if written and synced, for corruption tests), creating the file and
 * any missing directories durably. Close every file and release every lock
 * before env_sim_free(). */
int env_sim_read_file(struct cairn_env *env, const char *path, char **data, size_t *len);
int env_sim_write_file(struct cairn_env *env, const char *path, const void *data, size_t len);

#endif
