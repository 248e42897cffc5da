/*
 * test_version.c - the version set: edit encoding, manifest recovery (clean,
 * torn, corrupt, after a crash), CURRENT handling, failed manifest writes,
 * manifest roll-over, compaction picking rules (by size and by seeks), live
 * file accounting, and reads through real tables (version_get and its seek
 * charges, level and compaction iterators).
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dbformat.h"
#include "env.h"
#include "sstable.h"
#include "version.h"
#include "wal.h"

#define MIB (1024ull * 1024)

static char err[512];

static void test_opts(struct cairn_options *o)
{
	memset(o, 0, sizeof(*o));
	o->table_target_size = 2 * MIB;
	o->level1_target_size = 8 * MIB;
	o->level_size_ratio = 10;
	o->l0_compaction_trigger = 4;
}

/* An internal key as a buf the caller frees. */
static struct buf ik(const char *ukey, uint64_t seq, enum value_type t)
{
	struct buf b = {0};
	cr_assert_eq(ikey_append(&b, slice_make(ukey, strlen(ukey)), seq, t), 0);
	return b;
}

/* Adds a fake file spanning user keys [lo, hi] to e. */
static void add_file(struct version_edit *e, int level, uint64_t num, uint64_t size, const char *lo,
                     const char *hi)
{
	struct buf s = ik(lo, 100, TYPE_VALUE), l = ik(hi, 1, TYPE_VALUE);
	cr_assert_eq(edit_add_file(e, level, num, size, buf_slice(&s), buf_slice(&l), 1, 100, 10),
	             0);
	buf_free(&s);
	buf_free(&l);
}

/* A sim env with an empty database directory "db". */
static struct cairn_env *sim_env(uint64_t seed)
{
	struct cairn_env *env;
	cr_assert_eq(env_sim_new(seed, 1000, &env), 0);
	cr_assert_eq(env_mkdir(env, "db"), 0);
	cr_assert_eq(env_sync_dir(env, "."), 0);
	return env;
}

static struct version_set *new_vset(struct cairn_env *env, const char *dir,
                                    const struct cairn_options *o, struct table_cache *tc)
{
	struct version_set *vs;
	cr_assert_eq(vset_new(env, dir, o, tc, &vs), 0);
	return vs;
}

static struct version_set *create_vset(struct cairn_env *env, const char *dir,
                                       const struct cairn_options *o)
{
	struct version_set *vs = new_vset(env, dir, o, NULL);
	cr_assert_eq(vset_create(vs, err, sizeof(err)), 0, "%s", err);
	return vs;
}

static void apply(struct version_set *vs, struct version_edit *e)
{
	int r = vset_log_and_apply(vs, e, err, sizeof(err));
	cr_assert_eq(r, 0, "log_and_apply: %d %s", r, err);
	edit_free(e);
}

/* Applies one edit adding a fake file. */
static void apply_add(struct version_set *vs, int level, uint64_t num, uint64_t size,
                      const char *lo, const char *hi)
{
	struct version_edit e;
	edit_init(&e);
	vset_mark_file_number_used(vs, num);
	add_file(&e, level, num, size, lo, hi);
	apply(vs, &e);
}

/* A textual description of every file of a version, for comparisons. */
static void describe(struct version *v, char *out, size_t len)
{
	size_t o = 0;
	out[0] = 0;
	for (int l = 0; l < NUM_LEVELS; l++) {
		for (int i = 0; i < v->nfiles[l]; i++) {
			struct file_meta *f = v->files[l][i];
			o += (size_t)snprintf(out + o, len - o, "L%d#%llu:%llu:%.*s-%.*s ", l,
			                      (unsigned long long)f->number,
			                      (unsigned long long)f->size, (int)f->smallest.len - 8,
			                      f->smallest.data, (int)f->largest.len - 8,
			                      f->largest.data);
			cr_assert_lt(o, len);
		}
	}
}

/* ---- edits ---- */

static void full_edit(struct version_edit *e)
{
	edit_init(e);
	e->has_log_number = e->has_next_file = e->has_last_seq = 1;
	e->log_number = 7;
	e->next_file_number = 300;
	e->last_sequence = 123456789;
	struct buf p = ik("ptr", 5, TYPE_DELETION);
	cr_assert_eq(edit_set_pointer(e, 3, buf_slice(&p)), 0);
	buf_free(&p);
	cr_assert_eq(edit_delete_file(e, 1, 42), 0);
	cr_assert_eq(edit_delete_file(e, 6, 1ull << 40), 0);
	add_file(e, 0, 10, 4096, "a", "m");
	add_file(e, 5, 11, 1ull << 33, "n", "z");
}

Test(edit, roundtrip_preserves_every_field)
{
	struct version_edit e, d;
	struct buf enc = {0}, enc2 = {0};
	full_edit(&e);
	cr_assert_eq(edit_encode(&e, &enc), 0);
	cr_assert_eq(edit_decode(buf_slice(&enc), &d, err, sizeof(err)), 0, "%s", err);
	cr_assert(d.has_log_number && d.has_next_file && d.has_last_seq);
	cr_assert_eq(d.log_number, 7);
	cr_assert_eq(d.next_file_number, 300);
	cr_assert_eq(d.last_sequence, 123456789);
	cr_assert_eq(d.npointers, 1);
	cr_assert_eq(d.pointers[0].level, 3);
	cr_assert(slice_eq(buf_slice(&d.pointers[0].key), buf_slice(&e.pointers[0].key)));
	cr_assert_eq(d.ndeleted, 2);
	cr_assert_eq(d.deleted[1].level, 6);
	cr_assert_eq(d.deleted[1].number, 1ull << 40);
	cr_assert_eq(d.nadded, 2);
	cr_assert_eq(d.added[1].level, 5);
	cr_assert_eq(d.added[1].f->size, 1ull << 33);
	cr_assert_eq(d.added[1].f->num_entries, 10);
	cr_assert_eq(d.added[1].f->min_seq, 1);
	cr_assert_eq(d.added[1].f->max_seq, 100);
	cr_assert(slice_eq(buf_slice(&d.added[0].f->largest), buf_slice(&e.added[0].f->largest)));
	/* the same edit always encodes to the same bytes */
	cr_assert_eq(edit_encode(&d, &enc2), 0);
	cr_assert(slice_eq(buf_slice(&enc), buf_slice(&enc2)));
	edit_free(&e);
	edit_free(&d);
	buf_free(&enc);
	buf_free(&enc2);
}

Test(edit, decode_survives_every_bit_flip_and_truncation)
{
	struct version_edit e, d;
	struct buf enc = {0};
	full_edit(&e);
	cr_assert_eq(edit_encode(&e, &enc), 0);
	int rejected = 0;
	for (size_t bit = 0; bit < enc.len * 8; bit++) {
		char *copy = malloc(enc.len);
		memcpy(copy, enc.data, enc.len);
		copy[bit / 8] ^= (char)(1 << (bit % 8));
		int r = edit_decode(slice_make(copy, enc.len), &d, err, sizeof(err));
		cr_assert(r == 0 || r == CAIRN_ECORRUPT, "bit %zu: %d", bit, r);
		if (r)
			rejected++;
		edit_free(&d);
		free(copy);
	}
	cr_assert_gt(rejected, 0);
	for (size_t n = 0; n < enc.len; n++) {
		/* exact-size copies so a sanitizer sees any overread */
		char *copy = malloc(n ? n : 1);
		memcpy(copy, enc.data, n);
		int r = edit_decode(slice_make(copy, n), &d, err, sizeof(err));
		cr_assert(r == 0 || r == CAIRN_ECORRUPT);
		edit_free(&d);
		free(copy);
	}
	edit_free(&e);
	buf_free(&enc);
}

Test(edit, encoding_matches_the_documented_example)
{
	static const unsigned char want[] = {
	        0x01, 0x05, 0x02, 0x09, 0x03, 0xac, 0x02, 0x06, 0x00, 0x07, 0xa0, 0x1f, 0x09,
	        0x6b, 0x01, 0x2c, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x09, 0x6b, 0x01, 0x2c,
	        0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0xac, 0x02, 0xac, 0x02, 0x01};
	struct version_edit e;
	struct buf k = ik("k", 300, TYPE_VALUE), enc = {0};
	edit_init(&e);
	e.has_log_number = e.has_next_file = e.has_last_seq = 1;
	e.log_number = 5;
	e.next_file_number = 9;
	e.last_sequence = 300;
	cr_assert_eq(edit_add_file(&e, 0, 7, 4000, buf_slice(&k), buf_slice(&k), 300, 300, 1), 0);
	cr_assert_eq(edit_encode(&e, &enc), 0);
	cr_assert_eq(enc.len, sizeof(want));
	cr_assert_eq(memcmp(enc.data, want, sizeof(want)), 0);
	edit_free(&e);
	buf_free(&k);
	buf_free(&enc);
}

