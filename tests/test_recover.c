/*
 * test_recover.c - what recovery may and may not do with what it finds
 * (issue 17): never create a database over the files of one whose CURRENT
 * is lost, never reuse or delete a file a lost manifest record named, be
 * strict about a log a clean close marked as synced, create nothing when an
 * open changes nothing, and open a full disk.
 */
#include "testutil.h"

#define NKEYS 50

static struct cairn_env *sim(void)
{
	struct cairn_env *env;
	cr_assert_eq(env_sim_new(17, 1700000000000000000LL, &env), 0);
	return env;
}

static void put_keys(struct cairn_db *db, int from, int to, const char *tag)
{
	char key[32], val[64];
	for (int i = from; i < to; i++) {
		int kl = tu_key(key, i);
		int vl = snprintf(val, sizeof(val), "%s-%d", tag, i);
		cr_assert_eq(cairn_put(db, key, (size_t)kl, val, (size_t)vl, CAIRN_SYNC), 0);
	}
}

static void expect_keys(struct cairn_db *db, int from, int to, const char *tag)
{
	char key[32], val[64];
	for (int i = from; i < to; i++) {
		void *v;
		size_t vl;
		int kl = tu_key(key, i);
		int wl = snprintf(val, sizeof(val), "%s-%d", tag, i);
		cr_assert_eq(cairn_get(db, NULL, key, (size_t)kl, &v, &vl), 0, "key %d", i);
		cr_assert(vl == (size_t)wl && memcmp(v, val, vl) == 0, "key %d", i);
		cairn_free(v);
	}
}

struct names {
	char list[4096];
	int n;
};

static int add_name(void *ctx, const char *name)
{
	struct names *s = ctx;
	if (strcmp(name, "LOCK") == 0)
		return 0;
	s->n++;
	size_t l = strlen(s->list);
	snprintf(s->list + l, sizeof(s->list) - l, "%s ", name);
	return 0;
}

/* The directory's files, sorted, as one string. */
static struct names dir_names(struct cairn_env *env, const char *dir)
{
	struct names s = {.n = 0};
	char sorted[64][64];
	cr_assert_eq(env_list_dir(env, dir, add_name, &s), 0);
	int n = 0;
	for (char *p = strtok(s.list, " "); p && n < 64; p = strtok(NULL, " "))
		snprintf(sorted[n++], 64, "%s", p);
	qsort(sorted, (size_t)n, 64, (int (*)(const void *, const void *))strcmp);
	s.list[0] = 0;
	for (int i = 0; i < n; i++) {
		size_t l = strlen(s.list);
		snprintf(s.list + l, sizeof(s.list) - l, "%s ", sorted[i]);
	}
	return s;
}

/* A checksum over the names and bytes of every file in dir. */
static uint64_t dir_checksum(struct cairn_env *env, const char *dir)
{
	struct names s = dir_names(env, dir);
	uint64_t sum = 0;
	for (char *p = strtok(s.list, " "); p; p = strtok(NULL, " ")) {
		char path[128], *data;
		size_t len;
		snprintf(path, sizeof(path), "%s/%s", dir, p);
		cr_assert_eq(env_sim_read_file(env, path, &data, &len), 0);
		sum = sum * 31 + crc32c(p, strlen(p));
		sum = sum * 31 + crc32c(data, len) + len;
		free(data);
	}
	return sum;
}

static int open_err(const char *dir, const struct cairn_options *o, char *err, size_t len)
{
	struct cairn_db *db = NULL;
	int r = cairn_open(dir, o, &db, err, len);
	if (!r)
		cairn_close(db);
	return r;
}

/* Item 1: without CURRENT, create_if_missing used to start a new database
 * over the old files and delete them all as obsolete. */
Test(recover, missing_current_refuses_to_create_over_files)
{
	struct cairn_env *env = sim();
	struct cairn_options o;
	tu_small_options(&o, env);
	struct cairn_db *db = tu_open("/db", &o);
	put_keys(db, 0, 3000, "v");
	cr_assert_eq(cairn_close(db), 0);
	cr_assert_eq(env_unlink(env, "/db/CURRENT"), 0);
	struct names before = dir_names(env, "/db");

	char err[512] = "";
	cr_assert_eq(open_err("/db", &o, err, sizeof(err)), CAIRN_ECORRUPT, "%s", err);
	cr_assert(strstr(err, "no CURRENT") && strstr(err, "cairn repair"), "%s", err);
	struct names after = dir_names(env, "/db");
	cr_assert_str_eq(before.list, after.list);
	/* read-only says the same, rather than "no database" */
	o.read_only = 1;
	cr_assert_eq(open_err("/db", &o, err, sizeof(err)), CAIRN_ECORRUPT, "%s", err);
	env_sim_free(env);
}

