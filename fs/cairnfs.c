/*
 * cairnfs.c: statfs, access, init, the operations table and the lifecycle.
 * The daemon as a whole, its state and its locking rule: cfs.h.
 */
#include <sys/utsname.h>

#include "cfs.h"

/* ---- the rest ---------------------------------------------------------------- */

static void cfs_statfs(fuse_req_t req, fuse_ino_t ino)
{
	struct cairnfs *fs = cfs_of(req);
	struct statvfs sv;

	(void)ino;
	if (statvfs(fs->dbdir, &sv) != 0) {
		fuse_reply_err(req, errno);
		return;
	}
	sv.f_namemax = PK_NAME_MAX;
	fuse_reply_statfs(req, &sv);
}

static void cfs_access(fuse_req_t req, fuse_ino_t ino, int mask)
{
	struct cairnfs *fs = cfs_of(req);
	const struct fuse_ctx *ctx = fuse_req_ctx(req);
	struct stat st;
	mode_t bits;
	int rc;

	pthread_mutex_lock(&fs->mu);
	rc = cfs_stat_ino(fs, ino, &st);
	pthread_mutex_unlock(&fs->mu);
	if (!rc && (mask & W_OK) && fs->cfg.read_only)
		rc = -EROFS;
	if (rc || mask == F_OK) {
		fuse_reply_err(req, -rc);
		return;
	}
	if (ctx->uid == 0) {
		/* root may do anything but execute a file nobody may execute */
		bits = (mask & X_OK) && !S_ISDIR(st.st_mode) && !(st.st_mode & 0111);
		fuse_reply_err(req, bits ? EACCES : 0);
		return;
	}
	if (ctx->uid == st.st_uid)
		bits = (st.st_mode >> 6) & 7;
	else if (ctx->gid == st.st_gid)
		bits = (st.st_mode >> 3) & 7;
	else
		bits = st.st_mode & 7;
	fuse_reply_err(req, ((unsigned)mask & ~bits & 7) ? EACCES : 0);
}

/* Whether the running kernel writes a file's dirty pages back at close(2)
 * even after flush was answered ENOSYS: Linux 5.8 and later ("fuse: always
 * flush dirty data on close(2)"). Earlier kernels skip the write-back once
 * flush is ENOSYS, so close would return before the data reached the
 * daemon. An unreadable version counts as old: answering flush costs a
 * round trip per close, skipping it could lose the close's guarantee. */
static int cfs_kernel_flushes_at_close(void)
{
	struct utsname u;
	unsigned maj = 0, min = 0;

	if (uname(&u) || sscanf(u.release, "%u.%u", &maj, &min) != 2)
		return 0;
	return maj > 5 || (maj == 5 && min >= 8);
}

static void cfs_init(void *userdata, struct fuse_conn_info *conn)
{
	struct cairnfs *fs = userdata;

	fs->flush_enosys = cfs_kernel_flushes_at_close();
	if (!fs->flush_enosys && !fs->cfg.flush)
		fuse_log(FUSE_LOG_NOTICE, "cairnfs: kernel older than 5.8: flush is answered at "
		                          "every close so the kernel writes dirty pages back\n");

	if (conn->capable & FUSE_CAP_WRITEBACK_CACHE && fs->cfg.writeback && !fs->cfg.read_only)
		conn->want |= FUSE_CAP_WRITEBACK_CACHE;
	if (conn->capable & FUSE_CAP_CACHE_SYMLINKS)
		conn->want |= FUSE_CAP_CACHE_SYMLINKS;
	conn->want &= ~(unsigned)(FUSE_CAP_READDIRPLUS | FUSE_CAP_READDIRPLUS_AUTO);
	if (fs->cfg.readdirplus && conn->capable & FUSE_CAP_READDIRPLUS)
		conn->want |= FUSE_CAP_READDIRPLUS;
	if (fs->cfg.readdirplus == 2 && conn->capable & FUSE_CAP_READDIRPLUS_AUTO)
		conn->want |= FUSE_CAP_READDIRPLUS_AUTO;
	/* without open the kernel would truncate O_TRUNC opens on its own */
	if (!fs->cfg.open)
		conn->want &= ~(unsigned)FUSE_CAP_ATOMIC_O_TRUNC;
	/* The kernel then clears setuid and setgid itself on write, truncate and
	 * chown, with a setattr of the mode (the writeback cache writes without
	 * telling the daemon who wrote). */
	conn->want &= ~(unsigned)FUSE_CAP_HANDLE_KILLPRIV;
	conn->max_write = CFS_MAX_WRITE;
	conn->time_gran = 1;
}

