#!/bin/bash
# tests/fs/rename.sh - cairnfs renames on a real mount: a directory rename
# moves every key exactly or fails as a whole (a value over the engine's
# 64 MiB limit written through the API, a damaged blob file), and a read
# racing renames never returns another file's bytes.
#
#   CAIRNFS=/path/to/cairnfs CAIRN=/path/to/cairn tests/fs/rename.sh
#
# Prints "N passed, M failed"; exits 77 when FUSE cannot be used here.
set -u
export LC_ALL=C

. "$(dirname "$0")/lib.sh" # ok, bad, check, mount_fs, umount_fs, fs_setup
fs_setup rename
mount_fs || { echo "skipped: cannot mount"; exit 77; }
umount_fs

# py_rename FROM TO: rename(2) through the mount; prints "ok" or the errno name.
py_rename() {
	python3 -c '
import errno, os, sys
try:
    os.rename(sys.argv[1], sys.argv[2])
    print("ok")
except OSError as e:
    print(errno.errorcode[e.errno])' "$1" "$2"
}

# ---- a value over 64 MiB written through the API ------------------------------------
head -c $((70 * 1024 * 1024)) /dev/urandom >"$T/huge"
"$CAIRN" -d "$DB" put big/huge <"$T/huge"
"$CAIRN" -d "$DB" put big/small 'small value'
mount_fs
r=$(py_rename "$M/big" "$M/big2")
if [ "$r" = ok ]; then
	check "a 70 MiB API value moves whole with its directory" cmp "$T/huge" "$M/big2/huge"
	check "... and its neighbour" test "$(cat "$M/big2/small")" = 'small value'
	check "... and the old name is gone" test ! -e "$M/big"
else
	ok "a directory holding a 70 MiB API value: rename refused ($r)"
	check "... with EXDEV, so mv copies it" test "$r" = EXDEV
	check "... nothing moved: the new name does not exist" test ! -e "$M/big2"
	check "... the value is whole under the old name" cmp "$T/huge" "$M/big/huge"
	check "... and its neighbour" test "$(cat "$M/big/small")" = 'small value'
fi
# mv falls back to copy and delete when the kernel says EXDEV
mv "$M/big"* "$M/big3" 2>"$T/mv.err"
check "mv of that directory works" test -d "$M/big3"
check "... the value is exact after mv" cmp "$T/huge" "$M/big3/huge"
umount_fs
check "after remount the moved value is exact" sh -c "
	\"$CAIRN\" -d \"$DB\" get big3/small | grep -qx 'small value'"

# ---- a damaged or missing blob file ----------------------------------------------------
# blob_files: the blob files holding at least 200 KB (the test's values)
blob_files() { find "$DB" -name '*.blob' -size +200k; }
mount_fs
mkdir "$M/dmg" "$M/cut"
head -c 300000 /dev/urandom >"$T/blobval"
cp "$T/blobval" "$M/dmg/value"
echo neighbour >"$M/dmg/note"
umount_fs
# flip bytes in the middle of the value: its chunks fail their checksums
# while the record's header stays whole
for f in $(blob_files); do
	sz=$(stat -c %s "$f")
	printf 'DAMAGEDDAMAGED' | dd of="$f" bs=1 seek=$((sz / 2)) conv=notrunc status=none
done
mount_fs
check "the damaged value reads as an error" sh -c "! cat \"$M/dmg/value\" >/dev/null 2>&1"
r=$(py_rename "$M/dmg" "$M/dmg2")
# A rename moves the reference, not the bytes: the damage moves with it and
# reads still report it. What must never happen is an empty file.
if [ "$r" = ok ]; then
	check "renaming a directory with a damaged value moves it as it is" test ! -e "$M/dmg"
	check "... the moved value still reads as an error, never empty" \
		sh -c "! cat \"$M/dmg2/value\" >/dev/null 2>&1"
	check "... its size is kept" test "$(stat -c %s "$M/dmg2/value")" = 300000
	check "... its neighbour moved" test "$(cat "$M/dmg2/note")" = neighbour
else
	ok "renaming a directory with a damaged value fails ($r)"
	check "... nothing committed: the new name does not exist" test ! -e "$M/dmg2"
