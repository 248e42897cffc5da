/*
 * damage.c - damaged-file trials (issue 17, Acceptance).
 *
 * Builds databases from a seed with a reference map of every key ever
 * written (live, overwritten, deleted, large values kept in blob files), in
 * two states: closed cleanly, and cut off right after cairn_sync (the
 * directory copied while the handle is still open). Each trial copies one of
 * them, damages one file one way (a flipped bit, a zeroed 4 KiB range, a
 * truncation, a deletion, appended garbage, two files swapped) and judges
 * what the engine makes of it:
 *
 *   refused   open failed with a message naming the damaged file: fine
 *   errors    open succeeded; every read was right or returned an error,
 *             and `check` (run before the open) reported the damage: fine
 *   correct   as errors, but no read even needed to fail: fine
 *   FAIL      anything else: a refusal that names no file, a wrong value, a
 *             deleted key come back, a live key silently missing from a
 *             point read or from a scan, a damage open accepted and check
 *             did not report, a crash or a hang
 *
 * Each trial runs in a child process (a crash or a hang is an outcome, not
 * the end of the run). The run is a function of the seed: the trial order
 * cycles through every state x file kind x damage kind, and every choice
 * (which file, where, how much) comes from the seed; the engine's clock is
 * replaced by a counter so the files are the same bytes on every run.
 *
 * Usage: damage [-s SEED] [-n TRIALS] [-k DIR] [-r|-R] [-v]
 * -k keeps the work directory; -r also runs cairn_repair after each trial and
 * sums up what the repaired databases hold (-R: repair only, no open before
 * it, so the outcome columns are meaningless); -v prints every trial.
 * Prints the seed, one line "FAIL class detail" per failed trial (class is
 * state:kind:damage:failure, for tests/damage.sh), and a summary table.
 * Exits 0 when the trials ran (whatever they found), 2 on a usage error, 1
 * when the harness itself could not run.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cairn.h"
#include "env.h"

/* Paths here are a temporary directory plus short names. */
#pragma GCC diagnostic ignored "-Wformat-truncation"

#define NKEYS         400
#define NOPS          2400
#define TRIAL_TIMEOUT 30
#define BASE_EVERY    60 /* trials per pair of base databases */

enum state { ST_CLEAN, ST_SYNCED, NSTATES };
static const char *state_names[] = {"clean", "synced"};

enum kind { K_CURRENT, K_MANIFEST, K_LOG, K_TABLE, K_BLOB, NKINDS };
static const char *kind_names[] = {"CURRENT", "MANIFEST", "log", "table", "blob"};

enum damage { D_BITFLIP, D_ZERO4K, D_TRUNCATE, D_DELETE, D_GARBAGE, D_SWAP, NDAMAGES };
static const char *damage_names[] = {"bitflip", "zero4k", "truncate", "delete", "garbage", "swap"};

enum outcome {
	O_REFUSED,
	O_ERRORS,
	O_CORRECT,
	O_NA, /* no such file, or the damage changed nothing */
	F_UNNAMED,
	F_WRONG,
	F_RESURRECTED,
	F_MISSING,
	F_SCAN,
	F_CHECK_SILENT,
	F_CRASH,
	F_HANG,
	NOUTCOMES
};
static const char *outcome_names[] = {"refused", "errors",       "correct",     "n/a",
                                      "unnamed", "wrong",        "resurrected", "missing",
                                      "scan",    "check-silent", "crash",       "hang"};

/* ---- the reference map ---------------------------------------------------- */

struct ref {
	int state; /* 0 never written, 1 live, 2 deleted */
	char *val;
	size_t len;
};
static struct ref refs[NKEYS];

static uint64_t rng;
static uint64_t next_rand(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}
static uint64_t below(uint64_t n)
{
	return n ? next_rand() % n : 0;
}

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void die(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fprintf(stderr, "damage: ");
	vfprintf(stderr, fmt, ap);
	fprintf(stderr, "\n");
	va_end(ap);
	exit(1);
}

