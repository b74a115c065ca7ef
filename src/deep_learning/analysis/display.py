"""What results look like in a notebook: tables as HTML, figures inline as PNG, and where to browse a run."""

from __future__ import annotations

import base64
import html
import io
import numbers
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas
    from matplotlib.figure import Figure


def html_table(header: Sequence[str], lines: Sequence[Sequence[str]]) -> str:
    """An HTML table of text cells, escaped, numbers right-aligned by the notebook's own table style."""
    head = "".join(f"<th>{html.escape(cell)}</th>" for cell in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(cell)}</td>" for cell in line) + "</tr>" for line in lines)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def number_text(value: float) -> str:
    """A number in a table cell: thousands grouped when large, else four significant digits."""
    return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.4g}"


def cell_text(value: object) -> str:
    """A DataFrame cell as text: whole numbers as they are, other numbers by number_text, the rest as str."""
    if isinstance(value, numbers.Real) and not isinstance(value, (bool, numbers.Integral)):
        return number_text(float(value))
    return str(value)


def frame_html(frame: pandas.DataFrame) -> str:
    """A DataFrame as an HTML table, its index first where it is named (an epoch, say)."""
    named = frame.index.name is not None
    header = [*([frame.index.name] if named else []), *map(str, frame.columns)]
    lines = [
        [*([cell_text(index)] if named else []), *map(cell_text, row)] for index, row in zip(frame.index, frame.itertuples(index=False))
    ]
    return html_table(header, lines)


def figure_html(figure: Figure, alt: str) -> str:
    """A matplotlib figure as an inline PNG image."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=72)
    encoded = base64.b64encode(buffer.getvalue()).decode("ascii")
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{encoded}"/>'


def browse_html(where_to_look: str) -> str:
    """A link to the run's page on a server, else the command that opens the MLflow UI."""
    if where_to_look.startswith(("http://", "https://")):
        address = html.escape(where_to_look)
        return f'<a href="{address}" target="_blank">{address}</a>'
    return f"<code>{html.escape(where_to_look)}</code>"
