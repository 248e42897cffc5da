/*
 * test_corrupt.c - damaged logs, tables and manifests. Flipped bits,
 * truncation and zeroed ranges anywhere must give either a clear error
 * naming the file, or (for a torn log tail, and under
 * CAIRN_WAL_TOLERATE_CORRUPT) a clean recovery of a prefix of the writes:
 * never a crash and never a wrong answer.
 */
#include "testutil.h"

#define NKEYS 40

static void fill(struct cairn_db *db)
{
	char key[32], val[64];
	for (int i = 0; i < NKEYS; i++) {
		int kl = tu_key(key, i);
		int vl = sprintf(val, "value-%d", i);
		cr_assert_eq(cairn_put(db, key, (size_t)kl, val, (size_t)vl, CAIRN_SYNC), 0);
	}
}

/* The writes are applied in key order, so a correct recovery holds keys
 * 0..k-1 with their values and nothing else. Returns k, or -1 if the state
 * is not such a prefix. */
static int prefix_len(struct cairn_db *db)
{
	char key[32], val[64];
	int k = -1;
	for (int i = 0; i < NKEYS; i++) {
		void *v;
		size_t vl;
		int kl = tu_key(key, i);
		int wl = sprintf(val, "value-%d", i);
		int r = cairn_get(db, NULL, key, (size_t)kl, &v, &vl);
		if (r == 0) {
			int ok = vl == (size_t)wl && memcmp(v, val, vl) == 0;
			cairn_free(v);
			if (!ok || k >= 0)
				return -1;
		} else if (r == CAIRN_ENOTFOUND) {
			if (k < 0)
				k = i;
		} else {
			return -1;
		}
	}
	return k < 0 ? NKEYS : k;
}

/* Builds a database whose data is all in one log (crash before any flush)
 * and returns the env and the log's path. */
static struct cairn_env *log_only_db(char *logpath, size_t len, struct cairn_options *o)
{
	struct cairn_env *env;
	cr_assert_eq(env_sim_new(5, 1700000000000000000LL, &env), 0);
	tu_small_options(o, env);
	struct cairn_db *db = tu_open("/db", o);
	fill(db);
	env_sim_crash(env);
	cairn_close(db);
	env_sim_reboot(env);
	/* the log is the highest-numbered .log file: after open it is 000003 */
	for (int n = 1; n < 20; n++) {
		snprintf(logpath, len, "/db/%06d.log", n);
		char *data;
		size_t dl;
		if (env_sim_read_file(env, logpath, &data, &dl) == 0 && dl > 100) {
			free(data);
			return env;
		}
	}
	cr_assert_fail("no log file found");
	return NULL;
}

static void check_outcome(struct cairn_env *env, struct cairn_options *o, const char *what,
                          size_t pos, int may_corrupt)
{
	struct cairn_db *db = NULL;
	char err[512] = "";
	int r = cairn_open("/db", o, &db, err, sizeof(err));
	if (r) {
		cr_assert(may_corrupt, "%s at %zu: open failed: %s (%s)", what, pos,
		          cairn_strerror(r), err);
		cr_assert_eq(r, CAIRN_ECORRUPT, "%s at %zu: %s (%s)", what, pos, cairn_strerror(r),
		             err);
		cr_assert(strstr(err, ".log"), "%s at %zu: message must name the file: %s", what,
		          pos, err);
		return;
	}
	int k = prefix_len(db);
	cr_assert_geq(k, 0, "%s at %zu: recovered state is not a prefix of the writes", what, pos);
	cairn_close(db);
}

