#!/usr/bin/env bash
# enospc.sh - a full disk, for real: a database on a 16 MiB tmpfs is written
# with `cairn put` (64 KiB values) until the disk fills. The failing put must
# say "no space" and exit 1; every put acknowledged before it must read back
# exactly, both while the disk is still full and after a ballast file is
# deleted; then writes work again and `cairn check` finds nothing wrong.
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
cleanup() {
	mountpoint -q "$MNT" && umount "$MNT"
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
