#!/bin/bash
# tests/fs/identity.sh - cairnfs file identity on a real mount: a file
# unlinked or renamed over while open stays readable and writable (orphans),
# orphans left by kill -9 of the daemon are gone after the next mount,
# inode numbers are stable and readdir's d_ino equals st_ino, and special
# files (FIFOs, devices, sockets) exist.
#
#   CAIRNFS=/path/to/cairnfs CAIRN=/path/to/cairn tests/fs/identity.sh
#
# Prints "N passed, M failed"; exits 77 when FUSE cannot be used here.
set -u
export LC_ALL=C

. "$(dirname "$0")/lib.sh" # ok, bad, check, mount_fs, umount_fs, fs_setup
fs_setup identity
HOLD=
trap '[ -n "$HOLD" ] && kill -9 "$HOLD" 2>/dev/null; fs_cleanup' EXIT
# orphans: the number of orphan keys in the database (unmounted)
orphans() { "$CAIRN" -d "$DB" scan -a -x '\x00o' | wc -l; }
# py DESCRIPTION SCRIPT: runs python3 with the mount as argv[1]; the script
# prints "ok" when what it checks holds.
py() {
	local d=$1 out
	out=$(python3 -c "$2" "$M" 2>&1)
	if [ "$out" = ok ]; then ok "$d"; else bad "$d ($out)"; fi
}

if [ ! -x "$CAIRN" ]; then
	echo "skipped: no cairn binary"
	exit 77
fi
mount_fs || { echo "skipped: cannot mount"; exit 77; }

# ---- 2. unlinked or replaced while open ----------------------------------------
py "TemporaryFile: write, seek, read (small and large)" '
import os, sys, tempfile
f = tempfile.TemporaryFile(dir=sys.argv[1])
a = os.urandom(100000); f.write(a); f.seek(0)
assert f.read() == a, "small"
b = os.urandom(3 << 20); f.write(b); f.seek(50000)
assert f.read() == a[50000:] + b, "large"
st = os.fstat(f.fileno())
assert st.st_size == len(a) + len(b) and st.st_nlink == 0, (st.st_size, st.st_nlink)
f.truncate(10); f.seek(0)
assert f.read() == a[:10], "truncated"
print("ok")'

py "rm while open: read, write, fstat, fsync" '
import os, sys
p = sys.argv[1] + "/held"
fd = os.open(p, os.O_CREAT | os.O_RDWR, 0o640)
os.write(fd, b"hello")
os.fsync(fd)
os.unlink(p)
assert not os.path.exists(p), "still listed"
os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)  # read from the daemon
assert os.pread(fd, 100, 0) == b"hello", "read"
os.pwrite(fd, b" world", 5)
os.fsync(fd)
os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
st = os.fstat(fd)
assert st.st_size == 11 and st.st_nlink == 0 and st.st_mode & 0o777 == 0o640, st
os.fchmod(fd, 0o600)
assert os.fstat(fd).st_mode & 0o777 == 0o600, "fchmod"
assert os.pread(fd, 100, 0) == b"hello world", "read back"
fd2 = os.open(p, os.O_CREAT | os.O_RDWR)
os.write(fd2, b"new file")
assert os.pread(fd, 100, 0) == b"hello world", "a new file of the same name"
os.close(fd); os.close(fd2)
print("ok")'

py "rm of a small file held open: its times and mode change in memory" '
import os, sys
M = sys.argv[1]
def batches():
    for l in open(M + "/.cairn/stats"):
        if l.split()[0] == "batches":
            return int(l.split()[1])
p = M + "/heldsmall"
open(p, "w").write("small")
fd = os.open(p, os.O_RDWR)
before = batches()
os.unlink(p)
os.fchmod(fd, 0o604)
os.utime(fd, (1000000, 2000000))
st = os.fstat(fd)
assert st.st_mode & 0o777 == 0o604 and int(st.st_mtime) == 2000000, st
assert os.pread(fd, 100, 0) == b"small", "read"
# the unlink is one batch; the kernel ctime update, fchmod and utime
# touch only the copy in memory (they were two or three engine writes)
assert batches() - before == 1, (before, batches())
os.close(fd)
print("ok")'