/* A clock that counts, so the same seed writes the same bytes. */
static int64_t fake_now;
static int64_t counter_now_ns(struct cairn_env *env)
{
	(void)env;
	return fake_now += 1000;
}
static struct env_ops counted_ops;
static struct cairn_env counted_env;

static void set_options(struct cairn_options *o)
{
	cairn_options_init(o);
	o->memtable_size = 64u << 10;
	o->table_target_size = 64u << 10;
	o->level1_target_size = 256u << 10;
	o->block_size = 1024;
	o->blob_threshold = 2048;
	o->blob_file_size = 1u << 20;
	o->background_threads = 0;
	o->sync_interval_ms = 0;
	o->env = &counted_env;
}

static void key_of(int i, char *k)
{
	snprintf(k, 16, "key%05d", i);
}

/* ---- files ----------------------------------------------------------------- */

static void run_cmd(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void run_cmd(const char *fmt, ...)
{
	char cmd[8192];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	if (system(cmd) != 0)
		die("'%s' failed", cmd);
}

static int read_file(const char *path, char **data, size_t *len)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		return -1;
	struct stat st;
	fstat(fileno(f), &st);
	*len = (size_t)st.st_size;
	*data = malloc(*len ? *len : 1);
	size_t got = fread(*data, 1, *len, f);
	fclose(f);
	return got == *len ? 0 : -1;
}

static int write_file(const char *path, const char *data, size_t len)
{
	FILE *f = fopen(path, "wb");
	if (!f)
		return -1;
	size_t put = fwrite(data, 1, len, f);
	return fclose(f) || put != len ? -1 : 0;
}

static enum kind kind_of(const char *name, int *ok)
{
	size_t n = strlen(name);
	*ok = 1;
	if (strcmp(name, "CURRENT") == 0)
		return K_CURRENT;
	if (strncmp(name, "MANIFEST-", 9) == 0)
		return K_MANIFEST;
	if (n > 4 && strcmp(name + n - 4, ".log") == 0)
		return K_LOG;
	if (n > 4 && strcmp(name + n - 4, ".sst") == 0)
		return K_TABLE;
	if (n > 5 && strcmp(name + n - 5, ".blob") == 0)
		return K_BLOB;
	*ok = 0;
	return K_CURRENT;
}

struct flist {
	char names[256][64];
	int n;
};

static int cmp_names(const void *a, const void *b)
{
	return strcmp(a, b);
}

/* The files of kind k in dir (all database files when k < 0), sorted so
 * that the choice among them depends only on the seed. */
static void list_files(const char *dir, int k, struct flist *out)
{
	out->n = 0;
	DIR *d = opendir(dir);
	if (!d)
		die("cannot list %s", dir);
	struct dirent *e;
	while ((e = readdir(d)) && out->n < 256) {
		int ok;
		enum kind ek = kind_of(e->d_name, &ok);
		if (ok && (k < 0 || (int)ek == k) && strlen(e->d_name) < 64)
			strcpy(out->names[out->n++], e->d_name);
	}
	closedir(d);
	qsort(out->names, (size_t)out->n, sizeof(out->names[0]), cmp_names);
}

/* ---- building the base databases ------------------------------------------ */

static void fill_value(char *v, size_t len, int key, int op)
{
	uint64_t s = ((uint64_t)key << 32) ^ (uint64_t)op ^ 0x9e3779b97f4a7c15ull;
	for (size_t i = 0; i < len; i++) {
		s = s * 6364136223846793005ull + 1442695040888963407ull;
		v[i] = (char)(s >> 56);
	}
}

static void check_ok(int r, struct cairn_db *db, const char *what)
{
	if (r == 0)
		return;
	char msg[512] = "";
	if (db)
		cairn_errmsg(db, msg, sizeof(msg));
	die("%s: %s %s", what, cairn_strerror(r), msg);
}

