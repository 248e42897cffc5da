#!/usr/bin/env bash
# run.sh - a tiny run of cairn-bench for CI: every workload on every engine
# built in, with a few thousand keys, through scripts/bench-engine. It checks
# that each run succeeds and that the CSV and markdown are well formed: the
# header, one row per engine and workload, numbers where numbers belong. It
# does not judge speed.
#
# Environment: CAIRN_BENCH (the binary; default ./cairn-bench), TMPDIR.
# Prints one line per check and "N passed, M failed"; exits 1 on a failure.
set -u

CAIRN_BENCH=${CAIRN_BENCH:-./cairn-bench}
here=$(cd "$(dirname "$0")" && pwd)
T=$(mktemp -d "${TMPDIR:-/tmp}/cairn-bench-test.XXXXXX") || exit 1
trap 'rm -rf "$T"' EXIT
pass=0 fail=0

check() {
	local what=$1
	shift
	if "$@"; then
		echo "PASS: $what"
		pass=$((pass + 1))
	else
		echo "FAIL: $what"
		fail=$((fail + 1))
	fi
}

workloads="fillseq fillrandom overwrite readrandom readmissing readseq readreverse seekrandom
readwhilewriting deleterandom fillsync fillsync4 fill1m fill64m"
engines=$("$CAIRN_BENCH" --list_engines)
csv=$T/out/bench-engine.csv
md=$T/out/bench-engine.md

run_all() {
	CAIRN_BENCH=$CAIRN_BENCH "$here/../../scripts/bench-engine" --num 3000 --out "$T/out" \
		--db "$T/db" -- --sync_num=40 --large_num=1 --threads=4 >"$T/log" 2>&1 ||
		{ cat "$T/log"; return 1; }
}

csv_header() {
	[ "$(head -1 "$csv")" = \
		"engine,workload,ops,ops_per_sec,mb_per_sec,p50_us,p99_us,p999_us,disk_bytes,write_amp,peak_rss_kib" ]
}

# Every row: 11 fields, a known engine and workload, non-negative numbers,
# write_amp a number or n/a, at least one operation.
csv_rows_well_formed() {
	awk -F, -v engines="$engines" -v workloads="$workloads" '
	BEGIN {
		n = split(engines, e, /[ \n]+/); for (i = 1; i <= n; i++) eng[e[i]] = 1
		n = split(workloads, w, /[ \n]+/); for (i = 1; i <= n; i++) wl[w[i]] = 1
		num = "^[0-9]+(\\.[0-9]+)?$"
	}
	NR == 1 { next }
	NF != 11 { print "line " NR ": " NF " fields"; bad = 1; next }
	!($1 in eng) || !($2 in wl) { print "line " NR ": unknown " $1 "/" $2; bad = 1 }
	{
		for (i = 3; i <= 11; i++) {
			if (i == 10 && $i == "n/a") continue
			if ($i !~ num) { print "line " NR " field " i ": " $i; bad = 1 }
		}
		if ($3 + 0 < 1) { print "line " NR ": no operations"; bad = 1 }
	}
	END { exit bad }' "$csv"
}

# One row per engine and workload, no more, no less.
csv_complete() {
	local e w ok=0
	for e in $engines; do
		for w in $workloads; do
			if [ "$(grep -c "^$e,$w," "$csv")" != 1 ]; then
				echo "missing or repeated: $e,$w"
				ok=1
			fi
		done
	done
	[ "$(($(wc -l <"$csv") - 1))" = "$(($(echo $engines | wc -w) * $(echo $workloads | wc -w)))" ] &&
		return $ok
}

# The scans read back every key the fill wrote.
scans_see_every_key() {
	awk -F, '$2 == "readseq" || $2 == "readreverse" { if ($3 != 3000) { print; bad = 1 } }
		END { exit bad }' "$csv"
}

markdown_tables() {
	grep -q '^### Throughput (ops/s)' "$md" &&
		grep -q '^| workload | cairn |.* cairn / best peer |$' "$md" &&
		[ "$(grep -c '^| fillrandom |' "$md")" -ge 8 ]
}

bad_option_is_usage_error() {
	"$CAIRN_BENCH" --benchmarks=nosuch --db "$T/db2" >/dev/null 2>&1
	[ $? = 2 ]
}

check "bench-engine runs every workload on every engine ($(echo $engines))" run_all
check "CSV header" csv_header
check "CSV rows well formed" csv_rows_well_formed
check "CSV has one row per engine and workload" csv_complete
check "readseq and readreverse see every key" scans_see_every_key
check "markdown has the tables and the ratio column" markdown_tables
check "unknown benchmark is a usage error" bad_option_is_usage_error
echo "$pass passed, $fail failed"
[ "$fail" = 0 ]
