/*
 * test_env.c - tests of the environments: the POSIX env on a temporary
 * directory, and the simulated env's model of power loss, injected faults,
 * determinism and its virtual clock (see the top of env_sim.c).
 *
 * Randomized tests run the same scenario over a range of fixed seeds and say
 * which seed failed.
 */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "env.h"
#include "util.h"

#define NSEEDS 200

/* ---- helpers ---- */

static char *msg_of(struct cairn_env *env)
{
	static char buf[512];
	env_errmsg(env, buf, sizeof(buf));
	return buf;
}

static void put_file(struct cairn_env *env, const char *path, const char *data, int sync)
{
	struct env_file *f;

	cr_assert_eq(env_open_write(env, path, &f), 0, "%s", msg_of(env));
	cr_assert_eq(env_append(f, data, strlen(data)), 0, "%s", msg_of(env));
	if (sync)
		cr_assert_eq(env_sync(f), 0, "%s", msg_of(env));
	cr_assert_eq(env_close(f), 0);
}

/* Reads a whole file through the env into a NUL-terminated malloc'd string. */
static char *get_file(struct cairn_env *env, const char *path)
{
	struct env_file *f;
	uint64_t size;
	size_t got;
	char *p;

	cr_assert_eq(env_open_read(env, path, &f), 0, "%s", msg_of(env));
	cr_assert_eq(env_size(f, &size), 0);
	p = malloc(size + 10);
	cr_assert(p);
	cr_assert_eq(env_pread(f, 0, p, size + 10, &got), 0);
	cr_assert_eq(got, size);
	p[size] = '\0';
	env_close(f);
	return p;
}

static struct cairn_env *sim_new(uint64_t seed)
{
	struct cairn_env *env;
	cr_assert_eq(env_sim_new(seed, 1700000000000000000ll, &env), 0);
	return env;
}

static void crash_reboot(struct cairn_env *env)
{
	env_sim_crash(env);
	cr_assert(env_sim_crashed(env));
	env_sim_reboot(env);
	cr_assert(!env_sim_crashed(env));
}

struct names {
	char all[1024];
	int n;
};

static int collect_name(void *ctx, const char *name)
{
	struct names *nm = ctx;
	strcat(nm->all, name);
	strcat(nm->all, ",");
	nm->n++;
	return 0;
}

static int stop_at_first(void *ctx, const char *name)
{
	(void)name;
	(*(int *)ctx)++;
	return 42;
}

static void *thread_fn(void *arg)
{
	*(int *)arg = 7;
	return NULL;
}

/* ---- POSIX ---- */

static char tmpdir[64];

static void posix_setup(void)
{
	strcpy(tmpdir, "/tmp/env-test-XXXXXX");
	cr_assert(mkdtemp(tmpdir));
}

static int rm_entry(void *ctx, const char *name)
{
	char p[256];
	snprintf(p, sizeof(p), "%s/%s", (const char *)ctx, name);
	if (unlink(p) < 0) {
		env_list_dir(env_posix(), p, rm_entry, p);
		rmdir(p);
	}
	return 0;
}

static void posix_teardown(void)
{
	env_list_dir(env_posix(), tmpdir, rm_entry, tmpdir);
	rmdir(tmpdir);
}

TestSuite(posix, .init = posix_setup, .fini = posix_teardown);

static const char *tpath(const char *name)
{
	static char p[4][256];
	static int i;
	i = (i + 1) % 4;
	snprintf(p[i], sizeof(p[i]), "%s/%s", tmpdir, name);
	return p[i];
}

Test(posix, files_write_read_append_truncate_sync)
{
	struct cairn_env *env = env_posix();
	struct env_file *f;
	uint64_t size;
	size_t got;
	char buf[64];
	struct stat st;

	umask(022);
	cr_assert_eq(env_open_write(env, tpath("a"), &f), 0, "%s", msg_of(env));
	cr_assert_eq(env_append(f, "hello ", 6), 0);
	cr_assert_eq(env_append(f, "world", 5), 0);
	cr_assert_eq(env_sync(f), 0);
	cr_assert_eq(env_size(f, &size), 0);
	cr_assert_eq(size, 11);
	cr_assert_eq(env_pread(f, 6, buf, sizeof(buf), &got), 0);
	cr_assert_eq(got, 5, "short read only at end of file");
	cr_assert_eq(memcmp(buf, "world", 5), 0);
	cr_assert_eq(env_pread(f, 100, buf, sizeof(buf), &got), 0);
	cr_assert_eq(got, 0);
	/* after a truncate the next append lands at the new end, no hole */
	cr_assert_eq(env_truncate(f, 5), 0);
	cr_assert_eq(env_append(f, "!", 1), 0);
	cr_assert_eq(env_close(f), 0);
	cr_assert_eq(stat(tpath("a"), &st), 0);
	cr_assert_eq(st.st_mode & 0777, 0644);

	cr_assert_eq(env_open_append(env, tpath("a"), &f), 0);
	cr_assert_eq(env_append(f, "?", 1), 0);
	cr_assert_eq(env_close(f), 0);
	char *s = get_file(env, tpath("a"));
	cr_assert_str_eq(s, "hello!?");
	free(s);
	cr_assert_eq(env_file_size(env, tpath("a"), &size), 0);
	cr_assert_eq(size, 7);

	/* open_write truncates an existing file */
	cr_assert_eq(env_open_write(env, tpath("a"), &f), 0);
	cr_assert_eq(env_size(f, &size), 0);
	cr_assert_eq(size, 0);
	cr_assert_eq(env_close(f), 0);
}

