/*
 * test_wal.c - the record log: round trips, the torn-tail and corruption
 * rules of the reader, file header checks, and crashes on the simulated env.
 *
 * Most tests run on the POSIX env in a fresh mkdtemp directory; the crash
 * tests run on the simulated env. Files are built and damaged through the
 * env itself (whole-file get/put helpers), so the same helpers serve both.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "wal.h"

#define SEED 0x5eed0001ull

static struct cairn_env *tenv;
static char tdir[64];
static char tpath[128];

static void posix_setup(void)
{
	strcpy(tdir, "/tmp/cairn-test-wal-XXXXXX");
	cr_assert_not_null(mkdtemp(tdir));
	snprintf(tpath, sizeof(tpath), "%s/000001.log", tdir);
	tenv = env_posix();
}

static void posix_teardown(void)
{
	char cmd[128];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tdir);
	cr_assert_eq(system(cmd), 0);
}

static void sim_setup(void)
{
	cr_assert_eq(env_sim_new(SEED, 1000000000, &tenv), 0);
	strcpy(tpath, "000001.log");
}

static void sim_teardown(void)
{
	env_sim_free(tenv);
}

/* Whole-file helpers through the env. */
static void file_put(const char *path, const void *data, size_t n)
{
	struct env_file *f;

	cr_assert_eq(env_open_write(tenv, path, &f), 0);
	if (n)
		cr_assert_eq(env_append(f, data, n), 0);
	cr_assert_eq(env_close(f), 0);
}

static char *file_get(const char *path, size_t *n)
{
	struct env_file *f;
	uint64_t size;
	size_t got = 0;
	char *data;

	cr_assert_eq(env_open_read(tenv, path, &f), 0);
	cr_assert_eq(env_size(f, &size), 0);
	data = malloc(size + 1);
	cr_assert_not_null(data);
	cr_assert_eq(env_pread(f, 0, data, size, &got), 0);
	cr_assert_eq(got, size);
	cr_assert_eq(env_close(f), 0);
	*n = size;
	return data;
}

/* Deterministic record contents: byte j of record i. */
static char rec_byte(int i, size_t j)
{
	return (char)((i * 131 + j * 7 + (j >> 9)) & 0xff);
}

static char *rec_make(int i, size_t len)
{
	char *p = malloc(len ? len : 1);

	cr_assert_not_null(p);
	for (size_t j = 0; j < len; j++)
		p[j] = rec_byte(i, j);
	return p;
}

/* Writes records of the given sizes to path; returns the offset where each
 * record starts in offs (n + 1 entries, the last is the file size). */
static void write_log(const char *path, enum wal_kind kind, const size_t *sizes, int n,
                      uint64_t *offs)
{
	struct wal_writer *w;
	struct env_file *f;

	cr_assert_eq(env_open_write(tenv, path, &f), 0);
	cr_assert_eq(wal_writer_new(f, kind, &w), 0);
	for (int i = 0; i < n; i++) {
		char *p = rec_make(i, sizes[i]);

		if (offs)
			offs[i] = wal_size(w);
		cr_assert_eq(wal_add(w, p, sizes[i]), 0);
		free(p);
	}
	if (offs)
		offs[n] = wal_size(w);
	cr_assert_eq(wal_sync(w), 0);
	cr_assert_eq(wal_writer_close(w), 0);
}

/* Reads path and checks it holds records 0..nrec-1 of sizes, then returns
 * what ended the reading (WAL_EOF, WAL_TORN or an error); *good gets
 * wal_good_offset. Every record returned must be exactly the one written. */
static int read_log(const char *path, const size_t *sizes, int nrec, int *nread, uint64_t *good,
                    char *err, size_t errlen)
{
	struct wal_reader *r;
	struct slice rec;
	int rc, i = 0;

	rc = wal_reader_open(tenv, path, WAL_KIND_LOG, &r, err, errlen);
	if (rc)
		return rc;
	while ((rc = wal_next(r, &rec, err, errlen)) == WAL_RECORD) {
		cr_assert_lt(i, nrec, "more records than written");
		cr_assert_eq(rec.len, sizes[i], "record %d: length %zu, wrote %zu", i, rec.len,
		             sizes[i]);
		for (size_t j = 0; j < rec.len; j++)
			cr_assert_eq(rec.data[j], rec_byte(i, j), "record %d byte %zu differs", i,
			             j);
		i++;
	}
	*nread = i;
	*good = wal_good_offset(r);
	wal_reader_close(r);
	return rc;
}

