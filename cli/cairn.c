/*
 * cairn.c - the `cairn` command-line tool: read, write, list, inspect and
 * maintain a cairn database from the shell. It uses only the public API
 * (cairn.h), like any embedding program.
 *
 * Each command is a function taking its own arguments, with its own options
 * parsed by getopt_long and its own --help. Exit status: 0 success, 1 failure
 * (including problems found by check), 2 usage error, 3 key or directory not
 * found. Messages go to standard error as "cairn: COMMAND: what failed".
 *
 * When cairnfs holds the database (cairn_open fails with CAIRN_EBUSY), the
 * commands that cairnfs can run for us (stats, flush, compact, checkpoint)
 * go through the mount's control files (mount.h); the others fail and say
 * where the database is mounted. check and dump read files without opening
 * the database, so they work either way. Manual: docs/man/cairn.1.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <dirent.h>
#include <unistd.h>

#include "cairn.h"
#include "escape.h"
#include "mount.h"
#include "progress.h"

enum exit_code {
	EXIT_OK = 0,
	EXIT_FAIL = 1,
	EXIT_USAGE = 2,
	EXIT_NOTFOUND = 3,
};

#define DEFAULT_DBDIR "cairn.db"
#define READ_CHUNK    (1u << 20)

/* What every command knows: the database directory and the global flags. */
struct ctx {
	const char *dbdir;
	const char *cmd;
	int escapes; /* -x: KEY and VALUE arguments hold escapes */
};

struct command {
	const char *name;
	int (*run)(struct ctx *c, int argc, char **argv);
	const char *synopsis;
	const char *help;
};

static const struct command *find_command(const char *name);

/* ------------------------------------------------------------------------ */
/* Messages                                                                  */

static int fail(const struct ctx *c, int code, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));
static int fail(const struct ctx *c, int code, const char *fmt, ...)
{
	va_list ap;
	fprintf(stderr, "cairn: %s%s", c->cmd ? c->cmd : "", c->cmd ? ": " : "");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	return code;
}

/* Reports a failed call on an open handle with the handle's detail. */
static int fail_db(const struct ctx *c, struct cairn_db *db, int r, const char *what)
{
	char msg[512] = "";
	/* the handle's message belongs to this failure only if its code does */
	int last = cairn_errmsg(db, msg, sizeof(msg));
	if (!msg[0] || last != r)
		return fail(c, EXIT_FAIL, "%s: %s", what, cairn_strerror(r));
	if (strstr(msg, cairn_strerror(r)))
		return fail(c, EXIT_FAIL, "%s: %s", what, msg);
	return fail(c, EXIT_FAIL, "%s: %s: %s", what, cairn_strerror(r), msg);
}

static int usage_error(const struct ctx *c, const char *fmt, ...)
        __attribute__((format(printf, 2, 3)));
static int usage_error(const struct ctx *c, const char *fmt, ...)
{
	va_list ap;
	fprintf(stderr, "cairn: %s%s", c->cmd ? c->cmd : "", c->cmd ? ": " : "");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\nTry 'cairn %s%s--help'.\n", c->cmd ? c->cmd : "", c->cmd ? " " : "");
	return EXIT_USAGE;
}

/* Prints a key for a message: escaped, between quotes, to stderr. */
static void print_key_err(const void *k, size_t n)
{
	fputc('\'', stderr);
	esc_print(stderr, k, n);
	fputc('\'', stderr);
}

/* Checks that everything reached standard output. */
static int finish_stdout(const struct ctx *c)
{
	if (fflush(stdout) || ferror(stdout))
		return fail(c, EXIT_FAIL, "write error on standard output: %s", strerror(errno));
	return EXIT_OK;
}

/* ------------------------------------------------------------------------ */
/* Arguments                                                                 */

/* A KEY or VALUE argument as bytes: itself, or decoded with -x. */
struct arg_bytes {
	char *data; /* owned when decoded */
	size_t len;
	int owned;
};

static int arg_decode(const struct ctx *c, const char *what, const char *s, struct arg_bytes *out)
{
	size_t bad = 0;
	out->owned = 0;
	out->data = (char *)s;
	out->len = strlen(s);
	if (!c->escapes)
		return 0;
	int r = esc_unescape(s, &out->data, &out->len, &bad);
	if (r == -2)
		return fail(c, EXIT_FAIL, "out of memory");
	if (r)
		return usage_error(c, "bad escape in %s at byte %zu: '%s'", what, bad, s);
	out->owned = 1;
	return 0;
}

static void arg_free(struct arg_bytes *a)
{
	if (a->owned)
		free(a->data);
}

/* The options every command takes. Returns the getopt value, 'h' for help. */
static const struct option common_long[] = {
        {"help", no_argument, NULL, 'h'},
        {"escapes", no_argument, NULL, 'x'},
        {"raw", no_argument, NULL, 'R'},
        {"json", no_argument, NULL, 'j'},
        {NULL, 0, NULL, 0},
};

static int print_command_help(const struct ctx *c)
{
	const struct command *cmd = find_command(c->cmd);
	printf("Usage: cairn [-d DBDIR] %s\n\n%s", cmd->synopsis, cmd->help);
	return EXIT_OK;
}

/* What an option handler returns besides an exit code (having reported). */
#define OPT_OK      (-1)
#define OPT_UNKNOWN (-2)

static int expect_args(const struct ctx *c, int have, int min, int max)
{
	if (have < min)
		return usage_error(c, "missing argument");
	if (have > max)
		return usage_error(c, "too many arguments");
	return -1;
}

/* Parses the options of a command: shortopts lists its own; -h and -x are
 * always accepted. Calls on_opt for the others, then checks that min to max
 * arguments follow. Returns -1 to go on (the arguments from optind), or an
 * exit code (help printed, or usage error). */
