/*
 * test_copy.c - cairn_batch_copy: a value moves to another key within a
 * batch, a small one by copy, one in a blob file by a new reference to the
 * same bytes; the whole write fails when the source is missing or its blob
 * record damaged; the bytes stay live while either key refers to them, are
 * collected once neither does, and survive a reopen and a power loss at
 * any write point of a move and of the collection that follows.
 */
#include "testutil.h"

#include "db.h"

static struct cairn_db *open_db(const char *dir)
{
	struct cairn_options o;
	cairn_options_init(&o);
	o.sync_interval_ms = 0;
	o.background_threads = 0;
	o.blob_file_size = 1u << 20;
	return tu_open(dir, &o);
}

static void fill(char *p, size_t n, unsigned seed)
{
	for (size_t i = 0; i < n; i++)
		p[i] = (char)(seed * 131 + i * 7 + (i >> 9));
}

static void put_big(struct cairn_db *db, const char *key, size_t n, unsigned seed)
{
	char *v = malloc(n);
	fill(v, n, seed);
	cr_assert_eq(cairn_put(db, key, strlen(key), v, n, CAIRN_SYNC), 0);
	free(v);
}

static void expect(struct cairn_db *db, const char *key, size_t n, unsigned seed)
{
	char *want = malloc(n ? n : 1), msg[512] = "";
	void *v = NULL;
	size_t vl = 0;
	fill(want, n, seed);
	int r = cairn_get(db, NULL, key, strlen(key), &v, &vl);
	cairn_errmsg(db, msg, sizeof(msg));
	cr_assert_eq(r, 0, "get %s: %s (%s)", key, cairn_strerror(r), msg);
	cr_assert_eq(vl, n, "%s: %zu bytes, want %zu", key, vl, n);
	cr_assert(memcmp(v, want, n) == 0, "%s differs", key);
	cairn_free(v);
	free(want);
}

static void expect_absent(struct cairn_db *db, const char *key)
{
	void *v;
	size_t vl;
	cr_assert_eq(cairn_get(db, NULL, key, strlen(key), &v, &vl), CAIRN_ENOTFOUND, "%s", key);
}

/* delete from, copy from -> to: a move */
static int move(struct cairn_db *db, const char *from, const char *to)
{
	struct cairn_batch *b;
	cr_assert_eq(cairn_batch_new(&b), 0);
	cr_assert_eq(cairn_batch_delete(b, from, strlen(from)), 0);
	cr_assert_eq(cairn_batch_copy(b, from, strlen(from), to, strlen(to)), 0);
	int r = cairn_write(db, b, CAIRN_SYNC);
	cairn_batch_free(b);
	return r;
}

static uint64_t blob_disk_bytes(struct cairn_db *db)
{
	struct cairn_stats st;
	cr_assert_eq(cairn_stats_get(db, &st), 0);
	return st.blob_bytes_live + st.blob_bytes_garbage;
}

Test(copy, moves_small_and_blob_values_without_copying_the_bytes)
{
	char *dir = tu_tmpdir("copy");
	struct cairn_db *db = open_db(dir);
	cr_assert_eq(cairn_put(db, "small", 5, "tiny value", 10, 0), 0);
	put_big(db, "big", 900000, 1);
	uint64_t before = blob_disk_bytes(db);
	cr_assert_eq(move(db, "small", "small2"), 0);
	cr_assert_eq(move(db, "big", "dir/big2"), 0);
	expect_absent(db, "small");
	expect_absent(db, "big");
	void *v;
	size_t vl;
	cr_assert_eq(cairn_get(db, NULL, "small2", 6, &v, &vl), 0);
	cr_assert(vl == 10 && !memcmp(v, "tiny value", 10));
	cairn_free(v);
	expect(db, "dir/big2", 900000, 1);
	cr_assert_eq(blob_disk_bytes(db), before, "the blob bytes were copied");
	/* a range read through the moved reference */
	char buf[100], want[900000];
	size_t got;
	fill(want, sizeof(want), 1);
	cr_assert_eq(cairn_get_range(db, NULL, "dir/big2", 8, 131000, buf, 100, &got), 0);
	cr_assert(got == 100 && !memcmp(buf, want + 131000, 100));
	/* a moved value moves again */
	cr_assert_eq(move(db, "dir/big2", "third"), 0);
	expect(db, "third", 900000, 1);
	cairn_close(db);
	db = open_db(dir); /* replayed from the log */
	expect(db, "third", 900000, 1);
	expect_absent(db, "dir/big2");
	cr_assert_eq(cairn_flush(db), 0);
	cairn_close(db);
	db = open_db(dir); /* read from a table */
	expect(db, "third", 900000, 1);
	cairn_close(db);
	tu_rmrf(dir);
}

