/*
 * cairn-bench.c - a db_bench-style benchmark that runs the same workloads on
 * cairn and on its peers (LevelDB, RocksDB, LMDB, SQLite), one engine per
 * process, and reports throughput, latency percentiles, space, write
 * amplification and peak memory as text and as CSV rows.
 *
 *   cairn-bench --engine=cairn --benchmarks=fillrandom,readrandom --num=100000
 *
 * How the numbers are made
 * - Keys are key_size bytes: the key index as 8 big-endian bytes, padded
 *   with '0'. Missing keys (readmissing) pad with '.' instead, so they fall
 *   between existing keys and must be answered by filters or lookups, not by
 *   key-range checks.
 * - Values come from a buffer of random bytes in which every 100-byte chunk
 *   is 50 random printable bytes followed by a copy of them, so values
 *   compress to about half, like db_bench's RandomGenerator.
 * - fillrandom, fillsync and fillthreads write every key of [0, n) exactly
 *   once in a pseudo-random order (a keyed bijection of [0, n), so no
 *   memory per key); overwrite, readrandom, readmissing, seekrandom,
 *   deleterandom and the writer of readwhilewriting draw keys uniformly with
 *   replacement from [0, num).
 * - Every operation is timed with clock_gettime(CLOCK_MONOTONIC) into a
 *   log-linear histogram (32 sub-buckets per power of two, about 3% error,
 *   15 KiB per thread), whatever the operation count. A scan step is one
 *   operation.
 * - ops/s and MB/s (MiB of keys + values per second) use the wall time of
 *   the whole workload, including the last commit of batched writes.
 * - disk_bytes is the space the engine's directory takes after the workload
 *   (st_blocks, like du). write_amp is the bytes the block device holding
 *   the directory received during the workload (sectors written in
 *   /proc/diskstats, sampled after syncfs() before and after) over the bytes
 *   of keys and values written; n/a when nothing was written or when the
 *   directory is not on a block device listed there (tmpfs, overlay). It
 *   counts every writer of that device, so run on a quiet machine. Work an
 *   engine defers (compactions still pending, LMDB's dirty map) is counted
 *   only as far as syncfs() forces it out.
 * - peak_rss_kib is getrusage(RUSAGE_SELF).ru_maxrss after the workload;
 *   the high-water mark is reset before each workload (clear_refs) where the
 *   kernel allows, so it is the peak of that workload. It includes the
 *   process's own buffers and any mapped file pages (LMDB's map). Before
 *   the reset, heap memory that earlier workloads freed but malloc kept is
 *   given back (malloc_trim, with glibc): otherwise a workload's peak would
 *   start from the retained garbage of the ones before it (a closed
 *   database's block cache, say), whatever its own use.
 *
 * Settings, the same for every engine: no sync except in fillsync and
 * fillthreads (one sync per write), an 8 MiB block cache for cairn, LevelDB
 * and RocksDB, engine defaults otherwise; LMDB and SQLite group 1000 writes
 * per transaction when not syncing. Each adapter (cli/bench_<engine>.c) says
 * exactly what it sets; --settings prints it.
 *
 * Workloads start from an empty database when their name starts with
 * "fill" (unless --use_existing_db) and use the database as the previous
 * workload left it otherwise.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <time.h>
#include <unistd.h>

#include "cairn.h"
#include "bench.h"

#define MIB (1024.0 * 1024.0)

static const struct bench_engine *const bench_engines[] = {
        &bench_cairn,
#ifdef HAVE_LEVELDB
        &bench_leveldb,
#endif
#ifdef HAVE_ROCKSDB
        &bench_rocksdb,
#endif
#ifdef HAVE_LMDB
        &bench_lmdb,
#endif
#ifdef HAVE_SQLITE
        &bench_sqlite,
#endif
};
#define BENCH_NENGINES (sizeof(bench_engines) / sizeof(bench_engines[0]))

/* ---- latency histogram ------------------------------------------------- */

/* Values below 32 ns have a bucket each; above, each power of two has 32
 * buckets. 60 powers of two cover every uint64_t. */
#define HIST_SUB     32
#define HIST_BUCKETS (60 * HIST_SUB)

struct hist {
	uint64_t count;
	uint64_t bucket[HIST_BUCKETS];
};

static unsigned hist_index(uint64_t ns)
{
	unsigned e;

	if (ns < HIST_SUB)
		return (unsigned)ns;
	e = 63u - (unsigned)__builtin_clzll(ns); /* >= 5 */
	return (e - 4) * HIST_SUB + (unsigned)((ns >> (e - 5)) & (HIST_SUB - 1));
}

/* The middle of the values that map to bucket i. */
static double hist_value(unsigned i)
{
	unsigned e, sub;
	double lo;

	if (i < HIST_SUB)
		return i;
	e = i / HIST_SUB + 4;
	sub = i % HIST_SUB;
	lo = (double)(HIST_SUB + sub) * (double)(1ull << (e - 5));
	return lo + (double)(1ull << (e - 5)) / 2;
}

