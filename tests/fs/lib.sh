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
