import pytest

from ampkit import datamap
from ampkit.errors import DataMapError

BASE = """
version: 1
unknown_events: send
rules:
  - id: ui
    action: send
    events: [SearchSubmitted, SignUpSucceeded]
    match: ["View*"]
  - id: backend
    action: exclude
    reason: backend
    source: BACKEND
    match: ["*"]
  - id: insights
    action: exclude
    reason: excluded_family
    match: ["*Insight*"]
"""


def test_exact_beats_pattern_and_source_specific_beats_general():
    m = datamap.parse(BASE)
    assert m.decide("SignUpSucceeded", "BACKEND") == datamap.Decision("send", "ui", None)
    assert m.decide("search.latencies.literal", "BACKEND") == datamap.Decision("exclude", "backend", "backend")
    assert m.decide("ViewInsights", "WEB") == datamap.Decision("send", "ui", None)  # earlier pattern wins
    assert m.decide("InsightAddition", "WEB").rule == "insights"
    assert m.decide("Unheard", "WEB") == datamap.Decision("send", "unknown", None)


def test_hold_policy_for_unknown_events():
    m = datamap.parse(BASE.replace("unknown_events: send", "unknown_events: hold"))
    assert m.decide("Unheard", "WEB") == datamap.Decision("hold", datamap.UNKNOWN_HELD, None)


def test_version_is_content_hash():
    assert datamap.parse(BASE).version == datamap.parse(BASE).version
    assert datamap.parse(BASE).version != datamap.parse(BASE + "\n# changed\n").version


@pytest.mark.parametrize("text, message", [
    ("rules: [", "not valid YAML"),
    ("rules: []", "non-empty list"),
    ("colour: red\nrules: []", "unknown key"),
    ("rules:\n  - id: a\n    action: drop\n    events: [x]", "action must be"),
    ("rules:\n  - id: a\n    action: exclude\n    events: [x]", "needs a reason"),
    ("rules:\n  - id: a\n    action: send\n    reason: backend\n    events: [x]", "takes no reason"),
    ("rules:\n  - id: a\n    action: send", "needs 'events' or 'match'"),
    ("rules:\n  - id: a\n    action: send\n    events: [x]\n  - id: a\n    action: send\n    events: [y]", "duplicate"),
    ("rules:\n  - id: a\n    action: send\n    source: MOBILE\n    events: [x]", "source must be"),
    ("rules:\n  - id: a\n    action: send\n    events: [x]\n    colour: red", "unknown key"),
    ("unknown_events: maybe\nrules:\n  - id: a\n    action: send\n    events: [x]", "unknown_events"),
])
def test_invalid_maps_name_the_problem(text, message):
    with pytest.raises(DataMapError, match=message):
        datamap.parse(text, "map.yaml")


def test_check_reports_overlaps_and_unmentioned_events():
    text = BASE + """
  - id: tiny
    action: exclude
    reason: low_traffic
    match: ["View*"]
"""
    m = datamap.parse(text)
    findings = datamap.check(m, [("ViewBlob", "WEB", 100), ("Mystery", "WEB", 5)])
    messages = [f.message for f in findings]
    assert any("'ui' and 'tiny' overlap on 'ViewBlob'" in msg for msg in messages)
    assert any("'Mystery'" in msg and "not in the data map" in msg for msg in messages)
    assert any(f.level == "error" for f in findings)


def test_shipped_map_is_valid_and_covers_the_catalogue():
    import csv
    from importlib import resources
    m = datamap.load()
    rows = list(csv.DictReader(resources.files("ampkit.resources").joinpath("event_catalogue.csv").read_text().splitlines()))
    seen = [(r["name"].replace("<name>", "python").replace("<spec>", "python"), s, 1)
            for r in rows for s in r["source"].split("|")]
    assert datamap.check(m, seen) == []
    for r in rows:
        if r["is_code_insights"] == "true":
            assert m.decide(r["name"], "WEB").reason == "excluded_family"
    assert m.decide("codeintel.lsifHover", "WEB").rule == "codeintel_deny_list"
    assert m.decide("search.latencies.literal", "BACKEND").reason == "backend"
    assert m.decide("SignUpSucceeded", "BACKEND").sends
    assert m.decide("SearchSubmitted", "WEB").sends


def test_suggest_low_traffic():
    m = datamap.parse(BASE)
    out = datamap.suggest(m, [("SearchSubmitted", "WEB", 7000, None), ("ViewRare", "WEB", 14, None), ("X", "BACKEND", 1, None),
                              ("SignUpFailed", "WEB", 7, None)], 7, 10, {"SignUpFailed": "the sign-up funnel"})
    assert [(s.name, s.per_day, s.needed_by) for s in out] == [("ViewRare", 2.0, ""), ("SignUpFailed", 1.0, "the sign-up funnel")]


def test_import_spreadsheet_round_trips():
    csv_text = "Event name,Sent to Amplitude,Reason\nSearchSubmitted,yes,\nViewInsights,no,Code insights family\nsearch.latencies.file,no,backend event\nRareThing,no,very low traffic\n"
    text = datamap.from_spreadsheet(csv_text)
    m = datamap.parse(text)
    assert m.decide("SearchSubmitted", "WEB").sends
    assert m.decide("ViewInsights", "WEB").reason == "excluded_family"
    assert m.decide("search.latencies.file", "BACKEND").reason == "backend"
    assert m.decide("RareThing", "WEB").reason == "low_traffic"


def test_import_rejects_unreadable_spreadsheet():
    with pytest.raises(DataMapError, match="event column"):
        datamap.from_spreadsheet("foo,bar\n1,2\n")
    with pytest.raises(DataMapError, match="line 2"):
        datamap.from_spreadsheet("event,sent\nX,perhaps\n")
