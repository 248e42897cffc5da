#!/usr/bin/env bash
# run.sh - drives the real `cairn` binary against real databases: every
# command, binary keys and values, exit codes and messages, corruption found by
# check, dumps of each kind of file, and a checkpoint taken while a writer runs.
#
# Environment: CAIRN (the binary; default ./cairn), CAIRNFS (the cairnfs
# binary; the mounted-database test is skipped without it), TMPDIR.
# Prints one line per test and "N passed, M failed, K skipped"; exits 1 when
# any test failed. Run one test by name: tests/cli/run.sh test_scan_limits
set -u

CAIRN=${CAIRN:-./cairn}
CAIRNFS=${CAIRNFS:-./cairnfs}
T=$(mktemp -d "${TMPDIR:-/tmp}/cairn-cli.XXXXXX") || exit 1
cleanup() {
	[ -n "${MNT:-}" ] && fusermount3 -u "$MNT" 2>/dev/null
	[ -n "${BGPID:-}" ] && kill "$BGPID" 2>/dev/null
	rm -rf "$T"
}
trap cleanup EXIT
pass=0 fail=0 skip=0
DB=$T/db

cairn() { "$CAIRN" -d "$DB" "$@"; }

# check DESCRIPTION COMMAND...: the test fails with DESCRIPTION unless COMMAND
# succeeds; returns its status so a test can stop at the first failure.
check() {
	local what=$1
	shift
	if ! "$@"; then
		echo "  not true: $what" >&2
		return 1
	fi
}

# expect_exit CODE COMMAND...: runs COMMAND (stdout to $T/out, stderr to
# $T/err) and checks its exit status.
expect_exit() {
	local want=$1 got
	shift
	"$@" >"$T/out" 2>"$T/err"
	got=$?
	if [ "$got" != "$want" ]; then
		echo "  exit $got, wanted $want: $*" >&2
		sed 's/^/  stderr: /' "$T/err" >&2
		return 1
	fi
}

# A byte at offset OFF of FILE, inverted.
flip_byte() {
	local file=$1 off=$2 b
	b=$(od -An -tu1 -j "$off" -N1 "$file" | tr -d ' ')
	printf "$(printf '\\%03o' $((255 - b)))" |
		dd of="$file" bs=1 seek="$off" count=1 conv=notrunc status=none
}

fresh_db() {
	rm -rf "$DB"
}

# ---------------------------------------------------------------------------

test_help_and_version() {
	expect_exit 0 "$CAIRN" --version && check "version printed" grep -q '^cairn [0-9]' "$T/out" &&
		expect_exit 0 "$CAIRN" --help && check "help lists get" grep -q 'get' "$T/out" &&
		expect_exit 0 "$CAIRN" get --help && check "get help" grep -q 'Usage: cairn' "$T/out" &&
		expect_exit 0 "$CAIRN" help scan && check "help scan" grep -q -- '-n N' "$T/out" &&
		expect_exit 2 "$CAIRN" && expect_exit 2 "$CAIRN" frobnicate &&
		check "names the bad command" grep -q "no command 'frobnicate'" "$T/err"
}

test_usage_errors() {
	fresh_db
	expect_exit 2 cairn get && check "missing argument" grep -q 'missing argument' "$T/err" &&
		expect_exit 2 cairn get a b && expect_exit 2 cairn get -q a &&
		expect_exit 2 cairn scan -n abc && expect_exit 2 cairn -x get 'bad\q' &&
		check "bad escape named" grep -q 'bad escape' "$T/err"
}

test_put_get_del() {
	fresh_db
	expect_exit 0 cairn put greeting hello && expect_exit 0 cairn get greeting &&
		check "value back" [ "$(cat "$T/out")" = hello ] &&
		expect_exit 0 cairn put greeting bye && expect_exit 0 cairn get greeting &&
		check "overwritten" [ "$(cat "$T/out")" = bye ] &&
		expect_exit 0 cairn del greeting && expect_exit 3 cairn get greeting &&
		expect_exit 0 cairn del never-there
}

test_missing_key_message() {
	fresh_db
	cairn put x y >/dev/null 2>&1
	expect_exit 3 cairn get foo &&
		check "message" grep -qx "cairn: get: key 'foo' not found" "$T/err" &&
		check "no output" [ ! -s "$T/out" ]
}

test_no_database() {
	fresh_db
	expect_exit 1 cairn get foo && check "says no database" grep -q 'no database' "$T/err" &&
		check "nothing created" [ ! -e "$DB/CURRENT" ]
}