static void hist_add(struct hist *h, uint64_t ns)
{
	h->bucket[hist_index(ns)]++;
	h->count++;
}

static void hist_merge(struct hist *dst, const struct hist *src)
{
	for (unsigned i = 0; i < HIST_BUCKETS; i++)
		dst->bucket[i] += src->bucket[i];
	dst->count += src->count;
}

/* The p-th quantile (0 < p <= 1) in microseconds; 0 for an empty histogram. */
static double hist_quantile_us(const struct hist *h, double p)
{
	uint64_t want, seen = 0;

	if (!h->count)
		return 0;
	want = (uint64_t)(p * (double)h->count + 0.999999);
	if (want < 1)
		want = 1;
	for (unsigned i = 0; i < HIST_BUCKETS; i++) {
		seen += h->bucket[i];
		if (seen >= want)
			return hist_value(i) / 1000.0;
	}
	return hist_value(HIST_BUCKETS - 1) / 1000.0;
}

/* ---- time, random numbers, keys and values ----------------------------- */

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static uint64_t rng_next(uint64_t *s)
{
	uint64_t z = (*s += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

/* A keyed bijection of [0, n): rounds of odd multiplications and
 * xor-shifts, each a bijection of [0, 2^bits), with cycle walking until the
 * result falls below n (fewer than two rounds on average). */
struct perm {
	uint64_t n, mask, mul[3], add[3];
	unsigned shift;
};

static void perm_init(struct perm *p, uint64_t n, uint64_t seed)
{
	unsigned bits = 1;

	while (bits < 64 && (1ull << bits) < n)
		bits++;
	p->n = n;
	p->mask = bits == 64 ? ~0ull : (1ull << bits) - 1;
	p->shift = (bits + 1) / 2;
	for (int i = 0; i < 3; i++) {
		p->mul[i] = rng_next(&seed) | 1;
		p->add[i] = rng_next(&seed);
	}
}

static uint64_t perm_apply(const struct perm *p, uint64_t x)
{
	do {
		for (int i = 0; i < 3; i++) {
			x = (x * p->mul[i] + p->add[i]) & p->mask;
			x ^= x >> p->shift;
		}
	} while (x >= p->n);
	return x;
}

static void key_make(char *key, size_t ksize, uint64_t idx, int missing)
{
	for (int i = 0; i < 8; i++)
		key[i] = (char)(idx >> (56 - 8 * i));
	memset(key + 8, missing ? '.' : '0', ksize - 8);
}

/* The value buffer: values are slices of it, taken at a moving offset. */
struct gen {
	char *data;
	size_t size;
};

static int gen_prepare(struct gen *g, size_t vsize, uint64_t seed)
{
	size_t need = vsize + (1u << 20);

	if (g->data && g->size >= need)
		return 0;
	free(g->data);
	g->data = malloc(need);
	if (!g->data)
		return -1;
	g->size = need;
	for (size_t off = 0; off < need; off += 100) {
		size_t chunk = need - off < 100 ? need - off : 100;
		size_t half = (chunk + 1) / 2;

		for (size_t i = 0; i < half; i++)
			g->data[off + i] = (char)(' ' + rng_next(&seed) % 95);
		memcpy(g->data + off + half, g->data + off, chunk - half);
	}
	return 0;
}

static const char *gen_value(const struct gen *g, size_t *pos, size_t vsize)
{
	if (*pos + vsize > g->size)
		*pos = 0;
	const char *v = g->data + *pos;
	*pos += vsize;
	return v;
}

/* ---- workloads ------------------------------------------------------------ */

enum wl_kind {
	WL_FILLSEQ,
	WL_FILLRANDOM,
	WL_OVERWRITE,
	WL_READRANDOM,
	WL_READMISSING,
	WL_READSEQ,
	WL_READREVERSE,
	WL_SEEKRANDOM,
	WL_DELETERANDOM,
	WL_READWHILEWRITING,
};

enum wl_count {
	CNT_NUM,   /* --num operations */
	CNT_SYNC,  /* --sync_num (default num / 100) */
	CNT_LARGE, /* --large_num, or `large` */
};

struct workload {
	const char *name;
	enum wl_kind kind;
	int fresh;
	int sync;
	int threads; /* 0: --threads */
	enum wl_count count;
	uint64_t large; /* default operations for CNT_LARGE */
	size_t vsize;   /* 0: --value_size */
};

static const struct workload workloads[] = {
        {"fillseq", WL_FILLSEQ, 1, 0, 1, CNT_NUM, 0, 0},
        {"fillrandom", WL_FILLRANDOM, 1, 0, 1, CNT_NUM, 0, 0},
        {"overwrite", WL_OVERWRITE, 0, 0, 1, CNT_NUM, 0, 0},
        {"fillsync", WL_FILLRANDOM, 1, 1, 1, CNT_SYNC, 0, 0},
        {"readrandom", WL_READRANDOM, 0, 0, 1, CNT_NUM, 0, 0},
        {"readmissing", WL_READMISSING, 0, 0, 1, CNT_NUM, 0, 0},
        {"readseq", WL_READSEQ, 0, 0, 1, CNT_NUM, 0, 0},
        {"readreverse", WL_READREVERSE, 0, 0, 1, CNT_NUM, 0, 0},
        {"seekrandom", WL_SEEKRANDOM, 0, 0, 1, CNT_NUM, 0, 0},
        {"deleterandom", WL_DELETERANDOM, 0, 0, 1, CNT_NUM, 0, 0},
        {"readwhilewriting", WL_READWHILEWRITING, 0, 0, 1, CNT_NUM, 0, 0},
        {"fill1m", WL_FILLSEQ, 1, 0, 1, CNT_LARGE, 100, 1u << 20},
        {"fill64m", WL_FILLSEQ, 1, 0, 1, CNT_LARGE, 4, 64u << 20},
        {"fillthreads", WL_FILLRANDOM, 1, 1, 0, CNT_SYNC, 0, 0},
};
#define NWORKLOADS (sizeof(workloads) / sizeof(workloads[0]))

#define DEFAULT_BENCHMARKS                                                                         \
	"fillseq,fillrandom,overwrite,readrandom,readmissing,readseq,readreverse,seekrandom,"      \
	"readwhilewriting,deleterandom,fillsync,fillthreads,fill1m,fill64m"

struct config {
	uint64_t num;
	size_t key_size, value_size;
	const char *engine, *benchmarks, *dbroot, *csv;
	int use_existing_db;
	int threads, readers;
	uint64_t seed;
	uint64_t sync_num, large_num; /* 0: the default */
};

struct bench {
	struct config cfg;
	const struct bench_engine *eng;
	char dir[PATH_MAX];
	void *db;
	struct gen gen;
	size_t value_written; /* value size of the last fill, checked by reads */
	int have_dev;
	unsigned dev_major, dev_minor;
};

/* One workload being run. */
struct run {
	struct bench *b;
	const struct workload *w;
	uint64_t ops; /* operations in total (readers' for readwhilewriting) */
	size_t vsize;
	int workers; /* threads sharing the operations */
	struct perm perm;
	pthread_barrier_t start;
	atomic_int readers_left;
};

struct worker {
	struct run *r;
	pthread_t tid;
	int id;
	int writer; /* the background writer of readwhilewriting */
	uint64_t rng;
	size_t gpos;
	uint64_t ops, bytes, wbytes, found;
	int err;
	uint64_t start_ns, end_ns; /* this worker's part of the wall time */
	struct hist hist;
	/* scan state */
	uint64_t last_ns;
	char prev[CAIRN_MAX_KEY_SIZE];
	size_t prev_len;
};

static int worker_point_op(struct worker *wk, void *t, uint64_t i)
{
	struct run *r = wk->r;
	const struct bench_engine *e = r->b->eng;
	size_t ks = r->b->cfg.key_size, vlen = 0;
	char key[CAIRN_MAX_KEY_SIZE];
	enum wl_kind kind = wk->writer ? WL_OVERWRITE : r->w->kind;
	uint64_t idx, t0, t1;
	const char *val = NULL;
	int rc;

	if (kind == WL_FILLSEQ)
		idx = i;
	else if (kind == WL_FILLRANDOM)
		idx = perm_apply(&r->perm, i);
	else
		idx = rng_next(&wk->rng) % r->b->cfg.num;
	key_make(key, ks, idx, kind == WL_READMISSING);
	if (kind == WL_FILLSEQ || kind == WL_FILLRANDOM || kind == WL_OVERWRITE)
		val = gen_value(&r->b->gen, &wk->gpos, r->vsize);

	t0 = now_ns();
	switch (kind) {
	case WL_FILLSEQ:
	case WL_FILLRANDOM:
	case WL_OVERWRITE:
		rc = e->put(t, key, ks, val, r->vsize);
		vlen = r->vsize;
		wk->wbytes += ks + vlen;
		break;
	case WL_DELETERANDOM:
		rc = e->del(t, key, ks);
		wk->wbytes += ks;
		break;
	case WL_SEEKRANDOM:
		rc = e->seek(t, key, ks, &vlen);
		if (rc == 1)
			vlen -= ks < vlen ? ks : vlen;
		break;
	default:
		rc = e->get(t, key, ks, &vlen);
		if (rc == 1 && vlen != r->b->value_written) {
			fprintf(stderr,
			        "cairn-bench: %s: key %" PRIu64 " has %zu value bytes, wrote %zu\n",
			        e->name, idx, vlen, r->b->value_written);
			return -1;
		}
		break;
	}
	t1 = now_ns();
	if (rc < 0)
		return -1;
	if (!wk->writer)
		hist_add(&wk->hist, t1 - t0);
	wk->found += rc == 1;
	wk->ops++;
	if (kind == WL_DELETERANDOM)
		wk->bytes += ks;
	else if (rc == 1 || val)
		wk->bytes += ks + vlen;
	return 0;
}

static int worker_scan_entry(void *arg, const void *key, size_t klen, size_t vlen)
{
	struct worker *wk = arg;
	uint64_t t = now_ns();
	int order = 0;

	hist_add(&wk->hist, t - wk->last_ns);
	wk->last_ns = t;
	if (wk->ops) {
		size_t n = klen < wk->prev_len ? klen : wk->prev_len;

		order = memcmp(key, wk->prev, n);
		if (!order)
			order = (klen > wk->prev_len) - (klen < wk->prev_len);
		if (wk->r->w->kind == WL_READREVERSE)
			order = -order;
	}
	if (wk->ops && order <= 0) {
		fprintf(stderr, "cairn-bench: %s: scan entry %" PRIu64 " is out of order\n",
		        wk->r->b->eng->name, wk->ops);
		wk->err = 1;
		return 1;
	}
	if (klen > sizeof(wk->prev))
		klen = sizeof(wk->prev);
	memcpy(wk->prev, key, klen);
	wk->prev_len = klen;
	wk->ops++;
	wk->found++;
	wk->bytes += klen + vlen;
	return wk->ops >= wk->r->ops;
}

static void worker_loop(struct worker *wk, void *t)
{
	struct run *r = wk->r;

	if (wk->writer) {
		for (uint64_t i = 0; atomic_load(&r->readers_left) > 0; i++) {
			if (worker_point_op(wk, t, i)) {
				wk->err = 1;
				return;
			}
		}
		return;
	}
	if (r->w->kind == WL_READSEQ || r->w->kind == WL_READREVERSE) {
		wk->last_ns = now_ns();
		if (r->b->eng->scan(t, r->w->kind == WL_READREVERSE, worker_scan_entry, wk))
			wk->err = 1;
		return;
	}
	for (uint64_t i = (uint64_t)wk->id; i < r->ops; i += (uint64_t)r->workers) {
		if (worker_point_op(wk, t, i)) {
			wk->err = 1;
			return;
		}
	}
}

static void *worker_main(void *arg)
{
	struct worker *wk = arg;
	struct run *r = wk->r;
	void *t = NULL;

	if (r->b->eng->thread_open(r->b->db, r->w->sync, &t))
		wk->err = 1;
	pthread_barrier_wait(&r->start);
	wk->start_ns = now_ns();
	if (!wk->err)
		worker_loop(wk, t);
	if (t && r->b->eng->thread_close(t))
		wk->err = 1;
	wk->end_ns = now_ns();
	if (!wk->writer)
		atomic_fetch_sub(&r->readers_left, 1);
	return NULL;
}

/* ---- the disk: space, device counters, syncs ----------------------------- */

/* Bytes the directory tree takes on disk (st_blocks, like du), not
 * following symbolic links. */
static uint64_t disk_usage(const char *path)
{
	struct stat st;
	struct dirent *de;
	uint64_t total;
	DIR *d;

	if (lstat(path, &st))
		return 0;
	total = (uint64_t)st.st_blocks * 512;
	if (!S_ISDIR(st.st_mode))
		return total;
	d = opendir(path);
	if (!d)
		return total;
	while ((de = readdir(d))) {
		char sub[PATH_MAX];

		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		if (snprintf(sub, sizeof(sub), "%s/%s", path, de->d_name) < (int)sizeof(sub))
			total += disk_usage(sub);
	}
	closedir(d);
	return total;
}

static int rm_visit(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)ftw;
	return flag == FTW_DP ? rmdir(path) : unlink(path);
}

static int remove_tree(const char *dir)
{
	struct stat st;

	if (lstat(dir, &st) && errno == ENOENT)
		return 0;
	return nftw(dir, rm_visit, 16, FTW_DEPTH | FTW_PHYS);
}

static void sync_dir(const char *dir)
{
	int fd = open(dir, O_RDONLY | O_DIRECTORY);

	if (fd < 0)
		return;
	syncfs(fd);
	close(fd);
}

/* Sectors written to the device, from /proc/diskstats; -1 if unknown. */
static int64_t dev_sectors_written(const struct bench *b)
{
	unsigned maj, min;
	char name[64], line[512];
	uint64_t f[7];
	int64_t found = -1;
	FILE *fp;

	if (!b->have_dev)
		return -1;
	fp = fopen("/proc/diskstats", "r");
	if (!fp)
		return -1;
	while (fgets(line, sizeof(line), fp)) {
		if (sscanf(line,
		           "%u %u %63s %" SCNu64 " %" SCNu64 " %" SCNu64 " %" SCNu64 " %" SCNu64
		           " %" SCNu64 " %" SCNu64,
		           &maj, &min, name, &f[0], &f[1], &f[2], &f[3], &f[4], &f[5],
		           &f[6]) == 10 &&
		    maj == b->dev_major && min == b->dev_minor) {
			found = (int64_t)f[6];
			break;
		}
	}
	fclose(fp);
	return found;
}

static void find_device(struct bench *b)
{
	struct stat st;

	if (stat(b->cfg.dbroot, &st))
		return;
	b->dev_major = major(st.st_dev);
	b->dev_minor = minor(st.st_dev);
	b->have_dev = 1;
	if (dev_sectors_written(b) < 0)
		b->have_dev = 0;
}

static void reset_peak_rss(void)
{
#ifdef __GLIBC__
	malloc_trim(0);
#endif
	int fd = open("/proc/self/clear_refs", O_WRONLY);

	if (fd < 0)
		return;
	if (write(fd, "5", 1) < 0) {
		/* older kernels: the peak then covers the process so far */
	}
	close(fd);
}

/* ---- running one workload ------------------------------------------------ */

struct result {
	uint64_t ops, found, bytes, wbytes;
	double secs;
	struct hist hist;
	uint64_t disk_bytes;
	double write_amp; /* < 0: n/a */
	long peak_rss_kib;
};

static int bench_open_db(struct bench *b, int fresh)
{
	if (fresh && !b->cfg.use_existing_db) {
		if (b->db)
			b->eng->close(b->db);
		b->db = NULL;
		if (remove_tree(b->dir)) {
			fprintf(stderr, "cairn-bench: cannot remove %s: %s\n", b->dir,
			        strerror(errno));
			return -1;
		}
	}
	if (b->db)
		return 0;
	if (mkdir(b->dir, 0755) && errno != EEXIST) {
		fprintf(stderr, "cairn-bench: mkdir %s: %s\n", b->dir, strerror(errno));
		return -1;
	}
	return b->eng->open(b->dir, &b->db);
}

static uint64_t workload_ops(const struct config *c, const struct workload *w)
{
	uint64_t n;

	switch (w->count) {
	case CNT_SYNC:
		n = c->sync_num ? c->sync_num : c->num / 100;
		break;
	case CNT_LARGE:
		n = c->large_num ? c->large_num : (w->large < c->num ? w->large : c->num);
		break;
	default:
		n = c->num;
		break;
	}
	return n ? n : 1;
}

static int run_threads(struct run *r, struct worker *wk, int nthreads, struct result *res)
{
	uint64_t t0 = UINT64_MAX, t1 = 0;
	int started = 0, err = 0;

	pthread_barrier_init(&r->start, NULL, (unsigned)nthreads + 1);
	for (int i = 0; i < nthreads; i++) {
		if (pthread_create(&wk[i].tid, NULL, worker_main, &wk[i]))
			break;
		started++;
	}
	if (started < nthreads) {
		/* the barrier can never open: nothing sensible is left to do */
		fprintf(stderr, "cairn-bench: cannot start %d threads\n", nthreads);
		exit(1);
	}
	pthread_barrier_wait(&r->start);
	for (int i = 0; i < nthreads; i++) {
		pthread_join(wk[i].tid, NULL);
		err |= wk[i].err;
		/* the wall time runs from the first start to the last end; the
		 * writer of readwhilewriting is not timed, the readers are */
		if (!wk[i].writer) {
			t0 = wk[i].start_ns < t0 ? wk[i].start_ns : t0;
			t1 = wk[i].end_ns > t1 ? wk[i].end_ns : t1;
			res->ops += wk[i].ops;
			res->found += wk[i].found;
			res->bytes += wk[i].bytes;
			hist_merge(&res->hist, &wk[i].hist);
		}
		res->wbytes += wk[i].wbytes;
	}
	pthread_barrier_destroy(&r->start);
	res->secs = (double)(t1 - t0) / 1e9;
	return err ? -1 : 0;
}

static int run_workload(struct bench *b, const struct workload *w, struct result *res)
{
	struct run r = {.b = b, .w = w};
	struct worker *wk;
	int nthreads, readers;
	int64_t s0, s1;
	struct rusage ru;
	int rc;

	memset(res, 0, sizeof(*res));
	r.ops = workload_ops(&b->cfg, w);
	r.vsize = w->vsize ? w->vsize : b->cfg.value_size;
	r.workers = w->threads ? w->threads : b->cfg.threads;
	perm_init(&r.perm, w->kind == WL_FILLRANDOM ? r.ops : 1, b->cfg.seed);
	readers = r.workers;
	nthreads = r.workers;
	if (w->kind == WL_READWHILEWRITING) {
		readers = r.workers = b->cfg.readers;
		nthreads = readers + 1;
	}
	atomic_init(&r.readers_left, readers);
	if (gen_prepare(&b->gen, r.vsize, b->cfg.seed) || bench_open_db(b, w->fresh))
		return -1;
	wk = calloc((size_t)nthreads, sizeof(*wk));
	if (!wk)
		return -1;
	for (int i = 0; i < nthreads; i++) {
		wk[i].r = &r;
		wk[i].id = i;
		wk[i].writer = i >= readers;
		wk[i].rng = b->cfg.seed * 1000003u + (uint64_t)i + 1;
		wk[i].gpos = ((size_t)i * 7919u * 100u) % (1u << 20);
	}

	sync_dir(b->dir);
	s0 = dev_sectors_written(b);
	reset_peak_rss();
	rc = run_threads(&r, wk, nthreads, res);
	free(wk);
	if (rc)
		return -1;
	if (w->kind == WL_FILLSEQ || w->kind == WL_FILLRANDOM)
		b->value_written = r.vsize;
	sync_dir(b->dir);
	s1 = dev_sectors_written(b);
	res->disk_bytes = disk_usage(b->dir);
	res->write_amp = -1;
	if (s0 >= 0 && s1 >= s0 && res->wbytes)
		res->write_amp = (double)(s1 - s0) * 512.0 / (double)res->wbytes;
	getrusage(RUSAGE_SELF, &ru);
	res->peak_rss_kib = ru.ru_maxrss;
	return 0;
}

/* ---- reporting ------------------------------------------------------------ */

static const char *report_name(const struct bench *b, const struct workload *w, char *buf,
                               size_t len)
{
	if (strcmp(w->name, "fillthreads"))
		return w->name;
	snprintf(buf, len, "fillsync%d", b->cfg.threads);
	return buf;
}

static void report(const struct bench *b, const char *name, const struct result *r)
{
	double secs = r->secs > 0 ? r->secs : 1e-9;
	char wa[32] = "n/a";
	FILE *fp;

	if (r->write_amp >= 0)
		snprintf(wa, sizeof(wa), "%.2f", r->write_amp);
	printf("%-18s: %10.0f ops/s %8.1f MB/s  p50 %8.2f us  p99 %9.2f us  p99.9 %9.2f us  "
	       "%" PRIu64 " ops (%" PRIu64 " found)  disk %.1f MiB  wamp %s  rss %ld KiB\n",
	       name, (double)r->ops / secs, (double)r->bytes / MIB / secs,
	       hist_quantile_us(&r->hist, 0.5), hist_quantile_us(&r->hist, 0.99),
	       hist_quantile_us(&r->hist, 0.999), r->ops, r->found, (double)r->disk_bytes / MIB, wa,
	       r->peak_rss_kib);
	fflush(stdout);
	if (!b->cfg.csv)
		return;
	fp = fopen(b->cfg.csv, "a");
	if (!fp) {
		fprintf(stderr, "cairn-bench: %s: %s\n", b->cfg.csv, strerror(errno));
		return;
	}
	if (ftell(fp) == 0)
		fprintf(fp, "engine,workload,ops,ops_per_sec,mb_per_sec,p50_us,p99_us,p999_us,"
		            "disk_bytes,write_amp,peak_rss_kib\n");
	fprintf(fp, "%s,%s,%" PRIu64 ",%.1f,%.2f,%.2f,%.2f,%.2f,%" PRIu64 ",%s,%ld\n", b->eng->name,
	        name, r->ops, (double)r->ops / secs, (double)r->bytes / MIB / secs,
	        hist_quantile_us(&r->hist, 0.5), hist_quantile_us(&r->hist, 0.99),
	        hist_quantile_us(&r->hist, 0.999), r->disk_bytes, wa, r->peak_rss_kib);
	fclose(fp);
}

/* ---- options ---------------------------------------------------------------- */

static void usage(FILE *fp)
{
	fprintf(fp, "usage: cairn-bench [--engine=NAME] [--benchmarks=LIST] [options]\n"
	            "  --engine=NAME        one of:");
	for (size_t i = 0; i < BENCH_NENGINES; i++)
		fprintf(fp, " %s", bench_engines[i]->name);
	fprintf(fp,
	        " (default cairn)\n"
	        "  --benchmarks=LIST    comma-separated workloads, in order (default\n"
	        "                       " DEFAULT_BENCHMARKS ")\n"
	        "  --num=N              keys (default 1000000)\n"
	        "  --key_size=N         bytes per key, 9 to 4608 (default 16)\n"
	        "  --value_size=N       bytes per value (default 100)\n"
	        "  --db=DIR             parent directory; the engine uses DIR/ENGINE\n"
	        "                       (default /tmp/cairn-bench)\n"
	        "  --csv=FILE           append one row per workload (header if new)\n"
	        "  --use_existing_db    do not empty the database before fill workloads\n"
	        "  --threads=N          writers of fillthreads, reported as fillsyncN (default 8)\n"
	        "  --readers=N          readers of readwhilewriting (default: cores - 1, >= 1)\n"
	        "  --sync_num=N         writes of fillsync and fillthreads (default num/100)\n"
	        "  --large_num=N        writes of fill1m and fill64m (default 100 and 4)\n"
	        "  --seed=N             random seed (default 301)\n"
	        "  --list_engines       print the engines built in, one per line\n"
	        "  --settings           print how --engine is configured\n");
}

static int parse_u64(const char *s, uint64_t min, uint64_t max, uint64_t *out)
{
	char *end;
	unsigned long long v;

	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno || end == s || *end || s[0] == '-' || v < min || v > max)
		return -1;
	*out = v;
	return 0;
}

