"""The funnel and retention SQL against small hand-built event_logs in DuckDB, with answers worked out by hand."""
from __future__ import annotations

import datetime as dt
import re

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from ampkit import config as configuration, datamap, product, seed, sql as sqlfiles, warehouse as warehouses
from ampkit.errors import ConfigError
from ampkit.warehouse import EVENT_COLUMNS

UTC = dt.timezone.utc
ARROW = {"INT64": pa.int64(), "STRING": pa.string(), "TIMESTAMP": pa.timestamp("us", tz="UTC"), "DATE": pa.date32()}


def t(*args) -> dt.datetime:
    return dt.datetime(*args, tzinfo=UTC)


def rows(*events) -> pa.Table:
    """event_logs rows from (name, time, visitor, user_id[, device_id]) tuples; 'backend' is a backend row."""
    data = []
    for i, e in enumerate(events, start=1):
        name, ts, visitor, user = e[:4]
        device = e[4] if len(e) > 4 else (None if visitor in ("backend", "") else visitor)
        data.append({"id": i, "name": name, "timestamp": ts, "anonymous_user_id": visitor, "user_id": user,
                     "device_id": device, "source": "BACKEND" if visitor == "backend" else "WEB"})
    return pa.table({c: pa.array([d.get(c) for d in data], ARROW[k]) for c, k in EVENT_COLUMNS.items()})


@pytest.fixture
def wh():
    with warehouses.open("duckdb://:memory:") as w:
        w.ensure_tables()
        yield w


def cfg(**values):
    return configuration.load(values, env={})


# --- the funnel -------------------------------------------------------------------------------

STEPS = ("StepA", "StepB", "StepC")
D = dt.timedelta(days=1)

FUNNEL_ROWS = [
    # 1: in order within the window: all three steps
    ("StepA", t(2024, 1, 2, 10), "v1", 0), ("StepB", t(2024, 1, 2, 10, 5), "v1", 0), ("StepC", t(2024, 1, 3, 9), "v1", 0),
    # 2: StepB before StepA only: stops at step 1
    ("StepB", t(2024, 1, 2, 9), "v2", 0), ("StepA", t(2024, 1, 2, 10), "v2", 0),
    # 3: StepC one second after the 7-day window: stops at step 2
    ("StepA", t(2024, 1, 3), "v3", 0), ("StepB", t(2024, 1, 4), "v3", 0), ("StepC", t(2024, 1, 10, 0, 0, 1), "v3", 0),
    # 4: a first attempt goes nowhere, the second (10 days later) finishes: counts once, at step 3
    ("StepA", t(2024, 1, 1, 12), "v4", 0), ("StepA", t(2024, 1, 11, 12), "v4", 0),
    ("StepB", t(2024, 1, 12), "v4", 0), ("StepC", t(2024, 1, 12, 13), "v4", 0),
    # 5: anonymous StepA, backend StepB under the new user_id (no visitor id), StepC signed in on the same
    #    browser: one person only because the visitor id is merged into user 77
    ("StepA", t(2024, 1, 5, 8), "v5", 0), ("StepB", t(2024, 1, 5, 8, 2), "backend", 77, None),
    ("StepC", t(2024, 1, 6), "v5", 77),
    # 6: never took the first step
    ("StepB", t(2024, 1, 3), "v6", 0), ("StepC", t(2024, 1, 3, 1), "v6", 0),
    # 7: took the first step before the range only
    ("StepA", t(2023, 12, 31, 23), "v7", 0), ("StepB", t(2024, 1, 1, 1), "v7", 0), ("StepC", t(2024, 1, 1, 2), "v7", 0),
    # 8: started on the last day, finished after the range but inside the window
    ("StepA", t(2024, 1, 14, 20), "v8", 0), ("StepB", t(2024, 1, 14, 22), "v8", 0), ("StepC", t(2024, 1, 16), "v8", 0),
    # 9: started exactly at the end of the range (exclusive)
    ("StepA", t(2024, 1, 15), "v9", 0), ("StepB", t(2024, 1, 15, 1), "v9", 0),
    # 10: StepC exactly 7 days after StepA (inclusive)
    ("StepA", t(2024, 1, 6, 8), "v10", 0), ("StepB", t(2024, 1, 6, 9), "v10", 0), ("StepC", t(2024, 1, 13, 8), "v10", 0),
    # 11: StepA and StepB in the same second (a client batch): StepB counts
    ("StepA", t(2024, 1, 7, 10), "v11", 0), ("StepB", t(2024, 1, 7, 10), "v11", 0),
    # 12: no id at all: nobody
    ("StepA", t(2024, 1, 7, 11), "", 0, None), ("StepB", t(2024, 1, 7, 12), "", 0, None),
    # noise: other events, and a signed-in user's first step (counted: person 13)
    ("ViewBlob", t(2024, 1, 2), "v1", 0), ("StepA", t(2024, 1, 8), "v13", 5),
]