Test(posix, names_rename_link_unlink_list_and_dirs)
{
	struct cairn_env *env = env_posix();
	struct names nm = {{0}, 0};
	struct stat st;
	int calls = 0;

	put_file(env, tpath("x"), "1", 1);
	cr_assert_eq(env_exists(env, tpath("x")), 1);
	cr_assert_eq(env_exists(env, tpath("nope")), 0);
	cr_assert_eq(env_rename(env, tpath("x"), tpath("y")), 0);
	cr_assert_eq(env_exists(env, tpath("x")), 0);
	cr_assert_eq(env_rename(env, tpath("x"), tpath("y")), CAIRN_ENOENT);
	cr_assert(strstr(msg_of(env), "to '"), "%s", msg_of(env));
	cr_assert_eq(env_link(env, tpath("y"), tpath("z")), 0, "%s", msg_of(env));
	cr_assert_eq(env_link(env, tpath("y"), tpath("z")), CAIRN_EEXIST);
	cr_assert_eq(env_mkdir(env, tpath("d")), 0);
	cr_assert_eq(stat(tpath("d"), &st), 0);
	cr_assert_eq(st.st_mode & 0777, 0700);
	cr_assert_eq(env_mkdir(env, tpath("d")), CAIRN_EEXIST);
	cr_assert_eq(env_sync_dir(env, tmpdir), 0, "%s", msg_of(env));
	cr_assert_eq(env_list_dir(env, tmpdir, collect_name, &nm), 0);
	cr_assert_eq(nm.n, 3, "entries: %s", nm.all);
	cr_assert(strstr(nm.all, "y,") && strstr(nm.all, "z,") && strstr(nm.all, "d,"));
	cr_assert_eq(env_list_dir(env, tmpdir, stop_at_first, &calls), 42);
	cr_assert_eq(calls, 1);
	cr_assert_eq(env_unlink(env, tpath("y")), 0);
	cr_assert_eq(env_unlink(env, tpath("y")), CAIRN_ENOENT);
	cr_assert_eq(env_rmdir(env, tpath("d")), 0);
	cr_assert_eq(env_list_dir(env, tpath("d"), collect_name, &nm), CAIRN_ENOENT);
	cr_assert_eq(env_sync_dir(env, tpath("d")), CAIRN_ENOENT);
}

Test(posix, missing_file_gives_enoent_naming_the_path)
{
	struct cairn_env *env = env_posix();
	struct env_file *f = (struct env_file *)1;

	cr_assert_eq(env_open_read(env, tpath("missing"), &f), CAIRN_ENOENT);
	cr_assert_null(f);
	cr_assert(strstr(msg_of(env), "missing"), "%s", msg_of(env));
	cr_assert(strstr(msg_of(env), "No such file"), "%s", msg_of(env));
	cr_assert_eq(env_open_append(env, tpath("missing"), &f), CAIRN_ENOENT);
	cr_assert_eq(env_open_write(env, tpath("nodir/x"), &f), CAIRN_ENOENT);
}

Test(posix, second_lock_in_same_process_is_busy_naming_pid)
{
	struct cairn_env *env = env_posix();
	struct env_lock *a, *b;
	char pid[32];

	cr_assert_eq(env_lock(env, tpath("LOCK"), &a), 0, "%s", msg_of(env));
	cr_assert_eq(env_lock(env, tpath("LOCK"), &b), CAIRN_EBUSY);
	cr_assert_null(b);
	snprintf(pid, sizeof(pid), "process %ld", (long)getpid());
	cr_assert(strstr(msg_of(env), pid), "message: %s", msg_of(env));
	cr_assert(strstr(msg_of(env), tmpdir), "message: %s", msg_of(env));
	cr_assert_eq(env_unlock(env, a), 0);
	cr_assert_eq(env_lock(env, tpath("LOCK"), &b), 0, "released lock can be taken again");
	cr_assert_eq(env_unlock(env, b), 0);
}

Test(posix, clocks_sleep_and_threads)
{
	struct cairn_env *env = env_posix();
	struct env_thread *t;
	int v = 0;
	uint64_t m0 = env_mono_ns(env);

	cr_assert_gt(env_now_ns(env), 1600000000ll * 1000000000ll);
	env_sleep_us(env, 2000);
	cr_assert_geq(env_mono_ns(env) - m0, 2000000u);
	cr_assert_eq(env_thread_start(env, thread_fn, &v, &t), 0);
	env_thread_join(env, t);
	cr_assert_eq(v, 7);
	env_destroy(env); /* a no-op: the env is still usable */
	cr_assert_eq(env_exists(env, tmpdir), 1);
}

/* ---- simulated ---- */