static int parse_opts(struct ctx *c, int argc, char **argv, const char *shortopts,
                      int (*on_opt)(void *st, int opt, const char *arg), void *st, int min, int max)
{
	char opts[64];
	snprintf(opts, sizeof(opts), "+:hx%s", shortopts);
	optind = 0;
	opterr = 0;
	for (;;) {
		int o = getopt_long(argc, argv, opts, common_long, NULL);
		if (o == -1)
			return expect_args(c, argc - optind, min, max);
		if (o == 'h')
			return print_command_help(c);
		if (o == 'x') {
			c->escapes = 1;
			continue;
		}
		if (o == '?')
			return usage_error(c, "unknown option '%s'", argv[optind - 1]);
		if (o == ':')
			return usage_error(c, "option '%s' needs a value", argv[optind - 1]);
		int r = on_opt ? on_opt(st, o, optarg) : OPT_UNKNOWN;
		if (r == OPT_UNKNOWN)
			return usage_error(c, "option '%s' is not one of this command's",
			                   argv[optind - 1]);
		if (r >= 0)
			return r;
	}
}

/* ------------------------------------------------------------------------ */
/* Opening the database                                                      */

enum open_mode {
	OPEN_READ,  /* must exist; opened for reading only when it must be */
	OPEN_WRITE, /* created when missing */
	OPEN_MAINT, /* must exist; may write (flush, compact, checkpoint) */
};

/* Explains a database held by another process; names the mount when there is
 * one. Returns 1 and fills mnt when cairnfs holds it. */
static int explain_busy(const struct ctx *c, const char *errbuf, char *mnt, size_t len,
                        int quiet_if_mounted)
{
	int mounted = mount_find(c->dbdir, mnt, len);
	if (mounted && quiet_if_mounted)
		return 1;
	fail(c, EXIT_FAIL, "database in use: %s", errbuf);
	if (mounted)
		fprintf(stderr,
		        "cairn: %s: it is mounted by cairnfs at %s: use the files there, or "
		        "unmount it first\n",
		        c->cmd, mnt);
	return mounted;
}

/* Opens the database for a command. On failure prints why and returns the
 * exit code; *busy (may be NULL) tells a database held by cairnfs, whose
 * mount point is then in mnt. */
static int open_db(const struct ctx *c, enum open_mode mode, struct cairn_db **dbp, char *mnt,
                   size_t mntlen, int *busy)
{
	struct cairn_options o;
	char errbuf[512] = "", tmp[PATH_MAX];
	cairn_options_init(&o);
	o.create_if_missing = mode == OPEN_WRITE;
	if (busy)
		*busy = 0;
	/* Readers take the lock too: a read-only handle takes none, and would read
	 * a database another process is changing under it. Only where the lock
	 * cannot be taken for another reason (a read-only file system, no write
	 * permission) do they fall back to a read-only handle. */
	int r = cairn_open(c->dbdir, &o, dbp, errbuf, sizeof(errbuf));
	if (r && mode == OPEN_READ && r != CAIRN_EBUSY && r != CAIRN_ENOENT) {
		char errbuf2[512] = "";
		o.read_only = 1;
		if (cairn_open(c->dbdir, &o, dbp, errbuf2, sizeof(errbuf2)) == 0)
			return EXIT_OK;
	}
	if (r == 0)
		return EXIT_OK;
	if (r == CAIRN_EBUSY) {
		int mounted = explain_busy(c, errbuf, mnt ? mnt : tmp, mnt ? mntlen : sizeof(tmp),
		                           busy != NULL);
		if (busy)
			*busy = mounted;
		return EXIT_FAIL;
	}
	if (r == CAIRN_ENOENT)
		return fail(c, EXIT_FAIL, "no database at '%s' (give -d DBDIR or set CAIRN_DB)",
		            c->dbdir);
	return fail(c, EXIT_FAIL, "cannot open database '%s': %s%s%s", c->dbdir, cairn_strerror(r),
	            errbuf[0] ? ": " : "", errbuf);
}

/* Closes a handle that wrote, reporting a failed final sync. */
static int close_db(const struct ctx *c, struct cairn_db *db, int code)
{
	int r = cairn_close(db);
	if (r && code == EXIT_OK)
		return fail(c, EXIT_FAIL, "closing the database: %s", cairn_strerror(r));
	return code;
}

/* ------------------------------------------------------------------------ */
/* get, put, del                                                             */

static const char get_help[] =
        "Writes the value of KEY to standard output, as raw bytes with no newline.\n"
        "Exits with 3 when the key has no value.\n\n"
        "  -x, --escapes  KEY holds escapes (\\xNN, \\\\, \\n, \\t, \\r, \\0)\n"
        "  -h, --help     show this help\n";

static int stream_value(const struct ctx *c, struct cairn_db *db, const struct cairn_snapshot *s,
                        struct arg_bytes *k, uint64_t size)
{
	char *buf = malloc(READ_CHUNK);
	if (!buf)
		return fail(c, EXIT_FAIL, "out of memory");
	uint64_t off = 0;
	int code = EXIT_OK;
	while (off < size) {
		size_t got = 0;
		int r = cairn_get_range(db, s, k->data, k->len, off, buf, READ_CHUNK, &got);
		if (r) {
			code = fail_db(c, db, r, "reading the value");
			break;
		}
		if (got == 0)
			break;
		if (fwrite(buf, 1, got, stdout) != got)
			break;
		off += got;
	}
	free(buf);
	return code;
}

static int cmd_get(struct ctx *c, int argc, char **argv)
{
	struct arg_bytes k;
	struct cairn_db *db = NULL;
	const struct cairn_snapshot *s = NULL;
	struct cairn_key_info info = {0};
	int code = parse_opts(c, argc, argv, "", NULL, NULL, 1, 1);
	if (code >= 0)
		return code;
	if ((code = arg_decode(c, "KEY", argv[optind], &k)))
		return code;
	if ((code = open_db(c, OPEN_READ, &db, NULL, 0, NULL))) {
		arg_free(&k);
		return code;
	}
	int r = cairn_snapshot_new(db, &s);
	if (!r)
		r = cairn_key_info(db, s, k.data, k.len, &info);
	if (r == CAIRN_ENOTFOUND) {
		fprintf(stderr, "cairn: get: key ");
		print_key_err(k.data, k.len);
		fprintf(stderr, " not found\n");
		code = EXIT_NOTFOUND;
	} else if (r) {
		code = fail_db(c, db, r, "get");
	} else {
		code = stream_value(c, db, s, &k, info.size);
	}
	cairn_snapshot_release(db, s);
	cairn_close(db);
	arg_free(&k);
	return code ? code : finish_stdout(c);
}

