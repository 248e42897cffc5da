/*
 * test_pathkey.c - the path <-> key mapping of cairnfs (fs/pathkey.c),
 * including a randomized check that listing by "seek past each child's
 * subtree" finds exactly the children a full scan finds.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../fs/pathkey.h"

Test(pathkey, name_check_rejects_empty_dots_slash_and_long)
{
	char longname[PK_NAME_MAX + 2];

	cr_assert_eq(pk_name_check("a", 1), 0);
	cr_assert_eq(pk_name_check("...", 3), 0);
	cr_assert_eq(pk_name_check("", 0), -EINVAL);
	cr_assert_eq(pk_name_check(".", 1), -EINVAL);
	cr_assert_eq(pk_name_check("..", 2), -EINVAL);
	cr_assert_eq(pk_name_check("a/b", 3), -EINVAL);
	cr_assert_eq(pk_name_check("a\0b", 3), -EINVAL);
	memset(longname, 'x', sizeof(longname));
	cr_assert_eq(pk_name_check(longname, PK_NAME_MAX), 0);
	cr_assert_eq(pk_name_check(longname, PK_NAME_MAX + 1), -ENAMETOOLONG);
}

Test(pathkey, key_is_path_follows_component_rules)
{
	cr_assert(pk_key_is_path("a", 1));
	cr_assert(pk_key_is_path("a/b/c", 5));
	cr_assert_not(pk_key_is_path("", 0));
	cr_assert_not(pk_key_is_path("/a", 2));
	cr_assert_not(pk_key_is_path("a/", 2));
	cr_assert_not(pk_key_is_path("a//b", 4));
	cr_assert_not(pk_key_is_path("a/./b", 5));
	cr_assert_not(pk_key_is_path("a/..", 4));
	cr_assert_not(pk_key_is_path("\0ma", 3));
}

Test(pathkey, join_handles_root_and_limits)
{
	char out[PK_KEY_BUF], big[PK_PATH_MAX + 1];
	size_t n;

	cr_assert_eq(pk_join("", 0, "a", 1, out, sizeof(out), &n), 0);
	cr_assert_str_eq(out, "a");
	cr_assert_eq(n, 1);
	cr_assert_eq(pk_join("a/b", 3, "c", 1, out, sizeof(out), &n), 0);
	cr_assert_str_eq(out, "a/b/c");
	memset(big, 'd', sizeof(big));
	cr_assert_eq(pk_join(big, PK_PATH_MAX - 2, "c", 1, out, sizeof(out), &n), 0);
	cr_assert_eq(n, PK_PATH_MAX);
	cr_assert_eq(pk_join(big, PK_PATH_MAX - 1, "c", 1, out, sizeof(out), &n), -ENAMETOOLONG);
	cr_assert_eq(pk_join("a", 1, "b", 1, out, 3, &n), -ENAMETOOLONG);
}

Test(pathkey, parent_and_base)
{
	size_t bl;
	const char *b;

	cr_assert_eq(pk_parent_len("a", 1), 0);
	cr_assert_eq(pk_parent_len("a/b/c", 5), 3);
	b = pk_base("a/b/cd", 6, &bl);
	cr_assert_eq(bl, 2);
	cr_assert_eq(memcmp(b, "cd", 2), 0);
	b = pk_base("x", 1, &bl);
	cr_assert_eq(bl, 1);
	cr_assert_eq(b[0], 'x');
}

Test(pathkey, in_subtree_needs_a_component_boundary)
{
	cr_assert(pk_in_subtree("a", 1, "a", 1));
	cr_assert(pk_in_subtree("a", 1, "a/b", 3));
	cr_assert_not(pk_in_subtree("a", 1, "ab", 2));
	cr_assert_not(pk_in_subtree("a/b", 3, "a", 1));
	cr_assert(pk_in_subtree("", 0, "anything", 8));
}

Test(pathkey, child_splits_name_and_depth)
{
	size_t nl;
	int deeper;

	cr_assert_eq(pk_child("d/x", 3, 2, &nl, &deeper), 0);
	cr_assert_eq(nl, 1);
	cr_assert_eq(deeper, 0);
	cr_assert_eq(pk_child("d/x/y/z", 7, 2, &nl, &deeper), 0);
	cr_assert_eq(nl, 1);
	cr_assert_eq(deeper, 1);
	cr_assert_eq(pk_child("d/", 2, 2, &nl, &deeper), -1);
}

Test(pathkey, subtree_end_skips_subtree_not_siblings)
{
	char out[PK_KEY_BUF];
	int n = pk_subtree_end("d/b", 3, out);

	cr_assert_eq(n, 4);
	cr_assert_eq(memcmp(out, "d/b0", 4), 0);
	/* "d/b/zzz" < "d/b0" but "d/b.txt" < "d/b/": siblings sort before the subtree */
	cr_assert_lt(memcmp("d/b/zzz", out, 4), 0);
	cr_assert_lt(memcmp("d/b.txt", "d/b/", 4), 0);
	cr_assert_gt(memcmp("d/c", out, 3), 0);
}

