"""The data map: which events go to Amplitude, and for those that don't, the named rule and why.

A YAML file, reviewed like code. Each rule names events (exact `events:` and/or glob `match:`
patterns, optionally only for one `source`), an `action` (`send` or `exclude`), a `reason`
category for exclusions and a short `note`. How a (name, source) pair is resolved:

1. rules that list the name exactly beat rules that match it by pattern;
2. a rule limited to the row's source beats one for every source;
3. otherwise the earlier rule in the file wins (and `check` reports the overlap).

Names no rule mentions follow `unknown_events`: `send` (and warn) or `hold`.
The map's version is the hash of its content, recorded with every run.
"""
from __future__ import annotations

import csv
import dataclasses
import datetime as dt
import fnmatch
import hashlib
import io
import logging
import re
from importlib import resources
from pathlib import Path
from typing import Iterable, Mapping

import yaml

from ampkit.errors import DataMapError

logger = logging.getLogger(__name__)

ACTIONS = ("send", "exclude")
REASONS = ("low_traffic", "backend", "excluded_family", "privacy", "before_start")
SOURCES = ("WEB", "CODEHOSTINTEGRATION", "BACKEND", "STATICWEB", "IDEEXTENSION")
RULE_KEYS = {"id", "action", "reason", "note", "events", "match", "source", "family"}
TOP_KEYS = {"version", "owner", "unknown_events", "rules"}
UNKNOWN_POLICIES = ("send", "hold")
# Built-in rules, not in the file: they apply whatever the map says.
BEFORE_START = "before_start"
UNKNOWN_HELD = "unknown_held"
DEFAULT_PATH = "datamap.yaml"


@dataclasses.dataclass(frozen=True)
class Rule:
    """One rule of the map."""

    id: str
    action: str
    reason: str | None
    note: str
    events: tuple[str, ...] = ()
    match: tuple[str, ...] = ()
    source: str | None = None
    family: str | None = None
    position: int = 0

    def hit(self, name: str, source: str | None) -> int | None:
        """How specifically this rule matches: 2 exact, 1 pattern, None no match (pure)."""
        if self.source is not None and self.source != (source or ""):
            return None
        if name in self.events:
            return 2
        if any(fnmatch.fnmatchcase(name, p) for p in self.match):
            return 1
        return None


@dataclasses.dataclass(frozen=True)
class Decision:
    """What the map says of one (name, source): send or not, by which rule and why."""

    action: str          # "send" | "exclude" | "hold"
    rule: str            # the rule id; "unknown" when no rule mentions the name
    reason: str | None

    @property
    def sends(self) -> bool:
        return self.action == "send"


@dataclasses.dataclass(frozen=True)
class DataMap:
    """A loaded, validated data map."""

    rules: tuple[Rule, ...]
    unknown_events: str
    version: str
    path: str
    owner: str = ""

    def decide(self, name: str, source: str | None) -> Decision:
        """The decision for one event name and source (pure)."""
        best = None
        for rule in self.rules:
            level = rule.hit(name, source)
            if level is None:
                continue
            rank = (level, rule.source is not None, -rule.position)
            if best is None or rank > best[0]:
                best = (rank, rule)
        if best is None:
            if self.unknown_events == "hold":
                return Decision("hold", UNKNOWN_HELD, None)
            return Decision("send", "unknown", None)
        rule = best[1]
        return Decision(rule.action, rule.id, rule.reason)

    def is_known(self, name: str, source: str | None) -> bool:
        return any(rule.hit(name, source) is not None for rule in self.rules)

    def excluded_names(self) -> list[Rule]:
        """The exclusion rules, in file order (for the onboarding notebook and docs)."""
        return [r for r in self.rules if r.action == "exclude"]


def default_path() -> Path:
    return Path(str(resources.files("ampkit.resources").joinpath(DEFAULT_PATH)))


def load(path: str | Path | None = None) -> DataMap:
    """Read and validate a data map file (I/O); raises DataMapError naming the file and rule."""
    p = Path(path) if path else default_path()
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise DataMapError(f"data map {p} cannot be read: {exc.strerror}") from None
    return parse(text, str(p))


