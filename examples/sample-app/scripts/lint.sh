#!/bin/sh
# Every Python file parses; no tabs, no trailing spaces. Exit 1 on a problem.
cd "$(dirname "$0")/.." || exit 1
status=0
python3 -B -c 'import ast, sys
for name in sys.argv[1:]:
    ast.parse(open(name).read(), name)
print("parse ok:", len(sys.argv) - 1, "files")' src/*.py tests/*.py || status=1
if grep -n "$(printf '\t')\| $" src/*.py tests/*.py; then
    echo "tabs or trailing spaces above" >&2
    status=1
fi
exit $status