static int decode_bytes(const char *bytes, size_t n)
{
	struct version_edit d;
	int r = edit_decode(slice_make(bytes, n), &d, err, sizeof(err));
	edit_free(&d);
	return r;
}

Test(edit, decode_rejects_bad_fields)
{
	/* unknown tag */
	cr_assert_eq(decode_bytes("\x7f\x01", 2), CAIRN_ECORRUPT);
	cr_assert(strstr(err, "unknown"), "%s", err);
	/* a log mark shorter than a log's file header */
	cr_assert_eq(decode_bytes("\x0a\x05\x0f\x01", 4), CAIRN_ECORRUPT);
	cr_assert(strstr(err, "log mark"), "%s", err);
	/* deleted file at level 7 (NUM_LEVELS) */
	cr_assert_eq(decode_bytes("\x05\x07\x01", 3), CAIRN_ECORRUPT);
	/* truncated varint */
	cr_assert_eq(decode_bytes("\x01\x80", 2), CAIRN_ECORRUPT);
	/* a pointer whose key is shorter than the trailer */
	cr_assert_eq(decode_bytes("\x04\x01\x03"
	                          "abc",
	                          6),
	             CAIRN_ECORRUPT);
	/* trailing garbage after a good field */
	cr_assert_eq(decode_bytes("\x01\x05\x00", 3), CAIRN_ECORRUPT);
	/* a good field alone */
	cr_assert_eq(decode_bytes("\x01\x05", 2), 0);

	/* smallest above largest */
	struct version_edit e;
	struct buf enc = {0};
	edit_init(&e);
	add_file(&e, 1, 5, 100, "z", "a");
	cr_assert_eq(edit_encode(&e, &enc), 0);
	cr_assert_eq(decode_bytes(enc.data, enc.len), CAIRN_ECORRUPT);
	cr_assert(strstr(err, "smallest"), "%s", err);
	edit_free(&e);
	buf_free(&enc);
}

static void collect_line(void *ctx, const char *line)
{
	struct buf *b = ctx;
	buf_append(b, line, strlen(line));
	buf_append(b, "\n", 1);
}

Test(edit, dump_prints_one_line_per_field)
{
	struct version_edit e;
	struct buf out = {0};
	full_edit(&e);
	edit_dump(&e, collect_line, &out);
	buf_append(&out, "", 1);
	cr_assert(strstr(out.data, "log_number 7\n"), "%s", out.data);
	cr_assert(strstr(out.data, "delete_file L1 #42\n"), "%s", out.data);
	cr_assert(strstr(out.data, "add_file L5 #11 size 8589934592"), "%s", out.data);
	cr_assert(strstr(out.data, "compact_pointer L3 'ptr' @5 del"), "%s", out.data);
	edit_free(&e);
	buf_free(&out);
}

/* ---- create, recover, manifest ---- */

static void build_history(struct version_set *vs)
{
	struct version_edit e;
	apply_add(vs, 0, 10, 1000, "a", "f");
	apply_add(vs, 0, 11, 2000, "c", "k");
	apply_add(vs, 1, 12, 3000, "a", "c");
	apply_add(vs, 1, 13, 3000, "d", "g");
	/* move 10 down to level 2, drop 11 */
	edit_init(&e);
	cr_assert_eq(edit_delete_file(&e, 0, 10), 0);
	cr_assert_eq(edit_delete_file(&e, 0, 11), 0);
	add_file(&e, 2, 10, 1000, "a", "f");
	e.has_log_number = 1;
	e.log_number = vset_new_file_number(vs);
	vset_set_last_sequence(vs, 777);
	apply(vs, &e);
}

static void check_recovers_same(struct cairn_env *env, const char *dir)
{
	struct cairn_options o;
	char before[2048], after[2048];
	test_opts(&o);
	struct version_set *vs = create_vset(env, dir, &o);
	build_history(vs);
	describe(vset_current(vs), before, sizeof(before));
	uint64_t log = vset_log_number(vs), next = vset_new_file_number(vs);
	vset_free(vs);

	vs = new_vset(env, dir, &o, NULL);
	cr_assert_eq(vset_recover(vs, err, sizeof(err)), 0, "%s", err);
	describe(vset_current(vs), after, sizeof(after));
	cr_assert_str_eq(before, after);
	cr_assert_eq(vset_last_sequence(vs), 777);
	cr_assert_eq(vset_log_number(vs), log);
	/* recovery writes nothing: the recovered manifest stays live */
	uint64_t old_manifest = vset_manifest_number(vs);
	cr_assert_lt(old_manifest, next);
	/* the first edit starts a new manifest, numbered past every file */
	apply_add(vs, 3, 500, 10, "x", "y");
	cr_assert_gt(vset_manifest_number(vs), old_manifest);
	cr_assert_geq(vset_manifest_number(vs), next);
	cr_assert_gt(vset_new_file_number(vs), vset_manifest_number(vs));
	/* recovering again from the snapshot manifest gives the same version */
	describe(vset_current(vs), before, sizeof(before));
	vset_free(vs);
	vs = new_vset(env, dir, &o, NULL);
	cr_assert_eq(vset_recover(vs, err, sizeof(err)), 0, "%s", err);
	describe(vset_current(vs), after, sizeof(after));
	cr_assert_str_eq(before, after);
	cr_assert_eq(vset_last_sequence(vs), 777);
	vset_free(vs);
}

Test(vset, create_then_recover_gives_same_version_on_sim)
{
	struct cairn_env *env = sim_env(1);
	check_recovers_same(env, "db");
	env_sim_free(env);
}

static int unlink_entry(void *ctx, const char *name)
{
	char p[512];
	snprintf(p, sizeof(p), "%s/%s", (const char *)ctx, name);
	unlink(p);
	return 0;
}

Test(vset, create_then_recover_gives_same_version_on_posix)
{
	char dir[] = "/tmp/version-test-XXXXXX";
	cr_assert(mkdtemp(dir));
	struct cairn_env *env = env_posix();
	check_recovers_same(env, dir);
	env_list_dir(env, dir, unlink_entry, dir);
	rmdir(dir);
}

Test(vset, current_names_first_manifest_after_create)
{
	struct cairn_env *env = sim_env(2);
	struct cairn_options o;
	char *data;
	size_t len;
	test_opts(&o);
	struct version_set *vs = create_vset(env, "db", &o);
	cr_assert_eq(env_sim_read_file(env, "db/CURRENT", &data, &len), 0);
	cr_assert_eq(len, 16);
	cr_assert_eq(memcmp(data, "MANIFEST-000001\n", 16), 0);
	free(data);
	cr_assert_eq(vset_manifest_number(vs), 1);
	cr_assert_eq(vset_new_file_number(vs), 2);
	cr_assert_eq(env_exists(env, "db/CURRENT.tmp"), 0);
	vset_free(vs);
	env_sim_free(env);
}

Test(vset, synced_edits_survive_a_crash)
{
	struct cairn_env *env = sim_env(3);
	struct cairn_options o;
	test_opts(&o);
	for (uint64_t seed = 0; seed < 8; seed++) {
		/* fresh env per round: the crash outcome varies by seed */
		env_sim_free(env);
		env = sim_env(seed);
		struct version_set *vs = create_vset(env, "db", &o);
		apply_add(vs, 1, 20, 100, "a", "b");
		env_sim_crash(env);
		vset_free(vs);
		env_sim_reboot(env);
		vs = new_vset(env, "db", &o, NULL);
		cr_assert_eq(vset_recover(vs, err, sizeof(err)), 0, "seed %llu: %s",
		             (unsigned long long)seed, err);
		cr_assert_eq(vset_num_level_files(vs, 1), 1, "seed %llu", (unsigned long long)seed);
		/* and once more after the recovery's own manifest switch */
		apply_add(vs, 1, 30, 100, "c", "d");
		env_sim_crash(env);
		vset_free(vs);
		env_sim_reboot(env);
		vs = new_vset(env, "db", &o, NULL);
		cr_assert_eq(vset_recover(vs, err, sizeof(err)), 0, "seed %llu: %s",
		             (unsigned long long)seed, err);
		cr_assert_eq(vset_num_level_files(vs, 1), 2, "seed %llu", (unsigned long long)seed);
		vset_free(vs);
	}
	env_sim_free(env);
}

