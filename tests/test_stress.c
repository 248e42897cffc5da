/*
 * test_stress.c - the engine under concurrency, memory pressure and faults:
 * readers, iterators and snapshots against writers and background flushes
 * and compactions (every read checked against what must be visible), write
 * stalls, bounded memory, a full disk and I/O errors, close while work is
 * running, recovery of several memtables' worth of log, and removal of
 * obsolete files.
 */
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <time.h>

#include "testutil.h"

/* ---- helpers ---- */

static uint64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* Options for the threaded tests: tiny memtables and tables so a few
 * megabytes of writes flush and compact many times. */
static void tiny_threaded_options(struct cairn_options *o)
{
	tu_small_options(o, NULL);
	o->memtable_size = 64u << 10;
	o->table_target_size = 64u << 10;
	o->level1_target_size = 256u << 10;
	o->background_threads = 2;
}

/* ---- concurrent readers, iterators, snapshots and writers ---- */

#define CW_WRITERS 2
#define CW_KEYS    40
#define CW_VALUE   160

/* Writer w writes its keys 0..CW_KEYS-1 in order, round after round, each
 * with the round number. So any consistent view of writer w's keys shows
 * rounds that never increase along the keys and differ by at most one, and
 * a later view never shows an older round. */
struct cw_shared {
	struct cairn_db *db;
	atomic_int stop;
	atomic_int failures;
	atomic_uint_fast64_t rounds[CW_WRITERS];
	char msg[256];
	pthread_mutex_t msg_mu;
};

static void cw_fail(struct cw_shared *sh, const char *fmt, ...)
        __attribute__((format(printf, 2, 3)));
static void cw_fail(struct cw_shared *sh, const char *fmt, ...)
{
	pthread_mutex_lock(&sh->msg_mu);
	if (!atomic_load(&sh->failures)) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(sh->msg, sizeof(sh->msg), fmt, ap);
		va_end(ap);
	}
	atomic_fetch_add(&sh->failures, 1);
	atomic_store(&sh->stop, 1);
	pthread_mutex_unlock(&sh->msg_mu);
}

static int cw_key(char *out, int w, int k)
{
	return sprintf(out, "w%d/k%03d", w, k);
}

static size_t cw_value(char *out, uint64_t round, int w, int k)
{
	int n = sprintf(out, "%010llu:", (unsigned long long)round);
	for (int i = n; i < CW_VALUE; i++)
		out[i] = (char)('a' + (i + w * 3 + k + (int)round) % 26);
	return CW_VALUE;
}

/* Parses and checks a value; returns its round or -1. */
static long long cw_parse(const void *v, size_t len, int w, int k)
{
	char want[CW_VALUE];
	if (len != CW_VALUE)
		return -1;
	long long round = strtoll(v, NULL, 10);
	cw_value(want, (uint64_t)round, w, k);
	return memcmp(v, want, CW_VALUE) == 0 ? round : -1;
}

struct cw_writer_arg {
	struct cw_shared *sh;
	int w;
};

static void *cw_writer(void *p)
{
	struct cw_writer_arg *a = p;
	struct cw_shared *sh = a->sh;
	char key[32], val[CW_VALUE];
	for (uint64_t round = 1; !atomic_load(&sh->stop); round++) {
		for (int k = 0; k < CW_KEYS; k++) {
			int kl = cw_key(key, a->w, k);
			size_t vl = cw_value(val, round, a->w, k);
			unsigned flags = (k == 0 && round % 16 == 0) ? CAIRN_SYNC : 0;
			int r = cairn_put(sh->db, key, (size_t)kl, val, vl, flags);
			if (r) {
				cw_fail(sh, "writer %d: put %s: %s", a->w, key, cairn_strerror(r));
				return NULL;
			}
		}
		atomic_store(&sh->rounds[a->w], round);
	}
	return NULL;
}

/* Checks one consistent view (rounds[k] for writer w's keys). */
static void cw_check_view(struct cw_shared *sh, const long long *rounds, int w, const char *what)
{
	for (int k = 1; k < CW_KEYS; k++) {
		if (rounds[k] > rounds[k - 1] || rounds[0] - rounds[k] > 1)
			cw_fail(sh, "%s: writer %d key %d has round %lld after key %d round %lld",
			        what, w, k, rounds[k], k - 1, rounds[k - 1]);
	}
}

