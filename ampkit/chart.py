"""The notebooks' figures and tables: every chart a notebook shows is built here, tested here."""
from __future__ import annotations

import collections

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


def sample_payloads(result):
    """The events a dry run would send (up to three, as Amplitude would receive them), as Markdown."""
    import json

    from IPython.display import Markdown
    if not result.samples:
        return Markdown("No sample payloads: this run sent its events. A dry run "
                        "(`ampkit sync --dry-run`, or the parameter `dry_run`) shows three of the events it would send.")
    blocks = [f"```json\n{json.dumps(sample, indent=2, ensure_ascii=False)}\n```" for sample in result.samples]
    return Markdown(f"{len(blocks)} of the events this dry run would send, as Amplitude would receive them:\n\n"
                    + "\n\n".join(blocks))


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
    for c in ("lag_event_p50", "lag_event_p95", "newest_age_seconds"):
        frame[c.replace("_seconds", "") + "_minutes"] = (frame[c].astype(float) / 60).round(1)
    columns = ["started_at", "status", "mode", "window_start", "window_end", "extracted", "accepted",
               "filtered_total", "rejected_total", "duration_seconds", "lag_event_p50_minutes", "lag_event_p95_minutes",
               "newest_age_minutes", "notebook_path", "error"]
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


LAG_COLORS = {"p50": "#2a9d8f", "p95": "#e76f51", "newest": "#264653"}


def lag_table(result) -> pd.DataFrame:
    """How long this run's accepted events took to reach Amplitude, in minutes (lag.Lags.summary())."""
    lag = getattr(result, "lag", None)
    if not lag:
        return pd.DataFrame({"note": ["This run accepted no events, so it has no lag to report."]})
    names = {"event": "from the event's timestamp", "loaded": "from loaded_at (staged)"}
    rows = [{"lag": names[m], "events": lag[m]["events"],
             **{k: None if lag[m][k] is None else round(lag[m][k] / 60, 1) for k in ("p50", "p95", "max")}}
            for m in ("event", "loaded")]
    frame = pd.DataFrame(rows).rename(columns={"p50": "p50 (min)", "p95": "p95 (min)", "max": "max (min)"})
    frame.attrs["newest_event_at"] = lag["newest_event_at"]
    return frame.set_index("lag")


def lag_history(rows: list[dict]) -> go.Figure:
    """Per run over time: p50 and p95 minutes from an event to Amplitude, and the age of the newest
    accepted event when the run ended, on a log scale so a backfill's days do not flatten the hours."""
    frame = pd.DataFrame([r for r in rows if r.get("lag_event_p50") is not None])
    fig = go.Figure()
    if frame.empty:
        fig.update_layout(title="No run has sent events yet: no lag to chart")
        return fig
    frame = frame.sort_values("started_at")
    for key, column in (("p50", "lag_event_p50"), ("p95", "lag_event_p95"), ("newest", "newest_age_seconds")):
        label = {"p50": "p50 event to Amplitude", "p95": "p95 event to Amplitude",
                 "newest": "age of the newest accepted event at the run's end"}[key]
        fig.add_scatter(x=frame["started_at"], y=frame[column].astype(float) / 60, mode="lines+markers", name=label,
                        line_color=LAG_COLORS[key], hovertext=frame["run_id"] + " (" + frame["mode"].fillna("") + ")")
    fig.update_layout(title="How fresh Amplitude was after each run", yaxis_type="log",
                      yaxis_title="minutes (log scale)", xaxis_title="run started (UTC)")
    return fig


def lag_by_hour(rows: list[dict]) -> go.Figure:
    """Per hour of event time: p50 and p95 minutes to Amplitude over every run that sent it."""
    frame = pd.DataFrame(rows)
    fig = go.Figure()
    if frame.empty:
        fig.update_layout(title="No events reached Amplitude in this period")
        return fig
    for key in ("p50", "p95"):
        fig.add_bar(x=frame["event_hour"], y=frame[f"lag_event_{key}"].astype(float) / 60, name=f"{key} event to Amplitude",
                    marker_color=LAG_COLORS[key], hovertext=frame["events"].map("{:,} events".format))
    fig.update_layout(title="Minutes from an event to Amplitude, by the hour it happened", barmode="group",
                      yaxis_type="log", yaxis_title="minutes (log scale)", xaxis_title="event hour (UTC)")
    return fig


