/*
 * testutil.h - shared helpers for the engine tests: temporary directories,
 * opening databases on the POSIX or the simulated env with small options,
 * and a reference model (a plain array of optional values over a fixed key
 * space) that every randomized test compares the engine against.
 */
#ifndef CAIRN_TESTUTIL_H
#define CAIRN_TESTUTIL_H

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cairn.h"
#include "env.h"
#include "util.h"

/* A fresh empty directory under /tmp; removed by tu_rmrf. */
static inline char *tu_tmpdir(const char *tag)
{
	char *p = malloc(256);
	snprintf(p, 256, "/tmp/cairn-%s-XXXXXX", tag);
	cr_assert_not_null(mkdtemp(p), "mkdtemp");
	return p;
}

static inline void tu_rmrf(char *dir)
{
	char cmd[512];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	if (system(cmd) != 0)
		fprintf(stderr, "could not remove %s\n", dir);
	free(dir);
}

/* Options small enough that a few thousand writes flush and compact. */
static inline void tu_small_options(struct cairn_options *o, struct cairn_env *env)
{
	cairn_options_init(o);
	o->env = env;
	o->memtable_size = 256u << 10;
	o->block_size = 512;
	o->table_target_size = 64u << 10;
	o->level1_target_size = 128u << 10;
	o->level_size_ratio = 4;
	o->block_cache_size = 256u << 10;
	o->max_open_tables = 16;
	o->background_threads = env ? 0 : 1;
	o->sync_interval_ms = 0;
}

static inline struct cairn_db *tu_open(const char *dir, const struct cairn_options *o)
{
	struct cairn_db *db = NULL;
	char err[512] = "";
	int r = cairn_open(dir, o, &db, err, sizeof(err));
	cr_assert_eq(r, 0, "open %s: %s (%s)", dir, cairn_strerror(r), err);
	return db;
}

/* ---- the reference model ---- */

#define TU_KEYS 1500

struct tu_model {
	char *val[TU_KEYS];
	size_t len[TU_KEYS];
	int present[TU_KEYS];
};

static inline int tu_key(char *out, int id)
{
	return sprintf(out, "key%06d", id * 7);
}

static inline void tu_model_put(struct tu_model *m, int id, const char *v, size_t n)
{
	free(m->val[id]);
	m->val[id] = malloc(n ? n : 1);
	memcpy(m->val[id], v, n);
	m->len[id] = n;
	m->present[id] = 1;
}

static inline void tu_model_del(struct tu_model *m, int id)
{
	free(m->val[id]);
	m->val[id] = NULL;
	m->len[id] = 0;
	m->present[id] = 0;
}

static inline void tu_model_copy(struct tu_model *dst, const struct tu_model *src)
{
	for (int i = 0; i < TU_KEYS; i++) {
		dst->val[i] = NULL;
		dst->present[i] = src->present[i];
		dst->len[i] = src->len[i];
		if (src->present[i]) {
			dst->val[i] = malloc(src->len[i] ? src->len[i] : 1);
			memcpy(dst->val[i], src->val[i], src->len[i]);
		}
	}
}

static inline void tu_model_free(struct tu_model *m)
{
	for (int i = 0; i < TU_KEYS; i++)
		free(m->val[i]);
	memset(m, 0, sizeof(*m));
}

/* A value derived from (id, version): varied lengths, some compressible. */
static inline size_t tu_value(char *out, size_t cap, int id, uint64_t version, uint64_t *rng)
{
	size_t n = (size_t)prng_below(rng, 200);
	if (prng_below(rng, 50) == 0)
		n = 2000 + (size_t)prng_below(rng, 6000);
	if (n > cap)
		n = cap;
	int head = snprintf(out, cap, "v%d.%llu:", id, (unsigned long long)version);
	for (size_t i = (size_t)head; i < n; i++)
		out[i] = (char)('a' + (i * 7 + id) % 26);
	return n < (size_t)head ? (size_t)head : n;
}

/* Compares every key of the model with cairn_get, and a full forward and
 * backward iteration, as of snap. */
static inline void tu_check_model(struct cairn_db *db, const struct cairn_snapshot *snap,
                                  const struct tu_model *m, uint64_t seed, const char *when)
{
	char key[32];
	for (int id = 0; id < TU_KEYS; id++) {
		int kl = tu_key(key, id);
		void *v = NULL;
		size_t vl = 0;
		int r = cairn_get(db, snap, key, (size_t)kl, &v, &vl);
		if (m->present[id]) {
			cr_assert_eq(r, 0, "seed %llu %s: get %s: %s", (unsigned long long)seed,
			             when, key, cairn_strerror(r));
			cr_assert(vl == m->len[id] && memcmp(v, m->val[id], vl) == 0,
			          "seed %llu %s: key %s has a wrong value (%zu bytes, want %zu)",
			          (unsigned long long)seed, when, key, vl, m->len[id]);
		} else {
			cr_assert_eq(r, CAIRN_ENOTFOUND, "seed %llu %s: get %s should miss, got %s",
			             (unsigned long long)seed, when, key, cairn_strerror(r));
		}
		cairn_free(v);
	}
	struct cairn_iter *it;
	cr_assert_eq(cairn_iter_new(db, snap, &it), 0);
	int id = 0;
	for (cairn_iter_seek_first(it); cairn_iter_valid(it); cairn_iter_next(it)) {
		while (id < TU_KEYS && !m->present[id])
			id++;
		cr_assert_lt(id, TU_KEYS, "seed %llu %s: iterator has extra keys",
		             (unsigned long long)seed, when);
		size_t kl2, vl2;
		const void *k = cairn_iter_key(it, &kl2);
		const void *v = cairn_iter_value(it, &vl2);
		int kl = tu_key(key, id);
		cr_assert(kl2 == (size_t)kl && memcmp(k, key, kl2) == 0,
		          "seed %llu %s: iterator at %.*s, want %s", (unsigned long long)seed, when,
		          (int)kl2, (const char *)k, key);
		cr_assert(vl2 == m->len[id] && memcmp(v, m->val[id], vl2) == 0,
		          "seed %llu %s: iterator value of %s", (unsigned long long)seed, when,
		          key);
		id++;
	}
	cr_assert_eq(cairn_iter_status(it), 0);
	while (id < TU_KEYS && !m->present[id])
		id++;
	cr_assert_eq(id, TU_KEYS, "seed %llu %s: iterator missed keys from %d",
	             (unsigned long long)seed, when, id);
	id = TU_KEYS - 1;
	for (cairn_iter_seek_last(it); cairn_iter_valid(it); cairn_iter_prev(it)) {
		while (id >= 0 && !m->present[id])
			id--;
		cr_assert_geq(id, 0, "seed %llu %s: reverse iterator has extra keys",
		              (unsigned long long)seed, when);
		size_t kl2;
		const void *k = cairn_iter_key(it, &kl2);
		int kl = tu_key(key, id);
		cr_assert(kl2 == (size_t)kl && memcmp(k, key, kl2) == 0,
		          "seed %llu %s: reverse iterator at %.*s, want %s",
		          (unsigned long long)seed, when, (int)kl2, (const char *)k, key);
		id--;
	}
	while (id >= 0 && !m->present[id])
		id--;
	cr_assert_eq(id, -1, "seed %llu %s: reverse iterator stopped early",
	             (unsigned long long)seed, when);
	cairn_iter_free(it);
}

#endif