/* Point reads: a key never goes back to an older round. */
static void *cw_reader(void *p)
{
	struct cw_shared *sh = p;
	long long seen[CW_WRITERS][CW_KEYS];
	memset(seen, 0, sizeof(seen));
	uint64_t rng = 0x5eed;
	char key[32];
	while (!atomic_load(&sh->stop)) {
		int w = (int)prng_below(&rng, CW_WRITERS), k = (int)prng_below(&rng, CW_KEYS);
		int kl = cw_key(key, w, k);
		void *v = NULL;
		size_t vl = 0;
		int r = cairn_get(sh->db, NULL, key, (size_t)kl, &v, &vl);
		if (r == CAIRN_ENOTFOUND && seen[w][k] == 0)
			continue;
		if (r) {
			cw_fail(sh, "reader: get %s: %s (seen round %lld)", key, cairn_strerror(r),
			        seen[w][k]);
			break;
		}
		long long round = cw_parse(v, vl, w, k);
		cairn_free(v);
		if (round < 0 || round < seen[w][k]) {
			cw_fail(sh, "reader: %s went from round %lld to %lld", key, seen[w][k],
			        round);
			break;
		}
		seen[w][k] = round;
	}
	return NULL;
}

/* Full scans: each is one consistent view, and views never go back. */
static void *cw_iterator(void *p)
{
	struct cw_shared *sh = p;
	long long last[CW_WRITERS] = {0};
	while (!atomic_load(&sh->stop)) {
		struct cairn_iter *it;
		int r = cairn_iter_new(sh->db, NULL, &it);
		if (r) {
			cw_fail(sh, "iterator: new: %s", cairn_strerror(r));
			break;
		}
		long long rounds[CW_WRITERS][CW_KEYS];
		memset(rounds, 0, sizeof(rounds));
		int n = 0;
		for (cairn_iter_seek_first(it); cairn_iter_valid(it); cairn_iter_next(it), n++) {
			size_t kl, vl;
			const char *k = cairn_iter_key(it, &kl);
			const void *v = cairn_iter_value(it, &vl);
			int w, ki;
			if (kl != 7 || sscanf(k, "w%d/k%03d", &w, &ki) != 2 || w < 0 ||
			    w >= CW_WRITERS || ki < 0 || ki >= CW_KEYS) {
				cw_fail(sh, "iterator: unexpected key %.*s", (int)kl, k);
				break;
			}
			rounds[w][ki] = cw_parse(v, vl, w, ki);
			if (rounds[w][ki] < 0)
				cw_fail(sh, "iterator: bad value for %.*s", (int)kl, k);
		}
		if (cairn_iter_status(it))
			cw_fail(sh, "iterator: status %s", cairn_strerror(cairn_iter_status(it)));
		cairn_iter_free(it);
		for (int w = 0; w < CW_WRITERS; w++) {
			cw_check_view(sh, rounds[w], w, "iterator");
			if (rounds[w][0] < last[w])
				cw_fail(sh, "iterator: writer %d went back from round %lld to %lld",
				        w, last[w], rounds[w][0]);
			last[w] = rounds[w][0];
		}
	}
	return NULL;
}

/* Snapshots: reads through one snapshot form a consistent view and give the
 * same answers however long the snapshot is held. */
static void *cw_snapshotter(void *p)
{
	struct cw_shared *sh = p;
	char key[32];
	while (!atomic_load(&sh->stop)) {
		const struct cairn_snapshot *snap;
		int r = cairn_snapshot_new(sh->db, &snap);
		if (r) {
			cw_fail(sh, "snapshot: %s", cairn_strerror(r));
			break;
		}
		long long first[CW_WRITERS][CW_KEYS];
		for (int pass = 0; pass < 2; pass++) {
			for (int w = 0; w < CW_WRITERS; w++) {
				long long rounds[CW_KEYS];
				for (int k = 0; k < CW_KEYS; k++) {
					int kl = cw_key(key, w, k);
					void *v = NULL;
					size_t vl = 0;
					r = cairn_get(sh->db, snap, key, (size_t)kl, &v, &vl);
					rounds[k] = r == CAIRN_ENOTFOUND ? 0
					            : r                  ? -1
					                                 : cw_parse(v, vl, w, k);
					cairn_free(v);
					if (rounds[k] < 0)
						cw_fail(sh, "snapshot get %s: %s", key,
						        cairn_strerror(r));
					if (pass == 1 && rounds[k] != first[w][k])
						cw_fail(sh,
						        "snapshot: %s changed from round %lld to "
						        "%lld under one snapshot",
						        key, first[w][k], rounds[k]);
					first[w][k] = rounds[k];
				}
				if (pass == 0)
					cw_check_view(sh, rounds, w, "snapshot");
			}
			if (pass == 0)
				usleep(20000); /* let flushes and compactions pass */
		}
		cairn_snapshot_release(sh->db, snap);
	}
	return NULL;
}