# --- reconciliation -----------------------------------------------------------------------

CAUSE_COLORS = {"before_start": "#6c757d", "not_staged": "#8ecae6", "not_synced": "#219ebc", "planner_gap": "#9d0208",
                "late_beyond_lookback": "#023047",
                "export_lag": "#ffb703", "amplitude_only": "#d62828", "duplicated": "#f77f00", "unexplained": "#000000"}


BAND_COLORS = {"band": "rgba(42, 157, 143, 0.18)", "inside": "#2a9d8f", "outside": "#e76f51", "expected": "#264653"}


def _band_grid(frame: pd.DataFrame, x: str, title: str, x_title: str, empty: str) -> go.Figure:
    """One small panel per rule or family: the band (shaded), the baseline (dashed) and what was seen
    (green inside the band, red outside)."""
    if frame.empty:
        fig = go.Figure()
        fig.add_annotation(text=empty, showarrow=False, x=0.5, y=0.5, xref="paper", yref="paper")
        fig.update_layout(title=title, xaxis_visible=False, yaxis_visible=False, height=220)
        return fig
    keys = sorted(frame["key"].unique())
    cols = min(3, len(keys))
    rows = -(-len(keys) // cols)
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=keys, shared_xaxes=False)
    for i, key in enumerate(keys):
        part = frame[frame["key"] == key].sort_values(x)
        r, c = i // cols + 1, i % cols + 1
        banded = part.dropna(subset=["low"])
        if not banded.empty:
            fig.add_scatter(x=banded[x], y=banded["high"], mode="lines", line_width=0, showlegend=False,
                            hoverinfo="skip", row=r, col=c)
            fig.add_scatter(x=banded[x], y=banded["low"], mode="lines", line_width=0, fill="tonexty",
                            fillcolor=BAND_COLORS["band"], name="band", showlegend=i == 0, hoverinfo="skip", row=r, col=c)
            fig.add_scatter(x=banded[x], y=banded["expected"], mode="lines", line=dict(dash="dash", color=BAND_COLORS["expected"]),
                            name="baseline", showlegend=i == 0, row=r, col=c)
        outside = part["outside"].fillna(False).astype(bool)
        fig.add_scatter(x=part[x], y=part["seen"], mode="markers+lines", name="seen", showlegend=i == 0,
                        marker=dict(size=8, color=[BAND_COLORS["outside"] if o else BAND_COLORS["inside"] for o in outside]),
                        line=dict(color=BAND_COLORS["inside"], width=1), row=r, col=c)
    fig.update_layout(title=title, height=230 * rows + 80, legend_orientation="h")
    fig.update_xaxes(title_text=x_title)
    fig.update_yaxes(title_text="events", rangemode="tozero")
    return fig


def guardrail_bands(result) -> go.Figure:
    """The run's events to send per family and loaded hour, against the band of the same hours of
    the last weeks (the volume guardrail's view of the window)."""
    hours = [h for h in ((result.guardrail or {}).get("hours") or []) if h["kind"] == "family"]
    frame = pd.DataFrame(hours, columns=["kind", "key", "hour", "expected", "low", "high", "seen", "weeks", "complete", "departs"])
    frame["outside"] = frame["departs"]
    empty = ("no guardrail verdict: a backfill, the guardrail off, or no history for these hours yet"
             if not result.guardrail else "no week of history for these hours yet: the guardrail learns from this run")
    return _band_grid(frame, "hour", "Events to send per family and loaded hour, against the same hours of the last weeks",
                      "loaded hour (UTC)", empty)