/* A creation cut short before CURRENT leaves only MANIFEST-000001: that one
 * holds nothing and may be created over. */
Test(recover, creation_cut_short_may_be_created_again)
{
	struct cairn_env *env = sim();
	struct cairn_options o;
	tu_small_options(&o, env);
	struct cairn_db *db = tu_open("/db", &o);
	cr_assert_eq(cairn_close(db), 0);
	struct names s = dir_names(env, "/db");
	for (char *p = strtok(s.list, " "); p; p = strtok(NULL, " ")) {
		char path[128];
		snprintf(path, sizeof(path), "/db/%s", p);
		if (strcmp(p, "MANIFEST-000001") != 0)
			cr_assert_eq(env_unlink(env, path), 0);
	}
	db = tu_open("/db", &o);
	put_keys(db, 0, 5, "v");
	cr_assert_eq(cairn_close(db), 0);
	env_sim_free(env);
}

/* Item 2: the manifest's last record (the one recording a new blob file) is
 * damaged; the log refers to that blob file. It used to be taken as
 * collected, deleted, and its number reused for the new manifest. */
Test(recover, lost_blob_record_is_corruption_and_deletes_nothing)
{
	struct cairn_env *env = sim();
	struct cairn_options o;
	tu_small_options(&o, env);
	o.blob_threshold = 1024;
	struct cairn_db *db = tu_open("/db", &o);
	put_keys(db, 0, 10, "small");
	static char big[8192];
	memset(big, 'b', sizeof(big));
	cr_assert_eq(cairn_put(db, "big", 3, big, sizeof(big), CAIRN_SYNC), 0);
	env_sim_crash(env);
	cairn_close(db);
	env_sim_reboot(env);

	/* the newest manifest's last record records the blob file */
	char *cur;
	size_t cl;
	cr_assert_eq(env_sim_read_file(env, "/db/CURRENT", &cur, &cl), 0);
	char mpath[128];
	snprintf(mpath, sizeof(mpath), "/db/%.*s", (int)cl - 1, cur);
	free(cur);
	char *m;
	size_t ml;
	cr_assert_eq(env_sim_read_file(env, mpath, &m, &ml), 0);
	m[ml - 1] ^= 0x10; /* a flipped bit in the last record: read as torn */
	cr_assert_eq(env_sim_write_file(env, mpath, m, ml), 0);
	free(m);
	struct names before = dir_names(env, "/db");
	cr_assert(strstr(before.list, ".blob"), "%s", before.list);

	char err[512] = "";
	int r = open_err("/db", &o, err, sizeof(err));
	cr_assert_eq(r, CAIRN_ECORRUPT, "%s: %s", cairn_strerror(r), err);
	cr_assert(strstr(err, ".blob") && strstr(err, "manifest"), "%s", err);
	struct names after = dir_names(env, "/db");
	cr_assert_str_eq(before.list, after.list);
	env_sim_free(env);
}

/* Item 2: files the manifest's surviving records do not reach keep their
 * numbers: no new file may take the number of one present. */
Test(recover, numbers_present_in_the_directory_are_never_reused)
{
	struct cairn_env *env = sim();
	struct cairn_options o;
	tu_small_options(&o, env);
	struct cairn_db *db = tu_open("/db", &o);
	put_keys(db, 0, 10, "v");
	cr_assert_eq(cairn_close(db), 0);
	/* a stray table far above the next file number */
	cr_assert_eq(env_sim_write_file(env, "/db/000040.sst", "x", 1), 0);
	db = tu_open("/db", &o);
	put_keys(db, 10, 3000, "v");
	cr_assert_eq(cairn_close(db), 0);
	char *data;
	size_t len;
	cr_assert_eq(env_sim_read_file(env, "/db/000040.sst", &data, &len), 0);
	cr_assert(len == 1 && data[0] == 'x', "000040.sst was reused or deleted");
	free(data);
	env_sim_free(env);
}

/* Item 10: 300 `cairn get` calls used to leave 314 files. */
Test(recover, unchanged_open_creates_nothing)
{
	struct cairn_env *env = sim();
	struct cairn_options o;
	tu_small_options(&o, env);
	struct cairn_db *db = tu_open("/db", &o);
	put_keys(db, 0, NKEYS, "v");
	cr_assert_eq(cairn_close(db), 0);
	struct names first = dir_names(env, "/db");
	uint64_t points = env_sim_write_points(env);
	for (int i = 0; i < 20; i++) {
		db = tu_open("/db", &o);
		expect_keys(db, 0, NKEYS, "v");
		cr_assert_eq(cairn_close(db), 0);
	}
	struct names now = dir_names(env, "/db");
	cr_assert_str_eq(first.list, now.list);
	cr_assert_eq(env_sim_write_points(env), points, "an unchanged open wrote");
	env_sim_free(env);
}

