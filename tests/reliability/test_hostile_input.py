"""3. Hostile input: every bad row is sent normalized, filtered by a named rule, or dead-lettered with a reason.

Bad rows go straight into `amplitude_events` of a DuckDB warehouse (after `ensure_tables()`),
then `ampkit.sync.run` sends to the in-process sandbox. For each row the test reads its
outcome in `ampkit_deliveries` (by `id`) and, when accepted, what the sandbox stored. Most cases
share one run (cheap); rows that could stop a whole run, or need two runs, get their own.
Bad files (tables, data maps, ampkit.toml) must fail with one clear line naming the problem.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import logging
from typing import Any, Callable

import pytest

from ampkit import sync
from ampkit.errors import AmpkitError, SchemaError

from . import support
from .support import HOUR, MINUTE, NOW

ACCEPTED = ("accepted", None)
NO_ID = ("rejected", "no_id")
INVALID_ID = ("rejected", "invalid_id")
MALFORMED = ("rejected", "malformed_public_argument")
BEFORE_START = ("filtered", "before_start")
SETTINGS = {"initial_lookback_hours": 1, "lookback_hours": 0, "retry_budget_seconds": 2, "max_backoff_seconds": 0.2}


def nested(depth: int) -> str:
    return '{"a":' * depth + '1' + '}' * depth


@dataclasses.dataclass(frozen=True)
class Case:
    """Rows (overrides of a valid row), the outcome each must get, and a check of what Amplitude stored."""

    name: str
    rows: tuple[dict, ...]
    outcomes: tuple[tuple[str, str | None], ...]
    stored: Callable[[dict], Any] | None = None   # called with the exported event of each accepted row
    isolated: bool = False                        # its own warehouse and run (it may stop a run)
    bug: str | None = None                        # xfail reason: a known ampkit bug

    def __str__(self) -> str:
        return self.name


def device(expected):
    def check(event):
        assert event["device_id"] == expected, event["device_id"]
    return check


def user(expected):
    def check(event):
        assert event["user_id"] == expected and event.get("$insert_id"), event
    return check


def props(expected):
    def check(event):
        assert event["event_properties"] == expected, event["event_properties"]
    return check


def event_type(expected):
    def check(event):
        assert event["event_type"] == expected, event["event_type"]
    return check


def no_private(event):
    text = repr(event)
    assert "hunter2" not in text and "PRIVATE-" not in text and "ghp_" not in text, text


LPAD_BUG = ("BUG: sync_extract.sql builds user_id as LPAD(CAST(a.user_id AS STRING), 6, '0'); LPAD truncates "
            "longer strings (BigQuery and DuckDB alike), so every user_id of 7+ digits is cut to its first 6: "
            "users 1234567 and 1234568 both become '123456' in Amplitude (identities merged, events attributed "
            "to the wrong user). Fix: pad only shorter ids, e.g. IF(a.user_id < 100000, LPAD(CAST(a.user_id AS "
            "STRING), 6, '0'), CAST(a.user_id AS STRING)).")
NULL_TIME_BUG = ("BUG: a row with a NULL timestamp silently vanishes: sync_snapshot.sql filters "
                 "`a.timestamp >= @event_start AND a.timestamp < @event_end`, which is never true for NULL, so the "
                 "row is never extracted, gets no outcome, and is not counted (the identity still holds). "
                 "sync_extract.sql's 'invalid_time' rule is unreachable. Fix: let NULL timestamps into the "
                 "snapshot of the hourly run (`a.timestamp IS NULL OR ...`) and into sync_extract.sql "
                 "(`p.event_time IS NULL OR p.event_time >= @start_time`), so they are rejected 'invalid_time'.")

CASES = [
    # -- ids ------------------------------------------------------------------------------------
    Case("null-device-id-uses-anonymous-id", ({"device_id": None, "anonymous_user_id": "anon-fallback-01"},),
         (ACCEPTED,), device("anon-fallback-01")),
    Case("empty-device-id-uses-anonymous-id", ({"device_id": "", "anonymous_user_id": "anon-fallback-02"},),
         (ACCEPTED,), device("anon-fallback-02")),
    Case("whitespace-device-id-is-trimmed", ({"device_id": "  dev-trimmed-03  "},), (ACCEPTED,), device("dev-trimmed-03")),
    Case("no-id-at-all", ({"device_id": None, "anonymous_user_id": "", "user_id": 0},), (NO_ID,)),
    Case("backend-anonymous-id-is-no-id", ({"device_id": None, "anonymous_user_id": "backend", "user_id": 0},), (NO_ID,)),
    Case("short-device-id", ({"device_id": "ab1"},), (INVALID_ID,)),
    Case("short-device-id-with-user-id", ({"device_id": "ab1", "user_id": 42},), (ACCEPTED,), user("000042")),
    *[Case(f"blocklisted-device-id-{label}", ({"device_id": value},), (INVALID_ID,))
      for label, value in (("undefined", "undefined"), ("NULL-upper", "NULL"), ("anonymous", "Anonymous"),
                           ("zero", "0"), ("minus-one", "-1"), ("n-a", "N/A"),
                           ("zero-uuid", "00000000-0000-0000-0000-000000000000"), ("quoted-empty", '""'))],
    Case("blocklisted-device-id-with-user-id", ({"device_id": "undefined", "user_id": 7},), (ACCEPTED,), user("000007")),
    Case("non-ascii-device-id", ({"device_id": "устройство-ü-ñ-42"},), (ACCEPTED,), device("устройство-ü-ñ-42")),
    Case("non-ascii-short-device-id", ({"device_id": "äöü"},), (INVALID_ID,)),
    Case("emoji-device-id", ({"device_id": "🙂🙂🙂🙂🙂"},), (ACCEPTED,), device("🙂🙂🙂🙂🙂")),
    Case("control-characters-in-device-id", ({"device_id": "dev\x01\x02ice-99"},), (ACCEPTED,), device("dev\x01\x02ice-99")),
    Case("user-id-0-and-no-device", ({"user_id": 0, "device_id": None, "anonymous_user_id": ""},), (NO_ID,)),
    Case("negative-user-id-and-no-device", ({"user_id": -7, "device_id": None, "anonymous_user_id": ""},), (NO_ID,)),
    Case("user-id-only", ({"user_id": 42, "device_id": None, "anonymous_user_id": ""},), (ACCEPTED,), user("000042")),
    Case("seven-digit-user-id", ({"user_id": 1234567, "device_id": None, "anonymous_user_id": ""},),
         (ACCEPTED,), user("1234567")),
    Case("largest-user-id", ({"user_id": 9223372036854775807, "device_id": None, "anonymous_user_id": ""},),
         (ACCEPTED,), user("9223372036854775807")),
    # -- public_argument --------------------------------------------------------------------------
    Case("malformed-public-argument", ({"public_argument": '{"broken": '},), (MALFORMED,)),
    Case("public-argument-is-an-array", ({"public_argument": "[1, 2]"},), (MALFORMED,)),
    Case("public-argument-is-json-null", ({"public_argument": "null"},), (MALFORMED,)),
    Case("public-argument-single-quoted", ({"public_argument": "{'a': 1}"},), (MALFORMED,)),
    Case("public-argument-trailing-garbage", ({"public_argument": '{"a": 1} trailing'},), (MALFORMED,)),
    Case("public-argument-raw-control-character", ({"public_argument": '{"a": "x\x01y"}'},), (MALFORMED,)),
    Case("public-argument-lone-surrogate-escape", ({"public_argument": '{"a": "\\ud800"}'},), (MALFORMED,)),
    Case("public-argument-empty", ({"public_argument": ""},), (ACCEPTED,), props({})),
    Case("public-argument-null", ({"public_argument": None},), (ACCEPTED,), props({})),
    # Amplitude stores properties nested at most 40 levels deep.
    Case("public-argument-nested-40-levels", ({"public_argument": nested(40)},), (ACCEPTED,)),
    Case("public-argument-nested-41-levels", ({"public_argument": nested(41)},), (("rejected", "properties_too_deep"),)),
    Case("public-argument-many-shallow-objects", ({"public_argument": '{"a":[' + ",".join(['{"b":[1]}'] * 60) + ']}'},),
         (ACCEPTED,)),
    Case("public-argument-brackets-inside-strings", ({"public_argument": '{"a":"' + "{[" * 50 + '"}'},), (ACCEPTED,)),
    Case("public-argument-nan-inside-a-string", ({"public_argument": '{"a":"NaN and Infinity"}'},), (ACCEPTED,)),
    Case("feature-flags-with-nan", ({"feature_flags": '{"f": NaN}'},), (ACCEPTED,),
         lambda e: (e["user_properties"].get("feature_flags") is None) or pytest.fail(str(e["user_properties"]))),
    Case("public-argument-oversized", ({"public_argument": '{"a": "' + "x" * 40_000 + '"}'},),
         (("rejected", "properties_too_large"),)),
    Case("public-argument-value-over-1024-chars", ({"public_argument": '{"a": "' + "y" * 1100 + '"}'},),
         (("rejected", "property_too_long"),)),
    Case("public-argument-email-and-token-redacted",
         ({"public_argument": '{"by": "jane.doe@acme.example", "t": "ghp_abcdefghijklmnopqrstuvwx"}'},),
         (ACCEPTED,), props({"by": "[redacted-email]", "t": "[redacted-token]"})),
    Case("secret-looking-value-in-private-argument",
         ({"argument": '{"password": "hunter2", "token": "ghp_abcdefghijklmnopqrstuvwx", "note": "PRIVATE-x"}'},),
         (ACCEPTED,), no_private),
    Case("malformed-feature-flags-are-dropped", ({"feature_flags": "{oops"},), (ACCEPTED,),
         lambda e: (e["user_properties"].get("feature_flags") is None) or pytest.fail(str(e["user_properties"]))),
    # -- time ---------------------------------------------------------------------------------------
    Case("timestamp-1970", ({"timestamp": dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)},), (BEFORE_START,)),
    Case("timestamp-just-before-2020-12-01", ({"timestamp": dt.datetime(2020, 11, 30, 23, 59, 59, tzinfo=dt.timezone.utc)},),
         (BEFORE_START,)),
    Case("timestamp-exactly-2020-12-01", ({"timestamp": dt.datetime(2020, 12, 1, tzinfo=dt.timezone.utc)},), (ACCEPTED,)),
    Case("timestamp-far-future", ({"timestamp": dt.datetime(2099, 1, 1, tzinfo=dt.timezone.utc)},), (("rejected", "future_time"),)),
    Case("timestamp-two-hours-ahead-is-tolerated", ({"timestamp": NOW + 2 * HOUR},), (ACCEPTED,)),
    # -- insert_id ----------------------------------------------------------------------------------
    Case("duplicate-insert-id-different-content",
         ({"insert_id": "{p}-dup", "name": "SearchSubmitted"}, {"insert_id": "{p}-dup", "name": "ViewBlob"}),
         (ACCEPTED, ("rejected", "duplicate_insert_id")), event_type("SearchSubmitted")),
    Case("empty-insert-id-gets-a-stable-one", ({"insert_id": ""},), (ACCEPTED,),
         lambda e: e["$insert_id"].startswith("sg-") or pytest.fail(e["$insert_id"])),
    Case("null-insert-id-gets-a-stable-one", ({"insert_id": None},), (ACCEPTED,),
         lambda e: e["$insert_id"].startswith("sg-") or pytest.fail(e["$insert_id"])),
    # -- names --------------------------------------------------------------------------------------
    Case("empty-name", ({"name": ""},), (("rejected", "missing_event_type"),)),
    Case("whitespace-name", ({"name": "   "},), (("rejected", "missing_event_type"),)),
    Case("name-over-1024-chars", ({"name": "N" * 1100},), (("rejected", "event_type_too_long"),)),
    Case("name-with-quotes-and-semicolon", ({"name": "Search'; DROP TABLE ampkit_runs; --\""},), (ACCEPTED,),
         event_type("Search'; DROP TABLE ampkit_runs; --\"")),
    Case("name-with-backticks-newline-tab", ({"name": "a`b`\nc\td"},), (ACCEPTED,), event_type("a`b`\nc\td")),
    Case("name-with-emoji-and-bidi-override", ({"name": "Поиск 🔍 \u202eabc"},), (ACCEPTED,), event_type("Поиск 🔍 \u202eabc")),
    Case("name-with-nul-character", ({"name": "Nul\x00Name"},), (ACCEPTED,), event_type("Nul\x00Name")),
    Case("name-that-looks-like-a-glob", ({"name": "codeintel.[abc]*"},), (("filtered", "codeintel_deny_list"),)),
    Case("backend-source-is-filtered", ({"source": "BACKEND", "name": "BatchSpecExecutionQueued"},), (("filtered", "backend"),)),
    Case("exact-send-name-beats-backend-pattern", ({"source": "BACKEND"},), (ACCEPTED,)),
    Case("backend-sign-up-is-sent", ({"source": "BACKEND", "name": "SignUpSucceeded"},), (ACCEPTED,)),
    Case("unknown-source", ({"source": "TOASTER"},), (ACCEPTED,),
         lambda e: e["platform"] == "TOASTER" or pytest.fail(str(e["platform"]))),
    Case("null-source", ({"source": None},), (ACCEPTED,)),
    Case("quotes-and-controls-in-version-and-referrer", ({"version": 'v"1\\2\n', "referrer": "https://x/?q='\"<>"},),
         (ACCEPTED,), lambda e: e["version_name"] == 'v"1\\2\n' or e.get("app_version") == 'v"1\\2\n' or pytest.fail(str(e))),
    # -- isolated: may stop a run, or need two runs ----------------------------------------------
    # Each could poison a run (Amplitude's 400 names no event; a parser gives up): alone, to prove it does not.
    Case("public-argument-with-nan", ({"public_argument": '{"ratio": NaN}'}, {}), (MALFORMED, ACCEPTED), isolated=True),
    Case("public-argument-with-infinity", ({"public_argument": '{"ratio": -Infinity}'}, {}), (MALFORMED, ACCEPTED),
         isolated=True),
    Case("public-argument-nested-1100-levels", ({"public_argument": nested(1100)}, {}),
         (("rejected", "properties_too_deep"), ACCEPTED), isolated=True),
    Case("timestamp-null", ({"timestamp": None}, {}), (("rejected", "invalid_time"), ACCEPTED), isolated=True),
]
SHARED = [c for c in CASES if not c.isolated]
ISOLATED = [c for c in CASES if c.isolated]


def materialize(case: Case, prefix: str, first_id: int) -> list[dict]:
    rows = []
    for i, overrides in enumerate(case.rows):
        values = {k: (v.replace("{p}", prefix) if isinstance(v, str) else v) for k, v in overrides.items()}
        rows.append(support.row(first_id + i, prefix, **values))
    return rows


def check_case(case: Case, rows: list[dict], url: str, events: dict[str, list[dict]], rel) -> None:
    ids = [r["id"] for r in rows]
    got = support.outcome_of(url, ids)
    for r, expected in zip(rows, case.outcomes):
        assert r["id"] in got, f"row {r['id']} has no outcome: it silently vanished"
        assert got[r["id"]] == expected, f"row {r['id']}: {got[r['id']]}, expected {expected}"
    # The insert_ids ampkit used (a stable sg- hash when the row had none).
    used = {x["id"]: x["insert_id"] for x in
            support.query(url, "SELECT id, insert_id FROM ampkit_deliveries WHERE list_contains(?, id)", [ids])}
    sent = {used[r["id"]] for r, o in zip(rows, case.outcomes) if o == ACCEPTED}
    candidates = sent | set(used.values()) | {r["insert_id"] for r in rows}
    rel.delivered(sent, {k: len(events[k]) for k in candidates if k in events}, case.name)
    if case.stored:
        for insert_id in sent:
            case.stored(events[insert_id][0])


@pytest.fixture(scope="module")
def corpus(amp_server, tmp_path_factory):
    """Every shared case's rows in one warehouse, synced once."""
    import hashlib
    amp_server.control.reset(keep_events=True)
    prefix = "c" + hashlib.sha1(b"corpus").hexdigest()[:8]
    from .conftest import register_path
    tmp = tmp_path_factory.mktemp("corpus")
    register_path(tmp)
    url = support.fresh_warehouse(tmp)
    placed = {}
    for k, case in enumerate(SHARED):
        placed[case.name] = materialize(case, prefix, 100 + k * 10)
    support.insert(url, [r for rows in placed.values() for r in rows])
    with pytest.MonkeyPatch.context() as mp:
        support.keys_only_environment(mp)
        result = sync.run(support.config(url, amp_server.url, **SETTINGS), progress="none")
    events: dict[str, list[dict]] = {}
    for event in support.exported(amp_server.url, rows=True):
        events.setdefault(event["$insert_id"], []).append(event)
    return url, result, placed, events