def map_review(result, diff):
    """What the run's data map changes against the deployed one, per rule and family in events per
    day (`ampkit datamap diff`'s table), or a line saying the map is the deployed one."""
    from IPython.display import Markdown
    if diff is None:
        return Markdown(f"Data map version `{result.data_map_version}` is the deployed one: nothing to review.")
    changed = diff.frame()
    changed = changed[changed["change/day"] != 0]
    if changed.empty:
        return Markdown(f"Data map `{diff.new}` is new, but over {diff.days} day(s) it sends what `{diff.old}` sent.")
    return changed.style.hide(axis="index").format(precision=1, thousands=",").set_caption(
        f"Data map {diff.old} -> {diff.new}: events per day to Amplitude over {diff.days} day(s)")


def family_bands(rec) -> go.Figure:
    """Per family and day, events in Amplitude against the band from the days before (a family that
    vanished or flooded is red)."""
    frame = pd.DataFrame(rec.families, columns=["day", "family", "seen", "expected", "low", "high"]).rename(columns={"family": "key"})
    frame[["seen", "expected", "low", "high"]] = frame[["seen", "expected", "low", "high"]].astype(float)
    frame["outside"] = (frame["seen"] < frame["low"]) | (frame["seen"] > frame["high"])
    return _band_grid(frame, "day", "Events in Amplitude per family and day, against the band from the days before",
                      f"day ({rec.time_zone})", "no family had events in Amplitude in this range")


def anomalies_table(rec) -> pd.DataFrame:
    """Anomalies first, then every row that is not ok: what a person must look at."""
    rows = [{"severity": a.severity, "kind": a.kind, "day": a.day, "event": a.name, "events": a.count, "what": a.message,
             "what to do": a.action} for a in rec.anomalies]
    named = {(a.day, a.name) for a in rec.anomalies} | {(a.day, "") for a in rec.anomalies}
    rows += [{"severity": r.status, "kind": "unexplained_gap" if r.unexplained else "late_rows", "day": str(r.day),
              "event": r.name, "events": r.unexplained or r.late_beyond_lookback or r.planner_gap, "what": "; ".join(r.notes),
              "what to do": "see the anomaly of that day above" if (str(r.day), "") in named or (str(r.day), r.name) in named
              else "look at the row's parts below (docs/RECONCILIATION.md)"}
             for r in rec.rows if r.status != "ok"]
    if not rows:
        return pd.DataFrame([{"severity": "ok", "kind": "-", "day": "", "event": "", "events": 0,
                              "what": "every difference between Looker and Amplitude is explained", "what to do": "nothing"}])
    order = {"fail": 0, "warn": 1}
    return pd.DataFrame(rows).sort_values("severity", key=lambda s: s.map(order)).reset_index(drop=True)


def daily_totals(rec) -> go.Figure:
    """Per day: events in Looker, events the sync had Amplitude accept, events in Amplitude."""
    frame = pd.DataFrame([{"day": r.day, "looker": r.looker, "accepted": r.accepted, "amplitude": r.amplitude} for r in rec.rows])
    fig = go.Figure()
    if frame.empty:
        fig.update_layout(title="No data in range")
        return fig
    daily = frame.groupby("day").sum(numeric_only=True).reset_index()
    fig.add_bar(x=daily["day"], y=daily["looker"], name="Looker (event_logs)", marker_color="#adb5bd")
    fig.add_bar(x=daily["day"], y=daily["amplitude"], name="Amplitude", marker_color="#2a9d8f")
    fig.add_scatter(x=daily["day"], y=daily["accepted"], name="accepted by Amplitude (ledger)", mode="lines+markers",
                    line_color="#264653")
    fig.update_layout(title=f"Daily events, Looker vs Amplitude ({rec.time_zone})", barmode="group", yaxis_title="events")
    return fig


