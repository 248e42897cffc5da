#!/bin/bash
# tests/fs/run.sh - cairnfs end-to-end tests: mount a fresh database for real
# and drive it with ordinary tools. Needs root (or fuse rights), /dev/fuse,
# fusermount3, rsync, attr (setfattr/getfattr) and python3.
#
#   CAIRNFS=/path/to/cairnfs tests/fs/run.sh
#
# Prints "N passed, M failed" and exits non-zero on failure; exits 77 (the
# automake "skipped" status) when FUSE cannot be used here.
set -u
export LC_ALL=C

. "$(dirname "$0")/lib.sh" # ok, bad, check, mount_fs, umount_fs, fs_setup
fs_setup test
trap 'fs_stop; mountpoint -q "$T/small" 2>/dev/null && umount -l "$T/small"; rm -rf "$T"' EXIT

# check_err DESCRIPTION MESSAGE COMMAND...: the command must fail with MESSAGE.
check_err() {
	local d=$1 m=$2 out
	shift 2
	if out=$("$@" 2>&1); then
		bad "$d (succeeded)"
	elif echo "$out" | grep -q "$m"; then
		ok "$d"
	else
		bad "$d (got: $out)"
	fi
}

mount_fs || { echo "skipped: cannot mount"; exit 77; }

# ---- basic file operations --------------------------------------------------
echo hello >"$M/a"
check "write and read back" test "$(cat "$M/a")" = hello
echo more >>"$M/a"
check "append" test "$(cat "$M/a")" = "$(printf 'hello\nmore')"
mkdir "$M/d"
mkdir -p "$M/d/e/f"
echo x >"$M/d/e/f/g"
check "nested directories" test "$(cat "$M/d/e/f/g")" = x
check "ls lists children" test "$(ls "$M/d")" = e
check "root listing hides .cairn" test "$(ls -A "$M" | tr '\n' ' ')" = "a d "
check "control dir reachable by name" test "$(cat "$M/.cairn/dbdir")" = "$(realpath "$DB")"
check "stats readable" grep -q puts "$M/.cairn/stats"
check "stats.json readable" grep -q '"puts"' "$M/.cairn/stats.json"
check "metrics in prometheus format" grep -q '^# TYPE cairn_puts_total counter' "$M/.cairn/metrics"
touch "$M/t"
check "touch creates an empty file" test -f "$M/t" -a ! -s "$M/t"
chmod 0600 "$M/t"
check "chmod" test "$(stat -c %a "$M/t")" = 600
touch -d "2001-02-03 04:05:06.123456789" "$M/t"
check "utimens with nanoseconds" test "$(stat -c %y "$M/t")" = "2001-02-03 04:05:06.123456789 +0000"
ln -s a "$M/sl"
check "symlink and readlink" test "$(readlink "$M/sl")" = a
check "read through symlink" test "$(head -1 "$M/sl")" = hello
setfattr -n user.color -v blue "$M/a"
check "getfattr" test "$(getfattr --only-values -n user.color "$M/a")" = blue
setfattr -n user.size -v big "$M/a"
check "listxattr" test "$(getfattr -d "$M/a" | grep -c '^user\.')" = 2
setfattr -x user.size "$M/a"
check_err "removexattr then get" "No such attribute" getfattr -n user.size "$M/a"
truncate -s 3 "$M/a"
check "truncate shrinks" test "$(cat "$M/a")" = hel
truncate -s 10 "$M/a"
check "truncate extends with zeros" test "$(od -An -c "$M/a" | tr -s ' ' | head -1)" = " h e l \0 \0 \0 \0 \0 \0 \0"
printf 'abcdefgh' >"$M/p"
printf 'XY' | dd of="$M/p" bs=1 seek=3 conv=notrunc status=none
check "overwrite in the middle" test "$(cat "$M/p")" = abcXYfgh
check "statfs gives real figures" test "$(stat -f -c %b "$M")" -gt 0
check "find walks the tree" test "$(find "$M" | wc -l)" = 9

