/*
 * fuzz_blob.c - the blob reader on arbitrary bytes. The input becomes a blob
 * file on a fresh simulated env; blob_scan walks it with and without
 * checksum verification, and for every record it reports, blob_read reads
 * the value at its start, its end and a middle range through a reference
 * built from the record (and through one with a wrong checksum, which must
 * fail). Reference decoding runs on the first bytes of the input too. Every
 * length comes from the file, so any out-of-bounds access is a reader bug.
 */
#include <stdlib.h>
#include <string.h>

#include "blob.h"
#include "fuzz.h"

struct walk {
	struct blob_reader *rd;
	int records;
};

static int on_record(void *ctx, const struct blob_record *rec)
{
	struct walk *w = ctx;
	char buf[512], err[256];
	size_t got;
	struct blob_ref ref = {
	        .file = 1, .offset = rec->offset, .size = rec->size, .hcrc = rec->hcrc};
	uint64_t offs[3] = {0, rec->size / 2, rec->size > 100 ? rec->size - 100 : 0};
	for (int i = 0; i < 3; i++)
		blob_read(w->rd, &ref, rec->key, offs[i], buf, sizeof(buf), &got, err, sizeof(err));
	ref.hcrc ^= 1;
	if (blob_read(w->rd, &ref, rec->key, 0, buf, sizeof(buf), &got, err, sizeof(err)) == 0 &&
	    rec->size > 0)
		abort();          /* a reference with the wrong checksum must never read */
	return ++w->records > 64; /* bound the work per input */
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct blob_ref ref;
	blob_ref_decode(slice_make(data, size < 48 ? size : 48), &ref);

	struct cairn_env *env = fuzz_env();
	if (!env)
		return 0;
	if (env_sim_write_file(env, "/db/000001.blob", data, size) == 0) {
		struct blob_reader *rd;
		char err[256];
		if (blob_reader_open(env, "/db/000001.blob", &rd, err, sizeof(err)) == 0) {
			for (int verify = 0; verify < 2; verify++) {
				struct walk w = {rd, 0};
				uint64_t good;
				blob_scan(rd, UINT64_MAX, verify, on_record, &w, &good, err,
				          sizeof(err));
			}
			blob_reader_close(rd);
		}
	}
	env_sim_free(env);
	return 0;
}
