/*
 * env_sim.c - a simulated environment: an in-memory file system that loses
 * power on demand, a virtual clock, and injected I/O errors, all decided by a
 * seed so that any failing run replays exactly. The engine runs on it
 * unchanged; crash and fault tests drive it from outside (DESIGN.md,
 * "Determinism and testing").
 *
 * The model
 *
 * Files are inodes with two byte strings: the current contents (what reads
 * see) and the durable contents (what survives power loss). sync() makes the
 * durable contents equal to the current ones. Several names may refer to one
 * inode (link), and an inode lives while a name in either view or an open
 * handle refers to it (reference counts; freed inodes are collected after
 * each operation).
 *
 * Directories are inodes too, holding entries. Each entry binds a name twice:
 * to its current inode and to its durable inode (either may be absent).
 * create, mkdir, unlink, rmdir, rename and link change current bindings only;
 * sync_dir(dir) makes the durable binding of every entry directly in dir equal
 * to its current one. A directory made durable inside a parent that never
 * was is lost with its parent, as on a real disk.
 *
 * Power loss (env_sim_crash, or an armed CRASH fault):
 * - each file whose current contents differ from its durable ones: if the
 *   current contents extend the durable ones (appends only), a prefix of the
 *   appended bytes of any length survives, from none to all (a torn write),
 *   and in files named as env_sim_set_holes() chose, some 4 KiB pages of it
 *   may read as zeros (blocks allocated but never written); anything else (a
 *   truncation, a file recreated by open_write) reverts to the durable
 *   contents; bytes a failed sync lost are zeros either way;
 * - each entry whose bindings differ either keeps its current binding or
 *   reverts to its durable one. Entries changed by one rename or link are
 *   tied into a change group (groups merge when a later rename touches them)
 *   and the group decides as one, so a rename stays atomic: the target names
 *   the new inode or the old one, never neither, and the source comes back
 *   exactly when the target goes back;
 * - every open file becomes dead (its operations fail with CAIRN_EIO), every
 *   lock is released, and the env is "crashed": every operation fails with
 *   CAIRN_EIO until env_sim_reboot().
 * Every choice is a hash of (seed, crash number, inode or group id), so it
 * does not depend on the order of anything but the operations themselves.
 *
 * Paths have no working directory: "db/x", "/db/x" and "./db//x" all name
 * the entry x in the directory db of the root; ".." is refused.
 *
 * Write points: every open_write, append, sync, truncate, rename, unlink,
 * link, mkdir, rmdir and sync_dir is one, counted from env creation
 * (env_sim_write_points). An armed fault fires on the n-th one from the
 * arming: EIO and ENOSPC fail it with no effect at all (the _PARTIAL kinds
 * let an append write a seeded prefix first), CRASH loses power just before
 * it and fails it with CAIRN_EIO, SYNC_LOST fails the first file sync from
 * there on and marks the file's unsynced bytes lost: reads still see them, no
 * later sync makes them durable, power loss turns them to zeros (the file's
 * length is durable). env_sim_fail_all fails every one. Reads are counted
 * apart (env_sim_read_points); an armed read fault fails the n-th or flips
 * one bit of what it returns, leaving the file intact. The random choices of
 * faults hash (seed, faults fired so far).
 *
 * Clock: one virtual counter of nanoseconds. now_ns returns start_ns plus the
 * counter, mono_ns returns one second plus the counter, and each call adds
 * 1000 ns; sleep_us adds its argument without sleeping (a scheduled thread
 * waits for the clock to get there, see below). Power loss does not stop the
 * clock.
 *
 * One mutex guards everything, so tests may share the env between threads.
 * Threads started through the env are scheduled one at a time from the seed
 * (see "threads" below). list_dir calls its callback without the mutex held,
 * on a copy of the names, so the callback may use the env.
 */
#include <assert.h>
#include <stddef.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "env.h"
#include "util.h"

#define SIM_MSG_LEN    512
#define SIM_PATH_MAX   4096
#define SIM_NAME_MAX   255
#define SIM_CLOCK_STEP 1000

struct sim_inode;

struct sim_dirent {
	char *name;
	struct sim_inode *cur; /* NULL: absent now */
	struct sim_inode *dur; /* NULL: absent after power loss */
	uint64_t group;        /* change group of an unsynced rename or link; 0 if none */
};

struct sim_inode {
	struct sim_inode *prev, *next; /* every inode, in creation order */
	uint64_t id;
	unsigned long refs; /* entries (either view) + open handles + 1 for the root */
	unsigned long live; /* current entries + open handles: holds disk space */
	int is_dir;
	struct buf cur, dur;       /* files */
	uint64_t lost_lo, lost_hi; /* bytes a failed sync lost: never durable */
	int may_hole;              /* named so that power loss may punch holes */
	struct sim_dirent *ents;   /* directories, in creation order */
	size_t nents, capents;
};

struct sim_lock {
	struct sim *s;
	struct sim_lock *next;
	uint64_t epoch; /* stale after a crash: unlock then only frees */
	char path[];
};

struct sim_file {
	struct env_file_base base; /* must be first: env_of() reads it */
	struct sim_inode *ino;
	int writable;
	uint64_t epoch; /* dead once the env's epoch moves on (a crash) */
	char path[];
};

struct sim {
	struct cairn_env env; /* env.state points back here */
	pthread_mutex_t mu;
	uint64_t seed;
	int64_t start_ns;
	uint64_t clock;
	struct sim_inode *root;
	struct sim_inode *head, *tail; /* all inodes */
	unsigned long zombies;         /* inodes with refs == 0 not yet freed */
	uint64_t next_id, next_group;
	uint64_t points, armed_at;
	enum sim_fault armed, fail_all;
	uint64_t reads, read_at; /* read points, and the one read_fault fires on */
	enum sim_fault read_fault;
	char *holes;     /* suffix of the names that may get holes; NULL: none */
	uint64_t faults; /* faults fired, a salt for their random choices */
	int crashed;
	uint64_t epoch, crashes;
	uint64_t capacity; /* bytes the disk holds (env_sim_set_capacity); 0: no limit */
	struct sim_lock *locks;
	char msg[SIM_MSG_LEN];

	/* the scheduler: on (running != NULL) once a thread is started */
	struct env_thread *threads; /* in creation order; the starter first */
	struct env_thread *running; /* the one holding the baton */
	uint64_t gen;               /* tells this env from a freed one (sim_me) */
	uint64_t sched_rng, next_tid, tickets, switches;
	pthread_cond_t unreg_cv; /* waits of threads the scheduler does not know */
};

static struct sim *sim_of(struct cairn_env *env)
{
	return env->state;
}

static int sim_fail(struct sim *s, int code, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));

static int sim_fail(struct sim *s, int code, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(s->msg, sizeof(s->msg), fmt, ap);
	va_end(ap);
	return code;
}

/* A random number for one decision of one crash, independent of the order in
 * which decisions are taken. */
static uint64_t sim_rand(struct sim *s, uint64_t kind, uint64_t id)
{
	uint64_t st = s->seed;

	st ^= prng_next(&st) ^ s->crashes;
	st ^= prng_next(&st) ^ kind;
	st ^= prng_next(&st) ^ id;
	return prng_next(&st);
}

/* ---- threads: one at a time, in a seeded order ----
 *
 * The first thread_start makes the calling thread and every thread started
 * through the env "scheduled": exactly one of them runs at a time, holding
 * the baton (s->running); the others wait on their own condition variable.
 * The baton moves only inside env calls: at the start of every file
 * operation, clock read, sleep, mutex lock and thread start the running
 * thread may hand it to another runnable thread (one in four, chosen by a
 * PRNG seeded from the seed), and it must hand it on when it blocks on an
 * env mutex, an env condition variable, a sleep or a join. The engine's
 * threads therefore interleave in an order decided by the seed alone, and a
 * failing seed replays byte for byte. A thread blocked with a deadline (a
 * sleep, a timed wait) wakes once the virtual clock reaches it; when every
 * thread waits, the clock jumps to the earliest deadline; when every thread
 * waits with none, that is a deadlock: the env prints the seed and what each
 * thread waits on, and aborts.
 *
 * The engine's own pthread locks (block cache, table error) are held across
 * no env call, so the running thread never finds one taken. Threads the
 * scheduler does not know (no thread was started, or a test shares the env
 * with threads of its own) run as before, waiting on real condition
 * variables. */

enum { SIM_RUNNABLE, SIM_BLOCKED, SIM_DONE };

struct env_thread {
	struct sim *s;
	struct env_thread *next;
	pthread_t pt;
	uint64_t id; /* 0: the thread that started the first one */
	int state;
	const void *wait_on;  /* the mutex, condition, thread or sleep waited on */
	const char *wait_why; /* for the deadlock report */
	uint64_t ticket;      /* order of waits: signal wakes the oldest */
	uint64_t deadline;    /* clock value that ends the wait; 0: none */
	pthread_cond_t go;    /* signalled when this thread gets the baton */
	void *(*fn)(void *);
	void *arg;
};