TestSuite(wal, .init = posix_setup, .fini = posix_teardown);
TestSuite(wal_sim, .init = sim_setup, .fini = sim_teardown);

Test(wal, wal_roundtrips_records_of_random_sizes)
{
	enum { N = 300 };
	size_t sizes[N];
	uint64_t offs[N + 1], good, st = SEED, fsize;
	int nread;
	char err[256] = "";

	for (int i = 0; i < N; i++)
		sizes[i] = (size_t)prng_below(&st, 5000);
	sizes[0] = 0;
	sizes[17] = 0;
	sizes[50] = (3u << 20) + 5; /* over the single-append limit */
	sizes[51] = 100 * 1024;     /* over the read chunk, under the limit */
	sizes[52] = 0;
	sizes[N - 1] = (1u << 20) + 1;
	write_log(tpath, WAL_KIND_LOG, sizes, N, offs);
	cr_assert_eq(env_file_size(tenv, tpath, &fsize), 0);
	cr_assert_eq(fsize, offs[N], "wal_size %llu, file %llu (seed %llx)",
	             (unsigned long long)offs[N], (unsigned long long)fsize, SEED);
	cr_assert_eq(read_log(tpath, sizes, N, &nread, &good, err, sizeof(err)), WAL_EOF,
	             "seed %llx: %s", SEED, err);
	cr_assert_eq(nread, N);
	cr_assert_eq(good, fsize);
}

Test(wal, wal_addv_writes_the_same_bytes_as_wal_add)
{
	size_t big = (1u << 20) + 100, n1, n2;
	char *data = rec_make(3, big), *a, *b;
	char pa[160], pb[160];
	struct slice parts[4];
	struct wal_writer *w;
	struct env_file *f;

	snprintf(pa, sizeof(pa), "%s/a.log", tdir);
	snprintf(pb, sizeof(pb), "%s/b.log", tdir);
	cr_assert_eq(env_open_write(tenv, pa, &f), 0);
	cr_assert_eq(wal_writer_new(f, WAL_KIND_LOG, &w), 0);
	cr_assert_eq(wal_add(w, data, 1000), 0);
	cr_assert_eq(wal_add(w, data, big), 0);
	cr_assert_eq(wal_add(w, data, 0), 0);
	cr_assert_eq(wal_writer_close(w), 0);

	cr_assert_eq(env_open_write(tenv, pb, &f), 0);
	cr_assert_eq(wal_writer_new(f, WAL_KIND_LOG, &w), 0);
	parts[0] = slice_make(data, 10);
	parts[1] = slice_make(data + 10, 0);
	parts[2] = slice_make(data + 10, 990);
	cr_assert_eq(wal_addv(w, parts, 3), 0);
	parts[0] = slice_make(data, 7);
	parts[1] = slice_make(data + 7, big - 7 - 3);
	parts[2] = slice_make(data + big - 3, 3);
	cr_assert_eq(wal_addv(w, parts, 3), 0);
	cr_assert_eq(wal_addv(w, parts, 0), 0);
	cr_assert_eq(wal_writer_close(w), 0);

	a = file_get(pa, &n1);
	b = file_get(pb, &n2);
	cr_assert_eq(n1, n2);
	cr_assert_eq(memcmp(a, b, n1), 0);
	free(a);
	free(b);
	free(data);
}

Test(wal_sim, wal_torn_tail_at_every_offset_keeps_earlier_records)
{
	size_t sizes[3] = {25, 0, 40}, n;
	uint64_t offs[4], good;
	char err[256] = "", *data;
	int nread, rc;

	write_log(tpath, WAL_KIND_LOG, sizes, 3, offs);
	data = file_get(tpath, &n);
	for (size_t cut = offs[2]; cut < n; cut++) {
		file_put(tpath, data, cut);
		rc = read_log(tpath, sizes, 3, &nread, &good, err, sizeof(err));
		cr_assert_eq(rc, cut == offs[2] ? WAL_EOF : WAL_TORN, "cut at %zu: %d %s", cut, rc,
		             err);
		cr_assert_eq(nread, 2, "cut at %zu", cut);
		cr_assert_eq(good, offs[2], "cut at %zu", cut);
	}
	/* the file header itself torn: an empty log */
	for (size_t cut = 0; cut < WAL_FILE_HEADER; cut++) {
		file_put(tpath, data, cut);
		rc = read_log(tpath, sizes, 3, &nread, &good, err, sizeof(err));
		cr_assert_eq(rc, WAL_TORN, "cut at %zu: %d %s", cut, rc, err);
		cr_assert_eq(nread, 0);
		cr_assert_eq(good, 0);
	}
	free(data);
}

