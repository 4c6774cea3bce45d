"""Routing: which tool answers which question, and where each event lives (Amplitude or Looker only).

The routing table is data (`resources/routing.yaml`, merged with a company file named by
`$AMPKIT_ROUTING`), shared by the onboarding notebook, the README and `ampkit where`. What is
kept out of Amplitude is never written down here: it is read from the data map the sync uses,
and weighed with warehouse volumes, so this page changes when the map does.
"""
from __future__ import annotations

import dataclasses
import difflib
import os
import re
from importlib import resources
from pathlib import Path
from typing import Iterable, Mapping

import click
import yaml

from ampkit import catalogue, datamap as datamaps
from ampkit.config import Config
from ampkit.errors import AmpkitError, ConfigError

ENV_VAR = "AMPKIT_ROUTING"
DEFAULT_FILE = "routing.yaml"
TOP_KEYS = {"version", "tools", "looker_only", "topics"}
TOPIC_KEYS = {"id", "topic", "tool", "why", "example", "keywords", "link", "events"}
TOPIC_REQUIRED = ("topic", "tool", "why", "example")
TOOL_KEYS = {"link", "why"}
SOURCE_KEYS = {"id", "what", "where"}
# How sure a match must be (0..1): half the words of a question found among a topic's words.
MATCH_THRESHOLD = 0.5
# Words that say nothing about the topic ("how do I see the retention of users on cloud").
STOPWORDS = {"a", "an", "and", "are", "at", "by", "can", "cloud", "do", "does", "for", "from", "how", "i", "in",
             "is", "it", "many", "me", "much", "my", "of", "on", "or", "our", "see", "show", "the", "to", "we",
             "what", "where", "which", "who", "why", "with", "sourcegraph", "com", "dotcom", "analysis", "chart",
             "data", "find", "look", "up", "per"}
REASON_LABELS = {"low_traffic": "low traffic", "backend": "backend, not UI", "excluded_family": "excluded family",
                 "privacy": "privacy", "before_start": "before the Amplitude start date", None: "held: not in the map"}


@dataclasses.dataclass(frozen=True)
class Tool:
    """One analytics tool: why it exists and where it is."""

    name: str
    why: str
    link: str = ""


@dataclasses.dataclass(frozen=True)
class Topic:
    """One row of the routing table: a kind of analysis, the tool that answers it, and why."""

    id: str
    topic: str
    tool: str
    why: str
    example: str
    keywords: tuple[str, ...] = ()
    link: str = ""
    events: tuple[str, ...] = ()   # the events its example needs in the tool (kept by `datamap suggest`)


@dataclasses.dataclass(frozen=True)
class Source:
    """Data that only Looker has."""

    id: str
    what: str
    where: str = ""


@dataclasses.dataclass(frozen=True)
class Routing:
    """The routing table: tools, topics, and the data only Looker has."""

    tools: dict[str, Tool]
    topics: tuple[Topic, ...]
    looker_only: tuple[Source, ...]
    files: tuple[str, ...]


# --- loading ----------------------------------------------------------------------------------

def default_path() -> Path:
    """The routing table shipped with ampkit."""
    return Path(str(resources.files("ampkit.resources").joinpath(DEFAULT_FILE)))


def load(path: str | os.PathLike | None = None, env: Mapping[str, str] | None = None) -> Routing:
    """The shipped table merged with the company file: `path`, else `$AMPKIT_ROUTING`, if any (I/O)."""
    env = os.environ if env is None else env
    company = path or env.get(ENV_VAR) or None
    docs = [(_read(default_path()), str(default_path()))]
    if company:
        docs.append((_read(Path(company)), str(company)))
    return merge(docs)


def _read(path: Path) -> dict:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"routing file {path} cannot be read: {exc.strerror}; check ${ENV_VAR}") from None
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"routing file {path} is not valid YAML: {str(exc).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"routing file {path}: expected a mapping with 'topics'")
    return data