/* Waits (a few seconds at most) for the threads telling the kernel of
 * failed writes (fileio.c): they use the session, which is freed after the
 * destroy callback. After the unmount their notifications fail at once. */
static void cfs_notify_drain(struct cairnfs *fs)
{
	for (int i = 0; i < 500; i++) {
		unsigned busy;

		pthread_mutex_lock(&fs->mu);
		busy = fs->notifying;
		pthread_mutex_unlock(&fs->mu);
		if (!busy)
			return;
		nanosleep(&(struct timespec){0, 10 * 1000 * 1000}, NULL);
	}
}

static void cfs_destroy(void *userdata)
{
	struct cairnfs *fs = userdata;
	int rc;

	cfs_notify_drain(fs);
	rc = cairnfs_commit_all(fs);

	if (rc)
		fuse_log(FUSE_LOG_ERR, "cairnfs: commit at unmount: %s\n", strerror(-rc));
}

static const struct fuse_lowlevel_ops cfs_ops = {
        .init = cfs_init,
        .destroy = cfs_destroy,
        .lookup = cfs_lookup,
        .forget = cfs_forget,
        .forget_multi = cfs_forget_multi,
        .getattr = cfs_getattr,
        .setattr = cfs_setattr,
        .readlink = cfs_readlink,
        .mknod = cfs_mknod,
        .mkdir = cfs_mkdir,
        .unlink = cfs_unlink,
        .lseek = cfs_lseek,
        .fallocate = cfs_fallocate,
        .rmdir = cfs_rmdir,
        .symlink = cfs_symlink,
        .rename = cfs_rename,
        .link = cfs_link,
        .open = cfs_open,
        .read = cfs_read,
        .write = cfs_write,
        .flush = cfs_flush,
        .release = cfs_release,
        .fsync = cfs_fsync,
        .opendir = cfs_opendir,
        .readdir = cfs_readdir,
        .readdirplus = cfs_readdirplus,
        .releasedir = cfs_releasedir,
        .fsyncdir = cfs_fsyncdir,
        .statfs = cfs_statfs,
        .setxattr = cfs_setxattr,
        .getxattr = cfs_getxattr,
        .listxattr = cfs_listxattr,
        .removexattr = cfs_removexattr,
        .access = cfs_access,
        .create = cfs_create,
};

const struct fuse_lowlevel_ops *cairnfs_ops(void)
{
	return &cfs_ops;
}

/* ---- lifecycle ---------------------------------------------------------------- */

/* The first extent id nothing uses: the high-water mark commits keep
 * (cfs_next_id_key), and past the largest id any piece has, so a new large
 * file never meets pieces or records left by anything before it. */
static int cfs_first_ext_id(struct cairnfs *fs, uint64_t *next)
{
	char end[2] = {'\0', PK_TAG_PIECE + 1};
	unsigned char v[8];
	struct cairn_iter *it;
	uint64_t id, idx;
	size_t klen, got = 0;
	int rc = cairn_get_range(fs->db, NULL, cfs_next_id_key, sizeof(cfs_next_id_key), 0, v,
	                         sizeof(v), &got);

	if (rc && rc != CAIRN_ENOTFOUND)
		return -cfs_errno(rc, EIO);
	*next = 1;
	if (!rc && got == sizeof(v)) {
		uint64_t hw = 0;

		for (int i = 7; i >= 0; i--)
			hw = hw << 8 | v[i];
		if (hw > *next)
			*next = hw;
	}
	rc = cfs_iter(fs, &it);
	if (rc)
		return rc;
	cairn_iter_seek_for_prev(it, end, sizeof(end));
	if (cairn_iter_valid(it)) {
		const char *key = cairn_iter_key(it, &klen);

		if (!ext_key_decode(key, klen, &id, &idx) && id < UINT64_MAX && id + 1 > *next)
			*next = id + 1;
	}
	rc = cairn_iter_status(it);
	cairn_iter_free(it);
	return rc ? -cfs_errno(rc, EIO) : 0;
}

/* A read-only open takes no LOCK in the engine, so beside a read-write
 * process it would serve a snapshot that never moves. A read-only mount
 * takes a shared flock on LOCK instead: it fails while a writer holds the
 * database (-EBUSY, so main.c waits for one that is closing) and keeps a
 * writer out while it is mounted. */
/* Opens the LOCK file (path) of a read-only mount into *fd (-1 when there
 * is none to lock): 0 or a negative errno (message in err).
 *
 * A database without LOCK (a checkpoint, a copy) gets one, or a writer
 * coming later would create its own and change the database under the
 * mount. Root gives it to the directory's owner, who must still be able to
 * open it read-write. Where none may be created (read-only media, a
 * directory the user cannot write) the mount goes without: a writer with
 * the same rights could not write there either. */
