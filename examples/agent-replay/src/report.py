"""Prints a one-line summary of the response times given as arguments.

    python3 src/report.py 120 80 95 101
"""

import sys

from calc import mean, median


def main(args):
    times = [float(arg) for arg in args]
    print(f"n={len(times)} mean={mean(times):.1f} median={median(times):.1f}")


if __name__ == "__main__":
    main(sys.argv[1:])
