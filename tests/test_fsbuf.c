/*
 * test_fsbuf.c - the pure parts of cairnfs besides the path mapping: the
 * metadata record (fs/meta.c), the per-file write buffer (fs/wbuf.c) and
 * the pieces of large files (fs/extent.c).
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "../fs/bufpool.h"
#include "../fs/extent.h"
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

Test(fsmeta, extent_record_round_trips)
{
	struct meta_rec r, d;
	char buf[META_BUF];
	int n;

	meta_init(&r, META_FILE, 0640, 7, 8, 99);
	r.ext_id = 0x0102030405060708ull;
	r.size = (uint64_t)5 << 40;
	n = meta_encode(&r, buf);
	cr_assert_eq(n, META_EXT_LEN);
	cr_assert_eq(buf[0], META_VERSION_EXT);
	cr_assert_eq(meta_decode(buf, (size_t)n, &d), 0);
	cr_assert_eq(d.type, META_FILE);
	cr_assert_eq(d.mode, 0640);
	cr_assert_eq(d.ext_id, r.ext_id);
	cr_assert_eq(d.size, r.size);
	cr_assert_eq(meta_decode(buf, (size_t)n - 1, &d), -EIO, "short record");
	buf[1] = META_DIR;
	cr_assert_eq(meta_decode(buf, (size_t)n, &d), -EIO, "version 2 is for files only");
	buf[1] = META_FILE;
	memset(buf + 48, 0, 8);
	cr_assert_eq(meta_decode(buf, (size_t)n, &d), -EIO, "id 0 is not an extent file");
	/* a version 1 record decodes with no extents */
	r.ext_id = 0;
	n = meta_encode(&r, buf);
	cr_assert_eq(n, META_FIXED);
	cr_assert_eq(meta_decode(buf, (size_t)n, &d), 0);
	cr_assert_eq(d.ext_id, 0);
}

Test(fsmeta, decide_extent_record_is_a_file_without_its_key)
{
	struct meta_defaults def = {1, 2, 3};
	struct meta_probe p;
	struct stat st;

	memset(&p, 0, sizeof(p));
	p.has_meta = 1;
	meta_init(&p.meta, META_FILE, 0600, 5, 6, 1000);
	p.meta.ext_id = 3;
	p.meta.size = 123456789;
	p.below = 1; /* an API key under PATH/ does not turn it into a directory */
	cr_assert_eq(meta_decide(&p, &def, &st), META_FILE);
	cr_assert_eq(st.st_size, 123456789);
	cr_assert_eq(st.st_mode, S_IFREG | 0600);
	cr_assert_eq(st.st_uid, 5);
	/* without extents a record alone is no file */
	p.meta.ext_id = 0;
	cr_assert_eq(meta_decide(&p, &def, &st), META_DIR);
}

Test(fsextent, keys_sort_by_id_then_piece)
{
	char a[EXT_KEY_LEN], b[EXT_KEY_LEN];
	uint64_t id, idx;

	ext_key(1, 0xffff, a);
	ext_key(2, 0, b);
	cr_assert_lt(memcmp(a, b, EXT_KEY_LEN), 0);
	ext_key(2, 1, a);
	cr_assert_lt(memcmp(b, a, EXT_KEY_LEN), 0);
	cr_assert_eq(ext_key_decode(a, EXT_KEY_LEN, &id, &idx), 0);
	cr_assert_eq(id, 2);
	cr_assert_eq(idx, 1);
	cr_assert_eq(ext_key_decode(a, EXT_KEY_LEN - 1, &id, &idx), -1);
	a[1] = 'm';
	cr_assert_eq(ext_key_decode(a, EXT_KEY_LEN, &id, &idx), -1);
	cr_assert_eq(ext_count(0), 0);
	cr_assert_eq(ext_count(1), 1);
	cr_assert_eq(ext_count(EXT_SIZE), 1);
	cr_assert_eq(ext_count(EXT_SIZE + 1), 2);
	cr_assert_eq(ext_len(EXT_SIZE + 1, 1), 1);
	cr_assert_eq(ext_len(EXT_SIZE + 1, 2), 0);
}

