# Shell helpers shared by the cairnfs tests (sourced, not run).

# ok / bad DESCRIPTION: count and print one result in $pass / $fail.
ok() { pass=$((pass + 1)); echo "ok   - $1"; }
bad() { fail=$((fail + 1)); echo "FAIL - $1"; }
# check DESCRIPTION COMMAND...: passes when the command succeeds.
check() {
	local d=$1
	shift
	if "$@" >/dev/null 2>&1; then ok "$d"; else bad "$d"; fi
}

# mount_fs [CAIRNFS OPTIONS...]: starts "$CAIRNFS" -f on $DB at $MNT in the
# background (its pid in $PID, its output appended to $T/log) and waits up to
# 10 s for the mount; on failure prints the log and returns 1.
mount_fs() {
	"$CAIRNFS" -f ${CAIRNFS_OPTS:+-o "$CAIRNFS_OPTS"} "$@" "$DB" "$MNT" >>"$T/log" 2>&1 &
	PID=$!
	for _ in $(seq 100); do
		mountpoint -q "$MNT" && return 0
		kill -0 "$PID" 2>/dev/null || break
		sleep 0.1
	done
	echo "mount failed:"
	cat "$T/log"
	return 1
}

# umount_fs: unmounts cleanly and returns the daemon's exit status.
umount_fs() {
	fusermount3 -u "$MNT" || umount -l "$MNT"
	wait "$PID"
	local rc=$?
	PID=
	return $rc
}

# fs_kill9: kills the daemon with SIGKILL (a crash) and reaps it; the dead
# mount stays until it is detached (umount -l).
fs_kill9() {
	kill -9 "$PID" 2>/dev/null
	wait "$PID" 2>/dev/null
	PID=
}

# fs_abort: ends the mount at $MNT when its daemon hangs in requests to its
# own mount: kill -9 cannot end a thread that waits for the kernel, so the
# FUSE connection is aborted first (fusectl), then the daemon killed and the
# mount detached.
fs_abort() {
	local dev c=/sys/fs/fuse/connections
	dev=$(awk -v m="$MNT" '$5 == m {print $3}' /proc/self/mountinfo | tail -n 1)
	[ -d "$c" ] && [ ! -e "$c/${dev#*:}" ] && mount -t fusectl none "$c" 2>/dev/null
	[ -n "$dev" ] && echo 1 >"$c/${dev#*:}/abort" 2>/dev/null
	fs_kill9
	fusermount3 -u -z "$MNT" 2>/dev/null || umount -l "$MNT" 2>/dev/null
}

# fs_setup NAME: the common start of a test that mounts: $CAIRNFS, $CAIRN, a
# fresh $T (removed at exit by fs_cleanup, unmounting first), $DB, $MNT (and
# $M, the same), $PID, $pass and $fail; exits 77 (skipped) without a cairnfs
# binary, /dev/fuse, fusermount3 or python3. A test with more to undo at
# exit sets its own trap, with fs_stop first and rm -rf "$T" last.
fs_setup() {
	CAIRNFS=${CAIRNFS:-$(pwd)/cairnfs}
	CAIRN=${CAIRN:-$(pwd)/cairn}
	T=$(mktemp -d "${TMPDIR:-/tmp}/cairnfs-$1.XXXXXX")
	DB=$T/db
	MNT=$T/mnt
	M=$MNT
	PID=
	pass=0
	fail=0
	mkdir -p "$MNT"
	trap fs_cleanup EXIT
	if [ ! -x "$CAIRNFS" ] || [ ! -e /dev/fuse ] || ! command -v fusermount3 >/dev/null ||
		! command -v python3 >/dev/null; then
		echo "skipped: no cairnfs binary, /dev/fuse, fusermount3 or python3"
		exit 77
	fi
}

# fs_stop: unmounts $MNT and stops the daemon, if they are still there.
fs_stop() {
	if mountpoint -q "$MNT" 2>/dev/null; then
		fusermount3 -u "$MNT" 2>/dev/null || umount -l "$MNT" 2>/dev/null
	fi
	[ -n "$PID" ] && kill "$PID" 2>/dev/null && wait "$PID" 2>/dev/null
}

fs_cleanup() {
	fs_stop
	rm -rf "$T"
}
