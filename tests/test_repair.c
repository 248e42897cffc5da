/*
 * test_repair.c - cairn_repair over damaged databases (issue 17, item 9):
 * CURRENT or the manifest gone or damaged, a damaged table block, a damaged
 * log, a missing blob file. Each must rebuild a database that opens, holds
 * every key that was readable with its newest value, drops nothing silently
 * (the report counts what was lost) and keeps the replaced files in lost/.
 */
#include <fcntl.h>
#include <sys/resource.h>
#include <sys/stat.h>

#include "testutil.h"

#define NK 300

static char *vals[NK];
static size_t lens[NK];
static int live[NK];

static void key_of(int i, char *k)
{
	snprintf(k, 16, "k%05d", i);
}

/* Writes NK keys (every tenth a large value kept in a blob file), then
 * overwrites a third and deletes a tenth, with flushes and a compaction in
 * between, and leaves the last writes in the log. */
static void build(const char *dir)
{
	struct cairn_options o;
	tu_small_options(&o, NULL);
	o.background_threads = 0;
	o.blob_threshold = 4096;
	struct cairn_db *db = tu_open(dir, &o);
	for (int round = 0; round < 3; round++) {
		for (int i = 0; i < NK; i++) {
			char k[16];
			key_of(i, k);
			if (round == 1 && i % 3)
				continue;
			if (round == 2 && i % 10 == 0) {
				cr_assert_eq(cairn_delete(db, k, strlen(k), 0), 0);
				live[i] = 0;
				continue;
			}
			if (round == 2)
				continue;
			size_t len = i % 10 == 1 ? 5000 + (size_t)i : 20 + (size_t)(i % 50);
			free(vals[i]);
			vals[i] = malloc(len);
			for (size_t j = 0; j < len; j++)
				vals[i][j] = (char)('a' + (i + j + (size_t)round) % 26);
			lens[i] = len;
			live[i] = 1;
			cr_assert_eq(cairn_put(db, k, strlen(k), vals[i], len, 0), 0);
		}
		if (round == 0)
			cr_assert_eq(cairn_compact_range(db, NULL, 0, NULL, 0), 0);
		if (round == 1)
			cr_assert_eq(cairn_flush(db), 0);
	}
	cr_assert_eq(cairn_close(db), 0);
}

/* Every key has its newest value or is deleted; returns the keys that are
 * absent although live (those lost with a damaged block). */
static int verify(const char *dir, int allow_absent)
{
	struct cairn_options o;
	tu_small_options(&o, NULL);
	o.create_if_missing = 0;
	struct cairn_db *db = tu_open(dir, &o);
	int absent = 0;
	for (int i = 0; i < NK; i++) {
		char k[16];
		void *v = NULL;
		size_t vl = 0;
		key_of(i, k);
		int r = cairn_get(db, NULL, k, strlen(k), &v, &vl);
		if (!live[i]) {
			cr_assert_eq(r, CAIRN_ENOTFOUND, "%s was deleted but reads %s", k,
			             cairn_strerror(r));
			continue;
		}
		if (r == CAIRN_ENOTFOUND && allow_absent) {
			absent++;
			continue;
		}
		cr_assert_eq(r, 0, "%s: %s", k, cairn_strerror(r));
		cr_assert(vl == lens[i] && memcmp(v, vals[i], vl) == 0, "%s: wrong value", k);
		cairn_free(v);
	}
	cr_assert_eq(cairn_close(db), 0);
	return absent;
}

static uint64_t check_problems(const char *dir)
{
	uint64_t n = 99;
	cr_assert_eq(cairn_check(dir, NULL, &n), 0);
	return n;
}

static char *file_of(const char *dir, const char *suffix, int newest)
{
	char cmd[512];
	snprintf(cmd, sizeof(cmd), "ls '%s' | grep -- '%s' | sort | %s -1", dir, suffix,
	         newest ? "tail" : "head");
	FILE *p = popen(cmd, "r");
	char *name = calloc(1, 256);
	cr_assert(fgets(name, 255, p), "no %s file in %s", suffix, dir);
	pclose(p);
	name[strcspn(name, "\n")] = 0;
	char *path = malloc(600);
	snprintf(path, 600, "%s/%s", dir, name);
	free(name);
	return path;
}

static void flip(const char *path, long off)
{
	FILE *f = fopen(path, "r+b");
	cr_assert_not_null(f, "%s", path);
	if (off < 0) {
		fseek(f, 0, SEEK_END);
		off += ftell(f);
	}
	fseek(f, off, SEEK_SET);
	int c = fgetc(f);
	fseek(f, off, SEEK_SET);
	fputc(c ^ 0x40, f);
	fclose(f);
}

static int open_fails(const char *dir)
{
	struct cairn_options o;
	struct cairn_db *db = NULL;
	char err[512];
	cairn_options_init(&o);
	o.create_if_missing = 0;
	int r = cairn_open(dir, &o, &db, err, sizeof(err));
	cairn_close(db);
	return r != 0;
}

