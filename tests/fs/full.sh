#!/bin/bash
# tests/fs/full.sh - a full disk and the largest file, on a real mount.
# A database on a 48 MiB tmpfs is written past its free space: the write-back
# fails at close, and afterwards the kernel shows what is stored (size and
# bytes equal to what a fresh mount reads), not data that was never stored.
# The blob statistics are in .cairn/stats. Large files filling the disk can
# be removed while it is full, and their space comes back by itself; the
# database remounts on the full disk. Files may grow to the kernel's own
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

# ---- deletes on a full disk give the space back --------------------------------------
# Large files fill the disk through the mount; the daemon is remounted on
# the full disk, `rm` works, and the background thread frees the space
# (flush, compaction, sealing and collecting the blob file) without any
# command: free space comes back and a new file fits.
mount -t tmpfs -o size=48m tmpfs "$T/small"
avail() { df -k --output=avail "$T/small" | tail -n 1 | tr -d ' '; }
mount_fs -o sync_interval_ms=100 || exit 1
for i in $(seq 0 15); do
	dd if=/dev/urandom of="$MNT/f$i" bs=1M count=4 status=none 2>/dev/null || break
done
sleep 0.5
full=$(avail)
check "large files filled the disk (${full} KiB free)" test "$full" -lt 4096
umount_fs || bad "clean unmount on the full disk"
mount_fs -o sync_interval_ms=100 || bad "remount read-write on the full disk"
check "... and it is writable: a delete works" rm -f "$MNT/f0"
check "rm of every large file on the full disk succeeds" sh -c "rm -f '$MNT'/f*"
check "... and they are gone" sh -c "! ls '$MNT'/f* 2>/dev/null | grep -q ."
# the wait is generous (slow machines); a pass is normally one or two seconds
for _ in $(seq 600); do
	[ "$(avail)" -gt 32768 ] && break
	sleep 0.1
done
now=$(avail)
check "free space came back without a command (${full} KiB, then ${now} KiB)" test "$now" -gt 32768
check "a new 16 MiB file fits" dd if=/dev/urandom of="$MNT/after" bs=1M count=16 status=none conv=fsync
check "... and reads back whole" test "$(stat -c %s "$MNT/after")" = 16777216
check ".cairn/stats shows the reserve held again" sh -c "
	grep -q '^reserve_bytes  *2097152\$' '$MNT/.cairn/stats'"
check ".cairn/stats counts the reserve given up and written again" sh -c "
	grep -q '^reserve_restores  *[1-9]' '$MNT/.cairn/stats'"
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

# ---- a disk smaller than the reserve -----------------------------------------------
# On a 1 MiB disk the default 2 MiB reserve cannot be held, so ordinary
# writes are refused (an error at close, never a silent loss); the
# space_reserve option makes such a disk usable, and a bad value is refused.
umount "$T/small"
mount -t tmpfs -o size=1m tmpfs "$T/small"
DB=$T/small/tiny
mount_fs || exit 1
check "1 MiB disk, default reserve: a write fails at close" sh -c "! dd if=/dev/zero of='$MNT/t' bs=1k count=4 status=none conv=fsync 2>/dev/null"
umount_fs || bad "unmount"
mount_fs -o space_reserve=0 || exit 1
check "space_reserve=0: the same write succeeds" dd if=/dev/zero of="$MNT/t" bs=1k count=4 status=none conv=fsync
check "... and no RESERVE file is kept" test ! -e "$DB/RESERVE"
umount_fs || bad "unmount"
out=$("$CAIRNFS" -o space_reserve=2G "$DB" "$MNT" 2>&1)
check "space_reserve=2G is refused with what was expected ($out)" sh -c "echo \"\$1\" | grep -q 'expected a size of at most 1G'" _ "$out"

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