def recent_hours(rec) -> go.Figure:
    """The last 48 hours, per UTC hour: events Amplitude accepted (ledger) vs events it holds."""
    frame = pd.DataFrame(rec.recent_hours)
    fig = go.Figure()
    if frame.empty:
        fig.update_layout(title="No events in the last 48 hours")
        return fig
    fig.add_bar(x=frame["hour"], y=frame["accepted"], name="accepted by Amplitude (ledger)", marker_color="#264653")
    fig.add_scatter(x=frame["hour"], y=frame["amplitude"], name="in Amplitude (export)", mode="lines+markers", line_color="#2a9d8f")
    fig.update_layout(title="The last 48 hours, per hour (UTC)", yaxis_title="events")
    return fig


def gap_by_reason(rec) -> go.Figure:
    """Per day, the Looker - Amplitude gap stacked by its named causes."""
    parts = collections.defaultdict(collections.Counter)
    for r in rec.rows:
        for cause, n in r.causes().items():
            parts[cause][r.day] += n
    days = sorted({r.day for r in rec.rows})
    fig = go.Figure()
    for cause, per_day in sorted(parts.items(), key=lambda kv: -sum(abs(v) for v in kv[1].values())):
        color = CAUSE_COLORS.get(cause) or ("#adb5bd" if cause.startswith("filtered") else "#e76f51")
        fig.add_bar(x=days, y=[per_day.get(d, 0) for d in days], name=cause, marker_color=color)
    fig.update_layout(barmode="relative", title="The gap, explained: why Looker and Amplitude differ, per day",
                      yaxis_title="events (positive: only in Looker)")
    return fig


def gap_heatmap(rec, top: int = 30) -> go.Figure:
    """Gap as % of Looker's count, by event and day, for the busiest events."""
    frame = pd.DataFrame([{"day": str(r.day), "event": r.name, "looker": r.looker, "gap": r.gap} for r in rec.rows])
    fig = go.Figure()
    if frame.empty:
        return fig
    busiest = frame.groupby("event")["looker"].sum().sort_values(ascending=False).index[:top]
    part = frame[frame["event"].isin(busiest)]
    pivot = part.pivot_table(index="event", columns="day", values="gap", aggfunc="sum").reindex(busiest[::-1])
    base = part.pivot_table(index="event", columns="day", values="looker", aggfunc="sum").reindex(busiest[::-1])
    pct = (100 * pivot / base.where(base > 0)).round(1)
    fig.add_heatmap(z=pct.values, x=list(pct.columns), y=list(pct.index), colorscale="RdYlGn_r", zmin=0, zmax=100,
                    colorbar_title="gap %", hovertemplate="%{y} %{x}: %{z}% of Looker's events not in Amplitude<extra></extra>")
    fig.update_layout(title="Gap % by event and day (100% = kept out by design or not yet sent)", height=max(400, 20 * len(pct) + 150))
    return fig


def tool_matrix(rec, data_map) -> pd.DataFrame:
    """Which tool holds which data, by event family: in Looker only (and why), in both, in Amplitude only."""
    from ampkit import catalogue, routing
    family = catalogue.family_of(catalogue.events())
    out = collections.defaultdict(lambda: {"events in Looker only": 0, "events in both": 0, "events in Amplitude only": 0,
                                           "why Looker only": collections.Counter()})
    for r in rec.rows:
        fam = family(r.name) or catalogue.UNCATALOGUED
        x = out[fam]
        x["events in both"] += r.amplitude - r.amplitude_only
        x["events in Amplitude only"] += r.amplitude_only
        only = r.before_start + sum(r.filtered.values()) + sum(r.rejected.values())
        x["events in Looker only"] += only
        for rule, n in r.filtered.items():
            x["why Looker only"][f"rule {rule}"] += n
        if r.before_start:
            x["why Looker only"]["before the Amplitude start date"] += r.before_start
        if r.rejected:
            x["why Looker only"]["rejected (dead letters)"] += sum(r.rejected.values())
    # Where each family is answered is the onboarding page's word for it (routing.families), from the
    # data map, so the two pages cannot disagree; the counts are this reconciliation's.
    sources = {e.name: e.sources[0] for e in catalogue.events()}
    lives = {f.name: f.lives_in for f in routing.families(data_map, [(r.name, sources.get(r.name), r.looker) for r in rec.rows])}
    rows = []
    for fam, x in sorted(out.items(), key=lambda kv: -(kv[1]["events in both"] + kv[1]["events in Looker only"])):
        both, only = x["events in both"], x["events in Looker only"]
        rows.append({"family": fam, "answered in": lives.get(fam, "-"), "events in both": both, "events in Looker only": only,
                     "events in Amplitude only": x["events in Amplitude only"],
                     "why Looker only": ", ".join(k for k, _ in x["why Looker only"].most_common(3))})
    return pd.DataFrame(rows)




