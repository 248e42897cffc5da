/*
 * selfpath.c - whether a path leads into the daemon's own mount (see
 * selfpath.h).
 */
#include "selfpath.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define SP_MAX_LINKS 40 /* as the kernel's path walk */

void sp_unescape(char *s)
{
	char *o = s;

	for (char *p = s; *p;) {
		if (p[0] == '\\' && p[1] >= '0' && p[1] <= '3' && p[2] >= '0' && p[2] <= '7' &&
		    p[3] >= '0' && p[3] <= '7') {
			*o++ = (char)((p[1] - '0') * 64 + (p[2] - '0') * 8 + (p[3] - '0'));
			p += 4;
		} else {
			*o++ = *p++;
		}
	}
	*o = '\0';
}

/* One line of mountinfo: "ID PARENT MAJ:MIN ROOT POINT OPTS [TAGS...] - TYPE
 * SOURCE SUPEROPTS". Points into line, which it cuts; 0 or -1 if malformed. */
struct sp_line {
	char *dev, *point, *type;
};

static int sp_parse(char *line, struct sp_line *l)
{
	char *save = NULL, *f[5], *w;

	for (int i = 0; i < 5; i++) {
		f[i] = strtok_r(i ? NULL : line, " \n", &save);
		if (!f[i])
			return -1;
	}
	while ((w = strtok_r(NULL, " \n", &save)) && strcmp(w, "-"))
		;
	l->type = w ? strtok_r(NULL, " \n", &save) : NULL;
	if (!l->type)
		return -1;
	l->dev = f[2];
	l->point = f[4];
	sp_unescape(l->point);
	return 0;
}

static int sp_add(struct sp_points *pts, const char *p)
{
	char **np = realloc(pts->p, (pts->n + 1) * sizeof(*np));

	if (!np)
		return -ENOMEM;
	pts->p = np;
	np[pts->n] = strdup(p);
	if (!np[pts->n])
		return -ENOMEM;
	pts->n++;
	return 0;
}

/* The device of the last fuse mount at mnt into dev, or "" when none. */
static void sp_find_dev(FILE *f, const char *mnt, char *dev, size_t len)
{
	char line[3 * PATH_MAX];
	struct sp_line l;

	dev[0] = '\0';
	while (fgets(line, sizeof(line), f)) {
		if (!sp_parse(line, &l) && !strcmp(l.point, mnt) && !strncmp(l.type, "fuse", 4))
			snprintf(dev, len, "%s", l.dev);
	}
}

int sp_points_load(const char *file, const char *mnt, struct sp_points *pts)
{
	char line[3 * PATH_MAX], dev[32];
	struct sp_line l;
	FILE *f = fopen(file, "r");
	int rc = 0;

	pts->p = NULL;
	pts->n = 0;
	if (f) {
		sp_find_dev(f, mnt, dev, sizeof(dev));
		rewind(f);
		while (!rc && dev[0] && fgets(line, sizeof(line), f)) {
			if (!sp_parse(line, &l) && !strcmp(l.dev, dev))
				rc = sp_add(pts, l.point);
		}
		fclose(f);
	}
	if (!rc && !pts->n)
		rc = sp_add(pts, mnt);
	if (rc)
		sp_points_free(pts);
	return rc;
}

void sp_points_free(struct sp_points *pts)
{
	for (size_t i = 0; i < pts->n; i++)
		free(pts->p[i]);
	free(pts->p);
	pts->p = NULL;
	pts->n = 0;
}

static int sp_is_point(const char *p, const struct sp_points *pts)
{
	for (size_t i = 0; i < pts->n; i++) {
		if (!strcmp(pts->p[i], p))
			return 1;
	}
	return 0;
}

/* Puts link (read from the symbolic link at cur) in front of the rest of
 * the walk in rest; an absolute one restarts the walk at "/". */
static int sp_follow(char *cur, size_t *clen, const char *link, char *rest)
{
	size_t ll = strlen(link), rl = strlen(rest);

	if (ll + 1 + rl >= PATH_MAX)
		return -ENAMETOOLONG;
	memmove(rest + ll + 1, rest, rl + 1);
	memcpy(rest, link, ll);
	rest[ll] = '/';
	if (link[0] == '/') {
		*clen = 0;
		cur[0] = '\0';
	}
	return 0;
}

/* cur holds the walk so far ("" for "/", else "/a/b" with no links in it);
 * rest what is left. */
int sp_path_inside(const char *path, const struct sp_points *pts)
{
	char cur[PATH_MAX], rest[PATH_MAX], link[PATH_MAX];
	size_t clen = 0, links = 0;
	struct stat st;

	if (path[0] != '/')
		return -EINVAL;
	if (strlen(path) >= PATH_MAX)
		return -ENAMETOOLONG;
	strcpy(rest, path);
	cur[0] = '\0';
	if (sp_is_point("/", pts))
		return 1;
	while (rest[0]) {
		size_t n = strcspn(rest, "/"), skip = n + (rest[n] == '/');
		ssize_t ll;

		if (n == 0 || (n == 1 && rest[0] == '.')) {
			memmove(rest, rest + skip, strlen(rest + skip) + 1);
			continue;
		}
		if (n == 2 && rest[0] == '.' && rest[1] == '.') {
			while (clen && cur[--clen] != '/')
				;
			cur[clen] = '\0';
			memmove(rest, rest + skip, strlen(rest + skip) + 1);
			continue;
		}
		if (clen + 1 + n >= PATH_MAX)
			return -ENAMETOOLONG;
		cur[clen] = '/';
		memcpy(cur + clen + 1, rest, n);
		cur[clen + 1 + n] = '\0';
		memmove(rest, rest + skip, strlen(rest + skip) + 1);
		if (sp_is_point(cur, pts))
			return 1;
		if (lstat(cur, &st))
			return 0; /* the path cannot be walked further: it leads nowhere */
		if (!S_ISLNK(st.st_mode)) {
			clen += 1 + n;
			continue;
		}
		if (++links > SP_MAX_LINKS)
			return -ELOOP;
		ll = readlink(cur, link, sizeof(link) - 1);
		if (ll < 0)
			return 0;
		link[ll] = '\0';
		cur[clen] = '\0'; /* a relative link continues from its directory */
		if (sp_follow(cur, &clen, link, rest))
			return -ENAMETOOLONG;
	}
	return 0;
}
