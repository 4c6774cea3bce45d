"""The notebooks' figures and tables: every chart a notebook shows is built here, tested here."""
from __future__ import annotations

import collections
from html import escape

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from ampkit import palette
from ampkit.table import Table

TOOL_COLORS = {"Amplitude": "#2a9d8f", "Looker": "#6c5ce7"}
EMPTY = "empty state"  # the name of the annotation that says why a figure has no data


def empty(fig: go.Figure, text: str) -> go.Figure:
    """Say on the figure why there is nothing to draw, instead of blank axes."""
    fig.add_annotation(text=text, name=EMPTY, showarrow=False, x=0.5, y=0.5, xref="paper", yref="paper",
                       font=dict(size=15, color="#495057"))
    return fig.update_layout(xaxis_visible=False, yaxis_visible=False, height=fig.layout.height or 240)


def sync_table(result) -> Table:
    """One row per stage of a run: extracted, accepted, filtered per rule, rejected per reason."""
    rows = [("extracted", "", result.extracted), ("accepted", "", result.accepted)]
    rows += [("filtered", rule, n) for rule, n in sorted(result.filtered.items(), key=lambda kv: -kv[1])]
    rows += [("rejected", reason, n) for reason, n in sorted(result.rejected.items(), key=lambda kv: -kv[1])]
    return Table(pd.DataFrame(rows, columns=["stage", "rule or reason", "events"]),
                 caption="Where every extracted event went: extracted = accepted + filtered + rejected")


def sync_breakdown(frame: pd.DataFrame, top: int = 25) -> go.Figure:
    """Events per event type: accepted vs filtered vs rejected, with the rule or reason in the hover.

    `frame` has columns name, outcome, reason, events (see `ampkit.sync.breakdown`).
    """
    fig = go.Figure()
    if frame.empty:
        return empty(fig.update_layout(title="Events per event type"), "no events in this run's window")
    totals = frame.groupby("name")["events"].sum().sort_values(ascending=False)
    names = list(totals.index[:top])[::-1]
    shown = frame[frame["name"].isin(names)]
    for (outcome, reason), part in shown.groupby(["outcome", shown["reason"].fillna("")], sort=True):
        counts = part.groupby("name")["events"].sum().reindex(names, fill_value=0)
        label = outcome if not reason else f"{outcome}: {reason}"
        fig.add_bar(y=names, x=counts.values, orientation="h", name=label,
                    marker_color=palette.color(f"{outcome}:{reason}" if reason else outcome),
                    hovertemplate="%{y}<br>" + label + ": %{x:,} events<extra></extra>")
    fig.update_layout(barmode="stack", title=f"Events per event type (top {len(names)} by volume)",
                      xaxis_title="events", yaxis_title="event type", height=max(400, 22 * len(names) + 120),
                      legend_title="outcome")
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
    """Request latency over the run and, when there were any, the retries and refusals by kind,
    from the sender's request log."""
    title = "Requests to Amplitude"
    if not log:
        return empty(go.Figure().update_layout(title=title), "no requests were sent in this run")
    frame = pd.DataFrame(log)
    bad = frame[frame["kind"] != "ok"]
    title += f": {len(frame):,} requests, {int((frame['attempt'] > 0).sum()):,} retries"
    if bad.empty:
        fig = go.Figure().update_layout(title=title, height=420)
        fig.add_annotation(text="no retries or refusals in this run", name="note", showarrow=False, x=1, y=1.06,
                           xref="paper", yref="paper", xanchor="right", font=dict(color="#495057"))
        row = {}
    else:
        fig = make_subplots(rows=2, cols=1, row_heights=[0.65, 0.35], vertical_spacing=0.2,
                            subplot_titles=("latency of each request", "retries and refusals, by kind"))
        fig.update_layout(title=title, height=620)
        row = {"row": 1, "col": 1}
    ok = frame[frame["kind"] == "ok"]
    fig.add_scatter(x=ok["t"], y=ok["latency_ms"], mode="markers", name="accepted", marker_color=palette.SENT["accepted"],
                    hovertemplate="%{x:.1f} s: %{y:,.0f} ms<extra></extra>", **row)
    fig.update_xaxes(title_text="seconds since the run started", rangemode="tozero", **row)
    fig.update_yaxes(title_text="latency (ms)", rangemode="tozero", **row)
    if not bad.empty:
        fig.add_scatter(x=bad["t"], y=bad["latency_ms"], mode="markers", name="refused or failed",
                        marker_color=palette.WRONG["amplitude_only"], text=bad["kind"] + " " + bad["status"].astype(str), row=1, col=1)
        per_kind = bad.groupby("kind").size()
        fig.add_bar(x=list(per_kind.index), y=list(per_kind.values), name="refusals by kind",
                    marker_color=palette.WRONG["amplitude_only"], row=2, col=1)
        fig.update_xaxes(type="category", title_text="kind of refusal", row=2, col=1)
        fig.update_yaxes(title_text="requests", row=2, col=1)
    return fig