def merge(docs: Iterable[tuple[dict, str]]) -> Routing:
    """Merge routing documents in order (pure): later tools and topics override earlier ones field by field."""
    tools: dict[str, dict] = {}
    topics: dict[str, dict] = {}
    sources: dict[str, dict] = {}
    files = []
    for data, where in docs:
        files.append(where)
        unknown = set(data) - TOP_KEYS
        if unknown:
            raise ConfigError(f"routing file {where}: unknown key(s) {sorted(unknown)}; allowed: {sorted(TOP_KEYS)}")
        for name, raw in (data.get("tools") or {}).items():
            _check_keys(raw, TOOL_KEYS, f"{where}: tool '{name}'")
            tools.setdefault(name, {}).update(raw)
        for raw in data.get("looker_only") or []:
            _check_keys(raw, SOURCE_KEYS, f"{where}: looker_only entry")
            sources.setdefault(_id(raw, where), {}).update(raw)
        for raw in data.get("topics") or []:
            _check_keys(raw, TOPIC_KEYS, f"{where}: topic")
            topics.setdefault(_id(raw, where), {}).update(raw)
    built_tools = {name: Tool(name, str(raw.get("why", "")).strip(), _link(raw.get("link"), f"tool '{name}'"))
                   for name, raw in tools.items()}
    built_topics = []
    for tid, raw in topics.items():
        missing = [k for k in TOPIC_REQUIRED if not raw.get(k)]
        if missing:
            raise ConfigError(f"routing topic '{tid}' needs {', '.join(missing)} (a company file that adds a topic gives them all)")
        if raw["tool"] not in built_tools:
            raise ConfigError(f"routing topic '{tid}': tool '{raw['tool']}' is not one of {sorted(built_tools)}")
        keywords = raw.get("keywords") or []
        events = raw.get("events") or []
        for name, value in (("keywords", keywords), ("events", events)):
            if not isinstance(value, list) or not all(isinstance(k, str) for k in value):
                raise ConfigError(f"routing topic '{tid}': {name} must be a list of words")
        built_topics.append(Topic(tid, str(raw["topic"]), raw["tool"], str(raw["why"]).strip(), str(raw["example"]).strip(),
                                  tuple(keywords), _link(raw.get("link"), f"topic '{tid}'"), tuple(events)))
    if not built_topics:
        raise ConfigError("the routing table has no topics")
    built_sources = tuple(Source(sid, str(raw.get("what", sid)), str(raw.get("where", ""))) for sid, raw in sources.items())
    return Routing(built_tools, tuple(built_topics), built_sources, tuple(files))


def _check_keys(raw, allowed: set, where: str) -> None:
    if not isinstance(raw, dict):
        raise ConfigError(f"routing file {where} must be a mapping")
    extra = set(raw) - allowed
    if extra:
        raise ConfigError(f"routing file {where}: unknown key(s) {sorted(extra)}; allowed: {sorted(allowed)}")


def _id(raw: dict, where: str) -> str:
    value = raw.get("id")
    if not isinstance(value, str) or not re.fullmatch(r"[a-z0-9_]+", value):
        raise ConfigError(f"routing file {where}: every entry needs an 'id' like 'signup_funnel'")
    return value


def _link(value, what: str) -> str:
    if value in (None, ""):
        return ""
    if not isinstance(value, str) or not re.match(r"^https?://\S+$", value):
        raise ConfigError(f"routing {what}: link {value!r} is not an http(s) URL")
    return value


# --- finding a topic --------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Match:
    """A topic and how well a question matched it (0..1)."""

    topic: Topic
    score: float


def find(routing: Routing, question: str) -> list[Match]:
    """Topics that answer `question`, best first; empty when none is close enough (pure).

    Keywords, not meaning: each word of the question is looked up among a topic's name and
    keywords (exactly, by a shared stem of 4+ letters, or by spelling within difflib's 0.8),
    and counts half if only its example or reason has it.
    """
    words = _words(question)
    if not words:
        return []
    matches = []
    for topic in routing.topics:
        strong = set(_words(" ".join((topic.topic, topic.id.replace("_", " "), *topic.keywords))))
        weak = set(_words(f"{topic.example} {topic.why}"))
        score = sum(max(_closeness(w, strong), 0.5 * _closeness(w, weak)) for w in words) / len(words)
        if score >= MATCH_THRESHOLD:
            matches.append(Match(topic, round(score, 3)))
    return sorted(matches, key=lambda m: -m.score)


def _words(text: str) -> list[str]:
    # "sign-up", "sign up" and "signup" are one word; so are "on-prem" and "onprem".
    text = re.sub(r"(?<=[a-z])[-_](?=[a-z])", "", text.lower())
    raw = re.findall(r"[a-z0-9]+", text)
    joined = [a + b for a, b in zip(raw, raw[1:]) if a + b in JOINED]
    return [_stem(w) for w in raw + joined if w not in STOPWORDS]


JOINED = {"signup", "signin", "onprem", "selfhosted"}


def _stem(word: str) -> str:
    return word[:-1] if len(word) > 3 and word.endswith("s") and not word.endswith("ss") else word


def _closeness(word: str, vocabulary: set[str]) -> float:
    if word in vocabulary:
        return 1.0
    best = 0.0
    for v in vocabulary:
        if len(word) >= 4 and len(v) >= 4 and (v.startswith(word) or word.startswith(v)):
            best = max(best, 0.9)
        elif len(word) >= 5:
            ratio = difflib.SequenceMatcher(None, word, v).ratio()
            if ratio >= 0.8:
                # Typos rarely touch the first letters: a shared start breaks ties ("retension").
                prefix = len(os.path.commonprefix([word, v]))
                best = max(best, 0.8 * ratio + 0.02 * min(prefix, 4))
    return best