Test(wal, wal_zero_filled_tail_is_torn)
{
	size_t sizes[2] = {30, 300}, n, pads[] = {1, 11, 12, 13, 4096, 200000};
	uint64_t offs[3], good;
	char err[256] = "", *data;
	int nread;

	write_log(tpath, WAL_KIND_LOG, sizes, 2, offs);
	data = file_get(tpath, &n);
	for (size_t i = 0; i < sizeof(pads) / sizeof(pads[0]); i++) {
		char *z = calloc(1, n + pads[i]);

		memcpy(z, data, n);
		file_put(tpath, z, n + pads[i]);
		cr_assert_eq(read_log(tpath, sizes, 2, &nread, &good, err, sizeof(err)), WAL_TORN,
		             "pad %zu: %s", pads[i], err);
		cr_assert_eq(nread, 2);
		cr_assert_eq(good, n);
		/* a whole file of zeros (never written, then a crash): empty */
		file_put(tpath, z + n, pads[i]);
		cr_assert_eq(read_log(tpath, sizes, 2, &nread, &good, err, sizeof(err)), WAL_TORN,
		             "zeros %zu: %s", pads[i], err);
		cr_assert_eq(good, 0);
		free(z);
	}
	free(data);
}

Test(wal, wal_bit_flip_in_earlier_record_is_corrupt_with_offset)
{
	size_t sizes[3] = {20, 50, 10}, n;
	uint64_t offs[4], good;
	char err[256] = "", want[64], *data;
	int nread;

	write_log(tpath, WAL_KIND_LOG, sizes, 3, offs);
	data = file_get(tpath, &n);

	data[offs[1] + WAL_RECORD_HEADER + 5] ^= 0x10; /* payload of record 1 */
	file_put(tpath, data, n);
	cr_assert_eq(read_log(tpath, sizes, 3, &nread, &good, err, sizeof(err)), CAIRN_ECORRUPT);
	cr_assert_eq(nread, 1);
	cr_assert_eq(good, offs[1]);
	snprintf(want, sizeof(want), "record at offset %llu fails its checksum",
	         (unsigned long long)offs[1]);
	cr_assert_not_null(strstr(err, want), "message: %s", err);
	cr_assert_not_null(strstr(err, tpath), "message: %s", err);

	data[offs[1] + WAL_RECORD_HEADER + 5] ^= 0x10;
	data[offs[0] + 1] ^= 0x01; /* length of record 0 */
	file_put(tpath, data, n);
	cr_assert_eq(read_log(tpath, sizes, 3, &nread, &good, err, sizeof(err)), CAIRN_ECORRUPT);
	cr_assert_eq(nread, 0);
	cr_assert_eq(good, WAL_FILE_HEADER);
	snprintf(want, sizeof(want), "bad record header at offset %d", WAL_FILE_HEADER);
	cr_assert_not_null(strstr(err, want), "message: %s", err);
	free(data);
}

/* Every single-bit error anywhere in the file is either caught (an error at
 * open, CAIRN_ECORRUPT, or WAL_TORN when it hits the last record) or, at
 * worst, shortens the log; it never yields a record that was not written. */
Test(wal_sim, wal_bit_flip_never_yields_a_wrong_record)
{
	size_t sizes[3] = {9, 0, 23}, n;
	uint64_t offs[4], good;
	char err[256], *data;
	int nread, rc;

	write_log(tpath, WAL_KIND_LOG, sizes, 3, offs);
	data = file_get(tpath, &n);
	for (size_t bit = 0; bit < n * 8; bit++) {
		data[bit / 8] ^= (char)(1 << (bit % 8));
		file_put(tpath, data, n);
		rc = read_log(tpath, sizes, 3, &nread, &good, err, sizeof(err));
		cr_assert(rc == CAIRN_ECORRUPT || rc == WAL_TORN, "bit %zu: result %d", bit, rc);
		if (rc == WAL_TORN) {
			/* only damage to the last record may look torn */
			cr_assert_geq(bit / 8, offs[2], "bit %zu torn", bit);
			cr_assert_eq(nread, 2);
		}
		data[bit / 8] ^= (char)(1 << (bit % 8));
	}
	free(data);
}