static const char put_help[] =
        "Stores VALUE under KEY, replacing any value it had. Without VALUE the value\n"
        "is read from standard input and streamed into the database, so binary values\n"
        "of any size can be piped in with bounded memory (a value over 64 KiB goes to\n"
        "a blob file). Creates the database when it does not exist.\n\n"
        "  -x, --escapes  KEY and VALUE hold escapes (\\xNN, \\\\, \\n, \\t, \\r, \\0)\n"
        "  -h, --help     show this help\n";

/* Puts standard input as the value of k. A value that ends within the first
 * STREAM_AFTER bytes is one cairn_put; a longer one goes through a stream
 * (cairn_stream_*), read and written a chunk at a time. */
#define STREAM_AFTER (64u << 10)

static int put_stdin(struct ctx *c, struct cairn_db *db, const struct arg_bytes *k)
{
	char *buf = malloc(READ_CHUNK);
	if (!buf)
		return fail(c, EXIT_FAIL, "out of memory reading standard input");
	size_t len = 0;
	while (len < STREAM_AFTER) {
		size_t got = fread(buf + len, 1, STREAM_AFTER - len, stdin);
		if (got == 0)
			break;
		len += got;
	}
	int r = 0, code = 0;
	if (ferror(stdin)) {
		free(buf);
		return fail(c, EXIT_FAIL, "reading standard input: %s", strerror(errno));
	}
	if (len < STREAM_AFTER) {
		r = cairn_put(db, k->data, k->len, buf, len, 0);
		free(buf);
		return r ? fail_db(c, db, r, "put") : 0;
	}
	struct cairn_stream *st = NULL;
	struct progress p;
	uint64_t total = 0;
	progress_init(&p, "put", 0);
	r = cairn_stream_new(db, k->data, k->len, &st);
	while (!r && len > 0) {
		r = cairn_stream_write(st, buf, len);
		total += len;
		progress_update(&p, total, 0);
		len = fread(buf, 1, READ_CHUNK, stdin);
	}
	progress_finish(&p);
	if (!r && ferror(stdin)) {
		cairn_stream_abort(st);
		free(buf);
		return fail(c, EXIT_FAIL, "reading standard input: %s; nothing was written",
		            strerror(errno));
	}
	if (r) {
		cairn_stream_abort(st);
		code = fail_db(c, db, r, "put");
	} else if ((r = cairn_stream_commit(st, 0)) != 0) {
		code = fail_db(c, db, r, "put");
	}
	free(buf);
	return code;
}

static int cmd_put(struct ctx *c, int argc, char **argv)
{
	struct arg_bytes k, v = {0};
	struct cairn_db *db = NULL;
	int code = parse_opts(c, argc, argv, "", NULL, NULL, 1, 2);
	if (code >= 0)
		return code;
	if ((code = arg_decode(c, "KEY", argv[optind], &k)))
		return code;
	if (optind + 1 < argc) {
		code = arg_decode(c, "VALUE", argv[optind + 1], &v);
	} else {
		/* Standard input streams: memory stays bounded whatever its size. */
		if (!(code = open_db(c, OPEN_WRITE, &db, NULL, 0, NULL)))
			code = close_db(c, db, put_stdin(c, db, &k));
		arg_free(&k);
		return code;
	}
	if (!code)
		code = open_db(c, OPEN_WRITE, &db, NULL, 0, NULL);
	if (!code) {
		int r = cairn_put(db, k.data, k.len, v.data, v.len, 0);
		if (r)
			code = fail_db(c, db, r, "put");
		code = close_db(c, db, code);
	}
	arg_free(&k);
	arg_free(&v);
	return code;
}

static const char del_help[] =
        "Deletes KEY. Deleting a key that has no value succeeds, as in the library.\n\n"
        "  -x, --escapes  KEY holds escapes (\\xNN, \\\\, \\n, \\t, \\r, \\0)\n"
        "  -h, --help     show this help\n";

static int cmd_del(struct ctx *c, int argc, char **argv)
{
	struct arg_bytes k;
	struct cairn_db *db = NULL;
	int code = parse_opts(c, argc, argv, "", NULL, NULL, 1, 1);
	if (code >= 0)
		return code;
	if ((code = arg_decode(c, "KEY", argv[optind], &k)))
		return code;
	if (!(code = open_db(c, OPEN_MAINT, &db, NULL, 0, NULL))) {
		int r = cairn_delete(db, k.data, k.len, 0);
		if (r)
			code = fail_db(c, db, r, "del");
		code = close_db(c, db, code);
	}
	arg_free(&k);
	return code;
}

/* ------------------------------------------------------------------------ */
/* scan                                                                      */

static const char scan_help[] =
        "Lists the keys that start with PREFIX (all keys without it), in order, one\n"
        "per line, escaped: printable ASCII as is, a backslash doubled, other bytes\n"
        "as \\xNN. System keys (first byte 0x00) are hidden unless -a is given.\n\n"
        "  -v             print values too: KEY, a tab, VALUE (escaped)\n"
        "  -n N           stop after N keys\n"
        "  -r             in reverse order\n"
        "  -a             include the system keys\n"
        "      --raw      raw bytes, each key (and value) followed by a NUL byte\n"
        "  -x, --escapes  PREFIX holds escapes (\\xNN, \\\\, \\n, \\t, \\r, \\0)\n"
        "  -h, --help     show this help\n";

struct scan_opts {
	int values, reverse, all, raw;
	uint64_t limit; /* 0: none */
};

static int parse_count(const char *s, uint64_t *out)
{
	char *end;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 10);
	if (errno || end == s || *end || s[0] == '-')
		return -1;
	*out = v;
	return 0;
}

static int scan_opt(void *st, int opt, const char *arg)
{
	struct scan_opts *o = st;
	switch (opt) {
	case 'v':
		o->values = 1;
		return OPT_OK;
	case 'r':
		o->reverse = 1;
		return OPT_OK;
	case 'a':
		o->all = 1;
		return OPT_OK;
	case 'R':
		o->raw = 1;
		return OPT_OK;
	case 'n':
		if (parse_count(arg, &o->limit) || o->limit == 0) {
			fprintf(stderr, "cairn: scan: -n wants a positive count, not '%s'\n", arg);
			return EXIT_USAGE;
		}
		return OPT_OK;
	default:
		return OPT_UNKNOWN;
	}
}