def test_corpus_run_keeps_the_books(corpus):
    url, result, placed, _ = corpus
    assert result.status == "ok"
    support.identity(result)
    assert result.extracted == sum(len(rows) for rows in placed.values()), "a row was never extracted"
    assert support.books(url) == []
    filtered, rejected = sum(result.filtered.values()), sum(result.rejected.values())
    assert filtered and rejected and result.accepted
    ledger = list(support.ledger(url).values())
    assert [(r["extracted"], r["accepted"], r["filtered_total"], r["rejected_total"]) for r in ledger] == \
        [(result.extracted, result.accepted, filtered, rejected)]


def _params(cases):
    return [pytest.param(c, id=c.name, marks=[pytest.mark.xfail(strict=True, reason=c.bug)] if c.bug else [])
            for c in cases]


@pytest.mark.parametrize("case", _params(SHARED))
def test_bad_row(case, corpus, rel):
    url, result, placed, events = corpus
    check_case(case, placed[case.name], url, events, rel)


@pytest.mark.parametrize("case", _params(ISOLATED))
def test_bad_row_alone(case, wh_url, amp, prefix, rel):
    rows = materialize(case, prefix, 1)
    support.insert(wh_url, rows)
    try:
        result = sync.run(support.config(wh_url, amp.url, **SETTINGS), progress="none")
    except AmpkitError as exc:
        pytest.fail(f"one bad row failed the whole run: {exc}")
    support.identity(result)
    assert result.extracted == len(rows), "a row was never extracted"
    events: dict[str, list[dict]] = {}
    for event in support.exported(amp.url, prefix, rows=True):
        events.setdefault(event["$insert_id"], []).append(event)
    check_case(case, rows, wh_url, events, rel)
    assert support.books(wh_url) == []