def runs_table(rows: list[dict], link=None) -> Table:
    """The run ledger for people: when, how it ended, the window, counts, duration, lag, and a link to
    each run's page (`link(record)` gives the href, or None when there is none)."""
    columns = ["started (UTC)", "status", "mode", "window (UTC)", "extracted", "accepted", "filtered", "rejected",
               "duration (s)", "p50 lag (min)", "p95 lag (min)", "newest event's age (min)", "page", "error"]
    out = []
    for r in rows:
        minutes = {k: None if r.get(k) is None else float(r[k]) / 60 for k in ("lag_event_p50", "lag_event_p95", "newest_age_seconds")}
        href = link(r["notebook_path"]) if link and r.get("notebook_path") else None
        window = (f"{r['window_start']:%Y-%m-%d %H:%M} .. {r['window_end']:%Y-%m-%d %H:%M}"
                  if r.get("window_start") and r.get("window_end") else "")
        out.append([r["started_at"], r["status"], r.get("mode") or "", window, r.get("extracted"), r.get("accepted"),
                    r.get("filtered_total"), r.get("rejected_total"), r.get("duration_seconds"), minutes["lag_event_p50"],
                    minutes["lag_event_p95"], minutes["newest_age_seconds"],
                    f'<a href="{escape(href)}">run page</a>' if href else escape(r.get("notebook_path") or ""), r.get("error") or ""])
    frame = pd.DataFrame(out, columns=columns)
    for c in ("extracted", "accepted", "filtered", "rejected"):
        frame[c] = frame[c].astype("Int64")
    return Table(frame, caption="The run ledger, newest first", empty="No run has been recorded yet.", links=("page",))


def runs_history(rows: list[dict]) -> go.Figure:
    """A timeline of runs coloured by status; events extracted per run on a log scale, so one
    backfill does not flatten the hourly runs (a run with none sits on the bottom line)."""
    frame = pd.DataFrame(rows)
    fig = go.Figure()
    if frame.empty:
        return empty(fig.update_layout(title="Runs over time"), "no run has been recorded yet")
    frame["events"] = frame["extracted"].fillna(0).astype(int)
    for status, part in frame.groupby("status", sort=False):
        fig.add_scatter(x=part["started_at"], y=part["events"].clip(lower=1), mode="markers", name=status,
                        marker=dict(color=palette.STATUS.get(status, "#6c757d"), size=11, line=dict(width=1, color="#212529"),
                                    symbol=["circle" if n else "circle-open" for n in part["events"]]),
                        customdata=list(zip(part["events"], part["mode"].fillna(""), part["run_id"])),
                        hovertemplate="%{x}<br>" + status + ": %{customdata[0]:,} events (%{customdata[1]})<br>%{customdata[2]}<extra></extra>")
    fig.update_layout(title="Runs over time, coloured by how they ended", yaxis_type="log", showlegend=True,
                      yaxis_title="events extracted (log scale; none = 1)", xaxis_title="run started (UTC)", legend_title="status")
    return fig


