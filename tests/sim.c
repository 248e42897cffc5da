/*
 * sim.c - deterministic simulation of the engine on the simulated env.
 *
 *   tests/sim --seed N [--ops K] [--threads W] [--faults safe|all] [--verbose]
 *
 * From the seed alone it runs a random single-threaded workload (puts of
 * small and blob-sized values, deletes, batches, streams, snapshots,
 * iterators in both directions, flushes, compactions, syncs, reopens) and
 * injects faults the seed chooses: power loss at a write point (leaving
 * zero-filled holes in unsynced blob data), EIO or ENOSPC on one write point
 * (half of them after writing a prefix), stretches where every write point
 * fails with ENOSPC, and read errors or flipped bits under gets. With
 * --threads W it runs the multi-threaded workload instead (see "the
 * multi-threaded workload" below). --faults all adds the kinds the engine
 * does not survive yet: fsyncs that lose their pages, holes in every file
 * (logs too), read faults left armed through recovery. A reference model
 * follows every acknowledged operation:
 *
 * - The model is a durable base state plus the history of operations since
 *   it (hist). A write acknowledged with CAIRN_SYNC, a successful
 *   cairn_sync, cairn_flush or clean close folds the history into the base.
 * - An operation that fails on an injected fault may or may not have
 *   happened. It is "pending": resolved at once by reading its keys from
 *   the live handle (all applied or none, never a mix) or, when the handle
 *   entered the failed state, by reopening and reading them.
 * - After power loss the reopened database must equal the base plus some
 *   prefix of the history (the pending operation last), nothing synced lost,
 *   nothing half applied. That state becomes the new base.
 * - After every reopen: every key read by get and by iteration both ways
 *   with no error, every value's bytes verified, and the directory holds
 *   exactly the live files (one MANIFEST, no *.tmp, the tables and blob
 *   files the version names, no log older than the version's log number).
 *
 * Every result feeds a running hash printed at the end, so two runs of one
 * seed can be compared operation for operation. A failure prints the seed,
 * the operation number and the command that replays it.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cairn.h"
#include "db.h"
#include "env.h"
#include "util.h"
#include "version.h"

#define NKEYS   300
#define MAXB    8
#define MAXVAL  (320u << 10)
#define DEF_OPS 400
#define DBDIR   "/db"

struct mval {
	int present;
	uint64_t ver;
	uint32_t len;
};

struct model {
	struct mval k[NKEYS];
};

struct mut {
	int id, del;
	uint64_t ver;
	uint32_t len;
};

struct hop {
	int n;
	struct mut m[MAXB];
};

struct sim {
	uint64_t seed, rng;
	long ops, op;
	int verbose;
	struct cairn_env *env;
	struct cairn_options o;
	struct cairn_db *db;

	struct model base, cur;
	struct hop *hist;
	size_t nhist, caphist;
	struct hop pending;
	int has_pending;
	uint64_t version;

	/* faults */
	enum sim_fault armed;
	uint64_t armed_at;
	int stretch; /* ops left in an ENOSPC stretch */
	int faults_since_open;
	int open_faulted;        /* a fault fired during the last successful open */
	uint64_t faults_at_open; /* env_sim_faults() after the last open */

	/* held reads */
	const struct cairn_snapshot *snap;
	struct model snapm;
	struct cairn_iter *it;
	struct model itm;

	uint64_t digest;
	unsigned long crashes, eios, enospcs, stretches, reopens, pending_applied, pending_dropped,
	        prefix_short, read_faults;
	char *val, *scratch;
};

static int nwriters;   /* --threads: writer threads; 0 runs single-threaded */
static int all_faults; /* --faults all: also the kinds the engine fails today */