/* Maintenance racing with everything else. */
static void *cw_maintainer(void *p)
{
	struct cw_shared *sh = p;
	for (int i = 0; !atomic_load(&sh->stop); i++) {
		int r = (i % 4 == 3) ? cairn_compact_range(sh->db, "w0/k010", 7, "w1/k020", 7)
		                     : cairn_flush(sh->db);
		if (r) {
			cw_fail(sh, "maintenance %d: %s", i, cairn_strerror(r));
			break;
		}
		struct cairn_stats st;
		cairn_stats_get(sh->db, &st);
		usleep(15000);
	}
	return NULL;
}

static void cw_check_final(struct cairn_db *db, struct cw_shared *sh, const char *when)
{
	char key[32];
	for (int w = 0; w < CW_WRITERS; w++) {
		uint64_t done = atomic_load(&sh->rounds[w]);
		for (int k = 0; k < CW_KEYS; k++) {
			int kl = cw_key(key, w, k);
			void *v = NULL;
			size_t vl = 0;
			int r = cairn_get(db, NULL, key, (size_t)kl, &v, &vl);
			cr_assert_eq(r, 0, "%s: get %s: %s", when, key, cairn_strerror(r));
			long long round = cw_parse(v, vl, w, k);
			cairn_free(v);
			/* the writer may have gone one round further than it noted */
			cr_assert(round == (long long)done || round == (long long)done + 1,
			          "%s: %s holds round %lld, writer finished round %llu", when, key,
			          round, (unsigned long long)done);
		}
	}
}

Test(stress, concurrent_reads_always_see_consistent_monotonic_state, .timeout = 60)
{
	char *dir = tu_tmpdir("stress-cw");
	struct cairn_options o;
	tiny_threaded_options(&o);
	o.l0_compaction_trigger = 2;
	o.l0_slowdown_trigger = 4;
	o.l0_stop_trigger = 8;
	o.sync_interval_ms = 5; /* the periodic syncer joins the writer queue too */
	struct cw_shared sh = {.db = tu_open(dir, &o)};
	pthread_mutex_init(&sh.msg_mu, NULL);
	pthread_t th[CW_WRITERS + 5];
	struct cw_writer_arg wa[CW_WRITERS];
	int n = 0;
	for (int w = 0; w < CW_WRITERS; w++) {
		wa[w] = (struct cw_writer_arg){&sh, w};
		pthread_create(&th[n++], NULL, cw_writer, &wa[w]);
	}
	pthread_create(&th[n++], NULL, cw_reader, &sh);
	pthread_create(&th[n++], NULL, cw_reader, &sh);
	pthread_create(&th[n++], NULL, cw_iterator, &sh);
	pthread_create(&th[n++], NULL, cw_snapshotter, &sh);
	pthread_create(&th[n++], NULL, cw_maintainer, &sh);
	uint64_t t0 = now_ms();
	while (now_ms() - t0 < 4000 && !atomic_load(&sh.stop))
		usleep(20000);
	atomic_store(&sh.stop, 1);
	for (int i = 0; i < n; i++)
		pthread_join(th[i], NULL);
	cr_assert_eq(atomic_load(&sh.failures), 0, "%s", sh.msg);

	struct cairn_stats st;
	cairn_stats_get(sh.db, &st);
	cr_assert_gt(st.flushes, 10, "only %llu flushes: the test did not stress much",
	             (unsigned long long)st.flushes);
	cr_assert_gt(st.compactions, 0);
	cw_check_final(sh.db, &sh, "after the run");
	cr_assert_eq(cairn_compact_range(sh.db, NULL, 0, NULL, 0), 0);
	cw_check_final(sh.db, &sh, "after compacting");
	cr_assert_eq(cairn_close(sh.db), 0);
	sh.db = tu_open(dir, &o);
	cw_check_final(sh.db, &sh, "after reopening");
	cr_assert_eq(cairn_close(sh.db), 0);
	pthread_mutex_destroy(&sh.msg_mu);
	tu_rmrf(dir);
}

/* ---- write stalls ---- */