def lag_table(result) -> Table:
    """How long this run's accepted events took to reach Amplitude, in minutes (lag.Lags.summary())."""
    lag = getattr(result, "lag", None)
    names = {"event": "from the event's timestamp", "loaded": "from loaded_at (staged)"}
    rows = [{"measured": names[m], "events": lag[m]["events"],
             **{f"{k} (min)": None if lag[m][k] is None else lag[m][k] / 60 for k in ("p50", "p95", "max")}}
            for m in ("event", "loaded")] if lag else []
    return Table(pd.DataFrame(rows, columns=["measured", "events", "p50 (min)", "p95 (min)", "max (min)"]),
                 caption="Minutes from an event to Amplitude's acceptance",
                 empty="This run accepted no events, so it has no lag to report.")


def lag_history(rows: list[dict]) -> go.Figure:
    """Per run over time: p50 and p95 minutes from an event to Amplitude, and the age of the newest
    accepted event when the run ended, on a log scale so a backfill's days do not flatten the hours."""
    frame = pd.DataFrame([r for r in rows if r.get("lag_event_p50") is not None])
    fig = go.Figure()
    if frame.empty:
        return empty(fig.update_layout(title="How fresh Amplitude was after each run"), "no run has sent events yet: no lag to chart")
    frame = frame.sort_values("started_at")
    for key, column in (("p50", "lag_event_p50"), ("p95", "lag_event_p95"), ("newest", "newest_age_seconds")):
        label = {"p50": "p50 event to Amplitude", "p95": "p95 event to Amplitude",
                 "newest": "age of the newest accepted event at the run's end"}[key]
        fig.add_scatter(x=frame["started_at"], y=frame[column].astype(float) / 60, mode="lines+markers", name=label,
                        line_color=palette.LAG[key], hovertext=frame["run_id"] + " (" + frame["mode"].fillna("") + ")")
    fig.update_layout(title="How fresh Amplitude was after each run", yaxis_type="log",
                      yaxis_title="minutes (log scale)", xaxis_title="run started (UTC)")
    return fig


def lag_by_hour(rows: list[dict]) -> go.Figure:
    """Per hour of event time: p50 and p95 minutes to Amplitude over every run that sent it."""
    frame = pd.DataFrame(rows)
    fig = go.Figure()
    if frame.empty:
        return empty(fig.update_layout(title="Minutes from an event to Amplitude, by the hour it happened"),
                     "no events reached Amplitude in this period")
    for key in ("p50", "p95"):
        fig.add_bar(x=frame["event_hour"], y=frame[f"lag_event_{key}"].astype(float) / 60, name=f"{key} event to Amplitude",
                    marker_color=palette.LAG[key], hovertext=frame["events"].map("{:,} events".format))
    fig.update_layout(title="Minutes from an event to Amplitude, by the hour it happened", barmode="group",
                      yaxis_type="log", yaxis_title="minutes (log scale)", xaxis_title="event hour (UTC)")
    return fig


# --- reconciliation -----------------------------------------------------------------------

BAND_COLORS = {"band": "rgba(42, 157, 143, 0.18)", "inside": "#2a9d8f", "outside": "#e76f51", "expected": "#264653"}


def _band_grid(frame: pd.DataFrame, x: str, title: str, x_title: str, nothing: str) -> go.Figure:
    """One small panel per rule or family: the band (shaded), the baseline (dashed) and what was seen
    (green inside the band, red outside)."""
    if frame.empty:
        return empty(go.Figure().update_layout(title=title), nothing)
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
    nothing = ("no guardrail verdict: a backfill, the guardrail off, or no history for these hours yet"
               if not result.guardrail else "no week of history for these hours yet: the guardrail learns from this run")
    return _band_grid(frame, "hour", "Events to send per family and loaded hour, against the same hours of the last weeks",
                      "loaded hour (UTC)", nothing)


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
    return Table(changed, caption=f"Data map {diff.old} -> {diff.new}: events per day to Amplitude over {diff.days} day(s)")


