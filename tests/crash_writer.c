/*
 * crash_writer.c - the program that scripts/crash-engine kills with SIGKILL
 * and then checks, to prove on a real file system that a crash loses no
 * acknowledged write and leaves the database at a prefix of its writes.
 *
 * The writes form one deterministic sequence of operations numbered 0, 1,
 * 2, ... (op_make): a put or delete of one of NKEYS keys, every value
 * naming the number of the op that wrote it. Ops are applied in units: the
 * eight ops from a multiple of 8 are a batch of four (atomic) followed by
 * four single writes. Some units are written with CAIRN_SYNC; after such a
 * write returns, the writer prints "acked N" (ops 0..N-1 are durable) and
 * flushes stdout, so the killer knows what was promised.
 *
 *   crash_writer write DIR START   apply ops START, START+1, ... until killed
 *                                  (START must be a unit boundary)
 *   crash_writer check DIR ACKED   open DIR (recovering it) and prove it holds
 *                                  exactly ops 0..P-1 for one unit boundary P
 *                                  >= ACKED; prints "prefix P" and exits 0, or
 *                                  says what is wrong and exits 1
 *   crash_writer fill DIR          a small fixture for tests/corrupt_check.sh:
 *                                  keys key000..key199, value "value-NNN-"
 *                                  and padding to 100 bytes; key000..key119
 *                                  flushed to a table, the rest left in the log
 *
 * The check: every key's value must name an op that put exactly that value
 * under that key; then the ops are replayed into a model, counting the keys
 * on which model and database differ, and some unit boundary P >= ACKED must
 * reach zero differences. That is the exact statement "the database is the
 * state after a prefix of the sequence, and the prefix holds every
 * acknowledged write".
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cairn.h"

#define NKEYS   2000
#define MAX_OPS (1u << 24) /* the writer stops here; the check searches to here */
#define UNIT    8          /* ops [8u, 8u+4) are one batch, then four singles */

struct op {
	int key;
	int del;
	size_t vlen;
};

static uint64_t mix(uint64_t x)
{
	x ^= x >> 33;
	x *= UINT64_C(0xff51afd7ed558ccd);
	x ^= x >> 33;
	x *= UINT64_C(0xc4ceb9fe1a85ec53);
	return x ^ (x >> 33);
}

static void op_make(uint32_t i, struct op *op)
{
	uint64_t h = mix(i + UINT64_C(0x9e3779b97f4a7c15));
	op->key = (int)(h % NKEYS);
	op->del = (h >> 16) % 10 == 0;
	/* mostly small values, now and then a large one to fill memtables */
	op->vlen = (h >> 24) % 64 == 0 ? 16384 + (h >> 32) % 16384 : 16 + (h >> 32) % 200;
}

static int key_of(char *out, int key)
{
	return sprintf(out, "k%05d", key);
}

/* The value op i writes: "v<i>:" then filler derived from i. */
static void value_of(uint32_t i, size_t vlen, char *out)
{
	int n = sprintf(out, "v%" PRIu32 ":", i);
	for (size_t j = (size_t)n; j < vlen; j++)
		out[j] = (char)('a' + (i * 7 + j) % 26);
}

static int unit_start(uint32_t i)
{
	return i % UNIT == 0 || i % UNIT >= UNIT / 2;
}

static uint32_t unit_len(uint32_t i)
{
	return i % UNIT == 0 ? UNIT / 2 : 1;
}

static int unit_synced(uint32_t i)
{
	return mix(i ^ UINT64_C(0x5bd1e995)) % 16 == 0;
}

static void options(struct cairn_options *o)
{
	cairn_options_init(o);
	o->memtable_size = 256u << 10;
	o->block_size = 1024;
	o->table_target_size = 128u << 10;
	o->level1_target_size = 512u << 10;
	o->level_size_ratio = 4;
	o->background_threads = 1;
	o->sync_interval_ms = 20; /* unsynced writes too may survive */
}

static struct cairn_db *open_db(const char *dir)
{
	struct cairn_options o;
	struct cairn_db *db;
	char err[512];
	options(&o);
	int r = cairn_open(dir, &o, &db, err, sizeof(err));
	if (r) {
		fprintf(stderr, "crash_writer: open %s: %s: %s\n", dir, cairn_strerror(r), err);
		exit(1);
	}
	return db;
}

static int fail_db(struct cairn_db *db, int r, const char *what)
{
	char msg[512];
	cairn_errmsg(db, msg, sizeof(msg));
	fprintf(stderr, "crash_writer: %s: %s: %s\n", what, cairn_strerror(r), msg);
	return 1;
}

static int do_write(const char *dir, uint32_t start)
{
	static char val[40000];
	struct cairn_batch *b;
	struct cairn_db *db;
	char key[16];

	if (!unit_start(start)) {
		fprintf(stderr, "crash_writer: %" PRIu32 " is not a unit boundary\n", start);
		return 2;
	}
	db = open_db(dir);
	if (cairn_batch_new(&b))
		return 1;
	for (uint32_t i = start; i < MAX_OPS;) {
		uint32_t n = unit_len(i);
		unsigned flags = unit_synced(i) ? CAIRN_SYNC : 0;
		cairn_batch_clear(b);
		for (uint32_t j = i; j < i + n; j++) {
			struct op op;
			op_make(j, &op);
			int kl = key_of(key, op.key);
			value_of(j, op.vlen, val);
			int r = op.del ? cairn_batch_delete(b, key, (size_t)kl)
			               : cairn_batch_put(b, key, (size_t)kl, val, op.vlen);
			if (r)
				return fail_db(db, r, "batch");
		}
		int r = cairn_write(db, b, flags);
		if (r)
			return fail_db(db, r, "write");
		i += n;
		if (flags) {
			printf("acked %" PRIu32 "\n", i);
			fflush(stdout);
		}
	}
	cairn_batch_free(b);
	return cairn_close(db) ? 1 : 0;
}