def test_funnel_counts_people_per_step_by_hand(wh):
    wh.append("event_logs", rows(*FUNNEL_ROWS))
    f = product.funnel(cfg(), dt.date(2024, 1, 1), dt.date(2024, 1, 14), steps=STEPS, window_days=7, warehouse=wh)
    # step 1: people 1 2 3 4 5 8 10 11 13; step 2: 1 3 4 5 8 10 11; step 3: 1 4 5 8 10
    assert f.people == (9, 7, 5)
    assert f.conversion == (1.0, 7 / 9, 5 / 9)
    assert f.step_conversion == (1.0, 7 / 9, 5 / 7)


def test_a_shorter_window_and_another_time_zone_change_the_answer(wh):
    wh.append("event_logs", rows(*FUNNEL_ROWS))
    # One day: only 1 and 5 take StepC within a day of StepA (4: 25 h, 8: 28 h, 10: 7 days);
    # 3's StepB is exactly one day after StepA and still counts.
    f = product.funnel(cfg(), dt.date(2024, 1, 1), dt.date(2024, 1, 14), steps=STEPS, window_days=1, warehouse=wh)
    assert f.people == (9, 7, 2)
    # In Tokyo (UTC+9) the range starts 2023-12-31 15:00 UTC, so person 7's StepA (23:00 UTC) counts,
    # and ends 2024-01-14 15:00 UTC, so person 8's StepA (20:00 UTC) does not.
    f = product.funnel(cfg(time_zone="Asia/Tokyo"), dt.date(2024, 1, 1), dt.date(2024, 1, 14), steps=STEPS,
                       window_days=7, warehouse=wh)
    assert f.people == (9, 7, 5) and f.time_zone == "Asia/Tokyo"


def test_every_one_of_the_ten_steps_is_chained(wh):
    steps = tuple(f"S{i}" for i in range(1, 11))
    # A staircase: person k takes steps 1..k, an hour apart; person 10 takes all ten in one second.
    stairs = [(s, t(2024, 1, 2, i), f"k{k}", 0) for k in range(1, 10) for i, s in enumerate(steps[:k])]
    burst = [(s, t(2024, 1, 2, 12), "k10", 0) for s in steps]
    # Out of order at step 6: reaches 5.
    five = [(s, t(2024, 1, 2, i), "five", 0) for i, s in enumerate(steps[:5])] + [(steps[5], t(2024, 1, 1, 23), "five", 0)]
    # Person skip<j> takes every step but j: reaches j - 1 (so no link may reach past its predecessor).
    skips = [(s, t(2024, 1, 2, i), f"skip{j}", 0) for j in range(2, 11) for i, s in enumerate(steps) if s != f"S{j}"]
    wh.append("event_logs", rows(*stairs, *burst, *five, *skips))
    f = product.funnel(cfg(), dt.date(2024, 1, 1), dt.date(2024, 1, 3), steps=steps, warehouse=wh)
    # step m: stairs 10 - m (m <= 9), the burst 1, five 1 (m <= 5), skips 10 - m (m <= 9)
    assert f.people == (20, 18, 16, 14, 12, 9, 7, 5, 3, 1)


