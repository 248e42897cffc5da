#!/bin/bash
# tests/fs/semantics.sh - POSIX details that tools rely on (cairnfs issue 16):
# control commands run exactly once (item 4), directory times (create,
# unlink, rename, link) and link counts (item 16), sparse files (item 17)
# and sync(1)/syncfs(2) (item 18).
# Each part runs on a fresh mount with the defaults, open=1 and flush=1.
#
#   CAIRNFS=/path/to/cairnfs tests/fs/semantics.sh
#
# Exits 77 (skipped) when FUSE cannot be used here.
set -u
export LC_ALL=C

HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/lib.sh" # ok, bad, check, mount_fs, umount_fs, fs_setup
fs_setup sem

# ---- item 4: each control command runs once ---------------------------------
control() {
	local o=$1 cp=$T/cp$2
	mkdir -p "$cp"
	# the first command reaches the daemon (fsync), the second dirties the
	# same page: only the second may run at close
	if python3 - "$MNT/.cairn/control" "$cp" <<'PY'; then
import os, sys
fd = os.open(sys.argv[1], os.O_WRONLY | os.O_TRUNC)
os.write(fd, ("checkpoint %s/c1\n" % sys.argv[2]).encode())
os.fsync(fd)
os.write(fd, ("checkpoint %s/c2\n" % sys.argv[2]).encode())
os.close(fd)
PY
		ok "two checkpoints on one descriptor ($o)"
	else
		bad "two checkpoints on one descriptor ($o): $(cat "$MNT/.cairn/result")"
	fi
	check "the second checkpoint made ($o)" test -d "$cp/c2"
	/bin/echo "checkpoint $cp/c3" >>"$MNT/.cairn/control"
	check "an appended command runs alone ($o)" grep -q "^ok checkpoint $cp/c3" "$MNT/.cairn/result"
	/bin/echo "checkpoint $cp/c4" 2>/dev/null >"$MNT/.cairn/control"
	check "a command after truncation runs ($o)" test -d "$cp/c4"
	/bin/echo "checkpoint $cp/c4" 2>/dev/null >"$MNT/.cairn/control"
	check "the same command again runs again ($o)" \
		grep -q "^error: .*already exists (EEXIST)" "$MNT/.cairn/result"
	mkdir -p "$MNT/sub"
	ln -sfn "$MNT" "$T/to-mnt"
	ln -sfn ../to-mnt/sub "$cp/rel"
	for dest in "$MNT/ck" "$MNT/sub/../sub/ck" "$T/to-mnt/ck" "$cp/rel/ck" "$cp/./rel/../rel"; do
		checkpoint_into_mount "$o" "$dest"
	done
	rm -rf "$MNT/sub" "$T/to-mnt"
}

# A checkpoint aimed inside the mount would make the daemon write into itself
# and stop: it is refused. A daemon that hangs instead is killed after a
# generous wait (its connection aborted: it waits on itself), and the mount
# made again for the tests that follow.
checkpoint_into_mount() {
	local o=$1 dest=$2 w
	/bin/echo "checkpoint $dest" 2>/dev/null >"$MNT/.cairn/control" &
	w=$!
	for _ in $(seq 600); do kill -0 "$w" 2>/dev/null || break; sleep 0.1; done
	if kill -0 "$w" 2>/dev/null; then
		bad "checkpoint into the mount ($dest) hangs the daemon ($o)"
		fs_abort
		kill -9 "$w" 2>/dev/null
		wait "$w" 2>/dev/null
		mount_fs ${opts:+-o "$opts"}
		return
	fi
	wait "$w" && bad "checkpoint into the mount ($dest) succeeded ($o)" && return
	check "checkpoint into the mount refused: $dest ($o)" \
		grep -q "^error: checkpoint target .* is inside this mount .*(EINVAL)" "$MNT/.cairn/result"
	check "nothing written there ($o)" test ! -e "$dest/CURRENT"
}

