/*
 * test_db.c - the public API end to end on real files: open and create
 * rules, put/get/delete, batches, limits, snapshots, iterators, key info and
 * range reads, flush and compaction, checkpoints, read-only handles, the
 * LOCK, and group commit under concurrent writers.
 */
#include <pthread.h>
#include <sys/stat.h>

#include "testutil.h"

static struct cairn_db *open_default(const char *dir)
{
	struct cairn_options o;
	cairn_options_init(&o);
	o.sync_interval_ms = 0;
	return tu_open(dir, &o);
}

static void expect_value(struct cairn_db *db, const char *key, const char *want)
{
	void *v;
	size_t n;
	int r = cairn_get(db, NULL, key, strlen(key), &v, &n);
	cr_assert_eq(r, 0, "get %s: %s", key, cairn_strerror(r));
	cr_assert(n == strlen(want) && memcmp(v, want, n) == 0, "get %s: got %.*s want %s", key,
	          (int)n, (char *)v, want);
	cairn_free(v);
}

static void expect_missing(struct cairn_db *db, const char *key)
{
	void *v = (void *)1;
	size_t n;
	cr_assert_eq(cairn_get(db, NULL, key, strlen(key), &v, &n), CAIRN_ENOTFOUND, "%s", key);
	cr_assert_null(v);
}

Test(db, open_creates_private_directory_and_reopens_data)
{
	char *base = tu_tmpdir("db");
	char dir[300];
	snprintf(dir, sizeof(dir), "%s/new", base);
	struct cairn_db *db = open_default(dir);
	struct stat st;
	cr_assert_eq(stat(dir, &st), 0);
	cr_assert_eq(st.st_mode & 0777, 0700);
	cr_assert_eq(cairn_put(db, "a", 1, "1", 1, 0), 0);
	cr_assert_eq(cairn_put(db, "b", 1, "2", 1, CAIRN_SYNC), 0);
	cr_assert_eq(cairn_close(db), 0);
	db = open_default(dir);
	expect_value(db, "a", "1");
	expect_value(db, "b", "2");
	cairn_close(db);
	tu_rmrf(base);
}

Test(db, create_if_missing_rules)
{
	char *base = tu_tmpdir("db");
	char dir[300], err[256];
	snprintf(dir, sizeof(dir), "%s/x", base);
	struct cairn_options o;
	struct cairn_db *db = NULL;
	cairn_options_init(&o);
	o.create_if_missing = 0;
	cr_assert_eq(cairn_open(dir, &o, &db, err, sizeof(err)), CAIRN_ENOENT);
	cr_assert_null(db);
	cr_assert(strstr(err, "does not exist"), "%s", err);
	o.create_if_missing = 2;
	cr_assert_eq(cairn_open(dir, &o, &db, err, sizeof(err)), 0, "%s", err);
	cairn_close(db);
	cr_assert_eq(cairn_open(dir, &o, &db, err, sizeof(err)), CAIRN_EEXIST);
	cr_assert(strstr(err, "already exists"), "%s", err);
	tu_rmrf(base);
}

Test(db, bad_options_are_refused_with_a_message)
{
	char *dir = tu_tmpdir("db");
	struct cairn_options o;
	struct cairn_db *db = NULL;
	char err[256];
	cairn_options_init(&o);
	o.memtable_size = 10;
	cr_assert_eq(cairn_open(dir, &o, &db, err, sizeof(err)), CAIRN_EINVAL);
	cr_assert(strstr(err, "memtable_size"), "%s", err);
	cairn_options_init(&o);
	o.l0_stop_trigger = 1;
	cr_assert_eq(cairn_open(dir, &o, &db, err, sizeof(err)), CAIRN_EINVAL);
	cr_assert(strstr(err, "l0_stop_trigger"), "%s", err);
	tu_rmrf(dir);
}

Test(db, second_open_is_refused_naming_the_holder)
{
	char *dir = tu_tmpdir("db");
	struct cairn_db *db = open_default(dir), *db2 = NULL;
	char err[256], pid[32];
	cr_assert_eq(cairn_open(dir, NULL, &db2, err, sizeof(err)), CAIRN_EBUSY);
	snprintf(pid, sizeof(pid), "%d", (int)getpid());
	cr_assert(strstr(err, pid), "message should name pid %s: %s", pid, err);
	cairn_close(db);
	cr_assert_eq(cairn_open(dir, NULL, &db2, err, sizeof(err)), 0, "%s", err);
	cairn_close(db2);
	tu_rmrf(dir);
}

