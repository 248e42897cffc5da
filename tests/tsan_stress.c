/*
 * tsan_stress.c - many threads on one handle, for ThreadSanitizer (Criterion
 * does not start under TSan here, so this is a plain program; exit 0 means
 * the results were right, and TSan itself fails the run on a data race).
 *
 * On the POSIX env with two background threads and small limits, so flushes
 * and compactions run all the time: two writers (each its own keys, values
 * naming writer and round), two readers, an iterator walking the whole key
 * space checking order, a snapshot thread checking that reads through a
 * snapshot do not change, and a maintenance thread calling flush, compact and
 * sync. At the end every key must hold its writer's last value.
 *   tsan_stress [ROUNDS]     default 4000 writes per writer
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cairn.h"

#define WRITERS 2
#define KEYS    500 /* per writer */

static struct cairn_db *db;
static int rounds = 4000;
static atomic_int writers_done;
static atomic_int failures;

static void failf(const char *what, const char *detail)
{
	fprintf(stderr, "tsan_stress: %s: %s\n", what, detail);
	atomic_fetch_add(&failures, 1);
}

static int key_of(char *out, int w, int k)
{
	return sprintf(out, "w%d-k%04d", w, k);
}

/* Round r of writer w writes key r % KEYS with value "w<w>-r<r>-" + padding. */
static size_t value_of(char *out, int w, int r)
{
	int n = sprintf(out, "w%d-r%d-", w, r);
	size_t len = 20 + (size_t)(r % 7) * 40;
	memset(out + n, 'a' + r % 26, len - (size_t)n);
	return len;
}

/* Checks that a value read under key is one that key's writer wrote. */
static void check_value(const char *key, size_t kl, const char *v, size_t vl)
{
	int w, k, r;
	char want[512];
	if (sscanf(key, "w%d-k%d", &w, &k) != 2 || kl != 8) {
		failf("unexpected key", key);
		return;
	}
	if (sscanf(v, "w%d-r%d-", &w, &r) != 2 || r % KEYS != k) {
		failf("value names another key", key);
		return;
	}
	size_t n = value_of(want, w, r);
	if (n != vl || memcmp(want, v, n))
		failf("value differs from what was written", key);
}

static void *writer(void *arg)
{
	int w = (int)(intptr_t)arg;
	char key[16], val[512];
	for (int r = 0; r < rounds; r++) {
		int kl = key_of(key, w, r % KEYS);
		size_t vl = value_of(val, w, r);
		int e;
		if (r % 50 == 49) {
			struct cairn_batch *b;
			if (cairn_batch_new(&b)) {
				failf("batch", "ENOMEM");
				break;
			}
			cairn_batch_put(b, key, (size_t)kl, val, vl);
			e = cairn_write(db, b, r % 200 == 199 ? CAIRN_SYNC : 0);
			cairn_batch_free(b);
		} else {
			e = cairn_put(db, key, (size_t)kl, val, vl, 0);
		}
		if (e) {
			failf("put", cairn_strerror(e));
			break;
		}
	}
	atomic_fetch_add(&writers_done, 1);
	return NULL;
}

static int running(void)
{
	return atomic_load(&writers_done) < WRITERS && atomic_load(&failures) == 0;
}

static void *reader(void *arg)
{
	unsigned seed = (unsigned)(intptr_t)arg;
	char key[16];
	while (running()) {
		int w = (int)(rand_r(&seed) % WRITERS), k = (int)(rand_r(&seed) % KEYS);
		int kl = key_of(key, w, k);
		void *v;
		size_t vl;
		int e = cairn_get(db, NULL, key, (size_t)kl, &v, &vl);
		if (e == 0) {
			char tmp[512];
			memcpy(tmp, v, vl < sizeof(tmp) - 1 ? vl : sizeof(tmp) - 1);
			tmp[vl < sizeof(tmp) - 1 ? vl : sizeof(tmp) - 1] = 0;
			check_value(key, (size_t)kl, tmp, vl);
			cairn_free(v);
		} else if (e != CAIRN_ENOTFOUND) {
			failf("get", cairn_strerror(e));
		}
	}
	return NULL;
}

/* Walks everything (through snap when not NULL), checking order and values;
 * returns the number of keys seen. */
