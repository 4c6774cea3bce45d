"""Synthetic Sourcegraph Cloud traffic for event_logs, built with numpy and Arrow (no per-row Python).

The shape follows `resources/event_catalogue.csv` and the notes on sourcegraph.com's real
`event_logs`: heavy-tailed volumes per event, mostly anonymous visitors with a minority of
signed-in users, backend rows with `anonymous_user_id = 'backend'`, code-host rows without
device or insert ids, the sign-up funnel as real sequences, returning users, a diurnal peak in
the US/EU overlap and quieter weekends, 1-second timestamps with bursts, and private `argument`
next to shareable `public_argument`. The same seed always gives the same rows.

Late arrivals are modelled physically: late rows wait in `seed_late_arrivals` and `release()`
moves them into `event_logs` once the clock passes their arrival time, the way a delayed
Pub/Sub delivery lands in BigQuery after its neighbours were already loaded.
"""
from __future__ import annotations

import csv
import dataclasses
import datetime as dt
import logging
from importlib import resources
from typing import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

logger = logging.getLogger(__name__)

DAY_SECONDS = 86_400
TRAFFIC_WEIGHT = {"high": 400.0, "medium": 30.0, "low": 2.0, "very_low": 0.08}
BLOCKLISTED_IDS = ("undefined", "null", "none", "anonymous", "0", "-1", "unknown")
PLACEHOLDER_VALUES = {"<name>": ["python", "golang", "android", "kubernetes", "stanford", "cncf"],
                      "<spec>": ["python", "kubernetes", "temporal", "o3de", "stackstorm"]}
# Sign-up funnel (SOURCEGRAPH_EVENTS.md §4): step, source, share of the previous step that continues.
FUNNEL = [("ViewSignUp", "WEB", 1.0), ("SignupInitiated", "WEB", 0.55), ("SignUpSucceeded", "BACKEND", 0.8),
          ("ViewPostSignUp", "WEB", 0.9), ("ConnectUserCodeHostClicked", "WEB", 0.6),
          ("PostSignUp_Repos_Saved", "WEB", 0.7), ("SearchSubmitted", "WEB", 0.85)]
FEATURE_FLAGS = ['{}', '{"w0-signup-optimisation":true}', '{"w1-signup-optimisation":false}',
                 '{"search-notebook-onboarding":true,"test-flag":false}', '{"signup-optimization":true}',
                 '{"open-beta-enabled":true,"signup-optimization":false}']
REFERRERS = ["", "https://www.google.com/", "https://github.com/", "sourcegraph.com", "https://news.ycombinator.com/", "VSCE"]
SOURCE_URLS = ["https://sourcegraph.com/redacted", "https://about.sourcegraph.com/",
               "https://sourcegraph.com/redacted?utm_source=github&utm_campaign=redacted",
               "https://about.sourcegraph.com/blog/", ""]


@dataclasses.dataclass(frozen=True)
class SeedSpec:
    """What to generate: days from `start`, about `events_per_day` a day, deterministic by `seed`."""

    start: dt.date
    days: int = 7
    events_per_day: int = 50_000
    seed: int = 42
    dirty_share: float = 0.005
    late_share: float = 0.01
    first_id: int = 1
    until: dt.datetime | None = None   # no event after this time (the clock): history, not the future
    # Median seconds between an event and its commit to event_logs; 0 = every on-time row is there
    # at its timestamp. Set, each row arrives after a log-normal delay (a minute or two for the
    # slowest 5%, up to half an hour), the continuous load a sub-hourly sync sees.
    commit_delay_seconds: float = 0.0


@dataclasses.dataclass(frozen=True)
class Catalogue:
    """The event catalogue as arrays: name, source choices, weight, area."""

    names: np.ndarray
    sources: np.ndarray       # 'WEB', 'BACKEND', 'WEB|CODEHOSTINTEGRATION', ...
    areas: np.ndarray
    code_insights: np.ndarray
    weights: np.ndarray


def catalogue(rng: np.random.Generator) -> Catalogue:
    """Load the catalogue, expand `<name>` placeholders, and draw heavy-tailed weights."""
    text = resources.files("ampkit.resources").joinpath("event_catalogue.csv").read_text(encoding="utf-8")
    rows = []
    for row in csv.DictReader(text.splitlines()):
        for key, values in PLACEHOLDER_VALUES.items():
            if key in row["name"]:
                rows += [{**row, "name": row["name"].replace(key, v)} for v in values]
                break
        else:
            rows.append(row)
    base = np.array([TRAFFIC_WEIGHT[r["traffic_hint"]] for r in rows])
    # A lognormal spread inside each traffic class gives the long tail real catalogues show.
    weights = base * rng.lognormal(0.0, 0.8, len(rows))
    return Catalogue(
        names=np.array([r["name"] for r in rows], dtype=object),
        sources=np.array([r["source"] for r in rows], dtype=object),
        areas=np.array([r["area"] for r in rows], dtype=object),
        code_insights=np.array([r["is_code_insights"] == "true" for r in rows]),
        weights=weights / weights.sum(),
    )


