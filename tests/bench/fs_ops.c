/*
 * fs_ops.c - the small-file phases of scripts/bench-fs, timed from C so the
 * figures measure the file system and not an interpreter.
 *
 *   fs_ops PHASE DIR FILES DIRS PROCS
 *
 * PHASE is one of create (mkdir DIRS directories d000.. and write FILES files
 * of 100 bytes spread over them), stat (lstat each file), list (readdir each
 * directory and lstat every entry, as `ls -l` does), read (open, read, close
 * each file) and unlink (each file, then rmdir each directory). PROCS
 * processes share the directories round robin; they start together on a
 * pipe and the time from their start to the last one's exit is printed in
 * seconds. Exits 1, with the failing call on stderr, on any error.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static int fo_fail(const char *what, const char *path)
{
	fprintf(stderr, "fs_ops: %s %s: %s\n", what, path, strerror(errno));
	return 1;
}

static int fo_file(const char *phase, const char *path)
{
	static const char data[100] = "0123456789 the hundred bytes of a small benchmark file";
	char buf[4096];
	struct stat st;
	int fd;

	if (!strcmp(phase, "create")) {
		fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
		if (fd < 0 || write(fd, data, sizeof(data)) != (ssize_t)sizeof(data))
			return fo_fail("create", path);
		return close(fd) ? fo_fail("close", path) : 0;
	}
	if (!strcmp(phase, "stat"))
		return lstat(path, &st) || st.st_size != 100 ? fo_fail("stat", path) : 0;
	if (!strcmp(phase, "read")) {
		fd = open(path, O_RDONLY);
		if (fd < 0 || read(fd, buf, sizeof(buf)) != 100)
			return fo_fail("read", path);
		return close(fd) ? fo_fail("close", path) : 0;
	}
	if (!strcmp(phase, "unlink"))
		return unlink(path) ? fo_fail("unlink", path) : 0;
	errno = EINVAL;
	return fo_fail("phase", phase);
}

static int fo_list(const char *dir)
{
	struct dirent *de;
	struct stat st;
	DIR *d = opendir(dir);
	int n = 0;

	if (!d)
		return fo_fail("opendir", dir);
	while ((de = readdir(d))) {
		if (de->d_name[0] == '.')
			continue;
		if (fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW))
			return fo_fail("fstatat", de->d_name);
		n++;
	}
	closedir(d);
	return n > 0 ? 0 : fo_fail("empty directory", dir);
}

/* The share of process p: directories p, p + procs, ... */
static int fo_worker(const char *phase, const char *top, long files, long dirs, long procs, long p)
{
	char path[4096];

	for (long d = p; d < dirs; d += procs) {
		if (!strcmp(phase, "list")) {
			snprintf(path, sizeof(path), "%s/d%03ld", top, d);
			if (fo_list(path))
				return 1;
			continue;
		}
		for (long f = d; f < files; f += dirs) {
			snprintf(path, sizeof(path), "%s/d%03ld/f%07ld", top, d, f);
			if (fo_file(phase, path))
				return 1;
		}
		if (!strcmp(phase, "unlink")) {
			snprintf(path, sizeof(path), "%s/d%03ld", top, d);
			if (rmdir(path))
				return fo_fail("rmdir", path);
		}
	}
	return 0;
}

static double fo_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
	char path[4096], go;
	int gate[2], status, bad = 0;
	long files, dirs, procs;
	double t0;

	if (argc != 6) {
		fprintf(stderr,
		        "usage: fs_ops create|stat|list|read|unlink DIR FILES DIRS PROCS\n");
		return 2;
	}
	files = atol(argv[3]);
	dirs = atol(argv[4]);
	procs = atol(argv[5]);
	if (files < 1 || dirs < 1 || procs < 1 || pipe(gate))
		return 2;
	for (long p = 0; p < procs; p++) {
		pid_t pid = fork();

		if (pid < 0)
			return fo_fail("fork", "");
		if (pid == 0) {
			close(gate[1]);
			if (read(gate[0], &go, 1) != 0)
				_exit(1);
			_exit(fo_worker(argv[1], argv[2], files, dirs, procs, p));
		}
	}
	close(gate[0]);
	t0 = fo_now();
	if (!strcmp(argv[1], "create")) {
		for (long d = 0; d < dirs; d++) {
			snprintf(path, sizeof(path), "%s/d%03ld", argv[2], d);
			if (mkdir(path, 0755) && errno != EEXIST)
				return fo_fail("mkdir", path);
		}
	}
	close(gate[1]); /* every worker's read returns 0: go */
	while (wait(&status) > 0)
		bad |= !WIFEXITED(status) || WEXITSTATUS(status);
	printf("%.6f\n", fo_now() - t0);
	return bad;
}
