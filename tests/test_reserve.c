/*
 * test_reserve.c - the space reserve on a simulated disk of fixed capacity
 * (env_sim_set_capacity): a full disk still takes deletes and reopens (after
 * a crash too), ordinary puts never eat the reserve, and the reserve comes
 * back once compaction has freed the deleted data.
 */
#include "testutil.h"

#define RESERVE (256u << 10)

static struct cairn_env *sim_env(uint64_t seed)
{
	struct cairn_env *env = NULL;
	cr_assert_eq(env_sim_new(seed, 1700000000000000000ll, &env), 0);
	return env;
}

static void reserve_options(struct cairn_options *o, struct cairn_env *env)
{
	tu_small_options(o, env);
	o->space_reserve = RESERVE;
}

static uint64_t reserve_size(struct cairn_env *env)
{
	uint64_t size = 0;
	if (env_file_size(env, "db/RESERVE", &size))
		return 0;
	return size;
}

static struct cairn_stats stats_of(struct cairn_db *db)
{
	struct cairn_stats st;
	cr_assert_eq(cairn_stats_get(db, &st), 0);
	return st;
}

static void key_of(char *k, int i)
{
	snprintf(k, 16, "key%06d", i);
}

/* Bytes that do not compress, different for every key. */
static void value_of(char *v, size_t len, int i)
{
	uint64_t x = 0x9E3779B97F4A7C15ull * (uint64_t)(i + 1);
	for (size_t j = 0; j < len; j++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		v[j] = (char)x;
	}
}

/* Puts 2 KiB values until the disk is full, then ever smaller ones, so
 * that not a byte is left; returns how many keys were written. */
static int fill_disk(struct cairn_db *db)
{
	static char val[2048];
	char k[16];
	int n = 0;
	for (size_t len = sizeof(val); len >= 1; len /= 2) {
		for (;;) {
			key_of(k, n);
			value_of(val, len, n);
			int r = cairn_put(db, k, strlen(k), val, len, 0);
			if (r) {
				cr_assert_eq(r, CAIRN_ENOSPC, "put: %s", cairn_strerror(r));
				break;
			}
			n++;
		}
	}
	return n;
}

Test(reserve, written_at_open_and_removed_when_disabled)
{
	struct cairn_env *env = sim_env(1);
	struct cairn_options o;
	reserve_options(&o, env);
	struct cairn_db *db = tu_open("db", &o);
	cr_assert_eq(reserve_size(env), RESERVE);
	cr_assert_eq(stats_of(db).reserve_bytes, RESERVE);
	cr_assert_eq(cairn_close(db), 0);
	o.space_reserve = 0;
	db = tu_open("db", &o);
	cr_assert_eq(env_exists(env, "db/RESERVE"), 0, "a disabled reserve is removed");
	cr_assert_eq(stats_of(db).reserve_bytes, 0);
	cr_assert_eq(cairn_close(db), 0);
	env_sim_free(env);
}

Test(reserve, full_disk_takes_deletes_refuses_puts_and_recovers_space)
{
	struct cairn_env *env = sim_env(2);
	struct cairn_options o;
	reserve_options(&o, env);
	env_sim_set_capacity(env, 3u << 20);
	struct cairn_db *db = tu_open("db", &o);
	int n = fill_disk(db);
	cr_assert_gt(n, 100);
	/* a flush that met the full disk may have taken the reserve; puts
	 * never do: from then on they are refused */
	struct cairn_stats st = stats_of(db);
	if (st.reserve_releases == 0)
		cr_assert_eq(reserve_size(env), RESERVE);
	else
		cr_assert_eq(cairn_put(db, "x", 1, "", 0, 0), CAIRN_ENOSPC);

	/* every delete succeeds on the full disk */
	char k[16];
	for (int i = 0; i < n; i++) {
		key_of(k, i);
		int r = cairn_delete(db, k, strlen(k), 0);
		cr_assert_eq(r, 0, "delete %d of %d on a full disk: %s", i, n, cairn_strerror(r));
	}
	st = stats_of(db);
	cr_assert_geq(st.reserve_releases, 1, "the deletes needed the reserve");
	/* while it is given up, a put is refused even though its room is free */
	if (st.reserve_bytes == 0) {
		cr_assert_eq(env_exists(env, "db/RESERVE"), 0);
		int r = cairn_put(db, "new", 3, "value", 5, 0);
		cr_assert_eq(r, CAIRN_ENOSPC, "a put may not use the reserve: %s",
		             cairn_strerror(r));
	}
	cr_assert_eq(cairn_close(db), 0);

	/* reopens read-write on the full disk, then space comes back */
	db = tu_open("db", &o);
	uint64_t before = env_sim_used(env);
	cr_assert_eq(cairn_compact_range(db, NULL, 0, NULL, 0), 0);
	cr_assert_eq(reserve_size(env), RESERVE, "the reserve is written again");
	cr_assert_eq(stats_of(db).reserve_bytes, RESERVE);
	cr_assert_lt(env_sim_used(env), before / 2, "space came back: %llu of %llu",
	             (unsigned long long)env_sim_used(env), (unsigned long long)before);
	for (int i = 0; i < 10; i++) {
		key_of(k, i);
		cr_assert_eq(cairn_put(db, k, strlen(k), "again", 5, 0), 0);
	}
	void *v;
	size_t vl;
	cr_assert_eq(cairn_get(db, NULL, k, strlen(k), &v, &vl), 0);
	cr_assert(vl == 5 && !memcmp(v, "again", 5));
	cairn_free(v);
	key_of(k, n - 1);
	cr_assert_eq(cairn_get(db, NULL, k, strlen(k), &v, &vl), CAIRN_ENOTFOUND);
	cr_assert_eq(cairn_close(db), 0);
	env_sim_free(env);
}

Test(reserve, crash_on_full_disk_reopens_read_write)
{
	struct cairn_env *env = sim_env(3);
	struct cairn_options o;
	reserve_options(&o, env);
	o.memtable_size = 1u << 20;
	struct cairn_db *db = tu_open("db", &o);
	static char val[1000];
	char k[16];
	for (int i = 0; i < 200; i++) {
		key_of(k, i);
		value_of(val, sizeof(val), i);
		cr_assert_eq(cairn_put(db, k, strlen(k), val, sizeof(val), 0), 0);
	}
	cr_assert_eq(cairn_sync(db), 0);
	env_sim_crash(env);
	cairn_close(db);
	env_sim_reboot(env);
	cr_assert_eq(reserve_size(env), RESERVE, "the reserve survives a crash");

	/* not a byte free; a smaller memtable makes recovery write a table,
	 * a log and a manifest */
	env_sim_set_capacity(env, env_sim_used(env));
	o.memtable_size = 64u << 10;
	db = tu_open("db", &o);
	cr_assert_geq(stats_of(db).reserve_releases, 1, "recovery used the reserve");
	for (int i = 0; i < 200; i += 37) {
		void *v;
		size_t vl;
		key_of(k, i);
		cr_assert_eq(cairn_get(db, NULL, k, strlen(k), &v, &vl), 0, "key %d", i);
		cr_assert_eq(vl, sizeof(val));
		cairn_free(v);
	}
	key_of(k, 0);
	cr_assert_eq(cairn_delete(db, k, strlen(k), CAIRN_SYNC), 0);
	cr_assert_eq(cairn_close(db), 0);
	env_sim_free(env);
}
