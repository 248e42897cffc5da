#!/bin/bash
# tests/fs/longpath.sh - the longest paths Linux accepts (cairnfs issue 16,
# item 14): a path of 4,095 bytes below the mount point (PATH_MAX less one,
# components of 255 bytes) is created, written, read, stat'ed, listed,
# renamed, linked, given extended attributes and removed, as on ext4, with
# the defaults and with open=1; a path of 4,096 bytes gets ENAMETOOLONG.
#
#   CAIRNFS=/path/to/cairnfs tests/fs/longpath.sh
#
# Exits 77 (skipped) when FUSE cannot be used here.
set -u
export LC_ALL=C

HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/lib.sh" # ok, bad, check, mount_fs, umount_fs, fs_setup
fs_setup long

# longpath MODE LABEL: runs one part of tests/fs/longpath.py with the mount
# point as its working directory; each line it prints is one result.
longpath() {
	local line
	while IFS= read -r line; do
		case $line in
		ok\ *) ok "${line#ok } ($2)" ;;
		*) bad "${line#FAIL } ($2)" ;;
		esac
	done < <(cd "$MNT" && python3 - "$1" 2>&1 <<'PY'
import errno, os, sys

N = "n" * 255                       # a name of NAME_MAX bytes
DIRS = "/".join(["d%02d" % i + "d" * 252 for i in range(15)])  # 15 x 255 + 14
assert len(DIRS) == 3839
F = DIRS + "/" + "f" * 255          # 4,095 bytes: PATH_MAX less one
G = DIRS + "/" + "g" * 255          # its new name, as long
H = DIRS + "/" + "h" * 255          # a second name (hard link)
D = DIRS + "/" + "e" * 255          # a directory whose path is 4,095 bytes
assert len(F) == len(G) == len(H) == len(D) == 4095
X = "user." + "x" * 250             # an attribute name of XATTR_NAME_MAX bytes
DATA = b"long path data\n" * 1000

def res(name, fn):
    try:
        fn()
        print("ok " + name)
    except Exception as e:
        print("FAIL %s: %.160r" % (name, e))

def eq(a, b):
    if a != b:
        raise AssertionError("%r != %r" % (a, b))

def errno_of(fn, *args, **kw):
    try:
        fn(*args, **kw)
    except OSError as e:
        return e.errno
    return 0

def create():
    os.makedirs(DIRS)
    with open(F, "wb") as f:
        f.write(DATA)

def readback(p):
    with open(p, "rb") as f:
        eq(f.read(), DATA)
    eq(os.stat(p).st_size, len(DATA))

if sys.argv[1] == "create":
    res("mkdir -p of a chain of 255-byte names, create a 4,095-byte path", create)
    res("read a 4,095-byte path", lambda: readback(F))
    res("stat a 4,095-byte path", lambda: eq(os.stat(F).st_size, len(DATA)))
    res("list the directory that holds it", lambda: eq(os.listdir(DIRS), ["f" * 255]))
    res("append to it", lambda: open(F, "ab").close())
    res("set a 255-byte attribute name on it", lambda: os.setxattr(F, X, b"v" * 100))
    res("read the attribute", lambda: eq(os.getxattr(F, X), b"v" * 100))
    res("list the attribute", lambda: eq(os.listxattr(F), [X]))
    res("rename it to another 4,095-byte path", lambda: os.rename(F, G))
    res("it reads back under the new name", lambda: readback(G))
    res("the old name is gone", lambda: eq(errno_of(os.stat, F), errno.ENOENT))
    res("the attribute moved with it", lambda: eq(os.getxattr(G, X), b"v" * 100))
    res("hard link to it at another 4,095-byte path", lambda: os.link(G, H))
    res("the link reads the same content", lambda: readback(H))
    res("the link count is 2", lambda: eq(os.stat(G).st_nlink, 2))
    res("the attribute is seen through the link", lambda: eq(os.getxattr(H, X), b"v" * 100))
    res("mkdir of a 4,095-byte path", lambda: os.mkdir(D))
    res("it is a directory", lambda: eq(os.path.isdir(D), True))
    res("list it all", lambda: eq(sorted(os.listdir(DIRS)), ["e" * 255, "g" * 255, "h" * 255]))
    res("os.walk finds the deepest names",
        lambda: eq(sum(len(f) for _, _, f in os.walk(".")), 2))
    res("a 4,096-byte path: ENAMETOOLONG",
        lambda: eq(errno_of(os.open, F + "x", os.O_CREAT | os.O_WRONLY), errno.ENAMETOOLONG))
    def below():
        fd = os.open(D, os.O_RDONLY | os.O_DIRECTORY)
        try:
            eq(errno_of(os.mkdir, "x", 0o755, dir_fd=fd), errno.ENAMETOOLONG)
        finally:
            os.close(fd)
    res("a name below a 4,095-byte directory: ENAMETOOLONG", below)
elif sys.argv[1] == "check":
    res("after a remount: the file reads back", lambda: readback(G))
    res("after a remount: the link reads back", lambda: readback(H))
    res("after a remount: the link count is 2", lambda: eq(os.stat(H).st_nlink, 2))
    res("after a remount: the attribute reads back", lambda: eq(os.getxattr(G, X), b"v" * 100))
    res("after a remount: the directory lists",
        lambda: eq(sorted(os.listdir(DIRS)), ["e" * 255, "g" * 255, "h" * 255]))
    top2 = "t" * 255
    def mvdir():
        os.rename(DIRS.split("/")[0], top2)
        moved = top2 + DIRS[255:]
        readback(moved + "/" + "g" * 255)
        eq(os.getxattr(moved + "/" + "g" * 255, X), b"v" * 100)
        os.rename(top2, DIRS.split("/")[0])
    res("rename the top directory of the chain and back", mvdir)
    res("remove the attribute", lambda: os.removexattr(G, X))
    res("the attribute is gone", lambda: eq(os.listxattr(G), []))
    res("rmdir of a 4,095-byte path", lambda: os.rmdir(D))
    res("unlink the link", lambda: os.unlink(H))
    res("unlink the file", lambda: os.unlink(G))
    res("the file is gone", lambda: eq(errno_of(os.stat, G), errno.ENOENT))
    def rmchain():
        p = DIRS
        while p:
            os.rmdir(p)
            p = p.rpartition("/")[0]
    res("rmdir the whole chain", rmchain)
    res("the mount is empty again", lambda: eq([e for e in os.listdir(".") if e != ".cairn"], []))
PY
	)
}

for opts in "" "open=1"; do
	o=${opts:-defaults}
	rm -rf "$DB"
	mount_fs ${opts:+-o "$opts"} || { echo "skipped: cannot mount"; exit 77; }
	longpath create "$o"
	check "unmount ($o)" umount_fs
	mount_fs ${opts:+-o "$opts"} || { bad "remount ($o)"; continue; }
	longpath check "$o"
	check "unmount ($o)" umount_fs
done

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