def hex_ids(rng: np.random.Generator, n: int, uuid: bool = True) -> pa.Array:
    """n random UUID-shaped (or 32-hex) strings, formatted without a Python loop."""
    raw = rng.integers(0, 256, size=(n, 16), dtype=np.uint8)
    digits = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)
    chars = np.empty((n, 32), dtype=np.uint8)
    chars[:, 0::2] = digits[raw >> 4]
    chars[:, 1::2] = digits[raw & 15]
    if uuid:
        dash = np.full((n, 1), ord("-"), dtype=np.uint8)
        chars = np.hstack([chars[:, :8], dash, chars[:, 8:12], dash, chars[:, 12:16], dash,
                           chars[:, 16:20], dash, chars[:, 20:]])
    width = chars.shape[1]
    offsets = np.arange(0, (n + 1) * width, width, dtype=np.int32)
    return pa.StringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(np.ascontiguousarray(chars)))


def _pick(pool: list[str], index: np.ndarray) -> pa.Array:
    return pa.DictionaryArray.from_arrays(pa.array(index.astype(np.int32)), pa.array(pool, pa.string())).cast(pa.string())


PUBLIC_ARGUMENTS = ["", "{}", '{"source":"nav"}', '{"source":"home"}', '{"source":"repo"}',
                    '{"type":"builtin"}', '{"type":"github"}', '{"type":"gitlab"}', '{"serviceType":"github"}',
                    '{"kind":"GITHUB"}', '{"insightType":"searchInsights"}', '{"platform":"chrome-extension","version":"22.3.1"}',
                    '{"durationMs":120}', '{"durationMs":850}', '{"empty":false}', '{"empty":true}',
                    '{"code_search":{"query_data":{"query":{"field_type":{"count":1},"count":3},"empty":false}}}',
                    '{"cacheHit":true}', '{"score":9}', '{"type":"query","direction":"down"}']
# Which public_argument shapes each family sent (first match wins); page views mostly send none.
PUBLIC_ARGUMENT_RULES = [("SearchResultsQueried", [16]), ("CacheRetrieved", [17]), ("search.latencies", [12, 13]),
                         ("Search", [2, 3, 4]), ("Signup", [5, 6, 7]), ("ExternalAuth", [8]), ("ConnectUser", [9]),
                         ("Insight", [10]), ("PanelLoaded", [14, 15]), ("Survey", [18]), ("Notebook", [19]),
                         ("hover", [11, 0]), ("goToDefinition", [11, 0]), ("View", [0, 0, 0, 1])]


def _public_argument_choices(names: np.ndarray) -> np.ndarray:
    """Per catalogue entry, four indexes into PUBLIC_ARGUMENTS to draw from."""
    out = np.zeros((len(names), 4), dtype=np.int32)
    for i, name in enumerate(names):
        for needle, choices in PUBLIC_ARGUMENT_RULES:
            if needle in name:
                out[i] = np.resize(choices, 4)
                break
    return out


def _argument(n: int, rng: np.random.Generator) -> pa.Array:
    # Private values carry a PRIVATE- marker so tests can prove none of them ever leaves.
    pool = ["{}", '{"query":"PRIVATE-repo:acme/billing token"}', '{"repo":"PRIVATE-acme/secret-service"}',
            '{"email":"PRIVATE-jane@acme.example"}', '{"query":"PRIVATE-file:.env password"}']
    return _pick(pool, rng.choice(len(pool), size=n, p=[0.5, 0.2, 0.15, 0.05, 0.1]))