Test(pathkey, system_keys_have_the_documented_layout)
{
	char out[PK_KEY_BUF], big[CAIRN_MAX_KEY_SIZE];
	int n;

	n = pk_sys_key(PK_TAG_META, "a/b", 3, out);
	cr_assert_eq(n, 5);
	cr_assert_eq(memcmp(out, "\0ma/b", 5), 0);
	n = pk_xattr_key("a", 1, "user.x", 6, out);
	cr_assert_eq(n, 10);
	cr_assert_eq(memcmp(out, "\0xa\0user.x", 10), 0);
	n = pk_xattr_key("a", 1, NULL, 0, out);
	cr_assert_eq(n, 4);
	memset(big, 'p', sizeof(big));
	/* the keys of the longest path Linux takes (PATH_MAX - 1) fit, its
	 * longest attribute name too */
	cr_assert_eq(PK_PATH_MAX, 4095);
	cr_assert_eq(pk_sys_key(PK_TAG_META, big, PK_PATH_MAX, out), PK_PATH_MAX + 2);
	cr_assert_eq(pk_xattr_key(big, PK_PATH_MAX, big, PK_XATTR_NAME_MAX, out),
	             PK_PATH_MAX + 3 + PK_XATTR_NAME_MAX);
	cr_assert_eq(pk_sys_key(PK_TAG_META, big, CAIRN_MAX_KEY_SIZE - 2, out), CAIRN_MAX_KEY_SIZE);
	cr_assert_eq(pk_sys_key(PK_TAG_META, big, CAIRN_MAX_KEY_SIZE - 1, out), -ENAMETOOLONG);
	cr_assert_eq(pk_xattr_key("a", 1, big, PK_XATTR_NAME_MAX + 1, out), -ERANGE);
}

/* ---- randomized: seek-past-subtree listing equals a full scan ---------- */

#define NKEYS 400