static void do_op(struct cairn_db *db, int op)
{
	char k[16];
	int i = (int)below(NKEYS);
	key_of(i, k);
	uint64_t dice = below(100);
	if (dice < 15 && refs[i].state == 1) {
		check_ok(cairn_delete(db, k, strlen(k), 0), db, "delete");
		refs[i].state = 2;
		return;
	}
	size_t len = dice < 27 ? 2048 + below(30000) : 1 + below(300);
	free(refs[i].val);
	refs[i].val = malloc(len);
	refs[i].len = len;
	fill_value(refs[i].val, len, i, op);
	refs[i].state = 1;
	check_ok(cairn_put(db, k, strlen(k), refs[i].val, len, 0), db, "put");
}

/* Builds base/clean and base/synced with the same reference map. */
static void build_bases(const char *root, uint64_t seed)
{
	struct cairn_options o;
	struct cairn_db *db = NULL;
	char dir[4096], err[512];
	rng = seed * 2654435761u + 1;
	if (!rng)
		rng = 1;
	fake_now = 1700000000000000000ll;
	for (int i = 0; i < NKEYS; i++) {
		free(refs[i].val);
		refs[i] = (struct ref){0};
	}
	run_cmd("rm -rf '%s/base' && mkdir -p '%s/base'", root, root);
	snprintf(dir, sizeof(dir), "%s/base/db", root);
	set_options(&o);
	if (cairn_open(dir, &o, &db, err, sizeof(err)))
		die("open %s: %s", dir, err);
	for (int op = 0; op < NOPS; op++) {
		do_op(db, op);
		if (op % 700 == 699)
			check_ok(cairn_flush(db), db, "flush");
		if (op == 1500)
			check_ok(cairn_compact_range(db, NULL, 0, NULL, 0), db, "compact");
	}
	check_ok(cairn_sync(db), db, "sync");
	run_cmd("cp -a '%s' '%s/base/synced' && rm -f '%s/base/synced/LOCK'", dir, root, root);
	check_ok(cairn_close(db), NULL, "close");
	run_cmd("mv '%s' '%s/base/clean'", dir, root);
}

/* ---- damaging ------------------------------------------------------------- */

struct trial {
	enum state st;
	enum kind kind;
	enum damage dmg;
	char file[64], other[64]; /* other: the swap partner */
	char what[160];           /* the damage done, for the FAIL line */
};

static int same_content(const char *a, const char *b)
{
	char *x, *y;
	size_t nx, ny;
	if (read_file(a, &x, &nx) || read_file(b, &y, &ny))
		return 0;
	int same = nx == ny && memcmp(x, y, nx) == 0;
	free(x);
	free(y);
	return same;
}

