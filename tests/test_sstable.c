/*
 * test_sstable.c - tables: blocks, bloom filter, builder, reader, verify,
 * dump and the table cache.
 *
 * Tables are built from a model (a sorted array of internal key/value pairs)
 * and every read is compared to the model: full scans both ways, seeks to
 * every key and between keys, point lookups that hit and miss. Corruption
 * tests flip bits and cut the file and demand an error or the right data,
 * never a crash and never wrong data. Randomized tests use fixed seeds, and
 * print them when they fail.
 */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "block.h"
#include "bloom.h"
#include "cache.h"
#include "cairn.h"
#include "dbformat.h"
#include "env.h"
#include "sstable.h"

/* An expectation that names only a table's number and size. */
#define XP(n, sz) (&(struct table_expect){.number = (n), .size = (sz)})

/* ---- the model ---- */

struct entry {
	struct buf k, v;
};

struct model {
	struct entry *e;
	size_t n;
};

static void model_free(struct model *m)
{
	for (size_t i = 0; i < m->n; i++) {
		buf_free(&m->e[i].k);
		buf_free(&m->e[i].v);
	}
	free(m->e);
	m->e = NULL;
	m->n = 0;
}

static int ukey_cmp_qsort(const void *a, const void *b)
{
	return slice_cmp(buf_slice(a), buf_slice(b));
}

/* A random user key: a few common prefixes so prefix compression matters. */
static void random_ukey(uint64_t *rng, struct buf *out)
{
	static const char *prefixes[] = {"", "a/", "apple/", "dir/sub/", "\xff\xff", "\x00sys/"};
	int p = (int)prng_below(rng, 6);
	buf_clear(out);
	buf_append(out, prefixes[p], p == 5 ? 5 : strlen(prefixes[p]));
	size_t len = 1 + prng_below(rng, 16);
	for (size_t i = 0; i < len; i++) {
		char c = prng_below(rng, 8) == 0 ? (char)prng_below(rng, 256)
		                                 : (char)('a' + prng_below(rng, 26));
		buf_append(out, &c, 1);
	}
}

static void random_value(uint64_t *rng, struct buf *v)
{
	char hdr[8];
	enc_fixed64(hdr, 1700000000000000000ull + prng_below(rng, 1000000));
	buf_set(v, hdr, 8);
	size_t len = prng_below(rng, 4) == 0 ? 0 : prng_below(rng, 120);
	int repetitive = prng_below(rng, 2);
	for (size_t i = 0; i < len; i++) {
		char c = repetitive ? (char)('x' + (i % 3)) : (char)prng_next(rng);
		buf_append(v, &c, 1);
	}
}

/* n distinct user keys, each with 1-3 versions (seq descending). */
static void model_build(struct model *m, uint64_t seed, size_t nkeys)
{
	uint64_t rng = seed;
	struct buf *uk = calloc(nkeys, sizeof(*uk));
	for (size_t i = 0; i < nkeys; i++)
		random_ukey(&rng, &uk[i]);
	qsort(uk, nkeys, sizeof(*uk), ukey_cmp_qsort);
	m->e = calloc(nkeys * 3, sizeof(*m->e));
	m->n = 0;
	for (size_t i = 0; i < nkeys; i++) {
		if (i > 0 && slice_eq(buf_slice(&uk[i]), buf_slice(&uk[i - 1])))
			continue;
		int versions = 1 + (int)prng_below(&rng, 3);
		uint64_t seq = 1000 + prng_below(&rng, 1u << 20);
		for (int j = 0; j < versions; j++) {
			struct entry *e = &m->e[m->n++];
			enum value_type t = prng_below(&rng, 10) == 0 ? TYPE_DELETION : TYPE_VALUE;
			ikey_append(&e->k, buf_slice(&uk[i]), seq, t);
			seq -= 1 + prng_below(&rng, 3);
			random_value(&rng, &e->v);
		}
	}
	for (size_t i = 0; i < nkeys; i++)
		buf_free(&uk[i]);
	free(uk);
}

