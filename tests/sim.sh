#!/bin/sh
# sim.sh - `make check`'s run of the deterministic simulation: two runs of a
# few seeds, single-threaded and with writer and background threads, must
# give the same digest (the same run operation for operation); then seeds
# 1..300 single-threaded and 1..150 each with 2 and 4 writer threads
# (scripts/sim-soak runs any range).
# Environment: SIM (set by the Makefile), CAIRN_SRCDIR, SIM_SEEDS,
# SIM_MT_SEEDS.
srcdir=${CAIRN_SRCDIR:-$(cd "$(dirname "$0")/.." && pwd)}
sim=${SIM:-./tests/sim}
for run in "7 0" "42 0" "299 0" "7 3" "42 2" "299 4"; do
	set -- $run
	a=$("$sim" --seed "$1" --ops 200 --threads "$2" 2>&1)
	b=$("$sim" --seed "$1" --ops 200 --threads "$2" 2>&1)
	if [ "$a" != "$b" ]; then
		echo "sim: seed $1 with $2 writer threads is not deterministic:"
		echo "  $a"
		echo "  $b"
		exit 1
	fi
done
echo "sim: seeds 7 42 299 replay identically, with and without threads"
status=0
SIM=$sim "$srcdir/scripts/sim-soak" 1 "${SIM_SEEDS:-300}" || status=1
SIM=$sim SIM_THREADS=2 "$srcdir/scripts/sim-soak" 1 "${SIM_MT_SEEDS:-150}" || status=1
SIM=$sim SIM_THREADS=4 "$srcdir/scripts/sim-soak" 1 "${SIM_MT_SEEDS:-150}" || status=1
exit $status
