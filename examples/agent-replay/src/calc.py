"""Summary statistics for the response-time report (src/report.py)."""


def mean(values):
    """The arithmetic mean of a non-empty list of numbers."""
    return sum(values) / len(values)


def median(values):
    """The middle value of a non-empty list of numbers.

    For an even count there are two middle values; the median is their mean.
    """
    ordered = sorted(values)
    return ordered[len(ordered) // 2]