/* A file stored as pieces, committed the way cairnfs commits (only the
 * pieces ext_each_dirty names are rewritten, pieces past the end deleted),
 * must always read back as a plain model of the file. */
enum { XCAP = 12 * 65536, XPIECES = XCAP / 65536 + 1 };

struct xstore {
	char *piece[XPIECES];
	size_t plen[XPIECES];
	uint64_t size;
	const struct wbuf *w;
	int visited;
	uint64_t last;
	uint64_t calls;
};

static void xstore_read(const struct xstore *s, uint64_t off, char *buf, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		uint64_t b = off + i, idx = b / EXT_SIZE;

		buf[i] = s->piece[idx] && b % EXT_SIZE < s->plen[idx] ? s->piece[idx][b % EXT_SIZE]
		                                                      : 0;
	}
}

static int xstore_rewrite(void *ctx, uint64_t idx)
{
	struct xstore *s = ctx;
	size_t len = ext_len(s->w->size, idx);
	char *p = malloc(len ? len : 1);

	cr_assert(len > 0, "piece %llu is past the end", (unsigned long long)idx);
	cr_assert(!s->visited || idx > s->last, "pieces not ascending");
	s->visited = 1;
	s->last = idx;
	s->calls++;
	/* the content rule of wbuf.h over the committed pieces */
	memset(p, 0, len);
	if (idx * EXT_SIZE < s->w->keep) {
		uint64_t n = s->w->keep - idx * EXT_SIZE;

		xstore_read(s, idx * EXT_SIZE, p, n < len ? (size_t)n : len);
	}
	wbuf_overlay(s->w, idx * EXT_SIZE, p, len);
	free(s->piece[idx]);
	s->piece[idx] = p;
	s->plen[idx] = len;
	return 0;
}

Test(fsextent, committing_dirty_pieces_matches_a_model)
{
	unsigned seed = 4242;
	static char model[XCAP], got[XCAP], data[3 * 65536];
	struct xstore s;
	uint64_t msize = 0;

	memset(&s, 0, sizeof(s));
	srand(seed);
	for (int round = 0; round < 150; round++) {
		struct wbuf w;
		int ops = 1 + rand() % 6;

		wbuf_init(&w, s.size);
		for (int op = 0; op < ops; op++) {
			int kind = rand() % 8;

			if (kind == 0) {
				uint64_t ns = (uint64_t)(rand() % (XCAP - sizeof(data)));

				wbuf_truncate(&w, ns);
				if (ns < msize)
					memset(model + ns, 0, msize - ns);
				msize = ns;
				continue;
			}
			/* mostly small random writes, sometimes long sequential ones */
			size_t len = kind == 1 ? sizeof(data) : (size_t)(1 + rand() % 5000);
			uint64_t off = (uint64_t)(rand() % (XCAP - sizeof(data)));

			for (size_t i = 0; i < len; i++)
				data[i] = (char)('A' + rand() % 26);
			cr_assert_eq(wbuf_write(&w, off, data, len), 0);
			model_apply(model, &msize, off, data, len);
		}
		s.w = &w;
		s.visited = 0;
		s.calls = 0;
		uint64_t cost = ext_dirty_count(&w, s.size);

		cr_assert_eq(ext_each_dirty(&w, s.size, xstore_rewrite, &s), 0);
		cr_assert_eq(cost, s.calls, "seed %u round %d: the count is the pieces visited",
		             seed, round);
		cr_assert_leq(cost, ext_count(w.size), "seed %u round %d", seed, round);
		for (uint64_t i = ext_count(w.size); i < XPIECES; i++) {
			free(s.piece[i]);
			s.piece[i] = NULL;
			s.plen[i] = 0;
		}
		s.size = w.size;
		cr_assert_eq(s.size, msize, "seed %u round %d", seed, round);
		xstore_read(&s, 0, got, (size_t)msize);
		cr_assert_eq(memcmp(got, model, (size_t)msize), 0, "seed %u round %d", seed, round);
		for (uint64_t i = 0; i < XPIECES; i++)
			cr_assert_leq(s.plen[i], ext_len(s.size, i),
			              "piece holds bytes past the end");
		wbuf_free(&w);
	}
	for (uint64_t i = 0; i < XPIECES; i++)
		free(s.piece[i]);
}