# --- onboarding -----------------------------------------------------------------------------

TOOL_COLORS = {"Amplitude": "#2a9d8f", "Looker": "#6c5ce7"}


def _whole(frame: pd.DataFrame):
    """A table shown in full: a DataFrame's HTML cuts cells at 50 characters, and the notes are the point."""
    return frame.style.hide(axis="index").format(escape="html").set_properties(**{"text-align": "left"})


def routes_table(routes):
    """`ampkit where`'s answers as a table: the question, the tool, and the fact that decided."""
    how = {"source": "where the data comes from", "time": "when", "events": "which events (data map)",
           "question": "kind of question", "none": "-"}
    frame = pd.DataFrame([{"question": r.question, "answer": r.answer, "decided by": how[r.decided_by],
                           "because": r.facts[0]} for r in routes])
    return frame.style.hide(axis="index")


def kept_out_table(rules):
    """The data map's exclusions with the rows each kept out (`ampkit.routing.kept_out`), as a Styler."""
    from ampkit.routing import reason_label
    frame = pd.DataFrame([{"rule": r.rule, "why": reason_label(r.reason), "note": r.note, "what it names": r.names,
                           "rows kept out": r.rows, "share of all rows": f"{r.share:.1%}",
                           "busiest events kept out": ", ".join(r.top)} for r in rules],
                         columns=["rule", "why", "note", "what it names", "rows kept out", "share of all rows",
                                  "busiest events kept out"])
    return _whole(frame).format({"rows kept out": "{:,}"})


def funnel_chart(f) -> go.Figure:
    """People at each step of a funnel (`ampkit.product.Funnel`), with conversion from step 1 and from the previous step."""
    fig = go.Figure()
    if not f.people or not f.people[0]:
        fig.update_layout(title=f"Nobody started the funnel between {f.start} and {f.end}")
        return fig
    text = [f"{n:,} · {c:.1%} of step 1 · {s:.0%} of the previous" for n, c, s in zip(f.people, f.conversion, f.step_conversion)]
    fig.add_funnel(y=list(f.steps), x=list(f.people), text=text, textinfo="text", marker_color=TOOL_COLORS["Amplitude"],
                   hovertemplate="%{y}<br>%{x:,} people<extra></extra>")
    fig.update_layout(title=f"Sign-up funnel: {f.start} to {f.end} ({f.time_zone}), conversion window {f.window_days} days",
                      height=120 + 60 * len(f.steps))
    return fig


def retention_heatmap(r) -> go.Figure:
    """Weekly cohorts by week number: share of each cohort active again (`ampkit.product.Retention`)."""
    fig = go.Figure()
    if not r.cohorts:
        fig.update_layout(title="No active people in this period")
        return fig
    z = [[None if v is None else round(100 * v, 1) for v in row] for row in r.matrix()]
    labels = [f"{c:%Y-%m-%d} ({r.size(c):,})" for c in r.cohorts]
    fig.add_heatmap(z=z, x=[f"week {n}" for n in range(r.weeks)], y=labels, colorscale="Teal", zmin=0, zmax=100,
                    text=[["" if v is None else f"{v:.0f}%" for v in row] for row in z], texttemplate="%{text}",
                    colorbar_title="% active", hovertemplate="cohort %{y}<br>%{x}: %{z}%<extra></extra>")
    fig.update_layout(title=f"Weekly retention by first active week (Monday weeks, {r.time_zone}); the last week is still running",
                      yaxis_autorange="reversed", yaxis_title="cohort (people)", height=200 + 40 * len(labels))
    return fig