static void put_header(const char *magic, unsigned version, unsigned kind, int good_crc)
{
	char h[WAL_FILE_HEADER];

	memcpy(h, magic, 8);
	enc_fixed16(h + 8, (uint16_t)version);
	enc_fixed16(h + 10, (uint16_t)kind);
	enc_fixed32(h + 12, crc32c_mask(crc32c(h, 12)) ^ (good_crc ? 0 : 1));
	file_put(tpath, h, sizeof(h));
}

static int open_status(enum wal_kind kind, char *err, size_t errlen)
{
	struct wal_reader *r = NULL;
	int rc = wal_reader_open(tenv, tpath, kind, &r, err, errlen);

	cr_assert(rc ? r == NULL : r != NULL);
	wal_reader_close(r);
	return rc;
}

Test(wal, wal_rejects_bad_file_headers)
{
	char err[256] = "";
	size_t n = 0;
	uint64_t good = 0;
	int nread = 0;

	put_header("cairnlog", 1, WAL_KIND_LOG, 1);
	cr_assert_eq(open_status(WAL_KIND_LOG, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(read_log(tpath, &n, 0, &nread, &good, err, sizeof(err)), WAL_EOF);
	cr_assert_eq(good, WAL_FILE_HEADER);

	put_header("cairnlgo", 1, WAL_KIND_LOG, 1);
	cr_assert_eq(open_status(WAL_KIND_LOG, err, sizeof(err)), CAIRN_ECORRUPT);
	cr_assert_not_null(strstr(err, "magic"), "%s", err);
	put_header("cairnlog", 1, WAL_KIND_MANIFEST, 1);
	cr_assert_eq(open_status(WAL_KIND_LOG, err, sizeof(err)), CAIRN_ECORRUPT);
	put_header("cairnlog", 1, WAL_KIND_LOG, 0);
	cr_assert_eq(open_status(WAL_KIND_LOG, err, sizeof(err)), CAIRN_ECORRUPT);
	put_header("cairnlog", 0, WAL_KIND_LOG, 1);
	cr_assert_eq(open_status(WAL_KIND_LOG, err, sizeof(err)), CAIRN_ECORRUPT);
	put_header("cairnlog", 2, WAL_KIND_LOG, 1);
	cr_assert_eq(open_status(WAL_KIND_LOG, err, sizeof(err)), 0, "%s", err);
	put_header("cairnlog", 3, WAL_KIND_LOG, 1);
	cr_assert_eq(open_status(WAL_KIND_LOG, err, sizeof(err)), CAIRN_EVERSION);
	cr_assert_not_null(strstr(err, "version 3"), "%s", err);
}

Test(wal, wal_manifest_read_as_log_fails)
{
	size_t sizes[1] = {5};
	char err[256] = "";
	struct wal_reader *r;
	struct slice rec;

	write_log(tpath, WAL_KIND_MANIFEST, sizes, 1, NULL);
	cr_assert_eq(open_status(WAL_KIND_LOG, err, sizeof(err)), CAIRN_ECORRUPT);
	cr_assert_not_null(strstr(err, "is a manifest, not a log"), "%s", err);
	cr_assert_eq(wal_reader_open(tenv, tpath, WAL_KIND_MANIFEST, &r, err, sizeof(err)), 0);
	cr_assert_eq(wal_next(r, &rec, err, sizeof(err)), WAL_RECORD);
	cr_assert_eq(rec.len, 5);
	cr_assert_eq(wal_next(r, &rec, err, sizeof(err)), WAL_EOF);
	cr_assert_eq(wal_next(r, &rec, err, sizeof(err)), WAL_EOF, "EOF is sticky");
	wal_reader_close(r);
}

Test(wal, wal_length_over_limit_is_refused)
{
	char hdr[WAL_FILE_HEADER + WAL_RECORD_HEADER + 16] = {0}, err[256] = "", small[4] = {0};
	char *data;
	struct slice parts[2] = {{small, 4}, {small, WAL_MAX_RECORD}};
	struct wal_writer *w;
	struct env_file *f;
	uint64_t good;
	size_t n;
	int nread;

	cr_assert_eq(env_open_write(tenv, tpath, &f), 0);
	cr_assert_eq(wal_writer_new(f, WAL_KIND_LOG, &w), 0);
	/* checked before any byte of the parts is read */
	cr_assert_eq(wal_addv(w, parts, 2), CAIRN_ETOOBIG);
	cr_assert_eq(wal_size(w), WAL_FILE_HEADER);
	cr_assert_eq(wal_writer_close(w), 0);

	/* a reader never trusts such a length, even with a good header crc */
	data = file_get(tpath, &n);
	memcpy(hdr, data, WAL_FILE_HEADER);
	free(data);
	enc_fixed32(hdr + 16, WAL_MAX_RECORD + 1);
	enc_fixed32(hdr + 24, crc32c_mask(crc32c(hdr + 16, 8)));
	file_put(tpath, hdr, sizeof(hdr));
	cr_assert_eq(read_log(tpath, &n, 0, &nread, &good, err, sizeof(err)), CAIRN_ECORRUPT);
	cr_assert_not_null(strstr(err, "offset 16"), "%s", err);
}

/* Power loss after some synced records: every synced record survives, the
 * unsynced ones survive as a prefix, and the cut is read as a torn tail,
 * never as corruption. Covers a multi-append record (over 1 MiB) torn by the
 * crash too. */
Test(wal_sim, wal_crash_keeps_synced_records_and_tears_only_the_tail)
{
	enum { N = 12, SYNCED = 5 };
	size_t sizes[N] = {10, 0, 300, 7, 70000, 3, 1, 0, 5000, (1u << 20) + 9, 44, 12};
	uint64_t offs[N + 1], good;
	char err[256] = "";
	int nread, rc, torn = 0;

	for (uint64_t seed = 1; seed <= 60; seed++) {
		struct wal_writer *w;
		struct env_file *f;

		env_sim_free(tenv);
		cr_assert_eq(env_sim_new(seed, 0, &tenv), 0);
		cr_assert_eq(env_open_write(tenv, tpath, &f), 0);
		cr_assert_eq(wal_writer_new(f, WAL_KIND_LOG, &w), 0);
		cr_assert_eq(env_sync_dir(tenv, ""), 0);
		for (int i = 0; i < N; i++) {
			char *p = rec_make(i, sizes[i]);

			offs[i] = wal_size(w);
			cr_assert_eq(wal_add(w, p, sizes[i]), 0);
			free(p);
			if (i == SYNCED - 1)
				cr_assert_eq(wal_sync(w), 0);
		}
		offs[N] = wal_size(w);
		env_sim_crash(tenv);
		wal_writer_close(w);
		env_sim_reboot(tenv);

		rc = read_log(tpath, sizes, N, &nread, &good, err, sizeof(err));
		cr_assert(rc == WAL_EOF || rc == WAL_TORN, "seed %llu: %d %s",
		          (unsigned long long)seed, rc, err);
		cr_assert_geq(nread, SYNCED, "seed %llu", (unsigned long long)seed);
		cr_assert_eq(good, offs[nread], "seed %llu", (unsigned long long)seed);
		torn += rc == WAL_TORN;
	}
	cr_assert_gt(torn, 0, "no seed tore a record: the test proves nothing");
}

/* After a failed append the writer refuses further records: a record cut
 * short in the middle of the file would hide every later one. */
Test(wal_sim, wal_writer_failure_is_sticky)
{
	size_t sizes[2] = {8, 8};
	struct wal_writer *w;
	struct env_file *f;
	uint64_t good;
	char err[256] = "", *p = rec_make(0, 8);
	int nread;

	cr_assert_eq(env_open_write(tenv, tpath, &f), 0);
	cr_assert_eq(wal_writer_new(f, WAL_KIND_LOG, &w), 0);
	cr_assert_eq(wal_add(w, p, 8), 0);
	env_sim_arm(tenv, 1, SIM_FAULT_EIO);
	cr_assert_eq(wal_add(w, p, 8), CAIRN_EIO);
	cr_assert_eq(wal_add(w, p, 8), CAIRN_EIO);
	cr_assert_eq(wal_sync(w), CAIRN_EIO);
	cr_assert_eq(wal_size(w), WAL_FILE_HEADER + WAL_RECORD_HEADER + 8);
	cr_assert_eq(wal_writer_close(w), 0);
	cr_assert_eq(read_log(tpath, sizes, 2, &nread, &good, err, sizeof(err)), WAL_EOF);
	cr_assert_eq(nread, 1);
	free(p);
}
