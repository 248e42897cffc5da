#!/bin/sh
# crash_engine.sh - `make check`'s short run of scripts/crash-engine: a few
# SIGKILLs of a real writer, each followed by the prefix check.
# Environment: CRASH_WRITER, CAIRN_SRCDIR (set by the Makefile), CRASH_CYCLES.
srcdir=${CAIRN_SRCDIR:-$(cd "$(dirname "$0")/.." && pwd)}
exec "$srcdir/scripts/crash-engine" "${CRASH_CYCLES:-20}"
