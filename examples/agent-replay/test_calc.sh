#!/bin/sh
# The checks of src/calc.py, with nothing but python3: one line per check,
# exit status 1 if any fails.  Run it with `sh test_calc.sh`.
cd "$(dirname "$0")" || exit 1
exec python3 -B - <<'PY'
import sys

sys.path.insert(0, "src")
from calc import mean, median

CHECKS = [
    ("mean([1, 2, 3, 4])", 2.5),
    ("median([5])", 5),
    ("median([3, 1, 2])", 2),
]

failed = 0
for expression, want in CHECKS:
    got = eval(expression)
    if got == want:
        print(f"ok   {expression} == {want!r}")
    else:
        failed += 1
        print(f"FAIL {expression} == {want!r}: got {got!r}")
sys.exit(1 if failed else 0)
PY
