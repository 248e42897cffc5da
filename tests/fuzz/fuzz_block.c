/*
 * fuzz_block.c - one table block on arbitrary bytes: block_fuzz_one parses
 * it, walks it both ways and seeks to its own keys; it must return an error
 * for a bad block, never read outside the input.
 */
#include <string.h>

#include "block.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	/* a private copy of exactly size bytes, so a read past the end is caught
	 * even where libFuzzer's buffer has slack */
	uint8_t *copy = malloc(size ? size : 1);
	if (!copy)
		return 0;
	memcpy(copy, data, size);
	block_fuzz_one(copy, size);
	free(copy);
	return 0;
}