static int repair(const char *dir, struct cairn_repair_report *rep)
{
	char err[512] = "";
	int r = cairn_repair(dir, NULL, NULL, rep, err, sizeof(err));
	cr_assert_eq(r, 0, "repair: %s (%s)", cairn_strerror(r), err);
	return r;
}

static int in_lost(const char *dir, const char *path)
{
	char p[700];
	const char *base = strrchr(path, '/') + 1;
	snprintf(p, sizeof(p), "%s/lost/%s", dir, base);
	return access(p, F_OK) == 0;
}

Test(repair, missing_current)
{
	char *dir = tu_tmpdir("repair");
	struct cairn_repair_report rep;
	build(dir);
	char cur[300];
	snprintf(cur, sizeof(cur), "%s/CURRENT", dir);
	char *man = file_of(dir, "MANIFEST", 1);
	cr_assert_eq(unlink(cur), 0);
	cr_assert(open_fails(dir));
	repair(dir, &rep);
	cr_assert_eq(rep.tables_damaged + rep.logs_damaged + rep.blob_files_damaged, 0);
	cr_assert_eq(rep.blob_refs_broken, 0);
	cr_assert_gt(rep.tables, 1);
	cr_assert(in_lost(dir, man), "the old manifest is kept in lost/");
	verify(dir, 0);
	cr_assert_eq(check_problems(dir), 0);
	free(man);
	tu_rmrf(dir);
}

Test(repair, damaged_manifest)
{
	char *dir = tu_tmpdir("repair");
	struct cairn_repair_report rep;
	build(dir);
	char *man = file_of(dir, "MANIFEST", 1);
	flip(man, 40);
	cr_assert(open_fails(dir));
	repair(dir, &rep);
	verify(dir, 0);
	cr_assert(in_lost(dir, man));
	/* a second repair of a sound database loses nothing */
	repair(dir, &rep);
	cr_assert_eq(rep.bytes_lost, 0);
	verify(dir, 0);
	free(man);
	tu_rmrf(dir);
}

Test(repair, damaged_table_block)
{
	char *dir = tu_tmpdir("repair");
	struct cairn_repair_report rep;
	/* every key written once, so a lost block can only make keys absent */
	build(dir);
	char *sst = file_of(dir, ".sst", 0);
	flip(sst, 100);
	repair(dir, &rep);
	cr_assert_eq(rep.tables_damaged, 1);
	cr_assert_gt(rep.bytes_lost, 0);
	cr_assert(in_lost(dir, sst), "the damaged table is kept in lost/");
	cr_assert_eq(check_problems(dir), 0);
	free(sst);
	tu_rmrf(dir);
}

Test(repair, damaged_log)
{
	char *dir = tu_tmpdir("repair");
	struct cairn_repair_report rep;
	build(dir);
	char *log = file_of(dir, ".log", 1);
	struct stat st;
	cr_assert_eq(stat(log, &st), 0);
	cr_assert_gt(st.st_size, 100, "the last writes are in the log");
	flip(log, 20);
	repair(dir, &rep);
	cr_assert_eq(rep.logs_damaged, 1);
	cr_assert_gt(rep.bytes_lost, 0);
	cr_assert(in_lost(dir, log));
	free(log);
	tu_rmrf(dir);
}

/* A table cut short has lost its footer and index, not its data blocks:
 * they are found one by one by their checksums. */
Test(repair, table_cut_short_keeps_its_blocks)
{
	char *dir = tu_tmpdir("repair");
	struct cairn_repair_report rep;
	build(dir);
	char *sst = file_of(dir, ".sst", 0);
	struct stat st;
	cr_assert_eq(stat(sst, &st), 0);
	cr_assert_eq(truncate(sst, st.st_size - 100), 0);
	repair(dir, &rep);
	cr_assert_eq(rep.tables_damaged, 1);
	cr_assert_eq(rep.bytes_lost, 0, "only the footer and meta blocks were cut");
	verify(dir, 0);
	free(sst);
	tu_rmrf(dir);
}

/* A damaged record costs that record only: the records after it are found
 * again by their checksums and replayed. */
Test(repair, log_records_after_a_damaged_one_are_replayed)
{
	char *dir = tu_tmpdir("repair");
	struct cairn_repair_report rep;
	build(dir);
	char *log = file_of(dir, ".log", 1);
	/* the payload of the first batch (after the start note): the
	 * deletion of k00000 */
	flip(log, 16 + 12 + 46 + 12 + 2);
	repair(dir, &rep);
	cr_assert_eq(rep.logs_damaged, 1);
	live[0] = 1; /* its deletion was in the lost record */
	verify(dir, 0);
	free(log);
	tu_rmrf(dir);
}