Test(vset, recover_tolerates_torn_manifest_tail)
{
	struct cairn_env *env = sim_env(4);
	struct cairn_options o;
	char *data;
	size_t len;
	test_opts(&o);
	struct version_set *vs = create_vset(env, "db", &o);
	apply_add(vs, 1, 20, 100, "a", "b");
	apply_add(vs, 1, 21, 100, "c", "d");
	vset_free(vs);
	cr_assert_eq(env_sim_read_file(env, "db/MANIFEST-000001", &data, &len), 0);
	cr_assert_eq(env_sim_write_file(env, "db/MANIFEST-000001", data, len - 5), 0);
	free(data);
	vs = new_vset(env, "db", &o, NULL);
	cr_assert_eq(vset_recover(vs, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(vset_num_level_files(vs, 1), 1);
	cr_assert_eq(vset_current(vs)->files[1][0]->number, 20);
	vset_free(vs);
	env_sim_free(env);
}

Test(vset, recover_rejects_corrupt_manifest_record)
{
	struct cairn_env *env = sim_env(5);
	struct cairn_options o;
	char *data;
	size_t len;
	test_opts(&o);
	struct version_set *vs = create_vset(env, "db", &o);
	apply_add(vs, 1, 20, 100, "a", "b");
	apply_add(vs, 1, 21, 100, "c", "d");
	vset_free(vs);
	cr_assert_eq(env_sim_read_file(env, "db/MANIFEST-000001", &data, &len), 0);
	data[WAL_FILE_HEADER + WAL_RECORD_HEADER + 1] ^= 0x40; /* inside the first edit */
	cr_assert_eq(env_sim_write_file(env, "db/MANIFEST-000001", data, len), 0);
	free(data);
	vs = new_vset(env, "db", &o, NULL);
	cr_assert_eq(vset_recover(vs, err, sizeof(err)), CAIRN_ECORRUPT);
	cr_assert(strstr(err, "MANIFEST-000001"), "%s", err);
	cr_assert(strstr(err, "offset"), "%s", err);
	vset_free(vs);
	env_sim_free(env);
}

/* Writes a manifest of the given edits and a CURRENT naming it. */
static void write_raw_manifest(struct cairn_env *env, struct version_edit *edits, int n)
{
	struct env_file *f;
	struct wal_writer *w;
	cr_assert_eq(env_open_write(env, "db/MANIFEST-000005", &f), 0);
	cr_assert_eq(wal_writer_new(f, WAL_KIND_MANIFEST, &w), 0);
	for (int i = 0; i < n; i++) {
		struct buf b = {0};
		cr_assert_eq(edit_encode(&edits[i], &b), 0);
		cr_assert_eq(wal_add(w, b.data, b.len), 0);
		buf_free(&b);
		edit_free(&edits[i]);
	}
	cr_assert_eq(wal_sync(w), 0);
	wal_writer_close(w);
	cr_assert_eq(env_sim_write_file(env, "db/CURRENT", "MANIFEST-000005\n", 16), 0);
}

static int recover_raw(struct cairn_env *env)
{
	struct cairn_options o;
	test_opts(&o);
	struct version_set *vs = new_vset(env, "db", &o, NULL);
	int r = vset_recover(vs, err, sizeof(err));
	vset_free(vs);
	return r;
}

static void counters_edit(struct version_edit *e)
{
	edit_init(e);
	e->has_log_number = e->has_next_file = e->has_last_seq = 1;
	e->next_file_number = 100;
}

Test(vset, recover_rejects_inconsistent_edits)
{
	struct version_edit e[2];
	struct cairn_env *env = sim_env(6);

	/* deleting a file that is not there */
	counters_edit(&e[0]);
	cr_assert_eq(edit_delete_file(&e[0], 1, 9), 0);
	write_raw_manifest(env, e, 1);
	cr_assert_eq(recover_raw(env), CAIRN_ECORRUPT);
	cr_assert(strstr(err, "deletes file 9"), "%s", err);
	cr_assert(strstr(err, "MANIFEST-000005: record at offset 16"), "%s", err);

	/* adding a file twice */
	counters_edit(&e[0]);
	add_file(&e[0], 1, 9, 10, "a", "b");
	edit_init(&e[1]);
	add_file(&e[1], 2, 9, 10, "a", "b");
	write_raw_manifest(env, e, 2);
	cr_assert_eq(recover_raw(env), CAIRN_ECORRUPT);
	cr_assert(strstr(err, "already live"), "%s", err);

	/* overlapping files in level 1 */
	counters_edit(&e[0]);
	add_file(&e[0], 1, 9, 10, "a", "m");
	add_file(&e[0], 1, 10, 10, "k", "z");
	write_raw_manifest(env, e, 1);
	cr_assert_eq(recover_raw(env), CAIRN_ECORRUPT);
	cr_assert(strstr(err, "overlap"), "%s", err);

	/* no counters at all */
	edit_init(&e[0]);
	add_file(&e[0], 1, 9, 10, "a", "m");
	write_raw_manifest(env, e, 1);
	cr_assert_eq(recover_raw(env), CAIRN_ECORRUPT);

	/* overlapping files in level 0 are fine */
	counters_edit(&e[0]);
	add_file(&e[0], 0, 9, 10, "a", "m");
	add_file(&e[0], 0, 10, 10, "k", "z");
	write_raw_manifest(env, e, 1);
	cr_assert_eq(recover_raw(env), 0, "%s", err);
	env_sim_free(env);
}

static int recover_with_current(struct cairn_env *env, const char *content, size_t n)
{
	if (content)
		cr_assert_eq(env_sim_write_file(env, "db/CURRENT", content, n), 0);
	return recover_raw(env);
}

Test(vset, recover_rejects_corrupt_current)
{
	struct cairn_env *env = sim_env(7);
	cr_assert_eq(recover_with_current(env, NULL, 0), CAIRN_ENOENT);
	struct cairn_options o;
	test_opts(&o);
	vset_free(create_vset(env, "db", &o));

	cr_assert_eq(recover_with_current(env, "MANIFEST-000001", 15), CAIRN_ECORRUPT);
	cr_assert(strstr(err, "CURRENT:") && strstr(err, "newline"), "%s", err);
	cr_assert_eq(recover_with_current(env, "MANIFEST-000009\n", 16), CAIRN_ECORRUPT);
	cr_assert(strstr(err, "CURRENT:") && strstr(err, "does not exist"), "%s", err);
	cr_assert_eq(recover_with_current(env, "garbage\n", 8), CAIRN_ECORRUPT);
	cr_assert(strstr(err, "CURRENT:"), "%s", err);
	cr_assert_eq(recover_with_current(env, "MANIFEST-\n", 10), CAIRN_ECORRUPT);
	cr_assert_eq(recover_with_current(env, "MANIFEST-1\0\n", 12), CAIRN_ECORRUPT);
	cr_assert_eq(recover_with_current(env, "", 0), CAIRN_ECORRUPT);
	char big[200];
	memset(big, 'M', sizeof(big));
	big[199] = '\n';
	cr_assert_eq(recover_with_current(env, big, sizeof(big)), CAIRN_ECORRUPT);
	cr_assert_eq(recover_with_current(env, "MANIFEST-000001\n", 16), 0, "%s", err);
	env_sim_free(env);
}

Test(vset, failed_manifest_write_refuses_later_edits)
{
	struct cairn_env *env = sim_env(8);
	struct cairn_options o;
	char before[1024], after[1024];
	test_opts(&o);
	struct version_set *vs = create_vset(env, "db", &o);
	apply_add(vs, 1, 20, 100, "a", "b");
	describe(vset_current(vs), before, sizeof(before));
	struct version_edit e;
	edit_init(&e);
	add_file(&e, 1, 21, 100, "c", "d");
	env_sim_arm(env, 2, SIM_FAULT_EIO); /* the sync after the append */
	cr_assert_eq(vset_log_and_apply(vs, &e, err, sizeof(err)), CAIRN_EIO);
	cr_assert(strstr(err, "MANIFEST-000001"), "%s", err);
	describe(vset_current(vs), after, sizeof(after));
	cr_assert_str_eq(before, after);
	cr_assert_eq(vset_log_and_apply(vs, &e, err, sizeof(err)), CAIRN_EFAILED);
	edit_free(&e);
	vset_free(vs);
	env_sim_free(env);
}

Test(vset, bad_edit_is_refused_without_writing)
{
	struct cairn_env *env = sim_env(9);
	struct cairn_options o;
	test_opts(&o);
	struct version_set *vs = create_vset(env, "db", &o);
	apply_add(vs, 1, 20, 100, "a", "m");
	uint64_t size = vset_manifest_size(vs);
	struct version_edit e;
	edit_init(&e);
	cr_assert_eq(edit_delete_file(&e, 2, 20), 0); /* wrong level */
	cr_assert_eq(vset_log_and_apply(vs, &e, err, sizeof(err)), CAIRN_EINVAL);
	edit_free(&e);
	edit_init(&e);
	add_file(&e, 1, 21, 100, "k", "z"); /* overlaps 20 */
	cr_assert_eq(vset_log_and_apply(vs, &e, err, sizeof(err)), CAIRN_EINVAL);
	edit_free(&e);
	cr_assert_eq(vset_manifest_size(vs), size);
	apply_add(vs, 1, 22, 100, "n", "z"); /* and the set still works */
	vset_free(vs);
	env_sim_free(env);
}

Test(vset, manifest_rolls_over_to_a_snapshot)
{
	struct cairn_env *env = sim_env(10);
	struct cairn_options o;
	char before[1024], after[1024], key[4001];
	test_opts(&o);
	struct version_set *vs = create_vset(env, "db", &o);
	apply_add(vs, 1, 20, 100, "a", "b");
	apply_add(vs, 2, 21, 100, "a", "b");
	memset(key, 'k', sizeof(key) - 1);
	key[sizeof(key) - 1] = 0;
	int rolled = 0;
	for (int i = 0; i < 1200 && !rolled; i++) {
		struct version_edit e;
		struct buf p = ik(key, (uint64_t)i, TYPE_VALUE);
		edit_init(&e);
		cr_assert_eq(edit_set_pointer(&e, 1, buf_slice(&p)), 0);
		buf_free(&p);
		apply(vs, &e);
		rolled = vset_manifest_number(vs) != 1;
	}
	cr_assert(rolled);
	cr_assert_lt(vset_manifest_size(vs), 64 * 1024);
	char *data;
	size_t len;
	char want[32];
	snprintf(want, sizeof(want), "MANIFEST-%06llu\n",
	         (unsigned long long)vset_manifest_number(vs));
	cr_assert_eq(env_sim_read_file(env, "db/CURRENT", &data, &len), 0);
	cr_assert_eq(len, strlen(want));
	cr_assert_eq(memcmp(data, want, len), 0);
	free(data);
	cr_assert_eq(env_exists(env, "db/MANIFEST-000001"), 1); /* the db deletes it */
	describe(vset_current(vs), before, sizeof(before));
	vset_free(vs);
	vs = new_vset(env, "db", &o, NULL);
	cr_assert_eq(vset_recover(vs, err, sizeof(err)), 0, "%s", err);
	describe(vset_current(vs), after, sizeof(after));
	cr_assert_str_eq(before, after);
	vset_free(vs);
	env_sim_free(env);
}

Test(vset, read_only_recovery_writes_nothing)
{
	struct cairn_env *env = sim_env(11);
	struct cairn_options o;
	test_opts(&o);
	struct version_set *vs = create_vset(env, "db", &o);
	apply_add(vs, 1, 20, 100, "a", "b");
	vset_free(vs);
	uint64_t points = env_sim_write_points(env);
	o.read_only = 1;
	vs = new_vset(env, "db", &o, NULL);
	cr_assert_eq(vset_recover(vs, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(env_sim_write_points(env), points);
	cr_assert_eq(vset_num_level_files(vs, 1), 1);
	struct version_edit e;
	edit_init(&e);
	cr_assert_eq(vset_log_and_apply(vs, &e, err, sizeof(err)), CAIRN_EREADONLY);
	edit_free(&e);
	vset_free(vs);
	env_sim_free(env);
}

Test(vset, snapshot_manifest_and_dump)
{
	struct cairn_env *env = sim_env(12);
	struct cairn_options o;
	char before[1024], after[1024];
	test_opts(&o);
	struct version_set *vs = create_vset(env, "db", &o);
	apply_add(vs, 1, 20, 100, "a", "b");
	apply_add(vs, 0, 21, 100, "a", "z");
	describe(vset_current(vs), before, sizeof(before));
	cr_assert_eq(env_mkdir(env, "ckpt"), 0);
	uint64_t num = vset_new_file_number(vs);
	cr_assert_eq(vset_write_snapshot_manifest(vs, "ckpt", num, err, sizeof(err)), 0, "%s", err);
	vset_free(vs);

	struct buf out = {0};
	char path[64];
	manifest_file_name(path, sizeof(path), "ckpt", num);
	cr_assert_eq(manifest_dump(env, path, collect_line, &out, err, sizeof(err)), 0, "%s", err);
	buf_append(&out, "", 1);
	cr_assert(strstr(out.data, "edit at offset 16"), "%s", out.data);
	cr_assert(strstr(out.data, "add_file L1 #20 size 100"), "%s", out.data);
	cr_assert(strstr(out.data, "add_file L0 #21"), "%s", out.data);
	buf_free(&out);

	vs = new_vset(env, "ckpt", &o, NULL);
	cr_assert_eq(vset_recover(vs, err, sizeof(err)), 0, "%s", err);
	describe(vset_current(vs), after, sizeof(after));
	cr_assert_str_eq(before, after);
	cr_assert_eq(vset_manifest_number(vs), num); /* recovery wrote nothing */
	vset_free(vs);
	env_sim_free(env);
}

/* ---- live files ---- */

static int has_num(const uint64_t *nums, size_t n, uint64_t x)
{
	for (size_t i = 0; i < n; i++)
		if (nums[i] == x)
			return 1;
	return 0;
}

Test(vset, live_files_include_held_versions)
{
	struct cairn_env *env = sim_env(13);
	struct cairn_options o;
	test_opts(&o);
	struct version_set *vs = create_vset(env, "db", &o);
	apply_add(vs, 1, 20, 100, "a", "b");
	apply_add(vs, 1, 21, 100, "c", "d");
	struct version *held = vset_current(vs);
	version_ref(held);
	struct version_edit e;
	edit_init(&e);
	cr_assert_eq(edit_delete_file(&e, 1, 20), 0);
	add_file(&e, 2, 22, 100, "a", "b");
	vset_mark_file_number_used(vs, 22);
	apply(vs, &e);

	uint64_t *nums = NULL;
	size_t n = 0;
	cr_assert_eq(vset_live_files(vs, &nums, &n), 0);
	cr_assert_eq(n, 3);
	cr_assert(has_num(nums, n, 20) && has_num(nums, n, 21) && has_num(nums, n, 22));
	/* the held version still reads its own files */
	cr_assert_eq(held->nfiles[1], 2);
	cr_assert_eq(held->files[1][0]->number, 20);
	version_unref(held);
	n = 0;
	cr_assert_eq(vset_live_files(vs, &nums, &n), 0);
	cr_assert_eq(n, 2);
	cr_assert(!has_num(nums, n, 20));
	/* appends after what the caller already has */
	cr_assert_eq(vset_live_files(vs, &nums, &n), 0);
	cr_assert_eq(n, 4);
	free(nums);
	vset_free(vs);
	env_sim_free(env);
}

/* ---- picking ---- */

static struct version_set *pick_vset(struct cairn_env **envp)
{
	struct cairn_options o;
	test_opts(&o);
	*envp = sim_env(20);
	return create_vset(*envp, "db", &o);
}

static struct compaction *must_pick(struct version_set *vs)
{
	struct compaction *c = vset_pick_compaction(vs);
	cr_assert_not_null(c);
	return c;
}

Test(pick, scores_follow_the_level_rules)
{
	struct cairn_env *env;
	struct version_set *vs = pick_vset(&env);
	cr_assert_null(vset_pick_compaction(vs));
	cr_assert_eq(vset_needs_compaction(vs), 0);
	/* the last level never compacts however big */
	apply_add(vs, NUM_LEVELS - 1, 30, 1ull << 40, "a", "z");
	cr_assert_eq(vset_needs_compaction(vs), 0);
	/* three level-0 files: 0.75 */
	apply_add(vs, 0, 31, 10, "a", "b");
	apply_add(vs, 0, 32, 10, "a", "b");
	apply_add(vs, 0, 33, 10, "a", "b");
	cr_assert_eq(vset_needs_compaction(vs), 0);
	cr_assert_float_eq(vset_current(vs)->compaction_score, 0.75, 1e-9);
	/* level 2: 100 MiB over 80 MiB = 1.25 */
	apply_add(vs, 2, 34, 100 * MIB, "a", "b");
	cr_assert_eq(vset_needs_compaction(vs), 1);
	cr_assert_eq(vset_current(vs)->compaction_level, 2);
	cr_assert_float_eq(vset_current(vs)->compaction_score, 1.25, 1e-9);
	/* a fourth and fifth level-0 file: 1.25 too, and the tie goes to level 0 */
	apply_add(vs, 0, 35, 10, "a", "b");
	apply_add(vs, 0, 36, 10, "a", "b");
	cr_assert_eq(vset_current(vs)->compaction_level, 0);
	struct compaction *c = must_pick(vs);
	cr_assert_eq(c->level, 0);
	cr_assert_eq(c->ninputs[0], 5);
	/* with level 0 busy, level 2 comes next */
	struct compaction *c2 = must_pick(vs);
	cr_assert_eq(c2->level, 2);
	cr_assert_null(vset_pick_compaction(vs));
	compaction_free(c);
	compaction_free(c2);
	vset_free(vs);
	env_sim_free(env);
}

Test(pick, level0_expands_to_overlapping_files)
{
	struct cairn_env *env;
	struct version_set *vs = pick_vset(&env);
	/* the oldest (5) reaches 8 upward and 6 downward, and through 6, 10 */
	apply_add(vs, 0, 5, 10, "c", "e");
	apply_add(vs, 0, 6, 10, "a", "d");
	apply_add(vs, 0, 8, 10, "e", "g");
	apply_add(vs, 0, 10, 10, "a", "aa");
	apply_add(vs, 0, 11, 10, "x", "z"); /* newest, but not first in line */
	apply_add(vs, 1, 21, 10, "y", "z");
	struct compaction *c = must_pick(vs);
	cr_assert_eq(c->level, 0);
	cr_assert_eq(c->ninputs[0], 4);
	for (int i = 0; i < 4; i++)
		cr_assert_neq(c->inputs[0][i]->number, 11);
	cr_assert_eq(c->ninputs[1], 0);
	cr_assert_eq(c->max_output_size, 2 * MIB);
	cr_assert(!compaction_is_trivial_move(c));
	cr_assert_eq(compaction_input_bytes(c), 40);
	cr_assert_eq(compaction_add_input_deletions(c), 0);
	cr_assert_eq(c->edit.ndeleted, 4);
	compaction_free(c);
	vset_free(vs);
	env_sim_free(env);
}

static void add_level1_run(struct version_set *vs)
{
	apply_add(vs, 1, 40, 4 * MIB, "a", "b");
	apply_add(vs, 1, 41, 4 * MIB, "c", "d");
	apply_add(vs, 1, 42, 4 * MIB, "e", "f");
	apply_add(vs, 1, 43, 4 * MIB, "g", "h");
}

Test(pick, round_robin_pointer_advances_and_wraps)
{
	struct cairn_env *env;
	struct version_set *vs = pick_vset(&env);
	add_level1_run(vs);
	uint64_t want[] = {40, 41, 42, 43, 40, 41};
	for (int i = 0; i < 6; i++) {
		struct compaction *c = must_pick(vs);
		cr_assert_eq(c->level, 1);
		cr_assert_eq(c->ninputs[0], 1);
		cr_assert_eq(c->inputs[0][0]->number, want[i], "pick %d: %llu", i,
		             (unsigned long long)c->inputs[0][0]->number);
		cr_assert_eq(c->edit.npointers, 1);
		cr_assert(compaction_is_trivial_move(c));
		compaction_free(c);
	}
	vset_free(vs);
	env_sim_free(env);
}

Test(pick, pointer_persists_through_the_manifest)
{
	struct cairn_env *env;
	struct cairn_options o;
	struct version_set *vs = pick_vset(&env);
	test_opts(&o);
	add_level1_run(vs);
	struct compaction *c = must_pick(vs);
	cr_assert_eq(c->inputs[0][0]->number, 40);
	compaction_free(c); /* abandoned; the pointer stays past 40 */
	c = must_pick(vs);
	cr_assert_eq(c->inputs[0][0]->number, 41);
	/* a trivial move of 41 to level 2, logging the pointer with it */
	cr_assert_eq(compaction_add_input_deletions(c), 0);
	struct file_meta *f = c->inputs[0][0];
	cr_assert_eq(edit_add_file(&c->edit, 2, f->number, f->size, buf_slice(&f->smallest),
	                           buf_slice(&f->largest), f->min_seq, f->max_seq, f->num_entries),
	             0);
	cr_assert_eq(vset_log_and_apply(vs, &c->edit, err, sizeof(err)), 0, "%s", err);
	compaction_free(c);
	vset_free(vs);

	vs = new_vset(env, "db", &o, NULL);
	cr_assert_eq(vset_recover(vs, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(vset_num_level_files(vs, 2), 1);
	c = must_pick(vs); /* 12 MiB at level 1: score 1.5 */
	cr_assert_eq(c->level, 1);
	cr_assert_eq(c->inputs[0][0]->number, 42);
	compaction_free(c);
	vset_free(vs);
	env_sim_free(env);
}

Test(pick, being_compacted_files_are_skipped)
{
	struct cairn_env *env;
	struct version_set *vs = pick_vset(&env);
	add_level1_run(vs);
	apply_add(vs, 2, 50, 10, "c", "c");
	struct version *v = vset_current(vs);
	v->files[1][0]->being_compacted = 1; /* 40 */
	v->files[2][0]->being_compacted = 1; /* 50, under 41 */
	struct compaction *c = must_pick(vs);
	cr_assert_eq(c->inputs[0][0]->number, 42);
	cr_assert(c->inputs[0][0]->being_compacted);
	struct compaction *c2 = must_pick(vs);
	cr_assert_eq(c2->inputs[0][0]->number, 43);
	cr_assert_null(vset_pick_compaction(vs));
	compaction_free(c);
	cr_assert(!v->files[1][2]->being_compacted);
	compaction_free(c2);
	v->files[1][0]->being_compacted = 0;
	v->files[2][0]->being_compacted = 0;

	/* one busy level-0 file blocks every level-0 compaction */
	for (uint64_t n = 60; n < 69; n++) /* 9 files: score 2.25 beats level 1 */
		apply_add(vs, 0, n, 10, n % 2 ? "a" : "m", n % 2 ? "b" : "n");
	v = vset_current(vs);
	v->files[0][3]->being_compacted = 1;
	c = must_pick(vs);
	cr_assert_eq(c->level, 1);
	compaction_free(c);
	v->files[0][3]->being_compacted = 0;
	c = must_pick(vs);
	cr_assert_eq(c->level, 0);
	compaction_free(c);
	vset_free(vs);
	env_sim_free(env);
}

Test(pick, expands_level_inputs_when_next_level_stays_the_same)
{
	struct cairn_env *env;
	struct version_set *vs = pick_vset(&env);
	apply_add(vs, 1, 40, 4 * MIB, "a", "b");
	apply_add(vs, 1, 41, 4 * MIB, "c", "d");
	apply_add(vs, 2, 42, 4 * MIB, "a", "d");
	apply_add(vs, 3, 43, 1 * MIB, "b", "c");
	struct compaction *c = must_pick(vs);
	cr_assert_eq(c->ninputs[0], 2);
	cr_assert_eq(c->ninputs[1], 1);
	cr_assert_eq(c->ngrandparents, 1);
	compaction_free(c);
	vset_free(vs);

	/* too many bytes to expand: 48 MiB below */
	env_sim_free(env);
	vs = pick_vset(&env);
	apply_add(vs, 1, 40, 4 * MIB, "a", "b");
	apply_add(vs, 1, 41, 4 * MIB, "c", "d");
	apply_add(vs, 2, 42, 48 * MIB, "a", "d");
	c = must_pick(vs);
	cr_assert_eq(c->ninputs[0], 1);
	cr_assert_eq(c->ninputs[1], 1);
	compaction_free(c);
	vset_free(vs);

	/* expanding would pull another level-2 file in */
	env_sim_free(env);
	vs = pick_vset(&env);
	apply_add(vs, 1, 40, 4 * MIB, "a", "b");
	apply_add(vs, 1, 41, 4 * MIB, "c", "d");
	apply_add(vs, 2, 42, 1 * MIB, "a", "c");
	apply_add(vs, 2, 43, 1 * MIB, "cc", "d");
	c = must_pick(vs);
	cr_assert_eq(c->ninputs[0], 1);
	cr_assert_eq(c->ninputs[1], 1);
	compaction_free(c);
	vset_free(vs);
	env_sim_free(env);
}

Test(pick, boundary_files_sharing_a_user_key_go_together)
{
	struct cairn_env *env;
	struct version_set *vs = pick_vset(&env);
	struct version_edit e;
	struct buf s1 = ik("a", 10, TYPE_VALUE), l1 = ik("k", 9, TYPE_VALUE);
	struct buf s2 = ik("k", 8, TYPE_VALUE), l2 = ik("p", 1, TYPE_VALUE);
	edit_init(&e);
	cr_assert_eq(edit_add_file(&e, 1, 70, 6 * MIB, buf_slice(&s1), buf_slice(&l1), 1, 10, 1),
	             0);
	cr_assert_eq(edit_add_file(&e, 1, 71, 6 * MIB, buf_slice(&s2), buf_slice(&l2), 1, 10, 1),
	             0);
	vset_mark_file_number_used(vs, 71);
	apply(vs, &e);
	struct compaction *c = must_pick(vs);
	cr_assert_eq(c->ninputs[0], 2);
	compaction_free(c);
	buf_free(&s1);
	buf_free(&l1);
	buf_free(&s2);
	buf_free(&l2);
	vset_free(vs);
	env_sim_free(env);
}

Test(pick, trivial_move_needs_one_input_and_little_grandparent_overlap)
{
	struct cairn_env *env;
	struct version_set *vs = pick_vset(&env);
	apply_add(vs, 1, 40, 9 * MIB, "a", "b");
	apply_add(vs, 3, 41, 19 * MIB, "a", "b");
	struct compaction *c = must_pick(vs);
	cr_assert_eq(c->ninputs[1], 0);
	cr_assert_eq(c->ngrandparents, 1);
	cr_assert(compaction_is_trivial_move(c));
	compaction_free(c);

	/* 21 MiB of level 3 under the range: too much to move blindly */
	struct slice x = slice_make("x", 1), y = slice_make("y", 1);
	apply_add(vs, 1, 42, 1, "x", "y");
	apply_add(vs, 3, 43, 21 * MIB, "x", "y");
	c = vset_compact_range(vs, 1, &x, &y, NULL);
	cr_assert_not_null(c);
	cr_assert_eq(c->ninputs[0], 1);
	cr_assert_eq(c->ngrandparents, 1);
	cr_assert(!compaction_is_trivial_move(c));
	int busy = 0;
	cr_assert_null(vset_compact_range(vs, 1, &x, &y, &busy));
	cr_assert_eq(busy, 1);
	compaction_free(c);

	/* something to merge with in level 2 */
	struct slice m = slice_make("m", 1);
	apply_add(vs, 1, 44, 1, "m", "m");
	apply_add(vs, 2, 45, 1, "m", "m");
	c = vset_compact_range(vs, 1, &m, &m, NULL);
	cr_assert_not_null(c);
	cr_assert_eq(c->ninputs[1], 1);
	cr_assert(!compaction_is_trivial_move(c));
	compaction_free(c);

	busy = 1;
	cr_assert_null(vset_compact_range(vs, 4, NULL, NULL, &busy));
	cr_assert_eq(busy, 0);
	cr_assert_null(vset_compact_range(vs, NUM_LEVELS - 1, NULL, NULL, &busy));
	vset_free(vs);
	env_sim_free(env);
}

Test(pick, base_level_and_stop_before_follow_deeper_levels)
{
	struct cairn_env *env;
	struct version_set *vs = pick_vset(&env);
	apply_add(vs, 1, 40, 9 * MIB, "c", "f");
	apply_add(vs, 3, 41, 15 * MIB, "d", "d");
	apply_add(vs, 3, 42, 15 * MIB, "e", "e");
	apply_add(vs, 4, 43, 1, "m", "n");
	struct compaction *c = must_pick(vs);
	cr_assert_eq(c->level, 1);
	cr_assert_eq(c->ngrandparents, 2);
	cr_assert(compaction_is_base_level_for_key(c, slice_make("a", 1)));
	cr_assert(!compaction_is_base_level_for_key(c, slice_make("d", 1)));
	cr_assert(compaction_is_base_level_for_key(c, slice_make("dd", 2)));
	cr_assert(!compaction_is_base_level_for_key(c, slice_make("e", 1)));
	cr_assert(compaction_is_base_level_for_key(c, slice_make("f", 1)));
	cr_assert(!compaction_is_base_level_for_key(c, slice_make("m", 1)));
	cr_assert(compaction_is_base_level_for_key(c, slice_make("z", 1)));

	/* stop once more than 20 MiB of grandparents lie behind the output */
	struct buf k1 = ik("c", 5, TYPE_VALUE), k2 = ik("dz", 5, TYPE_VALUE);
	struct buf k3 = ik("ez", 5, TYPE_VALUE), k4 = ik("f", 5, TYPE_VALUE);
	cr_assert(!compaction_should_stop_before(c, buf_slice(&k1)));
	cr_assert(!compaction_should_stop_before(c, buf_slice(&k2))); /* 15 MiB */
	cr_assert(compaction_should_stop_before(c, buf_slice(&k3)));  /* 30 MiB */
	cr_assert(!compaction_should_stop_before(c, buf_slice(&k4)));
	/* grandparents wholly before the first output key do not count */
	c->grand_index = c->seen_key = 0;
	c->overlapped_bytes = 0;
	cr_assert(!compaction_should_stop_before(c, buf_slice(&k2)));
	cr_assert(!compaction_should_stop_before(c, buf_slice(&k3))); /* 15 MiB */
	buf_free(&k1);
	buf_free(&k2);
	buf_free(&k3);
	buf_free(&k4);
	compaction_free(c);
	vset_free(vs);
	env_sim_free(env);
}

/* The current version's file number num at level. */
static struct file_meta *file_at(struct version_set *vs, int level, uint64_t num)
{
	struct version *v = vset_current(vs);
	for (int i = 0; i < v->nfiles[level]; i++)
		if (v->files[level][i]->number == num)
			return v->files[level][i];
	cr_assert_fail("no file %llu at level %d", (unsigned long long)num, level);
	return NULL;
}

/* Spends n seeks of file num at level; returns the last charge's result. */
static int charge(struct version_set *vs, int level, uint64_t num, int n)
{
	struct seek_charge c = {file_at(vs, level, num), level};
	int r = 0;
	for (int i = 0; i < n; i++)
		r = version_charge_seek(vs, &c);
	return r;
}

Test(pick, seek_budget_scales_with_size_with_a_floor)
{
	struct cairn_env *env;
	struct version_set *vs = pick_vset(&env);
	apply_add(vs, 1, 40, 10, "a", "b");
	apply_add(vs, 1, 41, 64 * MIB, "c", "d");
	cr_assert_eq(file_at(vs, 1, 40)->allowed_seeks, 100);
	cr_assert_eq(file_at(vs, 1, 41)->allowed_seeks, 64 * MIB / 16384);
	vset_free(vs);
	env_sim_free(env);
}

Test(pick, table_out_of_seeks_is_compacted_down)
{
	struct cairn_env *env;
	struct version_set *vs = pick_vset(&env);
	apply_add(vs, 1, 40, 10, "a", "b");
	apply_add(vs, 1, 41, 10, "c", "d");
	apply_add(vs, 2, 50, 10, "x", "z");
	cr_assert_eq(charge(vs, 1, 41, 99), 0);
	cr_assert_null(vset_current(vs)->seek_file);
	cr_assert_eq(vset_needs_compaction(vs), 0);
	cr_assert_eq(charge(vs, 1, 41, 1), 1, "the last seek makes it the candidate");
	cr_assert_eq(charge(vs, 1, 41, 1), 0, "reported once");
	/* an unrelated edit keeps the candidate */
	apply_add(vs, 3, 60, 10, "m", "n");
	cr_assert_eq(vset_current(vs)->seek_file, file_at(vs, 1, 41));
	cr_assert_eq(vset_current(vs)->seek_level, 1);
	cr_assert_eq(charge(vs, 1, 40, 100), 0, "one candidate at a time");
	cr_assert_eq(vset_current(vs)->seek_file, file_at(vs, 1, 41));
	cr_assert_eq(vset_needs_compaction(vs), 1);
	struct compaction *c = must_pick(vs);
	cr_assert_eq(c->level, 1);
	cr_assert_eq(c->ninputs[0], 1);
	cr_assert_eq(c->inputs[0][0]->number, 41);
	cr_assert(compaction_is_trivial_move(c));
	cr_assert_null(vset_pick_compaction(vs), "the candidate is busy");
	/* the move, as compact.c does it */
	struct file_meta *f = c->inputs[0][0];
	cr_assert_eq(edit_delete_file(&c->edit, 1, 41), 0);
	cr_assert_eq(edit_add_file(&c->edit, 2, 41, f->size, buf_slice(&f->smallest),
	                           buf_slice(&f->largest), f->min_seq, f->max_seq, f->num_entries),
	             0);
	cr_assert_eq(vset_log_and_apply(vs, &c->edit, err, sizeof(err)), 0, "%s", err);
	compaction_free(c);
	cr_assert_eq(file_at(vs, 2, 41)->allowed_seeks, 100, "a fresh budget one level down");
	/* file 40 ran out too while 41 was the candidate: it is next */
	cr_assert_eq(vset_current(vs)->seek_file, file_at(vs, 1, 40));
	c = must_pick(vs);
	cr_assert_eq(c->inputs[0][0]->number, 40);
	compaction_free(c);
	vset_free(vs);
	env_sim_free(env);
}

Test(pick, seek_candidate_comes_after_size_scores)
{
	struct cairn_env *env;
	struct version_set *vs = pick_vset(&env);
	apply_add(vs, 1, 40, 10, "a", "b");
	apply_add(vs, 2, 50, 100 * MIB, "x", "z"); /* level 2 scores 1.25 */
	cr_assert_eq(charge(vs, 1, 40, 100), 1);
	struct compaction *c = must_pick(vs);
	cr_assert_eq(c->level, 2);
	struct compaction *c2 = must_pick(vs);
	cr_assert_eq(c2->level, 1);
	cr_assert_eq(c2->inputs[0][0]->number, 40);
	compaction_free(c);
	compaction_free(c2);
	vset_free(vs);
	env_sim_free(env);
}

Test(pick, seek_charges_skip_the_last_level_and_old_files)
{
	struct cairn_env *env;
	struct version_set *vs = pick_vset(&env);
	apply_add(vs, NUM_LEVELS - 1, 70, 10, "a", "z");
	cr_assert_eq(charge(vs, NUM_LEVELS - 1, 70, 200), 0);
	cr_assert_null(vset_current(vs)->seek_file);
	/* a file a newer version has dropped only loses budget */
	apply_add(vs, 1, 40, 10, "a", "b");
	struct seek_charge old = {file_at(vs, 1, 40), 1};
	struct version *held = vset_current(vs);
	version_ref(held);
	struct version_edit e;
	edit_init(&e);
	cr_assert_eq(edit_delete_file(&e, 1, 40), 0);
	apply(vs, &e);
	for (int i = 0; i < 100; i++)
		cr_assert_eq(version_charge_seek(vs, &old), 0);
	cr_assert_eq(old.f->allowed_seeks, 0);
	cr_assert_null(vset_current(vs)->seek_file);
	version_unref(held);
	vset_free(vs);
	env_sim_free(env);
}

Test(pick, flush_level_goes_deep_only_without_overlap)
{
	struct cairn_env *env;
	struct version_set *vs = pick_vset(&env);
	struct slice a = slice_make("a", 1), b = slice_make("b", 1);
	cr_assert_eq(version_pick_level_for_flush(vset_current(vs), a, b), 2);
	apply_add(vs, 2, 40, 10, "b", "c");
	cr_assert_eq(version_pick_level_for_flush(vset_current(vs), a, b), 1);
	apply_add(vs, 1, 41, 10, "a", "a");
	cr_assert_eq(version_pick_level_for_flush(vset_current(vs), a, b), 0);

	struct slice m = slice_make("m", 1), n = slice_make("n", 1);
	apply_add(vs, 3, 42, 30 * MIB, "m", "n");
	cr_assert_eq(version_pick_level_for_flush(vset_current(vs), m, n), 1);
	apply_add(vs, 2, 43, 30 * MIB, "mm", "mm");
	cr_assert_eq(version_pick_level_for_flush(vset_current(vs), m, n), 0);
	apply_add(vs, 0, 44, 10, "x", "y");
	struct slice x = slice_make("x", 1);
	cr_assert_eq(version_pick_level_for_flush(vset_current(vs), x, x), 0);
	cr_assert(version_overlaps(vset_current(vs), 0, &x, NULL));
	cr_assert(!version_overlaps(vset_current(vs), 0, NULL, &a));
	cr_assert(version_overlaps(vset_current(vs), 1, NULL, &a));
	cr_assert(!version_overlaps(vset_current(vs), 1, &b, NULL));
	vset_free(vs);
	env_sim_free(env);
}

/* ---- reads through real tables ---- */

struct kv {
	const char *key;
	uint64_t seq;
	enum value_type type;
	const char *val;
};

static void write_table(struct cairn_env *env, struct version_set *vs, int level, uint64_t num,
                        const struct kv *kvs, int n)
{
	struct table_options to = {.block_size = 4096,
	                           .restart_interval = 16,
	                           .bloom_bits_per_key = 10,
	                           .compression = 0};
	struct env_file *f;
	struct table_builder *tb;
	struct table_props props;
	char path[256];
	table_file_name(path, sizeof(path), "db", num);
	cr_assert_eq(env_open_write(env, path, &f), 0);
	cr_assert_eq(tb_new(&to, f, &tb), 0);
	for (int i = 0; i < n; i++) {
		struct buf k = ik(kvs[i].key, kvs[i].seq, kvs[i].type), v = {0};
		buf_put_fixed64(&v, 1234);
		buf_append(&v, kvs[i].val, strlen(kvs[i].val));
		cr_assert_eq(tb_add(tb, buf_slice(&k), buf_slice(&v)), 0);
		buf_free(&k);
		buf_free(&v);
	}
	cr_assert_eq(tb_finish(tb, &props), 0);
	tb_free(tb);
	cr_assert_eq(env_sync(f), 0);
	cr_assert_eq(env_close(f), 0);
	uint64_t size;
	cr_assert_eq(env_file_size(env, path, &size), 0);
	struct version_edit e;
	edit_init(&e);
	cr_assert_eq(edit_add_file(&e, level, num, size, buf_slice(&props.smallest),
	                           buf_slice(&props.largest), props.min_seq, props.max_seq,
	                           props.num_entries),
	             0);
	table_props_free(&props);
	vset_mark_file_number_used(vs, num);
	apply(vs, &e);
}

/* 10 is older than 11 but starts at a smaller key: order by number matters */
static const struct kv t10[] = {
        {"a", 29, TYPE_VALUE, "a29"}, {"b", 30, TYPE_VALUE, "v30"}, {"d", 31, TYPE_DELETION, ""}};
static const struct kv t11[] = {{"b", 40, TYPE_VALUE, "v40"}};
static const struct kv t12[] = {{"a", 5, TYPE_VALUE, "a5"},
                                {"b", 6, TYPE_VALUE, "b6"},
                                {"d", 7, TYPE_VALUE, "d7"},
                                {"e", 8, TYPE_VALUE, "e8"}};
static const struct kv t13[] = {{"f", 9, TYPE_VALUE, "f9"}, {"g", 10, TYPE_VALUE, "g10"}};
static const struct kv t14[] = {{"a", 1, TYPE_VALUE, "a1"}, {"z", 2, TYPE_VALUE, "z2"}};

struct reads {
	struct cairn_env *env;
	struct table_cache *tc;
	struct version_set *vs;
};

static void reads_setup(struct reads *r)
{
	struct cairn_options o;
	test_opts(&o);
	r->env = sim_env(30);
	cr_assert_eq(tcache_new(r->env, "db", 16, NULL, NULL, &r->tc), 0);
	r->vs = new_vset(r->env, "db", &o, r->tc);
	cr_assert_eq(vset_create(r->vs, err, sizeof(err)), 0, "%s", err);
	write_table(r->env, r->vs, 0, 10, t10, 3);
	write_table(r->env, r->vs, 0, 11, t11, 1);
	write_table(r->env, r->vs, 1, 12, t12, 4);
	write_table(r->env, r->vs, 1, 13, t13, 2);
	write_table(r->env, r->vs, 2, 14, t14, 2);
}

static void reads_teardown(struct reads *r)
{
	vset_free(r->vs);
	tcache_free(r->tc);
	env_sim_free(r->env);
}

/* Looks key up at seq: returns 1 with the value ("DEL" for a tombstone) in
 * out, or 0. */
static int get(struct reads *r, const char *key, uint64_t seq, char *out)
{
	struct buf look = ik(key, seq, TYPE_SEEK), k = {0}, v = {0};
	int rc = version_get(vset_current(r->vs), buf_slice(&look), &k, &v, NULL, err, sizeof(err));
	cr_assert_geq(rc, 0, "%s", err);
	if (rc == 1) {
		cr_assert(slice_eq(ikey_user(buf_slice(&k)), slice_make(key, strlen(key))));
		if (ikey_type(buf_slice(&k)) == TYPE_DELETION)
			strcpy(out, "DEL");
		else
			snprintf(out, 64, "%.*s", (int)ival_value(buf_slice(&v)).len,
			         ival_value(buf_slice(&v)).data);
	}
	buf_free(&look);
	buf_free(&k);
	buf_free(&v);
	return rc;
}

Test(read, version_get_takes_the_newest_visible_entry)
{
	struct reads r;
	char out[64];
	reads_setup(&r);
	cr_assert_eq(get(&r, "b", MAX_SEQUENCE, out), 1);
	cr_assert_str_eq(out, "v40");
	cr_assert_eq(get(&r, "b", 35, out), 1);
	cr_assert_str_eq(out, "v30");
	cr_assert_eq(get(&r, "b", 20, out), 1);
	cr_assert_str_eq(out, "b6");
	cr_assert_eq(get(&r, "d", MAX_SEQUENCE, out), 1);
	cr_assert_str_eq(out, "DEL");
	cr_assert_eq(get(&r, "d", 30, out), 1);
	cr_assert_str_eq(out, "d7");
	cr_assert_eq(get(&r, "a", MAX_SEQUENCE, out), 1);
	cr_assert_str_eq(out, "a29");
	cr_assert_eq(get(&r, "a", 20, out), 1);
	cr_assert_str_eq(out, "a5");
	cr_assert_eq(get(&r, "a", 3, out), 1);
	cr_assert_str_eq(out, "a1");
	cr_assert_eq(get(&r, "g", MAX_SEQUENCE, out), 1);
	cr_assert_str_eq(out, "g10");
	cr_assert_eq(get(&r, "z", MAX_SEQUENCE, out), 1);
	cr_assert_str_eq(out, "z2");
	cr_assert_eq(get(&r, "c", MAX_SEQUENCE, out), 0);
	cr_assert_eq(get(&r, "zz", MAX_SEQUENCE, out), 0);
	cr_assert_eq(get(&r, "f", 8, out), 0);
	reads_teardown(&r);
}

/* Looks key up at seq and returns the number of the table charged (0: none). */
static uint64_t charged(struct reads *r, const char *key, uint64_t seq, int *level)
{
	struct buf look = ik(key, seq, TYPE_SEEK), k = {0}, v = {0};
	struct seek_charge c = {(struct file_meta *)1, 9};
	int rc = version_get(vset_current(r->vs), buf_slice(&look), &k, &v, &c, err, sizeof(err));
	cr_assert_geq(rc, 0, "%s", err);
	buf_free(&look);
	buf_free(&k);
	buf_free(&v);
	*level = c.f ? c.level : -1;
	return c.f ? c.f->number : 0;
}

Test(read, version_get_charges_the_first_table_searched_in_vain)
{
	struct reads r;
	int level;
	reads_setup(&r);
	/* found in the first table searched, or the only one: no charge */
	cr_assert_eq(charged(&r, "a", MAX_SEQUENCE, &level), 0);
	cr_assert_eq(charged(&r, "e", MAX_SEQUENCE, &level), 0);
	cr_assert_eq(charged(&r, "z", MAX_SEQUENCE, &level), 0);
	/* 10 holds a, but not visible at 3: 10, 12 and 14 are searched */
	cr_assert_eq(charged(&r, "a", 3, &level), 10);
	cr_assert_eq(level, 0);
	/* c is nowhere: 10 (a-d) first */
	cr_assert_eq(charged(&r, "c", MAX_SEQUENCE, &level), 10);
	/* f at 8: 13 then 14 */
	cr_assert_eq(charged(&r, "f", 8, &level), 13);
	cr_assert_eq(level, 1);
	reads_teardown(&r);
}

/* Walks it forward and backward: checks order and returns the count. */
static int walk(struct iter *it)
{
	int n = 0, back = 0;
	struct buf prev = {0};
	for (iter_seek_first(it); iter_valid(it); iter_next(it), n++) {
		if (n)
			cr_assert_lt(ikey_cmp(buf_slice(&prev), iter_key(it)), 0);
		buf_set(&prev, iter_key(it).data, iter_key(it).len);
	}
	cr_assert_eq(iter_status(it), 0);
	for (iter_seek_last(it); iter_valid(it); iter_prev(it), back++) {
		if (back)
			cr_assert_gt(ikey_cmp(buf_slice(&prev), iter_key(it)), 0);
		buf_set(&prev, iter_key(it).data, iter_key(it).len);
	}
	cr_assert_eq(back, n);
	buf_free(&prev);
	return n;
}

Test(read, level_iterators_cover_every_entry_in_order)
{
	struct reads r;
	reads_setup(&r);
	struct version *v = vset_current(r.vs);
	struct iter *its[NUM_LEVELS + 2];
	version_ref(v);
	int n = version_add_iters(v, its);
	cr_assert_eq(n, 4); /* two level-0 files, levels 1 and 2 */
	struct iter *m = iter_merge_new(its, n);
	cr_assert_eq(walk(m), 12);
	/* seek lands in the second file of level 1 */
	struct buf t = ik("f", MAX_SEQUENCE, TYPE_SEEK);
	iter_seek(m, buf_slice(&t));
	cr_assert(iter_valid(m));
	cr_assert(slice_eq(ikey_user(iter_key(m)), slice_make("f", 1)));
	buf_free(&t);
	iter_free(m);
	version_unref(v);
	reads_teardown(&r);
}

Test(read, compaction_input_iter_merges_both_levels)
{
	struct reads r;
	reads_setup(&r);
	struct compaction *c = vset_compact_range(r.vs, 1, NULL, NULL, NULL);
	cr_assert_not_null(c);
	cr_assert_eq(c->ninputs[0], 2);
	cr_assert_eq(c->ninputs[1], 1);
	struct iter *it = compaction_input_iter(c);
	cr_assert_not_null(it);
	cr_assert_eq(walk(it), 8);
	iter_free(it);
	compaction_free(c);

	c = vset_compact_range(r.vs, 0, NULL, NULL, NULL);
	cr_assert_not_null(c);
	cr_assert_eq(c->ninputs[0], 2);
	cr_assert_eq(c->ninputs[1], 1); /* 12 holds b and d */
	it = compaction_input_iter(c);
	cr_assert_eq(walk(it), 8);
	iter_free(it);
	compaction_free(c);
	reads_teardown(&r);
}