def test_an_empty_warehouse_gives_a_funnel_of_zeros(wh):
    f = product.funnel(cfg(), dt.date(2024, 1, 1), dt.date(2024, 1, 14), steps=STEPS, warehouse=wh)
    assert f.people == (0, 0, 0) and f.conversion == (0.0, 0.0, 0.0)


@pytest.mark.parametrize("steps, message", [(("A",), "2 to 10 steps"), (tuple("ABCDEFGHIJK"), "2 to 10 steps"),
                                            (("A", "B", "A"), "distinct")])
def test_steps_that_cannot_make_a_funnel_are_refused(steps, message):
    with pytest.raises(ConfigError, match=message):
        product.check_steps(steps)


def reference_funnel(events, steps, start, end, window):
    """A plain-Python funnel: same identity rule, every attempt chained greedily, deepest step per person."""
    events = [e for e in events if start <= e[1] < end + window]  # what the query reads
    links = {}
    for name, ts, visitor, user, device in sorted(events, key=lambda e: (e[1], e[3])):
        key = (visitor if visitor not in ("backend", "") else None) or device
        if user > 0 and key and key not in links:
            links[key] = user
    people = {}
    for name, ts, visitor, user, device in events:
        key = (visitor if visitor not in ("backend", "") else None) or device
        who = f"user:{user}" if user > 0 else f"user:{links[key]}" if key in links else f"visitor:{key}" if key else None
        if who:
            people.setdefault(who, []).append((name, ts))
    depth = {}
    for who, seen in people.items():
        for name, t0 in seen:
            if name != steps[0] or not start <= t0 < end:
                continue
            at, reached = t0, 1
            for step in steps[1:]:
                nxt = [ts for n, ts in seen if n == step and at <= ts <= t0 + window]
                if not nxt:
                    break
                at, reached = min(nxt), reached + 1
            depth[who] = max(depth.get(who, 0), reached)
    return tuple(sum(1 for d in depth.values() if d >= k) for k in range(1, len(steps) + 1))


event_strategy = st.tuples(st.sampled_from(STEPS + ("Other",)), st.integers(0, 20 * 24),
                           st.sampled_from(["v1", "v2", "v3", "backend", ""]), st.sampled_from([0, 0, 0, 7, 8]),
                           st.sampled_from([None, "v1", "v4"]))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(event_strategy, max_size=30))
def test_the_sql_funnel_agrees_with_a_plain_python_one(events):
    events = [(n, t(2024, 1, 1) + dt.timedelta(hours=h), v, u, d) for n, h, v, u, d in events]
    with warehouses.open("duckdb://:memory:") as w:
        w.ensure_tables()
        w.append("event_logs", rows(*events)) if events else None
        f = product.funnel(cfg(), dt.date(2024, 1, 2), dt.date(2024, 1, 10), steps=STEPS, window_days=2, warehouse=w)
    assert f.people == reference_funnel(events, STEPS, t(2024, 1, 2), t(2024, 1, 11), dt.timedelta(days=2))


def test_the_seed_walks_the_real_sign_up_funnel():
    assert tuple(name for name, _, _ in seed.FUNNEL) == product.SIGNUP_FUNNEL


def test_the_sign_up_funnel_on_seeded_data_only_narrows(wh):
    now = t(2022, 3, 14, 12)
    seed.fill(wh, seed.SeedSpec(start=dt.date(2022, 3, 1), days=14, events_per_day=2000, until=now))
    f = product.funnel(cfg(now=now), dt.date(2022, 3, 1), dt.date(2022, 3, 14), warehouse=wh)
    assert f.people[0] > f.people[-1] > 0
    assert all(a >= b for a, b in zip(f.people, f.people[1:]))


