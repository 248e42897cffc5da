#!/bin/sh
# damage.sh - `make check`'s share of the damaged-file trials (tests/damage.c,
# issue 17 Acceptance): DAMAGE_TRIALS trials (default 240, about 20 s) from
# DAMAGE_SEED (default 1). Every trial must end in a refused open naming the
# file, or in an open after which every read is right or an error and check
# reported the damage. A failed trial fails this test unless its class
# (state:file kind:damage:failure) matches an entry of KNOWN below.
#
# KNOWN lists the failure classes the engine still has today, each with the
# item of issue 17 that fixes it (every one was met in scripts/damage-soak 1 5
# 600, 3,000 trials). When a fix lands, remove its entries: this
# test then keeps the fix from regressing. A known class that did not occur
# is printed, as a hint that its entry may be stale (a share of the trials
# need not meet every class, so it is not an error).
#
# Soak: scripts/damage-soak runs thousands of trials over many seeds.
# Environment: DAMAGE (the binary, set by the Makefile), DAMAGE_SEED,
# DAMAGE_TRIALS.
damage=${DAMAGE:-./tests/damage}

# class patterns (shell globs) and the issue 17 item that fixes them
KNOWN='
*:MANIFEST:*:wrong         item 2: a damaged or cut manifest read as a torn tail; items 3, 4
*:MANIFEST:*:missing       item 2 (and 3: the logs it gave up are gone)
*:MANIFEST:*:check-silent  items 2 and 8: check accepts the same torn tail as open
*:log:*:wrong              items 3 and 4: missing, short or damaged logs not noticed
*:log:*:missing            items 3 and 4
*:log:*:resurrected        items 3 and 4
*:log:*:check-silent       items 3, 4 and 8
*:blob:*:wrong             item 5: damage in the unsealed blob file cuts the newest log
*:blob:*:missing           item 5 (two blob files swapped, the unsealed one among them)
*:blob:*:check-silent      item 5: check does not see a blob file grown (or cut)
'

known_reason() {
	echo "$KNOWN" | while read -r pat why; do
		[ -n "$pat" ] || continue
		# shellcheck disable=SC2254
		case "$1" in $pat)
			echo "$pat"
			return 0
			;;
		esac
	done
}

out=$("$damage" -s "${DAMAGE_SEED:-1}" -n "${DAMAGE_TRIALS:-240}")
rc=$?
echo "$out"
if [ $rc -ne 0 ]; then
	echo "damage.sh: the harness failed (exit $rc)"
	exit 1
fi
new=0
seen=''
for class in $(echo "$out" | awk '/^FAIL /{print $2}' | sort -u); do
	pat=$(known_reason "$class")
	if [ -z "$pat" ]; then
		echo "damage.sh: NEW failure class $class (not in KNOWN)"
		new=$((new + 1))
	else
		seen="$seen $pat"
	fi
done
echo "$KNOWN" | while read -r pat why; do
	[ -n "$pat" ] || continue
	case " $seen " in *" $pat "*) ;; *) echo "damage.sh: known class $pat did not occur ($why)" ;; esac
done
if [ $new -ne 0 ]; then
	echo "damage.sh: $new failure class(es) beyond the known list"
	exit 1
fi
echo "damage.sh: every failure is of a known class"
exit 0
