#!/usr/bin/env bash
# corrupt_check.sh - damage every kind of file of a real database and run the
# real `cairn`. For the log, the table, the manifest and CURRENT: flip bits
# (in the header, the middle and the last byte), truncate (to half, and by one
# byte), zero a range, delete the file. Each time:
#  - `cairn check` exits 1 and names the damaged file;
#  - `cairn get` of sample keys either prints exactly the value written or
#    fails with a "cairn: get: ..." message, never a wrong value, never a
#    signal; "not found" is accepted only where the damage removes records a
#    reader cannot know existed (a log cut short or deleted);
#  - `cairn scan` ends by exit status, not a signal.
# Known gap, by the engine's contract (cairn.h: a torn record at the end of
# the newest log is dropped silently; version.h: the same for the manifest):
# damage confined to the LAST record of the newest log or of the manifest
# (cut short, or its last byte flipped) looks exactly like a torn write, so
# open drops that record and check reports nothing; a deleted newest log
# leaves no trace either. Those cases print NOTE instead of failing, and may
# lose the dropped records (not found), never give a wrong value.
# The fixture comes from `crash_writer fill` (tests/crash_writer.c).
# Environment: CAIRN (default ./cairn), CRASH_WRITER (default
# ./tests/crash_writer), TMPDIR.
set -u
CAIRN=${CAIRN:-./cairn}
CW=${CRASH_WRITER:-./tests/crash_writer}
T=$(mktemp -d "${TMPDIR:-/tmp}/cairn-corrupt.XXXXXX") || exit 1
trap 'rm -rf "$T"' EXIT
ulimit -c 0
"$CW" fill "$T/pristine" || {
	echo "corrupt_check: cannot build the fixture" >&2
	exit 1
}
"$CAIRN" -d "$T/pristine" check >/dev/null 2>&1 || {
	echo "corrupt_check: the pristine database fails check" >&2
	exit 1
}
rm -f "$T/pristine/LOCK"
cases=0 failed=0 notes=0
KEYS="000 001 060 119 120 150 199"

value_of() {
	local i=$((10#$1))
	printf 'value-%03d-' "$i"
	local c
	c=$(printf "\\$(printf '%03o' $((97 + i % 26)))")
	head -c 90 /dev/zero | tr '\0' "$c"
}

flip() { # FILE OFFSET: flips bit 4 of the byte at OFFSET (negative: from the end)
	local f=$1 off=$2 size b
	size=$(stat -c %s "$f")
	[ "$off" -lt 0 ] && off=$((size + off))
	[ "$off" -ge "$size" ] && off=$((size / 2))
	b=$(od -An -tu1 -j"$off" -N1 "$f" | tr -d ' ')
	# shellcheck disable=SC2059
	printf "\\$(printf '%03o' $((b ^ 16)))" | dd of="$f" bs=1 seek="$off" conv=notrunc 2>/dev/null
}

zero() { # FILE: zeroes 32 bytes from the middle (all of a short file's tail)
	local f=$1 size off
	size=$(stat -c %s "$f")
	off=$((size / 2))
	dd if=/dev/zero of="$f" bs=1 seek="$off" count=32 conv=notrunc 2>/dev/null
}

bad() {
	echo "  FAIL: $*" >&2
	ok=0
}

# run_case KIND FILE DAMAGE TORN_LIKE (1: the known gap above applies)
run_case() {
	local kind=$1 name=$2 damage=$3 nf_ok=$4 db="$T/db" f code k note=
	rm -rf "$db"
	cp -a "$T/pristine" "$db"
	f="$db/$name"
	case $damage in
	flip-header) flip "$f" 4 ;;
	flip-middle) flip "$f" $(($(stat -c %s "$f") / 2)) ;;
	flip-last) flip "$f" -1 ;;
	truncate-half) truncate -s $(($(stat -c %s "$f") / 2)) "$f" ;;
	truncate-1) truncate -s $(($(stat -c %s "$f") - 1)) "$f" ;;
	zero-range) zero "$f" ;;
	delete) rm "$f" ;;
	esac
	cases=$((cases + 1))
	ok=1
	"$CAIRN" -d "$db" check >"$T/out" 2>&1
	code=$?
	if [ $code -eq 0 ] && [ "$nf_ok" = 1 ]; then
		note=" (NOTE: check saw nothing: torn-tail-like damage)"
		notes=$((notes + 1))
	else
		[ $code -eq 1 ] || bad "$kind $damage: check exited $code, not 1"
		grep -q "$name" "$T/out" ||
			bad "$kind $damage: check does not name $name: $(head -n 3 "$T/out")"
	fi
	local got=0 failed_get=0 nf=0
	for k in $KEYS; do
		"$CAIRN" -d "$db" get "key$k" >"$T/got" 2>"$T/err"
		code=$?
		case $code in
		0) if value_of "$k" | cmp -s - "$T/got"; then
			got=$((got + 1))
		   else
			bad "$kind $damage: get key$k printed a wrong value"
		   fi ;;
		1) failed_get=$((failed_get + 1))
		   grep -q "^cairn: get: ." "$T/err" || bad "$kind $damage: get key$k failed without a message" ;;
		3) nf=$((nf + 1))
		   [ "$nf_ok" = 1 ] || bad "$kind $damage: get key$k says not found" ;;
		*) bad "$kind $damage: get key$k exited $code: $(head -n 2 "$T/err")" ;;
		esac
	done
	"$CAIRN" -d "$db" scan -n 1000 >/dev/null 2>"$T/err"
	code=$?
	[ $code -le 3 ] || bad "$kind $damage: scan exited $code: $(head -n 2 "$T/err")"
	[ $ok = 1 ] || failed=$((failed + 1))
	printf 'corrupt_check: %-8s %-14s get: %d right, %d refused, %d not found%s\n' \
		"$kind" "$damage" $got $failed_get $nf "$note"
}

log=$(cd "$T/pristine" && ls ./*.log | head -n 1)
table=$(cd "$T/pristine" && ls ./*.sst | head -n 1)
manifest=$(cd "$T/pristine" && ls MANIFEST-* | head -n 1)
for d in flip-header flip-middle flip-last truncate-half truncate-1 zero-range delete; do
	torn=0
	case $d in truncate-* | flip-last) torn=1 ;; esac
	log_torn=$torn
	[ $d = delete ] && log_torn=1
	run_case log "${log#./}" $d $log_torn
	run_case table "${table#./}" $d 0
	run_case manifest "$manifest" $d $torn
	run_case CURRENT CURRENT $d 0
done
echo "corrupt_check: $cases cases, $failed failed, $notes passed check as torn tails"
[ $failed -eq 0 ]