def render(match: Match, routing: Routing) -> str:
    """One topic as the CLI prints it: tool, why, example, link (pure)."""
    tool = routing.tools[match.topic.tool]
    return "\n".join([f"{match.topic.topic}: use {match.topic.tool}",
                      f"  why:     {match.topic.why}",
                      f"  example: {match.topic.example}",
                      f"  link:    {match.topic.link or tool.link or '(none configured; set one in $' + ENV_VAR + ')'}"])


@click.command("where")
@click.argument("question", nargs=-1)
@click.option("--routing", "routing_path", type=click.Path(dir_okay=False),
              help=f"A company routing file (${ENV_VAR}); default: the table shipped with ampkit.")
def where(question, routing_path):
    """Which tool answers a question: `ampkit where "signup funnel"`. Without a question, the whole table."""
    try:
        table = load(routing_path)
    except AmpkitError as exc:
        raise click.ClickException(str(exc)) from None
    text = " ".join(question).strip()
    if not text:
        for topic in table.topics:
            click.echo(f"{topic.topic:<48} {topic.tool:<10} {topic.link or table.tools[topic.tool].link}")
        return
    matches = find(table, text)
    if not matches:
        click.echo(f'No topic matches "{text}". Topics:', err=True)
        for topic in table.topics:
            click.echo(f"  {topic.topic} ({topic.tool})", err=True)
        click.get_current_context().exit(1)
    click.echo(render(matches[0], table))
    others = matches[1:3]
    if others:
        click.echo("  see also: " + "; ".join(f"{m.topic.topic} ({m.topic.tool})" for m in others))


# --- the routing table and tools, as text ------------------------------------------------------

def tools_markdown(routing: Routing) -> str:
    """Why two tools, one paragraph each (pure)."""
    return "\n\n".join(f"**{t.name}**: {t.why}" + (f" [{_host(t.link)}]({t.link})" if t.link else "")
                       for t in routing.tools.values())


def markdown(routing: Routing) -> str:
    """The routing table as a Markdown table: question, tool, example, link (pure)."""
    lines = ["| Type of analysis | Tool | Why | Example | Link |", "|---|---|---|---|---|"]
    for t in routing.topics:
        link = t.link or routing.tools[t.tool].link
        lines.append(f"| {_cell(t.topic)} | **{t.tool}** | {_cell(t.why)} | {_cell(t.example)} | "
                     + (f"[{_host(link)}]({link})" if link else "") + " |")
    return "\n".join(lines)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _host(link: str) -> str:
    return re.sub(r"^https?://", "", link).rstrip("/")


# --- what is in Amplitude, and what is kept out ------------------------------------------------

def in_amplitude(config: Config, data_map: datamaps.DataMap) -> str:
    """What Amplitude holds and how it gets there, from the config and the data map's send rules (pure)."""
    shipped = Path(data_map.path) == datamaps.default_path()
    map_name = "the data map shipped with ampkit" if shipped else f"the data map `{Path(data_map.path).name}` ($AMPKIT_DATA_MAP)"
    sends = [r for r in data_map.rules if r.action == "send"]
    lines = [
        f"Amplitude holds **Sourcegraph Cloud UI events from {config.amplitude_start_date:%Y-%m-%d}** "
        f"(the `amplitude_start_date` setting) onwards. Nothing older is there; Looker has it all.",
        "",
        "How an event gets there: the app writes it to `event_logs` in the warehouse; a scheduled query "
        "copies new rows into `amplitude_events` every hour; the hourly sync (`notebooks/hourly_sync.ipynb`, "
        f"`ampkit sync`) sends those rows to Amplitude, except what {map_name} keeps out "
        f"(version `{data_map.version}`, owner {data_map.owner or 'not set'}). "
        f"Amplitude's days are in the project's time zone, **{config.time_zone}** here.",
        "",
        "What the data map sends:",
    ]
    for rule in sends:
        lines.append(f"- `{rule.id}`: {rule.note}")
    if data_map.unknown_events == "send":
        lines.append("- events no rule names: sent, with a warning in every sync run")
    return "\n".join(lines)


@dataclasses.dataclass(frozen=True)
class KeptOut:
    """One rule of the data map that keeps events out of Amplitude, and what it kept out."""

    rule: str
    reason: str | None
    note: str
    names: str            # what the rule names: events, patterns, source
    rows: int             # rows it kept out in the period
    share: float          # of all rows in the period
    top: tuple[str, ...]  # the busiest event types it kept out