def family_bands(rec) -> go.Figure:
    """Per family and day, events in Amplitude against the band from the days before (a family that
    vanished or flooded is red)."""
    frame = pd.DataFrame(rec.families, columns=["day", "family", "seen", "expected", "low", "high"]).rename(columns={"family": "key"})
    frame[["seen", "expected", "low", "high"]] = frame[["seen", "expected", "low", "high"]].astype(float)
    frame["outside"] = (frame["seen"] < frame["low"]) | (frame["seen"] > frame["high"])
    return _band_grid(frame, "day", "Events in Amplitude per family and day, against the band from the days before",
                      f"day ({rec.time_zone})", "no family had events in Amplitude in this range")


def anomalies_table(rec) -> Table:
    """Anomalies first, then every row that is not ok: what a person must look at, and what to do."""
    rows = [{"severity": a.severity, "kind": a.kind.replace("_", " "), "day": a.day, "event or family": a.name, "events": a.count,
             "what": a.message, "what to do": a.action} for a in rec.anomalies]
    named = {(a.day, a.name) for a in rec.anomalies} | {(a.day, "") for a in rec.anomalies}
    rows += [{"severity": r.status, "kind": "unexplained gap" if r.unexplained else "late rows", "day": str(r.day),
              "event or family": r.name, "events": r.unexplained or r.late_beyond_lookback or r.planner_gap, "what": "; ".join(r.notes),
              "what to do": "see the anomaly of that day above" if (str(r.day), "") in named or (str(r.day), r.name) in named
              else "look at the row's parts below (docs/RECONCILIATION.md)"}
             for r in rec.rows if r.status != "ok"]
    order = {"fail": 0, "warn": 1}
    frame = pd.DataFrame(rows, columns=["severity", "kind", "day", "event or family", "events", "what", "what to do"])
    frame = frame.sort_values("severity", key=lambda s: s.map(order), kind="stable")
    return Table(frame, caption="What needs a look", empty="Nothing needs a look: every difference between Looker and "
                 "Amplitude is explained, and no anomaly was found.")


def every_row(rec) -> Table:
    """Every (day, event) of the reconciliation, problems first, each with its explained parts."""
    frame = rec.frame()
    if not frame.empty:  # the causes as the gap chart's legend names them
        frame["explained by"] = frame["explained by"].str.replace(":", ": ", regex=False)
    columns = {"status": "status", "day": f"day ({rec.time_zone})", "event": "event", "looker": "in Looker",
               "amplitude": "in Amplitude", "gap": "gap", "unexplained": "unexplained", "explained by": "explained by",
               "notes": "notes"}
    frame = frame.rename(columns=columns) if not frame.empty else pd.DataFrame(columns=list(columns.values()))
    return Table(frame, caption="Every day and event: Looker against Amplitude, and why they differ",
                 empty="No events in this range.")


def daily_totals(rec) -> go.Figure:
    """Per day: events in Looker, events the sync had Amplitude accept, events in Amplitude."""
    frame = pd.DataFrame([{"day": r.day, "looker": r.looker, "accepted": r.accepted, "amplitude": r.amplitude} for r in rec.rows])
    fig = go.Figure().update_layout(title=f"Daily events, Looker vs Amplitude ({rec.time_zone})")
    if frame.empty:
        return empty(fig, "no events in this range")
    daily = frame.groupby("day").sum(numeric_only=True).reset_index()
    fig.add_bar(x=daily["day"], y=daily["looker"], name="Looker (event_logs)", marker_color=TOOL_COLORS["Looker"])
    fig.add_bar(x=daily["day"], y=daily["amplitude"], name="Amplitude", marker_color=palette.SENT["accepted"])
    fig.add_scatter(x=daily["day"], y=daily["accepted"], name="accepted by Amplitude (ledger)", mode="lines+markers",
                    line_color=palette.SENT["ledger"])
    fig.update_layout(barmode="group", yaxis_title="events", xaxis_title=f"day ({rec.time_zone})")
    return fig