py "rename over a file held open: the old content stays" '
import os, sys
M = sys.argv[1]
open(M + "/r", "w").write("old")
big = os.urandom(5 << 20)
open(M + "/rbig", "wb").write(big)
g = open(M + "/r", "rb+"); h = open(M + "/rbig", "rb")
open(M + "/r.tmp", "w").write("new")
os.rename(M + "/r.tmp", M + "/r")
open(M + "/rbig.tmp", "w").write("small")
os.rename(M + "/rbig.tmp", M + "/rbig")
for f in (g, h):
    os.posix_fadvise(f.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)  # read from the daemon
assert g.read() == b"old", "old content"
assert open(M + "/r").read() == "new", "new content"
g.seek(0); g.write(b"OLD!"); g.flush(); os.fsync(g.fileno()); g.seek(0)
os.posix_fadvise(g.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
assert g.read() == b"OLD!", "write to the replaced file"
assert open(M + "/r").read() == "new", "the new file untouched"
assert h.read() == big, "large file replaced"
assert open(M + "/rbig").read() == "small", "new small file"
print("ok")'

# sort(1) spills to unlinked temporary files in TMPDIR
seq 200000 | shuf >"$T/nums"
check "sort -S 1M with TMPDIR on the mount" \
	bash -c "TMPDIR='$M' sort -n -S 1M '$T/nums' | cmp - <(seq 200000)"

# a process holds an unlinked file across kill -9 of the daemon
python3 -c '
import os, sys, time
M = sys.argv[1]
for name, size in (("k1", 1000), ("k2", 3 << 20)):
    fd = os.open(M + "/" + name, os.O_CREAT | os.O_RDWR)
    os.write(fd, os.urandom(size)); os.fsync(fd); os.unlink(M + "/" + name)
    os.write(fd, b"written after the unlink"); os.fsync(fd)
print("held", flush=True)
time.sleep(60)' "$M" >"$T/hold.out" 2>&1 &
HOLD=$!
for _ in $(seq 50); do grep -q held "$T/hold.out" 2>/dev/null && break; sleep 0.1; done
echo flush >"$M/.cairn/control"
fs_kill9
kill -9 "$HOLD" 2>/dev/null
wait "$HOLD" 2>/dev/null
HOLD=
fusermount3 -u "$MNT" 2>/dev/null || umount -l "$MNT"
check "kill -9 with files held open: orphans in the database" test "$(orphans)" -ge 3
pieces_before=$("$CAIRN" -d "$DB" scan -a -x '\x00d' | wc -l)
mount_fs || exit 1
umount_fs
check "remount: the orphans are gone" test "$(orphans)" = 0
check "remount: their pieces are gone" test "$("$CAIRN" -d "$DB" scan -a -x '\x00d' | wc -l)" -lt "$pieces_before"
check "remount: only the large file replaced while open had pieces" \
	test "$("$CAIRN" -d "$DB" scan -a -x '\x00d' | wc -l)" = 0

# ---- 15. inode numbers ----------------------------------------------------------
"$CAIRN" -d "$DB" put api/key "written through the API" >/dev/null
mount_fs || exit 1
mkdir -p "$M/ino/sub"
echo one >"$M/ino/one"
echo two >"$M/ino/sub/two"
ln -s one "$M/ino/link"
inos() { (cd "$M" && stat -c '%n %i' ino ino/one ino/sub ino/sub/two ino/link api/key); }
inos >"$T/ino.1"
check "inode numbers differ" test "$(cut -d' ' -f2 "$T/ino.1" | sort -u | wc -l)" = 6
py "readdir d_ino equals st_ino" '
import os, sys
for d in ("", "/ino", "/ino/sub", "/api"):
    for e in os.scandir(sys.argv[1] + d):
        st = os.lstat(e.path)
        assert e.inode() == st.st_ino, (e.path, e.inode(), st.st_ino)
print("ok")'
umount_fs
CAIRNFS_OPTS=readdirplus=no mount_fs || exit 1
inos >"$T/ino.2"
check "inode numbers stable across a remount" cmp "$T/ino.1" "$T/ino.2"
py "plain readdir (no readdirplus): d_ino equals st_ino" '
import os, sys
for d in ("", "/ino", "/ino/sub", "/api"):
    for e in os.scandir(sys.argv[1] + d):
        st = os.lstat(e.path)
        assert e.inode() == st.st_ino and e.inode() != 0xffffffff, (e.path, e.inode(), st.st_ino)
print("ok")'
n_one=$(stat -c %i "$M/ino/one")
n_key=$(stat -c %i "$M/api/key")
n_sub=$(stat -c %i "$M/ino/sub")
mv "$M/ino/one" "$M/ino/sub/uno"
mv "$M/api/key" "$M/ino/key"
mv "$M/ino/sub" "$M/sub2"
echo changed >>"$M/sub2/uno"
touch "$M/ino/key"
check "rename keeps the number (file)" test "$(stat -c %i "$M/sub2/uno")" = "$n_one"
check "rename keeps the number (key written through the API)" test "$(stat -c %i "$M/ino/key")" = "$n_key"
check "rename keeps the number (directory)" test "$(stat -c %i "$M/sub2")" = "$n_sub"
umount_fs
mount_fs || exit 1
check "after a remount: file" test "$(stat -c %i "$M/sub2/uno")" = "$n_one"
check "after a remount: key written through the API" test "$(stat -c %i "$M/ino/key")" = "$n_key"
check "after a remount: find -inum" test "$(cd "$M" && find . -inum "$n_one")" = ./sub2/uno
echo new >"$M/ino/new"
check "a new file gets a new number" test "$(stat -c %i "$M/ino/new")" != "$n_one"

# ---- 13. special files ------------------------------------------------------------
check "mkfifo" mkfifo "$M/fifo"
check "mknod c" mknod "$M/null" c 1 3
check "mknod b" mknod "$M/blk" b 7 0
py "bind a unix socket" '
import socket, sys
s = socket.socket(socket.AF_UNIX)
s.bind(sys.argv[1] + "/sock")
s.listen(1)
c = socket.socket(socket.AF_UNIX); c.connect(sys.argv[1] + "/sock")
a, _ = s.accept(); c.send(b"hi")
assert a.recv(2) == b"hi"
print("ok")'
(echo through-the-fifo >"$M/fifo") &
writer=$!
check "a FIFO carries data" test "$(cat "$M/fifo")" = through-the-fifo
wait "$writer"
umount_fs
mount_fs || exit 1
check "types and device numbers after a remount" test \
	"$(stat -c '%n %F %t:%T %a' "$M/fifo" "$M/null" "$M/blk" "$M/sock" | sed "s|$M/||")" = \
	"$(printf '%s\n' 'fifo fifo 0:0 644' 'null character special file 1:3 644' \
		'blk block special file 7:0 644' 'sock socket 0:0 755')"
check "ls -l shows them" test "$(ls -l "$M" | grep -E ' (fifo|null|blk|sock)$' | cut -c1 | sort | tr -d '\n')" = bcps
chmod 600 "$M/fifo"
mv "$M/null" "$M/null2"
check "chmod and rename of a special file" test "$(stat -c '%a %t:%T' "$M/fifo" "$M/null2" | tr '\n' ' ')" = "600 0:0 644 1:3 "
check "rm of special files" rm "$M/fifo" "$M/null2" "$M/blk" "$M/sock"
check "tar of special files" sh -c "mkfifo '$T/f' && tar -C '$T' -cf - f | tar -C '$M' -xf - && test -p '$M/f'"

# ---- 12. hard links ------------------------------------------------------------
echo one >"$M/h1"
check "ln" ln "$M/h1" "$M/h2"
check "both names: one inode, two links" test \
	"$(stat -c '%i %h' "$M/h1")" = "$(stat -c '%i %h' "$M/h2")" -a "$(stat -c %h "$M/h1")" = 2
echo two >>"$M/h2"
check "a write through one name is seen through the other" test "$(cat "$M/h1")" = "$(printf 'one\ntwo')"
mkdir "$M/hd"
ln "$M/h2" "$M/hd/h3"
rm "$M/h1"
check "rm of one name leaves the others whole" test "$(cat "$M/hd/h3")" = "$(printf 'one\ntwo')" -a \
	"$(stat -c %h "$M/h2")" = 2
echo other >"$M/hx"
mv "$M/hx" "$M/h2"
check "rename over one name leaves the others whole" test "$(cat "$M/hd/h3")" = "$(printf 'one\ntwo')" -a \
	"$(stat -c %h "$M/hd/h3")" = 1 -a "$(cat "$M/h2")" = other
mv "$M/hd/h3" "$M/h3"
ln "$M/h3" "$M/hd/h4"
n_h3=$(stat -c %i "$M/h3")
mkdir -p "$T/src/sub"
echo small >"$T/src/f"
ln "$T/src/f" "$T/src/sub/g"
head -c $((3 << 20)) /dev/urandom >"$T/src/big"
ln "$T/src/big" "$T/src/sub/big2"
ln -s f "$T/src/sl"
mkfifo "$T/src/fifo"
ln "$T/src/fifo" "$T/src/fifo2"
# links: "name name ..." for every inode with more than one name under $1
links() { (cd "$1" && find . ! -type d -links +1 -printf '%i %p\n' | sort -k2 |
	awk '{a[$1] = a[$1] " " $2} END {for (i in a) print a[i]}' | sort); }
links "$T/src" >"$T/links.src"
check "cp -a keeps hard links" sh -c "cp -a '$T/src' '$M/cpa' && test \"\$(cd '$M/cpa' && find . ! -type d -links +1 | wc -l)\" = 6"
check "cp -a: the same names share an inode" sh -c "cd '$M/cpa' && test \"\$(stat -c %i f)\" = \"\$(stat -c %i sub/g)\" && test \"\$(stat -c %i big)\" = \"\$(stat -c %i sub/big2)\""
check "cp -a: content" cmp "$T/src/big" "$M/cpa/sub/big2"
mkdir "$M/tarx"
check "tar -x of hard links" sh -c "tar -C '$T' -cf - src | tar -C '$M/tarx' -xf - && test \"\$(stat -c %i '$M/tarx/src/f')\" = \"\$(stat -c %i '$M/tarx/src/sub/g')\" && test \"\$(stat -c %h '$M/tarx/src/big')\" = 2"
check "rsync -aH" sh -c "rsync -aH '$T/src/' '$M/rs/' && test \"\$(stat -c %i '$M/rs/f')\" = \"\$(stat -c %i '$M/rs/sub/g')\" && cmp '$T/src/big' '$M/rs/big'"
check "cp -al" cp -al "$M/cpa" "$M/cpal"
check "cp -al: four names" test "$(stat -c %h "$M/cpa/f")" = 4 -a "$(stat -c %i "$M/cpa/f")" = "$(stat -c %i "$M/cpal/sub/g")"
check "rsync --link-dest" sh -c "rsync -a --link-dest='$M/rs' '$T/src/' '$M/rs2/' && test \"\$(stat -c %i '$M/rs2/big')\" = \"\$(stat -c %i '$M/rs/big')\""
rm -rf "$M/cpal"
check "rm -rf of one copy: the links drop back" test "$(stat -c %h "$M/cpa/f")" = 2
py "a file held open while its last name goes" '
import os, sys
M = sys.argv[1]
open(M + "/l1", "w").write("held")
os.link(M + "/l1", M + "/l2")
fd = os.open(M + "/l1", os.O_RDWR)
os.unlink(M + "/l1"); os.unlink(M + "/l2")
os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
assert os.pread(fd, 10, 0) == b"held" and os.fstat(fd).st_nlink == 0
os.pwrite(fd, b"HELD", 0)
assert os.pread(fd, 10, 0) == b"HELD"
os.close(fd)
print("ok")'
umount_fs
mount_fs || exit 1
check "after a remount: links, numbers and content" test \
	"$(stat -c '%i %h' "$M/h3" "$M/hd/h4" | tr '\n' ' ')" = "$n_h3 2 $n_h3 2 " -a \
	"$(cat "$M/hd/h4")" = "$(printf 'one\ntwo')"
check "after a remount: cp -a copy" cmp "$T/src/big" "$M/cpa/big"
rm -rf "$M/cpa" "$M/tarx" "$M/rs" "$M/rs2" "$M/h3" "$M/hd"
umount_fs
check "nothing of the linked files is left" test \
	"$("$CAIRN" -d "$DB" scan -a -x '\x00h' | wc -l)$("$CAIRN" -d "$DB" scan -a -x '\x00u' | wc -l)$("$CAIRN" -d "$DB" scan -a -x '\x00d' | wc -l)" = 000
mount_fs || exit 1

umount_fs
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