test_db_from_environment() {
	fresh_db
	CAIRN_DB=$DB "$CAIRN" put envkey envval >/dev/null 2>&1
	expect_exit 0 cairn get envkey && check "value" [ "$(cat "$T/out")" = envval ]
}

test_binary_values_from_stdin() {
	fresh_db
	printf '\x00\xff\x01\n' >"$T/bin"
	cairn put bin <"$T/bin" && expect_exit 0 cairn get bin && check "bytes equal" cmp -s "$T/bin" "$T/out"
}

test_binary_keys_with_escapes() {
	fresh_db
	expect_exit 0 cairn -x put 'k\x00\xff' 'v\n' && expect_exit 0 cairn get -x 'k\x00\xff' &&
		check "value" [ "$(od -An -tx1 "$T/out" | tr -d ' ')" = 760a ] &&
		expect_exit 0 cairn scan -a && check "escaped key" grep -qxF 'k\x00\xff' "$T/out"
}

test_empty_values() {
	fresh_db
	expect_exit 0 cairn put e1 '' && : | cairn put e2 && expect_exit 0 cairn get e1 &&
		check "empty" [ ! -s "$T/out" ] && expect_exit 0 cairn get e2 && check "empty" [ ! -s "$T/out" ]
}

test_large_value_streams() {
	fresh_db
	head -c $((5 * 1024 * 1024 + 17)) /dev/urandom >"$T/big"
	cairn put big <"$T/big" && expect_exit 0 cairn get big && check "5 MiB back" cmp -s "$T/big" "$T/out"
}

test_value_over_64mib_streams_in_bounded_memory() {
	fresh_db
	# over CAIRN_MAX_VALUE_SIZE: only a stream can take it
	head -c $((64 * 1024 * 1024 + 1)) /dev/zero >"$T/huge"
	/usr/bin/time -f %M -o "$T/rss" "$CAIRN" -d "$DB" put huge <"$T/huge" || return 1
	check "put used under 48 MiB (rss $(cat "$T/rss") KiB)" [ "$(cat "$T/rss")" -lt 49152 ] &&
		"$CAIRN" -d "$DB" get huge | cmp -s - "$T/huge" && check "value back" true
	rm -f "$T/huge"
}

put_keys() {
	local k
	for k in "$@"; do
		cairn put "$k" "v-$k" >/dev/null || return 1
	done
}

test_scan_order_prefix_values() {
	fresh_db
	put_keys b a c p/x p/y q
	expect_exit 0 cairn scan && check "sorted" [ "$(tr '\n' ' ' <"$T/out")" = "a b c p/x p/y q " ] &&
		expect_exit 0 cairn scan p/ && check "prefix" [ "$(tr '\n' ' ' <"$T/out")" = "p/x p/y " ] &&
		expect_exit 0 cairn scan -v a && check "values" [ "$(cat "$T/out")" = "$(printf 'a\tv-a')" ]
}

