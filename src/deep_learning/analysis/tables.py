"""Tables as text: columns padded for a terminal, or GitHub-flavoured Markdown for files and pages."""

from __future__ import annotations

from collections.abc import Sequence


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