Test(db, put_get_delete_binary_and_empty)
{
	char *dir = tu_tmpdir("db");
	struct cairn_db *db = open_default(dir);
	const char bkey[] = {0, 1, 2, (char)0xff};
	const char bval[] = {(char)0xff, 0, 0, 7};
	cr_assert_eq(cairn_put(db, bkey, sizeof(bkey), bval, sizeof(bval), 0), 0);
	cr_assert_eq(cairn_put(db, "empty", 5, "", 0, 0), 0);
	cr_assert_eq(cairn_put(db, "", 0, "emptykey", 8, 0), 0);
	void *v;
	size_t n;
	cr_assert_eq(cairn_get(db, NULL, bkey, sizeof(bkey), &v, &n), 0);
	cr_assert(n == 4 && memcmp(v, bval, 4) == 0);
	cairn_free(v);
	cr_assert_eq(cairn_get(db, NULL, "empty", 5, &v, &n), 0);
	cr_assert_eq(n, 0);
	cr_assert_not_null(v);
	cairn_free(v);
	expect_value(db, "", "emptykey");
	cr_assert_eq(cairn_delete(db, "empty", 5, 0), 0);
	expect_missing(db, "empty");
	cr_assert_eq(cairn_delete(db, "never", 5, 0), 0);
	cr_assert_eq(cairn_flush(db), 0);
	cr_assert_eq(cairn_get(db, NULL, bkey, sizeof(bkey), &v, &n), 0);
	cairn_free(v);
	expect_missing(db, "empty");
	cairn_close(db);
	tu_rmrf(dir);
}

Test(db, limits_give_etoobig_with_a_message)
{
	char *dir = tu_tmpdir("db");
	struct cairn_db *db = open_default(dir);
	char *big = calloc(1, CAIRN_MAX_KEY_SIZE + 1);
	char msg[256];
	cr_assert_eq(cairn_put(db, big, CAIRN_MAX_KEY_SIZE + 1, "v", 1, 0), CAIRN_ETOOBIG);
	cr_assert_eq(cairn_errmsg(db, msg, sizeof(msg)), CAIRN_ETOOBIG);
	cr_assert(strstr(msg, "limit"), "%s", msg);
	cr_assert_eq(cairn_put(db, big, CAIRN_MAX_KEY_SIZE, "v", 1, 0), 0);
	void *v;
	size_t n;
	cr_assert_eq(cairn_get(db, NULL, big, CAIRN_MAX_KEY_SIZE + 1, &v, &n), CAIRN_ETOOBIG);
	free(big);
	cairn_close(db);
	tu_rmrf(dir);
}

Test(db, batch_applies_all_or_nothing_in_order)
{
	char *dir = tu_tmpdir("db");
	struct cairn_db *db = open_default(dir);
	struct cairn_batch *b;
	cr_assert_eq(cairn_batch_new(&b), 0);
	cairn_batch_put(b, "x", 1, "1", 1);
	cairn_batch_put(b, "y", 1, "2", 1);
	cairn_batch_delete(b, "x", 1);
	cairn_batch_put(b, "z", 1, "3", 1);
	cr_assert_eq(cairn_batch_count(b), 4);
	const struct cairn_snapshot *before;
	cr_assert_eq(cairn_snapshot_new(db, &before), 0);
	cr_assert_eq(cairn_write(db, b, CAIRN_SYNC), 0);
	expect_missing(db, "x");
	expect_value(db, "y", "2");
	expect_value(db, "z", "3");
	void *v;
	size_t n;
	cr_assert_eq(cairn_get(db, before, "y", 1, &v, &n), CAIRN_ENOTFOUND);
	cairn_snapshot_release(db, before);
	cairn_batch_free(b);
	cairn_close(db);
	tu_rmrf(dir);
}