static int key_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* first index with keys[i] >= k (keys sorted, NUL-free) */
static size_t lower_bound(char **keys, size_t n, const char *k, size_t kl)
{
	size_t lo = 0, hi = n;

	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		size_t ml = strlen(keys[mid]);
		int c = memcmp(keys[mid], k, ml < kl ? ml : kl);

		if (c < 0 || (c == 0 && ml < kl))
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

Test(pathkey, seek_listing_matches_full_scan)
{
	static const char alphabet[] = "ab./-0";
	unsigned seed = 20240611;
	char *keys[NKEYS];
	size_t n = 0;

	srand(seed);
	while (n < NKEYS) {
		char k[16];
		int len = 1 + rand() % 8;

		for (int i = 0; i < len; i++)
			k[i] = alphabet[rand() % (sizeof(alphabet) - 1)];
		k[len] = '\0';
		keys[n++] = strdup(k);
	}
	qsort(keys, n, sizeof(keys[0]), key_cmp);
	for (size_t d = 0; d < n; d++) {
		/* list the children of prefix P = keys[d] + "/" both ways */
		char pfx[32], seen_fast[8192] = "|", seen_full[8192] = "|", end[PK_KEY_BUF];
		size_t pl = (size_t)snprintf(pfx, sizeof(pfx), "%s/", keys[d]);
		size_t i = lower_bound(keys, n, pfx, pl);

		while (i < n && !strncmp(keys[i], pfx, pl)) {
			size_t nl;
			int deeper, e;

			if (pk_child(keys[i], strlen(keys[i]), pl, &nl, &deeper)) {
				i++; /* the key equal to the prefix: no child */
				continue;
			}
			strncat(seen_fast, keys[i] + pl, nl);
			strcat(seen_fast, deeper ? "/|" : "|");
			if (!deeper) {
				i++;
				continue;
			}
			e = pk_subtree_end(keys[i], pl + nl, end);
			i = lower_bound(keys, n, end, (size_t)e);
		}
		for (i = 0; i < n; i++) {
			size_t nl;
			int deeper;
			char last[64], *mark;

			if (strncmp(keys[i], pfx, pl) ||
			    pk_child(keys[i], strlen(keys[i]), pl, &nl, &deeper))
				continue;
			snprintf(last, sizeof(last), "|%.*s%s|", (int)nl, keys[i] + pl,
			         deeper ? "/" : "");
			/* a full scan meets a directory child once per key below it */
			mark = strstr(seen_full, last);
			if (!deeper || !mark)
				strcat(seen_full, last + 1);
		}
		cr_assert_str_eq(seen_fast, seen_full, "seed %u prefix %s", seed, pfx);
	}
	for (size_t i = 0; i < n; i++)
		free(keys[i]);
}

Test(pathkey, orphan_keys_live_under_their_pseudo_path)
{
	char p[PK_ORPHAN_LEN], k[PK_KEY_BUF];
	static const char want[PK_ORPHAN_LEN] = {0, 'o', 0, 0, 0, 0, 0, 0, 0x12, 0x34};
	int n;

	pk_orphan_path(0x1234, p);
	cr_assert_eq(memcmp(p, want, PK_ORPHAN_LEN), 0);
	cr_assert(pk_is_orphan(p, PK_ORPHAN_LEN));
	cr_assert(!pk_is_orphan("ab", 2));
	cr_assert(!pk_is_orphan("0123456789", 10));
	n = pk_sys_key(PK_TAG_META, p, PK_ORPHAN_LEN, k);
	cr_assert_eq(n, PK_ORPHAN_LEN + 1);
	cr_assert_eq(memcmp(k, want, PK_ORPHAN_LEN), 0);
	cr_assert_eq(k[PK_ORPHAN_LEN], 'm');
	n = pk_xattr_key(p, PK_ORPHAN_LEN, "user.a", 6, k);
	cr_assert_eq(n, PK_ORPHAN_LEN + 7);
	cr_assert_eq(k[PK_ORPHAN_LEN], 'x');
	cr_assert_eq(memcmp(k + PK_ORPHAN_LEN + 1, "user.a", 6), 0);
	n = pk_xattr_key(p, PK_ORPHAN_LEN, NULL, 0, k);
	cr_assert_eq(n, PK_ORPHAN_LEN + 1);
}

Test(pathkey, link_keys_live_under_their_pseudo_path)
{
	char p[PK_ORPHAN_LEN], k[PK_KEY_BUF];

	pk_pseudo_path(PK_TAG_LINK, 0x10, p);
	cr_assert_eq(p[0], 0);
	cr_assert_eq(p[1], 'h');
	cr_assert_eq(p[9], 0x10);
	cr_assert(pk_is_pseudo(p, PK_ORPHAN_LEN));
	cr_assert(!pk_is_orphan(p, PK_ORPHAN_LEN));
	cr_assert_eq(pk_sys_key(PK_TAG_META, p, PK_ORPHAN_LEN, k), PK_ORPHAN_LEN + 1);
	cr_assert_eq(k[PK_ORPHAN_LEN], 'm');
	pk_pseudo_path(PK_TAG_UNLINK, 0x10, p);
	cr_assert(!pk_is_pseudo(p, PK_ORPHAN_LEN), "a mark names no file");
}
