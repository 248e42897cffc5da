/*
 * fuzz.h - helpers shared by the libFuzzer targets in tests/fuzz/: a fresh
 * simulated env per input (so no state leaks from one input to the next)
 * and the small options the engine targets open databases with.
 *
 * Every target follows libFuzzer's contract: LLVMFuzzerTestOneInput returns
 * 0 whatever the input, and any crash, leak, out-of-bounds access or
 * undefined behaviour (built with -fsanitize=fuzzer,address,undefined) is a
 * bug of the engine. Built by scripts/fuzz, not by the main build.
 */
#ifndef CAIRN_FUZZ_H
#define CAIRN_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "cairn.h"
#include "env.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* A simulated env holding the directory /db, or NULL (out of memory). */
static inline struct cairn_env *fuzz_env(void)
{
	struct cairn_env *env;
	if (env_sim_new(1, 1700000000000000000LL, &env))
		return NULL;
	if (env_mkdir(env, "/db") || env_sync_dir(env, "/")) {
		env_sim_free(env);
		return NULL;
	}
	return env;
}

/* Small limits, so a fuzz input of a few KiB reaches flushes and the caches'
 * eviction paths; no threads (the simulated env has none). */
static inline void fuzz_options(struct cairn_options *o, struct cairn_env *env)
{
	cairn_options_init(o);
	o->env = env;
	o->create_if_missing = 0;
	o->memtable_size = 256u << 10;
	o->block_cache_size = 32u << 10;
	o->max_open_tables = 8;
	o->block_size = 256;
	o->background_threads = 0;
	o->sync_interval_ms = 0;
}

#endif