# ---- rename ------------------------------------------------------------------
echo one >"$M/r1"
echo two >"$M/r2"
mv "$M/r1" "$M/r2"
check "rename replaces a file" test "$(cat "$M/r2")" = one -a ! -e "$M/r1"
mv "$M/d" "$M/dd"
check "rename a directory moves its subtree" test "$(cat "$M/dd/e/f/g")" = x -a ! -e "$M/d"
mkdir "$M/empty"
mv -T "$M/dd" "$M/empty"
check "rename a directory over an empty one" test -f "$M/empty/e/f/g"
mkdir "$M/full" && touch "$M/full/x"
check_err "rename over a non-empty directory" "not empty" python3 -c "import os; os.rename('$M/empty', '$M/full')"
check_err "rename a file over a directory" "Is a directory" python3 -c "import os; os.rename('$M/r2', '$M/full')"
check_err "rename a directory into itself" "Invalid argument" python3 -c "import os; os.rename('$M/empty', '$M/empty/e/inside')"
RENAME2="import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
r = libc.renameat2(-100, sys.argv[1].encode(), -100, sys.argv[2].encode(), int(sys.argv[3]))
if r: e = ctypes.get_errno(); sys.exit(os.strerror(e))"
echo A >"$M/xa"
echo B >"$M/xb"
check_err "RENAME_NOREPLACE refuses" "File exists" python3 -c "$RENAME2" "$M/xa" "$M/xb" 1
python3 -c "$RENAME2" "$M/xa" "$M/xb" 2
check "RENAME_EXCHANGE swaps files" test "$(cat "$M/xa")$(cat "$M/xb")" = BA
python3 -c "$RENAME2" "$M/xa" "$M/empty" 2
check "RENAME_EXCHANGE swaps a file and a directory" test -f "$M/xa/e/f/g" -a "$(cat "$M/empty")" = B

# ---- removal ------------------------------------------------------------------
check_err "rmdir of a non-empty directory" "not empty" rmdir "$M/full"
rm "$M/full/x"
check "rmdir of an emptied directory" rmdir "$M/full"
rm -r "$M/xa"
check "rm -r removes a tree" test ! -e "$M/xa"
mkdir -p "$M/keep/empty"
check "empty directories persist" test -d "$M/keep/empty"
echo x >"$M/xat"
setfattr -n user.k -v v "$M/xat"
rm "$M/xat"
echo y >"$M/xat"
check_err "unlink drops extended attributes" "No such attribute" getfattr -n user.k "$M/xat"
setfattr -n user.k -v v "$M/xat"
# a file unlinked while open with unwritten pages: close succeeds (the
# kernel's time update for the gone file is accepted), the data goes nowhere
check "close of a file unlinked while open succeeds" python3 -c "
import os
fd = os.open('$M/gone', os.O_WRONLY | os.O_CREAT, 0o644)
os.write(fd, b'x' * 10000)
os.unlink('$M/gone')
os.write(fd, b'y' * 10000)
os.close(fd)"
check "the unlinked file stays gone" test ! -e "$M/gone"

# ---- bad input ----------------------------------------------------------------
LONG=$(printf 'n%.0s' $(seq 256))
check_err "name over 255 bytes" "File name too long" touch "$M/$LONG"
check_err "mkdir over a file" "File exists" mkdir "$M/a"
check_err "a file under a file" "Not a directory" touch "$M/a/b"
check_err "write to a directory" "Is a directory" sh -c "echo x > '$M/keep'"
check_err "a hard link to a directory" "not allowed" ln "$M/keep" "$M/hard"
NAME255=$(printf 'p%.0s' $(seq 255))
deep_path_too_long() {
	(
		cd "$M" || exit 1
		for _ in $(seq 17); do
			mkdir "$NAME255" 2>&1 || exit 1
			cd "$NAME255" || exit 1
		done
	)
}
check_err "path over 4095 bytes" "File name too long" deep_path_too_long
rm -rf "${M:?}/$NAME255"

# ---- control file -------------------------------------------------------------
# /bin/echo, not the shell's builtin: it reports a failed write or close. A
# failed command fails the write(2) with its errno (open=1: direct I/O) or,
# under the writeback cache with open=0, the close(2) with EIO; either way
# .cairn/result says why.
ctl() { /bin/echo "$1" >"$M/.cairn/control"; }
result_is() { test "$(cat "$M/.cairn/result")" = "$1"; }
CTL_FAILED="Invalid argument\|Input/output error"
check "control: flush" ctl flush
check "control: result of flush" result_is "ok flush"
check "control: sync" ctl sync
check "control: compact" ctl compact
check "control: checkpoint" sh -c "/bin/echo checkpoint $T/ckpt > '$M/.cairn/control' && test -d $T/ckpt"
check "control: result of checkpoint" result_is "ok checkpoint $T/ckpt"
check_err "control: unknown command fails" "$CTL_FAILED" ctl bogus
check "control: result of an unknown command" result_is "error: unknown command 'bogus' (EINVAL)"
check_err "control: checkpoint needs an absolute path" "$CTL_FAILED" ctl "checkpoint rel"
check "control: result of a relative checkpoint" \
	result_is "error: checkpoint needs an absolute path: 'rel' (EINVAL)"
check_err "control: checkpoint into an existing directory" "$CTL_FAILED\|File exists" \
	ctl "checkpoint $T/ckpt"
check "control: result of a failed checkpoint" grep -q "^error: .*(EEXIST)$" "$M/.cairn/result"
check "control: a later command resets the result" sh -c "/bin/echo sync > '$M/.cairn/control' && grep -qx 'ok sync' '$M/.cairn/result'"