/* Item 10: empty logs an older version left behind are removed. */
Test(recover, stale_empty_logs_are_removed)
{
	static const char empty_log[16] = "cairnlog\x01\x00\x01\x00\x0f\x0d\x5d\xda";
	struct cairn_env *env = sim();
	struct cairn_options o;
	tu_small_options(&o, env);
	struct cairn_db *db = tu_open("/db", &o);
	put_keys(db, 0, NKEYS, "v");
	cr_assert_eq(cairn_close(db), 0);
	cr_assert_eq(env_sim_write_file(env, "/db/000030.log", empty_log, 16), 0);
	cr_assert_eq(env_sim_write_file(env, "/db/000031.log", empty_log, 16), 0);
	db = tu_open("/db", &o);
	expect_keys(db, 0, NKEYS, "v");
	put_keys(db, NKEYS, NKEYS + 5, "v");
	cr_assert_eq(cairn_close(db), 0);
	struct names now = dir_names(env, "/db");
	cr_assert(!strstr(now.list, "000030.log"), "%s", now.list);
	db = tu_open("/db", &o);
	expect_keys(db, 0, NKEYS + 5, "v");
	cr_assert_eq(cairn_close(db), 0);
	env_sim_free(env);
}

/* The newest log, after a clean close. */
static struct cairn_env *closed_db(char *logpath, size_t len, struct cairn_options *o)
{
	struct cairn_env *env = sim();
	tu_small_options(o, env);
	struct cairn_db *db = tu_open("/db", o);
	put_keys(db, 0, NKEYS, "v");
	cr_assert_eq(cairn_close(db), 0);
	struct names s = dir_names(env, "/db");
	logpath[0] = 0;
	for (char *p = strtok(s.list, " "); p; p = strtok(NULL, " "))
		if (strstr(p, ".log"))
			snprintf(logpath, len, "/db/%s", p);
	cr_assert(logpath[0]);
	return env;
}

enum damage { FLIP_NEAR_END, CUT_LAST_RECORD, ZERO_ALL, CUT_5_BYTES, DELETE };

/* Damages a file of the simulated disk in place. */
static void damage_file(struct cairn_env *env, const char *path, enum damage how)
{
	char *data;
	size_t len;
	uint32_t rl;
	if (how == DELETE) {
		cr_assert_eq(env_unlink(env, path), 0);
		return;
	}
	cr_assert_eq(env_sim_read_file(env, path, &data, &len), 0);
	switch (how) {
	case FLIP_NEAR_END:
		data[len - 3] ^= 0x01;
		break;
	case CUT_LAST_RECORD: /* every record holds one put of the same size */
		memcpy(&rl, data + 16, 4);
		len -= 12 + rl;
		break;
	case ZERO_ALL:
		memset(data, 0, len);
		break;
	case CUT_5_BYTES:
		len -= 5;
		break;
	case DELETE:
		break;
	}
	cr_assert_eq(env_sim_write_file(env, path, data, len), 0);
	free(data);
}

static void expect_refused(struct cairn_env *env, struct cairn_options *o, const char *what)
{
	char err[512] = "";
	int r = open_err("/db", o, err, sizeof(err));
	cr_assert_eq(r, CAIRN_ECORRUPT, "%s: open gave %s (%s)", what, cairn_strerror(r), err);
	cr_assert(strstr(err, ".log"), "%s: %s", what, err);
	env_sim_free(env);
}

/* A database made by setup, whose log setup names damaged how, must be
 * refused. */
static void refused_after(struct cairn_env *(*setup)(char *, size_t, struct cairn_options *),
                          enum damage how, const char *what)
{
	char path[128];
	struct cairn_options o;
	struct cairn_env *env = setup(path, sizeof(path), &o);
	damage_file(env, path, how);
	expect_refused(env, &o, what);
}

/* Item 4: after a clean close nothing can be torn: a flipped bit in the last
 * record used to read as a torn write and the last synced write reverted. */
Test(recover, clean_close_flipped_bit_in_last_record_is_corruption)
{
	refused_after(closed_db, FLIP_NEAR_END, "flipped bit");
}

/* Item 3: a log cut exactly at a record boundary, or missing, after a clean
 * close. */
Test(recover, clean_close_log_cut_at_record_boundary_is_corruption)
{
	refused_after(closed_db, CUT_LAST_RECORD, "cut at a record boundary");
}

Test(recover, clean_close_missing_log_is_corruption)
{
	refused_after(closed_db, DELETE, "missing log");
}

