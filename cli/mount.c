/*
 * mount.c - the cairnfs mount of a database and its control files (see
 * mount.h). Paths in /proc/self/mounts escape space, tab, newline and
 * backslash as three octal digits (\040); they are decoded before use.
 */
#include "mount.h"
#include "../fs/selfpath.h" /* sp_unescape */

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define MOUNT_TYPE "fuse.cairnfs"

/* Reads MOUNT/.cairn/dbdir (one line) into out. */
static int read_dbdir(const char *mnt, char *out, size_t len)
{
	char path[PATH_MAX + 32];
	snprintf(path, sizeof(path), "%s/.cairn/dbdir", mnt);
	FILE *f = fopen(path, "r");
	if (!f)
		return -1;
	int ok = fgets(out, (int)len, f) != NULL;
	fclose(f);
	if (!ok)
		return -1;
	out[strcspn(out, "\n")] = 0;
	return 0;
}

/* Whether path names the same directory as st. */
static int same_dir(const char *path, const struct stat *st)
{
	struct stat s;
	return path[0] == '/' && stat(path, &s) == 0 && s.st_dev == st->st_dev &&
	       s.st_ino == st->st_ino;
}

struct mount_ent {
	char *src, *dir;
};

/* The cairnfs mounts in /proc/self/mounts, decoded; NULL when none. */
static struct mount_ent *read_mounts(size_t *n)
{
	char line[3 * PATH_MAX];
	struct mount_ent *v = NULL;
	*n = 0;
	FILE *f = fopen("/proc/self/mounts", "r");
	if (!f)
		return NULL;
	while (fgets(line, sizeof(line), f)) {
		char *save = NULL;
		char *src = strtok_r(line, " ", &save);
		char *dir = src ? strtok_r(NULL, " ", &save) : NULL;
		char *type = dir ? strtok_r(NULL, " ", &save) : NULL;
		if (!type || strcmp(type, MOUNT_TYPE) != 0)
			continue;
		struct mount_ent *nv = realloc(v, (*n + 1) * sizeof(*v));
		if (!nv)
			break;
		v = nv;
		sp_unescape(src);
		sp_unescape(dir);
		v[*n].src = strdup(src);
		v[*n].dir = strdup(dir);
		if (!v[*n].src || !v[*n].dir) {
			free(v[*n].src);
			free(v[*n].dir);
			break;
		}
		(*n)++;
	}
	fclose(f);
	return v;
}

static void free_mounts(struct mount_ent *v, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(v[i].src);
		free(v[i].dir);
	}
	free(v);
}

/* The mount point of the entries whose source names the database (want,
 * st), confirmed by its .cairn/dbdir; pass 0 compares the text alone, pass
 * 1 the directory the source names. */
static const char *find_by_source(struct mount_ent *v, size_t n, const char *want,
                                  const struct stat *st, int pass)
{
	char have[PATH_MAX];
	for (size_t i = 0; i < n; i++) {
		int match = pass ? strcmp(v[i].src, want) != 0 && same_dir(v[i].src, st)
		                 : strcmp(v[i].src, want) == 0;
		if (match && read_dbdir(v[i].dir, have, sizeof(have)) == 0 &&
		    (strcmp(have, v[i].src) == 0 || same_dir(have, st)))
			return v[i].dir;
	}
	return NULL;
}

int mount_find(const char *dbdir, char *mnt, size_t len)
{
	char want[PATH_MAX];
	struct stat st;
	if (!realpath(dbdir, want) || stat(want, &st) != 0)
		return 0;
	size_t n;
	struct mount_ent *v = read_mounts(&n);
	const char *dir = find_by_source(v, n, want, &st, 0);
	if (!dir)
		dir = find_by_source(v, n, want, &st, 1);
	int found = dir && strlen(dir) < len;
	if (found)
		strcpy(mnt, dir);
	free_mounts(v, n);
	return found;
}

/* Reads MOUNT/.cairn/result, the outcome of the last command, into out
 * without its newline; "" when it cannot be read. */
static void read_result(const char *mnt, char *out, size_t len)
{
	char path[PATH_MAX + 32];
	snprintf(path, sizeof(path), "%s/.cairn/result", mnt);
	out[0] = 0;
	FILE *f = fopen(path, "r");
	if (!f)
		return;
	if (!fgets(out, (int)len, f))
		out[0] = 0;
	fclose(f);
	out[strcspn(out, "\n")] = 0;
}

int mount_control(const char *mnt, const char *cmd, char *err, size_t errlen)
{
	char path[PATH_MAX + 32], res[512];
	snprintf(path, sizeof(path), "%s/.cairn/control", mnt);
	int fd = open(path, O_WRONLY | O_TRUNC | O_CLOEXEC);
	if (fd < 0) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return -1;
	}
	/* cairnfs runs the command when the write reaches it: at write(2) with
	 * open=1, at close(2) under the writeback cache with open=0 (the
	 * default), which then fails with EIO; either way .cairn/result says
	 * why */
	size_t n = strlen(cmd);
	ssize_t w = write(fd, cmd, n);
	int saved = errno;
	if (close(fd) && w == (ssize_t)n) {
		w = -1;
		saved = errno;
	}
	if (w == (ssize_t)n)
		return 0;
	read_result(mnt, res, sizeof(res));
	if (!strncmp(res, "error: ", 7))
		snprintf(err, errlen, "%s", res + 7);
	else
		snprintf(err, errlen, "%s: %s", path, w < 0 ? strerror(saved) : "short write");
	return -1;
}

int mount_cat(const char *mnt, const char *name, FILE *out, char *err, size_t errlen)
{
	char path[PATH_MAX + 32], buf[65536];
	snprintf(path, sizeof(path), "%s/.cairn/%s", mnt, name);
	FILE *f = fopen(path, "r");
	if (!f) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return -1;
	}
	size_t n;
	while ((n = fread(buf, 1, sizeof(buf), f)) > 0)
		fwrite(buf, 1, n, out);
	int bad = ferror(f);
	fclose(f);
	if (bad) {
		snprintf(err, errlen, "%s: read error", path);
		return -1;
	}
	return 0;
}
