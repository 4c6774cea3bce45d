"""Product analytics from the warehouse: the Cloud sign-up funnel, weekly retention and event volumes.

The numbers are computed in the engine (`sql/onboarding_funnel.sql`, `sql/onboarding_retention.sql`,
`sql/datamap_volumes.sql`); Python only shapes the small answers and writes, from the same step
and event lists, how to build the same chart in Amplitude. One identity rule serves both
queries (see the SQL files): a person is their user_id once known, and before that their visitor
id, which belongs to the user it is later seen signed in with.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import logging
from typing import Any, Iterable
from zoneinfo import ZoneInfo

from ampkit import catalogue, datamap as datamaps, warehouse as warehouses
from ampkit.config import Config
from ampkit.errors import ConfigError

logger = logging.getLogger(__name__)

# The Cloud sign-up funnel, 2021-10 to 2022-03 names (SOURCEGRAPH_EVENTS.md §4): sign-up page,
# sign-up started, backend success, welcome flow, code host, repositories, first search.
SIGNUP_FUNNEL = ("ViewSignUp", "SignupInitiated", "SignUpSucceeded", "ViewPostSignUp", "ConnectUserCodeHostClicked",
                 "PostSignUp_Repos_Saved", "SearchSubmitted")
# "Active (Cloud)": the events BizOps flagged Active in Amplitude Govern (handbook
# user_definitions.md, 2022-05-31). Batch changes and insights were still to be decided.
ACTIVE_EVENTS = ("SearchSubmitted", "SearchResultsFetched", "CodeMonitorEmailLinkClicked", "SavedSearchNotificationSent",
                 "SavedSearchEmailClicked", "ViewBlob", "ViewRepository", "ViewTree", "ViewSearchNotebookPage", "hover")
# Around the funnel's steps: the sign-up CTAs before step 1, the other ways a sign-up starts
# (step 2) and the other outcomes of step 3, which the funnel's variants and its drop-off analysis use.
SIGNUP_FUNNEL_ALSO = ("SearchResultResultsCTAShown", "SignUpPLGSearchCTA_1_Search", "SignUpPLGMonitor_0_Tour",
                      "SearchNotebooksSignUpToCreateNotebooksClick", "ExternalAuthSignupClicked", "InitiateSignUp",
                      "SignUpFailed", "ExternalAuthSignupSucceeded", "ExternalAuthSignupFailed")
# The 2021 activation-qualifying events (handbook user_definitions.md, 2021-07-09).
ACTIVATION_EVENTS = ("SearchSubmitted", "findReferences", "goToDefinition")
# onboarding_funnel.sql unrolls its chain of steps this many times.
MAX_FUNNEL_STEPS = 10
DAY_SECONDS = 86_400


def depended_on(topics: Iterable = ()) -> dict[str, str]:
    """Event name -> the analysis that needs it in Amplitude: the sign-up funnel, the Active (Cloud)
    retention definition, activation, and the routing table's examples (`routing.Topic.events`) (pure)."""
    needs: dict[str, str] = {}
    for i, name in enumerate(SIGNUP_FUNNEL, start=1):
        needs.setdefault(name, f"the sign-up funnel (step {i})")
    for name in SIGNUP_FUNNEL_ALSO:
        needs.setdefault(name, "the sign-up funnel (its variants and drop-offs)")
    for name in ACTIVE_EVENTS:
        needs.setdefault(name, "the Active (Cloud) retention definition")
    for name in ACTIVATION_EVENTS:
        needs.setdefault(name, "the activation definition")
    for topic in topics:
        for name in topic.events:
            needs.setdefault(name, f"the routing table's example for '{topic.topic}'")
    return needs


def local_range(zone: ZoneInfo, start: dt.date, end: dt.date) -> tuple[dt.datetime, dt.datetime]:
    """Local days [start, end] as a half-open UTC range [start 00:00, day after end 00:00) (pure)."""
    first = dt.datetime.combine(start, dt.time(), zone).astimezone(dt.timezone.utc)
    last = dt.datetime.combine(end + dt.timedelta(days=1), dt.time(), zone).astimezone(dt.timezone.utc)
    return first, last


def _run(config: Config, warehouse, query: str, params: dict[str, Any], table: str) -> list[dict]:
    with warehouses.using(config, warehouse) as wh:
        wh.check_table(table)
        return wh.run(query, params).to_pylist()


# --- volumes ----------------------------------------------------------------------------------