#define STALL_WRITES 3000
#define STALL_KEYS   1000

struct stall_arg {
	struct cairn_db *db;
	int id;
	int n;
	int err;
};

static void *stall_writer(void *p)
{
	struct stall_arg *a = p;
	char key[32], val[512];
	for (int i = 0; i < a->n && !a->err; i++) {
		int kl = sprintf(key, "s%d-%05d", a->id, i % STALL_KEYS);
		memset(val, 'a' + (i + a->id) % 26, sizeof(val));
		snprintf(val, sizeof(val), "%d:%d:", a->id, i);
		a->err = cairn_put(a->db, key, (size_t)kl, val, sizeof(val), 0);
	}
	return NULL;
}

Test(stress, writers_are_slowed_when_level0_is_deep, .timeout = 60)
{
	char *dir = tu_tmpdir("stress-stall");
	struct cairn_options o;
	tiny_threaded_options(&o);
	o.background_threads = 1;
	o.memtable_size = 128u << 10;
	o.compression = 0;
	o.l0_compaction_trigger = 2;
	o.l0_slowdown_trigger = 3;
	o.l0_stop_trigger = 6;
	struct cairn_db *db = tu_open(dir, &o);
	struct stall_arg a[2] = {{db, 0, STALL_WRITES, 0}, {db, 1, STALL_WRITES, 0}};
	pthread_t th[2];
	for (int i = 0; i < 2; i++)
		pthread_create(&th[i], NULL, stall_writer, &a[i]);
	for (int i = 0; i < 2; i++)
		pthread_join(th[i], NULL);
	cr_assert_eq(a[0].err, 0, "writer 0: %s", cairn_strerror(a[0].err));
	cr_assert_eq(a[1].err, 0, "writer 1: %s", cairn_strerror(a[1].err));
	struct cairn_stats st;
	cr_assert_eq(cairn_stats_get(db, &st), 0);
	cr_assert_gt(st.slowdowns, 0, "no write was slowed (%llu flushes, %llu compactions)",
	             (unsigned long long)st.flushes, (unsigned long long)st.compactions);
	cr_assert_lt(st.levels[0].files, (uint64_t)o.l0_stop_trigger + 2,
	             "level 0 grew to %llu files", (unsigned long long)st.levels[0].files);
	/* every key holds the last value its writer wrote */
	for (int id = 0; id < 2; id++) {
		for (int k = 0; k < STALL_KEYS; k++) {
			char key[32], want[32];
			int kl = sprintf(key, "s%d-%05d", id, k);
			int last = k + (STALL_WRITES - 1 - k) / STALL_KEYS * STALL_KEYS;
			int wl = sprintf(want, "%d:%d:", id, last);
			void *v;
			size_t vl;
			cr_assert_eq(cairn_get(db, NULL, key, (size_t)kl, &v, &vl), 0, "get %s",
			             key);
			cr_assert(vl == 512 && memcmp(v, want, (size_t)wl) == 0,
			          "%s holds %.*s, want %s", key, wl, (char *)v, want);
			cairn_free(v);
		}
	}
	cr_assert_eq(cairn_close(db), 0);
	tu_rmrf(dir);
}

/* ---- bounded memory ---- */

static uint64_t vm_rss_kib(void)
{
	FILE *f = fopen("/proc/self/status", "r");
	char line[256];
	uint64_t kib = 0;
	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "VmRSS: %llu", (unsigned long long *)&kib) == 1)
			break;
	fclose(f);
	return kib;
}

