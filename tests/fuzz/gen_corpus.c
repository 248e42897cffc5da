/*
 * gen_corpus.c - writes the seed corpus of the fuzz targets from real files
 * made by the engine on the simulated env: a database with a flushed table,
 * a manifest and a live log, and blocks built directly. Run by
 * `scripts/fuzz --regen`; the output is committed in tests/fuzz/corpus/.
 * Deterministic: the same engine writes the same seeds.
 *   gen_corpus OUTDIR     (OUTDIR/fuzz_wal, OUTDIR/fuzz_block, ...)
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "block.h"
#include "dbformat.h"
#include "fuzz.h"
#include "version.h"

#define SEP "\n--cairn--\n"

static const char *outdir;

static void die(const char *what)
{
	fprintf(stderr, "gen_corpus: %s\n", what);
	exit(1);
}

static void save(const char *target, const char *name, const void *data, size_t n)
{
	char path[512];
	snprintf(path, sizeof(path), "%s/%s", outdir, target);
	mkdir(path, 0755);
	snprintf(path, sizeof(path), "%s/%s/%s", outdir, target, name);
	FILE *f = fopen(path, "wb");
	if (!f || fwrite(data, 1, n, f) != n || fclose(f))
		die(path);
}

struct names {
	char name[16][64];
	int n;
};

static int add_name(void *ctx, const char *name)
{
	struct names *ns = ctx;
	if (ns->n < 16 && strcmp(name, "LOCK") != 0)
		snprintf(ns->name[ns->n++], 64, "%s", name);
	return 0;
}

static int name_cmp(const void *a, const void *b)
{
	return strcmp(a, b);
}

/* A database of nkeys keys with values of vlen bytes: the first half flushed
 * to a table, the rest left in the log by a crash (so the log survives). */
static struct cairn_env *make_db(int nkeys, size_t vlen, int compression, uint64_t seed)
{
	struct cairn_env *env = fuzz_env();
	struct cairn_options o;
	struct cairn_db *db;
	char key[32], val[512], err[256];
	uint64_t rng = seed;

	if (!env)
		die("env");
	fuzz_options(&o, env);
	o.create_if_missing = 1;
	o.compression = compression;
	if (cairn_open("/db", &o, &db, err, sizeof(err)))
		die(err);
	for (int i = 0; i < nkeys; i++) {
		int kl = snprintf(key, sizeof(key), "key%06d", i * 7);
		for (size_t j = 0; j < vlen; j++)
			val[j] = compression ? (char)('a' + j % 4) : (char)prng_next(&rng);
		if (i % 5 == 4)
			cairn_delete(db, key, (size_t)kl - 1, 0);
		if (cairn_put(db, key, (size_t)kl, val, vlen, i == nkeys - 1 ? CAIRN_SYNC : 0))
			die("put");
		if ((i == nkeys / 3 || i == 2 * nkeys / 3) && cairn_flush(db))
			die("flush");
	}
	env_sim_crash(env);
	cairn_close(db);
	env_sim_reboot(env);
	return env;
}

static char *read_file(struct cairn_env *env, const char *name, size_t *n)
{
	char path[128], *data;
	snprintf(path, sizeof(path), "/db/%s", name);
	if (env_sim_read_file(env, path, &data, n))
		die(path);
	return data;
}

static void seeds_from_db(int idx, int nkeys, size_t vlen, int compression)
{
	struct cairn_env *env = make_db(nkeys, vlen, compression, (uint64_t)idx + 1);
	struct names ns = {.n = 0};
	struct buf image = {0};
	char seedname[64];

	env_list_dir(env, "/db", add_name, &ns);
	qsort(ns.name, (size_t)ns.n, sizeof(ns.name[0]), name_cmp);
	for (int i = 0; i < ns.n; i++) {
		size_t n;
		char *data = read_file(env, ns.name[i], &n);
		const char *target = NULL;
		if (strstr(ns.name[i], ".log"))
			target = "fuzz_wal";
		else if (strstr(ns.name[i], ".sst"))
			target = "fuzz_table";
		else if (strncmp(ns.name[i], "MANIFEST-", 9) == 0)
			target = "fuzz_manifest";
		if (target && n) {
			snprintf(seedname, sizeof(seedname), "db%d-%s", idx, ns.name[i]);
			save(target, seedname, data, n);
			if (strcmp(target, "fuzz_manifest") == 0)
				save("fuzz_wal", seedname, data, n);
		}
		if (image.len)
			buf_append(&image, SEP, sizeof(SEP) - 1);
		buf_append(&image, ns.name[i], strlen(ns.name[i]) + 1);
		buf_append(&image, data, n);
		free(data);
	}
	snprintf(seedname, sizeof(seedname), "db%d-image", idx);
	save("fuzz_open", seedname, image.data, image.len);
	buf_free(&image);
	env_sim_free(env);
}

static void block_seeds(void)
{
	static const int intervals[] = {1, 4, 16};
	for (int s = 0; s < 3; s++) {
		struct block_builder bb;
		struct buf k = {0};
		struct slice out;
		char key[32], name[32];
		bb_init(&bb, intervals[s]);
		for (int i = 0; i < 40 + 20 * s; i++) {
			buf_clear(&k);
			int kl = snprintf(key, sizeof(key), "key%06d", i * 3);
			ikey_append(&k, slice_make(key, (size_t)kl), 100 + (uint64_t)i,
			            i % 7 ? TYPE_VALUE : TYPE_DELETION);
			bb_add(&bb, buf_slice(&k), slice_make("value-value", (size_t)(i % 12)));
		}
		if (bb_finish(&bb, &out))
			die("bb_finish");
		snprintf(name, sizeof(name), "block-r%d", intervals[s]);
		save("fuzz_block", name, out.data, out.len);
		bb_free(&bb);
		buf_free(&k);
	}
}

static void edit_seed(void)
{
	struct version_edit e;
	struct buf out = {0}, a = {0}, b = {0};
	edit_init(&e);
	e.has_log_number = e.has_next_file = e.has_last_seq = 1;
	e.log_number = 4;
	e.next_file_number = 9;
	e.last_sequence = 300;
	ikey_append(&a, slice_make("key000000", 9), 5, TYPE_VALUE);
	ikey_append(&b, slice_make("key000700", 9), 90, TYPE_VALUE);
	edit_add_file(&e, 0, 5, 4000, buf_slice(&a), buf_slice(&b), 5, 90, 100);
	edit_add_file(&e, 1, 7, 8000, buf_slice(&a), buf_slice(&b), 1, 80, 200);
	edit_delete_file(&e, 1, 3);
	edit_set_pointer(&e, 1, buf_slice(&b));
	if (edit_encode(&e, &out))
		die("edit_encode");
	save("fuzz_manifest", "edit-1", out.data, out.len);
	edit_free(&e);
	buf_free(&out);
	buf_free(&a);
	buf_free(&b);
}

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: gen_corpus OUTDIR\n");
		return 2;
	}
	outdir = argv[1];
	mkdir(outdir, 0755);
	seeds_from_db(1, 60, 24, 1);
	seeds_from_db(2, 40, 40, 0);
	seeds_from_db(3, 12, 8, 1);
	block_seeds();
	edit_seed();
	return 0;
}
