#!/bin/sh
# Generates configure and Makefile.in; none of the generated files are kept in git.
set -e
cd "$(dirname "$0")"
autoreconf -fi