Test(stress, memory_stays_bounded_while_writing_far_more_than_fits, .timeout = 120)
{
	char *dir = tu_tmpdir("stress-mem");
	struct cairn_options o;
	cairn_options_init(&o);
	o.sync_interval_ms = 0;
	struct cairn_db *db = tu_open(dir, &o);
	const uint64_t total = 64ull << 20;
	const size_t vlen = 4000;
	char *val = malloc(vlen);
	uint64_t rng = 42;
	uint64_t limit = 2 * o.memtable_size + o.block_cache_size + (2u << 20);
	uint64_t max_mem = 0, max_rss = 0;
	/* Sanitizers and valgrind inflate the resident set on their own. */
	uint64_t rss_limit_kib = getenv("CAIRN_TEST_NO_RSS_LIMIT") ? UINT64_MAX : 64u * 1024;
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
	rss_limit_kib = UINT64_MAX;
#endif
	int n = (int)(total / vlen);
	for (int i = 0; i < n; i++) {
		char key[32];
		int kl = sprintf(key, "m%08d", (int)((i * 7919u) % (unsigned)n));
		for (size_t j = 0; j < vlen; j += 8) {
			uint64_t x = prng_next(&rng);
			memcpy(val + j, &x, vlen - j < 8 ? vlen - j : 8);
		}
		cr_assert_eq(cairn_put(db, key, (size_t)kl, val, vlen, 0), 0);
		if (i % 512 == 0) {
			/* some reads, to fill the block cache */
			for (int j = 0; j < 16; j++) {
				char k2[32];
				int k2l = sprintf(k2, "m%08d", (int)prng_below(&rng, (uint64_t)n));
				void *v;
				size_t vl;
				int r = cairn_get(db, NULL, k2, (size_t)k2l, &v, &vl);
				cr_assert(r == 0 || r == CAIRN_ENOTFOUND, "get: %s",
				          cairn_strerror(r));
				if (!r)
					cairn_free(v);
			}
			struct cairn_stats st;
			cairn_stats_get(db, &st);
			if (st.memory_in_use > max_mem)
				max_mem = st.memory_in_use;
			uint64_t rss = vm_rss_kib();
			if (rss > max_rss)
				max_rss = rss;
			cr_assert_leq(st.memory_in_use, limit,
			              "memory_in_use %llu over %llu after %d writes",
			              (unsigned long long)st.memory_in_use,
			              (unsigned long long)limit, i);
			cr_assert_leq(rss, rss_limit_kib, "VmRSS %llu KiB after %d writes",
			              (unsigned long long)rss, i);
		}
	}
	struct cairn_stats st;
	cairn_stats_get(db, &st);
	cr_assert_gt(st.table_bytes, 32ull << 20, "the data did not reach the tables");
	cr_assert_gt(max_mem, o.memtable_size / 2, "memory_in_use never counted the memtable");
	free(val);
	cr_assert_eq(cairn_close(db), 0);
	tu_rmrf(dir);
}

/* ---- faults on the simulated env ---- */

static struct cairn_env *sim_env(uint64_t seed)
{
	struct cairn_env *env;
	cr_assert_eq(env_sim_new(seed, 1700000000000000000ll, &env), 0);
	return env;
}

static struct cairn_db *sim_open(struct cairn_env *env, struct cairn_options *o)
{
	tu_small_options(o, env);
	o->memtable_size = 64u << 10;
	return tu_open("/db", o);
}

/* Writes n random operations into db and the model; returns the version. */
static uint64_t model_churn(struct cairn_db *db, struct tu_model *m, uint64_t *rng, int n,
                            uint64_t version, unsigned flags)
{
	char key[32], val[8192];
	for (int i = 0; i < n; i++, version++) {
		int id = (int)prng_below(rng, TU_KEYS);
		int kl = tu_key(key, id);
		if (prng_below(rng, 8) == 0) {
			cr_assert_eq(cairn_delete(db, key, (size_t)kl, flags), 0);
			tu_model_del(m, id);
		} else {
			size_t vl = tu_value(val, sizeof(val), id, version, rng);
			int r = cairn_put(db, key, (size_t)kl, val, vl, flags);
			cr_assert_eq(r, 0, "put %s: %s", key, cairn_strerror(r));
			tu_model_put(m, id, val, vl);
		}
	}
	return version;
}