enum {
	OPT_NUM = 256,
	OPT_KEY_SIZE,
	OPT_VALUE_SIZE,
	OPT_ENGINE,
	OPT_BENCHMARKS,
	OPT_DB,
	OPT_CSV,
	OPT_USE_EXISTING,
	OPT_THREADS,
	OPT_READERS,
	OPT_SYNC_NUM,
	OPT_LARGE_NUM,
	OPT_SEED,
	OPT_LIST,
	OPT_SETTINGS,
	OPT_HELP,
};

static const struct option long_opts[] = {
        {"num", required_argument, NULL, OPT_NUM},
        {"key_size", required_argument, NULL, OPT_KEY_SIZE},
        {"value_size", required_argument, NULL, OPT_VALUE_SIZE},
        {"engine", required_argument, NULL, OPT_ENGINE},
        {"benchmarks", required_argument, NULL, OPT_BENCHMARKS},
        {"db", required_argument, NULL, OPT_DB},
        {"csv", required_argument, NULL, OPT_CSV},
        {"use_existing_db", no_argument, NULL, OPT_USE_EXISTING},
        {"threads", required_argument, NULL, OPT_THREADS},
        {"readers", required_argument, NULL, OPT_READERS},
        {"sync_num", required_argument, NULL, OPT_SYNC_NUM},
        {"large_num", required_argument, NULL, OPT_LARGE_NUM},
        {"seed", required_argument, NULL, OPT_SEED},
        {"list_engines", no_argument, NULL, OPT_LIST},
        {"settings", no_argument, NULL, OPT_SETTINGS},
        {"help", no_argument, NULL, OPT_HELP},
        {NULL, 0, NULL, 0},
};

