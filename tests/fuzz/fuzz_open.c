/*
 * fuzz_open.c - a whole database directory image on arbitrary bytes.
 *
 * Input format: up to MAX_PARTS parts separated by the 8 bytes SEP; each
 * part is a file name (1-40 bytes of [A-Za-z0-9.-]), a NUL, and the file's
 * contents. A real image (CURRENT, MANIFEST-N, N.log, N.sst) is the seed, so
 * mutations hit one file at a time while the others stay valid. The target
 * opens the database (both WAL recovery modes), walks it both ways, reads a
 * few keys, writes one and closes: whatever the files hold, that must end in
 * data or a clean error.
 */
#include <string.h>

#include "fuzz.h"

#define SEP       "\n--cairn--\n"
#define SEP_LEN   (sizeof(SEP) - 1)
#define MAX_PARTS 8
#define MAX_NAME  40
#define MAX_STEPS 20000

static int name_ok(const uint8_t *p, size_t n)
{
	if (n == 0 || n > MAX_NAME || (n <= 2 && p[0] == '.'))
		return 0;
	for (size_t i = 0; i < n; i++) {
		uint8_t c = p[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '.' || c == '-' || c == '_'))
			return 0;
	}
	return 1;
}

static void add_part(struct cairn_env *env, const uint8_t *p, size_t n)
{
	const uint8_t *nul = memchr(p, 0, n < MAX_NAME + 1 ? n : MAX_NAME + 1);
	char path[64];
	if (!nul || !name_ok(p, (size_t)(nul - p)))
		return;
	memcpy(path, "/db/", 4);
	memcpy(path + 4, p, (size_t)(nul - p));
	path[4 + (nul - p)] = 0;
	env_sim_write_file(env, path, nul + 1, n - (size_t)(nul + 1 - p));
}

static const uint8_t *find_sep(const uint8_t *p, size_t n)
{
	for (size_t i = 0; i + SEP_LEN <= n; i++)
		if (p[i] == SEP[0] && memcmp(p + i, SEP, SEP_LEN) == 0)
			return p + i;
	return NULL;
}

static void exercise(struct cairn_db *db)
{
	struct cairn_iter *it;
	if (cairn_iter_new(db, NULL, &it) == 0) {
		int steps = 0;
		for (cairn_iter_seek_first(it); cairn_iter_valid(it) && steps < MAX_STEPS;
		     cairn_iter_next(it), steps++) {
			size_t kl, vl;
			cairn_iter_key(it, &kl);
			cairn_iter_value(it, &vl);
		}
		steps = 0;
		for (cairn_iter_seek_last(it); cairn_iter_valid(it) && steps < MAX_STEPS;
		     cairn_iter_prev(it), steps++)
			;
		cairn_iter_seek(it, "key", 3);
		(void)cairn_iter_status(it);
		cairn_iter_free(it);
	}
	static const char *const keys[] = {"", "a", "key000007", "key000700", "zz"};
	for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
		void *v;
		size_t vl;
		if (cairn_get(db, NULL, keys[i], strlen(keys[i]), &v, &vl) == 0)
			cairn_free(v);
	}
	if (cairn_put(db, "fuzz", 4, "x", 1, CAIRN_SYNC) == 0)
		cairn_flush(db);
}

static void try_open(const uint8_t *data, size_t size, int recovery)
{
	struct cairn_env *env = fuzz_env();
	struct cairn_options o;
	struct cairn_db *db;
	char err[256];

	if (!env)
		return;
	for (int i = 0; i < MAX_PARTS && size; i++) {
		const uint8_t *s = find_sep(data, size);
		size_t n = s ? (size_t)(s - data) : size;
		add_part(env, data, n);
		if (!s)
			break;
		size -= n + SEP_LEN;
		data = s + SEP_LEN;
	}
	fuzz_options(&o, env);
	o.wal_recovery = recovery;
	if (cairn_open("/db", &o, &db, err, sizeof(err)) == 0) {
		exercise(db);
		cairn_close(db);
	}
	env_sim_free(env);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	try_open(data, size, CAIRN_WAL_STRICT);
	try_open(data, size, CAIRN_WAL_TOLERATE_CORRUPT);
	return 0;
}