static _Thread_local struct env_thread *sim_self;
static _Thread_local uint64_t sim_self_gen;
static _Atomic uint64_t sim_gens;
static const char sim_sleep_tag = 0;

/* The calling thread's record if this env schedules it. Only the generation
 * is compared, so a record of a freed env is never touched. */
static struct env_thread *sim_me(struct sim *s)
{
	return sim_self && sim_self_gen == s->gen ? sim_self : NULL;
}

static void sim_make_runnable(struct env_thread *t)
{
	t->state = SIM_RUNNABLE;
	t->wait_on = NULL;
	t->wait_why = NULL;
	t->deadline = 0;
}

static void sim_wake_timers(struct sim *s)
{
	for (struct env_thread *t = s->threads; t; t = t->next) {
		if (t->state == SIM_BLOCKED && t->deadline && t->deadline <= s->clock)
			sim_make_runnable(t);
	}
}

/* Wakes the threads waiting on obj: all, or the one that waits longest. */
static void sim_wake(struct sim *s, const void *obj, int all)
{
	struct env_thread *oldest = NULL;

	for (struct env_thread *t = s->threads; t; t = t->next) {
		if (t->state != SIM_BLOCKED || t->wait_on != obj)
			continue;
		if (all)
			sim_make_runnable(t);
		else if (!oldest || t->ticket < oldest->ticket)
			oldest = t;
	}
	if (oldest)
		sim_make_runnable(oldest);
	pthread_cond_broadcast(&s->unreg_cv);
}

static void sim_deadlock(struct sim *s)
{
	fprintf(stderr, "env_sim: seed %llu: deadlock, every thread waits:\n",
	        (unsigned long long)s->seed);
	for (struct env_thread *t = s->threads; t; t = t->next)
		fprintf(stderr, "  thread %llu: %s %s\n", (unsigned long long)t->id,
		        t->state == SIM_DONE ? "done" : "waits on", t->wait_why ? t->wait_why : "");
	abort();
}

/* A runnable thread chosen by the seed; when none is, the clock jumps to the
 * earliest deadline. */
static struct env_thread *sim_pick(struct sim *s)
{
	struct env_thread *t, *first = NULL;
	uint64_t n = 0, k;

	sim_wake_timers(s);
	for (t = s->threads; t; t = t->next)
		n += t->state == SIM_RUNNABLE;
	if (n == 0) {
		for (t = s->threads; t; t = t->next) {
			if (t->state == SIM_BLOCKED && t->deadline &&
			    (!first || t->deadline < first->deadline))
				first = t;
		}
		if (!first)
			sim_deadlock(s);
		if (first->deadline > s->clock)
			s->clock = first->deadline;
		sim_make_runnable(first);
		return first;
	}
	k = prng_below(&s->sched_rng, n);
	for (t = s->threads;; t = t->next) {
		if (t->state == SIM_RUNNABLE && k-- == 0)
			return t;
	}
}

/* Gives the baton to next and, unless me is NULL (a thread that ends),
 * waits until it comes back. */
static void sim_hand(struct sim *s, struct env_thread *me, struct env_thread *next)
{
	if (next != me) {
		s->switches++;
		s->running = next;
		pthread_cond_signal(&next->go);
	}
	while (me && s->running != me)
		pthread_cond_wait(&me->go, &s->mu);
}

/* A scheduling point: the running thread may let another one run. */
static void sim_yield(struct sim *s)
{
	struct env_thread *me = sim_me(s);
	int n = 0;

	if (!me)
		return;
	sim_wake_timers(s);
	for (struct env_thread *t = s->threads; t; t = t->next)
		n += t->state == SIM_RUNNABLE;
	if (n < 2 || prng_below(&s->sched_rng, 4) != 0)
		return;
	sim_hand(s, me, sim_pick(s));
}

/* Blocks the running thread on obj until woken (or the deadline passes). */
static void sim_block(struct sim *s, struct env_thread *me, const void *obj, const char *why,
                      uint64_t deadline)
{
	me->state = SIM_BLOCKED;
	me->wait_on = obj;
	me->wait_why = why;
	me->ticket = ++s->tickets;
	me->deadline = deadline;
	sim_hand(s, me, sim_pick(s));
}

/* Waits, the state mutex held, until m is free, then takes it. */
static void sim_acquire(struct sim *s, struct env_mutex *m)
{
	struct env_thread *me = sim_me(s);

	while (m->owner) {
		if (m->owner == (void *)&sim_self) {
			fprintf(stderr, "env_sim: seed %llu: a thread locks a mutex it holds\n",
			        (unsigned long long)s->seed);
			abort();
		}
		if (me)
			sim_block(s, me, m, "a mutex", 0);
		else
			pthread_cond_wait(&s->unreg_cv, &s->mu);
	}
	m->owner = (void *)&sim_self; /* unique to the calling thread */
}

static void sim_release(struct sim *s, struct env_mutex *m)
{
	m->owner = NULL;
	sim_wake(s, m, 1);
}

static void sim_mutex_lock(struct env_mutex *m)
{
	struct sim *s = sim_of(m->sched);

	pthread_mutex_lock(&s->mu);
	sim_yield(s);
	sim_acquire(s, m);
	pthread_mutex_unlock(&s->mu);
}

static void sim_mutex_unlock(struct env_mutex *m)
{
	struct sim *s = sim_of(m->sched);

	pthread_mutex_lock(&s->mu);
	sim_release(s, m);
	pthread_mutex_unlock(&s->mu);
}

static void sim_cond_wait(struct env_cond *c, struct env_mutex *m, uint64_t timeout_us)
{
	struct sim *s = sim_of(c->sched);
	struct env_thread *me;

	pthread_mutex_lock(&s->mu);
	me = sim_me(s);
	sim_release(s, m);
	if (me)
		sim_block(s, me, c, timeout_us ? "a condition (timed)" : "a condition",
		          timeout_us ? s->clock + timeout_us * 1000 : 0);
	else if (timeout_us)
		s->clock += timeout_us * 1000; /* alone: nobody could signal */
	else
		pthread_cond_wait(&s->unreg_cv, &s->mu);
	sim_acquire(s, m);
	pthread_mutex_unlock(&s->mu);
}

static void sim_cond_signal(struct env_cond *c, int all)
{
	struct sim *s = sim_of(c->sched);

	pthread_mutex_lock(&s->mu);
	sim_wake(s, c, all);
	pthread_mutex_unlock(&s->mu);
}

static void *sim_trampoline(void *arg)
{
	struct env_thread *t = arg;
	struct sim *s = t->s;

	pthread_mutex_lock(&s->mu);
	sim_self = t;
	sim_self_gen = s->gen;
	while (s->running != t)
		pthread_cond_wait(&t->go, &s->mu);
	pthread_mutex_unlock(&s->mu);
	t->fn(t->arg);
	pthread_mutex_lock(&s->mu);
	t->state = SIM_DONE;
	sim_wake(s, t, 1);
	sim_hand(s, NULL, sim_pick(s));
	pthread_mutex_unlock(&s->mu);
	return NULL;
}

static struct env_thread *sim_thread_new(struct sim *s, uint64_t id)
{
	struct env_thread *t = calloc(1, sizeof(*t)), **pp;

	if (!t)
		return NULL;
	t->s = s;
	t->id = id;
	t->state = SIM_RUNNABLE;
	pthread_cond_init(&t->go, NULL);
	for (pp = &s->threads; *pp; pp = &(*pp)->next)
		;
	*pp = t;
	return t;
}

static void sim_thread_unlink(struct sim *s, struct env_thread *t)
{
	for (struct env_thread **pp = &s->threads; *pp; pp = &(*pp)->next) {
		if (*pp == t) {
			*pp = t->next;
			break;
		}
	}
	pthread_cond_destroy(&t->go);
	free(t);
}

static int sim_thread_start(struct cairn_env *env, void *(*fn)(void *), void *arg,
                            struct env_thread **tp)
{
	struct sim *s = sim_of(env);
	struct env_thread *me, *t = NULL;
	int rc = 0;

	*tp = NULL;
	pthread_mutex_lock(&s->mu);
	me = sim_me(s);
	if (!me && s->running)
		rc = sim_fail(
		        s, CAIRN_ENOTSUP,
		        "thread: only scheduled threads may start threads on a simulated env");
	if (!rc && !me) {
		/* the caller becomes scheduled thread 0, holding the baton */
		me = sim_thread_new(s, 0);
		if (me) {
			sim_self = me;
			sim_self_gen = s->gen;
			s->running = me;
		}
	}
	if (!rc && me)
		t = sim_thread_new(s, ++s->next_tid);
	if (!rc && !t)
		rc = sim_fail(s, CAIRN_ENOMEM, "thread: out of memory");
	if (!rc) {
		t->fn = fn;
		t->arg = arg;
		if (pthread_create(&t->pt, NULL, sim_trampoline, t)) {
			sim_thread_unlink(s, t);
			rc = sim_fail(s, CAIRN_ENOMEM, "thread: pthread_create failed");
		}
	}
	if (!rc) {
		*tp = t;
		sim_yield(s);
	}
	pthread_mutex_unlock(&s->mu);
	return rc;
}