Test(fsextent, a_small_write_into_a_large_file_costs_one_piece)
{
	struct wbuf w;
	char c = 'x';

	wbuf_init(&w, (uint64_t)1 << 40);
	cr_assert_eq(wbuf_write(&w, (uint64_t)1 << 39, &c, 1), 0);
	cr_assert_eq(ext_dirty_count(&w, (uint64_t)1 << 40), 1);
	/* a shrink cuts one piece and rewrites only it */
	wbuf_reset(&w);
	wbuf_truncate(&w, 3 * EXT_SIZE + 10);
	cr_assert_eq(ext_dirty_count(&w, (uint64_t)1 << 40), 1);
	wbuf_free(&w);
}

Test(fswbuf, covering_finds_bytes_held_by_one_extent)
{
	struct wbuf w;
	char a[100], b[50];

	memset(a, 'a', sizeof(a));
	memset(b, 'b', sizeof(b));
	wbuf_init(&w, 0);
	cr_assert_eq(wbuf_write(&w, 1000, a, sizeof(a)), 0);
	cr_assert_eq(wbuf_write(&w, 5000, b, sizeof(b)), 0);
	cr_assert_eq(wbuf_covering(&w, 1000, 100), w.ext[0].data);
	cr_assert_eq(wbuf_covering(&w, 1010, 10), w.ext[0].data + 10);
	cr_assert_null(wbuf_covering(&w, 999, 10), "starts before the extent");
	cr_assert_null(wbuf_covering(&w, 1050, 51), "ends past the extent");
	cr_assert_null(wbuf_covering(&w, 2000, 1), "in the gap");
	cr_assert_eq(wbuf_covering(&w, 5049, 1)[0], 'b');
	cr_assert_null(wbuf_covering(&w, 10, 1), "before every extent");
	wbuf_free(&w);
}

Test(fswbuf, appends_grow_the_allocation_by_doubling)
{
	struct wbuf w;
	char c[4096];
	size_t reallocs = 0, cap = 0;

	memset(c, 'x', sizeof(c));
	wbuf_init(&w, 0);
	for (int i = 0; i < 1024; i++) {
		cr_assert_eq(wbuf_write(&w, (uint64_t)i * sizeof(c), c, sizeof(c)), 0);
		if (w.ext[0].cap != cap)
			reallocs++, cap = w.ext[0].cap;
	}
	cr_assert_eq(w.n, 1);
	cr_assert_eq(w.ext[0].len, 1024 * sizeof(c));
	cr_assert_leq(reallocs, 11, "%zu reallocs for 1024 appends", reallocs);
	/* a truncate keeps the allocation; writing again past it still works */
	wbuf_truncate(&w, 100);
	cr_assert_eq(wbuf_write(&w, 100, c, sizeof(c)), 0);
	cr_assert_eq(w.ext[0].len, 100 + sizeof(c));
	cr_assert_eq(w.bytes, 100 + sizeof(c));
	wbuf_free(&w);
}

Test(fswbuf, a_borrowed_buffer_reads_like_a_written_one_and_is_not_freed)
{
	struct wbuf w, ref;
	struct wbuf_ext slot;
	char *data = malloc(300), got[1000], want[1000];

	memset(data, 'q', 300);
	wbuf_borrow(&w, 500, &slot, 400, data, 300);
	wbuf_init(&ref, 500);
	cr_assert_eq(wbuf_write(&ref, 400, data, 300), 0);
	cr_assert_eq(w.size, 700);
	cr_assert_eq(w.size, ref.size);
	cr_assert_eq(w.keep, ref.keep);
	cr_assert(w.dirty);
	memset(got, 0, sizeof(got));
	memset(want, 0, sizeof(want));
	wbuf_overlay(&w, 0, got, sizeof(got));
	wbuf_overlay(&ref, 0, want, sizeof(want));
	cr_assert_eq(memcmp(got, want, sizeof(got)), 0);
	cr_assert_eq(wbuf_covering(&w, 450, 100), data + 50);
	wbuf_reset(&w);
	wbuf_free(&w);
	cr_assert_eq(data[299], 'q', "the caller's memory is left alone");
	/* an empty write does not grow the file, as with wbuf_write */
	wbuf_borrow(&w, 10, &slot, 100, data, 0);
	cr_assert_eq(w.size, 10);
	wbuf_free(&w);
	wbuf_free(&ref);
	free(data);
}