static int walk(const struct cairn_snapshot *snap)
{
	struct cairn_iter *it;
	char prev[16] = "", tmp[512];
	int n = 0;
	if (cairn_iter_new(db, snap, &it)) {
		failf("iter", "cannot create");
		return -1;
	}
	for (cairn_iter_seek_first(it); cairn_iter_valid(it); cairn_iter_next(it), n++) {
		size_t kl, vl;
		const char *k = cairn_iter_key(it, &kl), *v = cairn_iter_value(it, &vl);
		char key[16];
		if (kl >= sizeof(key) || vl >= sizeof(tmp)) {
			failf("iter", "entry too long");
			break;
		}
		memcpy(key, k, kl);
		key[kl] = 0;
		if (strcmp(prev, key) >= 0)
			failf("iter: keys out of order", key);
		memcpy(prev, key, kl + 1);
		memcpy(tmp, v, vl);
		tmp[vl] = 0;
		check_value(key, kl, tmp, vl);
	}
	if (cairn_iter_status(it))
		failf("iter", cairn_strerror(cairn_iter_status(it)));
	cairn_iter_free(it);
	return n;
}

static void *iterator(void *arg)
{
	(void)arg;
	while (running())
		walk(NULL);
	return NULL;
}

static void *snapshotter(void *arg)
{
	(void)arg;
	while (running()) {
		const struct cairn_snapshot *s;
		if (cairn_snapshot_new(db, &s)) {
			failf("snapshot", "cannot take");
			break;
		}
		int a = walk(s);
		usleep(1000);
		int b = walk(s);
		if (a != b)
			failf("snapshot", "two walks of one snapshot saw different key counts");
		cairn_snapshot_release(db, s);
	}
	return NULL;
}

static void *maintenance(void *arg)
{
	(void)arg;
	for (int i = 0; running(); i++) {
		int e = i % 3 == 0   ? cairn_flush(db)
		        : i % 3 == 1 ? cairn_compact_range(db, "w0", 2, "w1-k0250", 8)
		                     : cairn_sync(db);
		if (e)
			failf("maintenance", cairn_strerror(e));
		usleep(2000);
	}
	return NULL;
}

int main(int argc, char **argv)
{
	char dir[] = "/tmp/cairn-tsan-XXXXXX", err[512];
	struct cairn_options o;
	pthread_t th[8];
	int n = 0;

	if (argc > 1)
		rounds = atoi(argv[1]);
	if (!mkdtemp(dir)) {
		perror("mkdtemp");
		return 1;
	}
	cairn_options_init(&o);
	o.memtable_size = 128u << 10;
	o.block_size = 1024;
	o.table_target_size = 64u << 10;
	o.level1_target_size = 256u << 10;
	o.level_size_ratio = 4;
	o.block_cache_size = 128u << 10;
	o.max_open_tables = 8;
	o.background_threads = 2;
	o.sync_interval_ms = 5;
	int e = cairn_open(dir, &o, &db, err, sizeof(err));
	if (e) {
		fprintf(stderr, "tsan_stress: open: %s: %s\n", cairn_strerror(e), err);
		return 1;
	}
	for (int w = 0; w < WRITERS; w++)
		pthread_create(&th[n++], NULL, writer, (void *)(intptr_t)w);
	pthread_create(&th[n++], NULL, reader, (void *)(intptr_t)1);
	pthread_create(&th[n++], NULL, reader, (void *)(intptr_t)2);
	pthread_create(&th[n++], NULL, iterator, NULL);
	pthread_create(&th[n++], NULL, snapshotter, NULL);
	pthread_create(&th[n++], NULL, maintenance, NULL);
	for (int i = 0; i < n; i++)
		pthread_join(th[i], NULL);

	/* every key holds the last value its writer gave it */
	char key[16], want[512];
	for (int w = 0; w < WRITERS && !failures; w++)
		for (int k = 0; k < KEYS && k < rounds; k++) {
			int last = (rounds - 1) / KEYS * KEYS + k;
			if (last >= rounds)
				last -= KEYS;
			int kl = key_of(key, w, k);
			size_t wl = value_of(want, w, last);
			void *v;
			size_t vl;
			e = cairn_get(db, NULL, key, (size_t)kl, &v, &vl);
			if (e || vl != wl || memcmp(v, want, wl))
				failf("final value", key);
			if (!e)
				cairn_free(v);
		}
	struct cairn_stats st;
	if (cairn_stats_get(db, &st) == 0)
		fprintf(stderr, "tsan_stress: %d writes per writer, %d keys at the end\n", rounds,
		        walk(NULL));
	if (cairn_close(db))
		failf("close", "failed");
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	if (system(cmd) != 0)
		fprintf(stderr, "tsan_stress: could not remove %s\n", dir);
	if (failures)
		fprintf(stderr, "tsan_stress: %d failures\n", failures);
	return failures ? 1 : 0;
}
