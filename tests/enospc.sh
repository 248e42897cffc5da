#!/usr/bin/env bash
# enospc.sh - a full disk, for real: a database on a 16 MiB tmpfs is written
# with `cairn put` (64 KiB values) until the disk fills. The failing put must
# say "no space" and exit 1; every put acknowledged before it must read back
# exactly, both while the disk is still full and after a ballast file is
# deleted; then writes work again and `cairn check` finds nothing wrong.
# Then, on a second tmpfs with no ballast at all, filled to the last byte
# with large values and then small ones:
# every delete succeeds while the disk is full (the engine gives up its
# space reserve), each `cairn` run reopens the database read-write, a
# compaction gives the space back, the reserve file is written again and
# puts work.
# Needs root (mount); skipped (exit 77) otherwise.
# Environment: CAIRN (the binary; default ./cairn), TMPDIR.
set -u
CAIRN=${CAIRN:-./cairn}
if [ "$(id -u)" -ne 0 ]; then
	echo "enospc: skipped: needs root to mount a tmpfs"
	exit 77
fi
T=$(mktemp -d "${TMPDIR:-/tmp}/cairn-enospc.XXXXXX") || exit 1
MNT=$T/mnt
MNT2=$T/mnt2
cleanup() {
	mountpoint -q "$MNT" && umount "$MNT"
	mountpoint -q "$MNT2" && umount "$MNT2"
	rm -rf "$T"
}
trap cleanup EXIT
mkdir "$MNT"
if ! mount -t tmpfs -o size=16m tmpfs "$MNT"; then
	echo "enospc: skipped: cannot mount a tmpfs"
	exit 77
fi
DB=$MNT/db
fail() {
	echo "enospc: FAIL: $*" >&2
	exit 1
}
# incompressible (tables are LZ4-compressed) and different for every key
value() {
	echo "value-$1"
	cat "$T/random"
}
cairn() { "$CAIRN" -d "$DB" "$@"; }

head -c 65520 /dev/urandom >"$T/random"
# 6 MiB that is not the database's, to free later: enough for recovery to
# flush a full 4 MiB memtable of incompressible values
head -c 6291456 /dev/zero >"$MNT/ballast"

n=0
while :; do
	value $n | cairn put "key$n" 2>"$T/err"
	code=$?
	[ $code -ne 0 ] && break
	n=$((n + 1))
	[ $n -gt 400 ] && fail "16 MiB never filled after $n puts of 64 KiB"
done
echo "enospc: disk full after $n acknowledged puts (exit $code): $(head -n 1 "$T/err")"
[ "$code" -eq 1 ] || fail "the failing put exited $code, not 1"
grep -qi "no space" "$T/err" || fail "the error does not say 'no space': $(cat "$T/err")"
[ $n -gt 10 ] || fail "only $n puts fit in 16 MiB"

verify() {
	local i
	for i in $(seq 0 $((n - 1))); do
		cairn get "key$i" >"$T/got" 2>"$T/err" ||
			fail "$1: get key$i failed (exit $?): $(cat "$T/err")"
		value $i | cmp -s - "$T/got" || fail "$1: key$i does not hold what was written"
	done
}
# the database must read back while the disk is still full (the CLI falls
# back to a read-only handle when it cannot write)
verify "disk full"
rm "$MNT/ballast"
verify "space freed"
for i in 0 1 2; do
	value "again$i" | cairn put "again$i" 2>"$T/err" ||
		fail "put after freeing space failed: $(cat "$T/err")"
done
cairn get again2 >"$T/got" && value again2 | cmp -s - "$T/got" || fail "again2 reads back wrong"
cairn check >"$T/check" 2>&1 || fail "check after the full disk: $(cat "$T/check")"
echo "enospc: ok: $n puts kept, writes work again after freeing space"
umount "$MNT"

# ---- no ballast: the database alone must give space back ----------------
mkdir "$MNT2"
mount -t tmpfs -o size=16m tmpfs "$MNT2" || fail "cannot mount a second tmpfs"
DB=$MNT2/db
avail() { df -k --output=avail "$MNT2" | tail -n 1 | tr -d ' '; }
# large values (blob files, where deleted data is freed by blob collection),
# then ever smaller ones (the log and tables) until not a byte is left
head -c 70000 /dev/urandom >"$T/random2"
n=0
for size in 70000 4096 256 8; do
	head -c $size "$T/random2" >"$T/small"
	while { echo "$n"; cat "$T/small"; } | cairn put "key$n" 2>"$T/err"; do
		n=$((n + 1))
		[ $n -gt 2000 ] && fail "16 MiB never filled after $n puts"
	done
	grep -qi "no space" "$T/err" || fail "a put failed but not for space: $(cat "$T/err")"
done
full=$(avail)
echo "enospc: second disk full after $n puts (${full} KiB free)"
[ -f "$DB/RESERVE" ] || [ "$(cairn stats | awk '$1 == "reserve_releases" {print $2}')" -gt 0 ] ||
	fail "no space reserve in the database directory and none given up"
for i in $(seq 0 $((n - 1))); do
	cairn del "key$i" 2>"$T/err" || fail "delete of key$i on the full disk failed: $(cat "$T/err")"
done
cairn get key0 >/dev/null 2>&1 && fail "key0 still there after its delete"
cairn compact 2>"$T/err" || fail "compact after the deletes failed: $(cat "$T/err")"
now=$(avail)
echo "enospc: after the deletes and a compaction ${now} KiB free"
[ "$now" -gt $((full + 8192)) ] || fail "space did not come back: ${full} KiB free before, ${now} after"
[ "$(stat -c %s "$DB/RESERVE" 2>/dev/null)" = 2097152 ] || fail "the reserve file was not written again"
cairn stats | grep -q "^reserve_bytes  *2097152$" || fail "stats do not show the reserve held"
value again | cairn put again 2>"$T/err" || fail "put after the space came back: $(cat "$T/err")"
cairn check >"$T/check" 2>&1 || fail "check after the second full disk: $(cat "$T/check")"
echo "enospc: ok: $n deletes on a full disk, space and reserve back"
