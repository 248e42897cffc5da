#!/usr/bin/env python3
"""Listings of a changing directory (POSIX readdir): an entry neither added
nor removed during the listing is returned exactly once.

    listing.py DIR    prints one line per check, exits 1 if any fails
"""
import os
import sys

d = sys.argv[1]
fails = 0


def report(what, bad):
    global fails
    print(("ok   - " if not bad else "FAIL - ") + what + (" (%s)" % bad if bad else ""))
    fails += bool(bad)


def make(names):
    os.makedirs(d, exist_ok=True)
    for n in names:
        open(os.path.join(d, n), "w").close()


# scandir then unlink each entry: rm -rf and find -delete do the same
make("f%05d" % i for i in range(2950))
for e in os.scandir(d):
    os.unlink(e.path)
left = os.listdir(d)
report("unlink while listing leaves nothing", "%d left" % len(left) if left else "")

# one listing while entries before and after the cursor come and go
keep = ["k%05d" % i for i in range(1500)]
make(keep)
seen, changed = [], set()
for i, e in enumerate(os.scandir(d), 1):
    seen.append(e.name)
    if i % 40 == 0:
        for j in range(8):  # created during the listing: may or may not show
            n = "a%05d_%d" % (i, j)
            make([n])
            changed.add(n)
    if i % 30 == 0:  # removed during the listing: some seen, some not
        for n in (seen[-3], "k%05d" % ((i * 7) % 1500)):
            if n not in changed and os.path.exists(os.path.join(d, n)):
                os.unlink(os.path.join(d, n))
                changed.add(n)
count = {}
for n in seen:
    count[n] = count.get(n, 0) + 1
twice = sum(1 for v in count.values() if v > 1)
missed = sum(1 for n in keep if n not in changed and n not in count)
report("creates and deletes during a listing: unchanged entries exactly once",
       "%d missed, %d returned twice" % (missed, twice) if missed or twice else "")
for e in os.scandir(d):  # the caller checks that rmdir then works
    os.unlink(e.path)
sys.exit(1 if fails else 0)
