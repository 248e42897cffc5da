/*
 * fuzz_wal.c - the record-log reader on arbitrary bytes: the input is a log
 * file, read both as a write-ahead log and as a manifest (so either header
 * kind is reached); every record is then decoded as a write batch.
 * Whatever the bytes, the reader must end in a record, a clean EOF, a torn
 * tail or a clean error.
 */
#include <string.h>

#include "batch.h"
#include "fuzz.h"
#include "wal.h"

static int count_entry(void *ctx, uint64_t seq, enum value_type type, struct slice key,
                       struct slice value, int64_t time_ns)
{
	uint64_t *n = ctx;
	/* touch every byte so ASan sees a slice that points outside the record */
	for (size_t i = 0; i < key.len; i++)
		*n += (uint8_t)key.data[i];
	for (size_t i = 0; i < value.len; i++)
		*n += (uint8_t)value.data[i];
	*n += seq + (uint64_t)type + (uint64_t)time_ns;
	return 0;
}

static void read_all(struct cairn_env *env, enum wal_kind kind)
{
	struct wal_reader *r;
	struct slice rec;
	uint64_t sum = 0;
	char err[256];

	if (wal_reader_open(env, "/db/000001.log", kind, &r, err, sizeof(err)))
		return;
	while (wal_next(r, &rec, err, sizeof(err)) == WAL_RECORD)
		batch_iterate(rec, count_entry, &sum);
	(void)wal_good_offset(r);
	wal_reader_close(r);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct cairn_env *env = fuzz_env();
	static const enum wal_kind kinds[] = {WAL_KIND_LOG, WAL_KIND_MANIFEST};

	if (!env)
		return 0;
	if (env_sim_write_file(env, "/db/000001.log", data, size) == 0)
		for (int k = 0; k < 2; k++)
			read_all(env, kinds[k]);
	env_sim_free(env);
	return 0;
}
