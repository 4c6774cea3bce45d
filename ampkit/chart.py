"""The notebooks' figures and tables: every chart a notebook shows is built here, tested here."""
from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

OUTCOME_COLORS = {"accepted": "#2a9d8f", "filtered": "#adb5bd", "rejected": "#e76f51", "held": "#f4a261"}


def sync_table(result) -> pd.DataFrame:
    """One row per stage of a run: extracted, accepted, filtered per rule, rejected per reason."""
    rows = [("extracted", "", result.extracted), ("accepted", "", result.accepted)]
    rows += [("filtered", rule, n) for rule, n in sorted(result.filtered.items(), key=lambda kv: -kv[1])]
    rows += [("rejected", reason, n) for reason, n in sorted(result.rejected.items(), key=lambda kv: -kv[1])]
    return pd.DataFrame(rows, columns=["stage", "rule or reason", "events"])


def sync_breakdown(frame: pd.DataFrame, top: int = 25) -> go.Figure:
    """Events per event type: accepted vs filtered vs rejected, with the rule or reason in the hover.

    `frame` has columns name, outcome, reason, events (see `ampkit.sync.breakdown`).
    """
    fig = go.Figure()
    if frame.empty:
        fig.update_layout(title="No events in this run's window")
        return fig
    totals = frame.groupby("name")["events"].sum().sort_values(ascending=False)
    names = list(totals.index[:top])[::-1]
    shown = frame[frame["name"].isin(names)]
    for (outcome, reason), part in shown.groupby(["outcome", shown["reason"].fillna("")], sort=True):
        counts = part.groupby("name")["events"].sum().reindex(names, fill_value=0)
        label = outcome if not reason else f"{outcome}: {reason}"
        fig.add_bar(y=names, x=counts.values, orientation="h", name=label,
                    marker_color=OUTCOME_COLORS.get(outcome, "#999"),
                    hovertemplate="%{y}<br>" + label + ": %{x:,}<extra></extra>")
    fig.update_layout(barmode="stack", title=f"Events per event type (top {len(names)} by volume)",
                      xaxis_title="events", height=max(400, 22 * len(names) + 120), legend_title="outcome")
    return fig


def request_timeline(log: list[dict]) -> go.Figure:
    """Request latency over the run, and retries, from the sender's request log."""
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, row_heights=[0.7, 0.3],
                        subplot_titles=("request latency (ms)", "retries and refusals"))
    if not log:
        fig.update_layout(title="No requests were sent")
        return fig
    frame = pd.DataFrame(log)
    ok = frame[frame["kind"] == "ok"]
    fig.add_scatter(x=ok["t"], y=ok["latency_ms"], mode="markers", name="accepted", marker_color="#2a9d8f", row=1, col=1)
    bad = frame[frame["kind"] != "ok"]
    if not bad.empty:
        fig.add_scatter(x=bad["t"], y=bad["latency_ms"], mode="markers", name="refused or failed",
                        marker_color="#e76f51", text=bad["kind"] + " " + bad["status"].astype(str), row=1, col=1)
        per_kind = bad.groupby("kind").size()
        fig.add_bar(x=list(per_kind.index), y=list(per_kind.values), name="refusals by kind", marker_color="#e76f51", row=2, col=1)
    fig.update_layout(title=f"{len(frame):,} requests, {int((frame['attempt'] > 0).sum()):,} retries", height=520)
    fig.update_xaxes(title_text="seconds since the run started", row=1, col=1)
    return fig


def runs_table(rows: list[dict]) -> pd.DataFrame:
    """The run ledger as a table: status, window, counts, duration, lag, run record."""
    frame = pd.DataFrame(rows)
    if frame.empty:
        return frame
    newest = pd.to_datetime(frame["newest_loaded_at"], utc=True)
    frame["lag_minutes"] = ((newest - pd.to_datetime(frame["window_end"], utc=True)).dt.total_seconds() / 60).round(1)
    columns = ["started_at", "status", "mode", "window_start", "window_end", "extracted", "accepted",
               "filtered_total", "rejected_total", "duration_seconds", "lag_minutes", "notebook_path", "error"]
    return frame[columns]


def runs_history(rows: list[dict]) -> go.Figure:
    """Events per run over time, coloured by status."""
    frame = pd.DataFrame(rows)
    fig = go.Figure()
    if frame.empty:
        fig.update_layout(title="No runs yet")
        return fig
    for status, part in frame.groupby("status"):
        fig.add_bar(x=part["started_at"], y=part["extracted"].fillna(0), name=status,
                    hovertext=part["run_id"])
    fig.update_layout(title="Events extracted per run", barmode="stack", yaxis_title="events")
    return fig
