#!/bin/bash
# tests/fs/full.sh - a full disk and the largest file, on a real mount.
# A database on a 48 MiB tmpfs is written past its free space: the write-back
# fails at close, and afterwards the kernel shows what is stored (size and
# bytes equal to what a fresh mount reads), not data that was never stored.
# The blob statistics are in .cairn/stats. Files may grow to the kernel's own
# limit, so a write past it fails in write(2), and a write cut short by
# RLIMIT_FSIZE keeps its valid part, as on a plain directory.
#
#   CAIRNFS=/path/to/cairnfs tests/fs/full.sh
#
# Exits 77 (skipped) without root, FUSE or a tmpfs.
set -u
export LC_ALL=C

CAIRNFS=${CAIRNFS:-$(pwd)/cairnfs}
T=$(mktemp -d "${TMPDIR:-/tmp}/cairnfs-full.XXXXXX")
DB=$T/small/db
MNT=$T/mnt
PID=
pass=0
fail=0
mkdir -p "$MNT" "$T/small" "$T/ref"
. "$(dirname "$0")/lib.sh" # ok, bad, check, mount_fs, umount_fs

cleanup() {
	mountpoint -q "$MNT" 2>/dev/null && { fusermount3 -u "$MNT" 2>/dev/null || umount -l "$MNT"; }
	[ -n "$PID" ] && kill "$PID" 2>/dev/null && wait "$PID" 2>/dev/null
	mountpoint -q "$T/small" 2>/dev/null && umount -l "$T/small"
	rm -rf "$T"
}
trap cleanup EXIT

if [ "$(id -u)" -ne 0 ] || [ ! -x "$CAIRNFS" ] || [ ! -e /dev/fuse ] ||
	! command -v fusermount3 >/dev/null || ! command -v python3 >/dev/null; then
	echo "skipped: needs root, cairnfs, /dev/fuse, fusermount3 and python3"
	exit 77
fi
if ! mount -t tmpfs -o size=48m tmpfs "$T/small"; then
	echo "skipped: cannot mount a tmpfs"
	exit 77
fi

# ---- writes past free space ------------------------------------------------------
mount_fs -o sync_interval_ms=100 || exit 1
check ".cairn/stats lists the blob statistics" sh -c "
	for s in blob_files blob_bytes_live blob_bytes_garbage blob_collections blob_bytes_moved; do
		grep -q \"^\$s \" '$MNT/.cairn/stats' || exit 1
	done"
echo small >"$MNT/before"
check "writing 80 MiB on a 48 MiB disk fails (at close)" \
	sh -c "! dd if=/dev/urandom of='$MNT/big' bs=1M count=80 status=none"
sleep 0.5 # the kernel hears of the failure from a thread of the daemon
size1=$(stat -c %s "$MNT/big")
sum1=$(sha256sum <"$MNT/big")
check "the small file written before is intact" test "$(cat "$MNT/before")" = small
umount_fs || bad "clean unmount on a full disk"
mount_fs -o ro || exit 1
size2=$(stat -c %s "$MNT/big")
sum2=$(sha256sum <"$MNT/big")
check "after the failure the kernel showed the stored size ($size1 = $size2)" test "$size1" = "$size2"
check "... and the stored bytes" test "$sum1" = "$sum2"
check "... not the 80 MiB that were written" test "$size1" -lt $((80 * 1024 * 1024))
umount_fs || bad "unmount"
umount "$T/small"

# ---- the largest file ---------------------------------------------------------------
mount -t tmpfs -o size=64m tmpfs "$T/small"
mount_fs || exit 1
cat >"$T/big.py" <<'PY'
import os, sys
d = sys.argv[1]
L = (1 << 63) - 1  # MAX_LFS_FILESIZE, the kernel's limit for FUSE files
fd = os.open(d + "/huge", os.O_CREAT | os.O_RDWR, 0o644)
os.pwrite(fd, b"past 2^46", 1 << 46)
os.pwrite(fd, b"end", L - 3)
try:
    os.pwrite(fd, b"x", L)
    print("a write past the largest file succeeded")
except OSError:
    pass
os.close(fd)  # the write-back of everything accepted succeeds
PY
check "write at 2^46 and at the kernel's last byte, refused past it, close ok" \
	sh -c "test -z \"\$(python3 '$T/big.py' '$MNT' 2>&1)\""
umount_fs || bad "unmount"
mount_fs || exit 1
check "after a remount: the bytes at 2^46" \
	test "$(dd if="$MNT/huge" bs=1 skip=$((1 << 46)) count=9 status=none)" = "past 2^46"
check "after a remount: the size" test "$(stat -c %s "$MNT/huge")" = 9223372036854775807
cat >"$T/fsize.py" <<'PY'
import os, sys
fd = os.open(sys.argv[1] + "/capped", os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o644)
out = [os.write(fd, b"a" * 5000)]
out.append(os.write(fd, b"b" * 5000))  # cut short at the limit
try:
    os.write(fd, b"c" * 10)
    out.append("written")
except OSError as e:
    out.append(e.errno)
os.close(fd)
print(out)
PY
# python ignores SIGXFSZ, so the write sees EFBIG
a=$(bash -c "ulimit -f 8; python3 '$T/fsize.py' '$T/ref'" 2>&1)
b=$(bash -c "ulimit -f 8; python3 '$T/fsize.py' '$MNT'" 2>&1)
check "RLIMIT_FSIZE: the same short write and EFBIG in write(2) ($b)" test "$a" = "$b"
check "RLIMIT_FSIZE: the valid part sharing a page with the refused one is kept" \
	cmp "$T/ref/capped" "$MNT/capped"
umount_fs || bad "unmount"
mount_fs || exit 1
check "... and stored" cmp "$T/ref/capped" "$MNT/capped"
umount_fs || bad "unmount"

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