/* Applies t->dmg to t->file in dir; 1 if it changed something. */
static int apply_damage(const char *dir, struct trial *t)
{
	char path[4096], other[4096], tmp[4096], *data;
	size_t len;
	snprintf(path, sizeof(path), "%s/%s", dir, t->file);
	if (read_file(path, &data, &len))
		die("cannot read %s", path);
	if (!len && (t->dmg == D_BITFLIP || t->dmg == D_ZERO4K || t->dmg == D_TRUNCATE)) {
		free(data); /* no byte to flip, zero or cut */
		return 0;
	}
	int changed = 1;
	switch (t->dmg) {
	case D_BITFLIP: {
		uint64_t off = below(len);
		int bit = (int)below(8);
		data[off] ^= (char)(1 << bit);
		snprintf(t->what, sizeof(t->what), "bit %d of byte %" PRIu64 " of %zu flipped", bit,
		         off, len);
		write_file(path, data, len);
		break;
	}
	case D_ZERO4K: {
		uint64_t off = below(len);
		size_t n = len - off < 4096 ? len - off : 4096;
		changed = 0;
		for (size_t i = 0; i < n; i++)
			changed |= data[off + i] != 0;
		memset(data + off, 0, n);
		snprintf(t->what, sizeof(t->what), "bytes %" PRIu64 "..%" PRIu64 " of %zu zeroed",
		         off, off + n, len);
		write_file(path, data, len);
		break;
	}
	case D_TRUNCATE: {
		uint64_t to = below(len);
		snprintf(t->what, sizeof(t->what), "cut from %zu to %" PRIu64 " bytes", len, to);
		if (truncate(path, (off_t)to))
			die("truncate %s", path);
		break;
	}
	case D_DELETE:
		snprintf(t->what, sizeof(t->what), "deleted (%zu bytes)", len);
		unlink(path);
		break;
	case D_GARBAGE: {
		size_t n = 1 + below(4096);
		char *g = malloc(n);
		for (size_t i = 0; i < n; i++)
			g[i] = (char)(1 + below(255));
		FILE *f = fopen(path, "ab");
		if (!f || fwrite(g, 1, n, f) != n || fclose(f))
			die("append %s", path);
		free(g);
		snprintf(t->what, sizeof(t->what), "%zu bytes of garbage appended to %zu", n, len);
		break;
	}
	case D_SWAP: {
		struct flist fl;
		list_files(dir, (int)t->kind, &fl);
		if (fl.n < 2)
			list_files(dir, -1, &fl);
		int start = (int)below((uint64_t)fl.n), found = 0;
		for (int j = 0; j < fl.n && !found; j++) {
			const char *cand = fl.names[(start + j) % fl.n];
			snprintf(other, sizeof(other), "%s/%s", dir, cand);
			if (strcmp(cand, t->file) != 0 && !same_content(path, other)) {
				snprintf(t->other, sizeof(t->other), "%s", cand);
				found = 1;
			}
		}
		if (!found) {
			changed = 0;
			break;
		}
		snprintf(tmp, sizeof(tmp), "%s/swap.tmp", dir);
		if (rename(path, tmp) || rename(other, path) || rename(tmp, other))
			die("swap in %s", dir);
		snprintf(t->what, sizeof(t->what), "swapped with %s", t->other);
		break;
	}
	default:
		changed = 0;
	}
	free(data);
	return changed;
}

/* ---- judging --------------------------------------------------------------- */

/* After repair (-r): what the repaired database holds. */
struct after_repair {
	int ran, refused, opened, check_clean;
	unsigned exact, differ, absent, errors, resurrected;
};

struct verdict {
	int outcome;
	char detail[400];
	struct after_repair ar;
};

static int with_repair;

static void set_fail(struct verdict *v, int outcome, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));
static void set_fail(struct verdict *v, int outcome, const char *fmt, ...)
{
	if (v->outcome >= F_UNNAMED && v->outcome <= outcome)
		return; /* keep the most serious (lowest numbered) failure */
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(v->detail, sizeof(v->detail), fmt, ap);
	va_end(ap);
	v->outcome = outcome;
}

struct check_count {
	uint64_t n;
	char first[300];
};

static void on_problem(void *ctx, const char *file, uint64_t off, const char *what)
{
	struct check_count *c = ctx;
	if (!c->n++)
		snprintf(c->first, sizeof(c->first), "%s:%" PRIu64 ": %s", file, off, what);
}

static int key_index(const char *k, size_t len)
{
	if (len != 8 || memcmp(k, "key", 3) != 0)
		return -1;
	int i = 0;
	for (int j = 3; j < 8; j++) {
		if (k[j] < '0' || k[j] > '9')
			return -1;
		i = i * 10 + (k[j] - '0');
	}
	return i < NKEYS ? i : -1;
}

/* Reads reference key i into k / *val: cairn_get's result, or 1 for a key
 * never written. */
static int get_ref(struct cairn_db *db, int i, char *k, void **val, size_t *len)
{
	if (!refs[i].state)
		return 1;
	key_of(i, k);
	return cairn_get(db, NULL, k, strlen(k), val, len);
}

static void point_reads(struct cairn_db *db, struct verdict *v, int *errors)
{
	for (int i = 0; i < NKEYS; i++) {
		char k[16];
		void *val = NULL;
		size_t len = 0;
		int r = get_ref(db, i, k, &val, &len);
		if (r == 1)
			continue;
		if (refs[i].state == 1 && r == CAIRN_ENOTFOUND)
			set_fail(v, F_MISSING, "get %s: not found, wanted %zu bytes", k,
			         refs[i].len);
		else if (refs[i].state == 1 && r == 0 &&
		         (len != refs[i].len || memcmp(val, refs[i].val, len) != 0))
			set_fail(v, F_WRONG, "get %s: %zu bytes, not the %zu written last", k, len,
			         refs[i].len);
		else if (refs[i].state == 2 && r == 0)
			set_fail(v, F_RESURRECTED, "get %s: deleted key has %zu bytes", k, len);
		else if (r && r != CAIRN_ENOTFOUND)
			(*errors)++;
		cairn_free(val);
	}
}