def test_duplicate_insert_id_in_a_later_run(wh_url, amp, prefix, rel):
    first = support.row(1, prefix, insert_id=f"{prefix}-same", loaded_at=NOW - 30 * MINUTE)
    later = support.row(2, prefix, insert_id=f"{prefix}-same", name="ViewBlob", loaded_at=NOW + 10 * MINUTE)
    support.insert(wh_url, [first, later])
    assert sync.run(support.config(wh_url, amp.url, **SETTINGS), progress="none").accepted == 1
    second = sync.run(support.config(wh_url, amp.url, **{**SETTINGS, "now": NOW + 20 * MINUTE}), progress="none")
    support.identity(second)
    assert support.outcome_of(wh_url, [1, 2]) == {1: ACCEPTED, 2: ("rejected", "duplicate_insert_id")}
    events = support.exported(amp.url, prefix, rows=True)
    rel.delivered({f"{prefix}-same"}, {f"{prefix}-same": len(events)}, "same insert_id a run later")
    assert events[0]["event_type"] == "SearchSubmitted"
    assert support.books(wh_url) == []


def test_deep_properties_never_crash_the_sandbox(prefix, rel):
    """Own sandbox, posted to directly (ampkit never sends more than 40 levels): an event it stored stays
    exportable however deep it nests, and one too deep to parse is a 400, never a 500."""
    import json
    import requests
    from ampkit.sandbox import SandboxConfig, start

    def event(n: int, depth: int) -> dict:
        return {"event_type": "SearchSubmitted", "device_id": f"{prefix}-device", "insert_id": f"{prefix}-{n}",
                "time": int(NOW.timestamp() * 1000), "event_properties": json.loads(nested(depth))}

    with start(SandboxConfig(api_keys=[(support.API_KEY, support.SECRET_KEY)], export_lag_seconds=0)) as sb:
        stored = requests.post(f"{sb.url}/batch", timeout=30, json={"api_key": support.API_KEY,
                                                                     "events": [event(1, 600), event(2, 1)]})
        assert stored.status_code == 200, stored.text
        deeper = json.dumps({"api_key": support.API_KEY, "events": [event(3, 1)]}).replace('"a": 1', nested(1100)[1:-1])
        refused = requests.post(f"{sb.url}/batch", data=deeper, timeout=30, headers={"Content-Type": "application/json"})
        assert refused.status_code == 400 and "Invalid JSON" in refused.text, (refused.status_code, refused.text[:200])
        rel.delivered({f"{prefix}-1", f"{prefix}-2"}, support.exported(sb.url, prefix), "600-level properties")