def test_both_queries_share_one_identity_rule():
    def identity(name):
        text = sqlfiles.text(name)
        return re.search(r"-- identity: begin.*?\n(.*)-- identity: end", text, re.S).group(1)
    funnel, retention = identity("onboarding_funnel"), identity("onboarding_retention")
    assert "WITH visits AS" in funnel and funnel == retention


# --- retention --------------------------------------------------------------------------------

LA = "America/Los_Angeles"  # UTC-8 in January
RETENTION_ROWS = [
    # p1: weeks 0, 1 and 3 of the 2024-01-01 cohort
    ("Act", t(2024, 1, 2, 18), "p1", 0), ("Act", t(2024, 1, 9, 18), "p1", 0), ("Act", t(2024, 1, 23, 18), "p1", 0),
    # p2: week 0 only; a non-active event later does not count
    ("Act", t(2024, 1, 3, 18), "p2", 0), ("Other", t(2024, 1, 10, 18), "p2", 0),
    # p3: Monday 05:00 UTC is Sunday evening in Los Angeles: still the 2024-01-01 week; back in week 2
    ("Act", t(2024, 1, 8, 5), "p3", 0), ("Act", t(2024, 1, 16, 18), "p3", 0),
    # p4: cohort 2024-01-08, back in week 1
    ("Act", t(2024, 1, 10, 18), "p4", 0), ("Act", t(2024, 1, 17, 18), "p4", 0),
    # p5: anonymous in week 0, signed in as user 99 on the same browser in week 1: one person
    ("Act", t(2024, 1, 11, 18), "p5", 0), ("Act", t(2024, 1, 18, 18), "p5", 99),
    # p8: 2024-01-01 07:00 UTC is still 2023-12-31 in Los Angeles, before the range; cohort 2024-01-08
    ("Act", t(2024, 1, 1, 7), "p8", 0), ("Act", t(2024, 1, 9, 18), "p8", 0),
    # p6: the last local day's evening (07:00 UTC next day) counts; p7: an hour past the range does not
    ("Act", t(2024, 1, 25, 7), "p6", 0), ("Act", t(2024, 1, 25, 9), "p7", 0),
    # p9: only an event the data map keeps out (see the data-map test)
    ("Hidden", t(2024, 1, 10, 18), "p9", 0),
]


def test_retention_matrix_by_hand(wh):
    wh.append("event_logs", rows(*RETENTION_ROWS))
    r = product.retention(cfg(time_zone=LA), dt.date(2024, 1, 3), dt.date(2024, 1, 24), events=("Act",), warehouse=wh)
    jan = lambda d: dt.date(2024, 1, d)  # noqa: E731
    assert r.start == jan(1)  # widened to its Monday
    assert r.counts == {(jan(1), 0): 3, (jan(1), 1): 1, (jan(1), 2): 1, (jan(1), 3): 1,
                        (jan(8), 0): 3, (jan(8), 1): 2, (jan(22), 0): 1}
    assert r.cohorts == (jan(1), jan(8), jan(22)) and r.weeks == 4
    assert [r.size(c) for c in r.cohorts] == [3, 3, 1]
    assert r.matrix() == [[1.0, 1 / 3, 1 / 3, 1 / 3],
                          [1.0, 2 / 3, 0.0, None],
                          [1.0, None, None, None]]


def test_retention_in_utc_moves_the_sunday_evening_into_the_next_week(wh):
    wh.append("event_logs", rows(*RETENTION_ROWS))
    r = product.retention(cfg(), dt.date(2024, 1, 1), dt.date(2024, 1, 24), events=("Act",), warehouse=wh)
    jan = lambda d: dt.date(2024, 1, d)  # noqa: E731
    # In UTC, p3 starts in the 2024-01-08 week, p8 in the 2024-01-01 week, p6 is out and p7 too.
    assert r.size(jan(1)) == 3 and r.size(jan(8)) == 3
    assert r.counts[(jan(8), 1)] == 3  # p3, p4, p5
    assert (jan(22), 0) not in r.counts