Test(db, snapshot_reads_survive_overwrite_flush_and_compaction)
{
	char *dir = tu_tmpdir("db");
	struct cairn_options o;
	tu_small_options(&o, NULL);
	struct cairn_db *db = tu_open(dir, &o);
	char key[32], val[64];
	for (int i = 0; i < 2000; i++) {
		snprintf(key, sizeof(key), "k%05d", i);
		snprintf(val, sizeof(val), "old-%d", i);
		cr_assert_eq(cairn_put(db, key, strlen(key), val, strlen(val), 0), 0);
	}
	const struct cairn_snapshot *snap;
	cairn_snapshot_new(db, &snap);
	for (int i = 0; i < 2000; i++) {
		snprintf(key, sizeof(key), "k%05d", i);
		if (i % 3 == 0)
			cr_assert_eq(cairn_delete(db, key, strlen(key), 0), 0);
		else
			cr_assert_eq(cairn_put(db, key, strlen(key), "new", 3, 0), 0);
	}
	cr_assert_eq(cairn_compact_range(db, NULL, 0, NULL, 0), 0);
	for (int i = 0; i < 2000; i += 7) {
		void *v;
		size_t n;
		snprintf(key, sizeof(key), "k%05d", i);
		snprintf(val, sizeof(val), "old-%d", i);
		cr_assert_eq(cairn_get(db, snap, key, strlen(key), &v, &n), 0, "%s", key);
		cr_assert(n == strlen(val) && memcmp(v, val, n) == 0);
		cairn_free(v);
		if (i % 3 == 0)
			expect_missing(db, key);
		else
			expect_value(db, key, "new");
	}
	cairn_snapshot_release(db, snap);
	struct cairn_stats st;
	cr_assert_eq(cairn_stats_get(db, &st), 0);
	cr_assert_gt(st.flushes, 0);
	cr_assert_gt(st.compactions, 0);
	cr_assert_gt(cairn_stats_write_amp(&st), 0.5);
	cairn_close(db);
	tu_rmrf(dir);
}

Test(db, iterator_seeks_both_ways)
{
	char *dir = tu_tmpdir("db");
	struct cairn_db *db = open_default(dir);
	const char *keys[] = {"b", "d", "f"};
	for (int i = 0; i < 3; i++)
		cairn_put(db, keys[i], 1, keys[i], 1, 0);
	struct cairn_iter *it;
	size_t n;
	cr_assert_eq(cairn_iter_new(db, NULL, &it), 0);
	cairn_iter_seek(it, "c", 1);
	cr_assert(cairn_iter_valid(it));
	cr_assert_eq(*(const char *)cairn_iter_key(it, &n), 'd');
	cairn_iter_prev(it);
	cr_assert_eq(*(const char *)cairn_iter_key(it, &n), 'b');
	cairn_iter_seek_for_prev(it, "e", 1);
	cr_assert_eq(*(const char *)cairn_iter_key(it, &n), 'd');
	cairn_iter_next(it);
	cr_assert_eq(*(const char *)cairn_iter_key(it, &n), 'f');
	cairn_iter_next(it);
	cr_assert_not(cairn_iter_valid(it));
	cr_assert_eq(cairn_iter_status(it), 0);
	cairn_iter_seek(it, "g", 1);
	cr_assert_not(cairn_iter_valid(it));
	cairn_iter_seek_for_prev(it, "a", 1);
	cr_assert_not(cairn_iter_valid(it));
	/* an iterator sees the state of its creation */
	cairn_put(db, "c", 1, "c", 1, 0);
	cairn_iter_seek_first(it);
	cairn_iter_next(it);
	cr_assert_eq(*(const char *)cairn_iter_key(it, &n), 'd');
	cairn_iter_free(it);
	cairn_close(db);
	tu_rmrf(dir);
}