def volumes(config: Config, start: dt.date, end: dt.date, *, warehouse=None) -> list[tuple[str, str | None, int]]:
    """Rows of `amplitude_events` per (name, source) over local days [start, end] (I/O; one small aggregate)."""
    since, until = local_range(config.zone, start, end)
    rows = _run(config, warehouse, "datamap_volumes", {"since": since, "until": until}, "amplitude_events")
    return [(r["name"], r["source"], int(r["row_count"])) for r in rows]


# --- the funnel -------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Funnel:
    """People reaching each step of an ordered funnel started in local days [start, end]."""

    steps: tuple[str, ...]
    people: tuple[int, ...]
    start: dt.date
    end: dt.date
    window_days: int
    time_zone: str

    @property
    def conversion(self) -> tuple[float, ...]:
        """Share of the people who took step 1 that reached each step."""
        first = self.people[0] if self.people else 0
        return tuple(n / first if first else 0.0 for n in self.people)

    @property
    def step_conversion(self) -> tuple[float, ...]:
        """Share of the people at the previous step that reached each step (1.0 for step 1)."""
        out = []
        for i, n in enumerate(self.people):
            before = self.people[i - 1] if i else n
            out.append(n / before if before else 0.0)
        return tuple(out)


def check_steps(steps: Iterable[str]) -> tuple[str, ...]:
    """The steps as a tuple, or ConfigError if they cannot make a funnel (pure)."""
    steps = tuple(steps)
    if not 2 <= len(steps) <= MAX_FUNNEL_STEPS:
        raise ConfigError(f"a funnel needs 2 to {MAX_FUNNEL_STEPS} steps, got {len(steps)}")
    if len(set(steps)) != len(steps):
        raise ConfigError(f"funnel steps must be distinct events, got {list(steps)}")
    return steps


def to_funnel(rows: Iterable[dict], steps: tuple[str, ...], start: dt.date, end: dt.date, window_days: int,
              time_zone: str) -> Funnel:
    """Shape the query's (step, people) rows into a Funnel; steps nobody reached count 0 (pure)."""
    reached = {int(r["step"]): int(r["people"]) for r in rows}
    return Funnel(steps, tuple(reached.get(i + 1, 0) for i in range(len(steps))), start, end, window_days, time_zone)


def funnel(config: Config, start: dt.date, end: dt.date, *, steps: Iterable[str] = SIGNUP_FUNNEL,
           window_days: int = 7, warehouse=None) -> Funnel:
    """The funnel of attempts started in local days [start, end] of the config's time zone (I/O: one query).

    Each later step must come at or after the previous one and within `window_days` of the
    attempt's first step; a person counts once, at the deepest step any attempt reached.
    """
    steps = check_steps(steps)
    if window_days < 1:
        raise ConfigError("the conversion window must be at least 1 day")
    start_ts, end_ts = local_range(config.zone, start, end)
    window = window_days * DAY_SECONDS
    params = {"steps": list(steps), "start_ts": start_ts, "end_ts": end_ts,
              "scan_end": end_ts + dt.timedelta(seconds=window), "window_seconds": window}
    rows = _run(config, warehouse, "onboarding_funnel", params, "event_logs")
    return to_funnel(rows, steps, start, end, window_days, config.time_zone)


def funnel_recipe(f: Funnel, data_map: datamaps.DataMap) -> str:
    """How to build the same funnel in Amplitude, in Markdown, from the same steps (pure)."""
    lines = ["**In Amplitude:** new chart, *Funnel Analysis*.",
             "",
             "- Events, in this order: " + " → ".join(f"`{s}`" for s in f.steps),
             f"- Measured by *conversion*, counted by *unique users*, steps in *this order*, "
             f"conversion window **{f.window_days} days**",
             f"- Date range {f.start:%Y-%m-%d} to {f.end:%Y-%m-%d}, in the project's time zone ({f.time_zone})"]
    if f.people and f.people[0]:
        lines.append(f"- You should see about {f.people[0]:,} people at the first step and {f.people[-1]:,} "
                     f"({f.conversion[-1]:.1%}) at the last. Amplitude, like this page, merges a visitor into the user "
                     "they sign up as; small differences come from devices it links differently.")
    missing = _kept_out(f.steps, data_map)
    for name, rule in missing.items():
        lines.append(f"- ⚠ `{name}` is kept out of Amplitude by data-map rule `{rule}`: build this funnel in Looker instead.")
    return "\n".join(lines)