static int has_prefix(const void *k, size_t klen, const struct arg_bytes *p)
{
	return klen >= p->len && (p->len == 0 || memcmp(k, p->data, p->len) == 0);
}

static void print_entry(const struct scan_opts *o, const void *k, size_t klen, const void *v,
                        size_t vlen)
{
	if (o->raw) {
		fwrite(k, 1, klen, stdout);
		putchar(0);
		if (o->values) {
			fwrite(v, 1, vlen, stdout);
			putchar(0);
		}
		return;
	}
	esc_print(stdout, k, klen);
	if (o->values) {
		putchar('\t');
		esc_print(stdout, v, vlen);
	}
	putchar('\n');
}

/* Positions it on the last key with the prefix (or before it). The first key
 * after every key with the prefix is the prefix with its last byte below 0xff
 * incremented and the rest cut; with no such byte, every key follows. */
static void seek_prefix_end(struct cairn_iter *it, const struct arg_bytes *p)
{
	size_t n = p->len;
	while (n > 0 && (unsigned char)p->data[n - 1] == 0xff)
		n--;
	if (n == 0) {
		cairn_iter_seek_last(it);
		return;
	}
	char *succ = malloc(n);
	if (!succ) {
		cairn_iter_seek_last(it);
		return;
	}
	memcpy(succ, p->data, n);
	succ[n - 1] = (char)((unsigned char)succ[n - 1] + 1);
	cairn_iter_seek_for_prev(it, succ, n);
	size_t klen;
	if (cairn_iter_valid(it)) {
		const void *k = cairn_iter_key(it, &klen);
		if (klen == n && memcmp(k, succ, n) == 0)
			cairn_iter_prev(it);
	}
	free(succ);
}

static int run_scan(const struct ctx *c, struct cairn_db *db, const struct scan_opts *o,
                    const struct arg_bytes *p)
{
	struct cairn_iter *it = NULL;
	uint64_t n = 0;
	int r = cairn_iter_new(db, NULL, &it);
	if (r)
		return fail_db(c, db, r, "scan");
	if (o->reverse)
		seek_prefix_end(it, p);
	else if (p->len == 0 && !o->all)
		cairn_iter_seek(it, "\x01", 1); /* past the system keyspace */
	else
		cairn_iter_seek(it, p->data, p->len);
	while (cairn_iter_valid(it) && (!o->limit || n < o->limit)) {
		size_t klen, vlen = 0;
		const char *k = cairn_iter_key(it, &klen);
		if (!has_prefix(k, klen, p))
			break;
		if (!o->all && klen > 0 && k[0] == 0) {
			if (o->reverse)
				break; /* every key before this one is a system key too */
			cairn_iter_next(it);
			continue;
		}
		const void *v = o->values ? cairn_iter_value(it, &vlen) : NULL;
		if (o->values && !v)
			break; /* unreadable: the status and the handle's message say why */
		print_entry(o, k, klen, v, vlen);
		n++;
		if (o->reverse)
			cairn_iter_prev(it);
		else
			cairn_iter_next(it);
	}
	r = cairn_iter_status(it);
	cairn_iter_free(it);
	if (r)
		return fail_db(c, db, r, "scan stopped");
	return EXIT_OK;
}

/* The shape of the read-only listing commands (scan, ls): options, one
 * optional argument, a database opened for reading, one run. */
static int read_command(struct ctx *c, int argc, char **argv, const char *shortopts,
                        int (*on_opt)(void *st, int opt, const char *arg), void *st,
                        const char *argname,
                        int (*run)(const struct ctx *c, struct cairn_db *db, const void *st,
                                   const struct arg_bytes *arg))
{
	struct arg_bytes a = {.data = "", .len = 0};
	struct cairn_db *db = NULL;
	int code = parse_opts(c, argc, argv, shortopts, on_opt, st, 0, 1);
	if (code >= 0)
		return code;
	if (optind < argc && (code = arg_decode(c, argname, argv[optind], &a)))
		return code;
	if (!(code = open_db(c, OPEN_READ, &db, NULL, 0, NULL))) {
		code = run(c, db, st, &a);
		cairn_close(db);
	}
	arg_free(&a);
	return code ? code : finish_stdout(c);
}

static int run_scan_cb(const struct ctx *c, struct cairn_db *db, const void *st,
                       const struct arg_bytes *arg)
{
	return run_scan(c, db, st, arg);
}

static int cmd_scan(struct ctx *c, int argc, char **argv)
{
	struct scan_opts o = {0};
	return read_command(c, argc, argv, "vran:", scan_opt, &o, "PREFIX", run_scan_cb);
}

/* ------------------------------------------------------------------------ */
/* ls                                                                        */

static const char ls_help[] =
        "Lists the directory PATH as cairnfs shows it: the immediate children of\n"
        "PATH/ (the keys that start with it), one per line, a directory followed by\n"
        "'/'. Without PATH, or with '/', the top level. Each directory costs one seek\n"
        "past its subtree, so a listing costs in proportion to the children.\n"
        "Exits with 3 when nothing lies under PATH; when PATH is a key itself, prints\n"
        "it, as ls does for a file.\n\n"
        "  -a             include the system keys at the top level\n"
        "      --raw      raw names, each followed by a NUL byte\n"
        "  -x, --escapes  PATH holds escapes (\\xNN, \\\\, \\n, \\t, \\r, \\0)\n"
        "  -h, --help     show this help\n";

struct ls_opts {
	int all, raw;
};

static int ls_opt(void *st, int opt, const char *arg)
{
	struct ls_opts *o = st;
	(void)arg;
	if (opt == 'a')
		o->all = 1;
	else if (opt == 'R')
		o->raw = 1;
	else
		return OPT_UNKNOWN;
	return OPT_OK;
}

static void print_name(const struct ls_opts *o, const char *name, size_t len, int dir)
{
	if (o->raw)
		fwrite(name, 1, len, stdout);
	else
		esc_print(stdout, name, len);
	if (dir)
		putchar('/');
	putchar(o->raw ? 0 : '\n');
}