# ---- item 16: directory times and link counts -------------------------------
dirtimes() {
	local o=$1 d=$MNT/dt a b
	mkdir "$d" "$d/moved"
	a=$(stat -c '%Y %Z' "$d")
	sleep 1.1
	touch "$d/f"
	b=$(stat -c '%Y %Z' "$d")
	check "create moves the directory's mtime and ctime ($o)" test "$a" != "$b" -a "${b% *}" -gt "${a% *}" -a "${b#* }" -gt "${a#* }"
	sleep 1.1
	rm "$d/f"
	a=$(stat -c '%Y %Z' "$d")
	check "unlink moves them ($o)" test "${a% *}" -gt "${b% *}" -a "${a#* }" -gt "${b#* }"
	sleep 1.1
	touch "$MNT/g"
	mv "$MNT/g" "$d/g"
	b=$(stat -c '%Y' "$d")
	check "rename into the directory moves them ($o)" test "$b" -gt "${a% *}"
	sleep 1.1
	ln "$d/g" "$d/h"
	a=$(stat -c '%Y %Z' "$d")
	check "link moves them ($o)" test "${a% *}" -gt "$b" -a "${a#* }" -gt "$b"
	rm "$d/h"
	check "an empty directory has 2 links ($o)" test "$(stat -c %h "$d/moved")" = 2
	mkdir "$d/s1" "$d/s2" "$d/s3"
	touch "$d/x"
	check "2 + 4 subdirectories ($o)" test "$(stat -c %h "$d")" = 6
	rmdir "$d/s1"
	check "rmdir drops one link ($o)" test "$(stat -c %h "$d")" = 5
	mv "$d/s2" "$d/moved/"
	check "rename of a directory moves its link ($o)" \
		test "$(stat -c %h "$d" "$d/moved" | tr '\n' ' ')" = "4 3 "
	ls -l "$d" >/dev/null
	check "a listing agrees ($o)" test "$(stat -c %h "$d/moved")" = 3
	check "find sees every directory ($o)" test "$(find "$d" -type d | wc -l)" = 4
	rm -rf "$d" "$MNT/g"
}

# ---- item 18: sync(1) / syncfs(2) --------------------------------------------
# syncfs writes the dirty pages back and the daemon commits them to its log,
# so they survive the daemon's death at once (power loss: within
# sync_interval_ms, docs/cairnfs.md). With flush=1 they go to the file's
# buffer, which the control file's sync commits; syncfs alone promises
# nothing there (the SETATTR of times that often commits the buffer may
# overtake the writes).
syncfs_kill() {
	local o=$1 ctl=
	[ "$opts" = flush=1 ] && ctl=$MNT/.cairn/control
	python3 - "$MNT/s" "$ctl" <<'PY' &
import ctypes, os, sys, time
fd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT, 0o644)
os.write(fd, b"synced\n" * 1000)
if ctypes.CDLL(None, use_errno=True).syncfs(fd):
    sys.exit(1)
if sys.argv[2]:
    with open(sys.argv[2], "w") as c:
        c.write("sync\n")
open(sys.argv[1] + ".done", "w").close()
time.sleep(300)  # killed with the mount: the file is never closed
PY
	local py=$!
	for _ in $(seq 600); do [ -e "$MNT/s.done" ] && break; sleep 0.1; done
	fs_kill9
	kill "$py" 2>/dev/null
	wait "$py" 2>/dev/null
	fusermount3 -u "$MNT" 2>/dev/null || umount -l "$MNT"
	mount_fs ${opts:+-o "$opts"} || { bad "remount after kill ($o)"; return; }
	check "syncfs then SIGKILL of the daemon: data kept ($o)" \
		test "$(wc -c <"$MNT/s" 2>/dev/null)" = 7000
}

# ---- item 7: a rewrite by truncation never leaves an empty file --------------
# an fsynced file reopened with O_TRUNC and rewritten: the daemon killed
# before the rewrite reaches it must leave the old content (or the new)
# kill_remount OPTS: SIGKILL the daemon, unmount what is left, mount again
kill_remount() {
	fs_kill9
	fusermount3 -u "$MNT" 2>/dev/null || umount -l "$MNT"
	mount_fs ${1:+-o "$1"}
}

rewrite_kill() {
	local o=$1 py
	python3 - "$MNT/rw" <<'PY' &
import os, sys, time
p = sys.argv[1]
fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
os.write(fd, b"old\n" * 1000)
os.fsync(fd)
os.close(fd)
fd = os.open(p, os.O_WRONLY | os.O_TRUNC)
os.write(fd, b"new\n" * 1000)
open(p + ".ready", "w").close()
time.sleep(30)  # killed with the mount before close
PY
	py=$!
	for _ in $(seq 100); do [ -e "$MNT/rw.ready" ] && break; sleep 0.1; done
	kill_remount "$opts" || { bad "remount after kill ($o)"; kill "$py"; return; }
	kill "$py" 2>/dev/null
	wait "$py" 2>/dev/null
	check "O_TRUNC rewrite, daemon killed before close: old content ($o)" \
		test "$(md5sum <"$MNT/rw")" = "$(yes old | head -1000 | md5sum)"
	printf 'x%.0s' $(seq 100) >"$MNT/rw2"
	: >"$MNT/rw2"
	check "a truncation alone shows at once ($o)" test "$(stat -c %s "$MNT/rw2")" = 0 -a -z "$(cat "$MNT/rw2")"
	echo new >"$MNT/rw"
	check "an O_TRUNC rewrite reads back ($o)" test "$(cat "$MNT/rw")" = new
	sleep 6.5 # the sweeper commits a truncation no write followed
	kill_remount "$opts" || { bad "remount after kill ($o)"; return; }
	check "a truncation alone is committed within seconds ($o)" test "$(stat -c %s "$MNT/rw2")" = 0
	check "the rewrite survives a kill after close ($o)" test "$(cat "$MNT/rw")" = new
}