def family_chart(families) -> go.Figure:
    """Rows per event family: sent to Amplitude, or kept in Looker only by a data-map rule (`ampkit.routing.families`)."""
    fig = go.Figure()
    shown = [f for f in families if f.rows_sent or f.rows_kept_out]
    if not shown:
        fig.update_layout(title="No events in this period")
        return fig
    names = [f.name for f in shown][::-1]
    fig.add_bar(y=names, x=[f.rows_sent for f in shown][::-1], orientation="h", name="in Amplitude (and Looker)",
                marker_color=TOOL_COLORS["Amplitude"], hovertemplate="%{y}: %{x:,} rows in Amplitude<extra></extra>")
    rules = sorted({rule for f in shown for rule in f.rows_kept_out})
    looker_colors = ["#6c5ce7", "#a29bfe", "#b2bec3", "#636e72", "#dfe6e9", "#2d3436"]
    for i, rule in enumerate(rules):
        fig.add_bar(y=names, x=[f.rows_kept_out.get(rule, 0) for f in shown][::-1], orientation="h",
                    name=f"Looker only: {rule}", marker_color=looker_colors[i % len(looker_colors)],
                    hovertemplate="%{y}: %{x:,} rows kept out by " + rule + "<extra></extra>")
    fig.update_layout(barmode="stack", title="Where each event family lives (rows per family, by the data map)",
                      xaxis_title="rows", height=max(380, 30 * len(names) + 160), legend_title="where")
    return fig


def family_table(families):
    """Per family: where it lives, and how many of its event types are in Amplitude or Looker only (a Styler)."""
    frame = pd.DataFrame([{"family": f.name, "lives in": f.lives_in, "event types in Amplitude": f.types_sent,
                           "event types in Looker only": f.types_kept_out, "rows in Amplitude": f.rows_sent,
                           "rows in Looker only": sum(f.rows_kept_out.values()),
                           "kept out by": ", ".join(sorted(f.rows_kept_out))} for f in families])
    return _whole(frame).format("{:,}", subset=["rows in Amplitude", "rows in Looker only"])


def reconciliation_summary(rec):
    """One reconciliation in a few lines: status, the two counts, and each named cause of the gap (a Styler)."""
    t = rec.totals()
    anomalies = f"{len(rec.anomalies)} anomalies: see the reconciliation notebook" if rec.anomalies else "no anomalies"
    rows = [("status", rec.status.upper(), f"{rec.start} to {rec.end} ({rec.time_zone}); {anomalies}"),
            ("in Looker (event_logs)", t["looker"], "every event"),
            ("in Amplitude", t["amplitude"], "what the sync delivered")]
    meaning = {"before_start": "only in Looker: before the Amplitude start date",
               "not_staged": "only in Looker: not yet copied to amplitude_events",
               "not_synced": "only in Looker until the next hourly sync",
               "late_beyond_lookback": "only in Looker: loaded too late, needs a backfill",
               "export_lag": "sent, not yet in Amplitude's export"}
    for key, text in meaning.items():
        if t[key]:
            rows.append((key.replace("_", " "), t[key], text))
    for rule, n in sorted(t["filtered"].items(), key=lambda kv: -kv[1]):
        rows.append((f"data-map rule {rule}", n, "only in Looker, by design"))
    for reason, n in sorted(t["rejected"].items(), key=lambda kv: -kv[1]):
        rows.append((f"rejected: {reason}", n, "only in Looker: Amplitude would refuse it"))
    for key in ("amplitude_only", "duplicated"):
        if t[key]:
            rows.append((key.replace("_", " "), t[key], "only in Amplitude: a problem"))
    rows.append(("unexplained", t["unexplained"], "0 when the two tools agree"))
    frame = pd.DataFrame(rows, columns=["", "events", "meaning"])
    return _whole(frame).format(lambda v: f"{v:,}" if isinstance(v, int) else v, subset=["events"])