def kept_out(data_map: datamaps.DataMap, volumes: Iterable[tuple[str, str | None, int]]) -> list[KeptOut]:
    """Every rule that keeps events out, in file order, with the rows it decided (pure).

    `volumes` is the small (name, source, rows) aggregate from the warehouse; each pair is
    decided by the data map exactly as the sync decides it.
    """
    per_rule: dict[str, dict[str, int]] = {}
    total = 0
    for name, source, rows in volumes:
        total += int(rows)
        decision = data_map.decide(name or "", source)
        if not decision.sends:
            per_rule.setdefault(decision.rule, {})
            per_rule[decision.rule][name] = per_rule[decision.rule].get(name, 0) + int(rows)
    out = []
    for rule in data_map.excluded_names():
        names = per_rule.get(rule.id, {})
        rows = sum(names.values())
        out.append(KeptOut(rule.id, rule.reason, rule.note, _describe(rule), rows, rows / total if total else 0.0, _top(names)))
    held = per_rule.get(datamaps.UNKNOWN_HELD)
    if held:
        rows = sum(held.values())
        out.append(KeptOut(datamaps.UNKNOWN_HELD, None, "Events no rule names, held back by `unknown_events: hold`.",
                           "any event the map does not name", rows, rows / total if total else 0.0, _top(held)))
    return out


def _describe(rule: datamaps.Rule) -> str:
    parts = []
    if rule.events:
        shown = ", ".join(rule.events[:4]) + (f" and {len(rule.events) - 4} more" if len(rule.events) > 4 else "")
        parts.append(shown)
    if rule.match:
        parts.append("names like " + ", ".join(rule.match))
    text = "; ".join(parts)
    return f"{text} (from {rule.source})" if rule.source else text


def _top(names: dict[str, int], n: int = 3) -> tuple[str, ...]:
    return tuple(name for name, _ in sorted(names.items(), key=lambda kv: (-kv[1], kv[0]))[:n])


def looker_only(routing: Routing, rules: list[KeptOut], days: int) -> str:
    """What only Looker has: the table's sources, then the events the data map keeps out (pure)."""
    lines = [f"- **{s.what}**" + (f": {s.where}" if s.where else "") for s in routing.looker_only]
    kept = [r for r in rules if r.rows]
    total = sum(r.rows for r in kept)
    detail = ", ".join(f"`{r.rule}` {r.rows:,}" for r in kept) or "none in this period"
    lines.append(f"- **The events the data map keeps out** (above): {total:,} rows in the last {days} days ({detail}), "
                 "and everything before the Amplitude start date")
    return "\n".join(lines)


def reason_label(reason: str | None) -> str:
    """A data-map reason in words ("backend" -> "backend, not UI")."""
    return REASON_LABELS.get(reason, reason or "")


# --- where each event family lives ------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Family:
    """Where one event family lives: its rows and event types sent to Amplitude or kept out (by rule)."""

    name: str
    rows_sent: int
    rows_kept_out: dict[str, int]
    types_sent: int
    types_kept_out: int

    @property
    def lives_in(self) -> str:
        kept = sum(self.rows_kept_out.values())
        if not kept and not self.types_kept_out:
            return "Amplitude"
        if not self.rows_sent and not self.types_sent:
            return "Looker only"
        return "Amplitude, part Looker only"




def families(data_map: datamaps.DataMap, volumes: Iterable[tuple[str, str | None, int]],
             events: list[catalogue.CatalogueEvent] | None = None) -> list[Family]:
    """Per catalogue family (`area`): what the data map sends and keeps out, by rows and event types (pure).

    Event types come from the catalogue (so a family shows even without traffic); rows come
    from `volumes`. Everything, sent or not, is also in Looker.
    """
    events = catalogue.events() if events is None else events
    lookup = catalogue.family_of(events)
    sent: dict[str, int] = {}
    kept: dict[str, dict[str, int]] = {}
    types_sent: dict[str, set] = {}
    types_kept: dict[str, set] = {}
    for e in events:
        probe = re.sub(r"<[a-z]+>", "x", e.name)
        sends = any(data_map.decide(probe, s).sends for s in e.sources)
        (types_sent if sends else types_kept).setdefault(e.family, set()).add(e.name)
    for name, source, rows in volumes:
        family = lookup(name or "") or catalogue.UNCATALOGUED
        decision = data_map.decide(name or "", source)
        if decision.sends:
            sent[family] = sent.get(family, 0) + int(rows)
        else:
            rules = kept.setdefault(family, {})
            rules[decision.rule] = rules.get(decision.rule, 0) + int(rows)
    names = set(types_sent) | set(types_kept) | set(sent) | set(kept)
    out = [Family(n, sent.get(n, 0), dict(kept.get(n, {})), len(types_sent.get(n, ())), len(types_kept.get(n, ())))
           for n in names]
    return sorted(out, key=lambda f: (-(f.rows_sent + sum(f.rows_kept_out.values())), f.name))
