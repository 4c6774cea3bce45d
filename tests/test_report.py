"""Report pages: rendered from the record with the folder's shared scripts, an index of every page,
and latest.html that skips a quiet hour."""
from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path

import nbformat
import pandas as pd
import plotly.graph_objects as go
import plotly.io as pio

from ampkit import report
from ampkit.notebook import OUTCOME_MIME
from ampkit.table import Table


def record(rows: int = 40, extracted: int = 10) -> nbformat.NotebookNode:
    """A run record as the runner leaves it: a figure, a table, how it ended, a log line."""
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("...")
    figure = json.loads(pio.to_json(go.Figure(go.Bar(x=[1, 2], y=[3, 4])), validate=False))
    cell.outputs = [nbformat.v4.new_output("display_data", {report.PLOTLY_MIME: figure}),
                    nbformat.v4.new_output("display_data", Table(pd.DataFrame({"n": range(rows)}))._repr_mimebundle_()),
                    nbformat.v4.new_output("display_data", {OUTCOME_MIME: {"status": "ok", "counts": {"extracted": extracted}},
                                                            "text/plain": "outcome: ok"})]
    nb.cells.append(cell)
    return nb


def test_a_page_loads_only_the_shared_scripts_it_needs_and_nothing_from_another_host():
    page = report.render(record(rows=40), {"plotly": "../assets/plotly.js", "itables": "../assets/itables.js"})
    sources = re.findall(r'<script[^>]* src="([^"]+)"', page)
    assert sources == ["../assets/plotly.js", "../assets/itables.js"]
    assert "Plotly.newPlot" in page and "new ITable(" in page and "outcome: ok" not in page
    assert "cdnjs" not in page and "MathJax" not in page and "require.min.js" not in page
    assert len(page) < 600_000
    short = report.render(record(rows=3), {"plotly": "p.js", "itables": "i.js"})
    assert re.findall(r'<script[^>]* src="([^"]+)"', short) == ["p.js"]  # a short table needs no library


def test_a_standalone_page_carries_its_scripts(tmp_path):
    out = report.standalone(record(rows=40), str(tmp_path / "page.html"))
    page = Path(out).read_text()
    assert not re.findall(r'<script[^>]* src=', page) and len(page) > 4_000_000  # plotly.js inline


def write_run(reports: Path, name: str, when: dt.datetime, extracted: int | None, status: str = "ok",
              suffix: str = "", **details) -> str:
    stamp = f"{when:%Y%m%dT%H%M%SZ}{suffix}"
    path = reports / name / f"{when:%Y/%m/%d}" / f"{stamp}.html"
    details = {"window_start": (when - dt.timedelta(hours=1)).isoformat(), "window_end": when.isoformat(),
               "data_map_version": "abc", "counts": {} if extracted is None else {"extracted": extracted, "accepted": extracted},
               **details}
    entry = report.entry_of(details, name=name, when=when, status=status, record=f"runs/{name}/{stamp}.ipynb",
                            report=str(path.relative_to(reports)))
    report.write(record(extracted=extracted or 0), str(path), str(reports), entry)
    return str(path.relative_to(reports / name))


def latest(reports: Path, name: str) -> str:
    return re.search(r'url=([^"]+)"', (reports / name / report.LATEST).read_text()).group(1)


def test_the_index_lists_every_page_newest_first_and_latest_skips_a_quiet_hour(tmp_path):
    reports = tmp_path / "reports"
    t = dt.datetime(2022, 3, 14, 9, 5, tzinfo=dt.timezone.utc)
    busy = write_run(reports, "hourly_sync", t, 800)
    assert latest(reports, "hourly_sync") == busy
    quiet = write_run(reports, "hourly_sync", t + dt.timedelta(hours=1), 0)
    assert latest(reports, "hourly_sync") == busy  # the quiet hour has nothing to show
    index = (reports / report.INDEX).read_text()
    assert "handled no rows, so latest.html shows 2022-03-14 09:05, the newest that did" in index
    failed = write_run(reports, "hourly_sync", t + dt.timedelta(hours=2), 0, status="failed")
    assert latest(reports, "hourly_sync") == failed  # a failure is worth seeing
    write_run(reports, "reconciliation", t + dt.timedelta(hours=3), None)
    assert latest(reports, "reconciliation").endswith("20220314T120500Z.html")
    found = report.entries(str(reports))
    assert [e.when[11:16] for e in found] == ["12:05", "11:05", "10:05", "09:05"]
    table = (reports / report.INDEX).read_text().split("<tbody>", 1)[1]
    assert table.index("20220314T120500Z.html") < table.index("20220314T110500Z.html") < table.index("20220314T090500Z.html")
    index = (reports / report.INDEX).read_text()
    assert "extracted 800 · accepted 800" in index and ">failed<" in index
    assert quiet and len(list((reports / "assets").iterdir())) == 2  # one copy of each script for the folder