Test(stress, full_disk_fails_writes_and_then_recovers)
{
	struct cairn_env *env = sim_env(7);
	struct tu_model m = {0};
	uint64_t rng = 7, version = 1;
	struct cairn_options o;
	struct cairn_db *db = sim_open(env, &o);
	version = model_churn(db, &m, &rng, 3000, version, 0);
	cr_assert_eq(cairn_flush(db), 0);
	version = model_churn(db, &m, &rng, 200, version, 0);
	/* synced, so that a log switch needs no sync (a failed sync is fatal) */
	cr_assert_eq(cairn_sync(db), 0);

	env_sim_fail_all(env, SIM_FAULT_ENOSPC);
	char key[32], msg[512];
	for (int i = 0; i < 50; i++) {
		int kl = tu_key(key, i);
		int r = cairn_put(db, key, (size_t)kl, "lost", 4, i % 2 ? CAIRN_SYNC : 0);
		cr_assert_eq(r, CAIRN_ENOSPC, "put on a full disk: %s", cairn_strerror(r));
	}
	struct cairn_batch *b;
	cr_assert_eq(cairn_batch_new(&b), 0);
	cr_assert_eq(cairn_batch_put(b, "key000000", 9, "lost", 4), 0);
	cr_assert_eq(cairn_batch_delete(b, "key000007", 9), 0);
	cr_assert_eq(cairn_write(db, b, 0), CAIRN_ENOSPC);
	cr_assert_eq(cairn_errmsg(db, msg, sizeof(msg)), CAIRN_ENOSPC);
	cr_assert(strstr(msg, "space"), "message: %s", msg);
	tu_check_model(db, NULL, &m, 7, "while the disk is full");

	env_sim_fail_all(env, SIM_FAULT_NONE);
	version = model_churn(db, &m, &rng, 2000, version, 0);
	cr_assert_eq(cairn_write(db, b, CAIRN_SYNC), 0);
	tu_model_put(&m, 0, "lost", 4);
	tu_model_del(&m, 1);
	cairn_batch_free(b);
	tu_check_model(db, NULL, &m, 7, "after the disk has room again");
	cr_assert_eq(cairn_close(db), 0);
	db = tu_open("/db", &o);
	tu_check_model(db, NULL, &m, 7, "after reopening");
	cr_assert_eq(cairn_close(db), 0);
	tu_model_free(&m);
	env_sim_free(env);
}

/* A write that fills the memtable on a full disk: the log switch fails, the
 * database keeps working once there is room. */
Test(stress, full_disk_at_a_log_switch_is_not_fatal)
{
	struct cairn_env *env = sim_env(8);
	struct tu_model m = {0};
	uint64_t rng = 8, version = 1;
	struct cairn_options o;
	struct cairn_db *db = sim_open(env, &o);
	version = model_churn(db, &m, &rng, 500, version, CAIRN_SYNC);
	/* fill the memtable up to its limit, synced, so the next write switches */
	struct cairn_stats st;
	char key[32], val[4096];
	memset(val, 'z', sizeof(val));
	for (;;) {
		cairn_stats_get(db, &st);
		if (st.memtable_bytes + 2 * sizeof(val) > o.memtable_size)
			break;
		int kl = tu_key(key, 3);
		cr_assert_eq(cairn_put(db, key, (size_t)kl, val, sizeof(val), CAIRN_SYNC), 0);
		tu_model_put(&m, 3, val, sizeof(val));
	}
	env_sim_fail_all(env, SIM_FAULT_ENOSPC);
	for (int i = 0; i < 5; i++) {
		int kl = tu_key(key, 4);
		int r = cairn_put(db, key, (size_t)kl, val, sizeof(val), 0);
		cr_assert_eq(r, CAIRN_ENOSPC, "put on a full disk: %s", cairn_strerror(r));
	}
	env_sim_fail_all(env, SIM_FAULT_NONE);
	version = model_churn(db, &m, &rng, 1000, version, 0);
	tu_check_model(db, NULL, &m, 8, "after the disk has room again");
	cr_assert_eq(cairn_close(db), 0);
	db = tu_open("/db", &o);
	tu_check_model(db, NULL, &m, 8, "after reopening");
	cr_assert_eq(cairn_close(db), 0);
	tu_model_free(&m);
	env_sim_free(env);
}

/* An I/O error at every write point of a flush and a compaction in turn.
 * Either the work succeeds, or the database stops taking writes with
 * CAIRN_EFAILED and a message while reads go on; a reopen holds everything
 * that was synced. */