Test(copy, crossed_copies_swap_two_values)
{
	char *dir = tu_tmpdir("copy");
	struct cairn_db *db = open_db(dir);
	put_big(db, "a", 200000, 1);
	put_big(db, "b", 300000, 2);
	struct cairn_batch *b;
	cr_assert_eq(cairn_batch_new(&b), 0);
	cr_assert_eq(cairn_batch_copy(b, "a", 1, "b", 1), 0);
	cr_assert_eq(cairn_batch_copy(b, "b", 1, "a", 1), 0);
	cr_assert_eq(cairn_write(db, b, 0), 0);
	cairn_batch_free(b);
	expect(db, "a", 300000, 2);
	expect(db, "b", 200000, 1);
	cairn_close(db);
	tu_rmrf(dir);
}

Test(copy, a_missing_source_fails_the_whole_write)
{
	char *dir = tu_tmpdir("copy");
	struct cairn_db *db = open_db(dir);
	put_big(db, "present", 100000, 3);
	struct cairn_batch *b;
	char msg[512];
	cr_assert_eq(cairn_batch_new(&b), 0);
	cr_assert_eq(cairn_batch_put(b, "side", 4, "effect", 6), 0);
	cr_assert_eq(cairn_batch_copy(b, "present", 7, "p2", 2), 0);
	cr_assert_eq(cairn_batch_copy(b, "absent", 6, "x", 1), 0);
	cr_assert_eq(cairn_write(db, b, 0), CAIRN_ENOTFOUND);
	cairn_errmsg(db, msg, sizeof(msg));
	cr_assert(strstr(msg, "absent"), "%s", msg);
	cairn_batch_free(b);
	expect_absent(db, "side");
	expect_absent(db, "p2");
	expect_absent(db, "x");
	/* the handle still takes writes */
	cr_assert_eq(move(db, "present", "p3"), 0);
	expect(db, "p3", 100000, 3);
	cairn_close(db);
	tu_rmrf(dir);
}

static void blob_file_path(const char *dir, char *path, size_t len)
{
	char cmd[600], name[64] = "";
	snprintf(cmd, sizeof(cmd), "ls %s | grep blob | head -1", dir);
	FILE *ls = popen(cmd, "r");
	cr_assert_not_null(fgets(name, sizeof(name), ls));
	pclose(ls);
	name[strcspn(name, "\n")] = 0;
	snprintf(path, len, "%s/%s", dir, name);
}

