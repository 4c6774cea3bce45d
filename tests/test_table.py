"""Tables for people: formatted cells, no index, every row kept, long ones interactive in the page."""
from __future__ import annotations

import datetime as dt

import pandas as pd

from ampkit.table import PREVIEW_ROWS, SHORT_ROWS, TABLE_MIME, Table, cell, interactive, rows, to_html


def test_cells_read_as_a_person_reads_them():
    assert cell(1234567) == "1,234,567" and cell(12.345) == "12.3" and cell(2.0, decimals=0) == "2"
    assert cell(None) == "" and cell(float("nan")) == "" and cell(pd.NaT) == "" and cell(pd.NA) == ""
    assert cell(dt.datetime(2022, 3, 14, 11, 5, tzinfo=dt.timezone.utc)) == "2022-03-14 11:05"  # the column says UTC
    assert cell(dt.datetime(2022, 3, 14, 11, 5, tzinfo=dt.timezone(dt.timedelta(hours=-7)))) == "2022-03-14 11:05 -0700"
    assert cell("<b>x</b>") == "&lt;b&gt;x&lt;/b&gt;" and cell(True) == "yes"


def test_the_record_keeps_every_row_and_the_notebook_shows_a_preview():
    frame = pd.DataFrame({"event": [f"e{i}" for i in range(40)], "events": range(1000, 1040)}, index=range(100, 140))
    bundle = Table(frame, caption="all of them")._repr_mimebundle_()
    data = bundle[TABLE_MIME]
    assert len(rows(data)) == 40 and rows(data)[0] == ["e0", "1,000"] and data["numeric"] == [False, True]
    assert isinstance(data["rows"], str) and "\n" not in data["rows"]  # compact in the record, not a line per cell
    preview = bundle["text/html"]
    assert preview.count("<tr>") == PREVIEW_ROWS + 1 and "The first 20 of 40 rows" in preview
    assert ">100<" not in preview  # no index column


def test_a_short_table_is_static_a_long_one_an_offline_datatable_and_an_empty_one_says_so():
    short = Table(pd.DataFrame({"a": range(SHORT_ROWS)})).payload()
    assert not interactive(short) and to_html(short).startswith('<table class="ampkit-table">')
    long = Table(pd.DataFrame({"a": range(SHORT_ROWS + 1), "note": ["x" * 300] * (SHORT_ROWS + 1)})).payload()
    page = to_html(long)
    assert interactive(long) and "new ITable(" in page and "https://www.unpkg.com" not in page
    assert "x" * 300 in page  # full text, not cut
    assert to_html(Table(pd.DataFrame({"a": []}), empty="no retries in this run").payload()) == \
        '<p class="ampkit-empty">no retries in this run</p>'


def test_link_columns_keep_their_anchor_and_other_cells_are_escaped():
    frame = pd.DataFrame({"page": ['<a href="x.html">run page</a>'], "error": ["<script>"]})
    row = rows(Table(frame, links=("page",)).payload())[0]
    assert row == ['<a href="x.html">run page</a>', "&lt;script&gt;"]