Test(stress, io_error_in_flush_or_compaction_fails_the_db_and_reopen_recovers, .timeout = 60)
{
	int failed_runs = 0;
	/* every early point (log switch, table creation, first blocks), then
	 * a sample of the hundreds of block appends, syncs and the manifest */
	for (uint64_t n = 1;; n += n < 48 ? 1 : 11) {
		struct cairn_env *env = sim_env(100 + n);
		struct tu_model m = {0};
		uint64_t rng = 100 + n, version = 1;
		struct cairn_options o;
		struct cairn_db *db = sim_open(env, &o);
		o.l0_compaction_trigger = 2;
		cr_assert_eq(cairn_close(db), 0);
		db = tu_open("/db", &o);
		/* level 0 is one table short of a compaction */
		version = model_churn(db, &m, &rng, 400, version, 0);
		cr_assert_eq(cairn_flush(db), 0);
		version = model_churn(db, &m, &rng, 400, version, 0);
		cr_assert_eq(cairn_sync(db), 0);

		uint64_t before = env_sim_write_points(env);
		env_sim_arm(env, n, SIM_FAULT_EIO);
		int r = cairn_flush(db);
		if (!r)
			r = cairn_compact_range(db, NULL, 0, NULL, 0);
		int fired = env_sim_write_points(env) - before >= n;
		env_sim_arm(env, 0, SIM_FAULT_NONE);
		if (!fired) {
			cr_assert_eq(r, 0, "n=%llu: %s without a fault", (unsigned long long)n,
			             cairn_strerror(r));
			cr_assert_eq(cairn_close(db), 0);
			tu_model_free(&m);
			env_sim_free(env);
			break;
		}
		char key[32], msg[512];
		int kl = tu_key(key, 1);
		int w = cairn_put(db, key, (size_t)kl, "x", 1, 0);
		if (r || w) {
			failed_runs++;
			cr_assert_eq(w, CAIRN_EFAILED, "n=%llu: put after a failed flush: %s",
			             (unsigned long long)n, cairn_strerror(w));
			cr_assert_eq(cairn_errmsg(db, msg, sizeof(msg)), CAIRN_EFAILED);
			cr_assert(strstr(msg, "fail") || strstr(msg, "cannot"),
			          "n=%llu: message names no failure: %s", (unsigned long long)n,
			          msg);
			cr_assert(strstr(msg, "injected") || strstr(msg, "Input/output"),
			          "n=%llu: message lost the cause: %s", (unsigned long long)n, msg);
			cr_assert_eq(cairn_flush(db), CAIRN_EFAILED);
			cr_assert_eq(cairn_sync(db), CAIRN_EFAILED);
		} else {
			tu_model_put(&m, 1, "x", 1); /* an unlink failed: harmless */
		}
		tu_check_model(db, NULL, &m, n, "after the fault");
		/* a failed handle must not claim it synced anything */
		cr_assert_eq(cairn_close(db), (r || w) ? CAIRN_EFAILED : 0,
		             "n=%llu: close after the fault", (unsigned long long)n);
		db = tu_open("/db", &o);
		tu_check_model(db, NULL, &m, n, "after reopening");
		/* and it takes writes again */
		version = model_churn(db, &m, &rng, 300, version, 0);
		cr_assert_eq(cairn_compact_range(db, NULL, 0, NULL, 0), 0);
		tu_check_model(db, NULL, &m, n, "after writing again");
		cr_assert_eq(cairn_close(db), 0);
		tu_model_free(&m);
		env_sim_free(env);
	}
	cr_assert_gt(failed_runs, 5, "only %d injected faults stopped the db", failed_runs);
}

/* ---- recovery of several memtables' worth of log ---- */

Test(stress, recovery_of_many_memtables_keeps_the_newest_values)
{
	struct cairn_env *env = sim_env(9);
	struct tu_model m = {0};
	uint64_t rng = 9, version = 1;
	struct cairn_options o;
	tu_small_options(&o, env);
	o.memtable_size = 4u << 20; /* everything stays in the log */
	struct cairn_db *db = tu_open("/db", &o);
	/* several rounds over the same keys, so older tables overlap newer */
	for (int round = 0; round < 4; round++)
		version = model_churn(db, &m, &rng, 1500, version, 0);
	cr_assert_eq(cairn_close(db), 0);
	/* replay into memtables far smaller than the log */
	o.memtable_size = 64u << 10;
	db = tu_open("/db", &o);
	struct cairn_stats st;
	cairn_stats_get(db, &st);
	tu_check_model(db, NULL, &m, 9, "after replaying into small memtables");
	cr_assert_eq(st.levels[0].files + st.levels[1].files + st.levels[2].files > 0, 1);
	cr_assert_eq(cairn_close(db), 0);
	db = tu_open("/db", &o);
	tu_check_model(db, NULL, &m, 9, "after reopening again");
	cr_assert_eq(cairn_close(db), 0);
	tu_model_free(&m);
	env_sim_free(env);
}

/* ---- close while background work runs ---- */

