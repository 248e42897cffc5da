#!/usr/bin/env bash
# fs_run.sh - a tiny run of scripts/bench-fs for CI: a few hundred files on
# the plain directory, memfs_ll and cairnfs, no large file, a small tree. It
# checks that the run succeeds and that the CSV is well formed (the header,
# one row per target and phase, numbers where numbers belong); it does not
# judge speed. Exits 77 (skipped) when FUSE cannot be used here.
#
# Environment: CAIRNFS (default ./cairnfs), TMPDIR.
set -u
export CAIRNFS=${CAIRNFS:-$(pwd)/cairnfs}
here=$(cd "$(dirname "$0")" && pwd)
[ "$(id -u)" = 0 ] && [ -c /dev/fuse ] && command -v fusermount3 >/dev/null || exit 77
T=$(mktemp -d "${TMPDIR:-/tmp}/bench-fs-test.XXXXXX") || exit 1
trap 'rm -rf "$T"' EXIT
mkdir -p "$T/tree/a/b" && echo x >"$T/tree/a/b/f" && echo y >"$T/tree/g"
"$here/../../scripts/bench-fs" --files 300 --targets "plain memfs cairnfs" --no-large \
	--tree "$T/tree" --out "$T/out" >"$T/log" 2>&1 || { cat "$T/log"; echo "FAIL: bench-fs ran"; exit 1; }
csv=$T/out/bench-fs.csv
fail=0
[ "$(head -1 "$csv")" = "target,op,files,seconds,ops_per_sec,ratio_to_plain" ] || { echo "FAIL: header"; fail=1; }
rows=$(($(wc -l <"$csv") - 1))
[ "$rows" -eq $((3 * 20)) ] || { echo "FAIL: $rows rows, want 60"; fail=1; }
awk -F, 'NR > 1 && (NF != 6 || $4 !~ /^[0-9.]+$/ || $5 !~ /^[0-9.]+$/ || $6 !~ /^[0-9.]*$/) { bad = 1 }
	END { exit bad }' "$csv" || { echo "FAIL: malformed row"; fail=1; }
grep -q '^| create |' "$T/out/bench-fs.md" || { echo "FAIL: markdown table"; fail=1; }
[ $fail = 0 ] && echo "PASS: bench-fs CSV and markdown well formed"
exit $fail