def generate(spec: SeedSpec) -> Iterator[tuple[pa.Table, pa.Table]]:
    """Yield (on-time rows, late rows) one day at a time, as Arrow tables in event_logs' columns."""
    rng = np.random.default_rng(spec.seed)
    cat = catalogue(rng)
    total = spec.days * spec.events_per_day
    n_visitors = max(200, total // 25)
    # Visitors: when they first came (some before the range: returning traffic from day one),
    # how long they stay, how active they are, and whether they are signed in.
    first_day = rng.integers(-30, spec.days, n_visitors)
    signed_in = rng.random(n_visitors) < 0.12
    lifetime = np.where(signed_in, rng.geometric(1 / 40, n_visitors), rng.geometric(1 / 4, n_visitors))
    activity = rng.lognormal(0.0, 1.1, n_visitors)
    visitor_uid = hex_ids(rng, n_visitors)
    user_ids = np.where(signed_in, rng.permutation(n_visitors) + 1000, 0).astype(np.int64)
    epoch_day = (spec.start - dt.date(1970, 1, 1)).days
    cohort_day = epoch_day + np.maximum(first_day, -30)
    cohort_monday = cohort_day - ((cohort_day + 3) % 7)  # 1970-01-01 was a Thursday
    diurnal = np.array([3, 2, 2, 2, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 14, 15, 15, 14, 12, 9, 7, 5, 4], float)
    diurnal /= diurnal.sum()
    next_id = spec.first_id
    public_choices = _public_argument_choices(cat.names)
    source_names, source_main, source_other = _source_choices(cat.sources)
    web, static_web = source_names.index("WEB"), source_names.index("STATICWEB")

    for day in range(spec.days):
        date = spec.start + dt.timedelta(days=day)
        weekday_factor = 0.55 if date.weekday() >= 5 else 1.0
        n = max(1, int(spec.events_per_day * weekday_factor * rng.normal(1.0, 0.04)))
        active = (first_day <= day) & (day < first_day + lifetime) & (rng.random(n_visitors) < np.where(signed_in, 0.6, 0.35))
        active[first_day == day] = True
        pool = np.flatnonzero(active)
        p = activity[pool] / activity[pool].sum()
        visitor = pool[rng.choice(len(pool), size=n, p=p)]
        event = rng.choice(len(cat.names), size=n, p=cat.weights)
        seconds = rng.choice(24, size=n, p=diurnal) * 3600 + rng.integers(0, 3600, n)
        # The sign-up funnel: some of today's new anonymous visitors walk it, step by step.
        newcomers = np.flatnonzero((first_day == day) & ~signed_in)
        starters = newcomers[rng.random(len(newcomers)) < 0.08]
        f_visitor, f_event, f_seconds, signup_at = _funnel(rng, cat, starters)
        visitor = np.concatenate([visitor, f_visitor])
        event = np.concatenate([event, f_event])
        seconds = np.concatenate([seconds, f_seconds])
        order = np.lexsort((seconds, visitor))
        visitor, event, seconds = visitor[order], event[order], seconds[order]
        # Bursts: the web client flushes a 1-second buffer, so neighbours often share a second.
        burst = np.r_[False, (visitor[1:] == visitor[:-1]) & (rng.random(len(visitor) - 1) < 0.25)]
        seconds = np.where(burst, np.r_[seconds[:1], seconds[:-1]], seconds)
        n = len(visitor)
        ts_us = (epoch_day + day) * DAY_SECONDS * 1_000_000 + seconds.astype(np.int64) * 1_000_000

        # Who the row belongs to: funnel finishers become users from their sign-up on, and
        # stay users (with a signed-in user's retention) on later days.
        signup_of = np.full(n_visitors, -1)
        signup_of[starters] = signup_at
        at = signup_of[visitor]
        uid = np.where((at >= 0) & (seconds >= at), 500_000 + visitor, user_ids[visitor]).astype(np.int64)
        finished = starters[signup_at >= 0]
        user_ids[finished] = 500_000 + finished
        signed_in[finished] = True
        lifetime[finished] = rng.geometric(1 / 40, len(finished))
        source_index = np.where(rng.random(n) < 0.7, source_main[event], source_other[event])
        # A little STATICWEB traffic (the marketing site) on web events.
        source_index = np.where((source_index == web) & (rng.random(n) < 0.02), static_web, source_index)
        source = np.array(source_names)[source_index]
        backend = source == "BACKEND"
        codehost = source == "CODEHOSTINTEGRATION"
        anon = pc.take(visitor_uid, pa.array(visitor))
        anon = pc.if_else(pa.array(backend), pa.scalar("backend"), anon)
        device = pc.if_else(pa.array(codehost | (backend & (rng.random(n) < 0.5))), pa.scalar(None, pa.string()),
                            pc.take(visitor_uid, pa.array(visitor)))
        insert_ids = pc.if_else(pa.array(codehost), pa.scalar(None, pa.string()), hex_ids(rng, n))
        ids = np.arange(next_id, next_id + n, dtype=np.int64)
        next_id += n
        table = pa.table({
            "id": ids,
            "name": _pick(list(cat.names), event),
            "url": pc.if_else(pa.array(backend), pa.scalar(""), _pick(SOURCE_URLS[:4], rng.integers(0, 4, n))),
            "user_id": uid,
            "anonymous_user_id": anon,
            "source": _pick(source_names, source_index),
            "argument": _argument(n, rng),
            "public_argument": _pick(PUBLIC_ARGUMENTS, public_choices[event, rng.integers(0, 4, n)]),
            "version": pa.array(np.full(n, f"{130000 + day}_{date.isoformat()}_5188fes0101", dtype=object), pa.string()),
            "timestamp": pa.array(ts_us, pa.timestamp("us", tz="UTC")),
            "feature_flags": _pick(FEATURE_FLAGS, rng.integers(0, len(FEATURE_FLAGS), n)),
            "cohort_id": pa.array((cohort_monday[visitor]).astype(np.int32), pa.date32()),
            "first_source_url": _pick(SOURCE_URLS, rng.integers(0, len(SOURCE_URLS), n)),
            "last_source_url": _pick(SOURCE_URLS, rng.integers(0, len(SOURCE_URLS), n)),
            "referrer": _pick(REFERRERS, rng.integers(0, len(REFERRERS), n)),
            "device_id": device,
            "insert_id": insert_ids,
        })
        if spec.until is not None:
            # Cut at the clock before spoiling rows, so only the dirty share is stamped in the future.
            until_us = int(spec.until.timestamp() * 1_000_000)
            table = table.filter(pa.array(ts_us <= until_us))
            n = table.num_rows
        table = _dirty(table, spec.dirty_share, rng)
        late = rng.random(n) < spec.late_share
        yield table.filter(pa.array(~late)), table.filter(pa.array(late))


def _source_choices(raw: np.ndarray) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Per catalogue entry: the index of its main and of its other source ('WEB|CODEHOSTINTEGRATION')."""
    names = sorted({part for value in raw for part in value.split("|")} | {"STATICWEB"})
    main = np.array([names.index(v.split("|")[0]) for v in raw])
    other = np.array([names.index(v.split("|")[-1]) for v in raw])
    return names, main, other


def _funnel(rng, cat: Catalogue, starters: np.ndarray):
    """Rows for visitors walking the sign-up funnel, in order, with drop-off at each step."""
    index = {name: i for i, name in enumerate(cat.names)}
    steps = [index[name] for name, _, _ in FUNNEL]
    start = rng.integers(6 * 3600, 22 * 3600, len(starters))
    alive = np.ones(len(starters), bool)
    visitors, events, seconds = [], [], []
    signup_at = np.full(len(starters), -1)
    clock = start.copy()
    for step, (name, _, keep) in zip(steps, FUNNEL):
        alive &= rng.random(len(starters)) < keep
        clock = clock + rng.integers(5, 240, len(starters))
        visitors.append(starters[alive]); events.append(np.full(alive.sum(), step)); seconds.append(np.minimum(clock[alive], DAY_SECONDS - 1))
        if name == "SignUpSucceeded":
            signup_at = np.where(alive, np.minimum(clock, DAY_SECONDS - 1), -1)
    return (np.concatenate(visitors) if visitors else np.array([], int),
            np.concatenate(events) if events else np.array([], int),
            np.concatenate(seconds) if seconds else np.array([], int), signup_at)


def _dirty(table: pa.Table, share: float, rng: np.random.Generator) -> pa.Table:
    """Spoil a share of rows the ways real pipelines do: bad ids, broken JSON, future times, duplicate insert ids."""
    n = table.num_rows
    if share <= 0 or n == 0:
        return table
    kind = np.where(rng.random(n) < share, rng.integers(1, 7, n), 0)
    cols = {name: table.column(name).combine_chunks() for name in table.column_names}
    no_id = pa.array(kind == 1)
    cols["user_id"] = pc.if_else(no_id, pa.scalar(0, pa.int64()), cols["user_id"])
    cols["device_id"] = pc.if_else(no_id, pa.scalar(None, pa.string()), cols["device_id"])
    cols["anonymous_user_id"] = pc.if_else(no_id, pa.scalar(""), cols["anonymous_user_id"])
    short = pa.array(kind == 2)
    cols["device_id"] = pc.if_else(short, pa.scalar("ab12"), cols["device_id"])
    cols["user_id"] = pc.if_else(short, pa.scalar(0, pa.int64()), cols["user_id"])
    blocked = pa.array(kind == 3)
    cols["device_id"] = pc.if_else(blocked, _pick(list(BLOCKLISTED_IDS), rng.integers(0, len(BLOCKLISTED_IDS), n)), cols["device_id"])
    cols["user_id"] = pc.if_else(blocked, pa.scalar(0, pa.int64()), cols["user_id"])
    cols["public_argument"] = pc.if_else(pa.array(kind == 4), pa.scalar('{"broken": '), cols["public_argument"])
    future = pa.array(kind == 5)
    shift = pa.array(rng.integers(2, 72, n) * 3600 * 1_000_000, pa.duration("us"))
    cols["timestamp"] = pc.if_else(future, pc.add(cols["timestamp"], shift), cols["timestamp"])
    dup = np.flatnonzero(kind == 6)
    if len(dup):
        ids = cols["insert_id"].to_numpy(zero_copy_only=False).copy()
        donors = np.clip(dup - 1, 0, n - 1)
        has_donor = np.array([v is not None for v in ids[donors]], bool)
        ids[dup] = np.where(has_donor, ids[donors], ids[dup])
        cols["insert_id"] = pa.array(ids, pa.string())
    return pa.table(cols)


def late_arrivals(late: pa.Table, rng: np.random.Generator) -> pa.Table:
    """Late rows with the time they reach the warehouse: 2 to 30 hours after they happened."""
    lag = pa.array(rng.integers(2, 31, late.num_rows) * 3600 * 1_000_000, pa.duration("us"))
    return late.append_column("arrive_at", pc.add(late.column("timestamp"), lag))


# The spread of commit delays (log-normal sigma) and their cap.
COMMIT_DELAY_SIGMA = 1.2
COMMIT_DELAY_CAP_SECONDS = 1800


def committed_late(rows: pa.Table, median_seconds: float, rng: np.random.Generator) -> pa.Table:
    """`rows` with the time each is committed to event_logs: a log-normal delay after it happened
    with the given median, capped at COMMIT_DELAY_CAP_SECONDS."""
    delay = np.minimum(rng.lognormal(np.log(median_seconds), COMMIT_DELAY_SIGMA, rows.num_rows), COMMIT_DELAY_CAP_SECONDS)
    lag = pa.array((delay * 1_000_000).astype(np.int64), pa.duration("us"))
    return rows.append_column("arrive_at", pc.add(rows.column("timestamp"), lag))


@dataclasses.dataclass(frozen=True)
class SeedResult:
    """What `fill` wrote: rows in event_logs, rows waiting as late arrivals, seconds taken."""

    rows: int
    late_rows: int
    seconds: float


def fill(warehouse, spec: SeedSpec, replace: bool = False) -> SeedResult:
    """Write synthetic rows into `warehouse` (I/O): event_logs, and late rows into seed_late_arrivals."""
    import time
    started = time.monotonic()
    warehouse.ensure_tables()
    warehouse.run("schema_seed")
    if replace:
        warehouse.run("seed_clear")
    first_id = int(warehouse.run("seed_next_id").column("next_id")[0].as_py())
    spec = dataclasses.replace(spec, first_id=first_id)
    rng = np.random.default_rng(spec.seed + 1)
    rows = late_rows = 0
    buffered: list[pa.Table] = []
    for ontime, late in generate(spec):
        if spec.commit_delay_seconds > 0:
            # Every row waits for its commit, like the late ones: release() lands it at its time.
            warehouse.append("seed_late_arrivals", committed_late(ontime, spec.commit_delay_seconds, rng))
            late_rows += ontime.num_rows
            ontime = ontime.slice(0, 0)
        buffered.append(ontime)
        rows += ontime.num_rows
        if late.num_rows:
            warehouse.append("seed_late_arrivals", late_arrivals(late, rng))
            late_rows += late.num_rows
        # Few large appends are much faster than many small ones on both backends.
        if sum(t.num_rows for t in buffered) >= 2_000_000:
            warehouse.append("event_logs", pa.concat_tables(buffered))
            buffered = []
    if buffered:
        warehouse.append("event_logs", pa.concat_tables(buffered))
    logger.info("seeded rows=%d late=%d seconds=%.1f", rows, late_rows, time.monotonic() - started)
    return SeedResult(rows, late_rows, time.monotonic() - started)


def release(warehouse, now: dt.datetime) -> None:
    """Move late rows whose arrival time has passed into event_logs (I/O; synthetic data only)."""
    if warehouse.columns("seed_late_arrivals") is not None:
        warehouse.run("seed_release", {"now": now})