/* Reads the whole database into vals (op number + 1 per key, 0 = absent),
 * checking that each value is exactly what its op wrote. */
static int read_state(struct cairn_db *db, uint32_t *vals)
{
	static char want[40000];
	struct cairn_iter *it;
	int bad = 0;

	memset(vals, 0, NKEYS * sizeof(*vals));
	if (cairn_iter_new(db, NULL, &it))
		return fail_db(db, -1, "iter");
	for (cairn_iter_seek_first(it); cairn_iter_valid(it) && bad < 10; cairn_iter_next(it)) {
		size_t kl, vl;
		const char *k = cairn_iter_key(it, &kl), *v = cairn_iter_value(it, &vl);
		char kbuf[16], vbuf[16];
		unsigned long opn;
		int key;
		struct op op;
		if (kl != 6 || sscanf(k, "k%5d", &key) != 1 || key < 0 || key >= NKEYS) {
			fprintf(stderr, "crash_writer: unexpected key '%.*s'\n", (int)kl, k);
			bad++;
			continue;
		}
		memcpy(vbuf, v, vl < 15 ? vl : 15);
		vbuf[vl < 15 ? vl : 15] = 0;
		if (sscanf(vbuf, "v%lu:", &opn) != 1 || opn >= MAX_OPS) {
			fprintf(stderr, "crash_writer: key %.*s: value '%s...' names no op\n",
			        (int)kl, k, vbuf);
			bad++;
			continue;
		}
		op_make((uint32_t)opn, &op);
		value_of((uint32_t)opn, op.vlen, want);
		key_of(kbuf, op.key);
		if (op.key != key || op.del || op.vlen != vl || memcmp(v, want, vl)) {
			fprintf(stderr,
			        "crash_writer: key %.*s: value of %zu bytes is not what op %lu "
			        "wrote\n",
			        (int)kl, k, vl, opn);
			bad++;
			continue;
		}
		vals[key] = (uint32_t)opn + 1;
	}
	int st = cairn_iter_status(it);
	cairn_iter_free(it);
	if (st)
		return fail_db(db, st, "iterating");
	return bad ? 1 : 0;
}

static int do_check(const char *dir, uint32_t acked)
{
	static uint32_t vals[NKEYS], model[NKEYS];
	struct cairn_db *db = open_db(dir);
	int r = read_state(db, vals);
	if (r) {
		cairn_close(db);
		return 1;
	}
	/* spot-check point reads against the iterator */
	for (int k = 0; k < NKEYS; k += 97) {
		char key[16];
		void *v;
		size_t vl;
		int kl = key_of(key, k);
		int g = cairn_get(db, NULL, key, (size_t)kl, &v, &vl);
		if ((g == 0) != (vals[k] != 0) || (g != 0 && g != CAIRN_ENOTFOUND)) {
			fprintf(stderr, "crash_writer: get %s: %s, the iterator disagrees\n", key,
			        cairn_strerror(g));
			cairn_close(db);
			return 1;
		}
		if (g == 0)
			cairn_free(v);
	}
	if (cairn_close(db)) {
		fprintf(stderr, "crash_writer: close failed\n");
		return 1;
	}
	/* differences between the model after ops [0, p) and the database */
	uint32_t diff = 0;
	for (int k = 0; k < NKEYS; k++)
		diff += vals[k] != 0;
	memset(model, 0, sizeof(model));
	for (uint32_t p = 0; p <= MAX_OPS; p++) {
		if (p >= acked && unit_start(p) && diff == 0) {
			printf("prefix %" PRIu32 "\n", p);
			return 0;
		}
		if (p == MAX_OPS)
			break;
		struct op op;
		op_make(p, &op);
		uint32_t now = op.del ? 0 : p + 1;
		diff -= model[op.key] != vals[op.key];
		model[op.key] = now;
		diff += model[op.key] != vals[op.key];
	}
	fprintf(stderr,
	        "crash_writer: the database is not the state after any prefix of the writes "
	        "holding the %" PRIu32 " acknowledged ops\n",
	        acked);
	return 1;
}

static int do_fill(const char *dir)
{
	struct cairn_db *db = open_db(dir);
	char key[16], val[100];
	for (int i = 0; i < 200; i++) {
		int kl = sprintf(key, "key%03d", i);
		int n = sprintf(val, "value-%03d-", i);
		memset(val + n, 'a' + i % 26, sizeof(val) - (size_t)n);
		int r = cairn_put(db, key, (size_t)kl, val, sizeof(val), 0);
		if (!r && i == 119)
			r = cairn_flush(db);
		if (r)
			return fail_db(db, r, "fill");
	}
	return cairn_close(db) ? 1 : 0;
}

int main(int argc, char **argv)
{
	if (argc == 3 && strcmp(argv[1], "fill") == 0)
		return do_fill(argv[2]);
	if (argc != 4 || (strcmp(argv[1], "write") && strcmp(argv[1], "check"))) {
		fprintf(stderr,
		        "usage: crash_writer write DIR START | check DIR ACKED | fill DIR\n");
		return 2;
	}
	uint32_t n = (uint32_t)strtoul(argv[3], NULL, 10);
	return strcmp(argv[1], "write") == 0 ? do_write(argv[2], n) : do_check(argv[2], n);
}
