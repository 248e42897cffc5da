/*
 * mount.h - finding the cairnfs mount that holds a database, and talking to
 * it through its control files, for the cairn commands that still work while
 * cairnfs has the database open (stats, flush, compact, checkpoint).
 *
 * A cairnfs mount shows up in /proc/self/mounts with file system type
 * "fuse.cairnfs" and the absolute path of its database directory as its
 * source (fsname). The lookup compares that field and opens only the mount
 * it names, to confirm with MOUNT/.cairn/dbdir (the same path): a stopped
 * or busy mount of another database must not hold the CLI.
 * MOUNT/.cairn/stats and stats.json hold its statistics, and a line
 * written to MOUNT/.cairn/control ("flush", "compact", "checkpoint /DEST") is
 * a command, whose failure comes back as the error of the write or of the
 * close (EIO under the writeback cache), and MOUNT/.cairn/result holds the
 * outcome of the last command ("ok flush", "error: WHY (ERRNO)").
 */
#ifndef CAIRN_CLI_MOUNT_H
#define CAIRN_CLI_MOUNT_H

#include <stddef.h>
#include <stdio.h>

/* Looks for the cairnfs mount of dbdir; returns 1 and the mount point in mnt
 * when found, 0 when not. */
int mount_find(const char *dbdir, char *mnt, size_t len);

/* Writes cmd (one line, newline included) to MOUNT/.cairn/control and checks
 * both the write and the close. Returns 0, or -1 with a message in err: the
 * daemon's reason from MOUNT/.cairn/result when it gives one. */
int mount_control(const char *mnt, const char *cmd, char *err, size_t errlen);

/* Copies MOUNT/.cairn/NAME to out. Returns 0, or -1 with a message in err. */
int mount_cat(const char *mnt, const char *name, FILE *out, char *err, size_t errlen);

#endif
