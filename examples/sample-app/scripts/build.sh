#!/bin/sh
# Packs src/ as a zipapp in a temporary directory and runs it once.
cd "$(dirname "$0")/.." || exit 1
out=$(mktemp -d) || exit 1
trap 'rm -rf "$out"' EXIT
python3 -B -m zipapp src -m cli:run -o "$out/textkit.pyz" || exit 1
python3 -B "$out/textkit.pyz" slug "Build Check" || exit 1
echo "built textkit.pyz"
