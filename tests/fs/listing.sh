#!/bin/bash
# tests/fs/listing.sh - listings of directories that change while they are
# read (cairnfs issue 16, item 3): every entry neither added nor removed
# during a listing is returned exactly once, so deleting while listing
# (python's scandir loop, rm -rf, find -delete) leaves nothing behind. Runs
# under each way the kernel can read a directory: the defaults (no opendir,
# readdirplus auto), open=1 (a listing per handle) and readdirplus=no.
#
#   CAIRNFS=/path/to/cairnfs tests/fs/listing.sh
#
# Exits 77 (skipped) when FUSE cannot be used here.
set -u
export LC_ALL=C

HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/lib.sh" # ok, bad, check, mount_fs, umount_fs, fs_setup
fs_setup listing

# tree DIR: 3 directories of 1,500 files and one nested level
tree() {
	for s in a b c; do
		mkdir -p "$1/$s/sub"
		(cd "$1/$s" && seq -f 'f%05g' 1500 | xargs touch && touch sub/x sub/y)
	done
}

for opts in "" "open=1" "readdirplus=no"; do
	rm -rf "$DB"
	mount_fs ${opts:+-o "$opts"} || { echo "skipped: cannot mount"; exit 77; }
	echo "# options: ${opts:-defaults}"
	if out=$(python3 "$HERE/listing.py" "$MNT/d" 2>&1); then
		ok "python listing checks ($opts)"
	else
		bad "python listing checks ($opts)"
	fi
	echo "$out" | sed 's/^/#   /'
	check "rmdir after deleting while listing ($opts)" rmdir "$MNT/d"
	tree "$MNT/t"
	rm -rf "$MNT/t"
	check "rm -rf of a tree of 4,500 files ($opts)" test ! -e "$MNT/t"
	tree "$MNT/t"
	find "$MNT/t" -delete
	check "find -delete of a tree of 4,500 files ($opts)" test ! -e "$MNT/t"
	check "unmount ($opts)" umount_fs
done

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