Test(corrupt, log_truncated_anywhere_recovers_a_prefix)
{
	char path[64];
	struct cairn_options o;
	struct cairn_env *env = log_only_db(path, sizeof(path), &o);
	char *orig;
	size_t len;
	cr_assert_eq(env_sim_read_file(env, path, &orig, &len), 0);
	for (size_t cut = 0; cut < len; cut += 7) {
		/* each attempt starts from the original files */
		struct cairn_env *e2 = log_only_db(path, sizeof(path), &o);
		cr_assert_eq(env_sim_write_file(e2, path, orig, cut), 0);
		check_outcome(e2, &o, "truncation", cut, 0);
		env_sim_free(e2);
	}
	free(orig);
	env_sim_free(env);
}

Test(corrupt, log_bit_flips_give_an_error_or_a_prefix, .timeout = 600)
{
	char path[64];
	struct cairn_options o;
	struct cairn_env *env = log_only_db(path, sizeof(path), &o);
	char *orig;
	size_t len;
	cr_assert_eq(env_sim_read_file(env, path, &orig, &len), 0);
	env_sim_free(env);
	for (size_t pos = 0; pos < len; pos += 3) {
		for (int tolerate = 0; tolerate < 2; tolerate++) {
			struct cairn_env *e2 = log_only_db(path, sizeof(path), &o);
			o.wal_recovery = tolerate ? CAIRN_WAL_TOLERATE_CORRUPT : CAIRN_WAL_STRICT;
			char *copy = malloc(len);
			memcpy(copy, orig, len);
			copy[pos] ^= (char)(1 << (pos % 8));
			cr_assert_eq(env_sim_write_file(e2, path, copy, len), 0);
			free(copy);
			check_outcome(e2, &o, tolerate ? "flip (tolerant)" : "flip", pos,
			              !tolerate);
			env_sim_free(e2);
		}
	}
	free(orig);
}

Test(corrupt, log_zeroed_range_gives_an_error_or_a_prefix)
{
	char path[64];
	struct cairn_options o;
	struct cairn_env *env = log_only_db(path, sizeof(path), &o);
	char *orig;
	size_t len;
	cr_assert_eq(env_sim_read_file(env, path, &orig, &len), 0);
	env_sim_free(env);
	for (size_t pos = 0; pos + 64 <= len; pos += 97) {
		struct cairn_env *e2 = log_only_db(path, sizeof(path), &o);
		char *copy = malloc(len);
		memcpy(copy, orig, len);
		memset(copy + pos, 0, 64);
		cr_assert_eq(env_sim_write_file(e2, path, copy, len), 0);
		free(copy);
		check_outcome(e2, &o, "zeroed range", pos, 1);
		env_sim_free(e2);
	}
	free(orig);
}

Test(corrupt, damaged_table_is_reported_naming_the_file)
{
	struct cairn_env *env;
	cr_assert_eq(env_sim_new(9, 1700000000000000000LL, &env), 0);
	struct cairn_options o;
	tu_small_options(&o, env);
	struct cairn_db *db = tu_open("/db", &o);
	fill(db);
	cr_assert_eq(cairn_flush(db), 0);
	cairn_close(db);
	char path[64];
	char *data = NULL;
	size_t len = 0;
	for (int n = 1; n < 30 && !data; n++) {
		snprintf(path, sizeof(path), "/db/%06d.sst", n);
		if (env_sim_read_file(env, path, &data, &len))
			data = NULL;
	}
	cr_assert_not_null(data, "no table found");
	int errors = 0;
	for (size_t pos = 0; pos < len; pos += 5) {
		data[pos] ^= 0x10;
		env_sim_write_file(env, path, data, len);
		data[pos] ^= 0x10;
		char err[512] = "";
		db = NULL;
		int r = cairn_open("/db", &o, &db, err, sizeof(err));
		if (r) {
			cr_assert(strstr(err, ".sst"), "flip at %zu: %s", pos, err);
			errors++;
			continue;
		}
		/* every read is right or an error: never a wrong value */
		char key[32], val[64];
		for (int i = 0; i < NKEYS; i++) {
			void *v;
			size_t vl;
			int kl = tu_key(key, i), wl = sprintf(val, "value-%d", i);
			int g = cairn_get(db, NULL, key, (size_t)kl, &v, &vl);
			if (g == 0) {
				cr_assert(vl == (size_t)wl && memcmp(v, val, vl) == 0,
				          "flip at %zu: key %s has a wrong value", pos, key);
				cairn_free(v);
			} else {
				cr_assert(g == CAIRN_ECORRUPT || g == CAIRN_ENOTFOUND,
				          "flip at %zu: %s", pos, cairn_strerror(g));
				errors += g == CAIRN_ECORRUPT;
			}
		}
		cairn_close(db);
	}
	env_sim_write_file(env, path, data, len);
	cr_assert_gt(errors, 0);
	free(data);
	env_sim_free(env);
}