Test(sim, files_and_names_behave_like_posix)
{
	struct cairn_env *env = sim_new(1);
	struct names nm = {{0}, 0};
	struct env_file *f;
	uint64_t size;
	int calls = 0;

	cr_assert_eq(env_mkdir(env, "db"), 0);
	cr_assert_eq(env_mkdir(env, "db"), CAIRN_EEXIST);
	cr_assert_eq(env_open_write(env, "nodir/x", &f), CAIRN_ENOENT);
	put_file(env, "db/a", "alpha", 0);
	cr_assert_eq(env_open_append(env, "/db//a", &f), 0, "paths are normalised");
	cr_assert_eq(env_append(f, "+", 1), 0);
	cr_assert_eq(env_truncate(f, 3), 0);
	cr_assert_eq(env_append(f, "!", 1), 0);
	cr_assert_eq(env_close(f), 0);
	char *s = get_file(env, "db/a");
	cr_assert_str_eq(s, "alp!");
	free(s);
	cr_assert_eq(env_open_read(env, "db/a", &f), 0);
	cr_assert_eq(env_append(f, "x", 1), CAIRN_EIO, "read-only handle");
	env_close(f);
	cr_assert_eq(env_file_size(env, "db/a", &size), 0);
	cr_assert_eq(size, 4);
	cr_assert_eq(env_rename(env, "db/a", "db/b"), 0);
	cr_assert_eq(env_exists(env, "db/a"), 0);
	cr_assert_eq(env_link(env, "db/b", "db/c"), 0);
	cr_assert_eq(env_link(env, "db/b", "db/c"), CAIRN_EEXIST);
	cr_assert_eq(env_list_dir(env, "db", collect_name, &nm), 0);
	cr_assert_str_eq(nm.all, "b,c,");
	cr_assert_eq(env_list_dir(env, "db", stop_at_first, &calls), 42);
	cr_assert_eq(calls, 1);
	cr_assert_eq(env_rmdir(env, "db"), CAIRN_EIO, "not empty");
	cr_assert_eq(env_unlink(env, "db/b"), 0);
	cr_assert_eq(env_unlink(env, "db/b"), CAIRN_ENOENT);
	s = get_file(env, "db/c");
	cr_assert_str_eq(s, "alp!", "the link keeps the inode");
	free(s);
	cr_assert_eq(env_unlink(env, "db/c"), 0);
	cr_assert_eq(env_rmdir(env, "db"), 0);
	cr_assert_eq(env_exists(env, "db"), 0);
	cr_assert_eq(env_open_read(env, "db/c", &f), CAIRN_ENOENT);
	cr_assert(strstr(msg_of(env), "db/c"), "%s", msg_of(env));
	cr_assert_eq(env_open_read(env, "../x", &f), CAIRN_EINVAL);
	env_destroy(env);
}

Test(sim, synced_data_survives_and_unsynced_may_be_lost)
{
	int lost = 0, kept = 0;

	for (uint64_t seed = 1; seed <= NSEEDS; seed++) {
		struct cairn_env *env = sim_new(seed);
		struct env_file *f;

		cr_assert_eq(env_mkdir(env, "db"), 0);
		cr_assert_eq(env_sync_dir(env, "/"), 0);
		cr_assert_eq(env_open_write(env, "db/log", &f), 0);
		cr_assert_eq(env_append(f, "durable;", 8), 0);
		cr_assert_eq(env_sync(f), 0);
		cr_assert_eq(env_sync_dir(env, "db"), 0);
		cr_assert_eq(env_append(f, "volatile", 8), 0);
		crash_reboot(env);
		cr_assert_eq(env_append(f, "x", 1), CAIRN_EIO, "handles die in a crash");
		cr_assert_eq(env_sync(f), CAIRN_EIO);
		env_close(f);

		char *s = get_file(env, "db/log");
		size_t n = strlen(s);
		cr_assert(n >= 8 && n <= 16, "seed %llu: %zu bytes", (unsigned long long)seed, n);
		cr_assert_eq(memcmp(s, "durable;volatile", n), 0, "seed %llu: '%s' not a prefix",
		             (unsigned long long)seed, s);
		lost += n == 8;
		kept += n == 16;
		free(s);
		env_sim_free(env);
	}
	cr_assert_gt(lost, 0, "some seed loses the unsynced tail");
	cr_assert_gt(kept, 0, "some seed keeps it");
}

Test(sim, torn_tail_is_a_prefix_of_what_was_written)
{
	int torn = 0;
	char data[4096];

	for (size_t i = 0; i < sizeof(data); i++)
		data[i] = (char)('a' + i % 26);
	for (uint64_t seed = 1; seed <= NSEEDS; seed++) {
		struct cairn_env *env = sim_new(seed);
		struct env_file *f;
		char *got;
		size_t len;

		cr_assert_eq(env_open_write(env, "wal", &f), 0);
		cr_assert_eq(env_append(f, data, 100), 0);
		cr_assert_eq(env_sync(f), 0);
		cr_assert_eq(env_sync_dir(env, ""), 0);
		cr_assert_eq(env_append(f, data + 100, 1000), 0);
		cr_assert_eq(env_append(f, data + 1100, 2996), 0);
		env_sim_crash(env);
		cr_assert_eq(env_sim_read_file(env, "wal", &got, &len), 0,
		             "test helpers work while crashed");
		cr_assert(len >= 100 && len <= sizeof(data), "seed %llu", (unsigned long long)seed);
		cr_assert_eq(memcmp(got, data, len), 0, "seed %llu", (unsigned long long)seed);
		torn += len > 100 && len < sizeof(data);
		free(got);
		env_close(f);
		env_sim_free(env);
	}
	cr_assert_gt(torn, NSEEDS / 4, "tears at a byte between the ends happen often");
}