/* Index of the first model entry >= target. */
static size_t model_lower_bound(const struct model *m, struct slice target)
{
	size_t lo = 0, hi = m->n;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (ikey_cmp(buf_slice(&m->e[mid].k), target) < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

/* ---- an in-memory read-only file, for fast corruption loops ---- */

struct memfile {
	struct env_file_base base;
	const char *data;
	size_t len;
};

static int mem_pread(struct env_file *f, uint64_t off, void *buf, size_t n, size_t *got)
{
	struct memfile *m = (struct memfile *)f;
	*got = 0;
	if (off >= m->len)
		return 0;
	size_t k = m->len - off < n ? m->len - off : n;
	memcpy(buf, m->data + off, k);
	*got = k;
	return 0;
}

static int mem_close(struct env_file *f)
{
	free(f);
	return 0;
}

static void mem_errmsg(struct cairn_env *env, char *buf, size_t len)
{
	(void)env;
	fmt_msg(buf, len, "memfile error");
}

static const struct env_ops mem_ops = {
        .pread = mem_pread,
        .close = mem_close,
        .errmsg = mem_errmsg,
};
static struct cairn_env mem_env = {&mem_ops, NULL};

static struct env_file *memfile_new(const char *data, size_t len)
{
	struct memfile *m = calloc(1, sizeof(*m));
	m->base.env = &mem_env;
	m->data = data;
	m->len = len;
	return (struct env_file *)m;
}

/* ---- building and opening ---- */

static char tmpdir[] = "/tmp/sstable_testXXXXXX";

static void setup_dir(void)
{
	cr_assert_not_null(mkdtemp(tmpdir));
}

static int rm_fn(void *ctx, const char *name)
{
	char p[4200];
	snprintf(p, sizeof(p), "%s/%s", (const char *)ctx, name);
	unlink(p);
	return 0;
}

static void teardown_dir(void)
{
	env_list_dir(env_posix(), tmpdir, rm_fn, tmpdir);
	rmdir(tmpdir);
}

static struct table_options opts_make(size_t bs, int ri, int bloom, int comp)
{
	struct table_options o = {.block_size = bs,
	                          .restart_interval = ri,
	                          .bloom_bits_per_key = bloom,
	                          .compression = comp};
	return o;
}

static void build_file(struct cairn_env *env, const char *path, const struct table_options *o,
                       const struct model *m, struct table_props *props)
{
	struct env_file *f;
	struct table_builder *tb;
	cr_assert_eq(env_open_write(env, path, &f), 0);
	cr_assert_eq(tb_new(o, f, &tb), 0);
	for (size_t i = 0; i < m->n; i++)
		cr_assert_eq(tb_add(tb, buf_slice(&m->e[i].k), buf_slice(&m->e[i].v)), 0,
		             "tb_add %zu", i);
	cr_assert_eq(tb_entries(tb), m->n);
	cr_assert_eq(tb_finish(tb, props), 0);
	uint64_t est = tb_file_size(tb);
	tb_free(tb);
	cr_assert_eq(env_sync(f), 0);
	cr_assert_eq(env_close(f), 0);
	uint64_t size;
	cr_assert_eq(env_file_size(env, path, &size), 0);
	cr_assert_eq(size, est);
}

static struct table *open_file(struct cairn_env *env, const char *path, struct cache *bc)
{
	struct env_file *f;
	struct table *t;
	uint64_t size;
	char err[256] = "";
	cr_assert_eq(env_file_size(env, path, &size), 0);
	cr_assert_eq(env_open_read(env, path, &f), 0);
	int r = table_open(f, path, size, bc, &t, err, sizeof(err));
	cr_assert_eq(r, 0, "table_open: %d %s", r, err);
	return t;
}

/* Reads a file's bytes through the env. */
static char *slurp(struct cairn_env *env, const char *path, size_t *len)
{
	struct env_file *f;
	uint64_t size;
	size_t got;
	cr_assert_eq(env_file_size(env, path, &size), 0);
	char *d = malloc(size ? size : 1);
	cr_assert_eq(env_open_read(env, path, &f), 0);
	cr_assert_eq(env_pread(f, 0, d, size, &got), 0);
	cr_assert_eq(got, size);
	env_close(f);
	*len = size;
	return d;
}

/* ---- checking a table against the model ---- */

static void check_scan(struct table *t, const struct model *m, const char *what)
{
	struct iter *it = table_iter_new(t);
	size_t i = 0;
	for (iter_seek_first(it); iter_valid(it); iter_next(it), i++) {
		cr_assert_lt(i, m->n, "%s: too many entries", what);
		cr_assert(slice_eq(iter_key(it), buf_slice(&m->e[i].k)), "%s: key %zu", what, i);
		cr_assert(slice_eq(iter_value(it), buf_slice(&m->e[i].v)), "%s: value %zu", what,
		          i);
	}
	cr_assert_eq(iter_status(it), 0, "%s", what);
	cr_assert_eq(i, m->n, "%s: forward scan saw %zu of %zu", what, i, m->n);
	i = m->n;
	for (iter_seek_last(it); iter_valid(it); iter_prev(it)) {
		cr_assert_gt(i, 0, "%s", what);
		i--;
		cr_assert(slice_eq(iter_key(it), buf_slice(&m->e[i].k)), "%s: back key %zu", what,
		          i);
		cr_assert(slice_eq(iter_value(it), buf_slice(&m->e[i].v)), "%s: back value %zu",
		          what, i);
	}
	cr_assert_eq(iter_status(it), 0, "%s", what);
	cr_assert_eq(i, 0, "%s: backward scan stopped at %zu", what, i);
	iter_free(it);
}

static void check_seek(struct table *t, struct iter *it, const struct model *m, struct slice target,
                       const char *what)
{
	size_t want = model_lower_bound(m, target);
	iter_seek(it, target);
	cr_assert_eq(iter_status(it), 0, "%s", what);
	if (want == m->n) {
		cr_assert(!iter_valid(it), "%s: seek past the end is valid", what);
	} else {
		cr_assert(iter_valid(it), "%s: seek to %zu invalid", what, want);
		cr_assert(slice_eq(iter_key(it), buf_slice(&m->e[want].k)), "%s: seek %zu", what,
		          want);
		/* one step back and forth from a seek */
		iter_prev(it);
		if (want == 0) {
			cr_assert(!iter_valid(it), "%s", what);
		} else {
			cr_assert(iter_valid(it), "%s", what);
			cr_assert(slice_eq(iter_key(it), buf_slice(&m->e[want - 1].k)), "%s", what);
		}
	}
	/* table_get: the first entry >= target with target's user key */
	struct buf fk = {0}, fv = {0};
	int r = table_get(t, target, &fk, &fv);
	int hit = want < m->n && slice_eq(ikey_user(buf_slice(&m->e[want].k)), ikey_user(target));
	cr_assert_eq(r, hit, "%s: table_get %d want %d", what, r, hit);
	if (hit) {
		cr_assert(slice_eq(buf_slice(&fk), buf_slice(&m->e[want].k)), "%s", what);
		cr_assert(slice_eq(buf_slice(&fv), buf_slice(&m->e[want].v)), "%s", what);
	}
	buf_free(&fk);
	buf_free(&fv);
}

static void check_seeks(struct table *t, const struct model *m, uint64_t seed, const char *what)
{
	struct iter *it = table_iter_new(t);
	struct buf k = {0}, uk = {0};
	uint64_t rng = seed ^ 0x5eed;
	for (size_t i = 0; i < m->n; i++) {
		struct slice ik = buf_slice(&m->e[i].k);
		check_seek(t, it, m, ik, what);
		/* between keys: a newer seq, the user key extended, the user key
		 * at seq 0 (after every version) */
		buf_clear(&k);
		ikey_append(&k, ikey_user(ik), ikey_seq(ik) + 1, TYPE_SEEK);
		check_seek(t, it, m, buf_slice(&k), what);
		buf_clear(&k);
		buf_set(&uk, ik.data, ik.len - 8);
		buf_append(&uk, "\x00", 1);
		ikey_append(&k, buf_slice(&uk), MAX_SEQUENCE, TYPE_SEEK);
		check_seek(t, it, m, buf_slice(&k), what);
		buf_clear(&k);
		ikey_append(&k, ikey_user(ik), 0, TYPE_DELETION);
		check_seek(t, it, m, buf_slice(&k), what);
	}
	for (int i = 0; i < 200; i++) {
		random_ukey(&rng, &uk);
		buf_clear(&k);
		ikey_append(&k, buf_slice(&uk), prng_below(&rng, 1u << 21), TYPE_SEEK);
		check_seek(t, it, m, buf_slice(&k), what);
	}
	buf_clear(&k);
	ikey_append(&k, slice_make("", 0), MAX_SEQUENCE, TYPE_SEEK);
	check_seek(t, it, m, buf_slice(&k), what);
	buf_free(&k);
	buf_free(&uk);
	iter_free(it);
}

static void check_props(struct table *t, const struct model *m, const struct table_props *bp)
{
	const struct table_props *p = table_properties(t);
	cr_assert_eq(p->num_entries, m->n);
	cr_assert_eq(p->num_entries, bp->num_entries);
	cr_assert_eq(p->num_data_blocks, bp->num_data_blocks);
	cr_assert_eq(p->data_bytes, bp->data_bytes);
	cr_assert_eq(p->index_bytes, bp->index_bytes);
	cr_assert_eq(p->filter_bytes, bp->filter_bytes);
	uint64_t dels = 0, kb = 0, vb = 0, lo = UINT64_MAX, hi = 0;
	for (size_t i = 0; i < m->n; i++) {
		struct slice k = buf_slice(&m->e[i].k);
		dels += ikey_type(k) == TYPE_DELETION;
		kb += k.len;
		vb += m->e[i].v.len;
		lo = ikey_seq(k) < lo ? ikey_seq(k) : lo;
		hi = ikey_seq(k) > hi ? ikey_seq(k) : hi;
	}
	cr_assert_eq(p->num_deletions, dels);
	cr_assert_eq(p->raw_key_bytes, kb);
	cr_assert_eq(p->raw_value_bytes, vb);
	if (m->n) {
		cr_assert_eq(p->min_seq, lo);
		cr_assert_eq(p->max_seq, hi);
		cr_assert(slice_eq(buf_slice(&p->smallest), buf_slice(&m->e[0].k)));
		cr_assert(slice_eq(buf_slice(&p->largest), buf_slice(&m->e[m->n - 1].k)));
	}
}

static void roundtrip(struct cairn_env *env, const char *dir, size_t nkeys, uint64_t seed,
                      struct cache *bc)
{
	static const size_t sizes[] = {64, 512, 4096};
	static const int restarts[] = {1, 3, 16};
	struct model m = {0};
	char path[4200], what[200];

	model_build(&m, seed, nkeys);
	for (int s = 0; s < 3; s++)
		for (int ri = 0; ri < 3; ri++)
			for (int comp = 0; comp < 2; comp++)
				for (int bloom = 0; bloom <= 10; bloom += 10) {
					struct table_options o =
					        opts_make(sizes[s], restarts[ri], bloom, comp);
					struct table_props bp;
					snprintf(what, sizeof(what),
					         "seed %llu bs %zu ri %d comp %d bloom %d",
					         (unsigned long long)seed, sizes[s], restarts[ri],
					         comp, bloom);
					snprintf(path, sizeof(path), "%s/rt.sst", dir);
					build_file(env, path, &o, &m, &bp);
					struct table *t = open_file(env, path, bc);
					check_props(t, &m, &bp);
					check_scan(t, &m, what);
					check_seeks(t, &m, seed, what);
					cr_assert_eq(table_verify(t, NULL, NULL), 0, "%s", what);
					table_props_free(&bp);
					table_close(t);
				}
	model_free(&m);
}

/* ---- tests ---- */

Test(sstable, roundtrip_all_options_posix, .init = setup_dir, .fini = teardown_dir)
{
	roundtrip(env_posix(), tmpdir, 300, 42, NULL);
}

Test(sstable, roundtrip_through_block_cache, .init = setup_dir, .fini = teardown_dir)
{
	struct cache *bc;
	cr_assert_eq(cache_new(64 * 1024, &bc), 0);
	roundtrip(env_posix(), tmpdir, 300, 7, bc);
	cr_assert_leq(cache_usage(bc), 64 * 1024);
	uint64_t hits, misses;
	cache_counters(bc, &hits, &misses);
	cr_assert_gt(hits, 0);
	cache_free(bc);
}

Test(sstable, roundtrip_with_zero_capacity_cache, .init = setup_dir, .fini = teardown_dir)
{
	struct cache *bc;
	cr_assert_eq(cache_new(0, &bc), 0);
	roundtrip(env_posix(), tmpdir, 100, 9, bc);
	cr_assert_eq(cache_usage(bc), 0);
	cache_free(bc);
}

Test(sstable, roundtrip_on_sim_env)
{
	struct cairn_env *env;
	struct cache *bc;
	cr_assert_eq(env_sim_new(3, 0, &env), 0);
	cr_assert_eq(env_mkdir(env, "db"), 0);
	cr_assert_eq(cache_new(16 * 1024, &bc), 0);
	roundtrip(env, "db", 200, 3, bc);
	cache_free(bc);
	env_sim_free(env);
}

Test(sstable, empty_table_reads_as_empty, .init = setup_dir, .fini = teardown_dir)
{
	struct model m = {0};
	char path[4200];
	struct table_props bp;
	struct table_options o = opts_make(4096, 16, 10, 1);
	snprintf(path, sizeof(path), "%s/empty.sst", tmpdir);
	build_file(env_posix(), path, &o, &m, &bp);
	struct table *t = open_file(env_posix(), path, NULL);
	check_scan(t, &m, "empty");
	check_seeks(t, &m, 1, "empty");
	cr_assert_eq(table_properties(t)->num_entries, 0);
	cr_assert_eq(table_verify(t, NULL, NULL), 0);
	table_props_free(&bp);
	table_close(t);
}

Test(sstable, large_values_span_blocks, .init = setup_dir, .fini = teardown_dir)
{
	struct model m = {0};
	char path[4200];
	struct table_props bp;
	struct table_options o = opts_make(4096, 16, 10, 1);
	m.e = calloc(20, sizeof(*m.e));
	for (int i = 0; i < 20; i++) {
		char uk[16], hdr[8] = {0};
		snprintf(uk, sizeof(uk), "big%04d", i);
		ikey_append(&m.e[i].k, slice_make(uk, strlen(uk)), 100 + i, TYPE_VALUE);
		buf_set(&m.e[i].v, hdr, 8);
		for (int j = 0; j < 50000 + i * 1000; j++) {
			char c = (char)(i % 2 ? (unsigned)('a' + j % 7)
			                      : ((unsigned)j * 2654435761u) >> 13);
			buf_append(&m.e[i].v, &c, 1);
		}
		m.n++;
	}
	snprintf(path, sizeof(path), "%s/big.sst", tmpdir);
	build_file(env_posix(), path, &o, &m, &bp);
	cr_assert_eq(bp.num_data_blocks, 20);
	struct table *t = open_file(env_posix(), path, NULL);
	check_scan(t, &m, "big");
	check_seeks(t, &m, 5, "big");
	/* the repetitive values compressed: the file is well under raw size */
	cr_assert_lt(table_properties(t)->data_bytes, bp.raw_value_bytes * 3 / 4);
	table_props_free(&bp);
	table_close(t);
	model_free(&m);
}

Test(sstable, builder_rejects_keys_out_of_order)
{
	struct cairn_env *env;
	struct env_file *f;
	struct table_builder *tb;
	struct buf a = {0}, b = {0};
	struct table_options o = opts_make(4096, 16, 10, 1);
	cr_assert_eq(env_sim_new(1, 0, &env), 0);
	cr_assert_eq(env_open_write(env, "x.sst", &f), 0);
	cr_assert_eq(tb_new(&o, f, &tb), 0);
	ikey_append(&a, slice_make("b", 1), 5, TYPE_VALUE);
	ikey_append(&b, slice_make("a", 1), 5, TYPE_VALUE);
	cr_assert_eq(tb_add(tb, buf_slice(&a), slice_make("12345678", 8)), 0);
	cr_assert_eq(tb_add(tb, buf_slice(&a), slice_make("12345678", 8)), CAIRN_EINVAL);
	cr_assert_eq(tb_add(tb, buf_slice(&b), slice_make("12345678", 8)), CAIRN_EINVAL);
	cr_assert_eq(tb_add(tb, slice_make("short", 5), slice_make("12345678", 8)), CAIRN_EINVAL);
	o.restart_interval = 0;
	struct table_builder *bad;
	cr_assert_eq(tb_new(&o, f, &bad), CAIRN_EINVAL);
	tb_free(tb);
	env_close(f);
	buf_free(&a);
	buf_free(&b);
	env_sim_free(env);
}

Test(sstable, builds_are_byte_identical, .init = setup_dir, .fini = teardown_dir)
{
	struct model m = {0};
	char p1[4200], p2[4200];
	struct table_options o = opts_make(1024, 16, 10, 1);
	model_build(&m, 11, 2000);
	snprintf(p1, sizeof(p1), "%s/d1.sst", tmpdir);
	snprintf(p2, sizeof(p2), "%s/d2.sst", tmpdir);
	build_file(env_posix(), p1, &o, &m, NULL);
	build_file(env_posix(), p2, &o, &m, NULL);
	size_t n1, n2;
	char *a = slurp(env_posix(), p1, &n1), *b = slurp(env_posix(), p2, &n2);
	cr_assert_eq(n1, n2);
	cr_assert_eq(memcmp(a, b, n1), 0);
	/* and the simulated env writes the very same bytes */
	struct cairn_env *env;
	cr_assert_eq(env_sim_new(5, 0, &env), 0);
	build_file(env, "d3.sst", &o, &m, NULL);
	char *c;
	size_t n3;
	cr_assert_eq(env_sim_read_file(env, "d3.sst", &c, &n3), 0);
	cr_assert_eq(n3, n1);
	cr_assert_eq(memcmp(a, c, n1), 0);
	free(a);
	free(b);
	free(c);
	env_sim_free(env);
	model_free(&m);
}

Test(sstable, bloom_rejects_most_missing_keys, .init = setup_dir, .fini = teardown_dir)
{
	struct model m = {0};
	char path[4200];
	struct table_read_stats st = {0};
	struct table_options o = opts_make(4096, 16, 10, 1);
	model_build(&m, 21, 10000);
	snprintf(path, sizeof(path), "%s/bloom.sst", tmpdir);
	build_file(env_posix(), path, &o, &m, NULL);
	struct table *t = open_file(env_posix(), path, NULL);
	table_set_stats(t, &st);
	struct buf k = {0}, fk = {0}, fv = {0};
	int queries = 0;
	for (int i = 0; i < 10000; i++) {
		char uk[32];
		snprintf(uk, sizeof(uk), "missing-%d", i);
		buf_clear(&k);
		ikey_append(&k, slice_make(uk, strlen(uk)), MAX_SEQUENCE, TYPE_SEEK);
		cr_assert_eq(table_get(t, buf_slice(&k), &fk, &fv), 0);
		queries++;
	}
	cr_assert_eq(st.bloom_checks, (uint64_t)queries);
	uint64_t passed = st.bloom_checks - st.bloom_negatives;
	cr_assert_eq(st.bloom_false_positives, passed);
	cr_assert_leq(passed * 100, st.bloom_checks * 2, "false positives %llu of %llu",
	              (unsigned long long)passed, (unsigned long long)st.bloom_checks);
	/* every present key passes the filter */
	for (size_t i = 0; i < m.n; i++) {
		cr_assert_eq(table_get(t, buf_slice(&m.e[i].k), &fk, &fv), 1);
		cr_assert(slice_eq(buf_slice(&fv), buf_slice(&m.e[i].v)));
	}
	buf_free(&k);
	buf_free(&fk);
	buf_free(&fv);
	table_close(t);
	model_free(&m);
}

Test(sstable, iterator_may_hold_answers_from_the_filter_alone, .init = setup_dir,
     .fini = teardown_dir)
{
	struct model m = {0};
	char path[4200];
	struct cache *bc;
	struct table_options o = opts_make(1024, 16, 10, 1);
	model_build(&m, 22, 3000);
	snprintf(path, sizeof(path), "%s/hold.sst", tmpdir);
	build_file(env_posix(), path, &o, &m, NULL);
	cr_assert_eq(cache_new(1 << 20, &bc), 0);
	struct table *t = open_file(env_posix(), path, bc);
	struct iter *it = table_iter_new(t);
	struct buf k = {0};
	for (size_t i = 0; i < m.n; i++)
		cr_assert_eq(iter_may_hold(it, buf_slice(&m.e[i].k)), 1, "entry %zu denied", i);
	int passed = 0;
	for (int i = 0; i < 2000; i++) {
		char uk[32];
		snprintf(uk, sizeof(uk), "missing-%d", i);
		buf_clear(&k);
		ikey_append(&k, slice_make(uk, strlen(uk)), MAX_SEQUENCE, TYPE_SEEK);
		passed += iter_may_hold(it, buf_slice(&k));
	}
	cr_assert_leq(passed, 40, "%d of 2000 missing keys passed", passed);
	uint64_t hits, misses;
	cache_counters(bc, &hits, &misses);
	cr_assert_eq(hits + misses, 0, "may_hold read a data block");
	/* the iterator still seeks right afterwards */
	iter_seek(it, buf_slice(&m.e[m.n / 2].k));
	cr_assert(iter_valid(it));
	cr_assert(slice_eq(iter_key(it), buf_slice(&m.e[m.n / 2].k)));
	iter_free(it);
	buf_free(&k);
	table_close(t);
	cache_free(bc);
	model_free(&m);
}

Test(bloom, filter_has_no_false_negatives_and_few_false_positives)
{
	uint32_t *h = malloc(5000 * sizeof(*h));
	char key[32];
	for (int i = 0; i < 5000; i++) {
		snprintf(key, sizeof(key), "key%d", i);
		h[i] = bloom_hash(slice_make(key, strlen(key)));
	}
	struct buf f = {0};
	cr_assert_eq(bloom_build(10, h, 5000, &f), 0);
	cr_assert_eq((unsigned char)f.data[f.len - 1], 6);
	for (int i = 0; i < 5000; i++) {
		snprintf(key, sizeof(key), "key%d", i);
		cr_assert(bloom_may_contain(buf_slice(&f), slice_make(key, strlen(key))));
	}
	int fp = 0;
	for (int i = 0; i < 10000; i++) {
		snprintf(key, sizeof(key), "other%d", i);
		fp += bloom_may_contain(buf_slice(&f), slice_make(key, strlen(key)));
	}
	cr_assert_lt(fp, 200, "false positives %d of 10000", fp);
	/* unknown encodings and tiny filters say "maybe" */
	cr_assert(bloom_may_contain(slice_make("\x00\x1f", 2), slice_make("x", 1)));
	cr_assert(bloom_may_contain(slice_make("", 0), slice_make("x", 1)));
	buf_free(&f);
	free(h);
}

/* ---- blocks ---- */

static void block_from_model(const struct model *m, int ri, struct block_builder *bb,
                             struct slice *out)
{
	bb_init(bb, ri);
	for (size_t i = 0; i < m->n; i++)
		cr_assert_eq(bb_add(bb, buf_slice(&m->e[i].k), buf_slice(&m->e[i].v)), 0);
	size_t est = bb_size_estimate(bb);
	cr_assert_eq(bb_finish(bb, out), 0);
	cr_assert_eq(out->len, est);
}

Test(block, iterates_both_ways_and_seeks)
{
	for (int ri = 1; ri <= 17; ri += 4) {
		struct model m = {0};
		struct block_builder bb;
		struct slice raw;
		struct block b;
		model_build(&m, 100 + ri, 150);
		block_from_model(&m, ri, &bb, &raw);
		cr_assert_eq(block_parse(raw.data, raw.len, &b), 0);
		struct iter *it = block_iter_new(&b);
		size_t i = 0;
		for (iter_seek_first(it); iter_valid(it); iter_next(it), i++)
			cr_assert(slice_eq(iter_key(it), buf_slice(&m.e[i].k)));
		cr_assert_eq(i, m.n);
		for (iter_seek_last(it); iter_valid(it); iter_prev(it))
			cr_assert(slice_eq(iter_key(it), buf_slice(&m.e[--i].k)));
		cr_assert_eq(i, 0);
		for (i = 0; i < m.n; i++) {
			iter_seek(it, buf_slice(&m.e[i].k));
			cr_assert(iter_valid(it));
			cr_assert(slice_eq(iter_value(it), buf_slice(&m.e[i].v)));
		}
		cr_assert_eq(iter_status(it), 0);
		cr_assert_eq(block_fuzz_one((const uint8_t *)raw.data, raw.len), 0);
		iter_free(it);
		bb_free(&bb);
		model_free(&m);
	}
}

/* Back steps reuse the entries of a restart interval met on an earlier back
 * step; a walk that mixes next, prev and seeks must still see the model. */
Test(block, random_walk_matches_model_in_both_directions)
{
	const uint64_t seed = 4242;
	for (int ri = 1; ri <= 33; ri += 8) {
		struct model m = {0};
		struct block_builder bb;
		struct slice raw;
		struct block b;
		uint64_t rng = seed + (uint64_t)ri;
		model_build(&m, seed + (uint64_t)ri, 200);
		block_from_model(&m, ri, &bb, &raw);
		cr_assert_eq(block_parse(raw.data, raw.len, &b), 0);
		struct iter *it = block_iter_new(&b);
		size_t pos = m.n; /* m.n: invalid */
		for (int step = 0; step < 5000; step++) {
			uint64_t op = prng_below(&rng, 10);
			if (pos == m.n || op == 0) {
				pos = (size_t)prng_below(&rng, m.n);
				iter_seek(it, buf_slice(&m.e[pos].k));
			} else if (op < 5) {
				iter_prev(it);
				pos = pos == 0 ? m.n : pos - 1;
			} else {
				iter_next(it);
				pos++;
			}
			cr_assert_eq(iter_valid(it), pos < m.n, "seed %llu ri %d step %d",
			             (unsigned long long)seed, ri, step);
			if (pos < m.n) {
				cr_assert(slice_eq(iter_key(it), buf_slice(&m.e[pos].k)),
				          "seed %llu ri %d step %d", (unsigned long long)seed, ri,
				          step);
				cr_assert(slice_eq(iter_value(it), buf_slice(&m.e[pos].v)));
			}
		}
		cr_assert_eq(iter_status(it), 0);
		/* the one-shot seek of point lookups agrees with the iterator */
		struct buf key = {0};
		for (size_t i = 0; i < m.n; i++) {
			struct slice v;
			cr_assert_eq(block_seek_once(&b, buf_slice(&m.e[i].k), &key, &v), 1);
			cr_assert(slice_eq(buf_slice(&key), buf_slice(&m.e[i].k)));
			cr_assert(slice_eq(v, buf_slice(&m.e[i].v)));
		}
		buf_free(&key);
		iter_free(it);
		bb_free(&bb);
		model_free(&m);
	}
}

Test(block, empty_block_is_valid_and_empty)
{
	struct block_builder bb;
	struct slice raw;
	struct block b;
	bb_init(&bb, 16);
	cr_assert(bb_empty(&bb));
	cr_assert_eq(bb_finish(&bb, &raw), 0);
	cr_assert_eq(raw.len, 8);
	cr_assert_eq(block_parse(raw.data, raw.len, &b), 0);
	struct iter *it = block_iter_new(&b);
	iter_seek_first(it);
	cr_assert(!iter_valid(it));
	iter_seek(it, slice_make("abcdefghij", 10));
	cr_assert(!iter_valid(it));
	cr_assert_eq(iter_status(it), 0);
	iter_free(it);
	bb_free(&bb);
}

Test(block, mutated_blocks_never_read_out_of_bounds)
{
	struct model m = {0};
	struct block_builder bb;
	struct slice raw;
	uint64_t rng = 77;
	model_build(&m, 77, 40);
	block_from_model(&m, 4, &bb, &raw);
	for (int round = 0; round < 20000; round++) {
		size_t n = raw.len;
		if (round % 7 == 0)
			n = prng_below(&rng, raw.len + 1); /* truncated */
		uint8_t *d = malloc(n ? n : 1);            /* exact size: ASan sees overreads */
		memcpy(d, raw.data, n);
		int flips = 1 + (int)prng_below(&rng, 4);
		for (int j = 0; j < flips && n; j++)
			d[prng_below(&rng, n)] ^= (uint8_t)(1u << prng_below(&rng, 8));
		(void)block_fuzz_one(d, n);
		free(d);
	}
	/* garbage of every small length */
	for (size_t n = 0; n < 64; n++) {
		uint8_t *d = malloc(n ? n : 1);
		for (size_t j = 0; j < n; j++)
			d[j] = (uint8_t)prng_next(&rng);
		(void)block_fuzz_one(d, n);
		free(d);
	}
	bb_free(&bb);
	model_free(&m);
}

/* ---- corruption ---- */

static char *build_mem(const struct table_options *o, const struct model *m, size_t *len)
{
	struct cairn_env *env;
	char *data;
	cr_assert_eq(env_sim_new(1, 0, &env), 0);
	build_file(env, "t.sst", o, m, NULL);
	cr_assert_eq(env_sim_read_file(env, "t.sst", &data, len), 0);
	env_sim_free(env);
	return data;
}

/* Opens data[0, len) claiming file_size; returns the table or NULL with the
 * error checked to be a clean ECORRUPT / EVERSION with a message. */
static struct table *open_mem(const char *data, size_t len, uint64_t file_size, struct cache *bc,
                              const char *what)
{
	struct table *t = NULL;
	char err[256] = "";
	int r = table_open(memfile_new(data, len), "mem.sst", file_size, bc, &t, err, sizeof(err));
	if (r) {
		cr_assert(r == CAIRN_ECORRUPT || r == CAIRN_EVERSION, "%s: open gave %d", what, r);
		cr_assert_not_null(strstr(err, "table 'mem.sst': "), "%s: message '%s'", what, err);
		cr_assert_null(t);
		return NULL;
	}
	return t;
}

/* Every read of a corrupt table gives an error or the model's data. */
static void check_corrupt_reads(struct table *t, const struct model *m, const char *what)
{
	struct iter *it = table_iter_new(t);
	size_t i = 0;
	for (iter_seek_first(it); iter_valid(it); iter_next(it), i++) {
		cr_assert_lt(i, m->n, "%s", what);
		cr_assert(slice_eq(iter_key(it), buf_slice(&m->e[i].k)), "%s: key %zu", what, i);
		cr_assert(slice_eq(iter_value(it), buf_slice(&m->e[i].v)), "%s: val %zu", what, i);
	}
	int s = iter_status(it);
	cr_assert(s == 0 ? i == m->n : s == CAIRN_ECORRUPT, "%s: forward %zu/%zu status %d", what,
	          i, m->n, s);
	i = m->n;
	for (iter_seek_last(it); iter_valid(it); iter_prev(it)) {
		cr_assert_gt(i, 0, "%s", what);
		i--;
		cr_assert(slice_eq(iter_key(it), buf_slice(&m->e[i].k)), "%s: back %zu", what, i);
	}
	s = iter_status(it);
	cr_assert(s == 0 ? i == 0 : s == CAIRN_ECORRUPT, "%s: backward", what);
	iter_free(it);
	struct buf fk = {0}, fv = {0}, k = {0};
	for (size_t j = 0; j < m->n; j++) {
		int r = table_get(t, buf_slice(&m->e[j].k), &fk, &fv);
		cr_assert(r == 1 || r == CAIRN_ECORRUPT, "%s: get %zu gave %d", what, j, r);
		if (r == 1) {
			cr_assert(slice_eq(buf_slice(&fk), buf_slice(&m->e[j].k)), "%s", what);
			cr_assert(slice_eq(buf_slice(&fv), buf_slice(&m->e[j].v)), "%s", what);
		} else {
			char msg[256];
			table_last_error(t, msg, sizeof(msg));
			cr_assert_not_null(strstr(msg, "table 'mem.sst': block at offset"),
			                   "%s: '%s'", what, msg);
		}
		/* a key just after this user key's versions is never found */
		buf_clear(&k);
		buf_set(&k, m->e[j].k.data, m->e[j].k.len - 8);
		buf_append(&k, "\x01", 1);
		ikey_append(&k, slice_make("", 0), MAX_SEQUENCE, TYPE_SEEK);
		r = table_get(t, buf_slice(&k), &fk, &fv);
		cr_assert(r == 0 || r == CAIRN_ECORRUPT, "%s: miss %zu gave %d", what, j, r);
	}
	buf_free(&fk);
	buf_free(&fv);
	buf_free(&k);
}

Test(corrupt, every_bit_flip_is_caught_or_harmless)
{
	struct model m = {0};
	size_t len;
	struct table_options o = opts_make(256, 4, 10, 1);
	model_build(&m, 31, 25);
	char *good = build_mem(&o, &m, &len);
	char *bad = malloc(len);
	int opened = 0;
	for (size_t bit = 0; bit < len * 8; bit++) {
		char what[64];
		snprintf(what, sizeof(what), "bit %zu of %zu bytes", bit, len);
		memcpy(bad, good, len);
		bad[bit / 8] ^= (char)(1 << (bit % 8));
		struct table *t = open_mem(bad, len, len, NULL, what);
		if (!t)
			continue;
		opened++;
		check_corrupt_reads(t, &m, what);
		/* verify sees the damage (only data blocks are left to hold it) */
		cr_assert_gt(table_verify(t, NULL, NULL), 0, "%s: verify found nothing", what);
		table_close(t);
	}
	/* flips inside data blocks open fine and fail on read */
	cr_assert_gt(opened, 0);
	free(bad);
	free(good);
	model_free(&m);
}

Test(corrupt, sampled_bit_flips_in_a_large_table_with_cache)
{
	struct model m = {0};
	size_t len;
	uint64_t rng = 99;
	struct cache *bc;
	struct table_options o = opts_make(1024, 16, 10, 1);
	model_build(&m, 99, 400);
	char *good = build_mem(&o, &m, &len);
	char *bad = malloc(len);
	for (int round = 0; round < 300; round++) {
		char what[64];
		size_t bit = prng_below(&rng, len * 8);
		snprintf(what, sizeof(what), "seed 99 bit %zu of %zu bytes", bit, len);
		memcpy(bad, good, len);
		bad[bit / 8] ^= (char)(1 << (bit % 8));
		cr_assert_eq(cache_new(1 << 20, &bc), 0);
		struct table *t = open_mem(bad, len, len, bc, what);
		if (t) {
			check_corrupt_reads(t, &m, what);
			table_close(t);
		}
		cache_free(bc);
	}
	free(bad);
	free(good);
	model_free(&m);
}

Test(corrupt, truncation_at_every_length_is_a_clear_error)
{
	struct model m = {0};
	size_t len;
	struct table_options o = opts_make(256, 4, 10, 1);
	model_build(&m, 41, 25);
	char *good = build_mem(&o, &m, &len);
	for (size_t n = 0; n < len; n++) {
		char what[64];
		snprintf(what, sizeof(what), "cut at %zu of %zu", n, len);
		/* a file cut short and known by its new size */
		cr_assert_null(open_mem(good, n, n, NULL, what), "%s opened", what);
		/* a file cut short behind a size recorded before the cut */
		cr_assert_null(open_mem(good, n, len, NULL, what), "%s opened", what);
	}
	free(good);
	model_free(&m);
}

Test(corrupt, future_version_is_eversion)
{
	struct model m = {0};
	size_t len;
	struct table_options o = opts_make(256, 4, 0, 0);
	model_build(&m, 51, 10);
	char *d = build_mem(&o, &m, &len);
	char *ft = d + len - 64;
	enc_fixed32(ft + 48, 2);
	enc_fixed32(ft + 52, crc32c_mask(crc32c(ft, 52)));
	struct table *t = NULL;
	char err[256];
	cr_assert_eq(table_open(memfile_new(d, len), "v.sst", len, NULL, &t, err, sizeof(err)),
	             CAIRN_EVERSION);
	cr_assert_not_null(strstr(err, "version 2"), "%s", err);
	free(d);
	model_free(&m);
}

/* ---- verify and dump ---- */

struct reports {
	int n;
	uint64_t off;
	char first[256];
};

static void report_fn(void *ctx, uint64_t off, const char *what)
{
	struct reports *r = ctx;
	if (r->n++ == 0) {
		r->off = off;
		snprintf(r->first, sizeof(r->first), "%s", what);
	}
}

Test(verify, reports_a_bad_data_block_with_its_offset)
{
	struct model m = {0};
	size_t len;
	struct table_options o = opts_make(256, 4, 10, 0);
	model_build(&m, 61, 40);
	char *d = build_mem(&o, &m, &len);
	struct table *t = open_mem(d, len, len, NULL, "clean");
	struct reports rep = {0};
	cr_assert_eq(table_verify(t, report_fn, &rep), 0);
	table_close(t);
	d[300] ^= 0x10; /* inside the second or third data block */
	t = open_mem(d, len, len, NULL, "bad");
	cr_assert_not_null(t);
	int nrep = table_verify(t, report_fn, &rep);
	cr_assert_eq(nrep, 1, "%d problems, first at %llu: %s", nrep, (unsigned long long)rep.off,
	             rep.first);
	cr_assert_leq(rep.off, 300);
	cr_assert_not_null(strstr(rep.first, "checksum mismatch"), "%s", rep.first);
	table_close(t);
	free(d);
	model_free(&m);
}

struct lines {
	int n;
	int saw_escape;
	int saw_index;
};

static void line_fn(void *ctx, const char *line)
{
	struct lines *l = ctx;
	l->n++;
	if (strstr(line, "\\xff\\xff"))
		l->saw_escape = 1;
	if (strncmp(line, "index: ", 7) == 0)
		l->saw_index++;
}

Test(dump, prints_header_index_and_every_entry)
{
	struct model m = {0};
	size_t len;
	struct table_options o = opts_make(512, 16, 10, 1);
	model_build(&m, 71, 200);
	char *d = build_mem(&o, &m, &len);
	struct table *t = open_mem(d, len, len, NULL, "dump");
	struct lines l = {0};
	cr_assert_eq(table_dump(t, line_fn, &l), 0);
	uint64_t blocks = table_properties(t)->num_data_blocks;
	cr_assert_eq(l.saw_index, (int)blocks);
	cr_assert_eq(l.n, 4 + (int)blocks + (int)m.n);
	cr_assert(l.saw_escape);
	table_close(t);
	free(d);
	model_free(&m);
}

Test(sstable, approx_offset_grows_with_the_key)
{
	struct model m = {0};
	size_t len;
	struct table_options o = opts_make(256, 16, 0, 0);
	model_build(&m, 81, 300);
	char *d = build_mem(&o, &m, &len);
	struct table *t = open_mem(d, len, len, NULL, "approx");
	uint64_t prev = 0;
	for (size_t i = 0; i < m.n; i++) {
		uint64_t off = table_approx_offset(t, buf_slice(&m.e[i].k));
		cr_assert_geq(off, prev);
		prev = off;
	}
	cr_assert_gt(prev, 0);
	cr_assert_leq(prev, table_properties(t)->data_bytes);
	table_close(t);
	free(d);
	model_free(&m);
}

/* ---- the table cache ---- */

Test(tcache, file_name_format)
{
	char p[64];
	table_file_name(p, sizeof(p), "db", 123);
	cr_assert_str_eq(p, "db/000123.sst");
	table_file_name(p, sizeof(p), "db", 12345678);
	cr_assert_str_eq(p, "db/12345678.sst");
}

#define NTABLES 40

Test(tcache, open_tables_stay_bounded_and_pins_survive_eviction, .init = setup_dir,
     .fini = teardown_dir)
{
	struct model m[NTABLES];
	uint64_t sizes[NTABLES];
	struct table_options o = opts_make(512, 16, 10, 1);
	struct table_read_stats st = {0};
	struct table_cache *tc;
	struct cache *bc;
	char path[4200], err[256];

	for (int i = 0; i < NTABLES; i++) {
		memset(&m[i], 0, sizeof(m[i]));
		model_build(&m[i], 1000 + (uint64_t)i, 30);
		table_file_name(path, sizeof(path), tmpdir, (uint64_t)i + 1);
		build_file(env_posix(), path, &o, &m[i], NULL);
		cr_assert_eq(env_file_size(env_posix(), path, &sizes[i]), 0);
	}
	cr_assert_eq(cache_new(1 << 20, &bc), 0);
	cr_assert_eq(tcache_new(env_posix(), tmpdir, 16, bc, &st, &tc), 0);

	/* an iterator pins table 1 while all others churn through the cache */
	struct iter *pinned = tcache_iter(tc, XP(1, sizes[0]));
	iter_seek_first(pinned);
	for (int round = 0; round < 3; round++) {
		for (int i = 0; i < NTABLES; i++) {
			struct buf fk = {0}, fv = {0};
			size_t j = (size_t)(round * 7 + i) % m[i].n;
			int r = tcache_table_get(tc, XP((uint64_t)i + 1, sizes[i]),
			                         buf_slice(&m[i].e[j].k), &fk, &fv, err,
			                         sizeof(err));
			cr_assert_eq(r, 1, "table %d: %d %s", i + 1, r, err);
			cr_assert(slice_eq(buf_slice(&fv), buf_slice(&m[i].e[j].v)));
			buf_free(&fk);
			buf_free(&fv);
			uint64_t open;
			tcache_counters(tc, NULL, NULL, &open);
			/* 16 shards of 1: at most 16 unpinned, plus the pinned one */
			cr_assert_leq(open, 17, "%llu tables open", (unsigned long long)open);
		}
	}
	size_t n = 0;
	for (; iter_valid(pinned); iter_next(pinned), n++)
		cr_assert(slice_eq(iter_key(pinned), buf_slice(&m[0].e[n].k)));
	cr_assert_eq(n, m[0].n);
	iter_free(pinned);
	cr_assert_gt(st.bloom_checks, 0);

	/* evict forgets: the next get opens the file again */
	uint64_t h0, m0, h1, m1;
	struct table *t;
	struct cache_handle *h;
	cr_assert_eq(tcache_get(tc, XP(5, sizes[4]), &t, &h, err, sizeof(err)), 0);
	tcache_release(tc, h);
	tcache_counters(tc, &h0, &m0, NULL);
	tcache_evict(tc, 5);
	cr_assert_eq(tcache_get(tc, XP(5, sizes[4]), &t, &h, err, sizeof(err)), 0);
	tcache_release(tc, h);
	tcache_counters(tc, &h1, &m1, NULL);
	cr_assert_eq(m1, m0 + 1);

	/* a missing table is an error with a message, as an iterator too */
	cr_assert_lt(tcache_get(tc, XP(999, 100), &t, &h, err, sizeof(err)), 0);
	cr_assert_neq(err[0], '\0');
	struct iter *e = tcache_iter(tc, XP(999, 100));
	iter_seek_first(e);
	cr_assert(!iter_valid(e));
	cr_assert_lt(iter_status(e), 0);
	iter_free(e);

	tcache_free(tc);
	cache_free(bc);
	for (int i = 0; i < NTABLES; i++)
		model_free(&m[i]);
}

/* ---- concurrent readers ---- */

struct reader_arg {
	struct table *t;
	const struct model *m;
	int id;
	int bad;
};

static void *reader_main(void *p)
{
	struct reader_arg *a = p;
	struct buf fk = {0}, fv = {0};
	for (int round = 0; round < 3; round++)
		for (size_t i = (size_t)a->id; i < a->m->n; i += 2) {
			int r = table_get(a->t, buf_slice(&a->m->e[i].k), &fk, &fv);
			if (r != 1 || !slice_eq(buf_slice(&fv), buf_slice(&a->m->e[i].v)))
				a->bad++;
		}
	struct iter *it = table_iter_new(a->t);
	size_t n = 0;
	for (iter_seek_first(it); iter_valid(it); iter_next(it))
		n++;
	if (n != a->m->n || iter_status(it))
		a->bad++;
	iter_free(it);
	buf_free(&fk);
	buf_free(&fv);
	return NULL;
}

Test(sstable, concurrent_readers_share_one_table_and_cache)
{
	struct model m = {0};
	size_t len;
	struct cache *bc;
	struct table_read_stats st = {0};
	struct table_options o = opts_make(512, 16, 10, 1);
	model_build(&m, 123, 2000);
	char *d = build_mem(&o, &m, &len);
	cr_assert_eq(cache_new(16 * 1024, &bc), 0); /* small: forces evictions */
	struct table *t = open_mem(d, len, len, bc, "threads");
	table_set_stats(t, &st);
	pthread_t th[4];
	struct reader_arg args[4];
	for (int i = 0; i < 4; i++) {
		args[i] = (struct reader_arg){.t = t, .m = &m, .id = i % 2};
		cr_assert_eq(pthread_create(&th[i], NULL, reader_main, &args[i]), 0);
	}
	for (int i = 0; i < 4; i++) {
		pthread_join(th[i], NULL);
		cr_assert_eq(args[i].bad, 0, "reader %d saw %d bad reads", i, args[i].bad);
	}
	cr_assert_eq(st.bloom_checks, 3 * m.n * 2);
	table_close(t);
	cache_free(bc);
	free(d);
	model_free(&m);
}

/* The file number is written in version 2 properties and read back; a table
 * built without one keeps version 1 properties, which stay readable; every
 * property the manifest records is compared at open. */
Test(tcache, table_under_another_name_or_with_other_properties_is_refused, .init = setup_dir,
     .fini = teardown_dir)
{
	struct model m;
	struct table_props props;
	char p1[4200], p2[4200], err[512] = "";
	uint64_t s1, s2;
	memset(&m, 0, sizeof(m));
	model_build(&m, 77, 40);
	struct table_options o = opts_make(512, 16, 10, 0);
	o.file_number = 7;
	table_file_name(p1, sizeof(p1), tmpdir, 7);
	build_file(env_posix(), p1, &o, &m, &props);
	cr_assert_eq(props.file_number, 7);
	o.file_number = 0;
	table_file_name(p2, sizeof(p2), tmpdir, 8);
	build_file(env_posix(), p2, &o, &m, NULL);
	cr_assert_eq(env_file_size(env_posix(), p1, &s1), 0);
	cr_assert_eq(env_file_size(env_posix(), p2, &s2), 0);
	cr_assert_eq(s1, s2 + 8, "version 2 properties hold 8 more bytes");

	struct table *t = open_file(env_posix(), p1, NULL);
	cr_assert_eq(table_properties(t)->file_number, 7);
	struct table_expect x = {.number = 7,
	                         .size = s1,
	                         .has_meta = 1,
	                         .smallest = buf_slice(&props.smallest),
	                         .largest = buf_slice(&props.largest),
	                         .num_entries = props.num_entries,
	                         .min_seq = props.min_seq,
	                         .max_seq = props.max_seq};
	cr_assert_eq(table_check_expect(t, &x, err, sizeof(err)), 0, "%s", err);
	x.number = 9;
	cr_assert_eq(table_check_expect(t, &x, err, sizeof(err)), CAIRN_ECORRUPT);
	cr_assert(strstr(err, "000007.sst") && strstr(err, "file number is 7"), "%s", err);
	x.number = 7;
	x.num_entries++;
	cr_assert_eq(table_check_expect(t, &x, err, sizeof(err)), CAIRN_ECORRUPT);
	cr_assert(strstr(err, "entry count"), "%s", err);
	x.num_entries--;
	x.max_seq++;
	cr_assert_eq(table_check_expect(t, &x, err, sizeof(err)), CAIRN_ECORRUPT);
	x.max_seq--;
	x.largest = x.smallest;
	cr_assert_eq(table_check_expect(t, &x, err, sizeof(err)), CAIRN_ECORRUPT);
	cr_assert(strstr(err, "largest key"), "%s", err);
	table_close(t);

	/* version 1: no number to compare, the rest still is */
	t = open_file(env_posix(), p2, NULL);
	cr_assert_eq(table_properties(t)->file_number, 0);
	x.largest = buf_slice(&props.largest);
	x.number = 8;
	x.size = s2;
	cr_assert_eq(table_check_expect(t, &x, err, sizeof(err)), 0, "%s", err);
	x.min_seq++;
	cr_assert_eq(table_check_expect(t, &x, err, sizeof(err)), CAIRN_ECORRUPT);
	table_close(t);

	/* the cache refuses table 7's bytes under number 9, and caches nothing */
	char p9[4200];
	table_file_name(p9, sizeof(p9), tmpdir, 9);
	cr_assert_eq(rename(p1, p9), 0);
	struct table_cache *tc;
	struct cache_handle *h;
	cr_assert_eq(tcache_new(env_posix(), tmpdir, 16, NULL, NULL, &tc), 0);
	cr_assert_eq(tcache_get(tc, XP(9, s1), &t, &h, err, sizeof(err)), CAIRN_ECORRUPT);
	cr_assert(strstr(err, "000009.sst"), "%s", err);
	struct iter *it = tcache_iter(tc, XP(9, s1));
	iter_seek_first(it);
	cr_assert(!iter_valid(it));
	cr_assert_eq(iter_status(it), CAIRN_ECORRUPT);
	iter_free(it);
	uint64_t open;
	tcache_counters(tc, NULL, NULL, &open);
	cr_assert_eq(open, 0);
	tcache_free(tc);
	table_props_free(&props);
	model_free(&m);
}