# ---- rsync of a tree --------------------------------------------------------------
mkdir -p "$T/src"
for i in $(seq 0 39); do
	mkdir -p "$T/src/dir$i/sub"
	for j in $(seq 0 49); do
		echo "file $i $j" >"$T/src/dir$i/sub/f$j.txt"
	done
done
chmod 0640 "$T/src/dir3/sub/f7.txt"
ln -s ../f1.txt "$T/src/dir1/sub/link"
check "rsync a 2000-file tree in" rsync -a "$T/src/" "$M/tree/"
check "tree equal after rsync" diff -r --no-dereference "$T/src" "$M/tree"
check "second rsync transfers nothing" test -z "$(rsync -ai "$T/src/" "$M/tree/")"
rsync -a "$M/tree/" "$T/back/"
check "rsync back out is equal" diff -r --no-dereference "$T/src" "$T/back"

# ---- concurrent writers -------------------------------------------------------------
mkdir "$M/conc"
for w in 1 2 3 4 5 6; do
	(for i in $(seq 1 60); do echo "w$w-$i" >"$M/conc/w$w-$i"; done) &
done
wait_writers() {
	local p
	for p in $(jobs -p); do
		[ "$p" = "$PID" ] || wait "$p"
	done
}
wait_writers
conc_ok() {
	for w in 1 2 3 4 5 6; do
		for i in $(seq 1 60); do
			[ "$(cat "$M/conc/w$w-$i")" = "w$w-$i" ] || return 1
		done
	done
}
check "concurrent writers from 6 processes" conc_ok
check "concurrent writers: all files listed" test "$(ls "$M/conc" | wc -l)" = 360

# ---- unmount and remount ------------------------------------------------------------
check "clean unmount" umount_fs
mount_fs
check "remount: data present" test "$(cat "$M/p")" = abcXYfgh
check "remount: mode kept" test "$(stat -c %a "$M/t")" = 600
check "remount: mtime kept" test "$(stat -c %y "$M/t")" = "2001-02-03 04:05:06.123456789 +0000"
check "remount: xattr kept" test "$(getfattr --only-values -n user.color "$M/a")" = blue
rm "$M/xat"
touch "$M/xat"
check_err "remount: unlink drops extended attributes" "No such attribute" getfattr -n user.k "$M/xat"
check "remount: symlink kept" test "$(readlink "$M/sl")" = a
check "remount: empty directory kept" test -d "$M/keep/empty"
check "remount: tree equal" diff -r --no-dereference "$T/src" "$M/tree"

# ---- kill -9 after fsync ---------------------------------------------------------------
echo durable | dd of="$M/fsynced" conv=fsync status=none
python3 -c "
import os
fd = os.open('$M/pyfsync', os.O_WRONLY | os.O_CREAT, 0o644)
os.write(fd, b'x' * 100000)
os.fsync(fd)
os.close(fd)"
fs_kill9
fusermount3 -u "$MNT" 2>/dev/null || umount -l "$MNT"
mount_fs
check "kill -9 after fsync: dd conv=fsync data kept" test "$(cat "$M/fsynced")" = durable
check "kill -9 after fsync: os.fsync data kept" test "$(stat -c %s "$M/pyfsync")" = 100000
umount_fs

# Large files (pieces, random writes, truncation, sparse files): tests/fs/large.sh

# ---- read-only mount ---------------------------------------------------------------------
mount_fs -o ro
check "read-only: reads work" test "$(cat "$M/p")" = abcXYfgh
check_err "read-only: writes fail with EROFS" "Read-only file system" touch "$M/new"
umount_fs

# ---- a database that cannot be opened is not mounted -----------------------------------
echo "not a dir" >"$T/notadb"
check_err "bad DBDIR: not mounted, says why" "cannot open database" "$CAIRNFS" -f "$T/notadb" "$MNT"
check_err "bad option value: says what it expects" "inline_max=100M (expected a size of at most 64M)" \
	"$CAIRNFS" -f -o inline_max=100M "$T/db2" "$MNT"
check_err "bad option value: a size that is not one" "memtable_size=lots (expected a size" \
	"$CAIRNFS" -f -o memtable_size=lots "$T/db2" "$MNT"
check "bad DBDIR: mount point left alone" sh -c "! mountpoint -q '$MNT'"

# ---- full disk -----------------------------------------------------------------------------
mkdir -p "$T/small"
if mount -t tmpfs -o size=24m tmpfs "$T/small" 2>/dev/null; then
	DB=$T/small/db
	mount_fs -o memtable_size=1M
	head -c $((4 * 1024 * 1024)) /dev/urandom >"$T/chunk"
	cp "$T/chunk" "$M/first"
	full() {
		for i in $(seq 1 20); do
			cp "$T/chunk" "$M/fill$i" || return 1
		done
	}
	check_err "full disk gives ENOSPC" "No space left on device" full
	check "full disk: earlier data intact" cmp "$T/chunk" "$M/first"
	umount_fs
else
	echo "skip - full disk (cannot mount a tmpfs here)"
fi

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