Test(copy, a_missing_or_damaged_blob_record_fails_the_whole_write)
{
	char *dir = tu_tmpdir("copy");
	char path[700], msg[512];
	struct cairn_db *db = open_db(dir);
	put_big(db, "victim", 300000, 4);
	cairn_close(db);
	blob_file_path(dir, path, sizeof(path));
	cr_assert_eq(truncate(path, 100000), 0); /* the record runs past the end */
	db = open_db(dir);
	cr_assert_eq(move(db, "victim", "moved"), CAIRN_ECORRUPT);
	cairn_errmsg(db, msg, sizeof(msg));
	cr_assert(strstr(msg, "victim"), "%s", msg);
	expect_absent(db, "moved");
	void *v;
	size_t vl;
	cr_assert_eq(cairn_get(db, NULL, "victim", 6, &v, &vl), CAIRN_ECORRUPT);
	cairn_close(db);
	cr_assert_eq(unlink(path), 0);
	db = open_db(dir);
	cr_assert_eq(move(db, "victim", "moved"), CAIRN_ECORRUPT);
	cairn_errmsg(db, msg, sizeof(msg));
	cr_assert(strstr(msg, "missing"), "%s", msg);
	expect_absent(db, "moved");
	cairn_close(db);
	tu_rmrf(dir);
}

static struct cairn_stats stats(struct cairn_db *db)
{
	struct cairn_stats st;
	cr_assert_eq(cairn_stats_get(db, &st), 0);
	return st;
}

Test(copy, moved_bytes_stay_live_until_no_key_refers_to_them, .timeout = 60)
{
	char *dir = tu_tmpdir("copy");
	struct cairn_db *db = open_db(dir);
	put_big(db, "v1", 300000, 1);
	put_big(db, "v2", 300000, 2);
	put_big(db, "v3", 300000, 3);
	cairn_close(db); /* seals the blob file */
	db = open_db(dir);
	cr_assert_eq(move(db, "v1", "w1"), 0);
	cr_assert_eq(cairn_compact_range(db, NULL, 0, NULL, 0), 0);
	/* the old key's entry is gone but the new one refers to its record:
	 * nothing is garbage, nothing is collected or copied */
	struct cairn_stats st = stats(db);
	cr_assert_eq(st.blob_bytes_garbage, 0);
	cr_assert_eq(st.blob_collections, 0);
	expect(db, "w1", 300000, 1);
	/* the other two go: the file is mostly garbage and collected, by a
	 * scan of the tree that finds w1 under its new key */
	struct cairn_batch *b;
	cr_assert_eq(cairn_batch_new(&b), 0);
	cr_assert_eq(cairn_batch_delete(b, "v2", 2), 0);
	cr_assert_eq(cairn_batch_delete(b, "v3", 2), 0);
	cr_assert_eq(cairn_write(db, b, CAIRN_SYNC), 0);
	cairn_batch_free(b);
	cr_assert_eq(cairn_compact_range(db, NULL, 0, NULL, 0), 0);
	st = stats(db);
	cr_assert_eq(st.blob_collections, 1);
	expect(db, "w1", 300000, 1);
	cairn_close(db);
	db = open_db(dir);
	expect(db, "w1", 300000, 1);
	/* once the new key is overwritten too, its bytes are collected */
	cr_assert_eq(cairn_put(db, "w1", 2, "small now", 9, CAIRN_SYNC), 0);
	cr_assert_eq(cairn_compact_range(db, NULL, 0, NULL, 0), 0);
	cairn_close(db);
	db = open_db(dir);
	cr_assert_eq(cairn_compact_range(db, NULL, 0, NULL, 0), 0);
	st = stats(db);
	cr_assert_eq(st.blob_bytes_live, 0, "%llu live blob bytes left",
	             (unsigned long long)st.blob_bytes_live);
	cairn_close(db);
	tu_rmrf(dir);
}

