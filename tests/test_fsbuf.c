/*
 * test_fsbuf.c - the pure parts of cairnfs besides the path mapping: the
 * metadata record (fs/meta.c) and the per-file write buffer (fs/wbuf.c).
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "../fs/meta.h"
#include "../fs/wbuf.h"

Test(fsmeta, record_round_trips)
{
	struct meta_rec r, d;
	char buf[META_BUF];
	int n;

	meta_init(&r, META_SYMLINK, 0777, 1000, 100, -5);
	r.mtime_ns = 1234567890123456789;
	r.target = "../x";
	r.tlen = 4;
	n = meta_encode(&r, buf);
	cr_assert_eq(n, META_FIXED + 4);
	cr_assert_eq(buf[0], META_VERSION);
	cr_assert_eq(meta_decode(buf, (size_t)n, &d), 0);
	cr_assert_eq(d.type, META_SYMLINK);
	cr_assert_eq(d.mode, 0777);
	cr_assert_eq(d.uid, 1000);
	cr_assert_eq(d.gid, 100);
	cr_assert_eq(d.atime_ns, -5);
	cr_assert_eq(d.mtime_ns, 1234567890123456789);
	cr_assert_eq(d.tlen, 4);
	cr_assert_eq(memcmp(d.target, "../x", 4), 0);
}

Test(fsmeta, bad_records_are_rejected)
{
	struct meta_rec r, d;
	char buf[META_BUF];
	int n;

	meta_init(&r, META_FILE, 0644, 0, 0, 0);
	n = meta_encode(&r, buf);
	cr_assert_eq(meta_decode(buf, (size_t)n - 1, &d), -EIO);
	buf[0] = 2;
	cr_assert_eq(meta_decode(buf, (size_t)n, &d), -EIO);
	buf[0] = META_VERSION;
	buf[1] = 9;
	cr_assert_eq(meta_decode(buf, (size_t)n, &d), -EIO);
	buf[1] = META_FILE;
	buf[2] = 3; /* a target on a regular file */
	cr_assert_eq(meta_decode(buf, (size_t)n + 3, &d), -EIO);
}

Test(fsmeta, decide_directory_wins_over_file_key)
{
	struct meta_defaults def = {1, 2, 3};
	struct meta_probe p;
	struct stat st;

	memset(&p, 0, sizeof(p));
	p.data_file = 1;
	p.data.size = 10;
	p.below = 1;
	cr_assert_eq(meta_decide(&p, &def, &st), META_DIR);
	cr_assert(S_ISDIR(st.st_mode));
	p.below = 0;
	cr_assert_eq(meta_decide(&p, &def, &st), META_FILE);
	cr_assert_eq(st.st_mode, S_IFREG | 0644);
	cr_assert_eq(st.st_size, 10);
	cr_assert_eq(st.st_uid, 1);
	p.data_file = 0;
	cr_assert_eq(meta_decide(&p, &def, &st), -ENOENT);
}

Test(fsmeta, decide_api_write_after_record_shows_its_time)
{
	struct meta_defaults def = {0, 0, 0};
	struct meta_probe p;
	struct stat st;

	memset(&p, 0, sizeof(p));
	p.has_meta = 1;
	meta_init(&p.meta, META_FILE, 0600, 0, 0, 1000000000);
	p.meta_seq = 5;
	p.data_file = 1;
	p.data.seq = 4;
	p.data.mtime_ns = 7000000000;
	cr_assert_eq(meta_decide(&p, &def, &st), META_FILE);
	cr_assert_eq(st.st_mtim.tv_sec, 1);
	p.data.seq = 6;
	meta_decide(&p, &def, &st);
	cr_assert_eq(st.st_mtim.tv_sec, 7);
	cr_assert_eq(st.st_mode, S_IFREG | 0600);
}

/* reference model: the content as a plain array */
static void model_apply(char *m, uint64_t *size, uint64_t off, const char *b, size_t len)
{
	memcpy(m + off, b, len);
	if (off + len > *size)
		*size = off + len;
}

Test(fswbuf, random_writes_and_truncates_match_a_model)
{
	enum { CAP = 4096 };
	unsigned seed = 77;
	char base[CAP], model[CAP], got[CAP], data[512];

	srand(seed);
	for (int round = 0; round < 200; round++) {
		uint64_t msize = (uint64_t)(rand() % 1024);
		struct wbuf w;

		for (int i = 0; i < CAP; i++)
			base[i] = (char)('a' + rand() % 26);
		memset(model, 0, sizeof(model));
		memcpy(model, base, msize);
		wbuf_init(&w, msize);
		for (int op = 0; op < 20; op++) {
			if (rand() % 6 == 0) {
				uint64_t ns = (uint64_t)(rand() % 2048);

				wbuf_truncate(&w, ns);
				if (ns < msize)
					memset(model + ns, 0, msize - ns);
				msize = ns;
				continue;
			}
			uint64_t off = (uint64_t)(rand() % 2048);
			size_t len = (size_t)(1 + rand() % 300);

			for (size_t i = 0; i < len; i++)
				data[i] = (char)('A' + rand() % 26);
			cr_assert_eq(wbuf_write(&w, off, data, len), 0);
			model_apply(model, &msize, off, data, len);
		}
		cr_assert_eq(w.size, msize, "seed %u round %d", seed, round);
		/* the content rule of wbuf.h: extent, else base below keep, else zero */
		memset(got, 0, sizeof(got));
		memcpy(got, base, w.keep);
		wbuf_overlay(&w, 0, got, (size_t)w.size);
		cr_assert_eq(memcmp(got, model, (size_t)msize), 0, "seed %u round %d", seed, round);
		for (size_t i = 1; i < w.n; i++)
			cr_assert_gt(w.ext[i].off, w.ext[i - 1].off + w.ext[i - 1].len,
			             "extents overlap or touch");
		wbuf_free(&w);
	}
}

Test(fswbuf, sequential_writes_keep_one_extent)
{
	struct wbuf w;
	char chunk[100];

	memset(chunk, 'z', sizeof(chunk));
	wbuf_init(&w, 0);
	for (int i = 0; i < 50; i++)
		cr_assert_eq(wbuf_write(&w, (uint64_t)i * 100, chunk, sizeof(chunk)), 0);
	cr_assert_eq(w.n, 1);
	cr_assert_eq(w.bytes, 5000);
	wbuf_reset(&w);
	cr_assert_eq(w.n, 0);
	cr_assert_eq(w.keep, 5000);
	cr_assert_not(w.dirty);
	wbuf_free(&w);
}