/* Lists the children of prefix (which is empty or ends in '/'); returns how
 * many, or a negative error. After a directory child "d", seeks to
 * prefix + "d0": '0' is the byte after '/', so that skips all of "d/...". */
static int64_t list_children(struct cairn_iter *it, const struct ls_opts *o, const char *prefix,
                             size_t plen)
{
	char *target = malloc(plen + CAIRN_MAX_KEY_SIZE + 2);
	int64_t n = 0;
	if (!target)
		return CAIRN_ENOMEM;
	memcpy(target, prefix, plen);
	if (plen == 0 && !o->all)
		cairn_iter_seek(it, "\x01", 1);
	else
		cairn_iter_seek(it, prefix, plen);
	while (cairn_iter_valid(it)) {
		size_t klen;
		const char *k = cairn_iter_key(it, &klen);
		if (klen < plen || memcmp(k, prefix, plen) != 0)
			break;
		const char *rest = k + plen;
		size_t rlen = klen - plen;
		const char *slash = memchr(rest, '/', rlen);
		if (rlen == 0) { /* the key "PATH/" itself: not a child */
			cairn_iter_next(it);
			continue;
		}
		n++;
		if (!slash) {
			print_name(o, rest, rlen, 0);
			cairn_iter_next(it);
			continue;
		}
		size_t clen = (size_t)(slash - rest);
		print_name(o, rest, clen, 1);
		memcpy(target + plen, rest, clen);
		target[plen + clen] = '0';
		cairn_iter_seek(it, target, plen + clen + 1);
	}
	free(target);
	int r = cairn_iter_status(it);
	return r ? r : n;
}

static int run_ls(const struct ctx *c, struct cairn_db *db, const struct ls_opts *o,
                  const struct arg_bytes *path)
{
	const char *p = path->data;
	size_t len = path->len;
	while (len > 0 && p[0] == '/') {
		p++;
		len--;
	}
	while (len > 0 && p[len - 1] == '/')
		len--;
	char *prefix = malloc(len + 2);
	struct cairn_iter *it = NULL;
	if (!prefix)
		return fail(c, EXIT_FAIL, "out of memory");
	memcpy(prefix, p, len);
	if (len)
		prefix[len++] = '/';
	int r = cairn_iter_new(db, NULL, &it);
	int64_t n = r ? r : list_children(it, o, prefix, len);
	cairn_iter_free(it);
	int code = EXIT_OK;
	if (n < 0) {
		code = fail_db(c, db, (int)n, "ls");
	} else if (n == 0 && len > 0) {
		struct cairn_key_info info;
		if (cairn_key_info(db, NULL, prefix, len - 1, &info) == 0) {
			print_name(o, prefix, len - 1, 0);
		} else {
			fprintf(stderr, "cairn: ls: ");
			print_key_err(prefix, len - 1);
			fprintf(stderr, ": no such directory\n");
			code = EXIT_NOTFOUND;
		}
	}
	free(prefix);
	return code;
}

static int run_ls_cb(const struct ctx *c, struct cairn_db *db, const void *st,
                     const struct arg_bytes *arg)
{
	return run_ls(c, db, st, arg);
}

static int cmd_ls(struct ctx *c, int argc, char **argv)
{
	struct ls_opts o = {0};
	return read_command(c, argc, argv, "a", ls_opt, &o, "PATH", run_ls_cb);
}

/* ------------------------------------------------------------------------ */
/* stats                                                                     */

static const char stats_help[] =
        "Prints the engine's statistics: operations, log, memory, caches, bloom\n"
        "filters, flushes and compactions, stalls, and files and bytes per level.\n"
        "When cairnfs holds the database, reads them from its mount instead.\n\n"
        "      --json     as one JSON object\n"
        "  -h, --help     show this help\n";

/* Every plain counter of struct cairn_stats, in the order of cairn.h. */
// clang-format off
#define STATS_FIELDS(X) \
	X(last_sequence) X(puts) X(deletes) X(batches) X(gets) X(gets_found) X(iterators) \
	X(user_bytes_written) X(wal_bytes_written) X(wal_syncs) X(wal_group_commits) \
	X(wal_bytes_dropped) X(memtable_bytes) X(memtable_limit) X(block_cache_bytes) \
	X(block_cache_capacity) X(open_tables) X(max_open_tables) X(memory_in_use) \
	X(block_cache_hits) X(block_cache_misses) X(table_cache_hits) X(table_cache_misses) \
	X(bloom_checks) X(bloom_negatives) X(bloom_false_positives) X(flushes) \
	X(flush_bytes_written) X(compactions) X(compaction_bytes_read) \
	X(compaction_bytes_written) X(pending_compaction_bytes) X(slowdowns) X(slowdown_micros) \
	X(stops) X(stop_micros) X(table_bytes) X(wal_bytes) X(total_disk_bytes) \
	X(blob_files) X(blob_bytes_live) X(blob_bytes_garbage) X(blob_collections) \
	X(blob_bytes_moved) X(compactions_damaged) X(reserve_bytes) X(reserve_releases) \
	X(reserve_restores)
// clang-format on

static void stats_json(const struct cairn_stats *st)
{
	printf("{\n  \"version\": \"%s\",\n", cairn_version());
#define X(f) printf("  \"" #f "\": %" PRIu64 ",\n", st->f);
	STATS_FIELDS(X)
#undef X
	printf("  \"write_amp\": %.3f,\n  \"levels\": [", cairn_stats_write_amp(st));
	for (int l = 0; l < st->num_levels && l < CAIRN_MAX_LEVELS; l++) {
		const struct cairn_level_stats *ls = &st->levels[l];
		printf("%s\n    {\"level\": %d, \"files\": %" PRIu64 ", \"bytes\": %" PRIu64
		       ", \"compactions\": %" PRIu64 ", \"bytes_read\": %" PRIu64
		       ", \"bytes_written\": %" PRIu64 "}",
		       l ? "," : "", l, ls->files, ls->bytes, ls->compactions, ls->bytes_read,
		       ls->bytes_written);
	}
	printf("\n  ]\n}\n");
}