/* Parses one numeric option into *out; complains and returns -1 if bad. */
static int parse_num_opt(int opt, const char *arg, uint64_t *out)
{
	uint64_t min = 1, max = UINT64_MAX / 2;

	if (opt == OPT_KEY_SIZE) {
		min = 9;
		max = CAIRN_MAX_KEY_SIZE;
	} else if (opt == OPT_VALUE_SIZE) {
		min = 0;
		max = CAIRN_MAX_VALUE_SIZE;
	} else if (opt == OPT_THREADS || opt == OPT_READERS) {
		max = 256;
	} else if (opt == OPT_SEED || opt == OPT_SYNC_NUM || opt == OPT_LARGE_NUM) {
		min = 0;
	}
	if (parse_u64(arg, min, max, out)) {
		fprintf(stderr, "cairn-bench: bad value '%s' (%" PRIu64 " to %" PRIu64 ")\n", arg,
		        min, max);
		return -1;
	}
	return 0;
}

/* Returns 0 to run, 1 to exit successfully (help, listings), -1 on a usage
 * error. */
static int parse_args(int argc, char **argv, struct config *c, int *print_settings)
{
	uint64_t v;
	int opt;
	long ncpu = sysconf(_SC_NPROCESSORS_ONLN);

	*c = (struct config){
	        .num = 1000000,
	        .key_size = 16,
	        .value_size = 100,
	        .engine = "cairn",
	        .benchmarks = DEFAULT_BENCHMARKS,
	        .dbroot = "/tmp/cairn-bench",
	        .threads = 8,
	        .readers = ncpu > 1 ? (int)ncpu - 1 : 1,
	        .seed = 301,
	};
	while ((opt = getopt_long(argc, argv, "h", long_opts, NULL)) != -1) {
		switch (opt) {
		case OPT_ENGINE:
			c->engine = optarg;
			continue;
		case OPT_BENCHMARKS:
			c->benchmarks = optarg;
			continue;
		case OPT_DB:
			c->dbroot = optarg;
			continue;
		case OPT_CSV:
			c->csv = optarg;
			continue;
		case OPT_USE_EXISTING:
			c->use_existing_db = 1;
			continue;
		case OPT_LIST:
			for (size_t i = 0; i < BENCH_NENGINES; i++)
				printf("%s\n", bench_engines[i]->name);
			return 1;
		case OPT_SETTINGS:
			*print_settings = 1;
			continue;
		case 'h':
		case OPT_HELP:
			usage(stdout);
			return 1;
		case '?':
			usage(stderr);
			return -1;
		default:
			break;
		}
		if (parse_num_opt(opt, optarg, &v))
			return -1;
		switch (opt) {
		case OPT_NUM:
			c->num = v;
			break;
		case OPT_KEY_SIZE:
			c->key_size = v;
			break;
		case OPT_VALUE_SIZE:
			c->value_size = v;
			break;
		case OPT_THREADS:
			c->threads = (int)v;
			break;
		case OPT_READERS:
			c->readers = (int)v;
			break;
		case OPT_SYNC_NUM:
			c->sync_num = v;
			break;
		case OPT_LARGE_NUM:
			c->large_num = v;
			break;
		default:
			c->seed = v;
			break;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "cairn-bench: unexpected argument '%s'\n", argv[optind]);
		return -1;
	}
	return 0;
}

