"""The notebooks' figures: a stated empty state instead of blank axes, units on axes, colours by cause."""
from __future__ import annotations

import datetime as dt
import types

import pandas as pd

from ampkit import chart, datamap, palette, reconcile
from ampkit.table import rows as table_rows


def said(fig) -> list[str]:
    return [a.text for a in fig.layout.annotations if a.name == chart.EMPTY]


def test_every_chart_with_nothing_to_draw_says_why():
    rec = reconcile.Reconciliation(dt.date(2022, 3, 14), dt.date(2022, 3, 14), "UTC", [], [], "v1")
    run = types.SimpleNamespace(guardrail=None, lag=None)
    figures = [chart.sync_breakdown(pd.DataFrame(columns=["name", "outcome", "reason", "events"])), chart.request_timeline([]),
               chart.runs_history([]), chart.lag_history([]), chart.lag_by_hour([]), chart.guardrail_bands(run),
               chart.family_bands(rec), chart.daily_totals(rec), chart.recent_hours(rec), chart.gap_by_reason(rec),
               chart.gap_heatmap(rec)]
    for fig in figures:
        assert said(fig) and not fig.data, fig.layout.title.text
    assert table_rows(chart.lag_table(run).payload()) == [] and "accepted no events" in chart.lag_table(run).empty


def test_the_request_chart_has_axes_with_units_and_says_when_there_were_no_retries():
    log = [{"t": 0.2 * i, "latency_ms": 20 + i, "kind": "ok", "status": 200, "attempt": 0} for i in range(5)]
    quiet = chart.request_timeline(log)
    assert quiet.layout.xaxis.title.text == "seconds since the run started" and quiet.layout.yaxis.title.text == "latency (ms)"
    assert any(a.text == "no retries or refusals in this run" for a in quiet.layout.annotations)
    busy = chart.request_timeline(log + [{"t": 1.5, "latency_ms": 5, "kind": "throttled", "status": 429, "attempt": 1}])
    assert [t.name for t in busy.data] == ["accepted", "refused or failed", "refusals by kind"]
    assert busy.layout.xaxis2.title.text == "kind of refusal" and "1 retries" in busy.layout.title.text


def test_the_gap_is_coloured_by_cause_and_by_design_is_not_red():
    day = dt.date(2022, 3, 14)
    rows = [reconcile.Row(day=day, name="codeintel.lsifHover", looker=100, filtered={"codeintel_deny_list": 100}),
            reconcile.Row(day=day, name="ViewBlob", looker=100, amplitude=90, not_synced=10),
            reconcile.Row(day=day, name="hover", looker=100, amplitude=100)]
    rec = reconcile.Reconciliation(day, day, "UTC", rows, [], "v1")
    bars = {t.name: t.marker.color for t in chart.gap_by_reason(rec).data}
    assert bars == {"filtered: codeintel_deny_list": palette.BY_DESIGN["codeintel_deny_list"], "not_synced": palette.IN_FLIGHT["not_synced"]}
    heat = chart.gap_heatmap(rec).data[0]
    cells = dict(zip(heat.y, (row[0] for row in heat.z)))
    groups = list(palette.GROUP_COLORS)
    assert cells == {"codeintel.lsifHover": groups.index("by design"), "ViewBlob": groups.index("in flight"), "hover": groups.index("agree")}


def test_the_runs_timeline_keeps_a_backfill_from_flattening_the_hourly_runs():
    t = dt.datetime(2022, 3, 14, 9, tzinfo=dt.timezone.utc)
    rows = [{"run_id": f"r{i}", "started_at": t + dt.timedelta(hours=i), "status": s, "mode": "sync", "extracted": n}
            for i, (s, n) in enumerate([("ok", 250_000), ("ok", 800), ("failed", None), ("ok", 0)])]
    fig = chart.runs_history(rows)
    assert fig.layout.yaxis.type == "log"
    by_status = {t.name: list(t.y) for t in fig.data}
    assert by_status == {"ok": [250_000, 800, 1], "failed": [1]}
    assert {t.name: t.marker.color for t in fig.data} == {"ok": palette.STATUS["ok"], "failed": palette.STATUS["failed"]}


def test_the_runs_table_links_each_run_to_its_page():
    t = dt.datetime(2022, 3, 14, 9, tzinfo=dt.timezone.utc)
    rows = [{"run_id": "r1", "started_at": t, "status": "ok", "mode": "sync", "window_start": t, "window_end": t,
             "extracted": 1234, "accepted": 1000, "filtered_total": 234, "rejected_total": 0, "duration_seconds": 1.5,
             "lag_event_p50": 120.0, "lag_event_p95": 600.0, "newest_age_seconds": 60.0,
             "notebook_path": "runs/hourly_sync/x.ipynb", "error": None}]
    table = chart.runs_table(rows, lambda record: "../" + record.replace(".ipynb", ".html"))
    row = dict(zip(table.payload()["columns"], table_rows(table.payload())[0]))
    assert row["page"] == '<a href="../runs/hourly_sync/x.html">run page</a>'
    assert (row["extracted"], row["p50 lag (min)"], row["p95 lag (min)"]) == ("1,234", "2.0", "10.0")
    assert table_rows(chart.runs_table([]).payload()) == []
    failed = {**rows[0], "status": "failed", "extracted": None, "accepted": None, "lag_event_p50": None, "notebook_path": None}
    row = dict(zip(table.payload()["columns"], table_rows(chart.runs_table([failed]).payload())[0]))
    assert (row["extracted"], row["p50 lag (min)"], row["page"]) == ("", "", "")  # nothing known, nothing shown


def test_the_tool_matrix_names_every_reason_a_family_is_looker_only():
    day = dt.date(2022, 3, 14)
    rows = [reconcile.Row(day=day, name="hover", looker=10, amplitude=5, filtered={"very_low_traffic": 3}, rejected={"no_id": 2})]
    rec = reconcile.Reconciliation(day, day, "UTC", rows, [], "v1")
    frame = chart.tool_matrix(rec, datamap.load()).frame
    assert frame.loc[0, "why Looker only"] == "rule very_low_traffic, rejected (dead letters)"
