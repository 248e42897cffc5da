#!/bin/bash
# tests/fs/large.sh - cairnfs large files on a real mount: files past
# inline_max are stored as 64 KiB pieces (fs/extent.h). A file of several
# hundred MiB read back by checksum, random writes into its middle,
# truncation both ways, a sparse file, rename without copying, the switch
# back to one key when a file shrinks, kill -9 after fsync, remount, and no
# piece left behind after rm.
#
#   CAIRNFS=/path/to/cairnfs CAIRN=/path/to/cairn tests/fs/large.sh
#
# Prints "N passed, M failed"; exits 77 when FUSE cannot be used here.
set -u
export LC_ALL=C

BIG_MIB=${BIG_MIB:-300}
. "$(dirname "$0")/lib.sh" # ok, bad, check, mount_fs, umount_fs, fs_setup
fs_setup large
# pieces: the number of extent keys in the database (unmounted)
pieces() { "$CAIRN" -d "$DB" scan -a -x '\x00d' | wc -l; }
mount_fs || { echo "skipped: cannot mount"; exit 77; }

# The whole suite, on a fresh database, with the options in $CAIRNFS_OPTS.
suite() {
# ---- a file of several hundred MiB ------------------------------------------------
head -c $((BIG_MIB * 1024 * 1024)) /dev/urandom >"$T/big"
cp "$T/big" "$M/big"
check "${BIG_MIB} MiB file: size" test "$(stat -c %s "$M/big")" = $((BIG_MIB * 1024 * 1024))
check "${BIG_MIB} MiB file reads back (sha256)" cmp "$T/big" "$M/big"
# memory does not grow with the file: the daemon's peak stays far below it
hwm_kib=$(awk '/^VmHWM/ {print $2}' "/proc/$PID/status" 2>/dev/null || echo 0)
check "daemon peak memory under 128 MiB (${hwm_kib} KiB)" test "${hwm_kib:-0}" -gt 0 -a "${hwm_kib:-0}" -lt 131072
sync "$M/big"

# ---- random writes into the middle, each checked against a local copy ----------------
rw_ok=1
for i in 1 2 3 4 5 6 7 8; do
	off=$(((RANDOM * 32768 + RANDOM) % (BIG_MIB * 256 - 4)))
	head -c $((4096 * (1 + i % 3))) /dev/urandom >"$T/patch"
	dd if="$T/patch" of="$M/big" bs=4096 seek="$off" conv=notrunc status=none || rw_ok=0
	dd if="$T/patch" of="$T/big" bs=4096 seek="$off" conv=notrunc status=none
done
# an unaligned write across a piece boundary
printf 'across-the-boundary' | dd of="$M/big" bs=1 seek=$((65536 * 7 - 5)) conv=notrunc status=none
printf 'across-the-boundary' | dd of="$T/big" bs=1 seek=$((65536 * 7 - 5)) conv=notrunc status=none
check "random 4 KiB writes land" test "$rw_ok" = 1
check "random writes: content equal" cmp "$T/big" "$M/big"
python3 -c "
import os
fd = os.open('$M/big', os.O_RDWR)
os.pwrite(fd, b'Z' * 10000, 123456789)
os.fsync(fd)
os.close(fd)
fd = os.open('$T/big', os.O_RDWR)
os.pwrite(fd, b'Z' * 10000, 123456789)
os.close(fd)"
check "pwrite + fsync: content equal" cmp "$T/big" "$M/big"

# ---- truncation -----------------------------------------------------------------------
truncate -s $((5 * 1024 * 1024 + 777)) "$M/big"
truncate -s $((5 * 1024 * 1024 + 777)) "$T/big"
check "shrink: size" test "$(stat -c %s "$M/big")" = $((5 * 1024 * 1024 + 777))
check "shrink: content equal" cmp "$T/big" "$M/big"
truncate -s $((9 * 1024 * 1024)) "$M/big"
truncate -s $((9 * 1024 * 1024)) "$T/big"
check "extend: the new bytes read as zeros" cmp "$T/big" "$M/big"

# ---- a sparse file ------------------------------------------------------------------
truncate -s 10G "$M/sparse"
printf 'needle' | dd of="$M/sparse" bs=1 seek=$((5 * 1024 * 1024 * 1024)) conv=notrunc,fsync status=none
check "sparse: 10 GiB size" test "$(stat -c %s "$M/sparse")" = $((10 * 1024 * 1024 * 1024))
check "sparse: the written bytes" test "$(dd if="$M/sparse" bs=1 skip=$((5 * 1024 * 1024 * 1024)) count=6 status=none)" = needle
check "sparse: a hole reads as zeros" test "$(dd if="$M/sparse" bs=4096 skip=1000 count=1 status=none | tr -d '\0' | wc -c)" = 0

# ---- rename moves the record only; a rename over a large file drops its pieces -----------
mkdir "$M/d"
mv "$M/big" "$M/d/moved"
check "mv: content equal" cmp "$T/big" "$M/d/moved"
cp "$T/big" "$M/other"
mv "$M/other" "$M/d/moved"
check "mv over a large file: content equal" cmp "$T/big" "$M/d/moved"

# ---- a large file that shrinks becomes one key again ----------------------------------------
head -c 3000000 /dev/urandom >"$T/mid"
cp "$T/mid" "$M/shrinks"
truncate -s 1000 "$M/shrinks"
truncate -s 1000 "$T/mid"
check "shrunk below inline_max: content equal" cmp "$T/mid" "$M/shrinks"

# ---- kill -9 after fsync ---------------------------------------------------------------
head -c $((20 * 1024 * 1024)) /dev/urandom >"$T/durable"
dd if="$T/durable" of="$M/durable" bs=1M conv=fsync status=none
fs_kill9
fusermount3 -u "$MNT" 2>/dev/null || umount -l "$MNT"
mount_fs
check "kill -9 after fsync: 20 MiB file intact" cmp "$T/durable" "$M/durable"
check "remount: moved file intact" cmp "$T/big" "$M/d/moved"
check "remount: sparse file intact" test "$(dd if="$M/sparse" bs=1 skip=$((5 * 1024 * 1024 * 1024)) count=6 status=none)" = needle
umount_fs

# ---- what an embedding program sees ----------------------------------------------------------
check "small file: one key, read by the API" cmp "$T/mid" <("$CAIRN" -d "$DB" get shrinks)
check "large file: no key PATH (its data is in pieces)" sh -c "! '$CAIRN' -d '$DB' get durable >/dev/null 2>&1"
n_before=$(pieces)
check "large files have pieces" test "$n_before" -gt 0

# ---- rm drops the pieces -------------------------------------------------------------------
mount_fs
rm "$M/d/moved" "$M/sparse" "$M/durable"
umount_fs
check "rm: no piece left" test "$(pieces)" = 0

# ---- extent ids stay unique across mounts, even for a file without pieces ------------
mount_fs
truncate -s 2M "$M/holes"
umount_fs
mount_fs
head -c 3000000 /dev/urandom >"$T/after"
cp "$T/after" "$M/after"
umount_fs
mount_fs
check "a file extended by truncate alone keeps its own id: zeros" \
	test "$(tr -d '\0' <"$M/holes" | wc -c)" = 0
rm "$M/holes"
check "removing it leaves the next large file alone" cmp "$T/after" "$M/after"
rm "$M/after"
umount_fs
}

suite
# again with buffered writes (committed at close) and small files as pieces
fusermount3 -u "$MNT" 2>/dev/null
rm -rf "$DB"
CAIRNFS_OPTS=flush=1,inline_max=64K
BIG_MIB=64
mount_fs || { echo "cannot mount with $CAIRNFS_OPTS"; exit 1; }
echo "# with -o $CAIRNFS_OPTS"
suite

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
