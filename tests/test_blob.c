/*
 * test_blob.c - large values in blob files: the file format (records, chunk
 * checksums, range reads, scanning), and the engine around it: values from 0
 * bytes to far over the memtable, a 256 MiB stream in bounded memory, range
 * reads at the edges, overwrite, delete and reopen, the reference model
 * through garbage collection, power loss while streaming and while
 * collecting, a log that outlived the unsynced blob bytes it refers to, and
 * damaged or missing blob files.
 */
#include "testutil.h"

#include "blob.h"
#include "db.h"

/* ---- the file format ---- */

static void fill(char *p, size_t n, uint64_t seed)
{
	uint64_t s = seed;
	for (size_t i = 0; i < n; i++) {
		if (i % 8 == 0)
			s = prng_next(&s) ^ i;
		p[i] = (char)(s >> (8 * (i % 8)));
	}
}

static const size_t sizes[] = {0, 1, 65535, 65536, 65537, 3 * 65536 + 5, 131072};
#define NSIZES (sizeof(sizes) / sizeof(sizes[0]))

static int count_rec(void *ctx, const struct blob_record *rec)
{
	(void)rec;
	(*(int *)ctx)++;
	return 0;
}

Test(blob, records_read_back_whole_and_in_ranges_at_chunk_edges)
{
	struct cairn_env *env;
	cr_assert_eq(env_sim_new(1, 0, &env), 0);
	env_mkdir(env, "/d");
	struct blob_writer *w;
	cr_assert_eq(blob_writer_create(env, "/d/000005.blob", 5, &w), 0);
	struct blob_ref refs[NSIZES];
	char *data = malloc(200000), *out = malloc(200000);
	for (size_t i = 0; i < NSIZES; i++) {
		fill(data, sizes[i], i);
		char key[16];
		int kl = sprintf(key, "k%zu", i);
		cr_assert_eq(blob_writer_begin(w, slice_make(key, (size_t)kl)), 0);
		/* in odd pieces, so chunk edges fall inside appends */
		for (size_t off = 0; off < sizes[i]; off += 777)
			cr_assert_eq(
			        blob_writer_append(w, data + off,
			                           sizes[i] - off < 777 ? sizes[i] - off : 777),
			        0);
		cr_assert_eq(blob_writer_end(w, &refs[i]), 0);
		cr_assert_eq(refs[i].size, sizes[i]);
		cr_assert_eq(refs[i].file, 5);
	}
	cr_assert_eq(blob_writer_sync(w), 0);
	uint64_t size = blob_writer_size(w);
	blob_writer_close(w);

	struct blob_reader *rd;
	char err[256];
	cr_assert_eq(blob_reader_open(env, "/d/000005.blob", &rd, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(blob_reader_file_size(rd), size);
	for (size_t i = 0; i < NSIZES; i++) {
		char key[16];
		int kl = sprintf(key, "k%zu", i);
		struct slice k = slice_make(key, (size_t)kl);
		fill(data, sizes[i], i);
		size_t got;
		cr_assert_eq(blob_read(rd, &refs[i], k, 0, out, 200000, &got, err, sizeof(err)), 0,
		             "%s", err);
		cr_assert_eq(got, sizes[i]);
		cr_assert(memcmp(out, data, got) == 0);
		/* ranges around every chunk edge and the end */
		uint64_t offs[] = {0,        1,
		                   65535,    65536,
		                   65537,    sizes[i] ? sizes[i] - 1 : 0,
		                   sizes[i], sizes[i] + 10};
		for (size_t o = 0; o < sizeof(offs) / sizeof(offs[0]); o++) {
			for (size_t len = 1; len <= 70000; len += 69999) {
				cr_assert_eq(blob_read(rd, &refs[i], k, offs[o], out, len, &got,
				                       err, sizeof(err)),
				             0, "%s", err);
				size_t want = offs[o] >= sizes[i]        ? 0
				              : sizes[i] - offs[o] < len ? sizes[i] - offs[o]
				                                         : len;
				cr_assert_eq(got, want, "size %zu off %llu len %zu", sizes[i],
				             (unsigned long long)offs[o], len);
				cr_assert(memcmp(out, data + offs[o], got) == 0);
			}
		}
		/* the wrong key or a stale header checksum is refused */
		cr_assert_eq(blob_read(rd, &refs[i], slice_make("zz", 2), 0, out, 1, &got, err,
		                       sizeof(err)),
		             CAIRN_ECORRUPT);
		struct blob_ref bad = refs[i];
		bad.hcrc ^= 1;
		cr_assert_eq(blob_read(rd, &bad, k, 0, out, 1, &got, err, sizeof(err)),
		             CAIRN_ECORRUPT);
	}
	int n = 0;
	uint64_t good;
	cr_assert_eq(blob_scan(rd, UINT64_MAX, 1, count_rec, &n, &good, err, sizeof(err)), 0, "%s",
	             err);
	cr_assert_eq(n, (int)NSIZES);
	cr_assert_eq(good, size);
	blob_reader_close(rd);

	/* a record cut short is torn, not damage */
	char *bytes;
	size_t blen;
	cr_assert_eq(env_sim_read_file(env, "/d/000005.blob", &bytes, &blen), 0);
	cr_assert_eq(env_sim_write_file(env, "/d/000006.blob", bytes, blen - 100), 0);
	cr_assert_eq(blob_reader_open(env, "/d/000006.blob", &rd, err, sizeof(err)), 0);
	n = 0;
	cr_assert_eq(blob_scan(rd, UINT64_MAX, 1, count_rec, &n, &good, err, sizeof(err)),
	             BLOB_SCAN_TORN);
	cr_assert_eq(n, (int)NSIZES - 1);
	blob_reader_close(rd);
	free(bytes);
	free(data);
	free(out);
	env_sim_free(env);
}

/* Unsynced records may already be referred to when an append fails: a sync
 * must still make them durable. A failed sync is never retried. */
Test(blob, writer_syncs_after_a_failed_append_but_never_after_a_failed_sync)
{
	struct cairn_env *env;
	cr_assert_eq(env_sim_new(2, 0, &env), 0);
	env_mkdir(env, "/d");
	struct blob_writer *w;
	struct blob_ref ref, ref2;
	char *data = malloc(3u << 20);
	fill(data, 3u << 20, 9);
	cr_assert_eq(blob_writer_create(env, "/d/000005.blob", 5, &w), 0);
	cr_assert_eq(env_sync_dir(env, "/"), 0);
	cr_assert_eq(env_sync_dir(env, "/d"), 0);
	cr_assert_eq(blob_writer_begin(w, slice_make("a", 1)), 0);
	cr_assert_eq(blob_writer_append(w, data, 100000), 0);
	cr_assert_eq(blob_writer_end(w, &ref), 0);
	env_sim_fail_all(env, SIM_FAULT_ENOSPC);
	cr_assert_eq(blob_writer_begin(w, slice_make("b", 1)), 0);
	int r = blob_writer_append(w, data, 3u << 20);
	if (!r)
		r = blob_writer_end(w, &ref2);
	cr_assert_eq(r, CAIRN_ENOSPC);
	env_sim_fail_all(env, SIM_FAULT_NONE);
	cr_assert_eq(blob_writer_sync(w), 0);
	cr_assert_eq(blob_writer_synced_size(w), blob_writer_good_size(w));
	cr_assert_eq(blob_writer_good_size(w), ref.offset + blob_record_size(1, 100000));
	cr_assert_eq(blob_writer_begin(w, slice_make("c", 1)), CAIRN_ENOSPC);
	blob_writer_close(w);
	env_sim_crash(env);
	env_sim_reboot(env);
	struct blob_reader *rd;
	char err[256], *out = malloc(100000);
	size_t got;
	cr_assert_eq(blob_reader_open(env, "/d/000005.blob", &rd, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(blob_check(rd, &ref, slice_make("a", 1), err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(
	        blob_read(rd, &ref, slice_make("a", 1), 0, out, 100000, &got, err, sizeof(err)), 0,
	        "%s", err);
	cr_assert(got == 100000 && memcmp(out, data, got) == 0);
	blob_reader_close(rd);

	cr_assert_eq(blob_writer_create(env, "/d/000006.blob", 6, &w), 0);
	cr_assert_eq(blob_writer_begin(w, slice_make("a", 1)), 0);
	cr_assert_eq(blob_writer_append(w, data, 1000), 0);
	cr_assert_eq(blob_writer_end(w, &ref), 0);
	env_sim_fail_all(env, SIM_FAULT_EIO);
	cr_assert_eq(blob_writer_sync(w), CAIRN_EIO);
	env_sim_fail_all(env, SIM_FAULT_NONE);
	cr_assert_eq(blob_writer_sync(w), CAIRN_EIO);
	cr_assert_eq(blob_writer_synced_size(w), BLOB_FILE_HEADER);
	blob_writer_close(w);
	free(out);
	free(data);
	env_sim_free(env);
}

Test(blob, references_encode_and_refuse_damage)
{
	struct blob_ref r = {.file = 77, .offset = 16, .size = 1ull << 40, .hcrc = 0xdeadbeef}, d;
	struct buf b = {0};
	cr_assert_eq(blob_ref_encode(&r, &b), 0);
	cr_assert_eq(blob_ref_decode(buf_slice(&b), &d), 0);
	cr_assert(d.file == 77 && d.offset == 16 && d.size == 1ull << 40 && !d.has_time);
	r.has_time = 1;
	r.time_ns = -5;
	buf_clear(&b);
	cr_assert_eq(blob_ref_encode(&r, &b), 0);
	cr_assert_eq(blob_ref_decode(buf_slice(&b), &d), 0);
	cr_assert(d.has_time && d.time_ns == -5);
	for (size_t n = 0; n < b.len; n++)
		if (n != b.len - 8)
			cr_assert_eq(blob_ref_decode(slice_make(b.data, n), &d), CAIRN_ECORRUPT,
			             "prefix %zu", n);
	buf_free(&b);
}

/* ---- the engine ---- */

static struct cairn_db *open_posix(const char *dir)
{
	struct cairn_options o;
	cairn_options_init(&o);
	o.sync_interval_ms = 0;
	return tu_open(dir, &o);
}

static void expect_blob_value(struct cairn_db *db, const char *key, size_t n, uint64_t seed)
{
	void *v;
	size_t vl;
	char *want = malloc(n ? n : 1);
	fill(want, n, seed);
	int r = cairn_get(db, NULL, key, strlen(key), &v, &vl);
	cr_assert_eq(r, 0, "get %s: %s", key, cairn_strerror(r));
	cr_assert_eq(vl, n, "%s: %zu bytes, want %zu", key, vl, n);
	cr_assert(memcmp(v, want, n) == 0, "%s differs", key);
	struct cairn_key_info info;
	cr_assert_eq(cairn_key_info(db, NULL, key, strlen(key), &info), 0);
	cr_assert_eq(info.size, n);
	/* ranges at the edges */
	char buf[70000];
	uint64_t offs[] = {0, 65535, 65536, n ? n - 1 : 0, n, n + 1};
	for (size_t i = 0; i < sizeof(offs) / sizeof(offs[0]); i++) {
		size_t got;
		cr_assert_eq(cairn_get_range(db, NULL, key, strlen(key), offs[i], buf, sizeof(buf),
		                             &got),
		             0);
		size_t w = offs[i] >= n ? 0 : n - offs[i] < sizeof(buf) ? n - offs[i] : sizeof(buf);
		cr_assert_eq(got, w);
		cr_assert(memcmp(buf, want + offs[i], got) == 0);
	}
	cairn_free(v);
	free(want);
}

Test(blob, values_from_empty_to_over_the_memtable_survive_overwrite_delete_reopen)
{
	char *dir = tu_tmpdir("blob");
	struct cairn_db *db = open_posix(dir);
	size_t ns[] = {0, 100, 65535, 65536, 65537, 1u << 20, 6u << 20};
	size_t N = sizeof(ns) / sizeof(ns[0]);
	char *v = malloc(6u << 20);
	char key[16];
	for (size_t i = 0; i < N; i++) {
		sprintf(key, "k%zu", i);
		fill(v, ns[i], i);
		cr_assert_eq(cairn_put(db, key, strlen(key), v, ns[i], 0), 0);
	}
	for (size_t i = 0; i < N; i++) {
		sprintf(key, "k%zu", i);
		expect_blob_value(db, key, ns[i], i);
	}
	struct cairn_stats st;
	cairn_stats_get(db, &st);
	cr_assert_geq(st.blob_files, 1);
	cr_assert_geq(st.blob_bytes_live, (6u << 20) + (1u << 20));
	cr_assert_lt(st.memtable_bytes, 1u << 20, "large values stayed out of the memtable");
	/* overwrite large with small and small with large, delete one */
	fill(v, 200000, 100);
	cr_assert_eq(cairn_put(db, "k1", 2, v, 200000, 0), 0);
	fill(v, 10, 101);
	cr_assert_eq(cairn_put(db, "k6", 2, v, 10, 0), 0);
	cr_assert_eq(cairn_delete(db, "k5", 2, 0), 0);
	cairn_close(db);
	db = open_posix(dir);
	expect_blob_value(db, "k1", 200000, 100);
	expect_blob_value(db, "k6", 10, 101);
	expect_blob_value(db, "k4", 65537, 4);
	void *x;
	size_t xl;
	cr_assert_eq(cairn_get(db, NULL, "k5", 2, &x, &xl), CAIRN_ENOTFOUND);
	/* compaction counts the garbage, collection frees it */
	cr_assert_eq(cairn_compact_range(db, NULL, 0, NULL, 0), 0);
	cairn_stats_get(db, &st);
	cr_assert_geq(st.blob_collections, 1, "garbage %llu",
	              (unsigned long long)st.blob_bytes_garbage);
	expect_blob_value(db, "k4", 65537, 4);
	expect_blob_value(db, "k1", 200000, 100);
	expect_blob_value(db, "k3", 65536, 3);
	/* iterators read blob values too */
	struct cairn_iter *it;
	cr_assert_eq(cairn_iter_new(db, NULL, &it), 0);
	cairn_iter_seek(it, "k4", 2);
	cr_assert(cairn_iter_valid(it));
	size_t il;
	const void *iv = cairn_iter_value(it, &il);
	fill(v, 65537, 4);
	cr_assert(iv && il == 65537 && memcmp(iv, v, il) == 0);
	struct cairn_key_info info;
	cairn_iter_info(it, &info);
	cr_assert_eq(info.size, 65537);
	cairn_iter_free(it);
	cairn_close(db);
	free(v);
	tu_rmrf(dir);
}

static uint64_t rss_kib(void)
{
	FILE *f = fopen("/proc/self/status", "r");
	char line[256];
	uint64_t kib = 0;
	while (f && fgets(line, sizeof(line), f))
		if (sscanf(line, "VmRSS: %llu", (unsigned long long *)&kib) == 1)
			break;
	if (f)
		fclose(f);
	return kib;
}

Test(blob, stream_of_256_mib_keeps_memory_bounded_and_reads_back_by_ranges, .timeout = 120)
{
	char *dir = tu_tmpdir("blob");
	struct cairn_db *db = open_posix(dir);
	const size_t piece = 1u << 20, total = 256u << 20;
	char *p = malloc(piece);
	uint64_t rss0 = rss_kib(), rss_max = rss0;
	uint32_t crc = 0;
	struct cairn_stream *s;
	cr_assert_eq(cairn_stream_new(db, "big", 3, &s), 0);
	for (size_t off = 0; off < total; off += piece) {
		fill(p, piece, off);
		crc = crc32c_extend(crc, p, piece);
		cr_assert_eq(cairn_stream_write(s, p, piece), 0);
		uint64_t r = rss_kib();
		rss_max = r > rss_max ? r : rss_max;
	}
	/* readers see the old state until the commit */
	void *v;
	size_t vl;
	cr_assert_eq(cairn_get(db, NULL, "big", 3, &v, &vl), CAIRN_ENOTFOUND);
	cr_assert_eq(cairn_stream_commit(s, CAIRN_SYNC), 0);
	cr_assert_lt(rss_max - rss0, 64u << 10, "RSS grew by %llu KiB while streaming",
	             (unsigned long long)(rss_max - rss0));
	cairn_close(db);
	db = open_posix(dir);
	struct cairn_key_info info;
	cr_assert_eq(cairn_key_info(db, NULL, "big", 3, &info), 0);
	cr_assert_eq(info.size, total);
	cr_assert_eq(cairn_get(db, NULL, "big", 3, &v, &vl), CAIRN_ETOOBIG);
	uint32_t back = 0;
	for (uint64_t off = 0; off < total;) {
		size_t got;
		cr_assert_eq(cairn_get_range(db, NULL, "big", 3, off, p, piece, &got), 0);
		cr_assert_gt(got, 0);
		back = crc32c_extend(back, p, got);
		off += got;
	}
	cr_assert_eq(back, crc);
	cairn_close(db);
	free(p);
	tu_rmrf(dir);
}

Test(blob, aborted_stream_changes_nothing)
{
	char *dir = tu_tmpdir("blob");
	struct cairn_db *db = open_posix(dir);
	cr_assert_eq(cairn_put(db, "k", 1, "old", 3, 0), 0);
	struct cairn_stream *s;
	cr_assert_eq(cairn_stream_new(db, "k", 1, &s), 0);
	char buf[100000];
	fill(buf, sizeof(buf), 9);
	cr_assert_eq(cairn_stream_write(s, buf, sizeof(buf)), 0);
	cairn_stream_abort(s);
	void *v;
	size_t vl;
	cr_assert_eq(cairn_get(db, NULL, "k", 1, &v, &vl), 0);
	cr_assert(vl == 3 && memcmp(v, "old", 3) == 0);
	cairn_free(v);
	/* an empty stream is an empty value */
	cr_assert_eq(cairn_stream_new(db, "k", 1, &s), 0);
	cr_assert_eq(cairn_stream_commit(s, 0), 0);
	cr_assert_eq(cairn_get(db, NULL, "k", 1, &v, &vl), 0);
	cr_assert_eq(vl, 0);
	cairn_free(v);
	cairn_close(db);
	tu_rmrf(dir);
}

/* ---- damage ---- */

struct probs {
	int n;
	char last[512];
};

static void on_problem(void *ctx, const char *file, uint64_t off, const char *what)
{
	struct probs *p = ctx;
	(void)off;
	p->n++;
	snprintf(p->last, sizeof(p->last), "%s: %s", file, what);
}

static void flip_byte(const char *path, long off)
{
	FILE *f = fopen(path, "r+b");
	cr_assert_not_null(f);
	fseek(f, off, SEEK_SET);
	int c = fgetc(f);
	fseek(f, off, SEEK_SET);
	fputc(c ^ 0x40, f);
	fclose(f);
}

Test(blob, damaged_or_missing_blob_file_is_a_clear_corruption_error)
{
	char *dir = tu_tmpdir("blob");
	struct cairn_db *db = open_posix(dir);
	char *v = malloc(300000);
	fill(v, 300000, 1);
	cr_assert_eq(cairn_put(db, "victim", 6, v, 300000, CAIRN_SYNC), 0);
	cairn_close(db);
	char path[512], msg[512];
	/* the only blob file: find it by its number in the directory */
	char cmd[600];
	snprintf(cmd, sizeof(cmd), "ls %s | grep blob", dir);
	FILE *ls = popen(cmd, "r");
	char name[64] = "";
	cr_assert_not_null(fgets(name, sizeof(name), ls));
	pclose(ls);
	name[strcspn(name, "\n")] = 0;
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	flip_byte(path, 16 + 8 + 6 + 4 + 70000); /* inside chunk 1 */

	db = open_posix(dir);
	void *x;
	size_t xl, got;
	cr_assert_eq(cairn_get(db, NULL, "victim", 6, &x, &xl), CAIRN_ECORRUPT);
	cairn_errmsg(db, msg, sizeof(msg));
	cr_assert(strstr(msg, "victim") && strstr(msg, name), "%s", msg);
	/* chunk 0 is intact and still readable */
	cr_assert_eq(cairn_get_range(db, NULL, "victim", 6, 0, v, 1000, &got), 0);
	cr_assert_eq(got, 1000);
	cr_assert_eq(cairn_get_range(db, NULL, "victim", 6, 65536, v, 1000, &got), CAIRN_ECORRUPT);
	cairn_close(db);
	struct probs p = {0};
	struct cairn_check_callbacks cb = {.problem = on_problem, .ctx = &p};
	uint64_t n = 0;
	cr_assert_eq(cairn_check(dir, &cb, &n), 0);
	cr_assert_geq(n, 1);
	cr_assert(strstr(p.last, name), "%s", p.last);

	unlink(path);
	db = open_posix(dir);
	cr_assert_eq(cairn_get(db, NULL, "victim", 6, &x, &xl), CAIRN_ECORRUPT);
	cairn_errmsg(db, msg, sizeof(msg));
	cr_assert(strstr(msg, "victim") && strstr(msg, "missing"), "%s", msg);
	cairn_close(db);
	free(v);
	tu_rmrf(dir);
}

/* ---- the reference model through garbage collection, on the sim env ---- */

static void sim_options(struct cairn_options *o, struct cairn_env *env)
{
	tu_small_options(o, env);
	o->blob_threshold = 512;
	o->blob_file_size = 1u << 20;
	o->blob_gc_ratio = 0.3;
}

/* Values: mostly small, some large (to blobs), some over a chunk. */
static size_t model_value(char *out, int id, uint64_t version, uint64_t *rng)
{
	size_t n = (size_t)prng_below(rng, 300);
	uint64_t k = prng_below(rng, 10);
	if (k < 4)
		n = 512 + (size_t)prng_below(rng, 4000);
	else if (k == 4)
		n = 60000 + (size_t)prng_below(rng, 20000);
	int head = sprintf(out, "v%d.%llu:", id, (unsigned long long)version);
	for (size_t i = (size_t)head; i < n; i++)
		out[i] = (char)('a' + (i * 13 + (size_t)id + version) % 26);
	return n < (size_t)head ? (size_t)head : n;
}

static void model_ops(struct cairn_db *db, struct tu_model *m, uint64_t *rng, uint64_t *version,
                      int ops, int keys)
{
	static char val[90000];
	char key[32];
	for (int i = 0; i < ops; i++) {
		int id = (int)prng_below(rng, (uint64_t)keys);
		int kl = tu_key(key, id);
		if (prng_below(rng, 6) == 0) {
			cr_assert_eq(cairn_delete(db, key, (size_t)kl, 0), 0);
			tu_model_del(m, id);
		} else {
			size_t n = model_value(val, id, ++*version, rng);
			cr_assert_eq(cairn_put(db, key, (size_t)kl, val, n, 0), 0);
			tu_model_put(m, id, val, n);
		}
	}
}

Test(blob, model_with_small_and_large_values_holds_through_collection, .timeout = 120)
{
	uint64_t seed = 42;
	struct cairn_env *env;
	cr_assert_eq(env_sim_new(seed, 1000, &env), 0);
	struct cairn_options o;
	sim_options(&o, env);
	struct cairn_db *db = tu_open("/db", &o);
	struct tu_model m = {0};
	uint64_t rng = seed, version = 0;
	const struct cairn_snapshot *snap = NULL;
	struct tu_model at_snap = {0};
	for (int round = 0; round < 6; round++) {
		model_ops(db, &m, &rng, &version, 400, 120);
		if (round == 1) {
			cr_assert_eq(cairn_snapshot_new(db, &snap), 0);
			tu_model_copy(&at_snap, &m);
		}
		cr_assert_eq(cairn_compact_range(db, NULL, 0, NULL, 0), 0);
		tu_check_model(db, NULL, &m, seed, "after collection");
		if (snap)
			tu_check_model(db, snap, &at_snap, seed, "snapshot after collection");
		if (round == 3) {
			cairn_snapshot_release(db, snap);
			snap = NULL;
			cairn_close(db);
			db = tu_open("/db", &o);
			tu_check_model(db, NULL, &m, seed, "after reopen");
		}
	}
	struct cairn_stats st;
	cairn_stats_get(db, &st);
	cr_assert_gt(st.blob_collections, 0);
	cr_assert_gt(st.blob_bytes_moved, 0);
	cairn_close(db);
	db = tu_open("/db", &o);
	tu_check_model(db, NULL, &m, seed, "final reopen");
	cairn_close(db);
	tu_model_free(&m);
	tu_model_free(&at_snap);
	env_sim_free(env);
}

/* ---- power loss ---- */

/* Builds a database whose blob files are mostly garbage, returning the model
 * (everything written synced). */
static struct cairn_db *garbage_db(struct cairn_env *env, struct cairn_options *o,
                                   struct tu_model *m)
{
	uint64_t rng = 7, version = 0;
	struct cairn_db *db = tu_open("/db", o);
	model_ops(db, m, &rng, &version, 300, 40);
	model_ops(db, m, &rng, &version, 300, 40);
	cr_assert_eq(cairn_sync(db), 0);
	(void)env;
	return db;
}

Test(blob, power_loss_at_every_point_of_a_collection_loses_no_live_value, .timeout = 120)
{
	/* Count the write points of the manual compaction + collection. */
	struct cairn_env *env;
	struct cairn_options o;
	struct tu_model m = {0};
	cr_assert_eq(env_sim_new(3, 1000, &env), 0);
	sim_options(&o, env);
	struct cairn_db *db = garbage_db(env, &o, &m);
	uint64_t before = env_sim_write_points(env);
	cr_assert_eq(cairn_compact_range(db, NULL, 0, NULL, 0), 0);
	uint64_t points = env_sim_write_points(env) - before;
	struct cairn_stats st;
	cairn_stats_get(db, &st);
	cr_assert_gt(st.blob_collections, 0);
	cairn_close(db);
	env_sim_free(env);
	tu_model_free(&m);

	uint64_t step = points / 60 + 1;
	for (uint64_t k = 1; k <= points; k += step) {
		struct tu_model mm = {0};
		cr_assert_eq(env_sim_new(3, 1000, &env), 0);
		sim_options(&o, env);
		db = garbage_db(env, &o, &mm);
		env_sim_arm(env, k, SIM_FAULT_CRASH);
		cairn_compact_range(db, NULL, 0, NULL, 0);
		cairn_close(db);
		env_sim_crash(env);
		env_sim_reboot(env);
		char when[64];
		sprintf(when, "crash at point %llu of %llu", (unsigned long long)k,
		        (unsigned long long)points);
		db = tu_open("/db", &o);
		tu_check_model(db, NULL, &mm, k, when);
		/* and a collection after recovery finishes the job */
		cr_assert_eq(cairn_compact_range(db, NULL, 0, NULL, 0), 0);
		tu_check_model(db, NULL, &mm, k, when);
		cairn_close(db);
		tu_model_free(&mm);
		env_sim_free(env);
	}
}

static int count_blob_file(void *ctx, const char *name)
{
	size_t n = strlen(name);
	if (n > 5 && !strcmp(name + n - 5, ".blob"))
		(*(uint64_t *)ctx)++;
	return 0;
}

/* Blob files about half garbage, so a collection copies live values to a
 * new file (everything written synced). */
static struct cairn_db *half_live_db(struct cairn_options *o, struct tu_model *m)
{
	struct cairn_db *db = tu_open("/db", o);
	char key[32], val[2000];
	for (int round = 0; round < 2; round++) {
		for (int id = 0; id < (round ? 400 : 700); id++) {
			int kl = tu_key(key, id);
			size_t n = sizeof(val);
			memset(val, 'a' + id % 26, n);
			n -= (size_t)(id %
			              100); /* a blob value, its length and bytes per version */
			val[0] = (char)('0' + round);
			cr_assert_eq(cairn_put(db, key, (size_t)kl, val, n, 0), 0);
			tu_model_put(m, id, val, n);
		}
	}
	cr_assert_eq(cairn_sync(db), 0);
	return db;
}

/* A manifest append that succeeds with a sync that fails leaves the edit in
 * the file: a collection whose output file the failed edit named must leave
 * that file for recovery rather than delete it (seed 78 of tests/sim). */
Test(blob, failed_manifest_write_of_a_collection_never_deletes_a_file_it_named, .timeout = 120)
{
	struct cairn_env *env;
	struct cairn_options o;
	struct tu_model m = {0};
	cr_assert_eq(env_sim_new(3, 1000, &env), 0);
	sim_options(&o, env);
	struct cairn_db *db = half_live_db(&o, &m);
	uint64_t before = env_sim_write_points(env);
	cr_assert_eq(cairn_compact_range(db, NULL, 0, NULL, 0), 0);
	uint64_t points = env_sim_write_points(env) - before;
	cairn_close(db);
	env_sim_free(env);
	tu_model_free(&m);

	for (uint64_t k = 1; k <= points; k++) {
		struct tu_model mm = {0};
		struct cairn_stats st;
		uint64_t on_disk = 0;
		char when[64];
		cr_assert_eq(env_sim_new(3, 1000, &env), 0);
		sim_options(&o, env);
		db = half_live_db(&o, &mm);
		env_sim_arm(env, k, SIM_FAULT_ENOSPC);
		cairn_compact_range(db, NULL, 0, NULL, 0);
		cairn_close(db);
		sprintf(when, "ENOSPC at point %llu of %llu", (unsigned long long)k,
		        (unsigned long long)points);
		db = tu_open("/db", &o);
		tu_check_model(db, NULL, &mm, k, when);
		cairn_stats_get(db, &st);
		cr_assert_eq(env_list_dir(env, "/db", count_blob_file, &on_disk), 0);
		cr_assert_geq(on_disk, st.blob_files,
		              "%s: %llu blob files on disk, the version names %llu", when,
		              (unsigned long long)on_disk, (unsigned long long)st.blob_files);
		cairn_close(db);
		tu_model_free(&mm);
		env_sim_free(env);
	}
}

struct saved_file {
	char name[64];
	char *data;
	size_t len;
};

struct saved_files {
	struct cairn_env *env;
	const char *suffix;
	struct saved_file f[8];
	int n;
};

static int save_file(void *ctx, const char *name)
{
	struct saved_files *s = ctx;
	size_t nl = strlen(name), sl = strlen(s->suffix);
	if (nl < sl || strcmp(name + nl - sl, s->suffix) || s->n == 8)
		return 0;
	struct saved_file *f = &s->f[s->n++];
	char path[128];
	snprintf(f->name, sizeof(f->name), "%s", name);
	snprintf(path, sizeof(path), "/db/%s", name);
	cr_assert_eq(env_sim_read_file(s->env, path, &f->data, &f->len), 0);
	return 0;
}

/* Writes back a saved file as durable, cut to len bytes. */
static void restore_file(struct cairn_env *env, const struct saved_file *f, size_t len)
{
	char path[128];
	snprintf(path, sizeof(path), "/db/%s", f->name);
	cr_assert_eq(env_sim_write_file(env, path, f->data, len), 0);
}

/* A power loss after which the logs reached the disk whole (as the page
 * cache held them) while the caller decides what of the blob file did: the
 * files are saved in logs and blobs (one blob file), the database crashed
 * and closed, the logs restored. */
static void power_loss_keeping_logs(struct cairn_env *env, struct cairn_db *db,
                                    struct saved_files *logs, struct saved_files *blobs)
{
	cr_assert_eq(env_list_dir(env, "/db", save_file, logs), 0);
	cr_assert_eq(env_list_dir(env, "/db", save_file, blobs), 0);
	cr_assert_eq(blobs->n, 1);
	env_sim_crash(env);
	cairn_close(db);
	env_sim_reboot(env);
	for (int i = 0; i < logs->n; i++)
		restore_file(env, &logs->f[i], logs->f[i].len);
}

/* A file system need not keep a prefix of unsynced appends: after a power
 * loss the blob file's size and the record's header may survive while its
 * value pages read as zeros (a hole). The unsynced write must then be gone
 * and the synced value before it back, never an unreadable key. */
Test(blob, unsynced_value_lost_in_a_hole_leaves_the_synced_one)
{
	enum { VLEN = 100000 };
	struct cairn_env *env;
	struct cairn_options o;
	char *v1 = malloc(VLEN), *v2 = malloc(VLEN);
	fill(v1, VLEN, 1);
	fill(v2, VLEN, 2);
	cr_assert_eq(env_sim_new(11, 1000, &env), 0);
	sim_options(&o, env);
	struct cairn_db *db = tu_open("/db", &o);
	cr_assert_eq(cairn_put(db, "k", 1, v1, VLEN, CAIRN_SYNC), 0);
	cr_assert_eq(cairn_put(db, "k", 1, v2, VLEN, 0), 0);
	cr_assert_eq(cairn_put(db, "z", 1, "after", 5, 0), 0);
	struct saved_files logs = {.env = env, .suffix = ".log"};
	struct saved_files blobs = {.env = env, .suffix = ".blob"};
	power_loss_keeping_logs(env, db, &logs, &blobs);
	/* the log reached the disk whole, and of the blob file every page but
	 * the value pages of the second record */
	struct saved_file *b = &blobs.f[0];
	size_t rec2 = b->len - blob_record_size(1, VLEN);
	memset(b->data + rec2 + 8 + 1 + 100, 0, VLEN - 200);
	restore_file(env, b, b->len);
	db = tu_open("/db", &o);
	void *v;
	size_t vl;
	cr_assert_eq(cairn_get(db, NULL, "k", 1, &v, &vl), 0, "the key must read, not fail");
	cr_assert(vl == VLEN && memcmp(v, v1, VLEN) == 0, "the synced value is back");
	cairn_free(v);
	cr_assert_eq(cairn_get(db, NULL, "z", 1, &v, &vl), CAIRN_ENOTFOUND,
	             "a write after the lost value survived");
	cairn_close(db);
	for (int i = 0; i < logs.n; i++)
		free(logs.f[i].data);
	free(b->data);
	env_sim_free(env);
	free(v1);
	free(v2);
}

/* Unsynced large values cost no blob sync: the log may reach the disk
 * before the blob bytes its records refer to. Recovery must end the history
 * at the first record whose bytes are lost, as at a torn tail, and never
 * replay a reference to nothing. */
Test(blob, log_that_outlived_its_unsynced_blob_bytes_is_cut_at_the_first_lost_value)
{
	enum { NB = 8, VLEN = 100000, KEEP = 3 };
	struct cairn_env *env;
	struct cairn_options o;
	char *val = malloc(VLEN), key[16];
	cr_assert_eq(env_sim_new(7, 1000, &env), 0);
	sim_options(&o, env);
	struct cairn_db *db = tu_open("/db", &o);
	fill(val, VLEN, 100);
	cr_assert_eq(cairn_put(db, "L", 1, val, VLEN, 0), 0);
	cr_assert_eq(cairn_put(db, "a", 1, "x", 1, CAIRN_SYNC), 0);
	for (int i = 0; i < NB; i++) {
		fill(val, VLEN, (uint64_t)i);
		sprintf(key, "b%d", i);
		cr_assert_eq(cairn_put(db, key, 2, val, VLEN, 0), 0);
	}
	cr_assert_eq(cairn_put(db, "c", 1, "y", 1, 0), 0);
	/* what the page cache holds: the logs and the blob file whole */
	struct saved_files logs = {.env = env, .suffix = ".log"};
	struct saved_files blobs = {.env = env, .suffix = ".blob"};
	power_loss_keeping_logs(env, db, &logs, &blobs);
	/* the logs reached the disk whole; the blob file kept b0..b2 and a
	 * part of b3 */
	uint64_t rec = blob_record_size(2, VLEN);
	restore_file(env, &blobs.f[0], blobs.f[0].len - (NB - KEEP) * rec + rec / 2);

	for (int pass = 0; pass < 2; pass++) {
		db = tu_open("/db", &o);
		void *v;
		size_t vl;
		fill(val, VLEN, 100);
		cr_assert_eq(cairn_get(db, NULL, "L", 1, &v, &vl), 0);
		cr_assert(vl == VLEN && memcmp(v, val, vl) == 0);
		cairn_free(v);
		cr_assert_eq(cairn_get(db, NULL, "a", 1, &v, &vl), 0);
		cairn_free(v);
		for (int i = 0; i < NB; i++) {
			sprintf(key, "b%d", i);
			int r = cairn_get(db, NULL, key, 2, &v, &vl);
			if (i >= KEEP) {
				cr_assert_eq(r, CAIRN_ENOTFOUND, "pass %d: %s after the cut: %d",
				             pass, key, r);
				continue;
			}
			cr_assert_eq(r, 0, "pass %d: %s before the cut: %d", pass, key, r);
			fill(val, VLEN, (uint64_t)i);
			cr_assert(vl == VLEN && memcmp(v, val, vl) == 0);
			cairn_free(v);
		}
		cr_assert_eq(cairn_get(db, NULL, "c", 1, &v, &vl), CAIRN_ENOTFOUND,
		             "a write after the lost value survived");
		/* the database takes large values again, in a new file */
		fill(val, VLEN, 9);
		cr_assert_eq(cairn_put(db, pass ? "d1" : "d0", 2, val, VLEN, CAIRN_SYNC), 0);
		cairn_close(db);
	}
	db = tu_open("/db", &o);
	void *v;
	size_t vl;
	cr_assert_eq(cairn_get(db, NULL, "d0", 2, &v, &vl), 0);
	cairn_free(v);
	cr_assert_eq(cairn_get(db, NULL, "d1", 2, &v, &vl), 0);
	cr_assert(vl == VLEN && memcmp(v, val, vl) == 0);
	cairn_free(v);
	cairn_close(db);
	for (int i = 0; i < logs.n; i++)
		free(logs.f[i].data);
	free(blobs.f[0].data);
	free(val);
	env_sim_free(env);
}

/* A blob file header is synced when the file is created: if it is bad after
 * a power loss that is damage, which reads report, not a lost tail. */
Test(blob, damaged_header_of_the_unsealed_file_is_damage_not_a_lost_tail)
{
	struct cairn_env *env;
	struct cairn_options o;
	char *val = malloc(100000);
	cr_assert_eq(env_sim_new(8, 1000, &env), 0);
	sim_options(&o, env);
	struct cairn_db *db = tu_open("/db", &o);
	fill(val, 100000, 1);
	cr_assert_eq(cairn_put(db, "v", 1, val, 100000, CAIRN_SYNC), 0);
	cr_assert_eq(cairn_put(db, "s", 1, "x", 1, CAIRN_SYNC), 0);
	struct saved_files blobs = {.env = env, .suffix = ".blob"};
	cr_assert_eq(env_list_dir(env, "/db", save_file, &blobs), 0);
	cr_assert_eq(blobs.n, 1);
	env_sim_crash(env);
	cairn_close(db);
	env_sim_reboot(env);
	blobs.f[0].data[3] ^= 1; /* the magic */
	restore_file(env, &blobs.f[0], blobs.f[0].len);
	db = tu_open("/db", &o);
	void *v;
	size_t vl;
	cr_assert_eq(cairn_get(db, NULL, "v", 1, &v, &vl), CAIRN_ECORRUPT);
	cr_assert_eq(cairn_get(db, NULL, "s", 1, &v, &vl), 0, "a synced write was dropped");
	cairn_free(v);
	cairn_close(db);
	free(blobs.f[0].data);
	free(val);
	env_sim_free(env);
}

Test(blob, power_loss_while_streaming_keeps_the_old_value_or_the_whole_new_one)
{
	char *val = malloc(300000);
	for (uint64_t k = 1; k < 40; k++) {
		struct cairn_env *env;
		struct cairn_options o;
		cr_assert_eq(env_sim_new(k, 1000, &env), 0);
		sim_options(&o, env);
		struct cairn_db *db = tu_open("/db", &o);
		fill(val, 100000, 1);
		cr_assert_eq(cairn_put(db, "s", 1, val, 100000, CAIRN_SYNC), 0);
		env_sim_arm(env, k, SIM_FAULT_CRASH);
		struct cairn_stream *s;
		int committed = 0;
		if (cairn_stream_new(db, "s", 1, &s) == 0) {
			fill(val, 300000, 2);
			int r = 0;
			for (size_t off = 0; !r && off < 300000; off += 50000)
				r = cairn_stream_write(s, val + off, 50000);
			if (r)
				cairn_stream_abort(s);
			else
				committed = cairn_stream_commit(s, CAIRN_SYNC) == 0;
		}
		cairn_close(db);
		env_sim_crash(env);
		env_sim_reboot(env);
		db = tu_open("/db", &o);
		void *v;
		size_t vl;
		cr_assert_eq(cairn_get(db, NULL, "s", 1, &v, &vl), 0, "crash at %llu",
		             (unsigned long long)k);
		int is_new = vl == 300000;
		fill(val, is_new ? 300000 : 100000, is_new ? 2 : 1);
		cr_assert(vl == (is_new ? 300000u : 100000u) && memcmp(v, val, vl) == 0,
		          "crash at %llu: a half value of %zu bytes", (unsigned long long)k, vl);
		cr_assert(!committed || is_new, "crash at %llu: committed value lost",
		          (unsigned long long)k);
		cairn_free(v);
		uint64_t probs = 0;
		(void)probs;
		cairn_close(db);
		env_sim_free(env);
	}
	free(val);
}

/* ---- threads: user writes racing background compaction and collection ---- */

#include <pthread.h>

#define TH_KEYS 40

struct th {
	struct cairn_db *db;
	int base; /* this writer owns keys [base, base + TH_KEYS) */
	uint64_t last[TH_KEYS];
	int stop, errors;
};

/* A value that proves itself: its length, key and version at the front,
 * and bytes derived from them. */
static size_t th_value(char *out, int id, uint64_t ver)
{
	size_t n = 1000 + (size_t)((id * 7919 + ver * 104729) % 30000);
	int h = sprintf(out, "%d.%llu.%zu:", id, (unsigned long long)ver, n);
	for (size_t i = (size_t)h; i < n; i++)
		out[i] = (char)(id + ver + i);
	return n;
}

static int th_check(const char *v, size_t vl)
{
	int id;
	unsigned long long ver;
	size_t n;
	char want[32000];
	if (vl < 8 || sscanf(v, "%d.%llu.%zu:", &id, &ver, &n) != 3 || n != vl)
		return 0;
	return th_value(want, id, ver) == vl && memcmp(want, v, vl) == 0;
}

static void *th_writer(void *arg)
{
	struct th *t = arg;
	char key[16], *val = malloc(32000);
	uint64_t rng = (uint64_t)t->base + 1;
	for (int i = 0; i < 1500; i++) {
		int k = (int)prng_below(&rng, TH_KEYS);
		int id = t->base + k;
		sprintf(key, "t%05d", id);
		size_t n = th_value(val, id, ++t->last[k]);
		if (cairn_put(t->db, key, strlen(key), val, n, 0))
			t->errors++;
	}
	free(val);
	return NULL;
}

static void *th_reader(void *arg)
{
	struct th *t = arg;
	char key[16];
	uint64_t rng = 99;
	while (!__atomic_load_n(&t->stop, __ATOMIC_RELAXED)) {
		sprintf(key, "t%05d", (int)prng_below(&rng, 2 * TH_KEYS));
		void *v;
		size_t vl;
		int r = cairn_get(t->db, NULL, key, strlen(key), &v, &vl);
		if (r == 0 && !th_check(v, vl))
			t->errors++;
		if (r && r != CAIRN_ENOTFOUND)
			t->errors++;
		cairn_free(v);
	}
	return NULL;
}

Test(blob, concurrent_writes_and_background_collection_keep_every_value, .timeout = 120)
{
	char *dir = tu_tmpdir("blob");
	struct cairn_options o;
	tu_small_options(&o, NULL);
	o.blob_threshold = 1024;
	o.blob_file_size = 1u << 20;
	o.blob_gc_ratio = 0.3;
	struct cairn_db *db = tu_open(dir, &o);
	struct th w[2] = {{.db = db, .base = 0}, {.db = db, .base = TH_KEYS}};
	struct th rd = {.db = db};
	pthread_t tw[2], tr;
	pthread_create(&tr, NULL, th_reader, &rd);
	for (int i = 0; i < 2; i++)
		pthread_create(&tw[i], NULL, th_writer, &w[i]);
	for (int i = 0; i < 2; i++)
		pthread_join(tw[i], NULL);
	cr_assert_eq(cairn_compact_range(db, NULL, 0, NULL, 0), 0);
	__atomic_store_n(&rd.stop, 1, __ATOMIC_RELAXED);
	pthread_join(tr, NULL);
	cr_assert_eq(w[0].errors + w[1].errors + rd.errors, 0);
	struct cairn_stats st;
	cairn_stats_get(db, &st);
	cr_assert_gt(st.blob_collections, 0);
	cairn_close(db);
	db = tu_open(dir, &o);
	char key[16], *want = malloc(32000);
	for (int t = 0; t < 2; t++) {
		for (int k = 0; k < TH_KEYS; k++) {
			int id = w[t].base + k;
			sprintf(key, "t%05d", id);
			void *v;
			size_t vl;
			int r = cairn_get(db, NULL, key, strlen(key), &v, &vl);
			if (!w[t].last[k]) {
				cr_assert_eq(r, CAIRN_ENOTFOUND);
				continue;
			}
			cr_assert_eq(r, 0, "%s: %s", key, cairn_strerror(r));
			size_t n = th_value(want, id, w[t].last[k]);
			cr_assert(vl == n && memcmp(v, want, n) == 0, "%s: stale or wrong value",
			          key);
			cairn_free(v);
		}
	}
	free(want);
	cairn_close(db);
	tu_rmrf(dir);
}