fi
rm -rf "$M/dmg" "$M/dmg2" 2>/dev/null
cp "$T/blobval" "$M/cut/value"
echo neighbour >"$M/cut/note"
umount_fs
# now remove the blob file that holds the value: the reference points nowhere
for f in $(blob_files); do rm -f "$f"; done
mount_fs
r=$(py_rename "$M/cut" "$M/cut2")
check "renaming a directory whose blob file is gone fails (got $r)" test "$r" != ok
check "... nothing committed: the new name does not exist" test ! -e "$M/cut2"
check "... the old name is still there" test -e "$M/cut/note"
umount_fs
mount_fs
check "... and after remount too" test ! -e "$M/cut2" -a -e "$M/cut/note"
check "... the value was not replaced by an empty one" \
	sh -c "! cat \"$M/cut/value\" >/dev/null 2>&1"

# ---- moves by reference: exchange, replace, and the database does not grow --------------
mkdir "$M/x" "$M/y"
head -c 1048576 /dev/urandom >"$T/x1"
head -c 300000 /dev/urandom >"$T/y1"
cp "$T/x1" "$M/x/f"
cp "$T/y1" "$M/y/f"
echo small-x >"$M/x/s"
sync -f "$M/x/f"
du0=$(du -sk "$DB" | cut -f1)
for _ in 1 2 3 4 5; do mv "$M/x" "$M/x2" && mv "$M/x2" "$M/x"; done
du1=$(du -sk "$DB" | cut -f1)
check "ten renames of a directory with 1 MiB in it add under 512 KiB ($du0 -> $du1 KiB)" \
	test $((du1 - du0)) -lt 512
r=$(python3 -c '
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
r = libc.renameat2(-100, sys.argv[1].encode(), -100, sys.argv[2].encode(), 2)
print("ok" if r == 0 else os.strerror(ctypes.get_errno()))' "$M/x" "$M/y")
check "RENAME_EXCHANGE of two directories (got $r)" test "$r" = ok
check "... each holds the other's files" sh -c "cmp -s \"$T/y1\" \"$M/x/f\" && cmp -s \"$T/x1\" \"$M/y/f\""
check "... and the small one moved along" test "$(cat "$M/y/s" 2>/dev/null)" = small-x
mv "$M/y/f" "$M/x/f"
check "a 1 MiB file renamed over a 300 KB one" cmp "$T/x1" "$M/x/f"
check "... the source name is gone" test ! -e "$M/y/f"
umount_fs
mount_fs
check "... after remount: content kept" cmp "$T/x1" "$M/x/f"
rm -rf "$M/x" "$M/y"

# ---- a read racing renames never returns another file's bytes ------------------------------
# Each file holds its own first name, as content and as an attribute; a
# reader keeps a descriptor on each and reads both with O_DIRECT (every read
# reaches the daemon) while another thread swaps their names through a third.
mkdir "$M/race"
for n in a b; do
	python3 -c "import sys; open(sys.argv[1], 'w').write(sys.argv[2] * 4096)" "$M/race/$n" "$n"
	setfattr -n user.name -v "$n" "$M/race/$n" 2>/dev/null ||
		python3 -c "import os, sys; os.setxattr(sys.argv[1], 'user.name', sys.argv[2].encode())" "$M/race/$n" "$n"
done
python3 - "$M/race" >"$T/race.out" 2>&1 <<'EOF'
import mmap, os, sys, threading, time
d = sys.argv[1]
stop = time.time() + 4
bad = []
def renamer():
    while time.time() < stop:
        os.rename(d + "/a", d + "/t")
        os.rename(d + "/b", d + "/a")
        os.rename(d + "/t", d + "/b")
fds = {}
for name in "ab":
    fds[name] = [os.open(d + "/" + name, os.O_RDONLY | os.O_DIRECT) for _ in range(2)]
def reader(name, fd):
    buf = mmap.mmap(-1, 4096)
    n = 0
    while time.time() < stop:
        got = os.preadv(fd, [buf], 0)
        data = buf[:got]
        if data != name.encode() * 4096:
            bad.append((name, data[:8]))
        x = os.getxattr(fd, "user.name")
        if x != name.encode():
            bad.append((name, "xattr", x))
        n += 1
    os.close(fd)
ts = [threading.Thread(target=renamer)]
ts += [threading.Thread(target=reader, args=(n, fd)) for n in "ab" for fd in fds[n]]
for t in ts: t.start()
for t in ts: t.join()
print("mismatches", len(bad), bad[:3])
EOF
check "a read racing renames returns its own file's bytes ($(cat "$T/race.out"))" \
	grep -q '^mismatches 0 ' "$T/race.out"
umount_fs

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