# ---- item 17: sparse files -----------------------------------------------------
sparse() {
	local o=$1 out
	cat >"$T/sparse.py" <<'PY'
import errno, os, sys
m = sys.argv[1]
p = m + "/sparse"
G, M = 1 << 30, 1 << 20
fd = os.open(p, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
os.ftruncate(fd, 5 * G)
os.pwrite(fd, b"x" * (5 * M), G)
os.close(fd)
bad = []
st = os.stat(p)
if not 5 * M <= st.st_blocks * 512 < 6 * M:
    bad.append("st_blocks %d of a 5 GiB file with 5 MiB written" % st.st_blocks)
fd = os.open(p, os.O_RDONLY)
for whence, off, want in ((os.SEEK_DATA, 0, G), (os.SEEK_HOLE, 0, 0),
                          (os.SEEK_HOLE, G, G + 5 * M), (os.SEEK_DATA, G + M, G + M)):
    got = os.lseek(fd, off, whence)
    if got != want:
        bad.append("lseek(%d, %d) = %d, not %d" % (off, whence, got, want))
try:
    os.lseek(fd, 2 * G, os.SEEK_DATA)
    bad.append("SEEK_DATA past the last data did not fail")
except OSError as e:
    if e.errno != errno.ENXIO:
        bad.append("SEEK_DATA past the last data: errno %d" % e.errno)
os.close(fd)
print("\n".join(bad))
sys.exit(1 if bad else 0)
PY
	if out=$(python3 "$T/sparse.py" "$MNT" 2>&1); then
		ok "sparse file: st_blocks, SEEK_DATA, SEEK_HOLE ($o)"
	else
		bad "sparse file: $out ($o)"
	fi
	check "du counts what is stored ($o)" test "$(du -k "$MNT/sparse" | cut -f1)" -lt 6000
	check "fallocate extends ($o)" fallocate -l 10M "$MNT/fa"
	check "fallocate: size ($o)" test "$(stat -c %s "$MNT/fa")" = 10485760
	check "fallocate --keep-size ($o)" fallocate -n -l 20M "$MNT/fa"
	check "fallocate --keep-size keeps the size ($o)" test "$(stat -c %s "$MNT/fa")" = 10485760
	head -c 3000000 /dev/urandom >"$MNT/pu"
	cp "$MNT/pu" "$T/pu"
	check "fallocate --punch-hole ($o)" fallocate -p -o 100000 -l 1000000 "$MNT/pu"
	fallocate -p -o 100000 -l 1000000 "$T/pu"
	check "punched bytes read as zeros, the rest unchanged ($o)" cmp "$MNT/pu" "$T/pu"
	echo hello world >"$MNT/sm"
	check "punch a small file ($o)" fallocate -p -o 2 -l 3 "$MNT/sm"
	check "a small file punched ($o)" test "$(tr '\0' _ <"$MNT/sm")" = "he___ world"
	rm -f "$MNT/sparse" "$MNT/fa" "$MNT/pu" "$MNT/sm"
}

for opts in "" "open=1" "flush=1"; do
	o=${opts:-defaults}
	rm -rf "$DB"
	mount_fs ${opts:+-o "$opts"} || { echo "skipped: cannot mount"; exit 77; }
	control "$o" "${opts%%=*}"
	dirtimes "$o"
	sparse "$o"
	# the only attributes of a mount belong to a file with links (its keys
	# "\0h" INO "x" NAME): the daemon must still look for them after a remount
	python3 -c 'import os, sys; open(sys.argv[1], "w").close(); os.setxattr(sys.argv[1], "user.k", b"v"); os.link(sys.argv[1], sys.argv[2])' "$MNT/xl" "$MNT/xl2"
	check "unmount ($o)" umount_fs
	mount_fs ${opts:+-o "$opts"} || { bad "remount ($o)"; continue; }
	check "an attribute of a file with links after a remount ($o)" \
		python3 -c 'import os, sys; assert os.getxattr(sys.argv[1], "user.k") == b"v"' "$MNT/xl2"
	mkdir -p "$MNT/r/a" "$MNT/r/b"
	check "link counts after a remount ($o)" test "$(stat -c %h "$MNT/r")" = 4
	syncfs_kill "$o"
	rewrite_kill "$o"
	check "unmount ($o)" umount_fs
done

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