Test(fsmeta, numbered_record_round_trips)
{
	struct meta_rec r, d;
	char buf[META_BUF];
	int n;

	meta_init(&r, META_SYMLINK, 0777, 1, 2, 3);
	r.ino = 0x1122334455667788ull;
	r.target = "a/b";
	r.tlen = 3;
	n = meta_encode(&r, buf);
	cr_assert_eq(n, META_INO_FIXED + 3);
	cr_assert_eq(buf[0], META_VERSION_INO);
	cr_assert_eq(meta_decode(buf, (size_t)n, &d), 0);
	cr_assert_eq(d.ino, r.ino);
	cr_assert_eq(d.tlen, 3);
	cr_assert_eq(memcmp(d.target, "a/b", 3), 0);

	meta_init(&r, META_FILE, 0600, 1, 2, 3);
	r.ino = 42;
	r.ext_id = 7;
	r.size = 1 << 30;
	n = meta_encode(&r, buf);
	cr_assert_eq(n, META_INO_FIXED);
	cr_assert_eq(meta_decode(buf, (size_t)n, &d), 0);
	cr_assert_eq(d.ino, 42);
	cr_assert_eq(d.ext_id, 7);
	cr_assert_eq(d.size, 1 << 30);

	meta_init(&r, META_CHR, 0620, 0, 5, 3);
	r.ino = 43;
	r.rdev = 0x0103;
	n = meta_encode(&r, buf);
	cr_assert_eq(meta_decode(buf, (size_t)n, &d), 0);
	cr_assert_eq(d.type, META_CHR);
	cr_assert_eq(d.rdev, 0x0103);
}

Test(fsmeta, bad_numbered_records_are_rejected)
{
	struct meta_rec r, d;
	char buf[META_BUF];
	int n;

	meta_init(&r, META_FIFO, 0644, 0, 0, 0);
	r.ino = 9;
	n = meta_encode(&r, buf);
	cr_assert_eq(meta_decode(buf, (size_t)n, &d), 0);
	cr_assert_eq(meta_decode(buf, (size_t)n - 1, &d), -EIO, "short");
	buf[64] = 1;
	cr_assert_eq(meta_decode(buf, (size_t)n, &d), -EIO, "a device number on a FIFO");
	buf[64] = 0;
	buf[76] = 1;
	cr_assert_eq(meta_decode(buf, (size_t)n, &d), -EIO, "reserved bytes set");
	buf[76] = 0;
	memset(buf + 40, 0, 8);
	cr_assert_eq(meta_decode(buf, (size_t)n, &d), -EIO, "inode number 0");
	buf[40] = 9;
	buf[56] = 1;
	cr_assert_eq(meta_decode(buf, (size_t)n, &d), -EIO, "an extent id on a FIFO");
	/* special types exist only from version 3 on */
	meta_init(&r, META_FILE, 0644, 0, 0, 0);
	n = meta_encode(&r, buf);
	buf[1] = META_FIFO;
	cr_assert_eq(meta_decode(buf, (size_t)n, &d), -EIO, "a FIFO in version 1");
}

Test(fsmeta, decide_special_files)
{
	struct meta_defaults def = {1, 2, 3};
	struct meta_probe p;
	struct stat st;

	memset(&p, 0, sizeof(p));
	p.has_meta = 1;
	meta_init(&p.meta, META_BLK, 0660, 0, 6, 0);
	p.meta.rdev = 0x0800;
	cr_assert_eq(meta_decide(&p, &def, &st), META_BLK);
	cr_assert(S_ISBLK(st.st_mode));
	cr_assert_eq(st.st_rdev, 0x0800);
	p.meta.type = META_SOCK;
	cr_assert_eq(meta_decide(&p, &def, &st), META_SOCK);
	cr_assert(S_ISSOCK(st.st_mode));
	p.meta.type = META_FIFO;
	cr_assert_eq(meta_decide(&p, &def, &st), META_FIFO);
	cr_assert(S_ISFIFO(st.st_mode));
}