def test_links_from_one_page_to_another_run_page_are_relative(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    link = report.links_from("runs/runs_overview/2022/03/14/a.ipynb", "runs", "reports")
    assert link("runs/hourly_sync/2022/03/14/b.ipynb") is None  # no page was written for it
    (tmp_path / "reports/hourly_sync/2022/03/14").mkdir(parents=True)
    (tmp_path / "reports/hourly_sync/2022/03/14/b.html").write_text("")
    assert link("runs/hourly_sync/2022/03/14/b.ipynb") == "../../../../hourly_sync/2022/03/14/b.html"
    assert report.links_from("", "runs", "reports") is None


def test_a_dry_run_or_a_skipped_run_does_not_become_latest_and_a_retry_of_the_same_clock_is_the_newer(tmp_path):
    reports = tmp_path / "reports"
    t = dt.datetime(2022, 3, 14, 9, 5, tzinfo=dt.timezone.utc)
    real = write_run(reports, "hourly_sync", t, 800)
    write_run(reports, "hourly_sync", t + dt.timedelta(hours=1), 500, status="dry_run")
    write_run(reports, "hourly_sync", t + dt.timedelta(hours=2), 0, status="skipped_locked")
    assert latest(reports, "hourly_sync") == real
    assert "it was skipped (another run held the lease), so latest.html shows 2022-03-14 09:05" in (reports / report.INDEX).read_text()
    retry = write_run(reports, "hourly_sync", t + dt.timedelta(hours=3), 10, suffix="-2")
    write_run(reports, "hourly_sync", t + dt.timedelta(hours=3), 20)
    assert latest(reports, "hourly_sync") == retry and report.entries(str(reports))[0].report.endswith("-2.html")


def test_the_index_escapes_what_it_shows_and_says_a_failing_verdict_and_the_days_zone(tmp_path):
    reports = tmp_path / "reports"
    t = dt.datetime(2022, 3, 14, 12, tzinfo=dt.timezone.utc)
    write_run(reports, "reconciliation", t, None, window_start="2022-03-01", window_end="2022-03-14",
              time_zone="America/Los_Angeles", data_map_version="<script>alert(1)</script>",
              counts={"looker": 10, "amplitude": 9, "unexplained": 1, "anomalies": 1, "verdict": "fail"})
    index = (reports / report.INDEX).read_text()
    assert "<script>alert" not in index and "&lt;script&gt;alert(1)&lt;/script&gt;" in index
    assert "ok · verdict fail" in index and "2022-03-01 .. 2022-03-14 (America/Los_Angeles)" in index
    assert "in Looker 10 · in Amplitude 9 · unexplained 1 · anomalies 1" in index


def test_the_front_page_lists_a_month_and_every_month_has_its_page_read_from_the_manifest(tmp_path):
    reports = tmp_path / "reports"
    t = dt.datetime(2022, 1, 10, 9, 5, tzinfo=dt.timezone.utc)
    for days in (0, 40, 41):
        write_run(reports, "hourly_sync", t + dt.timedelta(days=days), 5)
    front = (reports / report.INDEX).read_text()
    assert front.count("hourly_sync/2022/") == 2 + 1  # the two pages of the last 31 days, and the newest's link above
    january = (reports / "index-2022-01.html").read_text()
    assert "20220110T090500Z.html" in january and 'href="index-2022-02.html"' in front
    manifest = json.loads((reports / report.MANIFEST).read_text())
    assert len(manifest) == 3
    # A line already gathered is not read again: a broken sidecar of a known page changes nothing.
    (reports / "hourly_sync/2022/01/10/20220110T090500Z.json").write_text("not json")
    assert len(report.entries(str(reports))) == 3


def test_a_remote_reports_folder_works_as_a_local_one():
    """gs:// goes through fsspec as any remote folder does: fsspec's in-memory one stands in for it
    (listing, reading the index lines, writing pages, scripts and index with their content type)."""
    import fsspec
    fs = fsspec.filesystem("memory")
    reports = "memory://bucket/reports"
    t = dt.datetime(2022, 3, 14, 9, 5, tzinfo=dt.timezone.utc)
    for hours, extracted in ((0, 800), (1, 0)):
        when = t + dt.timedelta(hours=hours)
        stamp = f"{when:%Y%m%dT%H%M%SZ}"
        page = f"{reports}/hourly_sync/{when:%Y/%m/%d}/{stamp}.html"
        entry = report.entry_of({"counts": {"extracted": extracted}}, name="hourly_sync", when=when, status="ok",
                                report=f"hourly_sync/{when:%Y/%m/%d}/{stamp}.html", record=f"gs://b/runs/{stamp}.ipynb")
        report.write(record(), page, reports, entry)
    assert 'src="../../../../assets/plotly-' in fs.cat("/bucket/reports/hourly_sync/2022/03/14/20220314T090500Z.html").decode()
    assert "url=2022/03/14/20220314T090500Z.html" in fs.cat("/bucket/reports/hourly_sync/latest.html").decode()
    index = fs.cat("/bucket/reports/index.html").decode()
    assert "handled no rows, so latest.html shows 2022-03-14 09:05" in index and "gs://b/runs/20220314T100500Z.ipynb" in index
    assert [e.when[11:16] for e in report.entries(reports)] == ["10:05", "09:05"]
    assert len(json.loads(fs.cat("/bucket/reports/index.json"))) == 2