/* Creates dir and its missing parents. */
static int mkdir_p(const char *dir)
{
	char path[PATH_MAX];
	size_t len = strlen(dir);

	if (len >= sizeof(path)) {
		fprintf(stderr, "cairn-bench: path too long: %s\n", dir);
		return -1;
	}
	memcpy(path, dir, len + 1);
	for (char *p = path + 1;; p++) {
		if (*p && *p != '/')
			continue;
		char c = *p;

		*p = 0;
		if (mkdir(path, 0755) && errno != EEXIST) {
			fprintf(stderr, "cairn-bench: mkdir %s: %s\n", path, strerror(errno));
			return -1;
		}
		*p = c;
		if (!c)
			return 0;
	}
}

static const struct workload *find_workload(const char *name, size_t len)
{
	for (size_t i = 0; i < NWORKLOADS; i++) {
		if (strlen(workloads[i].name) == len && !memcmp(workloads[i].name, name, len))
			return &workloads[i];
	}
	return NULL;
}

/* Checks every name in the list before anything runs. */
static int check_benchmarks(const char *list)
{
	for (const char *p = list; *p;) {
		size_t len = strcspn(p, ",");

		if (len && !find_workload(p, len)) {
			fprintf(stderr, "cairn-bench: unknown benchmark '%.*s'\n", (int)len, p);
			return -1;
		}
		p += len + (p[len] == ',');
	}
	return 0;
}