static void sim_thread_join(struct env_thread *t)
{
	struct sim *s;
	struct env_thread *me;

	if (!t)
		return;
	s = t->s;
	pthread_mutex_lock(&s->mu);
	me = sim_me(s);
	while (t->state != SIM_DONE) {
		if (me)
			sim_block(s, me, t, "a thread to end", 0);
		else
			pthread_cond_wait(&s->unreg_cv, &s->mu);
	}
	pthread_mutex_unlock(&s->mu);
	pthread_join(t->pt, NULL);
	pthread_mutex_lock(&s->mu);
	sim_thread_unlink(s, t);
	pthread_mutex_unlock(&s->mu);
}

/* ---- inodes and entries ---- */

static struct sim_inode *sim_inode_new(struct sim *s, int is_dir)
{
	struct sim_inode *ino = calloc(1, sizeof(*ino));

	if (!ino)
		return NULL;
	ino->id = ++s->next_id;
	ino->is_dir = is_dir;
	ino->prev = s->tail;
	if (s->tail)
		s->tail->next = ino;
	else
		s->head = ino;
	s->tail = ino;
	/* Born a zombie: the first reference revives it, and if creation fails
	 * half way the collector frees it. */
	s->zombies++;
	return ino;
}

static void sim_ref(struct sim *s, struct sim_inode *ino)
{
	if (!ino)
		return;
	if (ino->refs++ == 0)
		s->zombies--;
}

static void sim_unref(struct sim *s, struct sim_inode *ino)
{
	if (!ino)
		return;
	assert(ino->refs > 0);
	if (--ino->refs == 0)
		s->zombies++;
}

static void sim_inode_free(struct sim *s, struct sim_inode *ino)
{
	if (ino->prev)
		ino->prev->next = ino->next;
	else
		s->head = ino->next;
	if (ino->next)
		ino->next->prev = ino->prev;
	else
		s->tail = ino->prev;
	for (size_t i = 0; i < ino->nents; i++)
		free(ino->ents[i].name);
	free(ino->ents);
	buf_free(&ino->cur);
	buf_free(&ino->dur);
	free(ino);
}

/* Frees every unreferenced inode. Freeing a directory only marks its
 * children as zombies (never frees them on the spot, so the saved next
 * pointer stays valid); a child earlier in the list waits for the next pass,
 * so the passes are bounded by the depth of the tree. */
static void sim_collect(struct sim *s)
{
	while (s->zombies > 0) {
		struct sim_inode *ino, *next;

		for (ino = s->head; ino; ino = next) {
			next = ino->next;
			if (ino->refs)
				continue;
			for (size_t i = 0; i < ino->nents; i++) {
				sim_unref(s, ino->ents[i].cur);
				sim_unref(s, ino->ents[i].dur);
			}
			s->zombies--;
			sim_inode_free(s, ino);
		}
	}
}

static void sim_set_cur(struct sim *s, struct sim_dirent *e, struct sim_inode *ino)
{
	sim_ref(s, ino);
	if (ino)
		ino->live++;
	if (e->cur)
		e->cur->live--;
	sim_unref(s, e->cur);
	e->cur = ino;
}

static void sim_set_dur(struct sim *s, struct sim_dirent *e, struct sim_inode *ino)
{
	sim_ref(s, ino);
	sim_unref(s, e->dur);
	e->dur = ino;
}

/* Drops entries bound to nothing in either view. Keeps the order of the rest,
 * so listings stay deterministic. */
static void sim_dir_compact(struct sim_inode *dir)
{
	size_t j = 0;

	for (size_t i = 0; i < dir->nents; i++) {
		if (!dir->ents[i].cur && !dir->ents[i].dur) {
			free(dir->ents[i].name);
			continue;
		}
		dir->ents[j++] = dir->ents[i];
	}
	dir->nents = j;
}

static struct sim_dirent *sim_lookup(struct sim_inode *dir, const char *name, size_t len)
{
	for (size_t i = 0; i < dir->nents; i++) {
		struct sim_dirent *e = &dir->ents[i];
		if (strlen(e->name) == len && !memcmp(e->name, name, len))
			return e;
	}
	return NULL;
}

/* The current inode named name in dir, or NULL. */
static struct sim_inode *sim_child(struct sim_inode *dir, const char *name, size_t len)
{
	struct sim_dirent *e = sim_lookup(dir, name, len);
	return e ? e->cur : NULL;
}

/* Finds or adds the entry for name. Adding may move every entry of dir, so
 * callers look up other entries of dir again afterwards. */
static struct sim_dirent *sim_entry(struct sim_inode *dir, const char *name, size_t len)
{
	struct sim_dirent *e = sim_lookup(dir, name, len);
	char *copy;

	if (e)
		return e;
	if (dir->nents == dir->capents) {
		size_t cap = dir->capents ? dir->capents * 2 : 8;
		struct sim_dirent *ents = realloc(dir->ents, cap * sizeof(*ents));
		if (!ents)
			return NULL;
		dir->ents = ents;
		dir->capents = cap;
	}
	copy = malloc(len + 1);
	if (!copy)
		return NULL;
	memcpy(copy, name, len);
	copy[len] = '\0';
	e = &dir->ents[dir->nents++];
	memset(e, 0, sizeof(*e));
	e->name = copy;
	return e;
}

/* Puts e and everything already tied to it into change group g. */
static void sim_join_group(struct sim *s, struct sim_dirent *e, uint64_t g)
{
	uint64_t old = e->group;

	e->group = g;
	if (!old)
		return;
	for (struct sim_inode *ino = s->head; ino; ino = ino->next) {
		for (size_t i = 0; i < ino->nents; i++) {
			if (ino->ents[i].group == old)
				ino->ents[i].group = g;
		}
	}
}

/* ---- paths ---- */

/* Returns the next component of a path at *p (skipping slashes and "."),
 * advancing *p past it, or NULL at the end. */
static const char *sim_next_comp(const char **p, size_t *len)
{
	const char *s = *p;

	for (;;) {
		const char *start;

		while (*s == '/')
			s++;
		if (!*s) {
			*p = s;
			return NULL;
		}
		start = s;
		while (*s && *s != '/')
			s++;
		if (s - start == 1 && start[0] == '.')
			continue;
		*p = s;
		*len = (size_t)(s - start);
		return start;
	}
}

/* The parent directory of path's last component, walked in the current view,
 * and that component. *name is NULL when path names the root. */
static int sim_walk(struct sim *s, const char *op, const char *path, struct sim_inode **dirp,
                    const char **name, size_t *nlen)
{
	struct sim_inode *dir = s->root;
	const char *p = path, *comp;
	size_t len;

	*dirp = NULL;
	*name = NULL;
	*nlen = 0;
	if (strlen(path) >= SIM_PATH_MAX)
		return sim_fail(s, CAIRN_EINVAL, "%s '%s': path too long", op, path);
	comp = sim_next_comp(&p, &len);
	while (comp) {
		const char *next;
		size_t nextlen;

		if (len > SIM_NAME_MAX || (len == 2 && comp[0] == '.' && comp[1] == '.'))
			return sim_fail(s, CAIRN_EINVAL, "%s '%s': invalid path", op, path);
		next = sim_next_comp(&p, &nextlen);
		if (!next)
			break;
		dir = sim_child(dir, comp, len);
		if (!dir)
			return sim_fail(s, CAIRN_ENOENT, "%s '%s': No such file or directory", op,
			                path);
		if (!dir->is_dir)
			return sim_fail(s, CAIRN_EIO, "%s '%s': Not a directory", op, path);
		comp = next;
		len = nextlen;
	}
	*dirp = dir;
	*name = comp;
	*nlen = len;
	return 0;
}

/* The inode path names now (the root for an empty path), or an error. */
static int sim_resolve(struct sim *s, const char *op, const char *path, struct sim_inode **inop)
{
	struct sim_inode *dir, *ino;
	const char *name;
	size_t len;
	int rc = sim_walk(s, op, path, &dir, &name, &len);

	*inop = NULL;
	if (rc)
		return rc;
	ino = name ? sim_child(dir, name, len) : dir;
	if (!ino)
		return sim_fail(s, CAIRN_ENOENT, "%s '%s': No such file or directory", op, path);
	*inop = ino;
	return 0;
}

/* The canonical spelling of a path ("a/b"), for the lock table and for the
 * rename-into-itself check. */
