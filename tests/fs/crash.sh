#!/bin/bash
# tests/fs/crash.sh - real crashes of cairnfs: mount a fresh database, run a
# write-heavy workload from the shell (many small files, some fsynced with
# dd conv=fsync or os.fsync, renames, files of several MiB), kill -9 the
# daemon at a random moment, lazily unmount the dead mount, remount and
# check every file against a journal of what was written:
# - a file whose fsync returned (and that nothing touched since) holds
#   exactly the fsynced content;
# - every other file holds one of the versions written to it (or moved to it
#   by a rename), or is absent if it may be; the one file being written at
#   the kill may also hold part of its new version: its bytes as far as the
#   kernel had written them back, zeros where it had not (the write was cut,
#   as on any file system); nothing else, in particular never a mix of two
#   versions. A new file whose creation was committed before the kill but
#   whose write-back was not is empty: that is the prefix of length 0.
# A write counts as done only when close(2) succeeded: the kernel writes the
# pages back at close, and a kill during that write-back makes close fail
# (EIO, ECONNABORTED). A shell's ">" ignores that failure, so small files
# are written with dd, which reports it.
# Cycles continue on the same database, from the state the check found.
#
#   CAIRNFS=/path/to/cairnfs tests/fs/crash.sh [CYCLES]     default 3
# Environment: CRASH_SEED (kill times and workload; default random,
# printed), TMPDIR. Exits 77 (skipped) when FUSE cannot be used here.
set -u
export LC_ALL=C

cycles=${1:-${CRASH_CYCLES:-3}}
CAIRNFS=${CAIRNFS:-$(pwd)/cairnfs}
seed=${CRASH_SEED:-$$}
RANDOM=$seed
T=$(mktemp -d "${TMPDIR:-/tmp}/cairnfs-crash.XXXXXX") || exit 1
DB=$T/db
MNT=$T/mnt
J=$T/journal
BIGS=$T/bigs
PID=
WPID=
mkdir -p "$MNT" "$BIGS"

cleanup() {
	[ -n "$WPID" ] && kill -9 "$WPID" 2>/dev/null
	if mountpoint -q "$MNT" 2>/dev/null; then
		fusermount3 -u "$MNT" 2>/dev/null || fusermount3 -u -z "$MNT" 2>/dev/null
	fi
	[ -n "$PID" ] && kill "$PID" 2>/dev/null && wait "$PID" 2>/dev/null
	rm -rf "$T"
}
trap cleanup EXIT

. "$(dirname "$0")/lib.sh" # mount_fs, fs_kill9

if [ ! -x "$CAIRNFS" ] || [ ! -e /dev/fuse ] || ! command -v fusermount3 >/dev/null ||
	! command -v python3 >/dev/null; then
	echo "skipped: no cairnfs binary, /dev/fuse, fusermount3 or python3"
	exit 77
fi
mount_fs || { echo "skipped: cannot mount"; exit 77; }

# A few sources of several MiB for the large files: past inline_max (1 MiB)
# they are stored as pieces, and the kernel writes them back in writes of up
# to 1 MiB, each its own commit (docs/cairnfs.md, "Durability"); a closed file
# has been written back whole. CRASH_LARGE=1 (scripts/crash-fs --large)
# writes larger ones.
for k in 0 1 2 3; do
	if [ "${CRASH_LARGE:-0}" = 1 ]; then
		size=$(((6 + 4 * k) * 1024 * 1024 + RANDOM))
	else
		size=$(((1 + k) * 1500 * 1024 + RANDOM))
	fi
	head -c "$size" /dev/urandom >"$BIGS/big$k"
done
: >"$J"

FSYNC_PY='import os, sys
fd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
data = open(sys.argv[2], "rb").read() if sys.argv[3] == "file" else (sys.argv[2] + "\n").encode()
os.write(fd, data)
os.fsync(fd)
os.close(fd)'