Test(fsmeta, link_records)
{
	struct meta_defaults def = {1, 2, 3};
	struct meta_probe p;
	struct meta_rec r, d;
	struct stat st;
	char buf[META_BUF];
	int n;

	meta_init(&r, META_LINKED, 0, 0, 0, 0);
	r.ino = 77;
	n = meta_encode(&r, buf);
	cr_assert_eq(meta_decode(buf, (size_t)n, &d), 0);
	cr_assert_eq(d.type, META_LINKED);
	cr_assert_eq(d.ino, 77);
	/* a name whose file was not found makes nothing by itself */
	memset(&p, 0, sizeof(p));
	p.has_meta = 1;
	p.meta = d;
	cr_assert_eq(meta_decide(&p, &def, &st), -ENOENT);
	/* the file's own record carries the count */
	meta_init(&r, META_FILE, 0644, 0, 0, 0);
	r.ino = 77;
	r.nlink = 3;
	n = meta_encode(&r, buf);
	cr_assert_eq(meta_decode(buf, (size_t)n, &d), 0);
	cr_assert_eq(d.nlink, 3);
	p.meta = d;
	p.data_file = 1;
	cr_assert_eq(meta_decide(&p, &def, &st), META_FILE);
	cr_assert_eq(st.st_nlink, 3);
}

/* ---- request buffers (fs/bufpool.c) ------------------------------------- */

Test(bufpool, small_buffers_are_counted_while_out)
{
	struct bufpool p;
	struct bufpool_figures f;
	char *a;

	bufpool_init(&p, 1u << 20);
	a = bufpool_get(&p, 100);
	cr_assert_not_null(a);
	memset(a, 1, 100);
	bufpool_figures(&p, &f);
	cr_assert_eq(f.in_use, 100);
	cr_assert_eq(f.maps, 0);
	bufpool_put(&p, a);
	bufpool_figures(&p, &f);
	cr_assert_eq(f.in_use, 0);
	cr_assert_eq(f.cached, 0, "small buffers go back to malloc");
	bufpool_destroy(&p);
}

Test(bufpool, large_buffers_are_kept_within_the_bound_and_reused)
{
	struct bufpool p;
	struct bufpool_figures f;
	char *b[8];

	bufpool_init(&p, 1u << 20);
	for (int i = 0; i < 8; i++) {
		b[i] = bufpool_get(&p, 200000);
		cr_assert_not_null(b[i]);
		memset(b[i], i, 200000);
	}
	bufpool_figures(&p, &f);
	cr_assert_eq(f.maps, 8);
	cr_assert_geq(f.in_use, 8 * 200000);
	for (int i = 0; i < 8; i++)
		bufpool_put(&p, b[i]);
	bufpool_figures(&p, &f);
	cr_assert_eq(f.in_use, 0);
	cr_assert_gt(f.cached, 0);
	cr_assert_leq(f.cached, 1u << 20, "kept %zu bytes, bound 1 MiB", f.cached);
	b[0] = bufpool_get(&p, 150000); /* same class: served from the kept ones */
	bufpool_figures(&p, &f);
	cr_assert_eq(f.reuses, 1);
	cr_assert_eq(f.maps, 8);
	bufpool_put(&p, b[0]);
	bufpool_destroy(&p);
}

Test(bufpool, nothing_is_kept_with_a_zero_bound_or_above_the_classes)
{
	struct bufpool p;
	struct bufpool_figures f;
	char *a, *big;

	bufpool_init(&p, 0);
	a = bufpool_get(&p, 64 << 10);
	bufpool_put(&p, a);
	bufpool_figures(&p, &f);
	cr_assert_eq(f.cached, 0);
	bufpool_destroy(&p);

	bufpool_init(&p, 64u << 20);
	big = bufpool_get(&p, 3u << 20); /* larger than any class: never kept */
	cr_assert_not_null(big);
	memset(big, 7, 3u << 20);
	bufpool_put(&p, big);
	bufpool_figures(&p, &f);
	cr_assert_eq(f.cached, 0);
	cr_assert_eq(f.in_use, 0);
	bufpool_destroy(&p);
}