def test_row_loaded_after_the_clock_waits_for_its_window(wh_url, amp, prefix, rel):
    early = support.row(1, prefix, loaded_at=NOW - 10 * MINUTE)
    ahead = support.row(2, prefix, loaded_at=NOW + 30 * MINUTE, timestamp=NOW - 5 * MINUTE)
    support.insert(wh_url, [early, ahead])
    first = sync.run(support.config(wh_url, amp.url, **SETTINGS), progress="none")
    assert first.extracted == 1 and support.outcome_of(wh_url, [1, 2]) == {1: ACCEPTED}
    later = sync.run(support.config(wh_url, amp.url, **{**SETTINGS, "now": NOW + HOUR}), progress="none")
    assert later.extracted == 1
    assert support.outcome_of(wh_url, [1, 2]) == {1: ACCEPTED, 2: ACCEPTED}
    rel.delivered({early["insert_id"], ahead["insert_id"]}, support.exported(amp.url, prefix), "loaded after the clock")


# -- invalid UTF-8: as far as the warehouse can hold it ------------------------------------------

def test_invalid_utf8_bytes_are_refused_by_arrow_with_a_clear_error(wh_url):
    import pyarrow as pa
    from ampkit import warehouse as warehouses
    rows = [support.row(1, "utf8")]
    table = pa.Table.from_pylist(rows, schema=support.EVENT_SCHEMA)
    raw = pa.array([b"Search\xff\xfeSubmitted"], pa.binary())
    with pytest.raises(pa.ArrowInvalid, match="Invalid UTF8"):
        table.set_column(1, "name", raw.cast(pa.string()))
    # Bytes that reach the warehouse as a BLOB are stored by DuckDB as escaped text (valid UTF-8).
    with warehouses.open(wh_url) as wh:
        wh.append("amplitude_events", table.set_column(1, "name", raw))
    (stored,) = support.query(wh_url, "SELECT name FROM amplitude_events")
    assert stored["name"] == "Search\\xFF\\xFESubmitted"