Test(recover, clean_close_zeroed_log_is_corruption)
{
	refused_after(closed_db, ZERO_ALL, "all-zero log");
}

/* After a crash a torn tail is still cut: the mark covers only the prefix a
 * clean close synced; writes after the reopen may be torn. */
Test(recover, torn_tail_after_reopen_is_still_cut)
{
	char path[128];
	struct cairn_options o;
	struct cairn_env *env = closed_db(path, sizeof(path), &o);
	struct cairn_db *db = tu_open("/db", &o);
	put_keys(db, NKEYS, NKEYS + 10, "v");
	env_sim_crash(env);
	cairn_close(db);
	env_sim_reboot(env);
	damage_file(env, path, CUT_5_BYTES);
	db = tu_open("/db", &o);
	expect_keys(db, 0, NKEYS + 9, "v");
	cr_assert_eq(cairn_close(db), 0);
	env_sim_free(env);
}

/* Item 11: a database on a full disk opens (after a clean close an open
 * writes nothing) and its data reads back. */
Test(recover, full_disk_opens)
{
	char path[128];
	struct cairn_options o;
	struct cairn_env *env = closed_db(path, sizeof(path), &o);
	env_sim_fail_all(env, SIM_FAULT_ENOSPC);
	struct cairn_db *db = tu_open("/db", &o);
	expect_keys(db, 0, NKEYS, "v");
	cairn_close(db);
	env_sim_fail_all(env, SIM_FAULT_NONE);
	db = tu_open("/db", &o);
	expect_keys(db, 0, NKEYS, "v");
	cr_assert_eq(cairn_close(db), 0);
	env_sim_free(env);
}

/* Item 8 (in part): check and open agree about a log a clean close marked:
 * an all-zero log, or one cut at a record boundary, is refused by open and
 * reported by check (check used to report the first and open accept it). */
Test(recover, check_and_open_agree_on_a_marked_log)
{
	for (int damage = 0; damage < 2; damage++) {
		char *dir = tu_tmpdir("recover");
		struct cairn_options o;
		tu_small_options(&o, NULL);
		struct cairn_db *db = tu_open(dir, &o);
		put_keys(db, 0, NKEYS, "v");
		cr_assert_eq(cairn_close(db), 0);
		char cmd[512], path[300] = "";
		snprintf(cmd, sizeof(cmd), "ls %s/*.log | tail -1", dir);
		FILE *p = popen(cmd, "r");
		cr_assert(p && fgets(path, sizeof(path), p));
		pclose(p);
		path[strcspn(path, "\n")] = 0;
		FILE *f = fopen(path, "r+b");
		cr_assert_not_null(f);
		fseek(f, 0, SEEK_END);
		long len = ftell(f);
		if (damage == 0) {
			static char zeros[1 << 16];
			fseek(f, 0, SEEK_SET);
			cr_assert_eq(fwrite(zeros, 1, (size_t)len, f), (size_t)len);
		} else {
			uint32_t rl;
			fseek(f, 16, SEEK_SET);
			cr_assert_eq(fread(&rl, 4, 1, f), 1);
			cr_assert_eq(ftruncate(fileno(f), len - 12 - (long)rl), 0);
		}
		fclose(f);
		char err[512] = "";
		int r = open_err(dir, &o, err, sizeof(err));
		cr_assert_eq(r, CAIRN_ECORRUPT, "damage %d: %s (%s)", damage, cairn_strerror(r),
		             err);
		uint64_t problems = 0;
		cr_assert_eq(cairn_check(dir, NULL, &problems), 0);
		cr_assert_gt(problems, 0, "damage %d: check found nothing", damage);
		tu_rmrf(dir);
	}
}

/* Splits the one log of a database cut off after synced writes into three
 * logs A, B, C holding consecutive runs of its records, as memtable switches
 * leave them; returns the env and B's path. The records are one put each. */