static void stats_human(const struct cairn_stats *st)
{
#define X(f) printf("%-26s %" PRIu64 "\n", #f, st->f);
	STATS_FIELDS(X)
#undef X
	printf("%-26s %.3f\n\n", "write_amp", cairn_stats_write_amp(st));
	printf("level  files         bytes  compactions    bytes_read  bytes_written\n");
	for (int l = 0; l < st->num_levels && l < CAIRN_MAX_LEVELS; l++) {
		const struct cairn_level_stats *ls = &st->levels[l];
		printf("%5d %6" PRIu64 " %13" PRIu64 " %12" PRIu64 " %13" PRIu64 " %14" PRIu64 "\n",
		       l, ls->files, ls->bytes, ls->compactions, ls->bytes_read, ls->bytes_written);
	}
}

static int stats_opt(void *st, int opt, const char *arg)
{
	(void)arg;
	if (opt != 'j')
		return OPT_UNKNOWN;
	*(int *)st = 1;
	return OPT_OK;
}

static int cmd_stats(struct ctx *c, int argc, char **argv)
{
	int json = 0, busy = 0;
	char mnt[PATH_MAX], err[PATH_MAX + 64];
	struct cairn_db *db = NULL;
	struct cairn_stats st;
	int code = parse_opts(c, argc, argv, "", stats_opt, &json, 0, 0);
	if (code >= 0)
		return code;
	code = open_db(c, OPEN_READ, &db, mnt, sizeof(mnt), &busy);
	if (busy) {
		if (mount_cat(mnt, json ? "stats.json" : "stats", stdout, err, sizeof(err)))
			return fail(c, EXIT_FAIL, "%s", err);
		return finish_stdout(c);
	}
	if (code)
		return code;
	int r = cairn_stats_get(db, &st);
	if (r)
		code = fail_db(c, db, r, "stats");
	else if (json)
		stats_json(&st);
	else
		stats_human(&st);
	cairn_close(db);
	return code ? code : finish_stdout(c);
}

/* ------------------------------------------------------------------------ */
/* flush, compact, checkpoint                                                */

static const char flush_help[] =
        "Writes the memtable to a table file and waits for it, so the log can be\n"
        "dropped. When cairnfs holds the database, asks it through its mount.\n\n"
        "  -h, --help     show this help\n";

static const char compact_help[] =
        "Compacts the whole database down to its last level, dropping overwritten\n"
        "and deleted entries, and waits for it; shows a progress bar on a terminal.\n"
        "When cairnfs holds the database, asks it through its mount.\n\n"
        "  -h, --help     show this help\n";

static const char checkpoint_help[] =
        "Creates in DEST (which must not exist) a consistent copy of the database as\n"
        "of now, which cairn and cairnfs can open: hard links to the table files and\n"
        "a new manifest. Safe while writes go on. Because tables never change, rsync\n"
        "of successive checkpoints copies only the new tables. When cairnfs holds\n"
        "the database, asks it through its mount.\n\n"
        "  -h, --help     show this help\n";

/* Sends a command line to the cairnfs mount that holds the database. */
static int via_mount(const struct ctx *c, const char *mnt, const char *line)
{
	char err[PATH_MAX + 128];
	if (mount_control(mnt, line, err, sizeof(err)))
		return fail(c, EXIT_FAIL, "cairnfs at %s refused: %s", mnt, err);
	return EXIT_OK;
}

static int cmd_flush(struct ctx *c, int argc, char **argv)
{
	char mnt[PATH_MAX];
	struct cairn_db *db = NULL;
	int busy = 0;
	int code = parse_opts(c, argc, argv, "", NULL, NULL, 0, 0);
	if (code >= 0)
		return code;
	code = open_db(c, OPEN_MAINT, &db, mnt, sizeof(mnt), &busy);
	if (busy)
		return via_mount(c, mnt, "flush\n");
	if (code)
		return code;
	int r = cairn_flush(db);
	if (r)
		code = fail_db(c, db, r, "flush");
	return close_db(c, db, code);
}

static uint64_t sample_compaction(void *ctx)
{
	struct cairn_db *db = ((void **)ctx)[0];
	uint64_t base = *(uint64_t *)((void **)ctx)[1];
	struct cairn_stats st;
	if (cairn_stats_get(db, &st))
		return 0;
	return st.compaction_bytes_written - base;
}

static int cmd_compact(struct ctx *c, int argc, char **argv)
{
	char mnt[PATH_MAX];
	struct cairn_db *db = NULL;
	struct cairn_stats st;
	struct progress p;
	int busy = 0;
	int code = parse_opts(c, argc, argv, "", NULL, NULL, 0, 0);
	if (code >= 0)
		return code;
	code = open_db(c, OPEN_MAINT, &db, mnt, sizeof(mnt), &busy);
	if (busy)
		return via_mount(c, mnt, "compact\n");
	if (code)
		return code;
	memset(&st, 0, sizeof(st));
	cairn_stats_get(db, &st);
	uint64_t base = st.compaction_bytes_written;
	void *sctx[2] = {db, &base};
	progress_init(&p, "compact", st.table_bytes);
	struct progress_poller *pp = progress_poll_start(&p, sample_compaction, sctx);
	int r = cairn_compact_range(db, NULL, 0, NULL, 0);
	progress_poll_stop(pp);
	progress_finish(&p);
	if (r)
		code = fail_db(c, db, r, "compact");
	return close_db(c, db, code);
}

/* The bytes in a directory's files (a checkpoint being made). */
static uint64_t sample_dir_bytes(void *ctx)
{
	const char *dir = ctx;
	char path[PATH_MAX];
	uint64_t sum = 0;
	DIR *d = opendir(dir);
	if (!d)
		return 0;
	struct dirent *e;
	while ((e = readdir(d)) != NULL) {
		struct stat sb;
		snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
		if (e->d_name[0] != '.' && stat(path, &sb) == 0 && S_ISREG(sb.st_mode))
			sum += (uint64_t)sb.st_size;
	}
	closedir(d);
	return sum;
}

/* The absolute form of a path that does not exist yet: its parent resolved
 * and its last component appended. */