static int cfs_lock_open(struct cairnfs *fs, const char *path, int *fd, char *err, size_t errlen)
{
	struct stat st;
	int r;

	*fd = open(path, O_RDONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
	if (*fd >= 0 && geteuid() == 0 && !stat(fs->dbdir, &st) &&
	    fchown(*fd, st.st_uid, st.st_gid))
		fuse_log(FUSE_LOG_WARNING, "cairnfs: cannot give '%s' to uid %u: %s\n", path,
		         (unsigned)st.st_uid, strerror(errno));
	if (*fd < 0)
		*fd = open(path, O_RDONLY | O_CLOEXEC);
	if (*fd >= 0)
		return 0;
	r = errno;
	if (r == ENOENT || r == EROFS || r == EACCES)
		return 0;
	snprintf(err, errlen, "cannot open '%s': %s", path, strerror(r));
	return -r;
}

static int cfs_lock_shared(struct cairnfs *fs, char *err, size_t errlen)
{
	char path[PATH_MAX], pid[32] = "";
	int fd, r;
	ssize_t n;

	fs->ro_lock = -1;
	if (!fs->cfg.read_only)
		return 0;
	snprintf(path, sizeof(path), "%s/CURRENT", fs->dbdir);
	if (access(path, F_OK))
		return 0; /* no database: cairn_open says what is wrong */
	snprintf(path, sizeof(path), "%s/LOCK", fs->dbdir);
	r = cfs_lock_open(fs, path, &fd, err, errlen);
	if (r || fd < 0)
		return r;
	do {
		r = flock(fd, LOCK_SH | LOCK_NB);
	} while (r < 0 && errno == EINTR);
	if (r == 0) {
		fs->ro_lock = fd;
		return 0;
	}
	r = errno;
	n = pread(fd, pid, sizeof(pid) - 1, 0);
	pid[n > 0 ? n : 0] = '\0';
	pid[strcspn(pid, "\n")] = '\0';
	close(fd);
	if (r != EWOULDBLOCK) {
		snprintf(err, errlen, "cannot lock '%s': %s", path, strerror(r));
		return -r;
	}
	snprintf(err, errlen,
	         "the database is in use by a read-write process%s%s (its LOCK is held); "
	         "a read-only mount beside it would not see its changes",
	         pid[0] ? " pid " : "", pid);
	return -EBUSY;
}

void cairnfs_config_init(struct cairnfs_config *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->sync_interval_ms = -1;
	cfg->background_threads = -1;
	cfg->write_buffer = 4u << 20;
	cfg->write_buffer_total = 64u << 20;
	cfg->inline_max = 1u << 20;
	cfg->timeout = 1e6;
	cfg->writeback = 1;
	cfg->readdirplus = 2;
	cfg->open = 0;
	cfg->flush = 0;
	cfg->buffer_cache = 4u << 20;
	cfg->uid = getuid();
	cfg->gid = getgid();
}

/* Closes the database (when open) and the read-only lock, and frees fs.
 * Returns rc, or the failure of the close when rc is 0. */
static int cfs_state_free(struct cairnfs *fs, int rc)
{
	if (fs->db) {
		int rc2 = cairn_close(fs->db);

		if (rc2 && !rc)
			rc = -cfs_errno(rc2, EIO);
	}
	if (fs->ro_lock >= 0)
		close(fs->ro_lock);
	pthread_mutex_destroy(&fs->mu);
	bufpool_destroy(&fs->pool);
	free(fs->dbdir);
	free(fs);
	return rc;
}

int cairnfs_open(const struct cairnfs_config *cfg, struct cairnfs **fsp, char *err, size_t errlen)
{
	struct cairn_options o;
	struct cairnfs *fs;
	int rc;

	*fsp = NULL;
	fs = calloc(1, sizeof(*fs));
	if (!fs || !(fs->dbdir = strdup(cfg->dbdir))) {
		free(fs);
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	fs->cfg = *cfg;
	fs->cfg.dbdir = fs->dbdir;
	rc = cfs_lock_shared(fs, err, errlen);
	if (rc) {
		free(fs->dbdir);
		free(fs);
		return rc;
	}
	cairn_options_init(&o);
	o.create_if_missing = 1;
	o.read_only = cfg->read_only;
	if (cfg->memtable_size)
		o.memtable_size = cfg->memtable_size;
	if (cfg->cache_size)
		o.block_cache_size = cfg->cache_size;
	if (cfg->has_space_reserve)
		o.space_reserve = cfg->space_reserve;
	if (cfg->max_open_tables)
		o.max_open_tables = cfg->max_open_tables;
	if (cfg->sync_interval_ms >= 0)
		o.sync_interval_ms = cfg->sync_interval_ms;
	if (cfg->background_threads >= 0)
		o.background_threads = cfg->background_threads;
	pthread_mutex_init(&fs->mu, NULL);
	bufpool_init(&fs->pool, cfg->buffer_cache);
	rc = cairn_open(cfg->dbdir, &o, &fs->db, err, errlen);
	if (rc) {
		fs->db = NULL;
		return cfs_state_free(fs, -cfs_errno(rc, EINVAL));
	}
	fs->root.ino = CFS_INO_ROOT;
	fs->root.hashed = 1;
	fs->root.name = NULL;
	fs->next_ino = CFS_INO_FIRST;
	fs->start_ns = cfs_now();
	rc = cfs_first_ext_id(fs, &fs->next_ext_id);
	if (!rc)
		rc = cfs_ino_load(fs);
	if (!rc && !cfg->read_only)
		rc = cfs_orphans_clean(fs);
	if (!rc) {
		struct cairn_iter *it = NULL;

		rc = cfs_iter(fs, &it);
		if (!rc)
			cfs_may_have_xattrs(fs, it); /* learn it now: getxattr asks often */
		cairn_iter_free(it);
	}
	if (rc) {
		snprintf(err, errlen, "cannot read the extent, inode and orphan keys: %s",
		         strerror(-rc));
		return cfs_state_free(fs, rc);
	}
	*fsp = fs;
	return 0;
}

void cairnfs_set_session(struct cairnfs *fs, struct fuse_session *se)
{
	fs->se = se;
}

int cairnfs_close(struct cairnfs *fs)
{
	int rc, rc2;

	if (!fs)
		return 0;
	cfs_sweeper_stop(fs);
	cfs_notify_drain(fs);
	rc = cairnfs_commit_all(fs);
	free(fs->gone); /* the scan below deletes them */
	if (!fs->cfg.read_only) {
		/* what the kernel still held when it let go */
		rc2 = cfs_orphans_clean(fs);
		if (rc2 && !rc)
			rc = rc2;
	}
	for (size_t i = 0; i < fs->by_ino.size; i++) {
		struct cfs_node *n = fs->by_ino.b[i], *next;

		for (; n; n = next) {
			next = n->ino_next;
			cfs_wb_drop(fs, n);
			free(n->mo);
			free(n->name);
			free(n);
		}
	}
	free(fs->by_ino.b);
	free(fs->by_link);
	free(fs->by_name.b);
	free(fs->lcache.names);
	free(fs->lcache.d);
	free(fs->ctl_text);
	while (fs->ctls) {
		struct cfs_ctlsnap *c = fs->ctls;

		fs->ctls = c->next;
		free(c->buf);
		free(c);
	}
	return cfs_state_free(fs, rc);
}

struct cairn_db *cairnfs_db(struct cairnfs *fs)
{
	return fs->db;
}

const char *cairnfs_dbdir(struct cairnfs *fs)
{
	return fs->dbdir;
}

const char *cairnfs_mountpoint(struct cairnfs *fs)
{
	return fs->cfg.mountpoint;
}

/* Resident bytes of this process, 0 when /proc cannot say. */
static uint64_t cfs_rss(void)
{
	unsigned long long size, resident;
	FILE *f = fopen("/proc/self/statm", "r");
	int ok;

	if (!f)
		return 0;
	ok = fscanf(f, "%llu %llu", &size, &resident) == 2;
	fclose(f);
	return ok ? (uint64_t)resident * (uint64_t)sysconf(_SC_PAGESIZE) : 0;
}

void cairnfs_counters(struct cairnfs *fs, struct cairnfs_counters *c)
{
	struct bufpool_figures b;

	pthread_mutex_lock(&fs->mu);
	*c = fs->cnt;
	c->buffered_bytes = fs->buffered;
	c->node_bytes = fs->cnt.nodes * sizeof(struct cfs_node) + fs->name_bytes +
	                (fs->by_name.size + fs->by_ino.size) * sizeof(struct cfs_node *);
	c->listing_bytes = fs->listing_bytes;
	pthread_mutex_unlock(&fs->mu);
	bufpool_figures(&fs->pool, &b);
	c->buffers_in_use = b.in_use;
	c->buffers_cached = b.cached;
	c->buffers_limit = b.limit;
	c->buffers_maps = b.maps;
	c->buffers_reused = b.reuses;
	c->rss_bytes = cfs_rss();
}