static struct cairn_env *three_logs(char *b_path, size_t len, struct cairn_options *o)
{
	struct cairn_env *env = sim();
	tu_small_options(o, env);
	struct cairn_db *db = tu_open("/db", o);
	put_keys(db, 0, NKEYS, "v");
	env_sim_crash(env);
	cairn_close(db);
	env_sim_reboot(env);
	char a_path[128] = "";
	struct names s = dir_names(env, "/db");
	for (char *p = strtok(s.list, " "); p; p = strtok(NULL, " "))
		if (strstr(p, ".log"))
			snprintf(a_path, sizeof(a_path), "/db/%s", p);
	cr_assert(a_path[0]);
	unsigned a = (unsigned)strtoul(a_path + 4, NULL, 10);
	char *data;
	size_t dl;
	cr_assert_eq(env_sim_read_file(env, a_path, &data, &dl), 0);
	/* as a version 1 log (as older cairns wrote): no start note, which
	 * leaves the sequence numbers to tell a log lost or cut */
	static const char v1_header[16] = "cairnlog\x01\x00\x01\x00\x0f\x0d\x5d\xda";
	uint32_t note_len;
	memcpy(&note_len, data + 16, 4);
	cr_assert_eq(note_len, 46);
	memmove(data + 16, data + 16 + 12 + 46, dl - 16 - 12 - 46);
	dl -= 12 + 46;
	memcpy(data, v1_header, 16);
	/* offsets of the records' starts */
	size_t starts[NKEYS + 1], n = 0, off = 16;
	while (off < dl && n <= NKEYS) {
		uint32_t rl;
		memcpy(&rl, data + off, 4);
		starts[n++] = off;
		off += 12 + rl;
	}
	cr_assert_eq(n, NKEYS);
	starts[n] = dl;
	size_t cut1 = starts[NKEYS / 3], cut2 = starts[2 * NKEYS / 3];
	char c_path[128], *buf = malloc(dl);
	snprintf(b_path, len, "/db/%06u.log", a + 100);
	snprintf(c_path, sizeof(c_path), "/db/%06u.log", a + 101);
	memcpy(buf, data, 16);
	memcpy(buf + 16, data + cut1, cut2 - cut1);
	cr_assert_eq(env_sim_write_file(env, b_path, buf, 16 + cut2 - cut1), 0);
	memcpy(buf + 16, data + cut2, dl - cut2);
	cr_assert_eq(env_sim_write_file(env, c_path, buf, 16 + dl - cut2), 0);
	cr_assert_eq(env_sim_write_file(env, a_path, data, cut1), 0);
	free(buf);
	free(data);
	return env;
}

Test(recover, logs_that_run_on_recover_whole)
{
	char b[128];
	struct cairn_options o;
	struct cairn_env *env = three_logs(b, sizeof(b), &o);
	struct cairn_db *db = tu_open("/db", &o);
	expect_keys(db, 0, NKEYS, "v");
	cr_assert_eq(cairn_close(db), 0);
	env_sim_free(env);
}

/* Item 3: a missing log, an older log all zeros, and an older log cut at a
 * record boundary used to be taken as they were: keys silently missing. */
Test(recover, missing_older_log_is_corruption)
{
	refused_after(three_logs, DELETE, "missing log");
}

Test(recover, all_zero_older_log_is_corruption)
{
	refused_after(three_logs, ZERO_ALL, "all-zero log");
}

Test(recover, older_log_cut_at_a_record_boundary_is_corruption)
{
	refused_after(three_logs, CUT_LAST_RECORD, "cut at a record boundary");
}

/* Item 8: recovery decides before it acts. Damage late in a log used to be
 * found after replay had already written level-0 tables from the records
 * before it; a refused open now leaves every file as it found it. */
Test(recover, refused_open_changes_nothing)
{
	struct cairn_env *env = sim();
	struct cairn_options o;
	tu_small_options(&o, env);
	o.memtable_size = 64u << 10;
	struct cairn_db *db = tu_open("/db", &o);
	char key[32], val[300];
	memset(val, 'x', sizeof(val));
	for (int i = 0; i < 400; i++) {
		int kl = tu_key(key, i);
		cr_assert_eq(cairn_put(db, key, (size_t)kl, val, sizeof(val), CAIRN_SYNC), 0);
	}
	env_sim_crash(env);
	cairn_close(db);
	env_sim_reboot(env);
	struct names before = dir_names(env, "/db");
	char path[128] = "";
	for (char *p = strtok(before.list, " "); p; p = strtok(NULL, " "))
		if (strstr(p, ".log"))
			snprintf(path, sizeof(path), "/db/%s", p);
	char *data;
	size_t len;
	cr_assert_eq(env_sim_read_file(env, path, &data, &len), 0);
	data[len - 2000] ^= 0x04; /* inside a record some way before the end */
	cr_assert_eq(env_sim_write_file(env, path, data, len), 0);
	free(data);
	before = dir_names(env, "/db");
	uint64_t sum = dir_checksum(env, "/db");
	char err[512] = "";
	cr_assert_eq(open_err("/db", &o, err, sizeof(err)), CAIRN_ECORRUPT, "%s", err);
	struct names after = dir_names(env, "/db");
	cr_assert_str_eq(before.list, after.list);
	/* (it may sync what a dead process left unsynced: no byte changes) */
	cr_assert_eq(dir_checksum(env, "/db"), sum, "a refused open changed a file");
	env_sim_free(env);
}