static int sim_normalize(struct sim *s, const char *op, const char *path, char *out, size_t cap)
{
	const char *p = path, *comp;
	size_t len, n = 0;

	while ((comp = sim_next_comp(&p, &len))) {
		if (n + len + 2 > cap)
			return sim_fail(s, CAIRN_EINVAL, "%s '%s': path too long", op, path);
		if (n)
			out[n++] = '/';
		memcpy(out + n, comp, len);
		n += len;
	}
	out[n] = '\0';
	return 0;
}

/* ---- faults ---- */

static void sim_crash_locked(struct sim *s);
static int sim_copy(struct buf *dst, const struct buf *src);

static int sim_check_up(struct sim *s, const char *op, const char *path)
{
	if (s->crashed)
		return sim_fail(s, CAIRN_EIO, "%s '%s': simulated power loss (reboot first)", op,
		                path);
	return 0;
}

/* Counts one write point and fires the fault due on it, if any. *fired (if
 * not NULL) tells which fired, for the partial and sync faults, which the
 * caller carries out; without it they act as plain EIO or ENOSPC. */
static int sim_point_f(struct sim *s, const char *op, const char *path, enum sim_fault *fired)
{
	enum sim_fault f = SIM_FAULT_NONE;
	int rc = sim_check_up(s, op, path);

	if (fired)
		*fired = SIM_FAULT_NONE;
	if (rc)
		return rc;
	s->points++;
	if (s->fail_all != SIM_FAULT_NONE) {
		f = s->fail_all;
	} else if (s->armed == SIM_FAULT_SYNC_LOST && s->points >= s->armed_at) {
		/* only a file sync can lose its pages */
		if (strcmp(op, "fdatasync") != 0)
			return 0;
		f = s->armed;
		s->armed = SIM_FAULT_NONE;
	} else if (s->armed != SIM_FAULT_NONE && s->points == s->armed_at) {
		f = s->armed;
		s->armed = SIM_FAULT_NONE;
	}
	if (f != SIM_FAULT_NONE)
		s->faults++;
	if (fired)
		*fired = f;
	switch (f) {
	case SIM_FAULT_NONE:
		return 0;
	case SIM_FAULT_ENOSPC_PARTIAL:
	case SIM_FAULT_ENOSPC:
		return sim_fail(s, CAIRN_ENOSPC, "%s '%s': No space left on device (injected)", op,
		                path);
	case SIM_FAULT_CRASH:
		sim_crash_locked(s);
		return sim_fail(s, CAIRN_EIO, "%s '%s': simulated power loss", op, path);
	case SIM_FAULT_SYNC_LOST:
		return sim_fail(s, CAIRN_EIO,
		                "%s '%s': Input/output error (injected; unsynced data lost)", op,
		                path);
	case SIM_FAULT_EIO:
	default:
		return sim_fail(s, CAIRN_EIO, "%s '%s': Input/output error (injected)", op, path);
	}
}

static int sim_point(struct sim *s, const char *op, const char *path)
{
	return sim_point_f(s, op, path, NULL);
}

/* A random number for one decision of one fired fault. */
static uint64_t sim_fault_rand(struct sim *s, uint64_t kind)
{
	uint64_t st = s->seed ^ 0x6a09e667f3bcc909ull;

	st ^= prng_next(&st) ^ s->faults;
	st ^= prng_next(&st) ^ kind;
	return prng_next(&st);
}

/* The durable contents of ino become its current ones, except the bytes a
 * failed sync lost, which stay zero. */
static int sim_make_durable_contents(struct sim_inode *ino)
{
	if (sim_copy(&ino->dur, &ino->cur))
		return CAIRN_ENOMEM;
	if (ino->lost_hi > ino->lost_lo && ino->lost_lo < ino->dur.len) {
		uint64_t hi = ino->lost_hi < ino->dur.len ? ino->lost_hi : ino->dur.len;
		memset(ino->dur.data + ino->lost_lo, 0, (size_t)(hi - ino->lost_lo));
	}
	return 0;
}

/* A sync failed with its pages dropped: the unsynced bytes are marked lost,
 * and the file's new size is durable (so power loss shows zeros there). */
static void sim_lose_unsynced(struct sim_inode *ino)
{
	uint64_t lo = 0;

	while (lo < ino->cur.len && lo < ino->dur.len && ino->cur.data[lo] == ino->dur.data[lo])
		lo++;
	if (lo >= ino->cur.len)
		return;
	if (ino->lost_hi > ino->lost_lo)
		lo = lo < ino->lost_lo ? lo : ino->lost_lo;
	ino->lost_lo = lo;
	ino->lost_hi = ino->cur.len > ino->lost_hi ? ino->cur.len : ino->lost_hi;
	(void)sim_make_durable_contents(ino);
}

/* dst = src, leaving dst untouched when memory runs out (buf_set would
 * empty it first, and dst is often the durable copy). */
static int sim_copy(struct buf *dst, const struct buf *src)
{
	if (src->len > dst->len && buf_reserve(dst, src->len - dst->len))
		return CAIRN_ENOMEM;
	if (src->len)
		memcpy(dst->data, src->data, src->len);
	dst->len = src->len;
	return 0;
}

/* ---- crash ---- */

static int sim_is_extension(const struct buf *cur, const struct buf *dur)
{
	return cur->len > dur->len && (dur->len == 0 || !memcmp(cur->data, dur->data, dur->len));
}

#define SIM_PAGE 4096

/* Zeroes some of the 4 KiB pages of cur from byte from on (a page that
 * straddles from keeps its durable part): blocks the file system allocated
 * but never wrote. */
static void sim_punch_holes(struct sim *s, struct sim_inode *ino, uint64_t from)
{
	for (uint64_t pg = from / SIM_PAGE; pg * SIM_PAGE < ino->cur.len; pg++) {
		uint64_t lo = pg * SIM_PAGE, hi = lo + SIM_PAGE;

		if (sim_rand(s, 4, ino->id << 24 ^ pg) % 3 != 0)
			continue;
		lo = lo < from ? from : lo;
		hi = hi > ino->cur.len ? ino->cur.len : hi;
		memset(ino->cur.data + lo, 0, (size_t)(hi - lo));
	}
}

static void sim_crash_contents(struct sim *s, struct sim_inode *ino)
{
	uint64_t extra, keep, r;

	if (ino->is_dir || slice_eq(buf_slice(&ino->cur), buf_slice(&ino->dur)))
		return;
	if (!sim_is_extension(&ino->cur, &ino->dur)) {
		/* cur once held all of dur, so its capacity suffices and this
		 * never allocates. */
		(void)sim_copy(&ino->cur, &ino->dur);
		ino->lost_lo = ino->lost_hi = 0;
		return;
	}
	extra = ino->cur.len - ino->dur.len;
	r = sim_rand(s, 1, ino->id);
	/* A quarter lose everything unsynced, a quarter keep it all (the page
	 * cache reached the disk), the rest tear at a uniform byte. */
	switch (r & 3) {
	case 0:
		keep = 0;
		break;
	case 1:
		keep = extra;
		break;
	default:
		keep = (r >> 2) % (extra + 1);
		break;
	}
	ino->cur.len = ino->dur.len + keep;
	if (ino->may_hole && keep && (sim_rand(s, 3, ino->id) & 1))
		sim_punch_holes(s, ino, ino->dur.len);
	/* The surviving prefix is durable now (less what a failed sync lost);
	 * if this fails for memory the next crash simply tears again from the
	 * old durable contents. */
	if (!sim_make_durable_contents(ino))
		(void)sim_copy(&ino->cur, &ino->dur);
	ino->lost_lo = ino->lost_hi = 0;
	ino->may_hole = 0;
}

static void sim_crash_names(struct sim *s, struct sim_inode *dir)
{
	for (size_t i = 0; i < dir->nents; i++) {
		struct sim_dirent *e = &dir->ents[i];
		uint64_t id;

		if (e->cur == e->dur)
			continue;
		/* An entry outside any group decides alone, by a group id
		 * above every real one. */
		id = e->group ? e->group : (1ull << 63) | (dir->id << 20) | i;
		if (sim_rand(s, 2, id) & 1)
			sim_set_dur(s, e, e->cur);
		else
			sim_set_cur(s, e, e->dur);
	}
	for (size_t i = 0; i < dir->nents; i++)
		dir->ents[i].group = 0;
	sim_dir_compact(dir);
}

/* Marks the files whose current name ends with s->holes. */
static void sim_mark_holes(struct sim *s)
{
	size_t sl = s->holes ? strlen(s->holes) : 0;

	for (struct sim_inode *ino = s->head; ino; ino = ino->next)
		ino->may_hole = 0;
	for (struct sim_inode *dir = s->head; dir; dir = dir->next) {
		for (size_t i = 0; dir->is_dir && i < dir->nents; i++) {
			struct sim_inode *ino = dir->ents[i].cur;
			size_t nl = strlen(dir->ents[i].name);

			if (ino && !ino->is_dir && s->holes && nl >= sl &&
			    !strcmp(dir->ents[i].name + nl - sl, s->holes))
				ino->may_hole = 1;
		}
	}
}

