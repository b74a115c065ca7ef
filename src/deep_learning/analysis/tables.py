"""Tables as text: columns padded for a terminal, or GitHub-flavoured Markdown for files and pages; values shown by style."""

from __future__ import annotations

import math
from collections.abc import Sequence

STYLES = {"metric": "{:.4f}", "seconds": "{:.2f}", "rate": "{:,.0f}", "ratio": "{:.2f}x", "difference": "{:.2e}"}


def formatted(value: float | int | str | None, style: str) -> str:
    """A cell's text: "-" for no value, a number in its style (metric, seconds, rate, ratio, difference), else as is."""
    if value is None:
        return "-"
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if style == "difference" and value == 0:
        return "0"
    return STYLES.get(style, "{}").format(value)


def text_table(header: Sequence[str], lines: Sequence[Sequence[str]]) -> str:
    """Columns padded to their widest cell, a rule under the header."""
    widths = [max(len(cell) for cell in column) for column in zip(header, *lines)]
    rule = ["-" * width for width in widths]
    return "".join("  ".join(cell.ljust(width) for cell, width in zip(line, widths)).rstrip() + "\n" for line in [header, rule, *lines])


def markdown_table(header: Sequence[str], lines: Sequence[Sequence[str]]) -> str:
    """A GitHub-flavoured Markdown table."""

    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |\n"

    return line(header) + line(["---"] * len(header)) + "".join(line(cells) for cells in lines)