/* ---- logs accounted for after a crash (start and synced notes) ---- */

static int count_logs(struct cairn_env *env)
{
	struct names s = dir_names(env, "/db");
	int n = 0;
	for (char *p = strstr(s.list, ".log"); p; p = strstr(p + 1, ".log"))
		n++;
	return n;
}

/* The i-th log of the directory, in number order. */
static void nth_log(struct cairn_env *env, int i, char *path, size_t len)
{
	struct names s = dir_names(env, "/db");
	path[0] = 0;
	for (char *p = strtok(s.list, " "); p; p = strtok(NULL, " "))
		if (strstr(p, ".log") && i-- == 0)
			snprintf(path, len, "/db/%s", p);
	cr_assert(path[0], "no log %d", i);
}

static void put_range(struct cairn_db *db, int from, int to, unsigned flags)
{
	char key[32], val[128];
	memset(val, 'x', sizeof(val));
	for (int i = from; i < to; i++) {
		int kl = tu_key(key, i);
		int vl = snprintf(val, sizeof(val), "v-%d-", i);
		val[vl] = 'x';
		cr_assert_eq(cairn_put(db, key, (size_t)kl, val, 100, flags), 0, "key %d", i);
	}
}

/* Keys [from, to) read back as put_range wrote them, or are all missing. */
static void expect_range(struct cairn_db *db, int from, int to, int present)
{
	char key[32], val[128];
	for (int i = from; i < to; i++) {
		void *v = NULL;
		size_t vl = 0;
		int kl = tu_key(key, i);
		int wl = snprintf(val, sizeof(val), "v-%d-", i);
		int r = cairn_get(db, NULL, key, (size_t)kl, &v, &vl);
		if (present)
			cr_assert(r == 0 && vl == 100 && memcmp(v, val, (size_t)wl) == 0,
			          "key %d: %s", i, cairn_strerror(r));
		else
			cr_assert_eq(r, CAIRN_ENOTFOUND, "key %d came back", i);
		cairn_free(v);
	}
}

/* A power loss in which every byte written reached the disk (a legal
 * outcome the random one rarely gives): the files as they were, after the
 * crash. */
static void crash_keeping_everything(struct cairn_env *env, struct cairn_db *db)
{
	struct names s = dir_names(env, "/db");
	char *data[64];
	size_t len[64];
	char name[64][64];
	int n = 0;
	for (char *p = strtok(s.list, " "); p && n < 64; p = strtok(NULL, " "), n++) {
		char path[128];
		snprintf(name[n], 64, "%s", p);
		snprintf(path, sizeof(path), "/db/%s", p);
		cr_assert_eq(env_sim_read_file(env, path, &data[n], &len[n]), 0);
	}
	env_sim_crash(env);
	cairn_close(db);
	env_sim_reboot(env);
	struct names after = dir_names(env, "/db");
	for (char *p = strtok(after.list, " "); p; p = strtok(NULL, " ")) {
		char path[128];
		snprintf(path, sizeof(path), "/db/%s", p);
		env_unlink(env, path);
	}
	for (int i = 0; i < n; i++) {
		char path[128];
		snprintf(path, sizeof(path), "/db/%s", name[i]);
		cr_assert_eq(env_sim_write_file(env, path, data[i], len[i]), 0);
		free(data[i]);
	}
}

enum synced { SYNCED_NONE, SYNCED_AFTER, SYNCED_BEFORE };

/* A database cut off by power loss with two logs: the older one (memtable
 * frozen, not flushed) holding keys [0, *in_older), the newer one the rest
 * of [0, *total). SYNCED_NONE: no write synced; SYNCED_AFTER: the last
 * write was synced (which syncs the older log first: a synced note);
 * SYNCED_BEFORE: every write to the older log was synced, none after (its
 * start note says so). */
static struct cairn_env *two_logs(struct cairn_options *o, enum synced how, int *in_older,
                                  int *total)
{
	struct cairn_env *env = sim();
	tu_small_options(o, env);
	/* a background thread, scheduled by the simulation, flushes the
	 * frozen memtable some time after the switch (inline, the old log
	 * would be gone at once) */
	o->background_threads = 1;
	struct cairn_db *db = tu_open("/db", o);
	int i = 0;
	while (count_logs(env) < 2) {
		put_range(db, i, i + 1, how == SYNCED_BEFORE ? CAIRN_SYNC : 0);
		cr_assert_lt(++i, 100000);
	}
	/* the write that made room went to the new log */
	*in_older = i - 1;
	put_range(db, i, i + 19, 0);
	put_range(db, i + 19, i + 20, how == SYNCED_AFTER ? CAIRN_SYNC : 0);
	*total = i + 20;
	crash_keeping_everything(env, db);
	cr_assert_eq(count_logs(env), 2);
	return env;
}