def recent_hours(rec) -> go.Figure:
    """The last 48 hours, per UTC hour: events Amplitude accepted (ledger) vs events it holds."""
    frame = pd.DataFrame(rec.recent_hours)
    fig = go.Figure().update_layout(title="The last 48 hours, per hour (UTC)")
    if frame.empty:
        return empty(fig, "no events in the last 48 hours")
    fig.add_bar(x=frame["hour"], y=frame["accepted"], name="accepted by Amplitude (ledger)", marker_color=palette.SENT["ledger"])
    fig.add_scatter(x=frame["hour"], y=frame["amplitude"], name="in Amplitude (export)", mode="lines+markers",
                    line_color=palette.SENT["accepted"])
    fig.update_layout(yaxis_title="events", xaxis_title="hour (UTC)")
    return fig


def gap_by_reason(rec) -> go.Figure:
    """Per day, the Looker - Amplitude gap stacked by its named causes, each in its palette colour:
    greys by design, blues in flight, oranges rejected, reds wrong."""
    parts = collections.defaultdict(collections.Counter)
    for r in rec.rows:
        for cause, n in r.causes().items():
            parts[cause][r.day] += n
    days = sorted({r.day for r in rec.rows})
    fig = go.Figure().update_layout(title="The gap, explained: why Looker and Amplitude differ, per day")
    if not parts:
        return empty(fig, "no gap: Looker and Amplitude hold the same events" if days else "no events in this range")
    rank = {"by design": 0, "in flight": 1, "rejected": 2, "wrong": 3}
    for cause, per_day in sorted(parts.items(), key=lambda kv: (rank.get(palette.group(kv[0]), 4), -sum(map(abs, kv[1].values())))):
        fig.add_bar(x=days, y=[per_day.get(d, 0) for d in days], name=cause.replace(":", ": "), marker_color=palette.color(cause),
                    legendgroup=palette.group(cause), legendgrouptitle_text=palette.group(cause),
                    hovertemplate="%{x}: %{y:,} events<extra>" + cause + "</extra>")
    fig.update_layout(barmode="relative", yaxis_title="events (positive: only in Looker)", xaxis_title=f"day ({rec.time_zone})",
                      legend=dict(groupclick="toggleitem"))
    return fig


def gap_heatmap(rec, top: int = 30) -> go.Figure:
    """Per event and day, for the busiest events: why Looker and Amplitude differ, by the group of
    the cause that holds most of the gap (grey by design, blue in flight, orange rejected, red wrong);
    the hover gives the gap and its parts."""
    fig = go.Figure().update_layout(title="Why Looker and Amplitude differ, by event and day")
    if not rec.rows:
        return empty(fig, "no events in this range")
    categories = list(palette.GROUP_COLORS)  # agree, by design, in flight, rejected, wrong
    cells = {}
    for r in rec.rows:
        causes = r.causes()
        if r.status != "ok":
            kind = "wrong"
        elif not causes:
            kind = "agree"
        else:
            weight = collections.Counter()
            for cause, n in causes.items():
                weight[palette.group(cause)] += abs(n)
            kind = weight.most_common(1)[0][0]
        parts = ", ".join(f"{c.replace(':', ': ')} {n:+,}" for c, n in causes.items()) or "none"
        cells[(r.name, str(r.day))] = (categories.index(kind), f"{kind}: Looker {r.looker:,}, Amplitude {r.amplitude:,}; {parts}")
    volume = collections.Counter()
    for r in rec.rows:
        volume[r.name] += r.looker
    events = [name for name, _ in volume.most_common(top)][::-1]
    days = sorted({d for _, d in cells})
    z = [[cells.get((e, d), (None, ""))[0] for d in days] for e in events]
    text = [[cells.get((e, d), (None, "no events"))[1] for d in days] for e in events]
    n = len(categories)
    scale = [x for i, c in enumerate(palette.GROUP_COLORS.values()) for x in ([i / n, c], [(i + 1) / n, c])]
    fig.add_heatmap(z=z, x=days, y=events, text=text, zmin=-0.5, zmax=n - 0.5, colorscale=scale, xgap=1, ygap=1,
                    hovertemplate="%{y} %{x}<br>%{text}<extra></extra>",
                    colorbar=dict(title="why", tickvals=list(range(n)), ticktext=categories))
    fig.update_layout(height=max(400, 20 * len(events) + 150), xaxis_title=f"day ({rec.time_zone})", yaxis_title="event")
    return fig