def test_invalid_utf8_in_a_python_string_is_refused_by_duckdb_with_a_clear_error(wh_url):
    import duckdb
    with pytest.raises(duckdb.Error, match="UTF-8"):
        support.query(wh_url, "INSERT INTO amplitude_events (id, name, loaded_at) VALUES (1, ?, now())",
                      ["Search\udcffSubmitted"])


def test_escaped_invalid_utf8_row_is_sent_as_valid_text(wh_url, amp, prefix, rel):
    import pyarrow as pa
    from ampkit import warehouse as warehouses
    rows = [support.row(1, prefix), support.row(2, prefix)]
    table = pa.Table.from_pylist(rows, schema=support.EVENT_SCHEMA)
    table = table.set_column(1, "name", pa.array([b"Bad\xffName", b"SearchSubmitted"], pa.binary()))
    table = table.set_column(7, "public_argument", pa.array([b'{"a": "\xff"}', b"{}"], pa.binary()))
    with warehouses.open(wh_url) as wh:
        wh.append("amplitude_events", table)
    result = sync.run(support.config(wh_url, amp.url, **SETTINGS), progress="none")
    support.identity(result)
    # '{"a": "\xFF"}' as escaped text is not JSON: dead-lettered; the other row is sent.
    assert support.outcome_of(wh_url, [1, 2]) == {1: MALFORMED, 2: ACCEPTED}
    rel.delivered({f"{prefix}-2"}, support.exported(amp.url, prefix))


