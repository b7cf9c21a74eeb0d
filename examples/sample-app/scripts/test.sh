#!/bin/sh
# Runs every test; exit 1 if any fails.
cd "$(dirname "$0")/.." || exit 1
exec python3 -B tests/run.py
