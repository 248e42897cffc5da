/*
 * selfpath.h - whether a path leads into the daemon's own mount, decided
 * without touching that mount.
 *
 * A command that makes the daemon write files (checkpoint DEST) must not
 * aim inside its own mount: the writes would come back to the daemon as
 * requests that wait for the engine the command holds, and both stop. Any
 * access to a path there is such a request, so the check never stats a
 * path under a mount point of the file system: it walks the path from "/"
 * one component at a time, following symbolic links and "..", and stops
 * as soon as the walk reaches one of those mount points. The mount points
 * come from /proc/self/mountinfo: every mount of the same device as the
 * one at MOUNTPOINT, so bind mounts of it count too.
 */
#ifndef CAIRNFS_SELFPATH_H
#define CAIRNFS_SELFPATH_H

#include <stddef.h>

struct sp_points {
	char **p; /* absolute paths, decoded */
	size_t n;
};

/* Decodes the octal escapes (\040 for a space) of a field of
 * /proc/self/mounts or mountinfo in place. */
void sp_unescape(char *s);

/* Reads the mount points of the file system mounted at mnt (absolute, no
 * symbolic links) from the mountinfo text in file: the last "fuse" mount
 * there names the device, and every mount of that device is listed. When
 * no such mount is found the list is mnt alone. Returns 0 or -errno. */
int sp_points_load(const char *file, const char *mnt, struct sp_points *pts);
void sp_points_free(struct sp_points *pts);

/* 1 when the absolute path, its symbolic links followed, is one of the
 * points or lies below one; 0 when not (a path that stops existing on the
 * way cannot lead there); -EINVAL for a relative path, -ELOOP for too many
 * links. Never calls lstat on a path at or below a point. */
int sp_path_inside(const char *path, const struct sp_points *pts);

#endif
