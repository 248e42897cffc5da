#!/bin/sh
# sim.sh - `make check`'s run of the deterministic simulation: two runs of a
# few seeds, single-threaded and with writer and background threads, must
# give the same digest (the same run operation for operation); then seeds
# 1..300 single-threaded and 1..150 each with 2 and 4 writer threads
# (scripts/sim-soak runs any range), and a few long threaded runs: only
# long runs fill blob files enough for the background thread to collect
# while writers wait for room (seed 17 hung there before the leader learnt
# to flush for a busy collector).
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
for seed in 17 23 31; do
	if ! out=$("$sim" --seed "$seed" --threads 4 --ops 20000 2>&1); then
		echo "sim: long threaded run failed:"
		echo "$out" | tail -20
		status=1
	fi
done
echo "sim: long threaded runs (seeds 17 23 31, 20000 operations) done"
SIM=$sim "$srcdir/scripts/sim-soak" 1 "${SIM_SEEDS:-300}" || status=1
SIM=$sim SIM_THREADS=2 "$srcdir/scripts/sim-soak" 1 "${SIM_MT_SEEDS:-150}" || status=1
SIM=$sim SIM_THREADS=4 "$srcdir/scripts/sim-soak" 1 "${SIM_MT_SEEDS:-150}" || status=1
exit $status
