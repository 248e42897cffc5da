#!/bin/bash
# tests/fs/mount.sh - mounting and messages: what cairnfs refuses before it
# mounts (a mount point that is not a directory, a database a read-write
# process holds, a foreign non-empty DBDIR, options out of range), errors of
# a background daemon in syslog, `make install` then `mount -t fuse.cairnfs`
# as mount(8) runs it, and docs/cairnfs.md agreeing with the code (its first
# example, run as written, and the defaults of --help).
#
#   CAIRNFS=... CAIRN=... tests/fs/mount.sh
#
# Exits 77 (skipped) without root, FUSE or fusermount3.
set -u
export LC_ALL=C

SRCDIR=${srcdir:-$(dirname "$0")/../..}
. "$(dirname "$0")/lib.sh" # ok, bad, check, mount_fs, umount_fs, fs_setup
fs_setup mount
mkdir -p "$T/mnt2"
trap 'fs_stop; mountpoint -q "$T/mnt2" 2>/dev/null && { fusermount3 -u "$T/mnt2" 2>/dev/null || umount -l "$T/mnt2"; }; rm -rf "$T"' EXIT

if [ "$(id -u)" -ne 0 ]; then
	echo "skipped: needs root"
	exit 77
fi

# refused DESCRIPTION MESSAGE ARGS...: cairnfs ARGS must exit non-zero, say
# MESSAGE and leave nothing mounted.
refused() {
	local d=$1 msg=$2 out rc before= m
	shift 2
	for m in "$MNT" "$T/mnt2"; do
		mountpoint -q "$m" && before="$before $m"
	done
	out=$(timeout 20 "$CAIRNFS" "$@" 2>&1)
	rc=$?
	if [ $rc -eq 0 ]; then
		bad "$d (exit 0)"
	elif ! grep -q -- "$msg" <<<"$out"; then
		bad "$d (said: $out)"
	else
		ok "$d"
	fi
	for m in "$MNT" "$T/mnt2"; do
		case " $before " in *" $m "*) continue ;; esac
		mountpoint -q "$m" && { bad "$d: $m was mounted"; fusermount3 -u "$m"; }
	done
}

# ---- refused before mounting ----------------------------------------------------
echo x >"$T/file"
refused "a mount point that is a file" "is not a directory" "$T/db0" "$T/file"
refused "a missing mount point" "No such file" "$T/db0" "$T/nowhere"
mkdir -p "$T/home"
echo "my notes" >"$T/home/notes.txt"
refused "a non-empty directory that is not a database" "give -o create" "$T/home" "$MNT"
check "... which is left as it was" test "$(ls "$T/home")" = notes.txt
check "-o create creates a database there anyway" "$CAIRNFS" -o create "$T/home" "$MNT"
check "... and mounts it" mountpoint -q "$MNT"
fusermount3 -u "$MNT" 2>/dev/null
sleep 0.5
for o in memtable_size=0 memtable_size=1k max_open_tables=0 max_open_tables=7 \
	background_threads=65 cache_size=0; do
	refused "-o $o is refused" "bad option value: $o" -o "$o" "$DB" "$MNT"
done

# the mount table names the database and the type, whatever fsname says:
# the cairn CLI finds a database's mount by them alone
mount_fs -o sync_interval_ms=100,fsname=other || exit 1
check "the mount table shows DBDIR as source, type fuse.cairnfs" \
	test "$(awk -v m="$MNT" '$2 == m { print $1, $3 }' /proc/self/mounts)" = "$DB fuse.cairnfs"
echo one >"$MNT/f"
refused "-o ro beside a read-write mount" "in use by a read-write process" -o ro "$DB" "$T/mnt2"
refused "a second read-write mount" "locked by process" "$DB" "$T/mnt2"
umount_fs || bad "unmount"
check "-o ro alone mounts" "$CAIRNFS" -o ro "$DB" "$T/mnt2"
check "... and reads" test "$(cat "$T/mnt2/f" 2>&1)" = one
refused "a read-write mount beside a read-only one" "locked by process" "$DB" "$MNT"
check "a second read-only mount beside it" "$CAIRNFS" -o ro "$DB" "$MNT"
fusermount3 -u "$MNT" 2>/dev/null
fusermount3 -u "$T/mnt2" 2>/dev/null
sleep 0.5
# A checkpoint has no LOCK: a writer coming after a read-only mount of it
# must still be kept out, or the mount serves what is no longer there.
"$CAIRN" -d "$DB" checkpoint "$T/cp" >/dev/null
chown -R 65534:65534 "$T/cp" # a user's copy, mounted by root
check "-o ro of a checkpoint mounts" "$CAIRNFS" -o ro "$T/cp" "$T/mnt2"
check "... and reads" test "$(cat "$T/mnt2/f" 2>&1)" = one
check "... the CLI cannot write beside it" sh -c "! \"\$0\" -d \"\$1\" put f two" "$CAIRN" "$T/cp"
refused "... nor a read-write mount" "locked by process" "$T/cp" "$MNT"
check "... which still reads what is stored" test "$(cat "$T/mnt2/f" 2>&1)" = one
fusermount3 -u "$T/mnt2" 2>/dev/null
check "... the LOCK it made belongs to the database's owner" \
	test "$(stat -c %u:%g "$T/cp/LOCK")" = 65534:65534
sleep 0.5

# ---- errors of a background daemon reach syslog ------------------------------------
# In a private mount namespace, /dev is replaced by a directory holding what
# the daemon needs and a socket at /dev/log this test listens on.
"$CAIRN" -d "$DB" -x put '\0mbroken' 'not a record' >/dev/null
if command -v unshare >/dev/null && command -v python3 >/dev/null &&
	unshare -m true 2>/dev/null; then
	cat >"$T/listen.py" <<'PY'