static int absolute_dest(const char *dest, char *out, size_t len)
{
	char parent[PATH_MAX], resolved[PATH_MAX];
	const char *slash = strrchr(dest, '/');
	const char *base = slash ? slash + 1 : dest;
	if (!*base || strlen(dest) >= sizeof(parent))
		return -1;
	if (!slash)
		strcpy(parent, ".");
	else if (slash == dest)
		strcpy(parent, "/");
	else
		snprintf(parent, sizeof(parent), "%.*s", (int)(slash - dest), dest);
	if (!realpath(parent, resolved))
		return -1;
	int n = snprintf(out, len, "%s/%s", strcmp(resolved, "/") ? resolved : "", base);
	return n < 0 || (size_t)n >= len ? -1 : 0;
}

static int cmd_checkpoint(struct ctx *c, int argc, char **argv)
{
	char mnt[PATH_MAX], abs[PATH_MAX], line[PATH_MAX + 16];
	struct cairn_db *db = NULL;
	struct cairn_stats st;
	struct progress p;
	int busy = 0;
	int code = parse_opts(c, argc, argv, "", NULL, NULL, 1, 1);
	if (code >= 0)
		return code;
	const char *dest = argv[optind];
	code = open_db(c, OPEN_MAINT, &db, mnt, sizeof(mnt), &busy);
	if (busy) {
		if (absolute_dest(dest, abs, sizeof(abs)) || strchr(abs, '\n'))
			return fail(c, EXIT_FAIL,
			            "'%s': the directory it would be made in does "
			            "not exist",
			            dest);
		snprintf(line, sizeof(line), "checkpoint %s\n", abs);
		return via_mount(c, mnt, line);
	}
	if (code)
		return code;
	memset(&st, 0, sizeof(st));
	cairn_stats_get(db, &st);
	progress_init(&p, "checkpoint", st.table_bytes + st.wal_bytes);
	struct progress_poller *pp = progress_poll_start(&p, sample_dir_bytes, (void *)dest);
	int r = cairn_checkpoint(db, dest);
	progress_poll_stop(pp);
	progress_finish(&p);
	if (r == CAIRN_EEXIST)
		code = fail(c, EXIT_FAIL, "'%s' already exists", dest);
	else if (r)
		code = fail_db(c, db, r, "checkpoint");
	return close_db(c, db, code);
}

/* ------------------------------------------------------------------------ */
/* check, dump                                                               */

static const char check_help[] =
        "Reads every file of the database without opening it (no lock, nothing\n"
        "written, so it works while the database is in use): CURRENT, the manifest,\n"
        "every log record and every table block, verifying checksums and key order,\n"
        "that every file the manifest names exists with its size, and that no file\n"
        "is left over. Prints each problem as FILE:OFFSET: WHAT and exits with 1\n"
        "when there is any; prints nothing and exits with 0 when all is well.\n\n"
        "  -h, --help     show this help\n";

static const char dump_help[] =
        "Prints a log (NNNNNN.log), manifest (MANIFEST-NNNNNN), table (NNNNNN.sst),\n"
        "blob (NNNNNN.blob) or CURRENT file in readable form: headers, then each\n"
        "record or entry with its offset; keys and values escaped. The kind comes\n"
        "from the name or, when the name does not tell, from the file's magic\n"
        "number. Works on any file, database open or not.\n\n"
        "  -h, --help     show this help\n";

struct check_state {
	struct progress p;
};

static void check_problem(void *ctx, const char *file, uint64_t off, const char *what)
{
	(void)ctx;
	printf("%s:%" PRIu64 ": %s\n", file, off, what);
}

static void check_progress(void *ctx, uint64_t done, uint64_t total)
{
	struct check_state *s = ctx;
	progress_update(&s->p, done, total);
}

static int cmd_check(struct ctx *c, int argc, char **argv)
{
	struct check_state s;
	uint64_t problems = 0;
	int code = parse_opts(c, argc, argv, "", NULL, NULL, 0, 0);
	if (code >= 0)
		return code;
	struct stat sb;
	if (stat(c->dbdir, &sb) || !S_ISDIR(sb.st_mode))
		return fail(c, EXIT_FAIL, "no database directory at '%s'", c->dbdir);
	progress_init(&s.p, "check", 0);
	struct cairn_check_callbacks cb = {check_problem, check_progress, &s};
	int r = cairn_check(c->dbdir, &cb, &problems);
	progress_finish(&s.p);
	if (r)
		return fail(c, EXIT_FAIL, "cannot read '%s': %s", c->dbdir, cairn_strerror(r));
	if ((code = finish_stdout(c)))
		return code;
	if (problems)
		return fail(c, EXIT_FAIL, "%" PRIu64 " problem%s found in '%s'", problems,
		            problems == 1 ? "" : "s", c->dbdir);
	return EXIT_OK;
}

static const char repair_help[] =
        "Rebuilds a database that will not open (CURRENT or the manifest missing or\n"
        "damaged, a damaged table, log or blob file) from what its files still hold,\n"
        "as LevelDB's RepairDB does: every table is read (a damaged one block by\n"
        "block), every whole log record is replayed (damaged ones are skipped), the\n"
        "newest version of each key found wins, and a new manifest and CURRENT are\n"
        "written. Nothing is deleted: the replaced files (old CURRENT, manifests,\n"
        "logs and tables, blob files no key refers to) move into DBDIR/lost/.\n"
        "Prints what was read, each byte range lost and a summary; exits 1 if\n"
        "anything was lost. The database must not be open. DBDIR may also be given\n"
        "as an argument.\n\n"
        "  -h, --help     show this help\n";

static void repair_note(void *ctx, const char *file, uint64_t off, uint64_t len, const char *what)
{
	(void)ctx;
	(void)len;
	if (!*file)
		printf("%s\n", what);
	else if (off)
		printf("%s:%" PRIu64 ": %s\n", file, off, what);
	else
		printf("%s: %s\n", file, what);
}

