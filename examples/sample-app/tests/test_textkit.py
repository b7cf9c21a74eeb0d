"""Tests of src/textkit.py: plain functions named test_*, run by tests/run.py."""

from textkit import slugify, word_count


def test_slugify_joins_words_with_dashes():
    assert slugify("Hello World") == "hello-world", slugify("Hello World")


def test_word_count():
    assert word_count("one two  three") == 3