Test(sim, truncation_and_rewrite_revert_to_durable_contents)
{
	struct cairn_env *env = sim_new(3);
	struct env_file *f;

	put_file(env, "f", "0123456789", 1);
	cr_assert_eq(env_sync_dir(env, "/"), 0);
	cr_assert_eq(env_open_append(env, "f", &f), 0);
	cr_assert_eq(env_truncate(f, 4), 0);
	env_close(f);
	crash_reboot(env);
	char *s = get_file(env, "f");
	cr_assert_str_eq(s, "0123456789");
	free(s);
	put_file(env, "f", "new", 0); /* open_write truncates, unsynced */
	crash_reboot(env);
	s = get_file(env, "f");
	cr_assert_str_eq(s, "0123456789");
	free(s);
	env_sim_free(env);
}

/* The source name tmp is made durable first (variant 1) or not (variant 0):
 * either way the rename must be all or nothing. */
Test(sim, rename_is_atomic_across_crash)
{
	int old_seen = 0, new_seen = 0;

	for (uint64_t seed = 1; seed <= NSEEDS; seed++) {
		for (int tmp_durable = 0; tmp_durable < 2; tmp_durable++) {
			struct cairn_env *env = sim_new(seed);

			cr_assert_eq(env_mkdir(env, "db"), 0);
			cr_assert_eq(env_sync_dir(env, "/"), 0);
			put_file(env, "db/CURRENT", "old", 1);
			cr_assert_eq(env_sync_dir(env, "db"), 0);
			put_file(env, "db/CURRENT.tmp", "new", 1);
			if (tmp_durable)
				cr_assert_eq(env_sync_dir(env, "db"), 0);
			cr_assert_eq(env_rename(env, "db/CURRENT.tmp", "db/CURRENT"), 0);
			crash_reboot(env);

			char *s = get_file(env, "db/CURRENT");
			int tmp = env_exists(env, "db/CURRENT.tmp");
			if (!strcmp(s, "old")) {
				old_seen++;
				/* undone: the source is back exactly when it was durable */
				cr_assert_eq(tmp, tmp_durable, "seed %llu variant %d",
				             (unsigned long long)seed, tmp_durable);
				if (tmp) {
					char *t = get_file(env, "db/CURRENT.tmp");
					cr_assert_str_eq(t, "new");
					free(t);
				}
			} else {
				cr_assert_str_eq(s, "new", "seed %llu", (unsigned long long)seed);
				cr_assert_eq(tmp, 0, "seed %llu: renamed file under both names",
				             (unsigned long long)seed);
				new_seen++;
			}
			free(s);
			env_sim_free(env);
		}
	}
	cr_assert_gt(old_seen, 0);
	cr_assert_gt(new_seen, 0);
}

Test(sim, rename_then_sync_dir_is_durable)
{
	for (uint64_t seed = 1; seed <= 50; seed++) {
		struct cairn_env *env = sim_new(seed);

		put_file(env, "CURRENT", "old", 1);
		cr_assert_eq(env_sync_dir(env, "/"), 0);
		put_file(env, "tmp", "new", 1);
		cr_assert_eq(env_rename(env, "tmp", "CURRENT"), 0);
		cr_assert_eq(env_sync_dir(env, "/"), 0);
		crash_reboot(env);
		char *s = get_file(env, "CURRENT");
		cr_assert_str_eq(s, "new", "seed %llu", (unsigned long long)seed);
		cr_assert_eq(env_exists(env, "tmp"), 0);
		free(s);
		env_sim_free(env);
	}
}

Test(sim, unsynced_entry_may_vanish_synced_entry_survives)
{
	int vanished = 0, survived = 0, dir_lost = 0, a_back = 0;

	for (uint64_t seed = 1; seed <= NSEEDS; seed++) {
		struct cairn_env *env = sim_new(seed);

		cr_assert_eq(env_mkdir(env, "db"), 0);
		cr_assert_eq(env_sync_dir(env, "/"), 0);
		put_file(env, "db/a", "A", 1);
		cr_assert_eq(env_sync_dir(env, "db"), 0);
		put_file(env, "db/b", "B", 1);
		cr_assert_eq(env_unlink(env, "db/a"), 0); /* unsynced: may come back */
		cr_assert_eq(env_mkdir(env, "other"), 0); /* never synced in "/" */
		put_file(env, "other/c", "C", 1);
		cr_assert_eq(env_sync_dir(env, "other"), 0);
		crash_reboot(env);

		cr_assert_eq(env_exists(env, "db"), 1, "seed %llu: synced dir",
		             (unsigned long long)seed);
		if (env_exists(env, "db/a")) {
			char *s = get_file(env, "db/a");
			cr_assert_str_eq(s, "A", "seed %llu", (unsigned long long)seed);
			free(s);
			a_back++;
		}
		if (env_exists(env, "db/b")) {
			char *s = get_file(env, "db/b");
			cr_assert_str_eq(s, "B", "seed %llu: synced data of a surviving name",
			                 (unsigned long long)seed);
			free(s);
			survived++;
		} else {
			vanished++;
		}
		/* other/c was synced, but its directory's own entry was not */
		if (!env_exists(env, "other")) {
			cr_assert_eq(env_exists(env, "other/c"), 0);
			dir_lost++;
		} else {
			cr_assert_eq(env_exists(env, "other/c"), 1);
		}
		env_sim_free(env);
	}
	cr_assert_gt(vanished, 0);
	cr_assert_gt(survived, 0);
	cr_assert_gt(dir_lost, 0);
	cr_assert_gt(a_back, 0);
}

