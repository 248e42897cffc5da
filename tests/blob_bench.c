/*
 * blob_bench.c - sequential throughput of one large value: streams SIZE MiB
 * (default 1024) into a key with cairn_stream_* and commits it with
 * CAIRN_SYNC, then (after the caller drops the page cache, when asked to
 * pause) reads it back with 1 MiB cairn_get_range calls. Compare with
 *   dd if=/dev/zero of=X bs=1M count=1024 conv=fsync
 *   dd if=X of=/dev/null bs=1M
 * on the same disk. Usage: blob_bench DIR [MiB] [--drop-caches]
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cairn.h"

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void drop_caches(void)
{
	FILE *f = fopen("/proc/sys/vm/drop_caches", "w");
	if (!f) {
		fprintf(stderr, "(cannot drop caches: reads may come from the page cache)\n");
		return;
	}
	fputs("3\n", f);
	fclose(f);
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "usage: %s DIR [MiB] [--drop-caches]\n", argv[0]);
		return 2;
	}
	uint64_t mib = argc > 2 ? strtoull(argv[2], NULL, 10) : 1024;
	int drop = argc > 3 && strcmp(argv[3], "--drop-caches") == 0;
	const size_t piece = 1u << 20;
	char *buf = malloc(piece);
	for (size_t i = 0; i < piece; i++)
		buf[i] = (char)(i * 131 + 7);
	struct cairn_options o;
	cairn_options_init(&o);
	struct cairn_db *db;
	char err[512];
	int r = cairn_open(argv[1], &o, &db, err, sizeof(err));
	if (r) {
		fprintf(stderr, "open: %s\n", err);
		return 1;
	}
	struct cairn_stream *s;
	double t0 = now_s();
	r = cairn_stream_new(db, "bench", 5, &s);
	for (uint64_t i = 0; !r && i < mib; i++)
		r = cairn_stream_write(s, buf, piece);
	if (!r)
		r = cairn_stream_commit(s, CAIRN_SYNC);
	double tw = now_s() - t0;
	if (r) {
		cairn_errmsg(db, err, sizeof(err));
		fprintf(stderr, "write: %s\n", err);
		return 1;
	}
	if (drop)
		drop_caches();
	t0 = now_s();
	uint64_t off = 0;
	for (;;) {
		size_t got;
		r = cairn_get_range(db, NULL, "bench", 5, off, buf, piece, &got);
		if (r || got == 0)
			break;
		off += got;
	}
	double tr = now_s() - t0;
	if (r || off != mib * piece) {
		fprintf(stderr, "read: %s after %llu bytes\n", cairn_strerror(r),
		        (unsigned long long)off);
		return 1;
	}
	printf("write %llu MiB: %.2f s, %.0f MiB/s (stream + commit with sync)\n",
	       (unsigned long long)mib, tw, (double)mib / tw);
	printf("read  %llu MiB: %.2f s, %.0f MiB/s (1 MiB cairn_get_range)\n",
	       (unsigned long long)mib, tr, (double)mib / tr);
	cairn_close(db);
	free(buf);
	return 0;
}
