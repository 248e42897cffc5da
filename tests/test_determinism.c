/*
 * test_determinism.c - the same operations with the same options and clock
 * give byte-identical files, flushes and compactions included.
 */
#include "testutil.h"

struct file_list {
	char names[256][64];
	int n;
};

#define START_NS 1700000000000000000LL

static int add_name(void *ctx, const char *name)
{
	struct file_list *l = ctx;
	if (l->n < 256)
		snprintf(l->names[l->n++], 64, "%s", name);
	return 0;
}

static int cmp_names(const void *a, const void *b)
{
	return strcmp(a, b);
}

static struct cairn_env *run_workload(uint64_t seed)
{
	struct cairn_env *env;
	cr_assert_eq(env_sim_new(42, START_NS, &env), 0);
	struct cairn_options o;
	tu_small_options(&o, env);
	struct cairn_db *db = tu_open("/db", &o);
	uint64_t rng = seed;
	char key[32], val[8192];
	for (int i = 0; i < 20000; i++) {
		int id = (int)prng_below(&rng, TU_KEYS);
		int kl = tu_key(key, id);
		if (prng_below(&rng, 5) == 0) {
			cairn_delete(db, key, (size_t)kl, 0);
		} else {
			size_t vl = tu_value(val, sizeof(val), id, (uint64_t)i, &rng);
			cairn_put(db, key, (size_t)kl, val, vl, i % 100 == 0 ? CAIRN_SYNC : 0);
		}
		if (i == 15000)
			cairn_compact_range(db, NULL, 0, NULL, 0);
	}
	struct cairn_stats st;
	cairn_stats_get(db, &st);
	cr_assert_gt(st.compactions, 0, "the workload must compact");
	cr_assert_eq(cairn_close(db), 0);
	return env;
}

/* Large values through every path that writes a blob reference: cairn_put,
 * a batch, a stream; then a compaction and a collection that move them. Every
 * key's write time must be one the clock gave during the run. */
static struct cairn_env *run_large_workload(uint64_t seed)
{
	struct cairn_env *env;
	cr_assert_eq(env_sim_new(42, START_NS, &env), 0);
	struct cairn_options o;
	tu_small_options(&o, env);
	o.blob_threshold = 1024;
	o.blob_file_size = 1u << 20;
	struct cairn_db *db = tu_open("/db", &o);
	uint64_t rng = seed;
	char key[32];
	static char val[20000];
	for (size_t i = 0; i < sizeof(val); i++)
		val[i] = (char)('a' + i % 23);
	for (int i = 0; i < 600; i++) {
		int kl = tu_key(key, (int)prng_below(&rng, 200));
		size_t vl = 1024 + (size_t)prng_below(&rng, sizeof(val) - 1024);
		switch (i % 3) {
		case 0:
			cr_assert_eq(cairn_put(db, key, (size_t)kl, val, vl, 0), 0);
			break;
		case 1: {
			struct cairn_batch *b;
			cr_assert_eq(cairn_batch_new(&b), 0);
			cr_assert_eq(cairn_batch_put(b, key, (size_t)kl, val, vl), 0);
			cr_assert_eq(cairn_batch_put(b, "small", 5, "v", 1), 0);
			cr_assert_eq(cairn_write(db, b, i % 30 == 1 ? CAIRN_SYNC : 0), 0);
			cairn_batch_free(b);
			break;
		}
		default: {
			struct cairn_stream *s;
			cr_assert_eq(cairn_stream_new(db, key, (size_t)kl, &s), 0);
			cr_assert_eq(cairn_stream_write(s, val, vl), 0);
			cr_assert_eq(cairn_stream_commit(s, 0), 0);
		}
		}
		if (i == 400)
			cairn_compact_range(db, NULL, 0, NULL, 0);
	}
	int64_t end = env->ops->now_ns(env);
	for (int id = 0; id < 200; id++) {
		int kl = tu_key(key, id);
		struct cairn_key_info info;
		if (cairn_key_info(db, NULL, key, (size_t)kl, &info) != 0)
			continue;
		cr_assert(info.mtime_ns >= START_NS && info.mtime_ns <= end,
		          "%s: write time %lld is not one the clock gave", key,
		          (long long)info.mtime_ns);
	}
	cr_assert_eq(cairn_close(db), 0);
	return env;
}

/* Every file of the two environments' /db, byte for byte. */
static void assert_same_files(struct cairn_env *a, struct cairn_env *b)
{
	struct file_list la = {0}, lb = {0};
	a->ops->list_dir(a, "/db", add_name, &la);
	b->ops->list_dir(b, "/db", add_name, &lb);
	qsort(la.names, (size_t)la.n, 64, cmp_names);
	qsort(lb.names, (size_t)lb.n, 64, cmp_names);
	cr_assert_eq(la.n, lb.n);
	cr_assert_gt(la.n, 3);
	for (int i = 0; i < la.n; i++) {
		cr_assert_str_eq(la.names[i], lb.names[i]);
		char path[128], *da, *db;
		size_t na, nb;
		snprintf(path, sizeof(path), "/db/%s", la.names[i]);
		cr_assert_eq(env_sim_read_file(a, path, &da, &na), 0);
		cr_assert_eq(env_sim_read_file(b, path, &db, &nb), 0);
		cr_assert(na == nb && memcmp(da, db, na) == 0, "%s differs", path);
		free(da);
		free(db);
	}
}

Test(determinism, same_operations_give_identical_files, .timeout = 300)
{
	struct cairn_env *a = run_workload(3), *b = run_workload(3);
	assert_same_files(a, b);
	env_sim_free(a);
	env_sim_free(b);
}

Test(determinism, large_values_give_identical_files, .timeout = 300)
{
	struct cairn_env *a = run_large_workload(5), *b = run_large_workload(5);
	assert_same_files(a, b);
	env_sim_free(a);
	env_sim_free(b);
}