Test(copy, collection_keeps_a_value_reached_only_through_a_moved_reference, .timeout = 60)
{
	char *dir = tu_tmpdir("copy");
	struct cairn_db *db = open_db(dir);
	for (int i = 0; i < 6; i++) {
		char k[8];
		snprintf(k, sizeof(k), "k%d", i);
		put_big(db, k, 150000, (unsigned)i);
	}
	cairn_close(db);
	db = open_db(dir);
	/* move half, delete the rest: the original keys are all gone */
	for (int i = 0; i < 6; i++) {
		char k[8], n[16];
		snprintf(k, sizeof(k), "k%d", i);
		snprintf(n, sizeof(n), "moved/k%d", i);
		if (i % 2)
			cr_assert_eq(cairn_delete(db, k, strlen(k), 0), 0);
		else
			cr_assert_eq(move(db, k, n), 0);
	}
	cr_assert_eq(cairn_compact_range(db, NULL, 0, NULL, 0), 0);
	cr_assert_eq(stats(db).blob_collections, 1);
	cairn_close(db);
	db = open_db(dir);
	for (int i = 0; i < 6; i += 2) {
		char n[16];
		snprintf(n, sizeof(n), "moved/k%d", i);
		expect(db, n, 150000, (unsigned)i);
	}
	cairn_close(db);
	tu_rmrf(dir);
}

/* ---- power loss at every write point of a move and its collection ---- */

static void sim_opts(struct cairn_options *o, struct cairn_env *env)
{
	tu_small_options(o, env);
	o->blob_file_size = 1u << 20;
}

/* The value of key, or NULL (caller frees with cairn_free). */
static void *value_of(struct cairn_db *db, const char *key, size_t *vl)
{
	void *v = NULL;
	int r = cairn_get(db, NULL, key, strlen(key), &v, vl);
	cr_assert(r == 0 || r == CAIRN_ENOTFOUND, "get %s: %s", key, cairn_strerror(r));
	return r ? NULL : v;
}

/* After any crash: the moved value is under exactly one of its names,
 * whole, and the value that stays put is intact. */
static void check_moved(struct cairn_db *db, const char *when)
{
	size_t la = 0, lb = 0;
	void *a = value_of(db, "v1", &la), *b = value_of(db, "w1", &lb);
	char want[150000];
	fill(want, sizeof(want), 1);
	cr_assert((a != NULL) != (b != NULL), "%s: v1 %s, w1 %s", when, a ? "set" : "gone",
	          b ? "set" : "gone");
	void *v = a ? a : b;
	size_t l = a ? la : lb;
	cr_assert(l == sizeof(want) && !memcmp(v, want, l), "%s: the moved value differs", when);
	cairn_free(a);
	cairn_free(b);
	expect(db, "v4", 150000, 4);
}

static struct cairn_db *sim_setup(struct cairn_env **env, struct cairn_options *o)
{
	cr_assert_eq(env_sim_new(5, 1000, env), 0);
	sim_opts(o, *env);
	struct cairn_db *db = tu_open("/db", o);
	for (unsigned i = 1; i <= 4; i++) {
		char k[8];
		snprintf(k, sizeof(k), "v%u", i);
		put_big(db, k, 150000, i);
	}
	cairn_close(db); /* seals the blob file */
	return tu_open("/db", o);
}

static void sim_work(struct cairn_db *db)
{
	struct cairn_batch *b;
	move(db, "v1", "w1");
	cr_assert_eq(cairn_batch_new(&b), 0);
	cr_assert_eq(cairn_batch_delete(b, "v2", 2), 0);
	cr_assert_eq(cairn_batch_delete(b, "v3", 2), 0);
	cairn_write(db, b, CAIRN_SYNC);
	cairn_batch_free(b);
	cairn_compact_range(db, NULL, 0, NULL, 0);
}

Test(copy, power_loss_at_every_point_of_a_move_and_its_collection, .timeout = 120)
{
	struct cairn_env *env;
	struct cairn_options o;
	struct cairn_db *db = sim_setup(&env, &o);
	uint64_t before = env_sim_write_points(env);
	sim_work(db);
	uint64_t points = env_sim_write_points(env) - before;
	cr_assert_eq(stats(db).blob_collections, 1);
	cr_assert_gt(points, 5);
	check_moved(db, "no crash");
	cairn_close(db);
	env_sim_free(env);

	for (uint64_t k = 1; k <= points; k++) {
		char when[64];
		db = sim_setup(&env, &o);
		env_sim_arm(env, k, SIM_FAULT_CRASH);
		sim_work(db);
		cairn_close(db);
		env_sim_crash(env);
		env_sim_reboot(env);
		snprintf(when, sizeof(when), "crash at point %llu of %llu", (unsigned long long)k,
		         (unsigned long long)points);
		db = tu_open("/db", &o);
		check_moved(db, when);
		cr_assert_eq(cairn_compact_range(db, NULL, 0, NULL, 0), 0);
		check_moved(db, when);
		cairn_close(db);
		db = tu_open("/db", &o);
		check_moved(db, when);
		cairn_close(db);
		env_sim_free(env);
	}
}

