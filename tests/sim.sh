#!/bin/sh
# sim.sh - `make check`'s run of the deterministic simulation: two runs of a
# few seeds must give the same digest (the same run operation for
# operation), then seeds 1..300 (scripts/sim-soak runs any range).
# Environment: SIM (set by the Makefile), CAIRN_SRCDIR, SIM_SEEDS, SIM_OPS.
srcdir=${CAIRN_SRCDIR:-$(cd "$(dirname "$0")/.." && pwd)}
sim=${SIM:-./tests/sim}
for seed in 7 42 299; do
	a=$("$sim" --seed $seed --ops 200 2>&1)
	b=$("$sim" --seed $seed --ops 200 2>&1)
	if [ "$a" != "$b" ]; then
		echo "sim: seed $seed is not deterministic:"
		echo "  $a"
		echo "  $b"
		exit 1
	fi
done
echo "sim: seeds 7 42 299 replay identically"
SIM=$sim exec "$srcdir/scripts/sim-soak" 1 "${SIM_SEEDS:-300}"