Test(db, key_info_and_range_reads)
{
	char *dir = tu_tmpdir("db");
	struct cairn_db *db = open_default(dir);
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	int64_t before = (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
	cr_assert_eq(cairn_put(db, "k", 1, "0123456789", 10, 0), 0);
	struct cairn_key_info info;
	cr_assert_eq(cairn_key_info(db, NULL, "k", 1, &info), 0);
	cr_assert_eq(info.size, 10);
	cr_assert_geq(info.mtime_ns, before);
	cr_assert_gt(info.seq, 0);
	char buf[8];
	size_t got;
	cr_assert_eq(cairn_get_range(db, NULL, "k", 1, 8, buf, sizeof(buf), &got), 0);
	cr_assert_eq(got, 2);
	cr_assert(memcmp(buf, "89", 2) == 0);
	cr_assert_eq(cairn_get_range(db, NULL, "k", 1, 10, buf, sizeof(buf), &got), 0);
	cr_assert_eq(got, 0);
	cr_assert_eq(cairn_get_range(db, NULL, "k", 1, 2, buf, 3, &got), 0);
	cr_assert(got == 3 && memcmp(buf, "234", 3) == 0);
	cr_assert_eq(cairn_flush(db), 0);
	struct cairn_key_info again;
	cr_assert_eq(cairn_key_info(db, NULL, "k", 1, &again), 0);
	cr_assert_eq(again.mtime_ns, info.mtime_ns);
	cairn_close(db);
	tu_rmrf(dir);
}

Test(db, checkpoint_opens_to_the_state_it_was_taken_at)
{
	char *base = tu_tmpdir("db");
	char dir[300], cp[300];
	snprintf(dir, sizeof(dir), "%s/db", base);
	snprintf(cp, sizeof(cp), "%s/cp", base);
	struct cairn_db *db = open_default(dir);
	cairn_put(db, "a", 1, "1", 1, 0);
	cairn_flush(db);
	cairn_put(db, "b", 1, "2", 1, 0);
	cr_assert_eq(cairn_checkpoint(db, cp), 0);
	cairn_put(db, "c", 1, "3", 1, 0);
	cr_assert_eq(cairn_checkpoint(db, cp), CAIRN_EEXIST);
	cairn_close(db);
	db = open_default(cp);
	expect_value(db, "a", "1");
	expect_value(db, "b", "2");
	expect_missing(db, "c");
	cairn_close(db);
	tu_rmrf(base);
}

Test(db, read_only_handle_reads_and_refuses_writes)
{
	char *dir = tu_tmpdir("db");
	struct cairn_db *db = open_default(dir);
	cairn_put(db, "a", 1, "1", 1, 0);
	cairn_close(db);
	struct cairn_options o;
	cairn_options_init(&o);
	o.read_only = 1;
	db = tu_open(dir, &o);
	expect_value(db, "a", "1");
	cr_assert_eq(cairn_put(db, "b", 1, "2", 1, 0), CAIRN_EREADONLY);
	cairn_close(db);
	tu_rmrf(dir);
}

struct writer_arg {
	struct cairn_db *db;
	int id;
};

static void *writer_main(void *p)
{
	struct writer_arg *a = p;
	char key[32];
	for (int i = 0; i < 300; i++) {
		snprintf(key, sizeof(key), "w%d-%04d", a->id, i);
		int r = cairn_put(a->db, key, strlen(key), key, strlen(key), CAIRN_SYNC);
		if (r)
			return (void *)1;
	}
	return NULL;
}

Test(db, concurrent_synced_writers_share_log_syncs)
{
	char *dir = tu_tmpdir("db");
	struct cairn_db *db = open_default(dir);
	pthread_t t[8];
	struct writer_arg a[8];
	for (int i = 0; i < 8; i++) {
		a[i] = (struct writer_arg){db, i};
		pthread_create(&t[i], NULL, writer_main, &a[i]);
	}
	for (int i = 0; i < 8; i++) {
		void *ret;
		pthread_join(t[i], &ret);
		cr_assert_null(ret);
	}
	struct cairn_stats st;
	cairn_stats_get(db, &st);
	cr_assert_eq(st.puts, 2400);
	cr_assert_leq(st.wal_syncs, 2400);
	cairn_close(db);
	db = open_default(dir);
	expect_value(db, "w7-0299", "w7-0299");
	expect_value(db, "w0-0000", "w0-0000");
	cairn_close(db);
	tu_rmrf(dir);
}

Test(db, compact_range_merges_tables_that_never_overlapped)
{
	char *dir = tu_tmpdir("db");
	struct cairn_db *db = open_default(dir);
	char key[32];
	for (int i = 0; i < 30; i++) {
		snprintf(key, sizeof(key), "key%03d", i);
		cr_assert_eq(cairn_put(db, key, strlen(key), key, strlen(key), 0), 0);
		cr_assert_eq(cairn_flush(db), 0);
	}
	struct cairn_stats st;
	uint64_t before = 0, after = 0;
	cairn_stats_get(db, &st);
	for (int l = 0; l < st.num_levels; l++)
		before += st.levels[l].files;
	cr_assert_eq(before, 30);
	cr_assert_eq(cairn_compact_range(db, NULL, 0, NULL, 0), 0);
	cairn_stats_get(db, &st);
	for (int l = 0; l < st.num_levels; l++)
		after += st.levels[l].files;
	cr_assert_eq(after, 1, "30 tiny tables should merge into one, got %llu",
	             (unsigned long long)after);
	expect_value(db, "key017", "key017");
	cairn_close(db);
	tu_rmrf(dir);
}

static uint64_t level_files(struct cairn_db *db, int level)
{
	struct cairn_stats st;
	cairn_stats_get(db, &st);
	return st.levels[level].files;
}

/* Lookups that keep passing through a level-0 table in vain use up its seek
 * budget; the next compaction point (inline here, so it is exact) merges it
 * down although level 0 is far below its trigger. */
Test(db, reads_that_miss_a_table_get_it_compacted)
{
	char *dir = tu_tmpdir("db");
	struct cairn_options o;
	cairn_options_init(&o);
	o.sync_interval_ms = 0;
	o.background_threads = 0;
	struct cairn_db *db = tu_open(dir, &o);
	/* three tables over the same range: the later ones cannot go deep */
	for (int t = 0; t < 3; t++) {
		char v[8];
		snprintf(v, sizeof(v), "v%d", t);
		cr_assert_eq(cairn_put(db, "a", 1, v, strlen(v), 0), 0);
		cr_assert_eq(cairn_put(db, "z", 1, v, strlen(v), 0), 0);
		cr_assert_eq(cairn_flush(db), 0);
	}
	cr_assert_eq(level_files(db, 0), 1);
	struct cairn_stats st;
	cairn_stats_get(db, &st);
	uint64_t compactions = st.compactions;
	/* "m" is in no table: each miss searches all three, charging level 0 */
	for (int i = 0; i < 100; i++)
		expect_missing(db, "m");
	cr_assert_eq(level_files(db, 0), 1, "reads never compact inline");
	cr_assert_eq(cairn_put(db, "m", 1, "vm", 2, 0), 0);
	cr_assert_eq(cairn_flush(db), 0);
	cairn_stats_get(db, &st);
	cr_assert_gt(st.compactions, compactions);
	cr_assert_eq(level_files(db, 0), 0, "the worn table and the one over it moved down");
	expect_value(db, "a", "v2");
	expect_value(db, "z", "v2");
	expect_value(db, "m", "vm");
	cairn_close(db);
	tu_rmrf(dir);
}

Test(db, reopen_keeps_a_small_recovered_log_in_memory)
{
	char *dir = tu_tmpdir("db");
	for (int i = 0; i < 5; i++) {
		struct cairn_db *db = open_default(dir);
		char key[16];
		snprintf(key, sizeof(key), "k%d", i);
		cr_assert_eq(cairn_put(db, key, strlen(key), "v", 1, 0), 0);
		cairn_close(db);
	}
	struct cairn_db *db = open_default(dir);
	struct cairn_stats st;
	cairn_stats_get(db, &st);
	uint64_t tables = 0;
	for (int l = 0; l < st.num_levels; l++)
		tables += st.levels[l].files;
	cr_assert_eq(tables, 0, "small reopens should not leave tables");
	for (int i = 0; i < 5; i++) {
		char key[16];
		snprintf(key, sizeof(key), "k%d", i);
		expect_value(db, key, "v");
	}
	cairn_close(db);
	tu_rmrf(dir);
}

static int live_id(int i)
{
	return i % 3 != 0;
}

Test(db, iterator_bounds_limit_every_move)
{
	char *dir = tu_tmpdir("db");
	struct cairn_db *db = open_default(dir);
	char key[16];
	for (int i = 0; i < 100; i++) {
		snprintf(key, sizeof(key), "k%03d", i);
		cairn_put(db, key, 4, key, 4, 0);
	}
	for (int i = 0; i < 100; i += 3) {
		snprintf(key, sizeof(key), "k%03d", i);
		cairn_delete(db, key, 4, 0);
	}
	for (int round = 0; round < 2; round++) {
		struct cairn_iter *it;
		size_t n;
		cr_assert_eq(cairn_iter_new(db, NULL, &it), 0);
		cr_assert_eq(cairn_iter_set_bounds(it, "k020", 4, "k060", 4), 0);
		int want = 20;
		for (cairn_iter_seek_first(it); cairn_iter_valid(it); cairn_iter_next(it)) {
			while (!live_id(want))
				want++;
			snprintf(key, sizeof(key), "k%03d", want++);
			cr_assert(memcmp(cairn_iter_key(it, &n), key, 4) == 0, "forward: want %s",
			          key);
		}
		cr_assert_eq(want, 60, "forward scan ended at %d", want);
		want = 59;
		for (cairn_iter_seek_last(it); cairn_iter_valid(it); cairn_iter_prev(it)) {
			while (!live_id(want))
				want--;
			snprintf(key, sizeof(key), "k%03d", want--);
			cr_assert(memcmp(cairn_iter_key(it, &n), key, 4) == 0, "reverse: want %s",
			          key);
		}
		cr_assert_eq(want, 19, "reverse scan ended at %d", want);
		cairn_iter_seek(it, "k010", 4);
		cr_assert(cairn_iter_valid(it) && memcmp(cairn_iter_key(it, &n), "k020", 4) == 0);
		cairn_iter_seek(it, "k070", 4);
		cr_assert_not(cairn_iter_valid(it));
		cairn_iter_seek_for_prev(it, "k090", 4);
		cr_assert(cairn_iter_valid(it) && memcmp(cairn_iter_key(it, &n), "k059", 4) == 0);
		cairn_iter_seek_for_prev(it, "k010", 4);
		cr_assert_not(cairn_iter_valid(it));
		cairn_iter_seek_for_prev(it, "k030", 4);
		cr_assert(cairn_iter_valid(it) && memcmp(cairn_iter_key(it, &n), "k029", 4) == 0);
		cr_assert_eq(cairn_iter_set_bounds(it, NULL, 0, "k005", 4), 0);
		cairn_iter_seek_first(it);
		cr_assert(cairn_iter_valid(it) && memcmp(cairn_iter_key(it, &n), "k001", 4) == 0);
		cairn_iter_seek_last(it);
		cr_assert(cairn_iter_valid(it) && memcmp(cairn_iter_key(it, &n), "k004", 4) == 0);
		cr_assert_eq(cairn_iter_status(it), 0);
		cairn_iter_free(it);
		cr_assert_eq(cairn_compact_range(db, NULL, 0, NULL, 0), 0); /* again from tables */
	}
	cairn_close(db);
	tu_rmrf(dir);
}

/* ---- slow file work runs without the database lock ---- */

/* A POSIX env whose file syncs stall, once armed, on files whose name holds
 * gate_name, until the test opens the gate: the engine is then caught in
 * the middle of a manifest or log sync. Files are wrapped because their
 * operations go to the env that opened them. */
struct gate_env {
	struct cairn_env env;
	struct cairn_env *posix;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	const char *gate_name; /* NULL: not armed */
	int caught, open;
};

struct gate_file {
	struct env_file_base base;
	struct env_file *inner;
	char path[4096];
};

static struct gate_env *gate_of(struct cairn_env *e)
{
	return (struct gate_env *)e;
}

#define GF(f) ((struct gate_file *)(f))

static int gate_wrap(struct cairn_env *e, const char *path, int r, struct env_file *inner,
                     struct env_file **f)
{
	if (r)
		return r;
	struct gate_file *g = calloc(1, sizeof(*g));
	cr_assert_not_null(g);
	g->base.env = e;
	g->inner = inner;
	snprintf(g->path, sizeof(g->path), "%s", path);
	*f = (struct env_file *)g;
	return 0;
}

static int g_open_read(struct cairn_env *e, const char *p, struct env_file **f)
{
	struct env_file *in = NULL;
	int r = gate_of(e)->posix->ops->open_read(gate_of(e)->posix, p, &in);
	return gate_wrap(e, p, r, in, f);
}
static int g_open_write(struct cairn_env *e, const char *p, struct env_file **f)
{
	struct env_file *in = NULL;
	int r = gate_of(e)->posix->ops->open_write(gate_of(e)->posix, p, &in);
	return gate_wrap(e, p, r, in, f);
}
static int g_open_append(struct cairn_env *e, const char *p, struct env_file **f)
{
	struct env_file *in = NULL;
	int r = gate_of(e)->posix->ops->open_append(gate_of(e)->posix, p, &in);
	return gate_wrap(e, p, r, in, f);
}
static int g_close(struct env_file *f)
{
	int r = env_close(GF(f)->inner);
	free(f);
	return r;
}
static int g_append(struct env_file *f, const void *d, size_t n)
{
	return env_append(GF(f)->inner, d, n);
}
static int g_pread(struct env_file *f, uint64_t off, void *b, size_t n, size_t *got)
{
	return env_pread(GF(f)->inner, off, b, n, got);
}
static int g_sync(struct env_file *f)
{
	struct gate_env *g = gate_of(GF(f)->base.env);
	pthread_mutex_lock(&g->mu);
	if (g->gate_name && strstr(GF(f)->path, g->gate_name)) {
		g->caught = 1;
		pthread_cond_broadcast(&g->cv);
		while (!g->open)
			pthread_cond_wait(&g->cv, &g->mu);
	}
	pthread_mutex_unlock(&g->mu);
	return env_sync(GF(f)->inner);
}
static int g_size(struct env_file *f, uint64_t *size)
{
	struct env_file *in = GF(f)->inner;
	return env_of(in)->ops->size(in, size);
}
static int g_truncate(struct env_file *f, uint64_t size)
{
	return env_truncate(GF(f)->inner, size);
}

#define G_POSIX(e) (gate_of(e)->posix)
static int g_exists(struct cairn_env *e, const char *p)
{
	return G_POSIX(e)->ops->exists(G_POSIX(e), p);
}
static int g_file_size(struct cairn_env *e, const char *p, uint64_t *s)
{
	return G_POSIX(e)->ops->file_size(G_POSIX(e), p, s);
}
static int g_unlink(struct cairn_env *e, const char *p)
{
	return G_POSIX(e)->ops->unlink(G_POSIX(e), p);
}
static int g_rename(struct cairn_env *e, const char *a, const char *b)
{
	return G_POSIX(e)->ops->rename(G_POSIX(e), a, b);
}
static int g_link(struct cairn_env *e, const char *a, const char *b)
{
	return G_POSIX(e)->ops->link(G_POSIX(e), a, b);
}
static int g_mkdir(struct cairn_env *e, const char *p)
{
	return G_POSIX(e)->ops->mkdir(G_POSIX(e), p);
}
static int g_rmdir(struct cairn_env *e, const char *p)
{
	return G_POSIX(e)->ops->rmdir(G_POSIX(e), p);
}
static int g_list_dir(struct cairn_env *e, const char *d, int (*fn)(void *, const char *), void *c)
{
	return G_POSIX(e)->ops->list_dir(G_POSIX(e), d, fn, c);
}
static int g_sync_dir(struct cairn_env *e, const char *d)
{
	return G_POSIX(e)->ops->sync_dir(G_POSIX(e), d);
}
static int g_lock(struct cairn_env *e, const char *p, struct env_lock **lk)
{
	return G_POSIX(e)->ops->lock(G_POSIX(e), p, lk);
}
static int g_unlock(struct env_lock *lk)
{
	return env_posix()->ops->unlock(lk);
}
static int64_t g_now_ns(struct cairn_env *e)
{
	return G_POSIX(e)->ops->now_ns(G_POSIX(e));
}
static uint64_t g_mono_ns(struct cairn_env *e)
{
	return G_POSIX(e)->ops->mono_ns(G_POSIX(e));
}
static void g_sleep_us(struct cairn_env *e, uint64_t us)
{
	G_POSIX(e)->ops->sleep_us(G_POSIX(e), us);
}
static int g_thread_start(struct cairn_env *e, void *(*fn)(void *), void *arg,
                          struct env_thread **t)
{
	return G_POSIX(e)->ops->thread_start(G_POSIX(e), fn, arg, t);
}
static void g_thread_join(struct env_thread *t)
{
	env_posix()->ops->thread_join(t);
}
static void g_errmsg(struct cairn_env *e, char *buf, size_t len)
{
	G_POSIX(e)->ops->errmsg(G_POSIX(e), buf, len);
}
static void g_destroy(struct cairn_env *e)
{
	(void)e;
}

static const struct env_ops gate_ops = {
        .open_read = g_open_read,
        .open_write = g_open_write,
        .open_append = g_open_append,
        .close = g_close,
        .append = g_append,
        .pread = g_pread,
        .sync = g_sync,
        .size = g_size,
        .truncate = g_truncate,
        .exists = g_exists,
        .file_size = g_file_size,
        .unlink = g_unlink,
        .rename = g_rename,
        .link = g_link,
        .mkdir = g_mkdir,
        .rmdir = g_rmdir,
        .list_dir = g_list_dir,
        .sync_dir = g_sync_dir,
        .lock = g_lock,
        .unlock = g_unlock,
        .now_ns = g_now_ns,
        .mono_ns = g_mono_ns,
        .sleep_us = g_sleep_us,
        .thread_start = g_thread_start,
        .thread_join = g_thread_join,
        .errmsg = g_errmsg,
        .destroy = g_destroy,
};

static void *flush_main(void *p)
{
	return (void *)(intptr_t)cairn_flush(p);
}

struct probe {
	struct cairn_db *db;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int done;
};

/* What needs the database lock: a read and the stats. */
static void *probe_main(void *p)
{
	struct probe *pr = p;
	void *v;
	size_t n;
	struct cairn_stats st;
	int r = cairn_get(pr->db, NULL, "key00001", 8, &v, &n);
	if (r == 0)
		cairn_free(v);
	cairn_stats_get(pr->db, &st);
	pthread_mutex_lock(&pr->mu);
	pr->done = 1;
	pthread_cond_signal(&pr->cv);
	pthread_mutex_unlock(&pr->mu);
	return NULL;
}

/* Flushes with the syncs of files named *gate_name* held, and checks that a
 * read and the stats still get through meanwhile. */
static void check_sync_runs_unlocked(const char *gate_name)
{
	struct gate_env g = {.env = {.ops = &gate_ops}, .posix = env_posix()};
	pthread_mutex_init(&g.mu, NULL);
	pthread_cond_init(&g.cv, NULL);
	char *dir = tu_tmpdir("gate");
	struct cairn_options o;
	cairn_options_init(&o);
	o.env = &g.env;
	o.sync_interval_ms = 0;
	struct cairn_db *db = tu_open(dir, &o);
	char key[16];
	for (int i = 0; i < 100; i++) {
		snprintf(key, sizeof(key), "key%05d", i);
		cr_assert_eq(cairn_put(db, key, strlen(key), "v", 1, 0), 0);
	}
	/* the next sync of such a file is the flush's: the log's at the
	 * switch, then the manifest's when the table is recorded */
	pthread_mutex_lock(&g.mu);
	g.gate_name = gate_name;
	pthread_mutex_unlock(&g.mu);
	pthread_t flusher, prober;
	pthread_create(&flusher, NULL, flush_main, db);
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += 10;
	pthread_mutex_lock(&g.mu);
	while (!g.caught && pthread_cond_timedwait(&g.cv, &g.mu, &ts) == 0)
		;
	int caught = g.caught;
	pthread_mutex_unlock(&g.mu);

	struct probe pr = {.db = db};
	pthread_mutex_init(&pr.mu, NULL);
	pthread_cond_init(&pr.cv, NULL);
	int done = 0;
	if (caught) {
		pthread_create(&prober, NULL, probe_main, &pr);
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_sec += 5;
		pthread_mutex_lock(&pr.mu);
		while (!pr.done && pthread_cond_timedwait(&pr.cv, &pr.mu, &ts) == 0)
			;
		done = pr.done;
		pthread_mutex_unlock(&pr.mu);
	}
	/* open the gate whatever happened, so everything unwinds */
	pthread_mutex_lock(&g.mu);
	g.open = 1;
	pthread_cond_broadcast(&g.cv);
	pthread_mutex_unlock(&g.mu);
	void *fr;
	pthread_join(flusher, &fr);
	if (caught)
		pthread_join(prober, NULL);
	cr_assert(caught, "no sync of a '%s' file was seen during the flush", gate_name);
	cr_assert(done, "a read waited for the sync of a '%s' file", gate_name);
	cr_assert_eq((int)(intptr_t)fr, 0);
	expect_value(db, "key00099", "v");
	cr_assert_eq(cairn_close(db), 0);
	tu_rmrf(dir);
}

Test(db, manifest_sync_does_not_block_readers)
{
	check_sync_runs_unlocked("MANIFEST");
}

Test(db, log_sync_at_memtable_switch_does_not_block_readers)
{
	check_sync_runs_unlocked(".log");
}

Test(db, compaction_reads_bypass_the_block_cache)
{
	char *dir = tu_tmpdir("db");
	struct cairn_db *db = open_default(dir);
	char key[32], val[200];
	memset(val, 'v', sizeof(val));
	for (int t = 0; t < 6; t++) {
		for (int i = 0; i < 500; i++) {
			snprintf(key, sizeof(key), "key%05d", i * 6 + t);
			cr_assert_eq(cairn_put(db, key, strlen(key), val, sizeof(val), 0), 0);
		}
		cr_assert_eq(cairn_flush(db), 0);
	}
	cr_assert_eq(cairn_compact_range(db, NULL, 0, NULL, 0), 0);
	struct cairn_stats st;
	cairn_stats_get(db, &st);
	cr_assert_gt(st.compaction_bytes_read, 0);
	/* nothing was read but by the compaction: the cache stays empty and no
	 * input table stays open */
	cr_assert_eq(st.block_cache_bytes, 0, "compaction filled the cache with %llu bytes",
	             (unsigned long long)st.block_cache_bytes);
	cr_assert_eq(st.block_cache_misses, 0);
	cr_assert_eq(st.open_tables, 0);
	void *v;
	size_t n;
	cr_assert_eq(cairn_get(db, NULL, "key00017", 8, &v, &n), 0);
	cr_assert_eq(n, sizeof(val));
	cairn_free(v);
	cairn_close(db);
	tu_rmrf(dir);
}