/* ---- moves racing writers and background collection ---- */

#define TH_N    4
#define TH_KEYS 12
#define TH_SIZE 100000

struct th_arg {
	struct cairn_db *db;
	int id;
	int where[TH_KEYS];        /* 0: under "a", 1: under "b" */
	unsigned version[TH_KEYS]; /* the seed of its current value */
};

static void th_name(char *out, int id, int k, int where)
{
	sprintf(out, "t%d/k%02d/%c", id, k, where ? 'b' : 'a');
}

static void *th_mover(void *p)
{
	struct th_arg *a = p;
	char from[32], to[32];
	for (int round = 0; round < 60; round++) {
		int k = (round * 7 + a->id) % TH_KEYS;
		th_name(from, a->id, k, a->where[k]);
		th_name(to, a->id, k, !a->where[k]);
		if (round % 5 == 4) {
			/* an overwrite makes the old bytes garbage */
			a->version[k] = (unsigned)(a->id * 1000 + round);
			put_big(a->db, from, TH_SIZE, a->version[k]);
			continue;
		}
		int r = move(a->db, from, to);
		cr_assert_eq(r, 0, "move %s: %s", from, cairn_strerror(r));
		a->where[k] = !a->where[k];
	}
	return NULL;
}

Test(copy, moves_racing_writers_and_background_collection_lose_nothing, .timeout = 120)
{
	char *dir = tu_tmpdir("copy");
	struct cairn_options o;
	cairn_options_init(&o);
	o.sync_interval_ms = 0;
	o.background_threads = 2;
	o.blob_file_size = 1u << 20;
	o.blob_gc_ratio = 0.2;
	o.memtable_size = 256u << 10;
	struct cairn_db *db = tu_open(dir, &o);
	struct th_arg args[TH_N];
	pthread_t th[TH_N];
	char name[32];
	for (int t = 0; t < TH_N; t++) {
		args[t].db = db;
		args[t].id = t;
		for (int k = 0; k < TH_KEYS; k++) {
			args[t].where[k] = 0;
			args[t].version[k] = (unsigned)(t * 100 + k);
			th_name(name, t, k, 0);
			put_big(db, name, TH_SIZE, args[t].version[k]);
		}
	}
	for (int t = 0; t < TH_N; t++)
		pthread_create(&th[t], NULL, th_mover, &args[t]);
	for (int i = 0; i < 5; i++)
		cr_assert_eq(cairn_compact_range(db, NULL, 0, NULL, 0), 0);
	for (int t = 0; t < TH_N; t++)
		pthread_join(th[t], NULL);
	cr_assert_eq(cairn_compact_range(db, NULL, 0, NULL, 0), 0);
	cr_assert_gt(stats(db).blob_collections, 0);
	for (int pass = 0; pass < 2; pass++) {
		for (int t = 0; t < TH_N; t++) {
			for (int k = 0; k < TH_KEYS; k++) {
				th_name(name, t, k, args[t].where[k]);
				expect(db, name, TH_SIZE, args[t].version[k]);
				th_name(name, t, k, !args[t].where[k]);
				expect_absent(db, name);
			}
		}
		cairn_close(db);
		db = tu_open(dir, &o);
	}
	cairn_close(db);
	tu_rmrf(dir);
}