def test_null_name_is_refused_by_the_warehouse(wh_url):
    import duckdb
    with pytest.raises(duckdb.Error, match="(?i)not null.*name|name.*not null"):
        support.query(wh_url, "INSERT INTO amplitude_events (id, name, loaded_at) VALUES (1, NULL, now())")


# -- bad files: one clear line naming the problem ----------------------------------------------

@pytest.fixture
def cli(monkeypatch):
    """`ampkit ARGS` in-process (click's runner); returns (exit code, stdout, stderr).

    The CLI configures the 'ampkit' logger for a terminal; its handlers, level and propagation
    are put back afterwards so later tests' log capture is unaffected.
    """
    from click.testing import CliRunner
    from ampkit.cli import cli as command
    logger = logging.getLogger("ampkit")
    saved = (list(logger.handlers), logger.level, logger.propagate)

    def invoke(*args, env=None):
        try:
            result = CliRunner().invoke(command, list(args), env=env, catch_exceptions=True)
        finally:
            logger.handlers[:] = saved[0]
            logger.setLevel(saved[1])
            logger.propagate = saved[2]
        if result.exception and not isinstance(result.exception, SystemExit):
            import traceback
            return 99, result.stdout, "".join(traceback.format_exception(result.exception))
        return result.exit_code, result.stdout, result.stderr
    return invoke