def test_retention_leaves_out_events_the_data_map_keeps_out(wh):
    wh.append("event_logs", rows(*RETENTION_ROWS))
    data_map = datamap.parse("""
rules:
  - {id: ui, action: send, note: ui, events: [Act]}
  - {id: hidden, action: exclude, reason: low_traffic, note: rare, events: [Hidden]}
""")
    r = product.retention(cfg(time_zone=LA), dt.date(2024, 1, 1), dt.date(2024, 1, 24), events=("Act", "Hidden"),
                          data_map=data_map, warehouse=wh)
    assert r.events == ("Act",) and r.left_out == {"Hidden": "hidden"}
    assert r.size(dt.date(2024, 1, 8)) == 3  # p9 is not there
    recipe = product.retention_recipe(r)
    assert "*Retention Analysis*" in recipe and "*any of* `Act`" in recipe and "`Hidden` (rule `hidden`)" in recipe
    assert "2024-01-01 cohort at about 3 people, 33% of them back in week 1" in recipe
    with pytest.raises(ConfigError, match="keeps them all out"):
        product.retention(cfg(), dt.date(2024, 1, 1), dt.date(2024, 1, 24), events=("Hidden",), data_map=data_map, warehouse=wh)


# --- volumes and recipes ----------------------------------------------------------------------

def test_volumes_count_staged_rows_per_name_and_source_over_local_days(wh):
    wh.append("event_logs", rows(("ViewBlob", t(2024, 1, 1, 7), "a", 0), ("ViewBlob", t(2024, 1, 1, 9), "a", 0),
                                 ("ViewBlob", t(2024, 1, 2, 9), "b", 0), ("SignUpSucceeded", t(2024, 1, 2, 10), "backend", 5),
                                 ("ViewBlob", t(2024, 1, 3, 9), "c", 0)))
    wh.run("amplitude_events", {"run_time": t(2024, 1, 5), "amplitude_start_date": dt.date(2020, 12, 1), "stage_since": t(2020, 12, 1)})
    # Los Angeles days 2024-01-01..02 are [08:00 UTC Jan 1, 08:00 UTC Jan 3).
    got = product.volumes(cfg(time_zone=LA), dt.date(2024, 1, 1), dt.date(2024, 1, 2), warehouse=wh)
    assert sorted(got) == [("SignUpSucceeded", "BACKEND", 1), ("ViewBlob", "WEB", 2)]


def test_the_funnel_recipe_uses_the_same_steps_and_warns_about_excluded_ones():
    f = product.Funnel(product.SIGNUP_FUNNEL, (200, 100, 80, 70, 40, 30, 20), dt.date(2024, 1, 1), dt.date(2024, 1, 28), 7, "UTC")
    shipped = product.funnel_recipe(f, datamap.load())
    assert "*Funnel Analysis*" in shipped and "conversion window **7 days**" in shipped
    assert " → ".join(f"`{s}`" for s in product.SIGNUP_FUNNEL) in shipped
    assert "2024-01-01 to 2024-01-28" in shipped and "about 200 people at the first step and 20 (10.0%)" in shipped
    assert "⚠" not in shipped  # every step reaches Amplitude, SignUpSucceeded by rule signup_outcomes
    # Without the signup_outcomes rule, the backend rule keeps SignUpSucceeded out: the recipe says so.
    text = datamap.default_path().read_text()
    without = re.sub(r"  - id: signup_outcomes.*?(?=\n  - id: )", "", text, flags=re.S)
    warned = product.funnel_recipe(f, datamap.parse(without))
    assert "⚠ `SignUpSucceeded` is kept out of Amplitude by data-map rule `backend`" in warned