static void sim_crash_locked(struct sim *s)
{
	s->crashes++;
	s->epoch++;
	s->crashed = 1;
	sim_mark_holes(s);
	for (struct sim_inode *ino = s->head; ino; ino = ino->next)
		sim_crash_contents(s, ino);
	/* Zombies are freed only after the walk, so the list stays intact. */
	for (struct sim_inode *ino = s->head; ino; ino = ino->next) {
		if (ino->is_dir)
			sim_crash_names(s, ino);
	}
	sim_collect(s);
	s->locks = NULL; /* the lock objects stay with their owners, stale */
	s->armed = SIM_FAULT_NONE;
}

/* ---- files ---- */

static struct sim_file *sf(struct env_file *f)
{
	return (struct sim_file *)f;
}

static int sim_new_handle(struct sim *s, struct sim_inode *ino, const char *path, int writable,
                          struct env_file **fp)
{
	size_t plen = strlen(path);
	struct sim_file *f = malloc(sizeof(*f) + plen + 1);

	if (!f)
		return sim_fail(s, CAIRN_ENOMEM, "open '%s': out of memory", path);
	f->base.env = &s->env;
	f->ino = ino;
	f->writable = writable;
	f->epoch = s->epoch;
	memcpy(f->path, path, plen + 1);
	sim_ref(s, ino);
	ino->live++;
	*fp = (struct env_file *)f;
	return 0;
}

static int sim_open_existing(struct cairn_env *env, const char *path, int writable,
                             struct env_file **fp)
{
	struct sim *s = sim_of(env);
	struct sim_inode *ino = NULL;
	int rc;

	*fp = NULL;
	pthread_mutex_lock(&s->mu);
	sim_yield(s);
	rc = sim_check_up(s, "open", path);
	if (!rc)
		rc = sim_resolve(s, "open", path, &ino);
	if (!rc && ino->is_dir)
		rc = sim_fail(s, CAIRN_EIO, "open '%s': Is a directory", path);
	if (!rc)
		rc = sim_new_handle(s, ino, path, writable, fp);
	pthread_mutex_unlock(&s->mu);
	return rc;
}

static int sim_open_read(struct cairn_env *env, const char *path, struct env_file **fp)
{
	return sim_open_existing(env, path, 0, fp);
}

static int sim_open_append(struct cairn_env *env, const char *path, struct env_file **fp)
{
	return sim_open_existing(env, path, 1, fp);
}

/* Creates or truncates the file at path; the caller holds the mutex. */
static int sim_create(struct sim *s, const char *path, struct sim_inode **inop)
{
	struct sim_inode *dir, *ino;
	struct sim_dirent *e = NULL;
	const char *name;
	size_t len;
	int rc = sim_walk(s, "open", path, &dir, &name, &len);

	if (rc)
		return rc;
	if (!name)
		return sim_fail(s, CAIRN_EIO, "open '%s': Is a directory", path);
	ino = sim_child(dir, name, len);
	if (ino && ino->is_dir)
		return sim_fail(s, CAIRN_EIO, "open '%s': Is a directory", path);
	if (ino) {
		buf_clear(&ino->cur);
		ino->lost_lo = ino->lost_hi = 0;
		*inop = ino;
		return 0;
	}
	e = sim_entry(dir, name, len);
	ino = sim_inode_new(s, 0);
	if (!e || !ino) {
		sim_dir_compact(dir);
		sim_collect(s);
		return sim_fail(s, CAIRN_ENOMEM, "open '%s': out of memory", path);
	}
	sim_set_cur(s, e, ino);
	*inop = ino;
	return 0;
}

static int sim_open_write(struct cairn_env *env, const char *path, struct env_file **fp)
{
	struct sim *s = sim_of(env);
	struct sim_inode *ino = NULL;
	int rc;

	*fp = NULL;
	pthread_mutex_lock(&s->mu);
	sim_yield(s);
	rc = sim_point(s, "open", path);
	if (!rc)
		rc = sim_create(s, path, &ino);
	if (!rc)
		rc = sim_new_handle(s, ino, path, 1, fp);
	sim_collect(s);
	pthread_mutex_unlock(&s->mu);
	return rc;
}

static int sim_close(struct env_file *f)
{
	struct sim_file *h = sf(f);
	struct sim *s = sim_of(h->base.env);

	pthread_mutex_lock(&s->mu);
	sim_yield(s);
	h->ino->live--;
	sim_unref(s, h->ino);
	sim_collect(s);
	pthread_mutex_unlock(&s->mu);
	free(h);
	return 0;
}

/* Fails operations on a handle that a crash invalidated. */
static int sim_check_handle(struct sim *s, struct sim_file *h, const char *op, int write)
{
	if (h->epoch != s->epoch)
		return sim_fail(s, CAIRN_EIO, "%s '%s': file lost in simulated power loss", op,
		                h->path);
	if (s->crashed)
		return sim_check_up(s, op, h->path);
	if (write && !h->writable)
		return sim_fail(s, CAIRN_EIO, "%s '%s': Bad file descriptor (opened read-only)", op,
		                h->path);
	return 0;
}

/* Bytes the files hold: what a file named now or open holds now, or after
 * power loss if that is more. An unlinked file frees its bytes at once, as
 * on a real disk, even while power loss could still bring its name back. */
static uint64_t sim_used(const struct sim *s)
{
	uint64_t used = 0;
	for (const struct sim_inode *i = s->head; i; i = i->next)
		if (!i->is_dir && i->live)
			used += i->cur.len > i->dur.len ? i->cur.len : i->dur.len;
	return used;
}

static int sim_append(struct env_file *f, const void *data, size_t n)
{
	struct sim_file *h = sf(f);
	struct sim *s = sim_of(h->base.env);
	int rc;

	pthread_mutex_lock(&s->mu);
	sim_yield(s);
	enum sim_fault fired = SIM_FAULT_NONE;

	rc = sim_check_handle(s, h, "write", 1);
	if (!rc)
		rc = sim_point_f(s, "write", h->path, &fired);
	if (rc && n > 0 && (fired == SIM_FAULT_EIO_PARTIAL || fired == SIM_FAULT_ENOSPC_PARTIAL)) {
		/* a prefix reached the file before the error */
		size_t part = (size_t)(sim_fault_rand(s, 1) % n);
		(void)buf_append(&h->ino->cur, data, part);
	}
	if (!rc && s->capacity && sim_used(s) + n > s->capacity)
		rc = sim_fail(s, CAIRN_ENOSPC, "write '%s': No space left on device (disk full)",
		              h->path);
	if (!rc && buf_append(&h->ino->cur, data, n))
		rc = sim_fail(s, CAIRN_ENOMEM, "write '%s': out of memory", h->path);
	pthread_mutex_unlock(&s->mu);
	return rc;
}

static int sim_pread(struct env_file *f, uint64_t off, void *buf, size_t n, size_t *got)
{
	struct sim_file *h = sf(f);
	struct sim *s = sim_of(h->base.env);
	const struct buf *b = &h->ino->cur;
	int rc, flip = 0;

	*got = 0;
	pthread_mutex_lock(&s->mu);
	sim_yield(s);
	rc = sim_check_handle(s, h, "read", 0);
	if (!rc)
		s->reads++;
	if (!rc && s->read_fault != SIM_FAULT_NONE && s->reads == s->read_at) {
		enum sim_fault fault = s->read_fault;

		s->read_fault = SIM_FAULT_NONE;
		s->faults++;
		if (fault == SIM_FAULT_READ_EIO)
			rc = sim_fail(s, CAIRN_EIO,
			              "read '%s' at %llu: Input/output error (injected)", h->path,
			              (unsigned long long)off);
		else
			flip = 1;
	}
	if (!rc && off < b->len) {
		size_t avail = (size_t)(b->len - off);
		*got = n < avail ? n : avail;
		memcpy(buf, b->data + off, *got);
		if (flip && *got) {
			uint64_t r = sim_fault_rand(s, 2);
			((unsigned char *)buf)[(r >> 3) % *got] ^= (unsigned char)(1u << (r & 7));
		}
	}
	pthread_mutex_unlock(&s->mu);
	return rc;
}

static int sim_sync(struct env_file *f)
{
	struct sim_file *h = sf(f);
	struct sim *s = sim_of(h->base.env);
	struct sim_inode *ino = h->ino;
	int rc;

	pthread_mutex_lock(&s->mu);
	sim_yield(s);
	enum sim_fault fired = SIM_FAULT_NONE;

	rc = sim_check_handle(s, h, "fdatasync", 0);
	if (!rc)
		rc = sim_point_f(s, "fdatasync", h->path, &fired);
	if (fired == SIM_FAULT_SYNC_LOST)
		sim_lose_unsynced(ino);
	if (!rc && sim_make_durable_contents(ino))
		rc = sim_fail(s, CAIRN_ENOMEM, "fdatasync '%s': out of memory", h->path);
	pthread_mutex_unlock(&s->mu);
	return rc;
}

