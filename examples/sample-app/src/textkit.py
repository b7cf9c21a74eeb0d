"""Small text helpers behind the `textkit` command line (cli.py)."""

import re


def slugify(title):
    """Lower-case `title` and join its words with dashes: "Hello World" -> "hello-world"."""
    return re.sub(r"[^a-z0-9]", "-", title.lower())


def word_count(text):
    """How many whitespace-separated words `text` holds."""
    return len(text.split())