def parse(text: str, path: str = "<data map>") -> DataMap:
    """Parse and validate data map YAML text (pure)."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise DataMapError(f"{path} is not valid YAML: {str(exc).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise DataMapError(f"{path}: expected a mapping with 'rules'")
    unknown_top = set(data) - TOP_KEYS
    if unknown_top:
        raise DataMapError(f"{path}: unknown key(s) {sorted(unknown_top)}; allowed: {sorted(TOP_KEYS)}")
    policy = data.get("unknown_events", "send")
    if policy not in UNKNOWN_POLICIES:
        raise DataMapError(f"{path}: unknown_events must be one of {UNKNOWN_POLICIES}, got {policy!r}")
    raw_rules = data.get("rules")
    if not isinstance(raw_rules, list) or not raw_rules:
        raise DataMapError(f"{path}: 'rules' must be a non-empty list")
    rules, seen = [], set()
    for i, raw in enumerate(raw_rules):
        rules.append(_rule(raw, i, path, seen))
    version = hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]
    return DataMap(tuple(rules), policy, version, path, str(data.get("owner", "")))


def _rule(raw, i: int, path: str, seen: set) -> Rule:
    where = f"{path}: rule #{i + 1}"
    if not isinstance(raw, dict):
        raise DataMapError(f"{where} must be a mapping")
    rid = raw.get("id")
    if not isinstance(rid, str) or not re.match(r"^[a-z0-9_.:-]+$", rid or ""):
        raise DataMapError(f"{where}: 'id' must be a lowercase name like 'code_insights'")
    where = f"{path}: rule '{rid}'"
    if rid in seen or rid in (BEFORE_START, UNKNOWN_HELD, "unknown"):
        raise DataMapError(f"{where}: duplicate or reserved id")
    seen.add(rid)
    extra = set(raw) - RULE_KEYS
    if extra:
        raise DataMapError(f"{where}: unknown key(s) {sorted(extra)}; allowed: {sorted(RULE_KEYS)}")
    action = raw.get("action")
    if action not in ACTIONS:
        raise DataMapError(f"{where}: action must be one of {ACTIONS}, got {action!r}")
    reason = raw.get("reason")
    if action == "exclude" and reason not in REASONS:
        raise DataMapError(f"{where}: an exclusion needs a reason from {REASONS}, got {reason!r}")
    if action == "send" and reason is not None:
        raise DataMapError(f"{where}: a send rule takes no reason")
    events = _strings(raw.get("events", []), f"{where}: events")
    match = _strings(raw.get("match", []), f"{where}: match")
    if not events and not match:
        raise DataMapError(f"{where}: needs 'events' or 'match'")
    source = raw.get("source")
    if source is not None and source not in SOURCES:
        raise DataMapError(f"{where}: source must be one of {SOURCES}, got {source!r}")
    return Rule(rid, action, reason, str(raw.get("note", "")), events, match, source, raw.get("family"), i)


def _strings(value, where: str) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise DataMapError(f"{where} must be a list of non-empty strings")
    return tuple(value)


@dataclasses.dataclass(frozen=True)
class Finding:
    """One problem `check` found: 'error' fails the check, 'warning' does not."""

    level: str
    message: str


def check(data_map: DataMap, seen: Iterable[tuple[str, str | None, int]] = ()) -> list[Finding]:
    """Validate a loaded map against itself and against (name, source, count) seen in the warehouse (pure).

    Reports overlapping rules that disagree on an observed or listed event, rules that match
    nothing observed, and observed events the map never mentions.
    """
    findings = []
    seen = list(seen)
    probes = {(n, None) for r in data_map.rules for n in r.events} | {(n, s) for n, s, _ in seen}
    reported = set()
    for name, source in sorted(probes, key=lambda x: (x[0], x[1] or "")):
        hits = [(r.hit(name, source), r) for r in data_map.rules]
        hits = [(lvl, r) for lvl, r in hits if lvl is not None]
        for lvl_a, a in hits:
            for lvl_b, b in hits:
                if a.position < b.position and a.action != b.action and lvl_a == lvl_b \
                        and (a.source is None) == (b.source is None) and (a.id, b.id) not in reported:
                    reported.add((a.id, b.id))
                    findings.append(Finding("error", f"rules '{a.id}' and '{b.id}' overlap on '{name}' and disagree ({a.action} vs {b.action}); make one more specific"))
    if seen:
        names = {(n, s) for n, s, _ in seen}
        for rule in data_map.rules:
            if not any(rule.hit(n, s) is not None for n, s in names):
                findings.append(Finding("warning", f"rule '{rule.id}' matches no event seen in the warehouse"))
        for name, source, count in sorted(seen, key=lambda x: -x[2]):
            if not data_map.is_known(name, source):
                findings.append(Finding("warning" if data_map.unknown_events == "send" else "error",
                                        f"'{name}' ({source}, {count:,} rows) is not in the data map; policy: {data_map.unknown_events}"))
    return findings


@dataclasses.dataclass(frozen=True)
class Suggestion:
    """A proposed low_traffic exclusion: the event, its rows, per day over the days with data, when
    it was last seen, and, when it is not proposed after all, the analysis that needs it."""

    name: str
    source: str | None
    rows: int
    per_day: float
    last_seen: dt.datetime | None = None
    needed_by: str = ""


def totals(daily: Iterable[dict]) -> tuple[list[tuple[str, str | None, int, dt.datetime | None]], int]:
    """datamap_daily.sql's rows per day as (name, source, rows, last seen) per event, and how many
    days have data (pure)."""
    per_event: dict[tuple, tuple[int, dt.datetime | None]] = {}
    days = set()
    for r in daily:
        days.add(r["day"])
        rows, last = per_event.get((r["name"], r["source"]), (0, None))
        per_event[(r["name"], r["source"])] = (rows + r["row_count"], max(filter(None, (last, r["last_seen"])), default=None))
    return [(n, s, rows, last) for (n, s), (rows, last) in per_event.items()], len(days)


def suggest(data_map: DataMap, volumes: Iterable[tuple[str, str | None, int, dt.datetime | None]], days: int,
            threshold_per_day: float, needed: Mapping[str, str] | None = None) -> list[Suggestion]:
    """Events now sent whose volume is under `threshold_per_day` over `days`, the days that have data
    (not the days asked for: two weeks of data are not four weeks of traffic). An event an analysis
    depends on (`needed`: name -> which analysis) comes back with `needed_by` set, not proposed (pure)."""
    needed = needed or {}
    out = []
    for name, source, rows, last_seen in volumes:
        per_day = rows / max(days, 1)
        if per_day < threshold_per_day and data_map.decide(name, source).sends:
            out.append(Suggestion(name, source, rows, per_day, last_seen, needed.get(name, "")))
    return sorted(out, key=lambda s: (bool(s.needed_by), s.per_day, s.name))


def from_spreadsheet(text: str) -> str:
    """Convert the team's old spreadsheet (CSV: event name, sent or not, reason) into data map YAML (pure).

    Accepted headers (case-insensitive): `event`/`event name`/`name`, `sent`/`sent to amplitude`/`status`,
    `reason`/`why`, optional `note`. "Sent" values: yes/y/true/sent/1 vs no/n/false/excluded/0.
    Reasons are mapped to the categories by keyword (backend, low traffic, insights, privacy).
    """
    rows = list(csv.DictReader(io.StringIO(text)))
    if not rows:
        raise DataMapError("spreadsheet CSV has no rows")
    headers = {h.strip().lower(): h for h in rows[0].keys() if h}
    name_col = next((headers[h] for h in ("event", "event name", "event_name", "name") if h in headers), None)
    sent_col = next((headers[h] for h in ("sent", "sent to amplitude", "status", "in amplitude") if h in headers), None)
    reason_col = next((headers[h] for h in ("reason", "why", "notes") if h in headers), None)
    if not name_col or not sent_col:
        raise DataMapError(f"spreadsheet CSV needs an event column and a sent column; found {list(rows[0].keys())}")
    send, excluded = [], {}
    for line, row in enumerate(rows, start=2):
        name = (row.get(name_col) or "").strip()
        if not name:
            continue
        flag = (row.get(sent_col) or "").strip().lower()
        if flag in ("yes", "y", "true", "sent", "1", "x"):
            send.append(name)
        elif flag in ("no", "n", "false", "excluded", "0", "not sent", ""):
            why = (row.get(reason_col) or "") if reason_col else ""
            excluded.setdefault(_reason_category(why), []).append((name, why.strip()))
        else:
            raise DataMapError(f"spreadsheet line {line}: cannot read sent value {flag!r} for '{name}'")
    doc = {"version": 1, "unknown_events": "send", "rules": []}
    if send:
        doc["rules"].append({"id": "imported_send", "action": "send", "note": "Sent per the spreadsheet", "events": sorted(set(send))})
    for reason, items in sorted(excluded.items()):
        notes = sorted({why for _, why in items if why})
        doc["rules"].append({"id": f"imported_{reason}", "action": "exclude", "reason": reason,
                             "note": "; ".join(notes)[:300] or "Excluded per the spreadsheet",
                             "events": sorted({n for n, _ in items})})
    return yaml.safe_dump(doc, sort_keys=False, allow_unicode=True)


def _reason_category(text: str) -> str:
    t = text.lower()
    if "backend" in t or "non-ui" in t or "server" in t:
        return "backend"
    if "insight" in t or "family" in t or "enterprise" in t:
        return "excluded_family"
    if "privacy" in t or "pii" in t or "private" in t:
        return "privacy"
    if "before" in t or "start" in t:
        return "before_start"
    return "low_traffic"
