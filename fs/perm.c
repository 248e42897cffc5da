/*
 * perm.c: the owner and mode of a new entry.
 * The daemon as a whole, its state and its locking rule: cfs.h.
 *
 * The kernel checks every access itself (cairnfs always mounts with
 * default_permissions) and clears setuid and setgid on write, truncate and
 * chown with a setattr (HANDLE_KILLPRIV is off). What is left to the daemon
 * is what ext4's inode_init_owner does: in a setgid directory a new entry
 * takes the directory's group, and a new directory keeps the setgid bit.
 */
#include "cfs.h"

/* Learns the mode and group of directory node pn, under fs->mu. Only this
 * daemon changes the database, so once learned they stay true until a
 * setattr of pn (cfs_owner_forget). */
static int cfs_owner_learn(struct cairnfs *fs, struct cfs_node *pn)
{
	char path[PK_KEY_BUF];
	struct stat st;
	size_t plen;
	int rc;

	if (pn->own_known)
		return 0;
	rc = cfs_node_path(fs, pn, path, &plen);
	if (rc)
		return rc;
	rc = cfs_stat_path(fs, path, plen, &st, NULL, NULL);
	if (rc < 0)
		return rc;
	pn->own_mode = st.st_mode & 07777;
	pn->own_gid = st.st_gid;
	pn->own_known = 1;
	return 0;
}

/* Adjusts the group (*gid, the caller's) and *mode of a new entry of the
 * given meta type under directory pn, under fs->mu. */
int cfs_new_owner(struct cairnfs *fs, struct cfs_node *pn, int type, mode_t *mode, uint32_t *gid)
{
	int rc = cfs_owner_learn(fs, pn);

	if (rc)
		return rc;
	if (!(pn->own_mode & S_ISGID))
		return 0;
	*gid = pn->own_gid;
	if (type == META_DIR)
		*mode |= S_ISGID;
	return 0;
}

void cfs_owner_forget(struct cfs_node *n)
{
	n->own_known = 0;
}