Test(corrupt, damaged_manifest_or_current_is_reported)
{
	struct cairn_env *env;
	cr_assert_eq(env_sim_new(11, 1700000000000000000LL, &env), 0);
	struct cairn_options o;
	tu_small_options(&o, env);
	struct cairn_db *db = tu_open("/db", &o);
	fill(db);
	cairn_close(db);
	char *cur;
	size_t clen;
	cr_assert_eq(env_sim_read_file(env, "/db/CURRENT", &cur, &clen), 0);
	char mpath[128];
	snprintf(mpath, sizeof(mpath), "/db/%.*s", (int)clen - 1, cur);
	char *man;
	size_t mlen;
	cr_assert_eq(env_sim_read_file(env, mpath, &man, &mlen), 0);
	for (size_t pos = 0; pos < mlen; pos++) {
		man[pos] ^= 0x01;
		env_sim_write_file(env, mpath, man, mlen);
		man[pos] ^= 0x01;
		char err[512] = "";
		db = NULL;
		int r = cairn_open("/db", &o, &db, err, sizeof(err));
		if (r) {
			cr_assert(r == CAIRN_ECORRUPT || r == CAIRN_EVERSION, "flip at %zu: %s",
			          pos, cairn_strerror(r));
			cr_assert(strstr(err, "MANIFEST"), "flip at %zu: %s", pos, err);
		} else {
			cairn_close(db);
		}
		env_sim_write_file(env, mpath, man, mlen);
	}
	env_sim_write_file(env, "/db/CURRENT", "garbage", 7);
	char err[512] = "";
	cr_assert_eq(cairn_open("/db", &o, &db, err, sizeof(err)), CAIRN_ECORRUPT);
	cr_assert(strstr(err, "CURRENT"), "%s", err);
	free(cur);
	free(man);
	env_sim_free(env);
}

/* A log cut short before its header was written (a log switch that failed
 * and whose removal failed too) never held a record: recovery reads it as
 * empty even when a newer log follows, instead of calling it corruption. */
Test(corrupt, headerless_log_before_the_newest_is_empty)
{
	char path[64], newer[64];
	struct cairn_options o;
	struct cairn_env *env = log_only_db(path, sizeof(path), &o);
	char *data;
	size_t len;
	cr_assert_eq(env_sim_read_file(env, path, &data, &len), 0);
	/* move the data one number up and leave a 5-byte stub in its place */
	unsigned n = (unsigned)strtoul(path + 4, NULL, 10);
	snprintf(newer, sizeof(newer), "/db/%06u.log", n + 1);
	cr_assert_eq(env_sim_write_file(env, newer, data, len), 0);
	cr_assert_eq(env_sim_write_file(env, path, "cairn", 5), 0);
	free(data);
	struct cairn_db *db = NULL;
	char err[512] = "";
	int r = cairn_open("/db", &o, &db, err, sizeof(err));
	cr_assert_eq(r, 0, "open: %s (%s)", cairn_strerror(r), err);
	cr_assert_eq(prefix_len(db), NKEYS);
	cairn_close(db);
	env_sim_free(env);
}