def one_line_error(code, stderr, *needles):
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert code == 1, f"exit {code}: {stderr}"
    assert len(lines) == 1 and lines[0].startswith("Error: "), f"not one clear line: {stderr!r}"
    assert "Traceback" not in stderr
    for needle in needles:
        assert needle in lines[0], f"{needle!r} not named in {lines[0]!r}"
    assert not support.leaks(stderr)
    return lines[0]


def recreate_events_table(url: str, select: str) -> None:
    support.query(url, f"CREATE TABLE broken AS SELECT {select} FROM amplitude_events")
    support.query(url, "DROP TABLE amplitude_events")
    support.query(url, "ALTER TABLE broken RENAME TO amplitude_events")


@pytest.mark.parametrize("select,needles", [
    pytest.param("* EXCLUDE (insert_id)", ("insert_id", "no column"), id="missing-insert-id-column"),
    pytest.param("* EXCLUDE (loaded_at)", ("loaded_at",), id="missing-loaded-at-column"),
    pytest.param("* REPLACE (CAST(timestamp AS VARCHAR) AS timestamp)", ("timestamp", "STRING", "TIMESTAMP"),
                 id="timestamp-as-text"),
    pytest.param("* REPLACE (CAST(user_id AS VARCHAR) AS user_id)", ("user_id", "STRING", "INT64"), id="user-id-as-text"),
])
def test_bad_table(select, needles, wh_url, cli):
    support.insert(wh_url, [support.row(1, "t")])
    recreate_events_table(wh_url, select)
    with pytest.raises(SchemaError) as info:
        sync.run(support.config(wh_url, "http://127.0.0.1:9"), progress="none")
    assert all(n in str(info.value) for n in needles), info.value
    code, _, stderr = cli("--warehouse", wh_url, "sync", "--amplitude-url", "http://127.0.0.1:9")
    one_line_error(code, stderr, *needles)
    # Nothing was half-done: no run recorded as started, no lease left.
    assert not support.query(wh_url, "SELECT * FROM ampkit_lease WHERE holder IS NOT NULL")


GOOD_RULE = "  - id: ok\n    action: send\n    note: fine\n    events: [SearchSubmitted]\n"
DATA_MAPS = [
    ("invalid-yaml", "rules: [\n  - id: x\n    action: send\n  events: [a", ("not valid YAML",)),
    ("not-a-mapping", "- just\n- a list\n", ("expected a mapping",)),
    ("unknown-top-level-key", "colour: blue\nrules:\n" + GOOD_RULE, ("unknown key", "colour")),
    ("no-rules", "version: 1\nrules: []\n", ("non-empty list",)),
    ("unknown-action", "rules:\n  - id: x\n    action: maybe\n    events: [a]\n", ("action", "maybe")),
    ("exclusion-without-reason", "rules:\n  - id: x\n    action: exclude\n    events: [a]\n", ("reason", "'x'")),
    ("duplicate-rule-id", "rules:\n" + GOOD_RULE + GOOD_RULE, ("duplicate", "'ok'")),
    ("rule-without-events", "rules:\n  - id: x\n    action: send\n", ("events", "'x'")),
    ("unknown-source", "rules:\n  - id: x\n    action: send\n    source: TOASTER\n    events: [a]\n", ("source", "TOASTER")),
    ("bad-unknown-events-policy", "unknown_events: drop\nrules:\n" + GOOD_RULE, ("unknown_events", "drop")),
    ("bad-rule-id", "rules:\n  - id: 'Bad Id; DROP'\n    action: send\n    events: [a]\n", ("id",)),
]