# A value that cannot be read stops the scan with its key and file named and
# a failure status; it is never printed as an empty value.
test_scan_unreadable_blob_value_fails() {
	fresh_db
	cairn put a v-a >/dev/null && head -c 100000 /dev/zero | tr '\0' x | cairn put b &&
		cairn put c v-c >/dev/null || return 1
	local f
	for f in "$DB"/*.blob; do rm -f "$f"; done
	expect_exit 1 cairn scan -v && check "names the key" grep -q "key 'b'" "$T/err" &&
		check "names the file" grep -q '\.blob' "$T/err" &&
		check "a printed" grep -qx "$(printf 'a\tv-a')" "$T/out" &&
		! grep -q '^b' "$T/out" &&
		expect_exit 0 cairn scan && check "keys still listed" [ "$(tr '\n' ' ' <"$T/out")" = "a b c " ]
}

test_scan_limits_and_reverse() {
	fresh_db
	put_keys k1 k2 k3 k4 k5 p/a p/b q
	expect_exit 0 cairn scan -n 2 && check "limit" [ "$(tr '\n' ' ' <"$T/out")" = "k1 k2 " ] &&
		expect_exit 0 cairn scan -r -n 3 && check "reverse" [ "$(tr '\n' ' ' <"$T/out")" = "q p/b p/a " ] &&
		expect_exit 0 cairn scan -r p/ && check "reverse prefix" [ "$(tr '\n' ' ' <"$T/out")" = "p/b p/a " ] &&
		expect_exit 0 cairn scan -r k && check "reverse k" [ "$(tr '\n' ' ' <"$T/out")" = "k5 k4 k3 k2 k1 " ]
}

test_scan_hides_system_keys() {
	fresh_db
	cairn -x put '\x00meta' m >/dev/null && put_keys user
	expect_exit 0 cairn scan && check "hidden" [ "$(cat "$T/out")" = user ] &&
		expect_exit 0 cairn scan -r && check "hidden in reverse" [ "$(cat "$T/out")" = user ] &&
		expect_exit 0 cairn scan -a && check "shown with -a" [ "$(tr '\n' ' ' <"$T/out")" = '\x00meta user ' ]
}

test_scan_raw() {
	fresh_db
	cairn -x put 'a\nb' 'x' >/dev/null && put_keys c
	expect_exit 0 cairn scan --raw -v && check "NUL separated" [ "$(od -An -c "$T/out" | tr -s ' ' | tr -d '\n')" = ' a \n b \0 x \0 c \0 v - c \0' ]
}

test_ls_lists_children() {
	fresh_db
	put_keys a/b/c a/b/d a/d a/e/f g top/x
	expect_exit 0 cairn ls && check "top level" [ "$(tr '\n' ' ' <"$T/out")" = "a/ g top/ " ] &&
		expect_exit 0 cairn ls a && check "a" [ "$(tr '\n' ' ' <"$T/out")" = "b/ d e/ " ] &&
		expect_exit 0 cairn ls /a/b/ && check "a/b" [ "$(tr '\n' ' ' <"$T/out")" = "c d " ] &&
		expect_exit 0 cairn ls g && check "a file" [ "$(cat "$T/out")" = g ] &&
		expect_exit 3 cairn ls nothing && check "message" grep -q 'no such directory' "$T/err"
}

test_stats_json_parses() {
	fresh_db
	put_keys s1 s2
	expect_exit 0 cairn stats --json && check "valid JSON" python3 -m json.tool "$T/out" >/dev/null &&
		check "has levels" grep -q '"levels"' "$T/out" &&
		expect_exit 0 cairn stats && check "human" grep -q '^last_sequence' "$T/out"
}

test_flush_compact_keep_data() {
	fresh_db
	put_keys f1 f2 f3
	cairn del f2 >/dev/null
	expect_exit 0 cairn flush && check "a table" ls "$DB"/*.sst >/dev/null &&
		expect_exit 0 cairn compact && expect_exit 0 cairn scan &&
		check "data kept" [ "$(tr '\n' ' ' <"$T/out")" = "f1 f3 " ]
}

test_check_clean_db() {
	fresh_db
	put_keys c1 c2 c3
	cairn flush >/dev/null && put_keys c4
	expect_exit 0 cairn check && check "no output" [ ! -s "$T/out" ]
}

test_check_finds_flipped_table_byte() {
	fresh_db
	local i
	for i in $(seq 1 200); do echo "key$i value$i"; done >"$T/keys"
	while read -r k v; do cairn put "$k" "$v" || return 1; done <"$T/keys" >/dev/null
	cairn flush >/dev/null || return 1
	local sst
	sst=$(ls "$DB"/*.sst | head -1)
	flip_byte "$sst" 40
	expect_exit 1 cairn check && check "names the table" grep -q "$(basename "$sst"):" "$T/out" &&
		check "summary" grep -q 'problem' "$T/err"
}

# Every open flushes the logs it recovers into a table, so the newest log
# holds the one record of the last put. A damaged payload in the last record
# of the newest log reads as a torn write (recovery drops it), so the test
# damages the record header, whose own checksum tells damage from a tear.
test_check_finds_flipped_log_byte() {
	fresh_db
	put_keys l1 l2 l3 l4 l5
	local log
	log=$(ls -S "$DB"/*.log 2>/dev/null | head -1)
	check "a log with a record" [ -n "$log" ] && [ "$(stat -c %s "$log")" -gt 28 ] || return 1
	# the record header follows the 16-byte file header: flip its length
	flip_byte "$log" 17
	expect_exit 1 cairn check && check "names the log" grep -q "$(basename "$log"):16: " "$T/out"
}

# repair brings back a database whose CURRENT and manifest are gone, keeps
# the replaced files in lost/, and says what it lost when a table is damaged.
test_repair_rebuilds_and_reports() {
	fresh_db
	put_keys r1 r2 r3
	cairn flush >/dev/null && put_keys r4 && cairn del r2 >/dev/null || return 1
	local man
	man=$(cat "$DB/CURRENT")
	rm "$DB/CURRENT" "$DB/$man"
	expect_exit 0 "$CAIRN" repair "$DB" && check "summary" grep -q '^kept 3 keys' "$T/out" &&
		check "old files aside" [ -n "$(ls "$DB/lost")" ] &&
		expect_exit 0 cairn scan && check "the keys" [ "$(cat "$T/out")" = "$(printf 'r1\nr3\nr4')" ] &&
		expect_exit 0 cairn check || return 1
	local sst
	sst=$(ls "$DB"/*.sst | head -1)
	flip_byte "$sst" 20
	expect_exit 1 cairn repair && check "names the lost block" grep -q "$(basename "$sst"):.*lost" "$T/out" &&
		check "says what was lost" grep -q 'lost .* bytes in 1 damaged' "$T/err" &&
		check "damaged table aside" [ -f "$DB/lost/$(basename "$sst")" ] &&
		expect_exit 0 cairn check
}

test_dump_each_kind() {
	fresh_db
	put_keys d1 d2
	cairn flush >/dev/null && put_keys d3
	local sst log man
	sst=$(ls "$DB"/*.sst | head -1)
	log=$(ls -S "$DB"/*.log | head -1)
	man=$DB/$(cat "$DB/CURRENT")
	expect_exit 0 cairn dump "$sst" && check "table entries" grep -q "d1" "$T/out" &&
		expect_exit 0 cairn dump "$log" && check "log records" grep -q 'record at offset' "$T/out" &&
		check "log entry" grep -q "put 'd3'" "$T/out" &&
		check "log start note" grep -q 'start note at offset 16: previous log' "$T/out" &&
		expect_exit 0 cairn dump "$man" && check "manifest edits" grep -q 'next_file_number' "$T/out" &&
		expect_exit 0 cairn dump "$DB/CURRENT" && check "current" grep -q 'MANIFEST-' "$T/out" &&
		cp "$sst" "$T/renamed" && expect_exit 0 cairn dump "$T/renamed" &&
		check "kind by magic" grep -q 'd1' "$T/out" &&
		echo junk >"$T/junk" && expect_exit 1 cairn dump "$T/junk"
}

# A damaged block is shown as an error line and the dump goes on to the end,
# but the dump fails, naming the file.
test_dump_of_a_damaged_table_fails() {
	fresh_db
	put_keys e1 e2 e3
	cairn flush >/dev/null || return 1
	local sst
	sst=$(ls "$DB"/*.sst | head -1)
	flip_byte "$sst" 2
	expect_exit 1 cairn dump "$sst" && check "error line" grep -q 'error:' "$T/out" &&
		check "names the file" grep -q "$(basename "$sst")" "$T/err"
}

test_checkpoint_is_exact_while_writing() {
	fresh_db
	cairn put w0 0 >/dev/null || return 1
	echo 0 >"$T/done"
	# the writer retries while another cairn holds the lock
	(
		i=1 tries=0
		while [ $i -le 150 ] && [ $tries -lt 5000 ]; do
			if "$CAIRN" -d "$DB" put "w$i" "$i" 2>/dev/null; then
				# rename, so a reader never sees the file half written
				echo $i >"$T/done.tmp" && mv "$T/done.tmp" "$T/done"
				i=$((i + 1))
			fi
			tries=$((tries + 1))
		done
	) &
	BGPID=$!
	sleep 0.3
	local before after n ok=1
	before=$(cat "$T/done")
	until "$CAIRN" -d "$DB" checkpoint "$T/ckpt" 2>"$T/err"; do
		grep -q 'in use' "$T/err" || { cat "$T/err" >&2; return 1; }
	done
	after=$(cat "$T/done")
	wait "$BGPID"
	BGPID=
	expect_exit 0 "$CAIRN" -d "$T/ckpt" scan -v || return 1
	n=$(($(wc -l <"$T/out") - 1))
	# exactly w0..wn, each with its value, and n between what the writer
	# had finished before and after the checkpoint
	for i in $(seq 0 $n); do
		grep -qxF "$(printf 'w%s\t%s' "$i" "$i")" "$T/out" || ok=0
	done
	check "no gaps, right values (n=$n)" [ $ok = 1 ] &&
		check "n in [$before, $after+1]" [ "$n" -ge "$before" ] && [ "$n" -le $((after + 1)) ] &&
		expect_exit 0 "$CAIRN" -d "$T/ckpt" check && expect_exit 0 cairn get w150
}

test_busy_database_is_named() {
	fresh_db
	put_keys b1
	command -v flock >/dev/null || return 77
	flock "$DB/LOCK" sleep 3 &
	local holder=$!
	sleep 0.3
	expect_exit 1 cairn get b1 && check "says in use" grep -q 'in use' "$T/err" &&
		expect_exit 0 cairn check
	local r=$?
	kill $holder 2>/dev/null
	wait $holder 2>/dev/null
	return $r
}

test_mounted_database_uses_control_files() {
	[ -x "$CAIRNFS" ] || return 77
	[ -e /dev/fuse ] && command -v fusermount3 >/dev/null || return 77
	fresh_db
	put_keys m1
	MNT=$T/mnt
	mkdir -p "$MNT"
	"$CAIRNFS" "$DB" "$MNT" 2>"$T/fserr" || { MNT=; return 77; }
	local i=0
	while [ ! -e "$MNT/.cairn/dbdir" ] && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
	expect_exit 1 cairn get m1 && check "names the mount" grep -q "mounted by cairnfs at $MNT" "$T/err" &&
		expect_exit 0 cairn stats && check "stats from the mount" [ -s "$T/out" ] &&
		expect_exit 0 cairn stats --json && check "JSON" python3 -m json.tool "$T/out" >/dev/null &&
		expect_exit 0 cairn flush && expect_exit 0 cairn compact &&
		expect_exit 0 cairn checkpoint "$T/mck" && expect_exit 0 cairn check &&
		expect_exit 1 cairn checkpoint "$T/mck" &&
		check "refusal says why" grep -q "refused: checkpoint: .*already exists (EEXIST)" "$T/err"
	local r=$?
	fusermount3 -u "$MNT"
	MNT=
	[ $r = 0 ] && expect_exit 0 "$CAIRN" -d "$T/mck" get m1 && check "checkpoint has m1" [ "$(cat "$T/out")" = v-m1 ]
}

# mounted DIR: waits up to 10 s for a cairnfs mount at DIR to answer.
mounted() {
	local i=0
	while [ ! -e "$1/.cairn/dbdir" ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
	[ -e "$1/.cairn/dbdir" ]
}

# Finding the mount of a database asks no other mount: one that is stopped
# (listed first in the mount table) must not hold the CLI, and a mount made
# through a symbolic link is found by the path the link leads to.
test_mount_lookup_asks_no_other_mount() {
	[ -x "$CAIRNFS" ] || return 77
	[ -e /dev/fuse ] && command -v fusermount3 >/dev/null || return 77
	local a="$T/sp ace/db" b=$T/other bpid r
	mkdir -p "$T/sp ace" "$T/ma" "$T/mb" "$T/mc" "$T/real"
	ln -s "$T/real" "$T/lnk"
	expect_exit 0 "$CAIRN" -d "$a" put k v && expect_exit 0 "$CAIRN" -d "$b" put k w || return 1
	"$CAIRNFS" -f "$b" "$T/mb" 2>>"$T/fserr" &
	bpid=$!
	mounted "$T/mb" && "$CAIRNFS" "$a" "$T/ma" 2>>"$T/fserr" && mounted "$T/ma" &&
		"$CAIRNFS" "$T/lnk/dbc" "$T/mc" 2>>"$T/fserr" && mounted "$T/mc"
	r=$?
	if [ $r = 0 ]; then
		kill -STOP "$bpid"
		expect_exit 0 timeout -k 10 30 "$CAIRN" -d "$a" stats
		r=$?
		kill -CONT "$bpid"
		[ $r = 0 ] && check "stats of the right mount" grep -q . "$T/out" &&
			expect_exit 0 timeout -k 10 30 "$CAIRN" -d "$T/real/dbc" stats
		r=$?
	fi
	fusermount3 -u "$T/ma"
	fusermount3 -u "$T/mc"
	fusermount3 -u "$T/mb"
	wait "$bpid"
	return $r
}

# ---------------------------------------------------------------------------

tests=$(declare -F | awk '{print $3}' | grep '^test_')
[ $# -gt 0 ] && tests="$*"
for t in $tests; do
	$t
	case $? in
	0) pass=$((pass + 1)); echo "PASS: $t" ;;
	77) skip=$((skip + 1)); echo "SKIP: $t" ;;
	*) fail=$((fail + 1)); echo "FAIL: $t" ;;
	esac
done
echo "$pass passed, $fail failed, $skip skipped"
[ $fail = 0 ]
