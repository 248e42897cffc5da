#!/bin/bash
# tests/fs/memory.sh - the daemon's own memory is shown and bounded (cairnfs
# issue 21): .cairn/stats, stats.json and metrics carry the process's RSS,
# the node table, the listings and the request buffers beside the engine's
# figures; files created and removed leave no node behind; after a burst of large writes and reads by several processes the
# idle buffers kept stay within -o buffer_cache and none is left in use; the
# memory options are range-checked and listed in --help. No timing.
#
#   CAIRNFS=/path/to/cairnfs tests/fs/memory.sh
#
# Exits 77 (skipped) when FUSE cannot be used here.
set -u
export LC_ALL=C

HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/lib.sh" # ok, bad, check, mount_fs, umount_fs, fs_setup
fs_setup memory

# stat_of NAME: the value of one figure in .cairn/stats (empty when missing)
stat_of() {
	awk -v n="$1" '$1 == n { print $2 }' "$MNT/.cairn/stats"
}

# burst: four processes each write two files of 3 MiB with 1 MiB writes
# (each a piece commit through a request buffer), then, after a remount
# that empties the kernel's page cache, read them back with 1 MiB reads.
burst() {
	local pids=() p f
	mkdir -p "$MNT/burst"
	for p in 1 2 3 4; do
		(for f in a b; do
			head -c 3M /dev/urandom >"$T/src.$p$f"
			dd if="$T/src.$p$f" of="$MNT/burst/$p$f" bs=1M status=none || exit 1
		done) &
		pids+=($!)
	done
	for p in "${pids[@]}"; do wait "$p" || return 1; done
	umount_fs || return 1
	mount_fs "$@" || return 1
	pids=()
	for p in 1 2 3 4; do
		(for f in a b; do
			cmp -s "$T/src.$p$f" <(dd if="$MNT/burst/$p$f" bs=1M iflag=direct status=none) || exit 1
		done) &
		pids+=($!)
	done
	for p in "${pids[@]}"; do wait "$p" || return 1; done
}

# ---- the figures exist and are sane -----------------------------------------
mount_fs || { echo "skipped: cannot mount"; exit 77; }
for f in process_rss_bytes fs_node_bytes fs_listing_bytes fs_buffers_in_use_bytes \
	fs_buffers_cached_bytes fs_buffers_cached_limit fs_buffers_mapped fs_buffers_reused; do
	check "stats shows $f" test -n "$(stat_of $f)"
	check "stats.json shows $f" grep -q "\"$f\": [0-9]" "$MNT/.cairn/stats.json"
done
check "metrics: process RSS is a gauge" \
	grep -q '^# TYPE cairn_process_rss_bytes gauge' "$MNT/.cairn/metrics"
check "metrics: buffers cached is a gauge" \
	grep -q '^# TYPE cairn_fs_buffers_cached_bytes gauge' "$MNT/.cairn/metrics"
rss=$(stat_of process_rss_bytes)
check "RSS above 0 and below 1 GiB ($rss)" test "${rss:-0}" -gt 0 -a "${rss:-0}" -lt $((1 << 30))
check "default buffer bound is 4 MiB" test "$(stat_of fs_buffers_cached_limit)" = 4194304
mkdir -p "$MNT/n/1" "$MNT/n/2"
ls "$MNT/n" >/dev/null
check "node table counted" test "$(stat_of fs_node_bytes)" -gt 0
check "a listing counted" test "$(stat_of fs_listing_bytes)" -gt 0
# a node lives while the kernel holds the inode: files created and removed
# leave none behind (with open=0 the kernel sends no release for them)
cat "$MNT/n/1/../../.cairn/dbdir" >/dev/null # an open answered ENOSYS first
for i in $(seq 200); do echo x >"$MNT/c$i"; done
rm -f "$MNT"/c*
for _ in $(seq 50); do
	[ "$(stat_of fs_inodes)" -lt 50 ] && break
	sleep 0.2
done
check "200 files created and removed leave no nodes ($(stat_of fs_inodes) inodes)" \
	test "$(stat_of fs_inodes)" -lt 50
check "unmount" umount_fs

# ---- after a burst the cached buffers stay within the bound -------------------
for bound in 4M 1M 0; do
	rm -rf "$DB"
	mount_fs -o buffer_cache=$bound || { bad "mount with buffer_cache=$bound"; continue; }
	check "burst of large writes and reads (buffer_cache=$bound)" burst -o buffer_cache=$bound
	limit=$(numfmt --from=iec $bound)
	cached=$(stat_of fs_buffers_cached_bytes)
	check "limit shown ($bound)" test "$(stat_of fs_buffers_cached_limit)" = "$limit"
	check "buffers cached $cached within buffer_cache=$bound" test "${cached:-x}" -le "$limit"
	check "no request buffer left in use (buffer_cache=$bound)" \
		test "$(stat_of fs_buffers_in_use_bytes)" = 0
	[ "$bound" = 4M ] && check "buffers were reused (buffer_cache=$bound)" \
		test "$(stat_of fs_buffers_reused)" -gt 0
	check "unmount (buffer_cache=$bound)" umount_fs
done

# ---- the options are range-checked and documented -------------------------------
for bad_opt in buffer_cache=2G buffer_cache=x malloc_arenas=0 malloc_arenas=65 malloc_arenas=a; do
	out=$("$CAIRNFS" -f -o "$bad_opt" "$DB" "$MNT" 2>&1)
	rc=$?
	if [ $rc -ne 0 ] && echo "$out" | grep -q "bad option value: $bad_opt"; then
		ok "refused: -o $bad_opt"
	else
		bad "refused: -o $bad_opt (rc $rc: $out)"
		mountpoint -q "$MNT" && fusermount3 -u "$MNT"
	fi
done
help=$("$CAIRNFS" --help 2>&1)
check "--help lists buffer_cache" grep -q "buffer_cache=SIZE" <<<"$help"
check "--help lists malloc_arenas" grep -q "malloc_arenas=N" <<<"$help"
mount_fs -o malloc_arenas=1,buffer_cache=512K || bad "mount with malloc_arenas=1"
check "malloc_arenas=1 mounts and serves" sh -c "echo x >'$MNT/x' && test \"\$(cat '$MNT/x')\" = x"
check "unmount (malloc_arenas=1)" umount_fs

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