static void sim_fail(struct sim *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void sim_fail(struct sim *s, const char *fmt, ...)
{
	char msg[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	fprintf(stderr, "sim: FAILED seed %llu at op %ld: %s\n", (unsigned long long)s->seed, s->op,
	        msg);
	if (s->db) {
		char em[512] = "";
		if (cairn_errmsg(s->db, em, sizeof(em)))
			fprintf(stderr, "sim: last engine error: %s\n", em);
	}
	fprintf(stderr, "sim: replay: tests/sim --seed %llu", (unsigned long long)s->seed);
	if (s->ops != DEF_OPS)
		fprintf(stderr, " --ops %ld", s->ops);
	if (nwriters)
		fprintf(stderr, " --threads %d", nwriters);
	if (all_faults)
		fprintf(stderr, " --faults all");
	fprintf(stderr, " --verbose\n");
	exit(1);
}

static void note(struct sim *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void note(struct sim *s, const char *fmt, ...)
{
	va_list ap;

	if (!s->verbose)
		return;
	fprintf(stderr, "op %ld: ", s->op);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

static void mix(struct sim *s, uint64_t x)
{
	for (int i = 0; i < 8; i++) {
		s->digest ^= (x >> (8 * i)) & 0xff;
		s->digest *= 0x100000001b3ull;
	}
}

static uint64_t rnd(struct sim *s, uint64_t n)
{
	return prng_below(&s->rng, n);
}

/* ---- keys and values ---- */

static int key_of(char *out, int id)
{
	return sprintf(out, "k%05d", id);
}

static size_t val_header(char *out, size_t cap, int id, uint64_t ver)
{
	return (size_t)snprintf(out, cap, "v%d.%llu:", id, (unsigned long long)ver);
}

/* The bytes of version ver of key id, len long: a header naming both, then
 * bytes from a PRNG seeded by them. */
static void val_gen(char *out, int id, uint64_t ver, size_t len)
{
	char h[48];
	size_t hl = val_header(h, sizeof(h), id, ver);
	uint64_t x = ver * 1000003u + (uint64_t)id, r = 0;

	memcpy(out, h, hl < len ? hl : len);
	for (size_t i = hl; i < len; i++) {
		if ((i - hl) % 8 == 0)
			r = prng_next(&x);
		out[i] = (char)('a' + ((r >> (8 * ((i - hl) % 8))) & 0xff) % 26);
	}
}

/* A length for a new value: mostly small, some over blob_threshold. */
static uint32_t val_len(struct sim *s, int id, uint64_t ver, int big)
{
	char h[48];
	size_t hl = val_header(h, sizeof(h), id, ver), n;
	uint64_t k = rnd(s, 100);

	if (big || k < 10)
		n = 4096 + rnd(s, 40000);
	else if (k < 12)
		n = 40000 + rnd(s, 200000);
	else if (k < 25)
		n = 200 + rnd(s, 3000);
	else
		n = rnd(s, 200);
	return (uint32_t)(n < hl ? hl : n);
}

/* Parses and verifies a value read for key id into *mv. */
static void val_check(struct sim *s, int id, const void *v, size_t vl, struct mval *mv,
                      const char *what)
{
	char h[48];
	int gid;
	unsigned long long ver;
	size_t n = vl < sizeof(h) - 1 ? vl : sizeof(h) - 1;

	memcpy(h, v, n);
	h[n] = 0;
	if (sscanf(h, "v%d.%llu:", &gid, &ver) != 2 || gid != id)
		sim_fail(s, "%s: key %d holds a value not written to it (%zu bytes, '%.16s')", what,
		         id, vl, h);
	if (vl > MAXVAL)
		sim_fail(s, "%s: key %d value of %zu bytes is longer than any written", what, id,
		         vl);
	val_gen(s->scratch, id, ver, vl);
	if (memcmp(s->scratch, v, vl) != 0)
		sim_fail(s, "%s: key %d version %llu (%zu bytes) has damaged bytes", what, id, ver,
		         vl);
	mv->present = 1;
	mv->ver = ver;
	mv->len = (uint32_t)vl;
}

/* ---- the model ---- */

static void model_apply(struct model *m, const struct hop *h)
{
	for (int i = 0; i < h->n; i++) {
		struct mval *v = &m->k[h->m[i].id];
		v->present = !h->m[i].del;
		v->ver = h->m[i].del ? 0 : h->m[i].ver;
		v->len = h->m[i].del ? 0 : h->m[i].len;
	}
}

static int mval_eq(const struct mval *a, const struct mval *b)
{
	if (a->present != b->present)
		return 0;
	return !a->present || (a->ver == b->ver && a->len == b->len);
}

static int model_eq(const struct model *a, const struct model *b)
{
	for (int i = 0; i < NKEYS; i++)
		if (!mval_eq(&a->k[i], &b->k[i]))
			return 0;
	return 1;
}

static void hist_add(struct sim *s, const struct hop *h)
{
	if (s->nhist == s->caphist) {
		s->caphist = s->caphist ? 2 * s->caphist : 64;
		s->hist = realloc(s->hist, s->caphist * sizeof(*s->hist));
		if (!s->hist)
			sim_fail(s, "out of memory");
	}
	s->hist[s->nhist++] = *h;
	model_apply(&s->cur, h);
}

/* Everything acknowledged so far is durable. */
static void fold(struct sim *s)
{
	s->base = s->cur;
	s->nhist = 0;
}

/* ---- reading and checking ---- */

static int get_one(struct sim *s, const struct cairn_snapshot *snap, int id, struct mval *mv,
                   const char *what)
{
	char key[16];
	void *v = NULL;
	size_t vl = 0;
	int kl = key_of(key, id);
	int r = cairn_get(s->db, snap, key, (size_t)kl, &v, &vl);

	memset(mv, 0, sizeof(*mv));
	if (r == 0)
		val_check(s, id, v, vl, mv, what);
	else if (r != CAIRN_ENOTFOUND)
		sim_fail(s, "%s: get of key %d failed: %s", what, id, cairn_strerror(r));
	cairn_free(v);
	mix(s, (uint64_t)r ^ mv->ver << 8 ^ (uint64_t)mv->len << 40);
	return r;
}

static void read_state(struct sim *s, const struct cairn_snapshot *snap, struct model *m,
                       const char *what)
{
	for (int id = 0; id < NKEYS; id++)
		get_one(s, snap, id, &m->k[id], what);
}

static void state_diff(struct sim *s, const struct model *got, const struct model *want,
                       const char *what)
{
	for (int id = 0; id < NKEYS; id++) {
		const struct mval *g = &got->k[id], *w = &want->k[id];
		if (mval_eq(g, w))
			continue;
		sim_fail(s, "%s: key %d is %s v%llu/%u, the model says %s v%llu/%u", what, id,
		         g->present ? "present" : "absent", (unsigned long long)g->ver, g->len,
		         w->present ? "present" : "absent", (unsigned long long)w->ver, w->len);
	}
}

static int id_of_key(struct sim *s, const void *k, size_t kl, const char *what)
{
	char buf[16];
	int id;

	if (kl != 6 || ((const char *)k)[0] != 'k')
		sim_fail(s, "%s: iterator shows a key never written (%zu bytes)", what, kl);
	memcpy(buf, (const char *)k + 1, 5);
	buf[5] = 0;
	id = atoi(buf);
	if (id < 0 || id >= NKEYS)
		sim_fail(s, "%s: iterator shows key %s, out of range", what, buf);
	return id;
}

/* The next present id after id in direction dir (+1 / -1), or -1 / NKEYS. */
static int model_next(const struct model *m, int id, int dir)
{
	for (id += dir; id >= 0 && id < NKEYS; id += dir)
		if (m->k[id].present)
			return id;
	return id;
}

static void iter_expect(struct sim *s, struct cairn_iter *it, const struct model *m, int want,
                        int values, const char *what)
{
	if (want < 0 || want >= NKEYS) {
		if (cairn_iter_valid(it))
			sim_fail(s, "%s: iterator valid past the last key", what);
		if (cairn_iter_status(it))
			sim_fail(s, "%s: iterator error %s", what,
			         cairn_strerror(cairn_iter_status(it)));
		mix(s, 0xe0d);
		return;
	}
	if (!cairn_iter_valid(it))
		sim_fail(s, "%s: iterator ended (%s), key %d expected", what,
		         cairn_strerror(cairn_iter_status(it)), want);
	size_t kl, vl;
	const void *k = cairn_iter_key(it, &kl);
	int id = id_of_key(s, k, kl, what);
	if (id != want)
		sim_fail(s, "%s: iterator at key %d, expected key %d", what, id, want);
	struct cairn_key_info info;
	cairn_iter_info(it, &info);
	if (info.size != m->k[id].len)
		sim_fail(s, "%s: iterator info of key %d says %llu bytes, want %u", what, id,
		         (unsigned long long)info.size, m->k[id].len);
	if (values) {
		struct mval mv;
		const void *v = cairn_iter_value(it, &vl);
		if (!v)
			sim_fail(s, "%s: iterator value of key %d unreadable: %s", what, id,
			         cairn_strerror(cairn_iter_status(it)));
		val_check(s, id, v, vl, &mv, what);
		if (!mval_eq(&mv, &m->k[id]))
			sim_fail(s, "%s: iterator value of key %d is v%llu, want v%llu", what, id,
			         (unsigned long long)mv.ver, (unsigned long long)m->k[id].ver);
	}
	mix(s, (uint64_t)id);
}

/* Walks the whole iterator forward (with values) and backward. */
static void iter_full(struct sim *s, struct cairn_iter *it, const struct model *m, const char *what)
{
	int id = model_next(m, -1, 1);
	for (cairn_iter_seek_first(it);; cairn_iter_next(it)) {
		iter_expect(s, it, m, id, 1, what);
		if (id >= NKEYS)
			break;
		id = model_next(m, id, 1);
	}
	id = model_next(m, NKEYS, -1);
	for (cairn_iter_seek_last(it);; cairn_iter_prev(it)) {
		iter_expect(s, it, m, id, 0, what);
		if (id < 0)
			break;
		id = model_next(m, id, -1);
	}
}

/* A random seek and a few steps each way. */
static void iter_walk(struct sim *s, struct cairn_iter *it, const struct model *m, const char *what)
{
	char key[16];
	int id = (int)rnd(s, NKEYS), kl = key_of(key, id), pos;

	if (rnd(s, 2)) {
		cairn_iter_seek(it, key, (size_t)kl);
		pos = m->k[id].present ? id : model_next(m, id, 1);
	} else {
		cairn_iter_seek_for_prev(it, key, (size_t)kl);
		pos = m->k[id].present ? id : model_next(m, id, -1);
	}
	iter_expect(s, it, m, pos, 1, what);
	for (int step = (int)rnd(s, 12); step > 0 && pos >= 0 && pos < NKEYS; step--) {
		int dir = rnd(s, 3) ? 1 : -1;
		if (dir > 0)
			cairn_iter_next(it);
		else
			cairn_iter_prev(it);
		pos = model_next(m, pos, dir);
		iter_expect(s, it, m, pos, rnd(s, 2), what);
	}
}

static void check_with_iter(struct sim *s, const struct cairn_snapshot *snap, const struct model *m,
                            const char *what)
{
	struct cairn_iter *it;
	int r = cairn_iter_new(s->db, snap, &it);
	if (r)
		sim_fail(s, "%s: cairn_iter_new: %s", what, cairn_strerror(r));
	iter_full(s, it, m, what);
	cairn_iter_free(it);
}

/* ---- the directory holds exactly the live files ---- */

struct dir_count {
	int manifests, tmps, tables, blobs, old_logs, others;
	uint64_t manifest_number, log_number;
	struct cairn_db *db;
	char bad[128];
};

static int dir_entry(void *ctx, const char *name)
{
	struct dir_count *c = ctx;
	size_t n = strlen(name);
	unsigned long long num = 0;

	if (strncmp(name, "MANIFEST-", 9) == 0) {
		c->manifests++;
		if (strtoull(name + 9, NULL, 10) != c->manifest_number)
			snprintf(c->bad, sizeof(c->bad), "stale manifest %s", name);
	} else if (n > 4 && strcmp(name + n - 4, ".tmp") == 0) {
		c->tmps++;
		snprintf(c->bad, sizeof(c->bad), "temporary file %s", name);
	} else if (n > 4 && strcmp(name + n - 4, ".sst") == 0) {
		/* a file a lost manifest record may have named is kept */
		c->tables += !db_is_unclaimed(c->db, strtoull(name, NULL, 10));
	} else if (n > 5 && strcmp(name + n - 5, ".blob") == 0) {
		c->blobs += !db_is_unclaimed(c->db, strtoull(name, NULL, 10));
	} else if (n > 4 && strcmp(name + n - 4, ".log") == 0) {
		num = strtoull(name, NULL, 10);
		if (num < c->log_number) {
			c->old_logs++;
			snprintf(c->bad, sizeof(c->bad), "log %s older than the live log %llu",
			         name, (unsigned long long)c->log_number);
		}
	} else if (strcmp(name, "CURRENT") && strcmp(name, "LOCK") && strcmp(name, "RESERVE")) {
		c->others++;
		snprintf(c->bad, sizeof(c->bad), "unknown file %s", name);
	}
	return 0;
}

static int dir_print(void *ctx, const char *name)
{
	struct sim *s = ctx;
	char path[64];
	uint64_t size = 0;

	snprintf(path, sizeof(path), "%s/%s", DBDIR, name);
	env_file_size(s->env, path, &size);
	fprintf(stderr, "    %s %llu\n", name, (unsigned long long)size);
	return 0;
}

/* strict: no fault fired during the open, so it removed every obsolete
 * file (it tolerates failing to, and the next open finishes the job). */
static void check_dir(struct sim *s, int strict)
{
	struct dir_count c = {0};
	struct cairn_stats st;
	uint64_t tables = 0;

	if (s->verbose)
		env_list_dir(s->env, DBDIR, dir_print, s);
	c.db = s->db;
	c.manifest_number = vset_manifest_number(s->db->vs);
	c.log_number = vset_log_number(s->db->vs);
	int r = env_list_dir(s->env, DBDIR, dir_entry, &c);
	if (r)
		sim_fail(s, "listing %s: %s", DBDIR, cairn_strerror(r));
	if (strict && c.bad[0])
		sim_fail(s, "after reopen: %s", c.bad);
	if (strict ? c.manifests != 1 : c.manifests < 1)
		sim_fail(s, "after reopen: %d manifests", c.manifests);
	cairn_stats_get(s->db, &st);
	for (int l = 0; l < st.num_levels; l++)
		tables += st.levels[l].files;
	if (s->verbose) {
		uint64_t *live = NULL;
		size_t nlive = 0;
		vset_live_files(s->db->vs, &live, &nlive);
		fprintf(stderr, "  live tables:");
		for (size_t i = 0; i < nlive; i++)
			fprintf(stderr, " %llu", (unsigned long long)live[i]);
		fprintf(stderr, "\n");
		free(live);
	}
	if (strict ? (uint64_t)c.tables != tables : (uint64_t)c.tables < tables)
		sim_fail(s, "after reopen: %d table files on disk, the version holds %llu",
		         c.tables, (unsigned long long)tables);
	if (strict ? (uint64_t)c.blobs != st.blob_files : (uint64_t)c.blobs < st.blob_files)
		sim_fail(s, "after reopen: %d blob files on disk, the version holds %llu", c.blobs,
		         (unsigned long long)st.blob_files);
	mix(s, (uint64_t)c.tables << 32 | (uint64_t)c.blobs);
	s->open_faulted = 0;
}

/* ---- faults ---- */

static uint64_t points(struct sim *s)
{
	return env_sim_write_points(s->env);
}

/* Did the armed fault (or the stretch) fire since p0? */
static int fault_fired(struct sim *s, uint64_t p0)
{
	uint64_t p = points(s);
	int fired = 0;

	if (s->armed != SIM_FAULT_NONE && p >= s->armed_at) {
		if (s->armed == SIM_FAULT_EIO || s->armed == SIM_FAULT_EIO_PARTIAL)
			s->eios++;
		else if (s->armed == SIM_FAULT_ENOSPC || s->armed == SIM_FAULT_ENOSPC_PARTIAL)
			s->enospcs++;
		s->armed = SIM_FAULT_NONE;
		fired = 1;
	}
	if (s->stretch && p > p0)
		fired = 1;
	if (fired) {
		s->faults_since_open = 1;
		note(s, "a fault fired (write point %llu)", (unsigned long long)p);
	}
	return fired;
}

static void disarm(struct sim *s)
{
	env_sim_arm(s->env, 0, SIM_FAULT_NONE);
	env_sim_fail_all(s->env, SIM_FAULT_NONE);
	s->armed = SIM_FAULT_NONE;
	s->stretch = 0;
}

static const char *fault_name(enum sim_fault f)
{
	static const char *names[] = {"none",       "EIO",         "ENOSPC",
	                              "power loss", "partial EIO", "partial ENOSPC",
	                              "lost fsync", "read EIO",    "flipped bit"};
	return names[f];
}

static void maybe_arm(struct sim *s)
{
	uint64_t k = rnd(s, 1000);

	if (s->armed != SIM_FAULT_NONE || s->stretch)
		return;
	if (k < 25)
		s->armed = SIM_FAULT_CRASH;
	else if (k < 35)
		s->armed = SIM_FAULT_EIO;
	else if (k < 45)
		s->armed = SIM_FAULT_EIO_PARTIAL;
	else if (k < 55)
		s->armed = SIM_FAULT_ENOSPC;
	else if (k < 65)
		s->armed = SIM_FAULT_ENOSPC_PARTIAL;
	else if (k < 75) {
		s->stretch = 1 + (int)rnd(s, 6);
		s->stretches++;
		env_sim_fail_all(s->env, SIM_FAULT_ENOSPC);
		note(s, "ENOSPC stretch of %d ops", s->stretch);
		return;
	} else {
		return;
	}
	uint64_t n = 1 + rnd(s, 80);
	s->armed_at = points(s) + n;
	env_sim_arm(s->env, n, s->armed);
	note(s, "armed %s at write point +%llu", fault_name(s->armed), (unsigned long long)n);
}

/* ---- reopening ---- */

static void release_held(struct sim *s)
{
	cairn_iter_free(s->it);
	s->it = NULL;
	if (s->snap)
		cairn_snapshot_release(s->db, s->snap);
	s->snap = NULL;
}

static void open_db(struct sim *s, int *crashed)
{
	char err[512];
	int recovery_crash = *crashed && rnd(s, 4) == 0;

	for (int attempt = 0;; attempt++) {
		if (attempt > 20)
			sim_fail(s, "reopen keeps failing");
		if (recovery_crash) {
			/* power fails again during recovery */
			recovery_crash = 0;
			s->armed = SIM_FAULT_CRASH;
			s->armed_at = points(s) + 1 + rnd(s, 30);
			env_sim_arm(s->env, s->armed_at - points(s), SIM_FAULT_CRASH);
		}
		uint64_t p0 = points(s), f0 = env_sim_faults(s->env);
		err[0] = 0;
		int r = cairn_open(DBDIR, &s->o, &s->db, err, sizeof(err));
		mix(s, (uint64_t)r);
		if (r == 0 && !env_sim_crashed(s->env)) {
			s->open_faulted = fault_fired(s, p0);
			return;
		}
		if (env_sim_crashed(s->env)) {
			/* an open may succeed when power fails at a step whose failure it
			 * tolerates (removing an obsolete file) */
			cairn_close(s->db);
			s->db = NULL;
			note(s, "power lost during recovery");
			s->crashes++;
			*crashed = 1;
			s->armed = SIM_FAULT_NONE;
			env_sim_reboot(s->env);
			continue;
		}
		if (fault_fired(s, p0) || env_sim_faults(s->env) > f0) {
			note(s, "open failed on the fault: %s", err);
			disarm(s);
			env_sim_arm_read(s->env, 0, SIM_FAULT_NONE);
			continue;
		}
		sim_fail(s, "reopen failed: %s (%s)", cairn_strerror(r), err);
	}
}

/* Finds the prefix of the history the reopened database holds. */
static void check_prefix(struct sim *s, const struct model *got)
{
	struct model m = s->base;
	size_t n = s->nhist + (size_t)s->has_pending;

	for (size_t k = 0; k <= n; k++) {
		if (model_eq(got, &m)) {
			note(s, "after power loss: prefix %zu of %zu", k, n);
			if (k < n)
				s->prefix_short++;
			mix(s, k);
			s->base = s->cur = m;
			s->nhist = 0;
			s->has_pending = 0;
			return;
		}
		if (k < n)
			model_apply(&m, k < s->nhist ? &s->hist[k] : &s->pending);
	}
	state_diff(s, got, &s->base,
	           "after power loss the state is no prefix of the history (diff to the "
	           "last synced state)");
}

static void resolve_pending(struct sim *s, const struct model *got, const char *what)
{
	struct model with = s->cur;

	if (!s->has_pending) {
		state_diff(s, got, &s->cur, what);
		return;
	}
	model_apply(&with, &s->pending);
	if (model_eq(got, &s->cur)) {
		s->pending_dropped++;
		mix(s, 0);
	} else if (model_eq(got, &with)) {
		hist_add(s, &s->pending);
		s->pending_applied++;
		mix(s, 1);
	} else {
		state_diff(s, got, &with, "a failed operation is half applied");
	}
	s->has_pending = 0;
}

/* Closes the handle (dead after a crash, failed, or healthy), reopens and
 * checks everything. */
static void reopen(struct sim *s, int crashed)
{
	struct model got;

	s->reopens++;
	release_held(s);
	if (s->stretch)
		disarm(s);
	uint64_t p0 = points(s);
	int r = cairn_close(s->db);
	s->db = NULL;
	if (env_sim_crashed(s->env)) {
		if (!crashed)
			s->crashes++;
		crashed = 1;
	}
	if (r && !crashed && !fault_fired(s, p0) && !s->faults_since_open)
		sim_fail(s, "close failed with no fault: %s", cairn_strerror(r));
	if (!r && !crashed)
		fold(s); /* close synced everything acknowledged */
	mix(s, (uint64_t)r);
	if (crashed) {
		s->armed = SIM_FAULT_NONE;
		env_sim_arm(s->env, 0, SIM_FAULT_NONE);
		env_sim_reboot(s->env);
	}
	if (s->verbose) {
		fprintf(stderr, "  before the open:\n");
		env_list_dir(s->env, DBDIR, dir_print, s);
	}
	open_db(s, &crashed);
	s->faults_since_open = s->open_faulted;
	note(s, "reopened%s", crashed ? " after power loss" : "");
	read_state(s, NULL, &got, "after reopen");
	if (crashed)
		check_prefix(s, &got);
	else
		resolve_pending(s, &got, "after reopen");
	check_with_iter(s, NULL, &s->cur, "after reopen");
	check_dir(s, !s->open_faulted);
	/* faults armed before the reopen and not fired stay armed in the env */
	if (s->armed != SIM_FAULT_NONE && points(s) >= s->armed_at)
		s->armed = SIM_FAULT_NONE;
}

/* After an operation that returned r (the pending operation, if any, set):
 * power loss, an expected failure, or a bug. */
static void after_op(struct sim *s, int r, uint64_t p0, const char *what)
{
	int fired = fault_fired(s, p0);

	mix(s, (uint64_t)r);
	if (env_sim_crashed(s->env)) {
		s->crashes++;
		note(s, "%s: power lost (%s)", what, cairn_strerror(r));
		reopen(s, 1);
		return;
	}
	if (r == 0) {
		s->has_pending = 0;
		if (s->db->bg_error && !s->faults_since_open)
			sim_fail(s, "%s succeeded but the handle failed with no fault", what);
		return;
	}
	if (s->verbose) {
		char em[512] = "";
		cairn_errmsg(s->db, em, sizeof(em));
		note(s, "%s: %s (%s)", what, cairn_strerror(r), em);
	}
	if (!fired && !(r == CAIRN_EFAILED && s->faults_since_open))
		sim_fail(s, "%s failed with no fault injected: %s", what, cairn_strerror(r));
	if (r == CAIRN_EFAILED)
		s->has_pending = 0; /* refused: nothing written */
	if (s->db->bg_error) {
		reopen(s, 0);
		return;
	}
	if (s->has_pending) {
		struct model got;
		read_state(s, NULL, &got, "after a failed write");
		resolve_pending(s, &got, "after a failed write");
	}
}

/* ---- operations ---- */

static void mut_put(struct sim *s, struct mut *m, int id, int big)
{
	m->id = id;
	m->del = 0;
	m->ver = ++s->version;
	m->len = val_len(s, id, m->ver, big);
}

static void mut_del(struct sim *s, struct mut *m, int id)
{
	m->id = id;
	m->del = 1;
	m->ver = ++s->version;
	m->len = 0;
}

/* h as a batch; val is scratch space for the values. */
static struct cairn_batch *batch_of(struct sim *s, const struct hop *h, char *val)
{
	struct cairn_batch *b;
	char key[16];
	int r, kl;

	if (cairn_batch_new(&b))
		sim_fail(s, "cairn_batch_new");
	for (int i = 0; i < h->n; i++) {
		kl = key_of(key, h->m[i].id);
		if (h->m[i].del) {
			r = cairn_batch_delete(b, key, (size_t)kl);
		} else {
			val_gen(val, h->m[i].id, h->m[i].ver, h->m[i].len);
			r = cairn_batch_put(b, key, (size_t)kl, val, h->m[i].len);
		}
		if (r)
			sim_fail(s, "batch building: %s", cairn_strerror(r));
	}
	return b;
}

/* Runs h as one write (a put, a delete or a batch). */
static void op_write(struct sim *s, struct hop *h, int as_batch, const char *what)
{
	unsigned flags = rnd(s, 7) == 0 ? CAIRN_SYNC : 0;
	char key[16];
	uint64_t p0 = points(s);
	int r, kl;

	if (!as_batch) {
		kl = key_of(key, h->m[0].id);
		if (h->m[0].del) {
			r = cairn_delete(s->db, key, (size_t)kl, flags);
		} else {
			val_gen(s->val, h->m[0].id, h->m[0].ver, h->m[0].len);
			r = cairn_put(s->db, key, (size_t)kl, s->val, h->m[0].len, flags);
		}
	} else {
		struct cairn_batch *b = batch_of(s, h, s->val);
		r = cairn_write(s->db, b, flags);
		cairn_batch_free(b);
	}
	note(s, "%s of %d (%s%s) -> %s", what, h->n, h->m[0].del ? "del" : "put",
	     flags ? ", sync" : "", cairn_strerror(r));
	if (r == 0) {
		hist_add(s, h);
		if (flags)
			fold(s);
	} else {
		s->pending = *h;
		s->has_pending = 1;
	}
	after_op(s, r, p0, what);
}

static void op_stream(struct sim *s)
{
	struct hop h = {.n = 1};
	struct cairn_stream *st;
	char key[16];
	int kl, r, abort_it = rnd(s, 5) == 0;
	unsigned flags = rnd(s, 5) == 0 ? CAIRN_SYNC : 0;
	uint64_t p0 = points(s);

	mut_put(s, &h.m[0], (int)rnd(s, NKEYS), 1);
	if (rnd(s, 3) == 0)
		h.m[0].len = (uint32_t)(100000 + rnd(s, 200000));
	kl = key_of(key, h.m[0].id);
	val_gen(s->val, h.m[0].id, h.m[0].ver, h.m[0].len);
	r = cairn_stream_new(s->db, key, (size_t)kl, &st);
	if (r) {
		note(s, "stream_new -> %s", cairn_strerror(r));
		after_op(s, r, p0, "stream_new");
		return;
	}
	for (size_t off = 0; off < h.m[0].len && !r;) {
		size_t n = 1 + rnd(s, 70000);
		if (n > h.m[0].len - off)
			n = h.m[0].len - off;
		r = cairn_stream_write(st, s->val + off, n);
		off += n;
	}
	if (r || abort_it) {
		cairn_stream_abort(st);
		note(s, "stream of key %d %s -> %s", h.m[0].id, abort_it ? "aborted" : "write",
		     cairn_strerror(r));
		after_op(s, r, p0, "stream_write");
		return;
	}
	r = cairn_stream_commit(st, flags);
	note(s, "stream of key %d, %u bytes%s -> %s", h.m[0].id, h.m[0].len, flags ? ", sync" : "",
	     cairn_strerror(r));
	if (r == 0) {
		hist_add(s, &h);
		if (flags)
			fold(s);
	} else {
		s->pending = h;
		s->has_pending = 1;
	}
	after_op(s, r, p0, "stream_commit");
}

/* A get with a read fault armed a few reads ahead: it must return the model's
 * value or an error, never other bytes. */
static void op_get_faulty(struct sim *s, int id)
{
	char key[16];
	void *v = NULL;
	size_t vl = 0;
	struct mval mv = {0};
	int kl = key_of(key, id), r;
	enum sim_fault f = rnd(s, 2) ? SIM_FAULT_READ_EIO : SIM_FAULT_READ_FLIP;

	env_sim_arm_read(s->env, 1 + rnd(s, 4), f);
	r = cairn_get(s->db, NULL, key, (size_t)kl, &v, &vl);
	env_sim_arm_read(s->env, 0, SIM_FAULT_NONE);
	mix(s, (uint64_t)r);
	note(s, "get of key %d with a %s armed -> %s", id,
	     f == SIM_FAULT_READ_EIO ? "read error" : "flipped bit", cairn_strerror(r));
	if (r == CAIRN_EIO || r == CAIRN_ECORRUPT) {
		s->read_faults++;
		cairn_free(v);
		return;
	}
	if (r && r != CAIRN_ENOTFOUND)
		sim_fail(s, "get of key %d with a read fault: %s", id, cairn_strerror(r));
	if (r == 0)
		val_check(s, id, v, vl, &mv, "get with a read fault");
	cairn_free(v);
	if (!mval_eq(&mv, &s->cur.k[id]))
		sim_fail(s,
		         "get of key %d with a read fault: v%llu/%u present %d, want v%llu/%u "
		         "present %d",
		         id, (unsigned long long)mv.ver, mv.len, mv.present,
		         (unsigned long long)s->cur.k[id].ver, s->cur.k[id].len,
		         s->cur.k[id].present);
}

static void op_get(struct sim *s)
{
	int id = (int)rnd(s, NKEYS);
	struct mval mv;

	if (rnd(s, 4) == 0) {
		op_get_faulty(s, id);
		return;
	}
	get_one(s, NULL, id, &mv, "get");
	if (!mval_eq(&mv, &s->cur.k[id]))
		sim_fail(s, "get of key %d: v%llu/%u present %d, want v%llu/%u present %d", id,
		         (unsigned long long)mv.ver, mv.len, mv.present,
		         (unsigned long long)s->cur.k[id].ver, s->cur.k[id].len,
		         s->cur.k[id].present);
}

static void op_range(struct sim *s)
{
	int id = (int)rnd(s, NKEYS), kl;
	const struct mval *m = &s->cur.k[id];
	char key[16];
	size_t got = 0;
	uint64_t off = m->present && m->len ? rnd(s, m->len + 10) : 0;
	size_t len = 1 + rnd(s, 100000);

	kl = key_of(key, id);
	int r = cairn_get_range(s->db, NULL, key, (size_t)kl, off, s->val, len, &got);
	mix(s, (uint64_t)r ^ got << 8);
	if (!m->present) {
		if (r != CAIRN_ENOTFOUND)
			sim_fail(s, "get_range of absent key %d: %s", id, cairn_strerror(r));
		return;
	}
	if (r)
		sim_fail(s, "get_range of key %d: %s", id, cairn_strerror(r));
	size_t want = off >= m->len ? 0 : (m->len - off < len ? m->len - off : len);
	if (got != want)
		sim_fail(s, "get_range of key %d at %llu: %zu bytes, want %zu", id,
		         (unsigned long long)off, got, want);
	val_gen(s->scratch, id, m->ver, m->len);
	if (got && memcmp(s->scratch + off, s->val, got) != 0)
		sim_fail(s, "get_range of key %d at %llu: wrong bytes", id,
		         (unsigned long long)off);
	struct cairn_key_info info;
	r = cairn_key_info(s->db, NULL, key, (size_t)kl, &info);
	if (r || info.size != m->len)
		sim_fail(s, "key_info of key %d: %s, size %llu want %u", id, cairn_strerror(r),
		         (unsigned long long)info.size, m->len);
}

static void op_iter(struct sim *s)
{
	struct cairn_iter *it;
	int r = cairn_iter_new(s->db, NULL, &it);
	if (r)
		sim_fail(s, "cairn_iter_new: %s", cairn_strerror(r));
	for (int i = 0; i < 3; i++)
		iter_walk(s, it, &s->cur, "iterator walk");
	cairn_iter_free(it);
}

/* Takes, or checks and releases, the held snapshot or iterator. */
static void op_held(struct sim *s)
{
	if (rnd(s, 2)) {
		if (!s->snap) {
			if (cairn_snapshot_new(s->db, &s->snap))
				sim_fail(s, "cairn_snapshot_new");
			s->snapm = s->cur;
			note(s, "snapshot taken");
			return;
		}
		struct model got;
		read_state(s, s->snap, &got, "snapshot");
		state_diff(s, &got, &s->snapm, "read through a held snapshot");
		if (rnd(s, 2))
			check_with_iter(s, s->snap, &s->snapm, "iterator on a held snapshot");
		if (rnd(s, 2)) {
			cairn_snapshot_release(s->db, s->snap);
			s->snap = NULL;
			note(s, "snapshot checked and released");
		}
		return;
	}
	if (!s->it) {
		if (cairn_iter_new(s->db, NULL, &s->it))
			sim_fail(s, "cairn_iter_new");
		s->itm = s->cur;
		note(s, "iterator taken");
		return;
	}
	iter_walk(s, s->it, &s->itm, "held iterator");
	if (rnd(s, 2)) {
		iter_full(s, s->it, &s->itm, "held iterator");
		cairn_iter_free(s->it);
		s->it = NULL;
		note(s, "iterator checked and released");
	}
}

static void op_maint(struct sim *s, int kind)
{
	uint64_t p0 = points(s);
	int r;
	const char *what;

	if (kind == 0) {
		what = "flush";
		r = cairn_flush(s->db);
	} else if (kind == 1) {
		what = "sync";
		r = cairn_sync(s->db);
	} else {
		char a[16], b[16];
		int x = (int)rnd(s, NKEYS), y = x + (int)rnd(s, NKEYS - x);
		int al = key_of(a, x), bl = key_of(b, y);
		what = "compact_range";
		if (rnd(s, 3) == 0)
			r = cairn_compact_range(s->db, NULL, 0, NULL, 0);
		else
			r = cairn_compact_range(s->db, a, (size_t)al, b, (size_t)bl);
	}
	note(s, "%s -> %s", what, cairn_strerror(r));
	if (r == 0 && kind <= 1)
		fold(s);
	s->has_pending = 0;
	after_op(s, r, p0, what);
}

static void step(struct sim *s)
{
	uint64_t k = rnd(s, 100);
	struct hop h = {.n = 1};

	maybe_arm(s);
	if (k < 30) {
		mut_put(s, &h.m[0], (int)rnd(s, NKEYS), 0);
		op_write(s, &h, 0, "put");
	} else if (k < 37) {
		mut_put(s, &h.m[0], (int)rnd(s, NKEYS), 1);
		op_write(s, &h, 0, "put large");
	} else if (k < 44) {
		mut_del(s, &h.m[0], (int)rnd(s, NKEYS));
		op_write(s, &h, 0, "delete");
	} else if (k < 54) {
		h.n = 1 + (int)rnd(s, MAXB);
		for (int i = 0; i < h.n; i++) {
			if (rnd(s, 4) == 0)
				mut_del(s, &h.m[i], (int)rnd(s, NKEYS));
			else
				mut_put(s, &h.m[i], (int)rnd(s, NKEYS), 0);
		}
		op_write(s, &h, 1, "batch");
	} else if (k < 57) {
		op_stream(s);
	} else if (k < 67) {
		op_get(s);
	} else if (k < 70) {
		op_range(s);
	} else if (k < 75) {
		op_iter(s);
	} else if (k < 80) {
		op_held(s);
	} else if (k < 83) {
		op_maint(s, 0);
	} else if (k < 86) {
		op_maint(s, 1);
	} else if (k < 88) {
		op_maint(s, 2);
	} else if (k < 90) {
		reopen(s, 0);
	} else if (k < 92) {
		struct model got;
		read_state(s, NULL, &got, "full check");
		state_diff(s, &got, &s->cur, "full check");
		check_with_iter(s, NULL, &s->cur, "full check");
	} else {
		mut_put(s, &h.m[0], (int)rnd(s, 40), 0); /* a hot key range */
		op_write(s, &h, 0, "put hot");
	}
	/* Power may fail in a call that returns nothing: releasing an iterator
	 * or a snapshot deletes the blob files only it kept (seed 2097). */
	if (env_sim_crashed(s->env)) {
		s->crashes++;
		note(s, "power lost in a call that reports no error");
		reopen(s, 1);
	}
	if (s->stretch && --s->stretch == 0) {
		env_sim_fail_all(s->env, SIM_FAULT_NONE);
		note(s, "ENOSPC stretch over");
	}
}

/* ---- the multi-threaded workload (--threads W) ----
 *
 * W writer threads, started through the env so that its seeded scheduler
 * runs them (and the engine's background flush, compaction, blob
 * collection and periodic sync threads) one at a time in an order the seed
 * decides. Writer w owns the keys whose id % W == w and keeps its own model:
 * base, history and at most one pending operation (it stops at its first
 * error). Reads of its own keys must return exactly its model. A synced
 * write or a cairn_sync makes durable the writer's own history and every
 * write the other writers had acknowledged before it began (cairn.h: a write
 * is durable after the next sync of anyone). Rounds start the writers with a
 * fault armed (power loss, EIO or ENOSPC with or without partial effect, an
 * fsync that loses its pages, a read error or a flipped bit) and check, after
 * they end: after power loss every writer's keys equal its base plus a prefix
 * of its history; otherwise exactly its history, the pending operation
 * applied whole or not at all. */

#define MAXW 6

struct writer {
	struct sim *s;
	int w;
	uint64_t rng;
	int ops, stopped;
	struct model base, cur;
	struct hop *hist;
	size_t nhist, caphist;
	struct hop pending;
	int has_pending;
	size_t sync_mark[MAXW]; /* others' acknowledged ops when a sync began */
	char *val;
};

static struct writer *writers;

static uint64_t wrnd(struct writer *wr, uint64_t n)
{
	return prng_below(&wr->rng, n);
}

static int wr_key(struct writer *wr)
{
	int per = (NKEYS - wr->w + nwriters - 1) / nwriters;
	return wr->w + nwriters * (int)wrnd(wr, (uint64_t)per);
}

static void wr_hist_add(struct writer *wr, const struct hop *h)
{
	if (wr->nhist == wr->caphist) {
		wr->caphist = wr->caphist ? 2 * wr->caphist : 64;
		wr->hist = realloc(wr->hist, wr->caphist * sizeof(*wr->hist));
		if (!wr->hist)
			sim_fail(wr->s, "out of memory");
	}
	wr->hist[wr->nhist++] = *h;
	model_apply(&wr->cur, h);
}

/* The first n operations of wr's history are durable. */
static void wr_fold(struct writer *wr, size_t n)
{
	if (n > wr->nhist)
		n = wr->nhist;
	for (size_t i = 0; i < n; i++)
		model_apply(&wr->base, &wr->hist[i]);
	memmove(wr->hist, wr->hist + n, (wr->nhist - n) * sizeof(*wr->hist));
	wr->nhist -= n;
	for (int o = 0; o < nwriters; o++) {
		struct writer *x = &writers[o];
		x->sync_mark[wr->w] = x->sync_mark[wr->w] > n ? x->sync_mark[wr->w] - n : 0;
	}
}

/* Before a sync: what every writer has acknowledged so far. */
static void wr_mark(struct writer *wr)
{
	for (int o = 0; o < nwriters; o++)
		wr->sync_mark[o] = writers[o].nhist;
}

/* After a successful sync begun at the last wr_mark. */
static void wr_synced(struct writer *wr)
{
	for (int o = 0; o < nwriters; o++)
		wr_fold(&writers[o], o == wr->w ? writers[o].nhist : wr->sync_mark[o]);
}

/* Can an error be explained by an injected fault? */
static int mt_fault_seen(struct sim *s)
{
	return env_sim_crashed(s->env) || env_sim_faults(s->env) > s->faults_at_open ||
	       s->faults_since_open;
}

static void wr_error(struct writer *wr, int r, const char *what)
{
	struct sim *s = wr->s;

	if (!mt_fault_seen(s))
		sim_fail(s, "writer %d: %s failed with no fault injected: %s", wr->w, what,
		         cairn_strerror(r));
	note(s, "writer %d: %s -> %s", wr->w, what, cairn_strerror(r));
	wr->stopped = 1;
}

static void wr_write(struct writer *wr, struct hop *h)
{
	struct sim *s = wr->s;
	unsigned flags = wrnd(wr, 6) == 0 ? CAIRN_SYNC : 0;
	struct cairn_batch *b = batch_of(s, h, wr->val); /* leaves h->m[n-1]'s value in val */
	char key[16];
	int r, kl = key_of(key, h->m[0].id);

	if (flags)
		wr_mark(wr);
	if (h->n == 1 && h->m[0].del)
		r = cairn_delete(s->db, key, (size_t)kl, flags);
	else if (h->n == 1)
		r = cairn_put(s->db, key, (size_t)kl, wr->val, h->m[0].len, flags);
	else
		r = cairn_write(s->db, b, flags);
	cairn_batch_free(b);
	mix(s, (uint64_t)r ^ (uint64_t)wr->w << 32);
	note(s, "writer %d: write of %d (key %d%s%s) -> %s", wr->w, h->n, h->m[0].id,
	     h->m[0].del ? ", del" : "", flags ? ", sync" : "", cairn_strerror(r));
	if (r) {
		wr->pending = *h;
		wr->has_pending = 1;
		wr_error(wr, r, "write");
		return;
	}
	wr_hist_add(wr, h);
	if (flags)
		wr_synced(wr);
}

static void wr_stream(struct writer *wr, struct hop *h)
{
	struct sim *s = wr->s;
	struct cairn_stream *st;
	char key[16];
	int kl = key_of(key, h->m[0].id), r;

	h->m[0].len = (uint32_t)(100000 + wrnd(wr, 200000));
	val_gen(wr->val, h->m[0].id, h->m[0].ver, h->m[0].len);
	r = cairn_stream_new(s->db, key, (size_t)kl, &st);
	for (size_t off = 0; !r && off < h->m[0].len;) {
		size_t n = 1 + wrnd(wr, 70000);
		if (n > h->m[0].len - off)
			n = h->m[0].len - off;
		r = cairn_stream_write(st, wr->val + off, n);
		off += n;
		if (r)
			cairn_stream_abort(st);
	}
	if (!r) {
		r = cairn_stream_commit(st, 0);
		if (r) {
			wr->pending = *h;
			wr->has_pending = 1;
		}
	}
	mix(s, (uint64_t)r ^ (uint64_t)wr->w << 32);
	note(s, "writer %d: stream of key %d, %u bytes -> %s", wr->w, h->m[0].id, h->m[0].len,
	     cairn_strerror(r));
	if (r) {
		wr_error(wr, r, "stream");
		return;
	}
	wr_hist_add(wr, h);
}

/* A read of an own key must return the writer's model, or fail on a fault. */
static void wr_get(struct writer *wr)
{
	struct sim *s = wr->s;
	int id = wr_key(wr);
	char key[16];
	void *v = NULL;
	size_t vl = 0;
	struct mval mv = {0};
	int kl = key_of(key, id);
	uint64_t f0 = env_sim_faults(s->env);
	int r = cairn_get(s->db, NULL, key, (size_t)kl, &v, &vl);

	mix(s, (uint64_t)r);
	if (r && r != CAIRN_ENOTFOUND) {
		cairn_free(v);
		if (env_sim_faults(s->env) == f0 && !mt_fault_seen(s))
			sim_fail(s, "writer %d: get of key %d failed: %s", wr->w, id,
			         cairn_strerror(r));
		note(s, "writer %d: get of key %d -> %s", wr->w, id, cairn_strerror(r));
		s->read_faults++;
		return;
	}
	if (r == 0)
		val_check(s, id, v, vl, &mv, "writer get");
	cairn_free(v);
	if (!mval_eq(&mv, &wr->cur.k[id]))
		sim_fail(s,
		         "writer %d: get of key %d: v%llu/%u present %d, want v%llu/%u present %d",
		         wr->w, id, (unsigned long long)mv.ver, mv.len, mv.present,
		         (unsigned long long)wr->cur.k[id].ver, wr->cur.k[id].len,
		         wr->cur.k[id].present);
}

static void wr_mut(struct writer *wr, struct mut *m, int del, int big)
{
	struct sim *s = wr->s;

	m->id = wr_key(wr);
	m->del = del;
	m->ver = ++s->version;
	m->len = 0;
	if (!del) {
		char h[48];
		size_t hl = val_header(h, sizeof(h), m->id, m->ver);
		uint64_t n = big           ? 4096 + wrnd(wr, 40000)
		             : wrnd(wr, 4) ? wrnd(wr, 200)
		                           : 200 + wrnd(wr, 3000);
		m->len = (uint32_t)(n < hl ? hl : n);
	}
}

static void wr_step(struct writer *wr)
{
	struct sim *s = wr->s;
	struct hop h = {.n = 1};
	uint64_t k = wrnd(wr, 100);

	if (k < 35) {
		wr_mut(wr, &h.m[0], 0, 0);
		wr_write(wr, &h);
	} else if (k < 47) {
		wr_mut(wr, &h.m[0], 0, 1);
		wr_write(wr, &h);
	} else if (k < 57) {
		wr_mut(wr, &h.m[0], 1, 0);
		wr_write(wr, &h);
	} else if (k < 70) {
		h.n = 1 + (int)wrnd(wr, MAXB);
		for (int i = 0; i < h.n; i++)
			wr_mut(wr, &h.m[i], wrnd(wr, 4) == 0, wrnd(wr, 8) == 0);
		wr_write(wr, &h);
	} else if (k < 73) {
		wr_mut(wr, &h.m[0], 0, 1);
		wr_stream(wr, &h);
	} else if (k < 90) {
		wr_get(wr);
	} else {
		wr_mark(wr);
		int r = cairn_sync(s->db);
		mix(s, (uint64_t)r);
		note(s, "writer %d: sync -> %s", wr->w, cairn_strerror(r));
		if (r)
			wr_error(wr, r, "sync");
		else
			wr_synced(wr);
	}
}

static void *wr_main(void *arg)
{
	struct writer *wr = arg;

	for (int i = 0; i < wr->ops && !wr->stopped; i++)
		wr_step(wr);
	return NULL;
}

/* The whole model: each key from its owner. */
static void mt_model(struct model *m, int base)
{
	for (int id = 0; id < NKEYS; id++) {
		struct writer *wr = &writers[id % nwriters];
		m->k[id] = base ? wr->base.k[id] : wr->cur.k[id];
	}
}

static int part_eq(const struct model *a, const struct model *b, int w)
{
	for (int id = w; id < NKEYS; id += nwriters)
		if (!mval_eq(&a->k[id], &b->k[id]))
			return 0;
	return 1;
}

static void part_diff(struct sim *s, const struct model *got, const struct model *want, int w,
                      const char *what)
{
	for (int id = w; id < NKEYS; id += nwriters) {
		const struct mval *g = &got->k[id], *x = &want->k[id];
		if (mval_eq(g, x))
			continue;
		sim_fail(s, "%s: writer %d's key %d is %s v%llu/%u, the model says %s v%llu/%u",
		         what, w, id, g->present ? "present" : "absent", (unsigned long long)g->ver,
		         g->len, x->present ? "present" : "absent", (unsigned long long)x->ver,
		         x->len);
	}
}

/* After power loss: each writer's keys hold its base and a prefix of its
 * history (the pending operation last). */
static void mt_check_prefix(struct sim *s, const struct model *got)
{
	for (int w = 0; w < nwriters; w++) {
		struct writer *wr = &writers[w];
		struct model m = wr->base;
		size_t n = wr->nhist + (size_t)wr->has_pending, k;

		for (k = 0; k <= n; k++) {
			if (part_eq(got, &m, w))
				break;
			if (k < n)
				model_apply(&m, k < wr->nhist ? &wr->hist[k] : &wr->pending);
		}
		if (k > n)
			part_diff(s, got, &wr->base, w,
			          "after power loss the state is no prefix of the writer's history "
			          "(diff to its last synced state)");
		if (k < n)
			s->prefix_short++;
		mix(s, k);
		wr->base = wr->cur = m;
		wr->nhist = 0;
		wr->has_pending = 0;
	}
}

/* No power loss: each writer's keys hold its whole history, the pending
 * operation applied whole or not at all. */
static void mt_check_all(struct sim *s, const struct model *got, const char *what)
{
	for (int w = 0; w < nwriters; w++) {
		struct writer *wr = &writers[w];
		struct model with = wr->cur;

		if (!wr->has_pending) {
			part_diff(s, got, &wr->cur, w, what);
			continue;
		}
		model_apply(&with, &wr->pending);
		if (part_eq(got, &wr->cur, w)) {
			s->pending_dropped++;
		} else if (part_eq(got, &with, w)) {
			wr_hist_add(wr, &wr->pending);
			s->pending_applied++;
		} else {
			part_diff(s, got, &with, w, "a failed operation is half applied");
		}
		wr->has_pending = 0;
	}
}

static void mt_disarm(struct sim *s)
{
	disarm(s);
	env_sim_arm_read(s->env, 0, SIM_FAULT_NONE);
}

/* Closes and reopens (after power loss if crashed), then checks every key
 * and a full iteration against the writers' models. */
static void mt_reopen(struct sim *s, int crashed)
{
	struct model got, all;

	s->reopens++;
	/* --faults all: a pending read fault may fire in recovery */
	if (all_faults)
		disarm(s);
	else
		mt_disarm(s);
	int r = cairn_close(s->db);
	s->db = NULL;
	if (env_sim_crashed(s->env))
		crashed = 1;
	mix(s, (uint64_t)r);
	if (!r && !crashed) {
		for (int w = 0; w < nwriters; w++)
			wr_fold(&writers[w], writers[w].nhist);
	}
	if (crashed)
		env_sim_reboot(s->env);
	if (r && !crashed && !mt_fault_seen(s))
		sim_fail(s, "close failed with no fault: %s", cairn_strerror(r));
	open_db(s, &crashed);
	mt_disarm(s);
	s->faults_at_open = env_sim_faults(s->env);
	note(s, "reopened%s", crashed ? " after power loss" : "");
	read_state(s, NULL, &got, "after reopen");
	if (crashed)
		mt_check_prefix(s, &got);
	else
		mt_check_all(s, &got, "after reopen");
	mt_model(&all, 0);
	check_with_iter(s, NULL, &all, "after reopen");
	check_dir(s, 0);
	s->faults_since_open = 0;
}

/* Arms at most one fault for a round. */
static void mt_arm(struct sim *s)
{
	uint64_t k = rnd(s, 100);
	enum sim_fault f;

	if (k < 30)
		f = SIM_FAULT_CRASH;
	else if (k < 36)
		f = SIM_FAULT_EIO;
	else if (k < 42)
		f = SIM_FAULT_ENOSPC;
	else if (k < 50)
		f = SIM_FAULT_EIO_PARTIAL;
	else if (k < 58)
		f = SIM_FAULT_ENOSPC_PARTIAL;
	else if (k < 66)
		f = all_faults ? SIM_FAULT_SYNC_LOST : SIM_FAULT_EIO_PARTIAL;
	else if (k < 72)
		f = SIM_FAULT_READ_EIO;
	else if (k < 78)
		f = SIM_FAULT_READ_FLIP;
	else
		return;
	if (f == SIM_FAULT_READ_EIO || f == SIM_FAULT_READ_FLIP) {
		uint64_t n = 1 + rnd(s, 300);
		env_sim_arm_read(s->env, n, f);
		note(s, "armed %s at read +%llu", fault_name(f), (unsigned long long)n);
		return;
	}
	uint64_t n = 1 + rnd(s, 400);
	s->armed = f;
	s->armed_at = points(s) + n;
	env_sim_arm(s->env, n, f);
	if (f == SIM_FAULT_EIO || f == SIM_FAULT_EIO_PARTIAL)
		s->eios++;
	else if (f == SIM_FAULT_ENOSPC || f == SIM_FAULT_ENOSPC_PARTIAL)
		s->enospcs++;
	note(s, "armed %s at write point +%llu", fault_name(f), (unsigned long long)n);
}

static void mt_round(struct sim *s)
{
	struct env_thread *t[MAXW];
	uint64_t f0 = env_sim_faults(s->env);
	int crashed, failed = 0;

	mt_arm(s);
	for (int w = 0; w < nwriters; w++) {
		writers[w].ops = 1 + (int)rnd(s, 30);
		writers[w].stopped = 0;
		s->op += writers[w].ops;
		if (env_thread_start(s->env, wr_main, &writers[w], &t[w]))
			sim_fail(s, "starting writer %d", w);
	}
	if (rnd(s, 4) == 0) {
		/* the main thread flushes or compacts meanwhile */
		int r = rnd(s, 2) ? cairn_flush(s->db)
		                  : cairn_compact_range(s->db, NULL, 0, NULL, 0);
		mix(s, (uint64_t)r);
		note(s, "main: flush/compact -> %s", cairn_strerror(r));
		if (r && !mt_fault_seen(s))
			sim_fail(s, "flush or compaction failed with no fault: %s",
			         cairn_strerror(r));
		failed |= r != 0;
	}
	for (int w = 0; w < nwriters; w++) {
		env_thread_join(s->env, t[w]);
		failed |= writers[w].stopped;
	}
	if (env_sim_faults(s->env) > f0)
		s->faults_since_open = 1;
	crashed = env_sim_crashed(s->env);
	if (crashed)
		s->crashes++;
	note(s, "round over: %s%s", crashed ? "power lost" : "power on",
	     failed ? ", an operation failed" : "");
	if (crashed || failed || s->db->bg_error || rnd(s, 5) == 0) {
		mt_reopen(s, crashed);
		return;
	}
	/* the live handle, with the background threads still at work */
	struct model got, all;
	mt_disarm(s);
	read_state(s, NULL, &got, "after a round");
	mt_check_all(s, &got, "after a round");
	mt_model(&all, 0);
	if (rnd(s, 2))
		check_with_iter(s, NULL, &all, "after a round");
}

static void run_mt(struct sim *s)
{
	int crashed = 0;

	writers = calloc((size_t)nwriters, sizeof(*writers));
	for (int w = 0; w < nwriters; w++) {
		uint64_t h = s->seed ^ (0x1234567ull * (uint64_t)(w + 1));
		writers[w].s = s;
		writers[w].w = w;
		writers[w].rng = prng_next(&h);
		writers[w].val = malloc(MAXVAL);
	}
	open_db(s, &crashed);
	s->faults_at_open = env_sim_faults(s->env);
	for (s->op = 1; s->op <= s->ops;)
		mt_round(s);
	s->op = s->ops + 1;
	mt_reopen(s, 0);
	if (cairn_close(s->db))
		sim_fail(s, "final close failed");
	s->db = NULL;
	for (int w = 0; w < nwriters; w++) {
		free(writers[w].hist);
		free(writers[w].val);
	}
	free(writers);
}

static void sim_options(struct sim *s)
{
	struct cairn_options *o = &s->o;

	cairn_options_init(o);
	o->env = s->env;
	o->memtable_size = 64u << 10;
	o->block_size = 1024;
	o->block_cache_size = 64u << 10;
	o->max_open_tables = 8;
	o->table_target_size = 64u << 10;
	o->level1_target_size = 128u << 10;
	o->level_size_ratio = 4;
	o->l0_compaction_trigger = 2;
	o->l0_slowdown_trigger = 4;
	o->l0_stop_trigger = 8;
	o->background_threads = 0;
	o->sync_interval_ms = 0;
	o->blob_threshold = 4096;
	o->blob_file_size = 1u << 20; /* the smallest allowed */
	o->blob_gc_ratio = 0.3;
	if (nwriters) {
		o->background_threads = 1 + (int)rnd(s, 2);
		o->sync_interval_ms = rnd(s, 3) ? 1 + (int)rnd(s, 50) : 0;
	}
}

int main(int argc, char **argv)
{
	struct sim *s = calloc(1, sizeof(*s));
	int have_seed = 0;

	s->ops = DEF_OPS;
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--seed") && i + 1 < argc) {
			s->seed = strtoull(argv[++i], NULL, 10);
			have_seed = 1;
		} else if (!strcmp(argv[i], "--ops") && i + 1 < argc) {
			s->ops = strtol(argv[++i], NULL, 10);
		} else if (!strcmp(argv[i], "--threads") && i + 1 < argc) {
			nwriters = atoi(argv[++i]);
			if (nwriters < 0 || nwriters > MAXW) {
				fprintf(stderr, "sim: --threads takes 0 to %d writers\n", MAXW);
				return 2;
			}
		} else if (!strcmp(argv[i], "--faults") && i + 1 < argc) {
			all_faults = !strcmp(argv[++i], "all");
		} else if (!strcmp(argv[i], "--verbose")) {
			s->verbose = 1;
		} else {
			fprintf(stderr, "usage: sim --seed N [--ops K] [--threads W] [--faults "
			                "safe|all] [--verbose]\n");
			return 2;
		}
	}
	if (!have_seed) {
		fprintf(stderr, "usage: sim --seed N [--ops K] [--threads W] [--faults safe|all] "
		                "[--verbose]\n");
		return 2;
	}
	/* hashed, so that neighbouring seeds give unrelated runs */
	uint64_t h = s->seed;
	s->rng = prng_next(&h) ^ 0x5851f42d4c957f2dull;
	s->digest = 0xcbf29ce484222325ull;
	s->val = malloc(MAXVAL);
	s->scratch = malloc(MAXVAL);
	if (env_sim_new(s->seed, 1700000000000000000LL, &s->env))
		sim_fail(s, "env_sim_new");
	sim_options(s);
	env_sim_set_holes(s->env, all_faults ? "" : ".blob");
	if (nwriters) {
		run_mt(s);
	} else {
		int crashed = 0;
		open_db(s, &crashed);
		for (s->op = 1; s->op <= s->ops; s->op++)
			step(s);
		s->op = s->ops + 1;
		disarm(s);
		reopen(s, 0);
		release_held(s);
		if (cairn_close(s->db))
			sim_fail(s, "final close failed");
		s->db = NULL;
	}
	uint64_t switches = env_sim_switches(s->env), fired = env_sim_faults(s->env);
	env_sim_free(s->env);
	printf("sim: seed %llu ops %ld ok digest %016llx crashes %lu eio %lu enospc %lu "
	       "stretches %lu reopens %lu pending applied %lu dropped %lu short-prefix %lu",
	       (unsigned long long)s->seed, s->ops, (unsigned long long)s->digest, s->crashes,
	       s->eios, s->enospcs, s->stretches, s->reopens, s->pending_applied,
	       s->pending_dropped, s->prefix_short);
	printf(" read-faults %lu faults-fired %llu", s->read_faults, (unsigned long long)fired);
	if (nwriters)
		printf(" threads %d switches %llu", nwriters, (unsigned long long)switches);
	printf("\n");
	free(s->hist);
	free(s->val);
	free(s->scratch);
	free(s);
	return 0;
}
