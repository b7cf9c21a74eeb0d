"""A tiny test runner: every test_* function of tests/test_*.py, one line each.

No timings, no tracebacks, no paths: the output depends only on the code, so
a recorded agent that reads it sees the same text on every machine.
"""

import importlib
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "tests"))

failed = 0
total = 0
for path in sorted((ROOT / "tests").glob("test_*.py")):
    module = importlib.import_module(path.stem)
    for name in sorted(n for n in dir(module) if n.startswith("test_")):
        total += 1
        try:
            getattr(module, name)()
            print(f"ok   {path.stem}.{name}")
        except Exception as error:  # a failed assert or a crash: both fail the test
            failed += 1
            detail = f": {error}" if str(error) else ""
            print(f"FAIL {path.stem}.{name}: {type(error).__name__}{detail}")
print(f"{total - failed} passed, {failed} failed")
sys.exit(1 if failed else 0)
