# Shell helpers shared by the cairnfs tests (sourced, not run).
# mount_fs [CAIRNFS OPTIONS...]: starts "$CAIRNFS" -f on $DB at $MNT in the
# background (its pid in $PID, its output appended to $T/log) and waits up to
# 10 s for the mount; on failure prints the log and returns 1.
mount_fs() {
	"$CAIRNFS" -f "$@" "$DB" "$MNT" >>"$T/log" 2>&1 &
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
