"""The reports' colours, fixed: a hue per kind of cause, so what is by design never looks like what is wrong.

| group      | meaning                                             | hues    |
|------------|-----------------------------------------------------|---------|
| sent       | in Amplitude, accepted                              | teal    |
| by design  | kept out by a data-map rule, before the start date  | greys   |
| in flight  | not staged, not synced, in Amplitude's export lag, held for a person | blues |
| rejected   | refused with a reason (the dead-letter table)       | oranges |
| wrong      | only in Amplitude, twice, a planner gap, loaded too late, unexplained | reds, black |

Every known rule and reason has its own colour (docs/REPORTS.md lists them; a test keeps the two
equal); a rule or reason it does not know takes a colour of its group by a stable hash, so it is
the same colour in every report.
"""
from __future__ import annotations

import zlib

SENT = {"accepted": "#2a9d8f", "ledger": "#264653"}
BY_DESIGN = {"before_start": "#dee2e6", "backend": "#6c757d", "search_latencies": "#adb5bd",
             "code_insights": "#8d99ae", "codeintel_deny_list": "#495057", "very_low_traffic": "#ced4da"}
IN_FLIGHT = {"not_staged": "#a8dadc", "not_synced": "#457b9d", "export_lag": "#1d3557", "held": "#90e0ef"}
REJECTED = {"no_id": "#f4a261", "invalid_id": "#e9c46a", "missing_event_type": "#dda15e", "event_type_too_long": "#bc6c25",
            "invalid_time": "#fb8500", "future_time": "#ffb703", "malformed_public_argument": "#cb997e",
            "properties_too_deep": "#b08968", "properties_too_large": "#7f5539", "property_too_long": "#a47148",
            "duplicate_insert_id": "#ddb892"}
WRONG = {"amplitude_only": "#d62828", "duplicated": "#9d0208", "planner_gap": "#e56b6f",
         "late_beyond_lookback": "#6a040f", "unexplained": "#000000"}
# What a rule or reason not named above takes, by a stable hash of its name.
SPARE = {"by design": ["#5c677d", "#979dac", "#33415c", "#7d8597", "#b0b7c3"],
         "rejected": ["#e07a5f", "#f2cc8f", "#d4a373", "#c68b59", "#ffd6a5"]}
GROUPS = {"sent": SENT, "by design": BY_DESIGN, "in flight": IN_FLIGHT, "rejected": REJECTED, "wrong": WRONG}
# How a run ended (the runs overview), and the lag lines.
STATUS = {"ok": "#2a9d8f", "dry_run": "#8ecae6", "skipped_locked": "#adb5bd", "held": "#f4a261", "running": "#457b9d",
          "failed": "#d62828", "timeout": "#9d0208"}
LAG = {"p50": "#2a9d8f", "p95": "#e76f51", "newest": "#264653"}
# One colour per group, for a picture of groups (the heatmap of a reconciliation).
GROUP_COLORS = {"agree": "#e9f5f2", "by design": "#adb5bd", "in flight": "#457b9d", "rejected": "#f4a261", "wrong": "#d62828"}


def group(cause: str) -> str:
    """The group of a reconciliation cause (`Row.causes()`'s keys, e.g. `filtered:backend`) or a
    sync outcome (`accepted`, `filtered`, `held`, `rejected`)."""
    kind, _, _ = cause.partition(":")
    if kind in ("filtered", "before_start"):
        return "by design"
    if kind == "rejected":
        return "rejected"
    if kind in SENT:
        return "sent"
    if kind in IN_FLIGHT:
        return "in flight"
    return "wrong"


def color(cause: str) -> str:
    """The colour of a cause or outcome: `filtered:backend`, `rejected:no_id`, `export_lag`, `accepted`..."""
    kind, _, reason = cause.partition(":")
    name = kind if kind in ("accepted", "held") else reason or kind
    known = GROUPS[group(cause)]
    if name in known:
        return known[name]
    spare = SPARE.get(group(cause)) or list(known.values())
    return spare[zlib.crc32(name.encode()) % len(spare)]