Test(stress, close_while_background_work_runs_loses_nothing, .timeout = 60)
{
	char *dir = tu_tmpdir("stress-close");
	struct tu_model m = {0};
	uint64_t rng = 11, version = 1;
	struct cairn_options o;
	tiny_threaded_options(&o);
	o.l0_compaction_trigger = 2;
	for (int i = 0; i < 12; i++) {
		struct cairn_db *db = tu_open(dir, &o);
		if (i % 4 == 3)
			tu_check_model(db, NULL, &m, 11, "after reopening");
		version = model_churn(db, &m, &rng, 1500, version, 0);
		if (i % 3 == 1) {
			/* a flush in flight at close */
			const struct cairn_snapshot *s;
			cr_assert_eq(cairn_snapshot_new(db, &s), 0);
			version = model_churn(db, &m, &rng, 300, version, 0);
			cairn_snapshot_release(db, s);
		}
		cr_assert_eq(cairn_close(db), 0);
	}
	struct cairn_db *db = tu_open(dir, &o);
	tu_check_model(db, NULL, &m, 11, "at the end");
	cr_assert_eq(cairn_close(db), 0);
	tu_model_free(&m);
	tu_rmrf(dir);
}

/* ---- obsolete files ---- */

struct dir_count {
	int current, lock, reserve, manifests, logs, tables, other;
	char others[256];
};

static void count_dir(const char *dir, struct dir_count *c)
{
	char cmd[512];
	memset(c, 0, sizeof(*c));
	snprintf(cmd, sizeof(cmd), "ls -1 '%s'", dir);
	FILE *p = popen(cmd, "r");
	cr_assert_not_null(p);
	char name[256];
	while (fgets(name, sizeof(name), p)) {
		name[strcspn(name, "\n")] = 0;
		size_t n = strlen(name);
		if (strcmp(name, "CURRENT") == 0)
			c->current++;
		else if (strcmp(name, "LOCK") == 0)
			c->lock++;
		else if (strcmp(name, "RESERVE") == 0)
			c->reserve++;
		else if (strncmp(name, "MANIFEST-", 9) == 0)
			c->manifests++;
		else if (n > 4 && strcmp(name + n - 4, ".log") == 0)
			c->logs++;
		else if (n > 4 && strcmp(name + n - 4, ".sst") == 0)
			c->tables++;
		else {
			c->other++;
			if (strlen(c->others) + n + 2 < sizeof(c->others)) {
				strcat(c->others, name);
				strcat(c->others, " ");
			}
		}
	}
	pclose(p);
}

Test(stress, only_live_files_remain_after_churn, .timeout = 60)
{
	char *dir = tu_tmpdir("stress-obsolete");
	struct tu_model m = {0};
	uint64_t rng = 12, version = 1;
	struct cairn_options o;
	tiny_threaded_options(&o);
	struct cairn_db *db = tu_open(dir, &o);
	for (int round = 0; round < 8; round++) {
		/* an iterator pins files across compactions, then lets go */
		struct cairn_iter *it;
		cr_assert_eq(cairn_iter_new(db, NULL, &it), 0);
		version = model_churn(db, &m, &rng, 2000, version, 0);
		cairn_iter_seek_first(it);
		while (cairn_iter_valid(it))
			cairn_iter_next(it);
		cr_assert_eq(cairn_iter_status(it), 0);
		cairn_iter_free(it);
		if (round % 3 == 2)
			cr_assert_eq(cairn_flush(db), 0);
	}
	cr_assert_eq(cairn_compact_range(db, NULL, 0, NULL, 0), 0);
	tu_check_model(db, NULL, &m, 12, "after compacting");
	/* background compactions may still be finishing: wait for a quiet,
	 * matching state (bounded) */
	struct dir_count c;
	struct cairn_stats st;
	uint64_t tables = 0;
	for (int tries = 0; tries < 200; tries++) {
		cr_assert_eq(cairn_stats_get(db, &st), 0);
		tables = 0;
		for (int l = 0; l < st.num_levels; l++)
			tables += st.levels[l].files;
		count_dir(dir, &c);
		if ((uint64_t)c.tables == tables && c.logs == 1 && c.manifests == 1 && !c.other)
			break;
		usleep(10000);
	}
	cr_assert_eq(c.current, 1);
	cr_assert_eq(c.lock, 1);
	cr_assert_eq(c.reserve, 1, "the space reserve is kept");
	cr_assert_eq(c.manifests, 1, "%d manifests", c.manifests);
	cr_assert_eq(c.logs, 1, "%d logs", c.logs);
	cr_assert_eq((uint64_t)c.tables, tables, "%d tables on disk, %llu live", c.tables,
	             (unsigned long long)tables);
	cr_assert_eq(c.other, 0, "unexpected files: %s", c.others);
	cr_assert_eq(cairn_close(db), 0);
	tu_model_free(&m);
	tu_rmrf(dir);
}