Test(sim, armed_eio_and_enospc_fail_nth_write_point_with_no_effect)
{
	struct cairn_env *env = sim_new(5);
	struct env_file *f, *g;
	uint64_t size;

	cr_assert_eq(env_open_write(env, "f", &f), 0);
	uint64_t p0 = env_sim_write_points(env);
	env_sim_arm(env, 3, SIM_FAULT_EIO);
	cr_assert_eq(env_append(f, "a", 1), 0);
	cr_assert_eq(env_append(f, "b", 1), 0);
	cr_assert_eq(env_append(f, "c", 1), CAIRN_EIO);
	cr_assert(strstr(msg_of(env), "'f'"), "%s", msg_of(env));
	cr_assert_eq(env_append(f, "d", 1), 0, "a fault fires once");
	cr_assert_eq(env_sim_write_points(env), p0 + 4);

	env_sim_arm(env, 1, SIM_FAULT_ENOSPC);
	cr_assert_eq(env_append(f, "e", 1), CAIRN_ENOSPC);
	env_sim_arm(env, 2, SIM_FAULT_ENOSPC);
	cr_assert_eq(env_sync(f), 0);
	cr_assert_eq(env_rename(env, "f", "g"), CAIRN_ENOSPC);
	cr_assert_eq(env_exists(env, "f"), 1, "failed rename changed nothing");
	cr_assert_eq(env_exists(env, "g"), 0);
	cr_assert_eq(env_size(f, &size), 0);
	cr_assert_eq(size, 3);
	char *s = get_file(env, "f");
	cr_assert_str_eq(s, "abd");
	free(s);

	env_sim_fail_all(env, SIM_FAULT_EIO);
	cr_assert_eq(env_mkdir(env, "d"), CAIRN_EIO);
	cr_assert_eq(env_unlink(env, "f"), CAIRN_EIO);
	cr_assert_eq(env_sync_dir(env, "/"), CAIRN_EIO);
	cr_assert_eq(env_truncate(f, 0), CAIRN_EIO);
	cr_assert_eq(env_link(env, "f", "h"), CAIRN_EIO);
	cr_assert_eq(env_open_write(env, "h", &g), CAIRN_EIO);
	cr_assert_eq(env_exists(env, "h"), 0);
	env_sim_fail_all(env, SIM_FAULT_NONE);
	cr_assert_eq(env_mkdir(env, "d"), 0);
	cr_assert(!env_sim_crashed(env));
	env_close(f);
	env_sim_free(env);
}

Test(sim, armed_crash_loses_power_before_the_nth_write_point)
{
	struct cairn_env *env = sim_new(9);
	struct env_file *f, *g;
	struct env_lock *lk, *lk2;

	cr_assert_eq(env_lock(env, "LOCK", &lk), 0);
	cr_assert_eq(env_open_write(env, "f", &f), 0);
	cr_assert_eq(env_append(f, "12", 2), 0);
	cr_assert_eq(env_sync(f), 0);
	cr_assert_eq(env_sync_dir(env, "/"), 0);
	env_sim_arm(env, 2, SIM_FAULT_CRASH);
	cr_assert_eq(env_append(f, "34", 2), 0);
	cr_assert_eq(env_sync(f), CAIRN_EIO, "power lost before the sync");
	cr_assert(env_sim_crashed(env));
	cr_assert_eq(env_exists(env, "f"), CAIRN_EIO, "everything fails until reboot");
	cr_assert_eq(env_open_read(env, "f", &g), CAIRN_EIO);
	cr_assert_eq(env_lock(env, "LOCK", &lk2), CAIRN_EIO);
	env_sim_reboot(env);
	cr_assert_eq(env_append(f, "5", 1), CAIRN_EIO, "old handles stay dead");
	env_close(f);
	char *s = get_file(env, "f");
	cr_assert(!strcmp(s, "12") || !strcmp(s, "123") || !strcmp(s, "1234"), "got '%s'", s);
	free(s);
	cr_assert_eq(env_lock(env, "LOCK", &lk2), 0, "the crash released the lock");
	cr_assert_eq(env_unlock(env, lk), 0, "a stale lock is only freed");
	cr_assert_eq(env_lock(env, "/LOCK", &lk), CAIRN_EBUSY);
	cr_assert(strstr(msg_of(env), "locked by this process"), "%s", msg_of(env));
	cr_assert_eq(env_unlock(env, lk2), 0);
	cr_assert_eq(env_lock(env, "LOCK", &lk), 0);
	env_unlock(env, lk);
	env_sim_free(env);
}