static int sim_size(struct env_file *f, uint64_t *size)
{
	struct sim_file *h = sf(f);
	struct sim *s = sim_of(h->base.env);
	int rc;

	pthread_mutex_lock(&s->mu);
	sim_yield(s);
	rc = sim_check_handle(s, h, "stat", 0);
	if (!rc)
		*size = h->ino->cur.len;
	pthread_mutex_unlock(&s->mu);
	return rc;
}

static int sim_do_truncate(struct sim *s, struct sim_file *h, uint64_t size)
{
	struct buf *b = &h->ino->cur;
	size_t add;

	if (size < h->ino->lost_hi)
		h->ino->lost_hi = h->ino->lost_lo = 0; /* rewritten from here on */
	if (size <= b->len) {
		b->len = (size_t)size;
		return 0;
	}
	if (size - b->len > SIZE_MAX / 2)
		return sim_fail(s, CAIRN_EINVAL, "truncate '%s': size too large", h->path);
	add = (size_t)(size - b->len);
	if (buf_reserve(b, add))
		return sim_fail(s, CAIRN_ENOMEM, "truncate '%s': out of memory", h->path);
	memset(b->data + b->len, 0, add);
	b->len += add;
	return 0;
}

static int sim_truncate(struct env_file *f, uint64_t size)
{
	struct sim_file *h = sf(f);
	struct sim *s = sim_of(h->base.env);
	int rc;

	pthread_mutex_lock(&s->mu);
	sim_yield(s);
	rc = sim_check_handle(s, h, "truncate", 1);
	if (!rc)
		rc = sim_point(s, "truncate", h->path);
	if (!rc)
		rc = sim_do_truncate(s, h, size);
	pthread_mutex_unlock(&s->mu);
	return rc;
}

/* ---- names ---- */

static int sim_exists(struct cairn_env *env, const char *path)
{
	struct sim *s = sim_of(env);
	struct sim_inode *ino = NULL;
	int rc;

	pthread_mutex_lock(&s->mu);
	sim_yield(s);
	rc = sim_check_up(s, "stat", path);
	if (!rc) {
		rc = sim_resolve(s, "stat", path, &ino);
		if (rc == 0)
			rc = 1;
		else if (rc == CAIRN_ENOENT)
			rc = 0;
	}
	pthread_mutex_unlock(&s->mu);
	return rc;
}

static int sim_file_size(struct cairn_env *env, const char *path, uint64_t *size)
{
	struct sim *s = sim_of(env);
	struct sim_inode *ino = NULL;
	int rc;

	pthread_mutex_lock(&s->mu);
	sim_yield(s);
	rc = sim_check_up(s, "stat", path);
	if (!rc)
		rc = sim_resolve(s, "stat", path, &ino);
	if (!rc)
		*size = ino->is_dir ? 0 : ino->cur.len;
	pthread_mutex_unlock(&s->mu);
	return rc;
}

/* The entry path names now, for unlink and rmdir. */
static int sim_named(struct sim *s, const char *op, const char *path, struct sim_dirent **ep)
{
	struct sim_inode *dir;
	const char *name;
	size_t len;
	int rc = sim_walk(s, op, path, &dir, &name, &len);

	*ep = NULL;
	if (rc)
		return rc;
	if (!name)
		return sim_fail(s, CAIRN_EIO, "%s '%s': Device or resource busy", op, path);
	*ep = sim_lookup(dir, name, len);
	if (!*ep || !(*ep)->cur)
		return sim_fail(s, CAIRN_ENOENT, "%s '%s': No such file or directory", op, path);
	return 0;
}

static int sim_dir_empty(const struct sim_inode *dir)
{
	for (size_t i = 0; i < dir->nents; i++) {
		if (dir->ents[i].cur)
			return 0;
	}
	return 1;
}

static int sim_unlink(struct cairn_env *env, const char *path)
{
	struct sim *s = sim_of(env);
	struct sim_dirent *e = NULL;
	int rc;

	pthread_mutex_lock(&s->mu);
	sim_yield(s);
	rc = sim_point(s, "unlink", path);
	if (!rc)
		rc = sim_named(s, "unlink", path, &e);
	if (!rc && e->cur->is_dir)
		rc = sim_fail(s, CAIRN_EIO, "unlink '%s': Is a directory", path);
	if (!rc)
		sim_set_cur(s, e, NULL);
	sim_collect(s);
	pthread_mutex_unlock(&s->mu);
	return rc;
}

static int sim_rmdir(struct cairn_env *env, const char *path)
{
	struct sim *s = sim_of(env);
	struct sim_dirent *e = NULL;
	int rc;

	pthread_mutex_lock(&s->mu);
	sim_yield(s);
	rc = sim_point(s, "rmdir", path);
	if (!rc)
		rc = sim_named(s, "rmdir", path, &e);
	if (!rc && !e->cur->is_dir)
		rc = sim_fail(s, CAIRN_EIO, "rmdir '%s': Not a directory", path);
	if (!rc && !sim_dir_empty(e->cur))
		rc = sim_fail(s, CAIRN_EIO, "rmdir '%s': Directory not empty", path);
	if (!rc)
		sim_set_cur(s, e, NULL);
	sim_collect(s);
	pthread_mutex_unlock(&s->mu);
	return rc;
}

static int sim_mkdir(struct cairn_env *env, const char *path)
{
	struct sim *s = sim_of(env);
	struct sim_inode *dir, *ino;
	struct sim_dirent *e = NULL;
	const char *name;
	size_t len;
	int rc;

	pthread_mutex_lock(&s->mu);
	sim_yield(s);
	rc = sim_point(s, "mkdir", path);
	if (!rc)
		rc = sim_walk(s, "mkdir", path, &dir, &name, &len);
	if (!rc && (!name || sim_child(dir, name, len)))
		rc = sim_fail(s, CAIRN_EEXIST, "mkdir '%s': File exists", path);
	if (!rc) {
		e = sim_entry(dir, name, len);
		ino = sim_inode_new(s, 1);
		if (e && ino)
			sim_set_cur(s, e, ino);
		else
			rc = sim_fail(s, CAIRN_ENOMEM, "mkdir '%s': out of memory", path);
		sim_dir_compact(dir);
	}
	sim_collect(s);
	pthread_mutex_unlock(&s->mu);
	return rc;
}

/* Checks that from may replace to (rename(2) rules) and that a directory is
 * not moved into itself. */
static int sim_rename_check(struct sim *s, const char *from, const char *to, struct sim_inode *src,
                            struct sim_inode *dst)
{
	char a[SIM_PATH_MAX], b[SIM_PATH_MAX];
	size_t alen;
	int rc;

	if (dst && dst->is_dir != src->is_dir)
		return sim_fail(s, CAIRN_EIO, "rename '%s' (to '%s'): %s", from, to,
		                dst->is_dir ? "Is a directory" : "Not a directory");
	if (dst && dst->is_dir && dst != src && !sim_dir_empty(dst))
		return sim_fail(s, CAIRN_EIO, "rename '%s' (to '%s'): Directory not empty", from,
		                to);
	if (!src->is_dir)
		return 0;
	rc = sim_normalize(s, "rename", from, a, sizeof(a));
	if (!rc)
		rc = sim_normalize(s, "rename", to, b, sizeof(b));
	if (rc)
		return rc;
	alen = strlen(a);
	if (!strncmp(a, b, alen) && b[alen] == '/')
		return sim_fail(s, CAIRN_EINVAL, "rename '%s' (to '%s'): Invalid argument", from,
		                to);
	return 0;
}

/* rename (link = 0) or link (link = 1) from -> to; the caller holds the mutex
 * and has counted the write point. */
static int sim_bind(struct sim *s, const char *op, const char *from, const char *to, int link)
{
	struct sim_inode *fdir, *tdir, *src, *dst;
	struct sim_dirent *fe, *te;
	const char *fname, *tname;
	size_t flen, tlen;
	uint64_t g;
	int rc;

	rc = sim_walk(s, op, from, &fdir, &fname, &flen);
	if (!rc)
		rc = sim_walk(s, op, to, &tdir, &tname, &tlen);
	if (rc)
		return rc;
	if (!fname || !tname)
		return sim_fail(s, CAIRN_EIO, "%s '%s' (to '%s'): Device or resource busy", op,
		                from, to);
	src = sim_child(fdir, fname, flen);
	if (!src)
		return sim_fail(s, CAIRN_ENOENT, "%s '%s' (to '%s'): No such file or directory", op,
		                from, to);
	dst = sim_child(tdir, tname, tlen);
	if (link && src->is_dir)
		return sim_fail(s, CAIRN_ENOTSUP, "link '%s' (to '%s'): Operation not permitted",
		                from, to);
	if (link && dst)
		return sim_fail(s, CAIRN_EEXIST, "link '%s' (to '%s'): File exists", from, to);
	if (!link) {
		rc = sim_rename_check(s, from, to, src, dst);
		if (rc || dst == src)
			return rc; /* the same file: rename(2) does nothing */
	}
	te = sim_entry(tdir, tname, tlen);
	if (!te)
		return sim_fail(s, CAIRN_ENOMEM, "%s '%s': out of memory", op, to);
	fe = sim_lookup(fdir, fname, flen); /* again: sim_entry may have moved it */
	g = ++s->next_group;
	sim_join_group(s, te, g);
	sim_set_cur(s, te, src);
	if (!link) {
		sim_join_group(s, fe, g);
		sim_set_cur(s, fe, NULL);
	}
	return 0;
}

