/*
 * test_determinism.c - the same operations with the same options and clock
 * give byte-identical files, flushes and compactions included.
 */
#include "testutil.h"

struct file_list {
	char names[256][64];
	int n;
};

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
	cr_assert_eq(env_sim_new(42, 1700000000000000000LL, &env), 0);
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

Test(determinism, same_operations_give_identical_files, .timeout = 300)
{
	struct cairn_env *a = run_workload(3), *b = run_workload(3);
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
	env_sim_free(a);
	env_sim_free(b);
}