static void scan(struct cairn_db *db, struct verdict *v, int *errors)
{
	struct cairn_iter *it = NULL;
	int seen[NKEYS] = {0};
	if (cairn_iter_new(db, NULL, &it)) {
		(*errors)++;
		return;
	}
	for (cairn_iter_seek_first(it); cairn_iter_valid(it); cairn_iter_next(it)) {
		size_t kl, vl;
		const char *k = cairn_iter_key(it, &kl);
		int i = key_index(k, kl);
		if (i < 0) {
			set_fail(v, F_SCAN, "scan: key '%.*s' was never written", (int)kl, k);
			continue;
		}
		seen[i] = 1;
		const void *val = cairn_iter_value(it, &vl);
		if (!val) {
			(*errors)++;
			continue;
		}
		if (refs[i].state == 2)
			set_fail(v, F_RESURRECTED, "scan: deleted key %.*s has %zu bytes", (int)kl,
			         k, vl);
		else if (refs[i].state == 1 && (vl != refs[i].len || memcmp(val, refs[i].val, vl)))
			set_fail(v, F_WRONG, "scan: %.*s has %zu bytes, not the %zu written last",
			         (int)kl, k, vl, refs[i].len);
	}
	if (cairn_iter_status(it))
		(*errors)++;
	cairn_iter_free(it);
	/* a scan that reported an error may have stopped short */
	for (int i = 0; !*errors && i < NKEYS; i++)
		if (refs[i].state == 1 && !seen[i]) {
			char k[16];
			key_of(i, k);
			set_fail(v, F_SCAN, "scan: live key %s silently missing", k);
		}
}

static void judge(const char *dir, const struct trial *t, struct verdict *v)
{
	struct check_count cc = {0};
	struct cairn_check_callbacks cb = {on_problem, NULL, &cc};
	uint64_t problems = 0;
	int cr = cairn_check(dir, &cb, &problems);
	struct cairn_options o;
	struct cairn_db *db = NULL;
	char err[1024] = "";
	set_options(&o);
	o.create_if_missing = 0;
	int r = cairn_open(dir, &o, &db, err, sizeof(err));
	if (r) {
		int named = strstr(err, t->file) || (t->other[0] && strstr(err, t->other));
		if (named)
			v->outcome = O_REFUSED;
		else
			set_fail(v, F_UNNAMED, "open refused (%s) without naming %s: %s",
			         cairn_strerror(r), t->file, err);
		return;
	}
	int errors = 0;
	point_reads(db, v, &errors);
	scan(db, v, &errors);
	cairn_close(db);
	if (v->outcome >= F_UNNAMED)
		return;
	if (cr || problems == 0) {
		set_fail(v, F_CHECK_SILENT,
		         "open accepted it and check found nothing (%s%d errors on reads)",
		         cr ? "check failed to run; " : "", errors);
		return;
	}
	v->outcome = errors ? O_ERRORS : O_CORRECT;
}

/* -r: repairs the damaged directory and reads every reference key of the
 * result. Repair cannot bring back what was lost, so these are figures, not
 * a verdict: how often it yields a database that opens and checks clean, and
 * how many keys read exactly as written last. */