static int run_all(struct bench *b)
{
	struct result res;
	char namebuf[32];

	for (const char *p = b->cfg.benchmarks; *p;) {
		size_t len = strcspn(p, ",");
		const struct workload *w = len ? find_workload(p, len) : NULL;

		p += len + (p[len] == ',');
		if (!w)
			continue;
		if (run_workload(b, w, &res)) {
			fprintf(stderr, "cairn-bench: %s: %s failed\n", b->eng->name, w->name);
			return -1;
		}
		report(b, report_name(b, w, namebuf, sizeof(namebuf)), &res);
	}
	return 0;
}

int main(int argc, char **argv)
{
	struct bench b;
	int print_settings = 0, rc;

	memset(&b, 0, sizeof(b));
	rc = parse_args(argc, argv, &b.cfg, &print_settings);
	if (rc)
		return rc > 0 ? 0 : 2;
	for (size_t i = 0; i < BENCH_NENGINES; i++) {
		if (!strcmp(bench_engines[i]->name, b.cfg.engine))
			b.eng = bench_engines[i];
	}
	if (!b.eng) {
		fprintf(stderr, "cairn-bench: engine '%s' is not built in (--list_engines)\n",
		        b.cfg.engine);
		return 2;
	}
	if (print_settings) {
		printf("%s\n", b.eng->settings);
		return 0;
	}
	if (check_benchmarks(b.cfg.benchmarks))
		return 2;
	if (mkdir_p(b.cfg.dbroot))
		return 1;
	b.value_written = b.cfg.value_size;
	snprintf(b.dir, sizeof(b.dir), "%s/%s", b.cfg.dbroot, b.eng->name);
	find_device(&b);
	printf("engine %s: %s\n", b.eng->name, b.eng->settings);
	printf("keys %" PRIu64 " x %zu bytes, values %zu bytes (half compressible), dir %s, "
	       "device %s\n",
	       b.cfg.num, b.cfg.key_size, b.cfg.value_size, b.dir, b.have_dev ? "found" : "n/a");
	rc = run_all(&b);
	if (b.db)
		b.eng->close(b.db);
	free(b.gen.data);
	return rc ? 1 : 0;
}