Test(repair, missing_blob_file_keeps_the_key_as_an_error)
{
	char *dir = tu_tmpdir("repair");
	struct cairn_repair_report rep;
	build(dir);
	char *blob = file_of(dir, ".blob", 0);
	cr_assert_eq(unlink(blob), 0);
	repair(dir, &rep);
	cr_assert_gt(rep.blob_refs_broken, 0);
	struct cairn_options o;
	tu_small_options(&o, NULL);
	struct cairn_db *db = tu_open(dir, &o);
	int errors = 0;
	for (int i = 1; i < NK; i += 10) {
		char k[16];
		void *v = NULL;
		size_t vl;
		key_of(i, k);
		int r = cairn_get(db, NULL, k, strlen(k), &v, &vl);
		cr_assert_neq(r, CAIRN_ENOTFOUND, "%s silently vanished", k);
		errors += r == CAIRN_ECORRUPT;
		cairn_free(v);
	}
	cr_assert_gt(errors, 0);
	cairn_close(db);
	free(blob);
	tu_rmrf(dir);
}

Test(repair, refuses_an_open_database)
{
	char *dir = tu_tmpdir("repair");
	struct cairn_options o;
	tu_small_options(&o, NULL);
	struct cairn_db *db = tu_open(dir, &o);
	char err[512];
	cr_assert_eq(cairn_repair(dir, NULL, NULL, NULL, err, sizeof(err)), CAIRN_EBUSY);
	cairn_close(db);
	char *empty = tu_tmpdir("repair-empty");
	cr_assert_eq(cairn_repair(empty, NULL, NULL, NULL, err, sizeof(err)), CAIRN_ENOENT);
	tu_rmrf(empty);
	tu_rmrf(dir);
}

/* ntables level-0 tables of 100 keys each (no compaction runs). */
static void build_tables(const char *dir, struct cairn_options *o, int ntables)
{
	tu_small_options(o, NULL);
	o->background_threads = 0;
	o->l0_compaction_trigger = 100;
	o->l0_slowdown_trigger = 100;
	o->l0_stop_trigger = 100;
	struct cairn_db *db = tu_open(dir, o);
	char k[16], v[64];
	for (int t = 0; t < ntables; t++) {
		for (int i = t * 100; i < t * 100 + 100; i++) {
			key_of(i, k);
			int n = snprintf(v, sizeof(v), "value-%d", i);
			cr_assert_eq(cairn_put(db, k, strlen(k), v, (size_t)n, 0), 0);
		}
		cr_assert_eq(cairn_flush(db), 0);
	}
	cairn_close(db);
}

/* Out of file descriptors, repair must stop before it changes anything:
 * going on would set tables it could not open aside with their data. */
Test(repair, stops_unchanged_when_files_cannot_be_opened)
{
	char *dir = tu_tmpdir("repair");
	struct cairn_options o;
	build_tables(dir, &o, 8);
	int open_fds = 0;
	for (int fd = 0; fd < 1024; fd++)
		open_fds += fcntl(fd, F_GETFD) != -1;
	struct rlimit old, low;
	cr_assert_eq(getrlimit(RLIMIT_NOFILE, &old), 0);
	low = old;
	low.rlim_cur = (rlim_t)open_fds + 4;
	cr_assert_eq(setrlimit(RLIMIT_NOFILE, &low), 0);
	char err[512];
	int r = cairn_repair(dir, NULL, NULL, NULL, err, sizeof(err));
	setrlimit(RLIMIT_NOFILE, &old);
	cr_assert_neq(r, 0, "repair went on without its tables");
	cr_assert(strstr(err, "nothing was changed"), "%s", err);
	char cur[300];
	snprintf(cur, sizeof(cur), "%s/CURRENT", dir);
	cr_assert_eq(access(cur, F_OK), 0);
	tu_rmrf(dir);
}

/* A compaction whose input has a damaged block names the table and block,
 * counts it in the stats, and leaves reads of everything else working. */
Test(repair, damaged_compaction_input_is_named)
{
	char *dir = tu_tmpdir("repair");
	struct cairn_options o;
	build_tables(dir, &o, 3);
	char k[16];
	struct cairn_db *db;
	char *sst = file_of(dir, ".sst", 0);
	flip(sst, 30);
	db = tu_open(dir, &o);
	cr_assert_eq(cairn_compact_range(db, NULL, 0, NULL, 0), CAIRN_ECORRUPT);
	char msg[600];
	cairn_errmsg(db, msg, sizeof(msg));
	cr_assert(strstr(msg, strrchr(sst, '/') + 1) && strstr(msg, "block at offset") &&
	                  strstr(msg, "cairn repair"),
	          "%s", msg);
	struct cairn_stats st;
	cr_assert_eq(cairn_stats_get(db, &st), 0);
	cr_assert_eq(st.compactions_damaged, 1);
	void *val;
	size_t vl;
	key_of(250, k);
	cr_assert_eq(cairn_get(db, NULL, k, strlen(k), &val, &vl), 0, "reads go on");
	cairn_free(val);
	cairn_close(db);
	free(sst);
	tu_rmrf(dir);
}
