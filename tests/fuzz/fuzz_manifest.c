/*
 * fuzz_manifest.c - version edits and manifest recovery on arbitrary bytes:
 * the input is decoded as one edit, then stored as the manifest that CURRENT
 * names and recovered with vset_recover (which replays every record and
 * checks every edit against the version it applies to).
 */
#include <string.h>

#include "fuzz.h"
#include "version.h"

static void ignore_line(void *ctx, const char *line)
{
	(void)ctx;
	(void)line;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct version_edit e;
	struct version_set *vs;
	struct cairn_options o;
	char err[256];

	if (edit_decode(slice_make(data, size), &e, err, sizeof(err)) == 0)
		edit_dump(&e, ignore_line, NULL);
	edit_free(&e);

	struct cairn_env *env = fuzz_env();
	if (!env)
		return 0;
	fuzz_options(&o, env);
	static const char current[] = "MANIFEST-000001\n";
	if (env_sim_write_file(env, "/db/CURRENT", current, sizeof(current) - 1) == 0 &&
	    env_sim_write_file(env, "/db/MANIFEST-000001", data, size) == 0 &&
	    vset_new(env, "/db", &o, NULL, &vs) == 0) {
		if (vset_recover(vs, err, sizeof(err)) == 0) {
			uint64_t *nums = NULL;
			size_t n = 0;
			vset_live_files(vs, &nums, &n);
			free(nums);
			(void)vset_needs_compaction(vs);
		}
		vset_free(vs);
	}
	env_sim_free(env);
	return 0;
}