static void note_problem(void *ctx, const char *file, uint64_t offset, const char *what)
{
	(void)offset;
	char *out = ctx;
	size_t n = strlen(out);
	snprintf(out + n, 2048 - n, "%s: %s\n", file, what);
}

/* Two tables of one size swapped by name: every read of their keys is an
 * error naming a table, never "not found", and check reports both. */
Test(corrupt, tables_swapped_by_name_are_refused_and_reported)
{
	char *dir = tu_tmpdir("swap");
	struct cairn_options o;
	tu_small_options(&o, NULL);
	o.background_threads = 0;
	o.compression = 0; /* keeps the two tables' sizes equal */
	struct cairn_db *db = tu_open(dir, &o);
	char key[32], val[64], path[2][512];
	memset(val, 'v', sizeof(val));
	for (int t = 0; t < 2; t++) {
		for (int i = 0; i < 100; i++) {
			int kl = sprintf(key, "%c%04d", 'a' + t, i);
			cr_assert_eq(cairn_put(db, key, (size_t)kl, val, sizeof(val), 0), 0);
		}
		cr_assert_eq(cairn_flush(db), 0);
	}
	cr_assert_eq(cairn_close(db), 0);
	int found = 0;
	for (int n = 1; n < 30 && found < 2; n++) {
		snprintf(path[found], sizeof(path[0]), "%s/%06d.sst", dir, n);
		found += access(path[found], F_OK) == 0;
	}
	cr_assert_eq(found, 2);
	uint64_t s0, s1;
	cr_assert_eq(env_file_size(env_posix(), path[0], &s0), 0);
	cr_assert_eq(env_file_size(env_posix(), path[1], &s1), 0);
	cr_assert_eq(s0, s1, "the tables (%llu and %llu bytes) must be of one size",
	             (unsigned long long)s0, (unsigned long long)s1);
	char tmp[600];
	snprintf(tmp, sizeof(tmp), "%s/swap.tmp", dir);
	cr_assert_eq(rename(path[0], tmp), 0);
	cr_assert_eq(rename(path[1], path[0]), 0);
	cr_assert_eq(rename(tmp, path[1]), 0);

	db = tu_open(dir, &o);
	struct cairn_iter *it;
	cr_assert_eq(cairn_iter_new(db, NULL, &it), 0);
	int n = 0;
	for (cairn_iter_seek_first(it); cairn_iter_valid(it); cairn_iter_next(it))
		n++;
	cr_assert_eq(cairn_iter_status(it), CAIRN_ECORRUPT, "a scan saw %d keys and no error", n);
	char msg[512] = "";
	cr_assert_eq(cairn_errmsg(db, msg, sizeof(msg)), CAIRN_ECORRUPT);
	cr_assert(strstr(msg, ".sst") && strstr(msg, "not the table the manifest names"),
	          "the scan's error must name the table: %s", msg);
	cairn_iter_free(it);
	for (int t = 0; t < 2; t++) {
		int kl = sprintf(key, "%c%04d", 'a' + t, 50);
		void *v = NULL;
		size_t vl;
		int r = cairn_get(db, NULL, key, (size_t)kl, &v, &vl);
		cairn_errmsg(db, msg, sizeof(msg));
		cr_assert_eq(r, CAIRN_ECORRUPT, "%s: %s (%s)", key, cairn_strerror(r), msg);
		cr_assert(strstr(msg, ".sst") && strstr(msg, "manifest"), "%s", msg);
	}
	cr_assert_eq(cairn_close(db), 0);

	char problems[2048] = "";
	uint64_t count = 0;
	struct cairn_check_callbacks cb = {.problem = note_problem, .ctx = problems};
	cr_assert_eq(cairn_check(dir, &cb, &count), 0);
	cr_assert_geq(count, 2, "check found: %s", problems);
	cr_assert(strstr(problems, "not the table the manifest names"), "%s", problems);
	tu_rmrf(dir);
}