static int cmd_repair(struct ctx *c, int argc, char **argv)
{
	char err[1024] = "";
	struct cairn_repair_report rep;
	int code = parse_opts(c, argc, argv, "", NULL, NULL, 0, 1);
	if (code >= 0)
		return code;
	if (optind < argc)
		c->dbdir = argv[optind];
	struct cairn_repair_callbacks cb = {repair_note, NULL};
	int r = cairn_repair(c->dbdir, NULL, &cb, &rep, err, sizeof(err));
	if (r)
		return fail(c, EXIT_FAIL, "cannot repair '%s': %s", c->dbdir,
		            err[0] ? err : cairn_strerror(r));
	printf("kept %" PRIu64 " keys (%" PRIu64 " entries read from %" PRIu64
	       " tables and %" PRIu64 " logs); %" PRIu64 " files moved into lost/\n",
	       rep.keys_kept, rep.entries_read, rep.tables, rep.logs, rep.files_set_aside);
	if ((code = finish_stdout(c)))
		return code;
	uint64_t damaged = rep.tables_damaged + rep.logs_damaged + rep.blob_files_damaged;
	if (damaged || rep.blob_refs_broken)
		return fail(c, EXIT_FAIL,
		            "lost %" PRIu64 " bytes in %" PRIu64 " damaged files; %" PRIu64
		            " keys keep a large value that cannot be read",
		            rep.bytes_lost, damaged, rep.blob_refs_broken);
	return EXIT_OK;
}

static void dump_line(void *ctx, const char *line)
{
	(void)ctx;
	puts(line);
}

static int cmd_dump(struct ctx *c, int argc, char **argv)
{
	char err[1024] = "";
	int code = parse_opts(c, argc, argv, "", NULL, NULL, 1, 1);
	if (code >= 0)
		return code;
	int r = cairn_dump_file(argv[optind], dump_line, NULL, err, sizeof(err));
	int out = finish_stdout(c);
	if (r)
		return fail(c, EXIT_FAIL, "%s", err[0] ? err : cairn_strerror(r));
	return out;
}

/* ------------------------------------------------------------------------ */
/* help and dispatch                                                         */

static int cmd_help(struct ctx *c, int argc, char **argv);

static const char help_help[] = "Shows the list of commands, or the help of COMMAND.\n";

static const struct command commands[] = {
        {"get", cmd_get, "get [-x] KEY", get_help},
        {"put", cmd_put, "put [-x] KEY [VALUE]", put_help},
        {"del", cmd_del, "del [-x] KEY", del_help},
        {"scan", cmd_scan, "scan [-varx] [-n N] [--raw] [PREFIX]", scan_help},
        {"ls", cmd_ls, "ls [-ax] [--raw] [PATH]", ls_help},
        {"stats", cmd_stats, "stats [--json]", stats_help},
        {"flush", cmd_flush, "flush", flush_help},
        {"compact", cmd_compact, "compact", compact_help},
        {"check", cmd_check, "check", check_help},
        {"checkpoint", cmd_checkpoint, "checkpoint DEST", checkpoint_help},
        {"dump", cmd_dump, "dump FILE", dump_help},
        {"repair", cmd_repair, "repair [DBDIR]", repair_help},
        {"help", cmd_help, "help [COMMAND]", help_help},
};

#define NCOMMANDS (sizeof(commands) / sizeof(commands[0]))

static const struct command *find_command(const char *name)
{
	for (size_t i = 0; name && i < NCOMMANDS; i++)
		if (strcmp(commands[i].name, name) == 0)
			return &commands[i];
	return NULL;
}

static void main_usage(FILE *f)
{
	fprintf(f, "Usage: cairn [-d DBDIR] [-x] COMMAND [ARGS]\n"
	           "       cairn --help | --version | COMMAND --help\n\n"
	           "A tool for cairn databases. DBDIR is -d DBDIR, else $CAIRN_DB, else\n"
	           "./" DEFAULT_DBDIR ".\n\nCommands:\n");
	for (size_t i = 0; i < NCOMMANDS; i++)
		fprintf(f, "  %s\n", commands[i].synopsis);
	fprintf(f, "\nOptions:\n"
	           "  -d, --db DBDIR   the database directory\n"
	           "  -x, --escapes    KEY, VALUE, PREFIX and PATH arguments hold escapes\n"
	           "                   (\\xNN, \\\\, \\n, \\t, \\r, \\0)\n"
	           "  -h, --help       show this help\n"
	           "  -V, --version    show the version\n\n"
	           "Exit status: 0 success, 1 failure, 2 usage error, 3 not found.\n"
	           "See cairn(1).\n");
}

static int cmd_help(struct ctx *c, int argc, char **argv)
{
	int code = parse_opts(c, argc, argv, "", NULL, NULL, 0, 1);
	if (code >= 0)
		return code;
	if (optind == argc) {
		main_usage(stdout);
		return EXIT_OK;
	}
	const struct command *cmd = find_command(argv[optind]);
	if (!cmd)
		return usage_error(c, "no command '%s'", argv[optind]);
	c->cmd = cmd->name;
	return print_command_help(c);
}

int main(int argc, char **argv)
{
	static const struct option global_long[] = {
	        {"db", required_argument, NULL, 'd'},
	        {"escapes", no_argument, NULL, 'x'},
	        {"help", no_argument, NULL, 'h'},
	        {"version", no_argument, NULL, 'V'},
	        {NULL, 0, NULL, 0},
	};
	struct ctx c = {.dbdir = getenv("CAIRN_DB")};
	if (!c.dbdir || !*c.dbdir)
		c.dbdir = DEFAULT_DBDIR;
	opterr = 0;
	for (;;) {
		int o = getopt_long(argc, argv, "+:d:xhV", global_long, NULL);
		if (o == -1)
			break;
		switch (o) {
		case 'd':
			c.dbdir = optarg;
			break;
		case 'x':
			c.escapes = 1;
			break;
		case 'h':
			main_usage(stdout);
			return EXIT_OK;
		case 'V':
			printf("cairn %s (libcairn %s)\n", CAIRN_VERSION_STRING, cairn_version());
			return EXIT_OK;
		case ':':
			return usage_error(&c, "option '%s' needs a value", argv[optind - 1]);
		default:
			return usage_error(&c, "unknown option '%s'", argv[optind - 1]);
		}
	}
	if (optind >= argc) {
		main_usage(stderr);
		return EXIT_USAGE;
	}
	const struct command *cmd = find_command(argv[optind]);
	if (!cmd)
		return usage_error(&c, "no command '%s'", argv[optind]);
	c.cmd = cmd->name;
	return cmd->run(&c, argc - optind, argv + optind);
}