# The journal: "B path id" before a write, "D path id" after its close,
# "S path id" after its fsync, "R from to" before a rename, "RD from to rc"
# after it. id is the text of a small file (its content is id + newline)
# or big:bigK for a copy of $BIGS/bigK.
workload() {
	local c=$1 i=0 n f g txt r k
	RANDOM=$2
	for d in 0 1 2 3 4 5 6 7; do
		mkdir -p "$M/d$d" || return
	done
	while :; do
		i=$((i + 1))
		n=$((RANDOM % 150))
		f=d$((n % 8))/f$n
		txt=c$c-i$i-$n
		r=$((RANDOM % 40))
		if [ $r -lt 27 ]; then
			echo "B $f $txt" >>"$J"
			echo "$txt" | dd of="$M/$f" status=none || return
			echo "D $f $txt" >>"$J"
		elif [ $r -lt 31 ]; then
			echo "B $f $txt" >>"$J"
			echo "$txt" | dd of="$M/$f" conv=fsync status=none || return
			echo "S $f $txt" >>"$J"
		elif [ $r -lt 34 ]; then
			echo "B $f $txt" >>"$J"
			python3 -c "$FSYNC_PY" "$M/$f" "$txt" text || return
			echo "S $f $txt" >>"$J"
		elif [ $r -lt 38 ]; then
			g=d$(((n + 3) % 8))/f$(((n * 7 + 1) % 150))
			[ "$f" = "$g" ] && continue
			echo "R $f $g" >>"$J"
			mv "$M/$f" "$M/$g" 2>/dev/null
			echo "RD $f $g $?" >>"$J"
			mountpoint -q "$M" || return
		else
			k=$((RANDOM % 4))
			echo "B $f big:big$k" >>"$J"
			if [ $((RANDOM % 2)) = 0 ]; then
				cp "$BIGS/big$k" "$M/$f" || return
				echo "D $f big:big$k" >>"$J"
			else
				python3 -c "$FSYNC_PY" "$M/$f" "$BIGS/big$k" file || return
				echo "S $f big:big$k" >>"$J"
			fi
		fi
	done
}

# Checks the mounted tree against the journal; prints problems and the new
# baseline journal (every file as it is now, as "S" lines) to $J.new.
VERIFY_PY='import hashlib, os, sys
mnt, jpath, bigs = sys.argv[1], sys.argv[2], sys.argv[3]
ABSENT = None
def content(vid):
    if vid.startswith("big:"):
        return open(os.path.join(bigs, vid[4:]), "rb").read()
    return (vid + "\n").encode()
allowed, required, inflight = {}, {}, None
def allow(p, v): allowed.setdefault(p, {ABSENT}).add(v)
for line in open(jpath):
    w = line.split()
    if not w:
        continue
    if w[0] in ("B", "D", "S") and len(w) < 3:
        inflight = None  # a line cut by the kill
        continue
    if w[0] == "B":
        allow(w[1], w[2]); required.pop(w[1], None); inflight = (w[1], w[2])
    elif w[0] in ("D", "S"):
        inflight = None
        if w[0] == "S":
            allowed[w[1]] = {w[2]}; required[w[1]] = w[2]
    elif w[0] == "R" and len(w) >= 3:
        src, dst = w[1], w[2]
        for v in list(allowed.get(src, {ABSENT})):
            allow(dst, v)
        allow(src, ABSENT); allow(dst, ABSENT)
        required.pop(src, None); required.pop(dst, None)
        inflight = ("rename", src, dst)
    elif w[0] == "RD":
        inflight = None
paths = set(allowed)
for d, _, files in os.walk(mnt):
    for f in files:
        paths.add(os.path.relpath(os.path.join(d, f), mnt))