/* Where each record of a log starts; returns how many (at most max). */
static int record_starts(const char *data, size_t len, size_t *starts, int max)
{
	int n = 0;
	for (size_t off = 16; off + 12 <= len && n < max;) {
		uint32_t rl;
		memcpy(&rl, data + off, 4);
		starts[n++] = off;
		off += 12 + rl;
	}
	return n;
}

/* Cuts log path at the start of its record number keep (0 is the start
 * note), as a crash or a damage would. */
static void cut_log_at_record(struct cairn_env *env, const char *path, int keep)
{
	char *data;
	size_t len, starts[8192];
	cr_assert_eq(env_sim_read_file(env, path, &data, &len), 0);
	int n = record_starts(data, len, starts, 8192);
	cr_assert_lt(keep, n);
	cr_assert_eq(env_sim_write_file(env, path, data, starts[keep]), 0);
	free(data);
}

/* Copies the simulated /db to a real directory, so that `cairn check`
 * (which reads through the POSIX env) sees it too. */
static char *export_db(struct cairn_env *env)
{
	char *dir = tu_tmpdir("recover");
	struct names s = dir_names(env, "/db");
	for (char *p = strtok(s.list, " "); p; p = strtok(NULL, " ")) {
		char from[128], to[512], *data;
		size_t len;
		snprintf(from, sizeof(from), "/db/%s", p);
		snprintf(to, sizeof(to), "%s/%s", dir, p);
		cr_assert_eq(env_sim_read_file(env, from, &data, &len), 0);
		FILE *f = fopen(to, "wb");
		cr_assert_not_null(f);
		cr_assert_eq(fwrite(data, 1, len, f), len);
		fclose(f);
		free(data);
	}
	return dir;
}

/* Open refuses, naming a log, and `cairn check` reports it. */
static void expect_refused_by_both(struct cairn_env *env, struct cairn_options *o, const char *what)
{
	char *dir = export_db(env);
	uint64_t problems = 0;
	cr_assert_eq(cairn_check(dir, NULL, &problems), 0);
	cr_assert_gt(problems, 0, "%s: check found nothing", what);
	tu_rmrf(dir);
	expect_refused(env, o, what);
}

/* Item 3 after a crash: the older log's number and length are in the newer
 * log's start note, so a missing, cut or zeroed older log that synced
 * writes lived in is refused by open and reported by check. Before, with
 * no clean close, the first two went unnoticed and keys were lost. */
Test(recover, older_log_missing_after_a_crash)
{
	struct cairn_options o;
	int older, total;
	struct cairn_env *env = two_logs(&o, SYNCED_AFTER, &older, &total);
	char path[128];
	nth_log(env, 0, path, sizeof(path));
	cr_assert_eq(env_unlink(env, path), 0);
	expect_refused_by_both(env, &o, "older log missing");
}

Test(recover, older_log_cut_at_a_record_boundary_after_a_crash)
{
	struct cairn_options o;
	int older, total;
	struct cairn_env *env = two_logs(&o, SYNCED_AFTER, &older, &total);
	char path[128];
	nth_log(env, 0, path, sizeof(path));
	cut_log_at_record(env, path, older - 1); /* drop its last record */
	expect_refused_by_both(env, &o, "older log cut at a record boundary");
}

Test(recover, older_log_all_zero_after_a_crash)
{
	struct cairn_options o;
	int older, total;
	struct cairn_env *env = two_logs(&o, SYNCED_AFTER, &older, &total);
	char path[128];
	nth_log(env, 0, path, sizeof(path));
	damage_file(env, path, ZERO_ALL);
	expect_refused_by_both(env, &o, "older log all zeros");
}

/* Synced at the switch: the start note's synced length holds it strict. */
Test(recover, older_log_synced_at_the_switch_cut_short_is_refused)
{
	struct cairn_options o;
	int older, total;
	struct cairn_env *env = two_logs(&o, SYNCED_BEFORE, &older, &total);
	char path[128];
	nth_log(env, 0, path, sizeof(path));
	cut_log_at_record(env, path, older / 2);
	expect_refused_by_both(env, &o, "synced older log cut short");
}

/* Issue 19: no log sync at a memtable switch. A crash may then keep the
 * newer log's bytes and lose the older one's unsynced tail: recovery keeps
 * the older log's good prefix and drops the newer log (nothing in it was
 * synced), without error. Before, this was refused as a lost log. */
