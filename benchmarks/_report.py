"""Figures of the benchmarks' reports: percentiles and markdown tables side by side."""

from __future__ import annotations

from collections.abc import Sequence


def percentile(values: Sequence[float], fraction: float) -> float:
    """The value at `fraction` of the sorted values (the rank rounded down); 0 for none."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] if ordered else 0.0


def print_table(
    columns: list[str], ratio: str, rows: Sequence[tuple[str, Sequence[float | None], str]]
) -> None:
    """A markdown table: one row a figure (its label, a value per column, the format of
    the values), one column a system under test; with two columns, a last one headed
    `ratio` holds the first value over the second. A value of None is an empty cell."""
    two = len(columns) == 2
    print(f"| what | {' | '.join(columns)}{f' | {ratio}' if two else ''} |")
    print("|---|" + "---|" * (len(columns) + two))
    for label, values, style in rows:
        cells = " | ".join("" if v is None else format(v, style) for v in values)
        last = ""
        if two:
            first, second = values
            last = " | " + (f"{first / second:.2f}" if first is not None and second else "")
        print(f"| {label} | {cells}{last} |")