/* A little workload whose outcome after a crash depends only on the seed. */
static void run_workload(uint64_t seed, struct buf *out)
{
	struct cairn_env *env = sim_new(seed);
	struct env_file *f[4];
	char name[32];
	struct names nm = {{0}, 0};

	cr_assert_eq(env_mkdir(env, "db"), 0);
	for (int i = 0; i < 4; i++) {
		snprintf(name, sizeof(name), "db/%06d.log", i);
		cr_assert_eq(env_open_write(env, name, &f[i]), 0);
	}
	for (int r = 0; r < 50; r++) {
		for (int i = 0; i < 4; i++) {
			snprintf(name, sizeof(name), "rec-%d-%d;", r, i);
			cr_assert_eq(env_append(f[i], name, strlen(name)), 0);
			if ((r + i) % 7 == 0)
				cr_assert_eq(env_sync(f[i]), 0);
		}
		if (r == 20)
			cr_assert_eq(env_sync_dir(env, "db"), 0);
	}
	cr_assert_eq(env_rename(env, "db/000001.log", "db/000009.log"), 0);
	env_sim_crash(env);
	env_sim_reboot(env);
	for (int i = 0; i < 4; i++)
		env_close(f[i]);
	if (env_list_dir(env, "db", collect_name, &nm) == 0)
		buf_append(out, nm.all, strlen(nm.all));
	for (int i = 0; i < 10; i++) {
		char *data;
		size_t len;
		snprintf(name, sizeof(name), "db/%06d.log", i);
		if (env_sim_read_file(env, name, &data, &len) == 0) {
			buf_append(out, name, strlen(name));
			buf_append(out, data, len);
			free(data);
		}
	}
	int64_t t = env_now_ns(env);
	buf_append(out, &t, sizeof(t));
	env_sim_free(env);
}

Test(sim, same_seed_same_bytes_different_seeds_differ)
{
	struct buf a = {0}, b = {0}, first = {0};
	int differ = 0;

	for (uint64_t seed = 1; seed <= 20; seed++) {
		buf_clear(&a);
		buf_clear(&b);
		run_workload(seed, &a);
		run_workload(seed, &b);
		cr_assert(slice_eq(buf_slice(&a), buf_slice(&b)), "seed %llu not deterministic",
		          (unsigned long long)seed);
	}
	run_workload(1, &first);
	for (uint64_t seed = 2; seed <= 20 && !differ; seed++) {
		buf_clear(&a);
		run_workload(seed, &a);
		differ = !slice_eq(buf_slice(&a), buf_slice(&first));
	}
	cr_assert(differ, "20 seeds gave one outcome");
	buf_free(&a);
	buf_free(&b);
	buf_free(&first);
}

Test(sim, clock_is_virtual_and_deterministic)
{
	struct cairn_env *env = sim_new(1);
	int64_t start = 1700000000000000000ll;

	cr_assert_eq(env_now_ns(env), start);
	cr_assert_eq(env_now_ns(env), start + 1000);
	uint64_t m = env_mono_ns(env);
	cr_assert_eq(env_mono_ns(env), m + 1000);
	env_sleep_us(env, 5000000); /* five virtual seconds, instantly */
	cr_assert_eq(env_now_ns(env), start + 4000 + 5000000000ll);
	crash_reboot(env);
	cr_assert_gt(env_now_ns(env), start + 5000000000ll, "power loss does not stop time");
	env_sim_free(env);
}

Test(sim, write_file_is_durable_and_creates_directories)
{
	struct cairn_env *env = sim_new(2);
	char *data;
	size_t len;

	cr_assert_eq(env_sim_write_file(env, "db/sub/x", "corrupt", 7), 0);
	crash_reboot(env);
	cr_assert_eq(env_sim_read_file(env, "db/sub/x", &data, &len), 0);
	cr_assert_eq(len, 7);
	cr_assert_eq(memcmp(data, "corrupt", 7), 0);
	free(data);
	cr_assert_eq(env_sim_write_file(env, "db/sub/x", "", 0), 0);
	cr_assert_eq(env_sim_read_file(env, "db/sub/x", &data, &len), 0);
	cr_assert_eq(len, 0);
	free(data);
	cr_assert_eq(env_sim_read_file(env, "db/none", &data, &len), CAIRN_ENOENT);
	cr_assert_eq(env_sim_write_file(env, "db", "x", 1), CAIRN_EIO, "a directory");
	env_sim_free(env);
}

Test(sim, directory_rename_moves_its_entries)
{
	struct cairn_env *env = sim_new(4);

	cr_assert_eq(env_mkdir(env, "ck.tmp"), 0);
	put_file(env, "ck.tmp/m", "M", 1);
	cr_assert_eq(env_rename(env, "ck.tmp", "ck.tmp/in"), CAIRN_EINVAL);
	cr_assert_eq(env_rename(env, "ck.tmp", "ck"), 0);
	char *s = get_file(env, "ck/m");
	cr_assert_str_eq(s, "M");
	free(s);
	cr_assert_eq(env_unlink(env, "ck"), CAIRN_EIO, "unlink of a directory");
	env_sim_free(env);
}

struct worker {
	struct cairn_env *env;
	int id;
};

static void *sim_worker(void *arg)
{
	struct worker *w = arg;
	char name[16];
	struct env_file *f;

	snprintf(name, sizeof(name), "t%d", w->id);
	if (env_open_write(w->env, name, &f))
		return (void *)1;
	for (int i = 0; i < 1000; i++) {
		if (env_append(f, "x", 1) || (i % 100 == 0 && env_sync(f)))
			return (void *)1;
		env_now_ns(w->env);
	}
	env_close(f);
	return NULL;
}