@pytest.mark.parametrize("text,needles", [pytest.param(t, n, id=i) for i, t, n in DATA_MAPS])
def test_broken_data_map(text, needles, wh_url, tmp_path, cli):
    path = tmp_path / "datamap.yaml"
    path.write_text(text)
    code, _, stderr = cli("--warehouse", wh_url, "--data-map", str(path), "sync")
    one_line_error(code, stderr, "datamap.yaml", *needles)
    assert not support.query(wh_url, "SELECT * FROM ampkit_runs"), "a run started with a broken data map"


def test_missing_data_map_file(wh_url, tmp_path, cli):
    code, _, stderr = cli("--warehouse", wh_url, "--data-map", str(tmp_path / "nope.yaml"), "sync")
    one_line_error(code, stderr, "nope.yaml", "cannot be read")


TOMLS = [
    ("invalid-syntax", b'warehouse = "duckdb:///x.duckdb\n', ("ampkit.toml", "not valid TOML")),
    ("unknown-key", b'[ampkit]\nwarehose = "duckdb:///x.duckdb"\n', ("ampkit.toml", "unknown key", "warehose")),
    ("secret-in-file", b'[ampkit]\napi_key = "a-key-pasted-by-mistake-0123"\n', ("ampkit.toml", "api_key", "secret")),
    ("token-named-key", b'[ampkit]\nslack_token = "xoxb-123456789"\n', ("ampkit.toml", "slack_token", "secret")),
    ("wrong-type", b'[ampkit]\nlookback_hours = "six"\n', ("lookback_hours", "ampkit.toml")),
    ("out-of-range", b'[ampkit]\nmax_events_per_request = 5000\n', ("max_events_per_request",)),
    ("bad-boolean", b'[ampkit]\ngzip = "maybe"\n', ("gzip", "true or false")),
    ("invalid-utf8", b'[ampkit]\nwarehouse = "duckdb:///\xff\xfe.duckdb"\n', ("ampkit.toml",)),
    ("bad-url", b'[ampkit]\namplitude_url = "ftp://example.com"\n', ("ftp://example.com", "http")),
    ("bad-time-zone", b'[ampkit]\ntime_zone = "Mars/Olympus"\n', ("Mars/Olympus",)),
]


@pytest.mark.parametrize("content,needles", [pytest.param(c, n, id=i) for i, c, n in TOMLS])
def test_broken_ampkit_toml(content, needles, tmp_path, cli):
    (tmp_path / "ampkit.toml").write_bytes(content)  # the test's cwd
    code, _, stderr = cli("sync")
    line = one_line_error(code, stderr, *needles)
    assert "xoxb-123456789" not in line and "pasted-by-mistake" not in line


def test_explicit_config_file_that_does_not_exist(tmp_path, cli):
    code, _, stderr = cli("sync", env={"AMPKIT_CONFIG": str(tmp_path / "missing.toml")})
    one_line_error(code, stderr, "missing.toml", "does not exist")


def test_unknown_warehouse_url(cli):
    code, _, stderr = cli("--warehouse", "postgres://db/events", "sync")
    one_line_error(code, stderr, "postgres://db/events")


def test_a_backlog_of_large_rows_is_synced_in_slices_within_memory(wh_url, amp, prefix, rel, caplog):
    """Rows of ~3.5 KB each (16 properties of 200 characters): slices are cut by bytes as well as
    rows, so DuckDB's memory cap for a slice always leaves room for its sorted events."""
    props = "{" + ",".join(f'"p{i}":"{"x" * 200}"' for i in range(16)) + "}"
    rows = support.spread(prefix, 1, 30_000, NOW - HOUR, NOW, public_argument=props)
    support.insert(wh_url, rows)
    caplog.set_level(logging.INFO, logger="ampkit.sync")
    result = sync.run(support.config(wh_url, amp.url, **{**SETTINGS, "initial_lookback_hours": 2}), progress="none")
    support.identity(result)
    assert result.status == "ok" and result.accepted == len(rows), result.to_dict()
    slices = [r.getMessage() for r in caplog.records if r.getMessage().startswith("window done") and "event_time=" in r.getMessage()]
    assert len(slices) >= 2, "the backlog was not cut into slices by size"
    rel.delivered({r["insert_id"] for r in rows}, support.exported(amp.url, prefix), "large rows in slices")
    assert support.books(wh_url) == []