def tool_matrix(rec, data_map) -> Table:
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
                     "why Looker only": ", ".join(k for k, _ in x["why Looker only"].most_common())})
    return Table(pd.DataFrame(rows, columns=["family", "answered in", "events in both", "events in Looker only",
                                             "events in Amplitude only", "why Looker only"]),
                 caption="Which tool holds which data, by event family", empty="No events in this range.")




# --- onboarding -----------------------------------------------------------------------------



def routes_table(routes):
    """`ampkit where`'s answers as a table: the question, the tool, and the fact that decided."""
    how = {"source": "where the data comes from", "time": "when", "events": "which events (data map)",
           "question": "kind of question", "none": "-"}
    frame = pd.DataFrame([{"question": r.question, "answer": r.answer, "decided by": how[r.decided_by],
                           "because": r.facts[0]} for r in routes], columns=["question", "answer", "decided by", "because"])
    return Table(frame, empty="No question was asked.")


def kept_out_table(rules):
    """The data map's exclusions with the rows each kept out (`ampkit.routing.kept_out`)."""
    from ampkit.routing import reason_label
    frame = pd.DataFrame([{"rule": r.rule, "why": reason_label(r.reason), "note": r.note, "what it names": r.names,
                           "rows kept out": r.rows, "share of all rows": f"{r.share:.1%}",
                           "busiest events kept out": ", ".join(r.top)} for r in rules],
                         columns=["rule", "why", "note", "what it names", "rows kept out", "share of all rows",
                                  "busiest events kept out"])
    return Table(frame, empty="The data map keeps nothing out of Amplitude.")


def funnel_chart(f) -> go.Figure:
    """People at each step of a funnel (`ampkit.product.Funnel`), with conversion from step 1 and from the previous step."""
    fig = go.Figure()
    if not f.people or not f.people[0]:
        return empty(fig.update_layout(title="Sign-up funnel"), f"nobody started the funnel between {f.start} and {f.end}")
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
        return empty(fig.update_layout(title="Weekly retention"), "no active people in this period")
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
        return empty(fig.update_layout(title="Where each event family lives"), "no events in this period")
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
                      xaxis_title="rows", yaxis_title="event family", height=max(380, 30 * len(names) + 160), legend_title="where")
    return fig


def family_table(families):
    """Per family: where it lives, and how many of its event types are in Amplitude or Looker only."""
    frame = pd.DataFrame([{"family": f.name, "lives in": f.lives_in, "event types in Amplitude": f.types_sent,
                           "event types in Looker only": f.types_kept_out, "rows in Amplitude": f.rows_sent,
                           "rows in Looker only": sum(f.rows_kept_out.values()),
                           "kept out by": ", ".join(sorted(f.rows_kept_out))} for f in families],
                         columns=["family", "lives in", "event types in Amplitude", "event types in Looker only",
                                  "rows in Amplitude", "rows in Looker only", "kept out by"])
    return Table(frame, empty="No events in this period.")


def reconciliation_summary(rec):
    """One reconciliation in a few lines: status, the two counts, and each named cause of the gap."""
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
    return Table(pd.DataFrame(rows, columns=["", "events", "meaning"]))