static int sim_rename(struct cairn_env *env, const char *from, const char *to)
{
	struct sim *s = sim_of(env);
	int rc;

	pthread_mutex_lock(&s->mu);
	sim_yield(s);
	rc = sim_point(s, "rename", from);
	if (!rc)
		rc = sim_bind(s, "rename", from, to, 0);
	sim_collect(s);
	pthread_mutex_unlock(&s->mu);
	return rc;
}

static int sim_link(struct cairn_env *env, const char *from, const char *to)
{
	struct sim *s = sim_of(env);
	int rc;

	pthread_mutex_lock(&s->mu);
	sim_yield(s);
	rc = sim_point(s, "link", from);
	if (!rc)
		rc = sim_bind(s, "link", from, to, 1);
	pthread_mutex_unlock(&s->mu);
	return rc;
}

struct sim_names {
	char **names;
	size_t n;
};

static void sim_names_free(struct sim_names *nm)
{
	for (size_t i = 0; i < nm->n; i++)
		free(nm->names[i]);
	free(nm->names);
}

/* Copies the current names of the directory at path. */
static int sim_names_of(struct sim *s, const char *path, struct sim_names *nm)
{
	struct sim_inode *dir;
	int rc = sim_check_up(s, "opendir", path);

	if (!rc)
		rc = sim_resolve(s, "opendir", path, &dir);
	if (rc)
		return rc;
	if (!dir->is_dir)
		return sim_fail(s, CAIRN_EIO, "opendir '%s': Not a directory", path);
	nm->names = calloc(dir->nents ? dir->nents : 1, sizeof(char *));
	if (!nm->names)
		return sim_fail(s, CAIRN_ENOMEM, "opendir '%s': out of memory", path);
	for (size_t i = 0; i < dir->nents; i++) {
		if (!dir->ents[i].cur)
			continue;
		nm->names[nm->n] = strdup(dir->ents[i].name);
		if (!nm->names[nm->n])
			return sim_fail(s, CAIRN_ENOMEM, "opendir '%s': out of memory", path);
		nm->n++;
	}
	return 0;
}

static int sim_list_dir(struct cairn_env *env, const char *dir,
                        int (*fn)(void *ctx, const char *name), void *ctx)
{
	struct sim *s = sim_of(env);
	struct sim_names nm = {NULL, 0};
	int rc;

	pthread_mutex_lock(&s->mu);
	sim_yield(s);
	rc = sim_names_of(s, dir, &nm);
	pthread_mutex_unlock(&s->mu);
	for (size_t i = 0; !rc && i < nm.n; i++)
		rc = fn(ctx, nm.names[i]);
	sim_names_free(&nm);
	return rc;
}

static int sim_sync_dir(struct cairn_env *env, const char *path)
{
	struct sim *s = sim_of(env);
	struct sim_inode *dir;
	int rc;

	pthread_mutex_lock(&s->mu);
	sim_yield(s);
	rc = sim_point(s, "fsync", path);
	if (!rc)
		rc = sim_resolve(s, "fsync", path, &dir);
	if (!rc && dir->is_dir) {
		for (size_t i = 0; i < dir->nents; i++) {
			sim_set_dur(s, &dir->ents[i], dir->ents[i].cur);
			dir->ents[i].group = 0;
		}
		sim_dir_compact(dir);
	}
	sim_collect(s);
	pthread_mutex_unlock(&s->mu);
	return rc;
}

/* ---- locks ---- */

static int sim_lock(struct cairn_env *env, const char *path, struct env_lock **lkp)
{
	struct sim *s = sim_of(env);
	char norm[SIM_PATH_MAX];
	struct sim_inode *ino = NULL;
	struct sim_lock *lk;
	int rc;

	*lkp = NULL;
	pthread_mutex_lock(&s->mu);
	sim_yield(s);
	rc = sim_check_up(s, "lock", path);
	if (!rc)
		rc = sim_normalize(s, "lock", path, norm, sizeof(norm));
	for (lk = s->locks; !rc && lk; lk = lk->next) {
		if (!strcmp(lk->path, norm))
			rc = sim_fail(s, CAIRN_EBUSY,
			              "database lock '%s' is locked by this process", path);
	}
	/* The LOCK file is created if missing, like open(O_CREAT), but is not a
	 * write point: a fault there would test nothing of the engine. */
	if (!rc) {
		rc = sim_resolve(s, "lock", path, &ino);
		if (rc == CAIRN_ENOENT)
			rc = sim_create(s, path, &ino);
	}
	if (!rc && ino->is_dir)
		rc = sim_fail(s, CAIRN_EIO, "lock '%s': Is a directory", path);
	if (!rc) {
		lk = malloc(sizeof(*lk) + strlen(norm) + 1);
		if (!lk)
			rc = sim_fail(s, CAIRN_ENOMEM, "lock '%s': out of memory", path);
	}
	if (!rc) {
		lk->s = s;
		lk->epoch = s->epoch;
		strcpy(lk->path, norm);
		lk->next = s->locks;
		s->locks = lk;
		*lkp = (struct env_lock *)lk;
	}
	sim_collect(s);
	pthread_mutex_unlock(&s->mu);
	return rc;
}

static int sim_unlock(struct env_lock *l)
{
	struct sim_lock *lk = (struct sim_lock *)l;
	struct sim *s;

	if (!lk)
		return 0;
	s = lk->s;
	pthread_mutex_lock(&s->mu);
	if (lk->epoch == s->epoch) {
		for (struct sim_lock **pp = &s->locks; *pp; pp = &(*pp)->next) {
			if (*pp == lk) {
				*pp = lk->next;
				break;
			}
		}
	}
	pthread_mutex_unlock(&s->mu);
	free(lk);
	return 0;
}

/* ---- time, threads, messages ---- */

static uint64_t sim_tick(struct sim *s, uint64_t step)
{
	uint64_t t;

	pthread_mutex_lock(&s->mu);
	sim_yield(s);
	t = s->clock;
	s->clock += step;
	pthread_mutex_unlock(&s->mu);
	return t;
}

static int64_t sim_now_ns(struct cairn_env *env)
{
	struct sim *s = sim_of(env);
	return s->start_ns + (int64_t)sim_tick(s, SIM_CLOCK_STEP);
}

static uint64_t sim_mono_ns(struct cairn_env *env)
{
	return 1000000000u + sim_tick(sim_of(env), SIM_CLOCK_STEP);
}

/* A scheduled thread sleeps until the clock reaches the end of the sleep
 * (other threads run meanwhile, or the clock jumps there); any other thread
 * just moves the clock on. */
static void sim_sleep_us(struct cairn_env *env, uint64_t us)
{
	struct sim *s = sim_of(env);
	struct env_thread *me;

	pthread_mutex_lock(&s->mu);
	me = sim_me(s);
	if (me && us)
		sim_block(s, me, &sim_sleep_tag, "a sleep", s->clock + us * 1000);
	else
		s->clock += us * 1000;
	pthread_mutex_unlock(&s->mu);
}

static void sim_errmsg(struct cairn_env *env, char *buf, size_t len)
{
	struct sim *s = sim_of(env);

	pthread_mutex_lock(&s->mu);
	fmt_msg(buf, len, "%s", s->msg);
	pthread_mutex_unlock(&s->mu);
}

static void sim_destroy(struct cairn_env *env)
{
	env_sim_free(env);
}

static const struct env_ops sim_ops = {
        .open_read = sim_open_read,
        .open_write = sim_open_write,
        .open_append = sim_open_append,
        .close = sim_close,
        .append = sim_append,
        .pread = sim_pread,
        .sync = sim_sync,
        .size = sim_size,
        .truncate = sim_truncate,
        .exists = sim_exists,
        .file_size = sim_file_size,
        .unlink = sim_unlink,
        .rename = sim_rename,
        .link = sim_link,
        .mkdir = sim_mkdir,
        .rmdir = sim_rmdir,
        .list_dir = sim_list_dir,
        .sync_dir = sim_sync_dir,
        .lock = sim_lock,
        .unlock = sim_unlock,
        .now_ns = sim_now_ns,
        .mono_ns = sim_mono_ns,
        .sleep_us = sim_sleep_us,
        .thread_start = sim_thread_start,
        .thread_join = sim_thread_join,
        .mutex_lock = sim_mutex_lock,
        .mutex_unlock = sim_mutex_unlock,
        .cond_wait = sim_cond_wait,
        .cond_signal = sim_cond_signal,
        .errmsg = sim_errmsg,
        .destroy = sim_destroy,
};