static void judge_repair(const char *dir, struct after_repair *ar)
{
	struct cairn_options o;
	struct cairn_db *db = NULL;
	char err[1024];
	uint64_t problems = 1;
	set_options(&o);
	ar->ran = 1;
	if (cairn_repair(dir, &o, NULL, NULL, err, sizeof(err))) {
		ar->refused = 1;
		return;
	}
	o.create_if_missing = 0;
	if (cairn_open(dir, &o, &db, err, sizeof(err)))
		return;
	ar->opened = 1;
	for (int i = 0; i < NKEYS; i++) {
		char k[16];
		void *val = NULL;
		size_t len = 0;
		int r = get_ref(db, i, k, &val, &len);
		if (r == 1)
			continue;
		if (r && r != CAIRN_ENOTFOUND)
			ar->errors++;
		else if (refs[i].state == 2)
			r ? ar->exact++ : ar->resurrected++;
		else if (r)
			ar->absent++;
		else if (len == refs[i].len && memcmp(val, refs[i].val, len) == 0)
			ar->exact++;
		else
			ar->differ++;
		cairn_free(val);
	}
	cairn_close(db);
	ar->check_clean = cairn_check(dir, NULL, &problems) == 0 && problems == 0;
}

/* Runs one judged trial in a child: a crash or a hang becomes an outcome. */
static void run_judged(const char *dir, const struct trial *t, struct verdict *v)
{
	int fd[2];
	if (pipe(fd))
		die("pipe");
	fflush(NULL);
	pid_t pid = fork();
	if (pid < 0)
		die("fork");
	if (pid == 0) {
		close(fd[0]);
		alarm(TRIAL_TIMEOUT);
		struct verdict cv = {.outcome = O_CORRECT};
		if (with_repair < 2)
			judge(dir, t, &cv);
		if (with_repair)
			judge_repair(dir, &cv.ar);
		ssize_t w = write(fd[1], &cv, sizeof(cv));
		_exit(w == (ssize_t)sizeof(cv) ? 0 : 1);
	}
	close(fd[1]);
	ssize_t got = read(fd[0], v, sizeof(*v));
	close(fd[0]);
	int status = 0;
	waitpid(pid, &status, 0);
	if (got == (ssize_t)sizeof(*v))
		return;
	if (WIFSIGNALED(status) && WTERMSIG(status) == SIGALRM) {
		v->outcome = F_HANG;
		snprintf(v->detail, sizeof(v->detail), "no verdict in %d s", TRIAL_TIMEOUT);
	} else {
		v->outcome = F_CRASH;
		snprintf(v->detail, sizeof(v->detail), "the judge died (status %d)", status);
	}
}

/* ---- the run ---------------------------------------------------------------- */

static unsigned counts[NKINDS][NDAMAGES][NOUTCOMES];
static unsigned totals[NOUTCOMES];
static struct after_repair rtot;

static void add_repair(const struct after_repair *a)
{
	rtot.ran += a->ran;
	rtot.refused += a->refused;
	rtot.opened += a->opened;
	rtot.check_clean += a->check_clean;
	rtot.exact += a->exact;
	rtot.differ += a->differ;
	rtot.absent += a->absent;
	rtot.errors += a->errors;
	rtot.resurrected += a->resurrected;
}

static void print_summary(uint64_t seed, int trials)
{
	printf("\nseed %" PRIu64 ", %d trials\n", seed, trials);
	printf("%-9s %-9s", "file", "damage");
	for (int o = 0; o < NOUTCOMES; o++)
		printf(" %s", outcome_names[o]);
	printf("\n");
	for (int k = 0; k < NKINDS; k++)
		for (int d = 0; d < NDAMAGES; d++) {
			printf("%-9s %-9s", kind_names[k], damage_names[d]);
			for (int o = 0; o < NOUTCOMES; o++)
				printf(" %*u", (int)strlen(outcome_names[o]), counts[k][d][o]);
			printf("\n");
		}
	printf("%-19s", "total");
	for (int o = 0; o < NOUTCOMES; o++)
		printf(" %*u", (int)strlen(outcome_names[o]), totals[o]);
	printf("\n");
	if (rtot.ran)
		printf("after repair: %d trials, %d refused, %d opened, %d checked clean; "
		       "reference keys: %u exact, %u older value, %u absent, %u errors, "
		       "%u deleted come back\n",
		       rtot.ran, rtot.refused, rtot.opened, rtot.check_clean, rtot.exact,
		       rtot.differ, rtot.absent, rtot.errors, rtot.resurrected);
}