def _kept_out(names: Iterable[str], data_map: datamaps.DataMap) -> dict[str, str]:
    """Names the data map keeps out of Amplitude from every source they come from, with the deciding rule."""
    sources = {e.name: e.sources for e in catalogue.events()}
    out = {}
    for name in names:
        decisions = [data_map.decide(name, s) for s in sources.get(name, ("WEB",))]
        if not any(d.sends for d in decisions):
            out[name] = decisions[0].rule
    return out


# --- retention --------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Retention:
    """Weekly cohorts (Monday weeks, local): people active in week N of each cohort."""

    counts: dict[tuple[dt.date, int], int]
    start: dt.date          # a Monday
    end: dt.date            # the last local day read
    time_zone: str
    events: tuple[str, ...]
    left_out: dict[str, str] = dataclasses.field(default_factory=dict)  # event -> data-map rule

    @property
    def cohorts(self) -> tuple[dt.date, ...]:
        return tuple(sorted({c for c, n in self.counts if n == 0}))

    @property
    def weeks(self) -> int:
        """How many week columns the matrix has: week 0 of the first cohort to the week of `end`."""
        first = self.cohorts[0] if self.cohorts else self.start
        return (self.end - first).days // 7 + 1

    def size(self, cohort: dt.date) -> int:
        return self.counts.get((cohort, 0), 0)

    def share(self, cohort: dt.date, week: int) -> float | None:
        """Share of the cohort active in week `week`; None for a week that has not begun by `end`."""
        if cohort + dt.timedelta(days=7 * week) > self.end:
            return None
        size = self.size(cohort)
        return self.counts.get((cohort, week), 0) / size if size else None

    def matrix(self) -> list[list[float | None]]:
        """Rows are cohorts (oldest first), columns week 0, 1, ...: shares, None where not yet observed."""
        return [[self.share(c, n) for n in range(self.weeks)] for c in self.cohorts]


def retention(config: Config, start: dt.date, end: dt.date, *, events: Iterable[str] = ACTIVE_EVENTS,
              data_map: datamaps.DataMap | None = None, warehouse=None) -> Retention:
    """Weekly retention over local days [Monday of start's week, end] (I/O: one query).

    With `data_map`, events it keeps out of Amplitude are left out (and listed), so the numbers
    are the ones Amplitude can reproduce.
    """
    events = tuple(events)
    left_out = _kept_out(events, data_map) if data_map is not None else {}
    active = tuple(e for e in events if e not in left_out)
    if not active:
        raise ConfigError("no active event is left for retention: the data map keeps them all out of Amplitude")
    monday = start - dt.timedelta(days=start.weekday())
    start_ts, end_ts = local_range(config.zone, monday, end)
    params = {"active_events": list(active), "start_ts": start_ts, "scan_end": end_ts, "tz": config.time_zone}
    rows = _run(config, warehouse, "onboarding_retention", params, "event_logs")
    counts = {(r["cohort_week"], int(r["week_number"])): int(r["people"]) for r in rows}
    return Retention(counts, monday, end, config.time_zone, active, left_out)


def retention_recipe(r: Retention) -> str:
    """How to build the same retention chart in Amplitude, in Markdown, from the same events (pure)."""
    names = ", ".join(f"`{e}`" for e in r.events)
    lines = ["**In Amplitude:** new chart, *Retention Analysis*.",
             "",
             f"- Starting event and return event: *any of* {names} (Sourcegraph kept these as the custom event "
             "*Active (Cloud)* in Govern)",
             "- *N-day retention*, by **week**; set the time setting to calendar dates rather than rolling 24-hour "
             "windows, so that weeks are calendar weeks as here (this page starts weeks on Monday)",
             f"- Date range {r.start:%Y-%m-%d} to {r.end:%Y-%m-%d}, in the project's time zone ({r.time_zone})"]
    if r.cohorts:
        first = r.cohorts[0]
        one = r.share(first, 1)
        lines.append(f"- You should see the {first:%Y-%m-%d} cohort at about {r.size(first):,} people"
                     + (f", {one:.0%} of them back in week 1." if one is not None else "."))
    if r.left_out:
        lines.append("- Left out here and there, because the data map keeps them out of Amplitude: "
                     + ", ".join(f"`{e}` (rule `{rule}`)" for e, rule in r.left_out.items()))
    return "\n".join(lines)
