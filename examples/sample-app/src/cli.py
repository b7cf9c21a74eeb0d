"""textkit: `python3 src/cli.py slug TITLE` or `python3 src/cli.py words TEXT`."""

import sys

from textkit import slugify, word_count


def main(argv):
    if len(argv) != 3 or argv[1] not in ("slug", "words"):
        print("usage: cli.py slug|words TEXT", file=sys.stderr)
        return 2
    if argv[1] == "slug":
        print(slugify(argv[2]))
    else:
        print(word_count(argv[2]))
    return 0


def run():
    """The zipapp's entry point (scripts/build.sh)."""
    sys.exit(main(sys.argv))


if __name__ == "__main__":
    run()