Test(sim, safe_to_share_between_threads)
{
	struct cairn_env *env = sim_new(8);
	pthread_t t[4];
	struct worker w[4];
	uint64_t size;

	for (int i = 0; i < 4; i++) {
		w[i] = (struct worker){env, i};
		cr_assert_eq(pthread_create(&t[i], NULL, sim_worker, &w[i]), 0);
	}
	for (int i = 0; i < 4; i++) {
		void *r;
		pthread_join(t[i], &r);
		cr_assert_null(r);
	}
	cr_assert_eq(env_file_size(env, "t3", &size), 0);
	cr_assert_eq(size, 1000);
	cr_assert_eq(env_now_ns(env), 1700000000000000000ll + 4000 * 1000);
	env_sim_free(env);
}

/* ---- simulated: threads and the new faults ---- */

struct sched_ctx {
	struct cairn_env *env;
	struct env_mutex mu;
	struct env_cond cv;
	char log[256];
	int n, ready;
	int64_t woke_at;
};

struct sched_arg {
	struct sched_ctx *c;
	char id;
};

static void *sched_worker(void *arg)
{
	struct sched_arg *a = arg;
	struct sched_ctx *c = a->c;

	for (int i = 0; i < 20; i++) {
		env_mutex_lock(&c->mu);
		c->log[c->n++] = a->id;
		env_mutex_unlock(&c->mu);
		(void)env_now_ns(c->env); /* a point where another thread may run */
	}
	return NULL;
}

/* Three threads logging their ids: the order is the seed's alone. */
static void sched_run(uint64_t seed, char *out)
{
	struct sched_ctx c = {0};
	struct sched_arg a[3];
	struct env_thread *t[3];

	c.env = sim_new(seed);
	env_mutex_init(c.env, &c.mu);
	for (int i = 0; i < 3; i++) {
		a[i].c = &c;
		a[i].id = (char)('a' + i);
		cr_assert_eq(env_thread_start(c.env, sched_worker, &a[i], &t[i]), 0);
	}
	for (int i = 0; i < 3; i++)
		env_thread_join(c.env, t[i]);
	c.log[c.n] = 0;
	strcpy(out, c.log);
	env_mutex_destroy(&c.mu);
	env_sim_free(c.env);
}

Test(sim, threads_run_one_at_a_time_in_the_order_of_the_seed)
{
	char x[256], y[256], z[256];

	sched_run(5, x);
	sched_run(5, y);
	cr_assert_str_eq(x, y, "a seed replays its interleaving");
	cr_assert_eq(strlen(x), 60);
	cr_assert(strstr(x, "aaaaaaaaaaaaaaaaaaaa") == NULL, "threads interleave: %s", x);
	int differ = 0;
	for (uint64_t seed = 6; seed < 10 && !differ; seed++) {
		sched_run(seed, z);
		differ = strcmp(x, z) != 0;
	}
	cr_assert(differ, "other seeds, other interleavings");
}

static void *sched_waiter(void *arg)
{
	struct sched_ctx *c = arg;

	env_mutex_lock(&c->mu);
	while (!c->ready)
		env_cond_wait(&c->cv, &c->mu);
	c->woke_at = env_now_ns(c->env);
	env_mutex_unlock(&c->mu);
	return NULL;
}

Test(sim, waits_sleeps_and_timeouts_follow_the_virtual_clock)
{
	struct sched_ctx c = {0};
	struct env_thread *t;

	c.env = sim_new(3);
	env_mutex_init(c.env, &c.mu);
	env_cond_init(c.env, &c.cv);
	cr_assert_eq(env_thread_start(c.env, sched_waiter, &c, &t), 0);
	int64_t t0 = env_now_ns(c.env);
	env_sleep_us(c.env, 5000000); /* the waiter runs, then the clock jumps */
	int64_t t1 = env_now_ns(c.env);
	cr_assert_geq(t1 - t0, 5000000000ll);
	cr_assert_lt(t1 - t0, 5100000000ll, "no real sleep, no drift");
	env_mutex_lock(&c.mu);
	cr_assert_eq(c.woke_at, 0, "the waiter waits for its signal");
	/* a timed wait with nobody to signal returns once its time passed */
	env_cond_timedwait(&c.cv, &c.mu, 1000000);
	cr_assert_geq(env_now_ns(c.env) - t1, 1000000000ll);
	c.ready = 1;
	env_cond_broadcast(&c.cv);
	env_mutex_unlock(&c.mu);
	env_thread_join(c.env, t);
	cr_assert_gt(c.woke_at, t1);
	env_cond_destroy(&c.cv);
	env_mutex_destroy(&c.mu);
	env_sim_free(c.env);
}

