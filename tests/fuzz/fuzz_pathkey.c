/*
 * fuzz_pathkey.c - the path <-> key mapping of cairnfs (fs/pathkey.c) on
 * arbitrary bytes. The input is split at its first 0xff byte into a "key"
 * and a "name"; every function runs on them, and the invariants the daemon
 * relies on are checked (a failed check aborts, which libFuzzer reports):
 * lengths stay inside the buffers, built keys start with what they claim,
 * a child's subtree bound sorts after the child and its subtree, and a key
 * that passes pk_key_is_path splits into names that pass pk_name_check.
 */
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "pathkey.h"

#define CHECK(cond)                                                                                \
	do {                                                                                       \
		if (!(cond))                                                                       \
			abort();                                                                   \
	} while (0)

static int keycmp(const char *a, size_t al, const char *b, size_t bl)
{
	size_t n = al < bl ? al : bl;
	int r = n ? memcmp(a, b, n) : 0;
	return r ? r : (al < bl ? -1 : al > bl);
}

static void check_path(const char *p, size_t n)
{
	if (!pk_key_is_path(p, n))
		return;
	/* every component is a valid name, and the path rebuilds by joins */
	char built[PK_KEY_BUF];
	size_t blen = 0;
	for (size_t i = 0; i <= n;) {
		size_t j = i;
		while (j < n && p[j] != '/')
			j++;
		CHECK(pk_name_check(p + i, j - i) == 0);
		size_t out;
		char tmp[PK_KEY_BUF];
		CHECK(pk_join(built, blen, p + i, j - i, tmp, sizeof(tmp), &out) == 0);
		memcpy(built, tmp, out);
		blen = out;
		i = j + 1;
	}
	CHECK(blen == n && memcmp(built, p, n) == 0);
	size_t plen = pk_parent_len(p, n);
	CHECK(plen < n);
	CHECK(pk_in_subtree(p, plen, p, n) || plen == 0);
	size_t base;
	const char *b = pk_base(p, n, &base);
	CHECK(b >= p && b + base == p + n && pk_name_check(b, base) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *in = (const char *)data;
	size_t split = size;
	for (size_t i = 0; i < size; i++)
		if (data[i] == 0xff) {
			split = i;
			break;
		}
	const char *key = in, *name = in + (split < size ? split + 1 : size);
	size_t klen = split, nlen = split < size ? size - split - 1 : 0;
	if (klen > CAIRN_MAX_KEY_SIZE || nlen > CAIRN_MAX_KEY_SIZE)
		return 0;

	pk_name_check(name, nlen);
	check_path(key, klen);

	char out[PK_KEY_BUF];
	int n = pk_sys_key(PK_TAG_META, key, klen, out);
	if (n >= 0 && pk_is_pseudo(key, klen)) {
		/* an orphan's or a linked file's pseudo-path takes the tag after it */
		CHECK((size_t)n == klen + 1 && !memcmp(out, key, klen) && out[klen] == PK_TAG_META);
	} else if (n >= 0) {
		CHECK((size_t)n == klen + 2 && (size_t)n <= CAIRN_MAX_KEY_SIZE);
		CHECK(out[0] == 0 && out[1] == PK_TAG_META &&
		      pk_has_prefix(out, (size_t)n, key, 0));
	}
	n = pk_xattr_key(key, klen, name, nlen, out);
	if (n >= 0) {
		char pfx[PK_KEY_BUF];
		int pn = pk_xattr_key(key, klen, NULL, 0, pfx);
		CHECK(pn >= 0 && pk_has_prefix(out, (size_t)n, pfx, (size_t)pn));
		CHECK((size_t)n <= CAIRN_MAX_KEY_SIZE);
	}
	if (pk_key_is_path(key, klen)) {
		size_t dl = pk_dir_prefix(key, klen, out);
		CHECK(dl == klen + 1 && out[klen] == '/');
		/* a child key below this directory */
		char child[PK_KEY_BUF];
		if (dl + nlen <= CAIRN_MAX_KEY_SIZE) {
			memcpy(child, out, dl);
			memcpy(child + dl, name, nlen);
			size_t cl;
			int deeper;
			/* only keys cairnfs shows as files: others are hidden by
			 * pk_name_check before their children are looked at */
			if (pk_key_is_path(child, dl + nlen) &&
			    pk_child(child, dl + nlen, dl, &cl, &deeper) == 0) {
				CHECK(cl <= nlen && cl > 0);
				char end[PK_KEY_BUF];
				int el = pk_subtree_end(child, dl + cl, end);
				if (el >= 0) {
					/* the bound sorts after the child and all below it */
					CHECK(keycmp(end, (size_t)el, child, dl + nlen) > 0 ||
					      !deeper);
					CHECK(keycmp(end, (size_t)el, child, dl + cl) > 0);
				}
			}
		}
	}
	return 0;
}