import socket, sys, time
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
s.settimeout(0.2)
end = time.time() + 30
with open(sys.argv[2], "ab", buffering=0) as out:
    while time.time() < end:
        try:
            out.write(s.recv(65536) + b"\n")
        except socket.timeout:
            pass
PY
	mkdir -p "$T/dev"
	unshare -m bash -c '
		T=$1 CAIRNFS=$2 DB=$3 MNT=$4
		mount --make-rprivate /
		for f in null zero fuse urandom random; do
			touch "$T/dev/$f" && mount --bind "/dev/$f" "$T/dev/$f"
		done
		python3 "$T/listen.py" "$T/dev/log" "$T/syslog" & L=$!
		for _ in $(seq 50); do [ -S "$T/dev/log" ] && break; sleep 0.1; done
		mount --rbind "$T/dev" /dev
		"$CAIRNFS" "$DB" "$MNT" || exit 1
		stat "$MNT/broken" >/dev/null 2>&1
		fusermount3 -u "$MNT" 2>/dev/null || umount "$MNT"
		sleep 0.5
		kill $L
	' sh "$T" "$CAIRNFS" "$DB" "$MNT" >"$T/ns.log" 2>&1
	check "a background daemon logs errors to syslog" \
		grep -q "cairnfs\[[0-9]*\]: .*broken.*cannot be decoded" "$T/syslog"
	check "... as a daemon-facility error (<27>: LOG_DAEMON|LOG_ERR)" grep -q "^<27>" "$T/syslog"
else
	echo "skip - syslog: no unshare or python3 here"
fi

# ---- make install, then mount -t fuse.cairnfs as mount(8) runs it ---------------------
# mount(8) drops PATH and LD_LIBRARY_PATH before mount.fuse3 runs
# "cairnfs ..." through /bin/sh, so the shell's own default search path
# must find it. The installed tree is bound over $BINDIR in a private mount
# namespace, so the system's $BINDIR is never touched.
BUILDDIR=$(dirname "$CAIRNFS")
BINDIR=${CAIRN_BINDIR:-/usr/local/bin}
if [ -f "$BUILDDIR/Makefile" ] && command -v unshare >/dev/null && unshare -m true 2>/dev/null &&
	[ -d "$BINDIR" ] && command -v mount.fuse3 >/dev/null; then
	make -s -C "$BUILDDIR" install DESTDIR="$T/inst" >"$T/install.log" 2>&1
	check "make install puts cairnfs in \$(bindir) ($BINDIR)" test -x "$T/inst$BINDIR/cairnfs"
	# whatever the configure options (--disable-static included)
	if command -v readelf >/dev/null; then
		check "... with the engine linked in (no libcairn.so needed)" \
			sh -c "readelf -d '$T/inst$BINDIR/cairnfs' >'$T/dyn' && ! grep -q 'NEEDED.*libcairn' '$T/dyn'"
	fi
	# shellcheck disable=SC2016
	check "\$(bindir) is on the default path of mount.fuse3's /bin/sh" \
		env -i /bin/sh -c "case :\$PATH: in *:$BINDIR:*) true ;; *) false ;; esac"
	mkdir -p "$T/db3" "$T/mnt3"
	unshare -m bash -c '
		mount --make-rprivate /
		mount --bind "$1" "$2"
		mount -t fuse.cairnfs "$3" "$4" -o sync_interval_ms=100 || exit 1
		echo hi >"$4/x" && test "$(cat "$4/x")" = hi
		rc=$?
		umount "$4"
		exit $rc
	' sh "$T/inst$BINDIR" "$BINDIR" "$T/db3" "$T/mnt3" >"$T/ns2.log" 2>&1
	check "mount -t fuse.cairnfs runs the installed cairnfs" test $? -eq 0
	[ -s "$T/ns2.log" ] && cat "$T/ns2.log"
else
	echo "skip - install: no build directory, unshare or mount.fuse3"
fi

# ---- docs/cairnfs.md agrees with the code -----------------------------------------------
# its first example, run as written with the paths replaced
sed -n '/^```sh$/,/^```$/p' "$SRCDIR/docs/cairnfs.md" | sed '1d;$d' | head -5 >"$T/example.sh"
sed -i "s|/var/lib/mydb|$T/exdb|g; s|/mnt/db|$MNT|g; s|^cairnfs |\"\$CAIRNFS\" |; s|#.*||" "$T/example.sh"
check "the first example of docs/cairnfs.md runs" env CAIRNFS="$CAIRNFS" bash -e "$T/example.sh"
mountpoint -q "$MNT" && fusermount3 -u "$MNT"
# each option of the table: its default in --help too
help=$("$CAIRNFS" --help 2>&1)
while IFS='|' read -r _ opt def _; do
	name=$(sed 's/`//g; s/^ *//; s/[= ].*//' <<<"$opt")
	def=$(tr -d ' ' <<<"$def")
	[ -n "$name" ] || continue
	block=$(awk -v n="-o $name" 'index($0, n) { p = 1; print; next } p && /^    -o / { exit } p' <<<"$help")
	if [ -z "$block" ]; then
		bad "--help lists -o $name"
	elif grep -q "(default $def[:)]" <<<"$block"; then
		ok "--help and docs agree: $name defaults to $def"
	else
		bad "--help and docs disagree on $name (docs: $def; help: $block)"
	fi
done < <(sed -n '/^| option | default | meaning |/,/^$/p' "$SRCDIR/docs/cairnfs.md" |
	tail -n +3 | sed 's/\\|/ or /g')

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