static void usage(void)
{
	fprintf(stderr, "usage: damage [-s SEED] [-n TRIALS] [-k DIR] [-r|-R] [-v]\n");
	exit(2);
}

int main(int argc, char **argv)
{
	uint64_t seed = 1;
	int trials = 120, verbose = 0, opt;
	const char *keep = NULL;
	while ((opt = getopt(argc, argv, "s:n:k:rRv")) != -1) {
		switch (opt) {
		case 's':
			seed = strtoull(optarg, NULL, 10);
			break;
		case 'n':
			trials = atoi(optarg);
			break;
		case 'k':
			keep = optarg;
			break;
		case 'r':
			with_repair = 1;
			break;
		case 'R':
			with_repair = 2;
			break;
		case 'v':
			verbose = 1;
			break;
		default:
			usage();
		}
	}
	counted_ops = *env_posix()->ops;
	counted_ops.now_ns = counter_now_ns;
	counted_env.ops = &counted_ops;
	counted_env.state = env_posix()->state;

	char root[4096];
	if (keep) {
		snprintf(root, sizeof(root), "%s", keep);
		mkdir(root, 0700);
	} else {
		snprintf(root, sizeof(root), "%s/cairn-damage.XXXXXX",
		         getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
		if (!mkdtemp(root))
			die("mkdtemp: %s", strerror(errno));
	}
	printf("damage: seed %" PRIu64 ", %d trials\n", seed, trials);
	fflush(stdout);
	uint64_t trng = 0;
	for (int n = 0; n < trials; n++) {
		if (n % BASE_EVERY == 0) {
			build_bases(root, seed * 1000003u + (uint64_t)(n / BASE_EVERY));
			trng = seed ^ ((uint64_t)n << 20) ^ 0x5851f42d4c957f2dull;
		}
		struct trial t = {.st = (enum state)(n % NSTATES),
		                  .dmg = (enum damage)((n / NSTATES) % NDAMAGES),
		                  .kind = (enum kind)((n / (NSTATES * NDAMAGES)) % NKINDS)};
		char base[4096], dir[4096];
		snprintf(base, sizeof(base), "%s/base/%s", root, state_names[t.st]);
		snprintf(dir, sizeof(dir), "%s/trial", root);
		run_cmd("rm -rf '%s' && cp -a '%s' '%s'", dir, base, dir);
		rng = trng = trng * 6364136223846793005ull + 1442695040888963407ull;
		if (!rng)
			rng = 1;
		struct flist fl;
		list_files(dir, (int)t.kind, &fl);
		struct verdict v = {.outcome = O_NA};
		if (fl.n) {
			snprintf(t.file, sizeof(t.file), "%s", fl.names[below((uint64_t)fl.n)]);
			if (apply_damage(dir, &t))
				run_judged(dir, &t, &v);
		}
		counts[t.kind][t.dmg][v.outcome]++;
		add_repair(&v.ar);
		totals[v.outcome]++;
		if (v.outcome >= F_UNNAMED)
			printf("FAIL %s:%s:%s:%s trial %d: %s %s: %s\n", state_names[t.st],
			       kind_names[t.kind], damage_names[t.dmg], outcome_names[v.outcome], n,
			       t.file, t.what, v.detail);
		else if (verbose)
			printf("ok   %s:%s:%s:%s trial %d: %s %s\n", state_names[t.st],
			       kind_names[t.kind], damage_names[t.dmg], outcome_names[v.outcome], n,
			       t.file, t.what);
		if (verbose && v.ar.ran)
			printf("     repaired: opened %d, check clean %d; %u exact, %u older, %u "
			       "absent, %u errors, %u deleted back\n",
			       v.ar.opened, v.ar.check_clean, v.ar.exact, v.ar.differ, v.ar.absent,
			       v.ar.errors, v.ar.resurrected);
		fflush(stdout);
	}
	print_summary(seed, trials);
	if (!keep)
		run_cmd("rm -rf '%s'", root);
	return 0;
}
