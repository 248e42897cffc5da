/*
 * test_selfpath.c - finding whether a path leads into the daemon's own
 * mount (fs/selfpath.c) without looking inside it: the mount points of one
 * device from mountinfo text, and a walk that follows links and "..".
 * A directory stands in for the mount: the walk must stop at it, so a path
 * that only passes through it counts as inside (the kernel would ask the
 * mount on the way as well).
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../fs/selfpath.h"

static char dir[PATH_MAX];

static void setup(void)
{
	char p[PATH_MAX + 64];

	snprintf(dir, sizeof(dir), "%s/selfpath.XXXXXX",
	         getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
	cr_assert_not_null(mkdtemp(dir));
	snprintf(p, sizeof(p), "%s/mnt", dir);
	cr_assert_eq(mkdir(p, 0755), 0);
	snprintf(p, sizeof(p), "%s/out", dir);
	cr_assert_eq(mkdir(p, 0755), 0);
	snprintf(p, sizeof(p), "%s/abs", dir);
	cr_assert_eq(symlink(dir, p), 0); /* abs -> DIR */
	snprintf(p, sizeof(p), "%s/out/rel", dir);
	cr_assert_eq(symlink("../mnt/x", p), 0); /* out/rel -> ../mnt/x */
	snprintf(p, sizeof(p), "%s/loop", dir);
	cr_assert_eq(symlink("loop", p), 0);
}

static void teardown(void)
{
	char cmd[PATH_MAX + 16];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	cr_assert_eq(system(cmd), 0);
}

/* Whether DIR/rel leads into DIR/mnt. */
static int inside(const char *rel)
{
	char p[2 * PATH_MAX], m[PATH_MAX + 8];
	char *pts[] = {m};
	struct sp_points sp = {pts, 1};

	snprintf(m, sizeof(m), "%s/mnt", dir);
	snprintf(p, sizeof(p), "%s/%s", dir, rel);
	return sp_path_inside(p, &sp);
}

TestSuite(selfpath, .init = setup, .fini = teardown);

Test(selfpath, paths_into_the_mount_are_found)
{
	cr_assert_eq(inside("mnt"), 1);
	cr_assert_eq(inside("mnt/ck"), 1);
	cr_assert_eq(inside("mnt/a/b/c"), 1);
	cr_assert_eq(inside("out/../mnt/ck"), 1);
	cr_assert_eq(inside("./out//../mnt/"), 1);
	cr_assert_eq(inside("abs/mnt/ck"), 1);      /* an absolute link on the way */
	cr_assert_eq(inside("out/rel"), 1);         /* a relative link into it */
	cr_assert_eq(inside("abs/out/rel/ck"), 1);  /* both */
	cr_assert_eq(inside("mnt/x/../../out"), 1); /* passes through it */
}

Test(selfpath, paths_outside_are_not)
{
	cr_assert_eq(inside("out/ck"), 0);
	cr_assert_eq(inside("mntx/ck"), 0);
	cr_assert_eq(inside("out/../out/ck"), 0);
	cr_assert_eq(inside("abs/out/ck"), 0);
	cr_assert_eq(inside("missing/../mnt"), 0); /* the kernel fails such a path too */
	cr_assert_eq(inside("loop/ck"), -ELOOP);
	cr_assert_eq(sp_path_inside("rel/path", &(struct sp_points){NULL, 0}), -EINVAL);
}

Test(selfpath, mount_points_of_one_device_come_from_mountinfo)
{
	char f[PATH_MAX + 16];
	struct sp_points sp;
	FILE *fp;

	snprintf(f, sizeof(f), "%s/mountinfo", dir);
	fp = fopen(f, "w");
	cr_assert_not_null(fp);
	fputs("22 1 8:1 / / rw shared:1 - ext4 /dev/sda1 rw\n"
	      "40 22 0:45 / /tmp/a\\040b/mnt rw,nosuid shared:2 - fuse.cairnfs /db rw\n"
	      "41 22 0:46 / /tmp/other rw - fuse.cairnfs /db2 rw\n"
	      "42 22 0:45 /sub /srv/bound rw master:2 - fuse.cairnfs /db rw\n"
	      "43 22 8:1 /tmp/a\\040b/mnt /tmp/under rw - ext4 /dev/sda1 rw\n",
	      fp);
	fclose(fp);
	cr_assert_eq(sp_points_load(f, "/tmp/a b/mnt", &sp), 0);
	cr_assert_eq(sp.n, 2);
	cr_assert_str_eq(sp.p[0], "/tmp/a b/mnt");
	cr_assert_str_eq(sp.p[1], "/srv/bound");
	sp_points_free(&sp);
	/* not in the table (or no /proc): the mount point alone */
	cr_assert_eq(sp_points_load(f, "/nowhere", &sp), 0);
	cr_assert_eq(sp.n, 1);
	cr_assert_str_eq(sp.p[0], "/nowhere");
	sp_points_free(&sp);
}