Test(sim, partial_faults_write_a_prefix_then_fail)
{
	char data[1000];
	int shorter = 0;

	memset(data, 'x', sizeof(data));
	for (uint64_t seed = 1; seed <= 8; seed++) {
		struct cairn_env *env = sim_new(seed);
		struct env_file *f;
		uint64_t size;

		cr_assert_eq(env_open_write(env, "f", &f), 0);
		env_sim_arm(env, 1, seed & 1 ? SIM_FAULT_EIO_PARTIAL : SIM_FAULT_ENOSPC_PARTIAL);
		cr_assert_eq(env_append(f, data, sizeof(data)),
		             seed & 1 ? CAIRN_EIO : CAIRN_ENOSPC);
		cr_assert_eq(env_size(f, &size), 0);
		cr_assert_lt(size, sizeof(data), "never the whole write");
		shorter += size > 0;
		env_close(f);
		env_sim_free(env);
	}
	cr_assert_gt(shorter, 0, "some prefixes are not empty");
}

Test(sim, failed_fsync_loses_the_dirty_pages_for_good)
{
	struct cairn_env *env = sim_new(4);
	struct env_file *f;

	cr_assert_eq(env_open_write(env, "f", &f), 0);
	cr_assert_eq(env_append(f, "synced|", 7), 0);
	cr_assert_eq(env_sync(f), 0);
	cr_assert_eq(env_sync_dir(env, "/"), 0);
	cr_assert_eq(env_append(f, "lost", 4), 0);
	env_sim_arm(env, 1, SIM_FAULT_SYNC_LOST);
	cr_assert_eq(env_append(f, "!", 1), 0, "only a sync can lose pages");
	cr_assert_eq(env_sync(f), CAIRN_EIO);
	char *s = get_file(env, "f");
	cr_assert_str_eq(s, "synced|lost!", "the page cache still shows them");
	free(s);
	cr_assert_eq(env_append(f, "+", 1), 0);
	cr_assert_eq(env_sync(f), 0, "the next sync succeeds");
	env_close(f);
	crash_reboot(env);
	char *d;
	size_t len;
	cr_assert_eq(env_sim_read_file(env, "f", &d, &len), 0);
	cr_assert_eq(len, 13);
	cr_assert(!memcmp(d, "synced|\0\0\0\0\0+", 13), "the lost bytes come back as zeros");
	free(d);
	env_sim_free(env);
}

Test(sim, read_faults_fail_or_flip_one_bit_of_the_nth_read)
{
	struct cairn_env *env = sim_new(2);
	struct env_file *f;
	char buf[16];
	size_t got;

	put_file(env, "f", "0123456789", 1);
	cr_assert_eq(env_open_read(env, "f", &f), 0);
	uint64_t r0 = env_sim_read_points(env);
	env_sim_arm_read(env, 2, SIM_FAULT_READ_EIO);
	cr_assert_eq(env_pread(f, 0, buf, 10, &got), 0);
	cr_assert_eq(env_pread(f, 0, buf, 10, &got), CAIRN_EIO);
	cr_assert(strstr(msg_of(env), "'f'"), "%s", msg_of(env));
	cr_assert_eq(env_pread(f, 0, buf, 10, &got), 0, "a read fault fires once");
	cr_assert_eq(env_sim_read_points(env), r0 + 3);
	env_sim_arm_read(env, 1, SIM_FAULT_READ_FLIP);
	cr_assert_eq(env_pread(f, 0, buf, 10, &got), 0);
	cr_assert_eq(got, 10);
	int bits = 0;
	for (int i = 0; i < 10; i++)
		bits += __builtin_popcount((unsigned char)(buf[i] ^ ("0123456789"[i])));
	cr_assert_eq(bits, 1, "exactly one bit flipped");
	cr_assert_eq(env_pread(f, 0, buf, 10, &got), 0);
	cr_assert(!memcmp(buf, "0123456789", 10), "the file itself is intact");
	env_close(f);
	env_sim_free(env);
}

Test(sim, power_loss_may_leave_holes_in_unsynced_data_of_chosen_files)
{
	static char data[5 * 4096];
	int holes = 0, in_other = 0;

	memset(data, 'y', sizeof(data));
	for (uint64_t seed = 1; seed <= 40; seed++) {
		struct cairn_env *env = sim_new(seed);
		struct env_file *f, *g;
		char *d;
		size_t len;

		env_sim_set_holes(env, ".blob");
		cr_assert_eq(env_open_write(env, "a.blob", &f), 0);
		cr_assert_eq(env_open_write(env, "a.log", &g), 0);
		cr_assert_eq(env_append(f, data, 100), 0);
		cr_assert_eq(env_sync(f), 0);
		cr_assert_eq(env_sync_dir(env, "/"), 0);
		cr_assert_eq(env_append(f, data, sizeof(data)), 0);
		cr_assert_eq(env_append(g, data, sizeof(data)), 0);
		env_close(f);
		env_close(g);
		crash_reboot(env);
		cr_assert_eq(env_sim_read_file(env, "a.blob", &d, &len), 0);
		cr_assert_geq(len, 100, "synced data stays");
		for (size_t i = 0; i < 100; i++)
			cr_assert_eq(d[i], 'y', "never a hole in synced data");
		holes += len > 100 && memchr(d + 100, 0, len - 100) != NULL;
		free(d);
		if (env_sim_read_file(env, "a.log", &d, &len) == 0) {
			in_other += len && memchr(d, 0, len) != NULL;
			free(d);
		}
		env_sim_free(env);
	}
	cr_assert_gt(holes, 0, "some crashes punch holes");
	cr_assert_eq(in_other, 0, "only in files named so");
}