Test(recover, unsynced_older_log_cut_short_keeps_its_prefix)
{
	struct cairn_options o;
	int older, total;
	struct cairn_env *env = two_logs(&o, SYNCED_NONE, &older, &total);
	char path[128];
	nth_log(env, 0, path, sizeof(path));
	int keep = older / 2;
	cut_log_at_record(env, path, 1 + keep); /* the start note and keep puts */
	char *dir = export_db(env);
	uint64_t problems = 99;
	cr_assert_eq(cairn_check(dir, NULL, &problems), 0);
	cr_assert_eq(problems, 0, "a crash's cut reported as damage");
	tu_rmrf(dir);
	struct cairn_db *db = tu_open("/db", &o);
	expect_range(db, 0, keep, 1);
	expect_range(db, keep, total, 0);
	put_range(db, total, total + 5, CAIRN_SYNC);
	cr_assert_eq(cairn_close(db), 0);
	db = tu_open("/db", &o);
	expect_range(db, 0, keep, 1);
	expect_range(db, keep, total, 0);
	expect_range(db, total, total + 5, 1);
	cr_assert_eq(cairn_close(db), 0);
	env_sim_free(env);
}

/* The same cut when the older log was synced since (the last write was):
 * synced writes in the newer log would be lost silently, so it is damage. */
Test(recover, synced_older_log_cut_short_is_refused)
{
	struct cairn_options o;
	int older, total;
	struct cairn_env *env = two_logs(&o, SYNCED_AFTER, &older, &total);
	char path[128];
	nth_log(env, 0, path, sizeof(path));
	cut_log_at_record(env, path, 1 + older / 2);
	expect_refused_by_both(env, &o, "synced older log cut short");
}

/* The newest log is gone after a crash, while the manifest's log number
 * names it and counts writes in it that no table holds (the flush of the
 * memtable before it ran after writes reached it). */
Test(recover, newest_log_missing_after_a_crash)
{
	struct cairn_env *env = sim();
	struct cairn_options o;
	tu_small_options(&o, env);
	o.background_threads = 1;
	struct cairn_db *db = tu_open("/db", &o);
	int i = 0;
	while (count_logs(env) < 2) {
		put_range(db, i, i + 1, 0);
		cr_assert_lt(++i, 100000);
	}
	char newer[128], now[128];
	nth_log(env, 1, newer, sizeof(newer));
	/* until the flush has made the older log obsolete */
	while (count_logs(env) > 1) {
		put_range(db, i, i + 1, 0);
		cr_assert_lt(++i, 100000);
	}
	nth_log(env, 0, now, sizeof(now));
	cr_assert_str_eq(now, newer);
	put_range(db, i, i + 1, CAIRN_SYNC);
	crash_keeping_everything(env, db);
	cr_assert_eq(env_unlink(env, newer), 0);
	expect_refused_by_both(env, &o, "newest log missing");
}

/* Power loss leaves 4 KiB pages of unsynced appends unwritten (zeros) with
 * later ones on disk: in the newest log's unsynced tail that is a torn
 * tail, cut there, not damage (it used to refuse the open: tests/sim
 * --faults all). The same bytes with a flipped bit instead are damage. */
Test(recover, hole_in_the_unsynced_tail_is_a_torn_tail)
{
	for (int flip = 0; flip < 2; flip++) {
		struct cairn_env *env = sim();
		struct cairn_options o;
		tu_small_options(&o, env);
		struct cairn_db *db = tu_open("/db", &o);
		put_range(db, 0, 50, CAIRN_SYNC);
		char path[128], *data;
		size_t synced;
		nth_log(env, 0, path, sizeof(path));
		cr_assert_eq(env_sim_read_file(env, path, &data, &synced), 0);
		free(data);
		put_range(db, 50, 250, 0);
		crash_keeping_everything(env, db);
		size_t len;
		cr_assert_eq(env_sim_read_file(env, path, &data, &len), 0);
		size_t page = (synced / 4096 + 2) * 4096;
		cr_assert_gt(len, page + 4096 + 500, "the unsynced tail is too short");
		if (flip)
			data[page + 100] ^= 0x10;
		else
			memset(data + page, 0, 4096);
		cr_assert_eq(env_sim_write_file(env, path, data, len), 0);
		free(data);
		if (flip) {
			expect_refused_by_both(env, &o, "flipped bit in the unsynced tail");
			continue;
		}
		char *dir = export_db(env);
		uint64_t problems = 99;
		cr_assert_eq(cairn_check(dir, NULL, &problems), 0);
		cr_assert_eq(problems, 0, "a hole in the unsynced tail reported as damage");
		tu_rmrf(dir);
		db = tu_open("/db", &o);
		expect_range(db, 0, 50, 1);
		cr_assert_eq(cairn_close(db), 0);
		env_sim_free(env);
	}
}
