"""A table for people: human column names, formatted numbers, no index, every row and full text.

In a notebook a `Table` shows as a static HTML table (the first rows of a long one); the run record
keeps all its rows, formatted, under TABLE_MIME, and the HTML report renders them (`to_html`): a
short table as it is, a long one as an interactive table (itables: search, sort, per-column filter,
pages) that works offline from the reports folder's one copy of its library.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import html
import json
import math
import numbers

import numpy as np
import pandas as pd

TABLE_MIME = "application/vnd.ampkit.table+json"
# Up to this many rows a table is shown whole and static; beyond, interactive in the report.
SHORT_ROWS = 15
# The static preview a notebook front end shows of a long table (the report has every row).
PREVIEW_ROWS = 20


@dataclasses.dataclass
class Table:
    """`frame`'s rows for people; `links` are columns of trusted HTML (anchors built by ampkit)."""

    frame: pd.DataFrame
    caption: str = ""
    empty: str = "nothing to show"
    links: tuple[str, ...] = ()
    decimals: int = 1

    def payload(self) -> dict:
        """The table as the run record keeps it: column names, every row as display text, which
        columns are numbers (right-aligned, sorted as numbers) and the caption or empty state."""
        frame = self.frame.reset_index(drop=True)
        numeric = [pd.api.types.is_numeric_dtype(frame[c]) and not pd.api.types.is_bool_dtype(frame[c]) for c in frame.columns]
        rows = [[cell(v, self.decimals) if c not in self.links else str(v or "")
                 for c, v in zip(frame.columns, values)] for values in frame.itertuples(index=False, name=None)]
        # The rows as one compact JSON text: the record (an indented notebook) would give every cell a line.
        return {"columns": [str(c) for c in frame.columns], "rows": json.dumps(rows, separators=(",", ":"), ensure_ascii=False),
                "numeric": numeric, "caption": self.caption, "empty": self.empty}

    def _repr_mimebundle_(self, include=None, exclude=None) -> dict:
        data = self.payload()
        return {TABLE_MIME: data, "text/html": to_html(data, live=False, limit=PREVIEW_ROWS),
                "text/plain": f"{len(rows(data)):,} rows: {', '.join(data['columns'])}"}


def cell(value, decimals: int = 1) -> str:
    """One value as a person reads it (escaped HTML): thousands separators, minutes not nanoseconds, blanks for nothing."""
    if value is None or value is pd.NaT or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else "no"
    if isinstance(value, numbers.Integral):
        return f"{int(value):,}"
    if isinstance(value, numbers.Real):
        return f"{int(value):,}" if float(value).is_integer() and decimals == 0 else f"{float(value):,.{decimals}f}"
    if isinstance(value, (pd.Timestamp, dt.datetime)):
        # UTC goes unsaid (the column's name says it); another offset is shown.
        text = f"{value:%Y-%m-%d %H:%M}"
        return html.escape(text + ("" if value.tzinfo is None or value.utcoffset() == dt.timedelta(0) else f" {value:%z}"))
    if isinstance(value, (list, tuple)):
        return html.escape(", ".join(map(str, value)))
    return html.escape(str(value))


def rows(data: dict) -> list[list[str]]:
    """A table payload's rows (display text, escaped HTML)."""
    return json.loads(data["rows"]) if isinstance(data["rows"], str) else data["rows"]


def interactive(data: dict) -> bool:
    """Whether a table payload is long enough to be shown as an interactive table."""
    return len(rows(data)) > SHORT_ROWS


def to_html(data: dict, *, live: bool = True, limit: int | None = None) -> str:
    """A table payload as HTML: static up to SHORT_ROWS rows (or when not `live`), else an
    itables DataTable that waits for the page's copy of the library (`report.assets`)."""
    body_rows, columns = rows(data), data["columns"]
    caption = f"<caption>{html.escape(data['caption'])}</caption>" if data.get("caption") else ""
    if not body_rows:
        return f'<p class="ampkit-empty">{html.escape(data.get("empty") or "nothing to show")}</p>'
    if live and interactive(data):
        return _datatable(data)
    shown = body_rows if limit is None else body_rows[:limit]
    align = ['' if not n else ' class="ampkit-num"' for n in data["numeric"]]
    head = "".join(f"<th{a}>{html.escape(c)}</th>" for c, a in zip(columns, align))
    body = "".join("<tr>" + "".join(f"<td{a}>{v}</td>" for v, a in zip(row, align)) + "</tr>" for row in shown)
    more = (f'<p class="ampkit-more">The first {len(shown):,} of {len(body_rows):,} rows: the HTML report has every row, searchable.</p>'
            if len(shown) < len(body_rows) else "")
    return f'<table class="ampkit-table">{caption}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>{more}'


def _datatable(data: dict) -> str:
    from itables import to_html_datatable
    frame = pd.DataFrame(rows(data), columns=data["columns"])
    numeric = [i for i, n in enumerate(data["numeric"]) if n]
    # Cells are escaped HTML already (links are ampkit's own anchors); the size limit is off because
    # a report must show every row, and the pages share one copy of the library (connected=False).
    return to_html_datatable(frame, connected=False, allow_html=True, maxBytes=0, showIndex=False, order=[],
                             caption=data.get("caption") or None, classes="display compact cell-border",
                             column_filters="footer", pageLength=25, scrollX=True, lengthMenu=[10, 25, 100, 1000],
                             columnDefs=[{"className": "dt-right", "targets": numeric}] if numeric else [],
                             display_logo_when_loading=False, text_in_header_can_be_selected=False)