/* ---- public ---- */

int env_sim_new(uint64_t seed, int64_t start_ns, struct cairn_env **envp)
{
	struct sim *s;

	*envp = NULL;
	s = calloc(1, sizeof(*s));
	if (!s)
		return CAIRN_ENOMEM;
	if (pthread_mutex_init(&s->mu, NULL)) {
		free(s);
		return CAIRN_ENOMEM;
	}
	pthread_cond_init(&s->unreg_cv, NULL);
	s->gen = ++sim_gens;
	s->sched_rng = seed ^ 0x9e3779b97f4a7c15ull;
	s->env.ops = &sim_ops;
	s->env.state = s;
	s->seed = seed;
	s->start_ns = start_ns;
	s->root = sim_inode_new(s, 1);
	if (!s->root) {
		pthread_mutex_destroy(&s->mu);
		free(s);
		return CAIRN_ENOMEM;
	}
	sim_ref(s, s->root); /* the root is never freed before the env */
	*envp = &s->env;
	return 0;
}

void env_sim_free(struct cairn_env *env)
{
	struct sim *s;

	if (!env)
		return;
	s = sim_of(env);
	while (s->head)
		sim_inode_free(s, s->head);
	/* Threads left are the starter (thread 0) and any never joined. */
	if (sim_me(s))
		sim_self = NULL;
	while (s->threads)
		sim_thread_unlink(s, s->threads);
	pthread_cond_destroy(&s->unreg_cv);
	pthread_mutex_destroy(&s->mu);
	free(s->holes);
	free(s);
}

/* Reads one of the env's counters under its mutex. */
static uint64_t sim_counter(struct cairn_env *env, size_t off)
{
	struct sim *s = sim_of(env);
	uint64_t n;

	pthread_mutex_lock(&s->mu);
	memcpy(&n, (const char *)s + off, sizeof(n));
	pthread_mutex_unlock(&s->mu);
	return n;
}

uint64_t env_sim_write_points(struct cairn_env *env)
{
	return sim_counter(env, offsetof(struct sim, points));
}

void env_sim_arm(struct cairn_env *env, uint64_t n, enum sim_fault fault)
{
	struct sim *s = sim_of(env);

	pthread_mutex_lock(&s->mu);
	s->armed = n ? fault : SIM_FAULT_NONE;
	s->armed_at = s->points + n;
	pthread_mutex_unlock(&s->mu);
}

void env_sim_set_capacity(struct cairn_env *env, uint64_t bytes)
{
	struct sim *s = sim_of(env);

	pthread_mutex_lock(&s->mu);
	s->capacity = bytes;
	pthread_mutex_unlock(&s->mu);
}

uint64_t env_sim_used(struct cairn_env *env)
{
	struct sim *s = sim_of(env);

	pthread_mutex_lock(&s->mu);
	uint64_t used = sim_used(s);
	pthread_mutex_unlock(&s->mu);
	return used;
}

void env_sim_fail_all(struct cairn_env *env, enum sim_fault fault)
{
	struct sim *s = sim_of(env);

	pthread_mutex_lock(&s->mu);
	s->fail_all = fault;
	pthread_mutex_unlock(&s->mu);
}

int env_sim_crashed(struct cairn_env *env)
{
	struct sim *s = sim_of(env);
	int c;

	pthread_mutex_lock(&s->mu);
	c = s->crashed;
	pthread_mutex_unlock(&s->mu);
	return c;
}

void env_sim_arm_read(struct cairn_env *env, uint64_t n, enum sim_fault fault)
{
	struct sim *s = sim_of(env);

	pthread_mutex_lock(&s->mu);
	s->read_fault = n ? fault : SIM_FAULT_NONE;
	s->read_at = s->reads + n;
	pthread_mutex_unlock(&s->mu);
}

uint64_t env_sim_read_points(struct cairn_env *env)
{
	return sim_counter(env, offsetof(struct sim, reads));
}

void env_sim_set_holes(struct cairn_env *env, const char *suffix)
{
	struct sim *s = sim_of(env);

	pthread_mutex_lock(&s->mu);
	free(s->holes);
	s->holes = suffix ? strdup(suffix) : NULL;
	pthread_mutex_unlock(&s->mu);
}

uint64_t env_sim_switches(struct cairn_env *env)
{
	return sim_counter(env, offsetof(struct sim, switches));
}

uint64_t env_sim_faults(struct cairn_env *env)
{
	return sim_counter(env, offsetof(struct sim, faults));
}

void env_sim_crash(struct cairn_env *env)
{
	struct sim *s = sim_of(env);

	pthread_mutex_lock(&s->mu);
	sim_crash_locked(s);
	pthread_mutex_unlock(&s->mu);
}

void env_sim_reboot(struct cairn_env *env)
{
	struct sim *s = sim_of(env);

	pthread_mutex_lock(&s->mu);
	s->crashed = 0;
	pthread_mutex_unlock(&s->mu);
}

int env_sim_read_file(struct cairn_env *env, const char *path, char **data, size_t *len)
{
	struct sim *s = sim_of(env);
	struct sim_inode *ino = NULL;
	int rc;

	*data = NULL;
	*len = 0;
	pthread_mutex_lock(&s->mu);
	rc = sim_resolve(s, "read", path, &ino);
	if (!rc && ino->is_dir)
		rc = sim_fail(s, CAIRN_EIO, "read '%s': Is a directory", path);
	if (!rc) {
		*data = malloc(ino->cur.len ? ino->cur.len : 1);
		if (!*data)
			rc = sim_fail(s, CAIRN_ENOMEM, "read '%s': out of memory", path);
		else if (ino->cur.len)
			memcpy(*data, ino->cur.data, ino->cur.len);
		*len = rc ? 0 : ino->cur.len;
	}
	pthread_mutex_unlock(&s->mu);
	return rc;
}

/* Binds name in dir durably to a new inode, for env_sim_write_file. */
static struct sim_inode *sim_make_durable(struct sim *s, struct sim_inode *dir, const char *name,
                                          size_t len, int is_dir)
{
	struct sim_dirent *e = sim_entry(dir, name, len);
	struct sim_inode *ino = e ? sim_inode_new(s, is_dir) : NULL;

	if (!ino) {
		sim_dir_compact(dir);
		return NULL;
	}
	sim_set_cur(s, e, ino);
	sim_set_dur(s, e, ino);
	return ino;
}

/* Walks path, creating missing directories durably; returns the file's inode
 * (created durably too) or NULL with the message set. */
static struct sim_inode *sim_write_target(struct sim *s, const char *path, int *rc)
{
	struct sim_inode *dir = s->root, *ino;
	const char *p = path, *comp, *next;
	size_t len, nextlen;

	*rc = sim_walk(s, "write", path, &ino, &comp, &len); /* validates the path */
	if (*rc == CAIRN_EINVAL)
		return NULL;
	*rc = 0;
	comp = sim_next_comp(&p, &len);
	while (comp) {
		next = sim_next_comp(&p, &nextlen);
		ino = sim_child(dir, comp, len);
		if (!ino)
			ino = sim_make_durable(s, dir, comp, len, next != NULL);
		if (!ino) {
			*rc = sim_fail(s, CAIRN_ENOMEM, "write '%s': out of memory", path);
			return NULL;
		}
		if (ino->is_dir != (next != NULL)) {
			*rc = sim_fail(s, CAIRN_EIO, "write '%s': %s", path,
			               ino->is_dir ? "Is a directory" : "Not a directory");
			return NULL;
		}
		dir = ino;
		comp = next;
		len = nextlen;
	}
	if (dir == s->root) {
		*rc = sim_fail(s, CAIRN_EIO, "write '%s': Is a directory", path);
		return NULL;
	}
	return dir;
}

int env_sim_write_file(struct cairn_env *env, const char *path, const void *data, size_t len)
{
	struct sim *s = sim_of(env);
	struct sim_inode *ino = NULL;
	int rc;

	pthread_mutex_lock(&s->mu);
	ino = sim_write_target(s, path, &rc);
	if (ino && (buf_set(&ino->cur, data, len) || sim_copy(&ino->dur, &ino->cur)))
		rc = sim_fail(s, CAIRN_ENOMEM, "write '%s': out of memory", path);
	sim_collect(s);
	pthread_mutex_unlock(&s->mu);
	return rc;
}