bad, partial, base = [], 0, []
cache = {}
for p in sorted(paths):
    fp = os.path.join(mnt, p)
    try:
        data = open(fp, "rb").read()
    except FileNotFoundError:
        data = ABSENT
    ok = None
    for v in allowed.get(p, {ABSENT}):
        if v is ABSENT:
            if data is ABSENT:
                ok = v
        elif data is not ABSENT:
            if v not in cache:
                cache[v] = content(v)
            if cache[v] == data:
                ok = v
    if p in required and ok != required[p]:
        bad.append("%s: fsynced as %s, holds %s" % (p, required[p],
                   "nothing" if data is ABSENT else "%d bytes %r" % (len(data), data[:40])))
        continue
    if ok is None and inflight and inflight[0] == p and data is not ABSENT:
        # the write cut by the kill (removed before the next cycle): the kernel
        # writes a file back in pieces of up to 1 MiB, each its own commit and
        # not always in order, so its bytes are the new ones or, where the
        # write-back had not reached, zeros, as on ext4
        new = content(inflight[1])
        if len(data) <= len(new) and all(a == b or a == 0 for a, b in zip(data, new)):
            partial += 1
            print("partial", p)
            continue
    if ok is None and (data is not ABSENT or ABSENT not in allowed.get(p, {ABSENT})):
        bad.append("%s: holds %s, none of the versions written %s" % (p,
                   "nothing" if data is ABSENT else "%d bytes %r" % (len(data), data[:40]),
                   sorted(str(v) for v in allowed.get(p, {ABSENT}))[:6]))
        continue
    if ok is not ABSENT and ok is not None:
        base.append("S %s %s\n" % (p, ok))
with open(jpath + ".new", "w") as out:
    out.writelines(base)
for b in bad:
    print("BAD", b)
print("checked %d paths, %d fsynced, %d partial, %d bad" % (len(paths), len(required), partial, len(bad)))
sys.exit(1 if bad else 0)'

M=$MNT
echo "crash-fs: $cycles cycles, seed $seed, db $DB"
fsyncs_total=0
for cycle in $(seq 1 "$cycles"); do
	nbase=$(wc -l <"$J")
	workload "$cycle" "$RANDOM" >/dev/null 2>&1 &
	WPID=$!
	ms=$((300 + RANDOM % 2700))
	sleep "$(printf '%d.%03d' $((ms / 1000)) $((ms % 1000)))"
	fs_kill9
	# the workload fails on the dead mount by itself; make sure it is gone
	kill -9 "$WPID" 2>/dev/null
	wait "$WPID" 2>/dev/null
	WPID=
	fusermount3 -u -z "$MNT" 2>/dev/null || umount -l "$MNT" 2>/dev/null
	ops=$(tail -n +$((nbase + 1)) "$J" | grep -c '^B')
	syncs=$(tail -n +$((nbase + 1)) "$J" | grep -c '^S')
	fsyncs_total=$((fsyncs_total + syncs))
	if ! mount_fs; then
		echo "crash-fs: cycle $cycle: remount after kill -9 failed (seed $seed)"
		exit 1
	fi
	if ! out=$(python3 -c "$VERIFY_PY" "$MNT" "$J" "$BIGS" 2>&1); then
		echo "crash-fs: cycle $cycle (seed $seed, killed after ${ms} ms, $ops writes):"
		echo "$out" | grep -v '^partial' | head -20
		cp "$J" "${TMPDIR:-/tmp}/cairnfs-crash-journal.$seed" 2>/dev/null
		cp -a "$DB" "${TMPDIR:-/tmp}/cairnfs-crash-db.$seed" 2>/dev/null &&
			echo "crash-fs: database and journal kept in ${TMPDIR:-/tmp}/cairnfs-crash-{db,journal}.$seed"
		exit 1
	fi
	# a write cut by the kill leaves a prefix: remove it, so the next
	# cycle starts from versions only
	echo "$out" | sed -n 's/^partial //p' | while read -r p; do rm -f "$MNT/$p"; done
	mv "$J.new" "$J"
	echo "crash-fs: cycle $cycle: killed after ${ms} ms, $ops writes ($syncs fsynced): $(echo "$out" | tail -n 1)"
done
fusermount3 -u "$MNT" || fusermount3 -u -z "$MNT"
wait "$PID"
PID=
echo "crash-fs: $cycles cycles survived, $fsyncs_total fsynced writes checked"
echo "$cycles passed, 0 failed"
