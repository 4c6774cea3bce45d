"""Routing: which tool answers which question, and where each event lives (Amplitude or Looker only).

The routing table is data (`resources/routing.yaml`, merged with a company file named by
`$AMPKIT_ROUTING`), shared by the onboarding notebook, the README and `ampkit where`. What is
kept out of Amplitude is never written down here: it is read from the data map the sync uses,
and weighed with warehouse volumes, so this page changes when the map does.

`route()` answers a question as analysts type it, in this order, and says which fact decided:
where the data comes from (pings, Postgres, Google Analytics, Salesforce are Looker's), when
(before `amplitude_start_date` only Looker has it), which events (the catalogue's names,
synonyms and families, asked of the live data map) and what kind of question (the table's
topics). Words match with typos allowed (rapidfuzz); with too little to go on it is "not sure".
"""
from __future__ import annotations

import collections
import dataclasses
import datetime as dt
import os
import re
from importlib import resources
from pathlib import Path
from typing import Any, Iterable, Mapping

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
SOURCE_KEYS = {"id", "what", "where", "keywords"}
# How sure a topic must be when it is all a question gives (0..1): its words cover half the question's.
MATCH_THRESHOLD = 0.5
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
    keywords: tuple[str, ...] = ()   # what analysts call it ("self-hosted", "SFDC", "GA")


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
    built_sources = tuple(Source(sid, str(raw.get("what", sid)), str(raw.get("where", "")),
                                 tuple(str(k) for k in raw.get("keywords") or ())) for sid, raw in sources.items())
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


# --- answering a question: which tool, and the fact that decided ------------------------------

# "sign-up", "sign up" and "signup" are one word; so are "on-prem" and "onprem".
JOINED = {"signup", "signin", "onprem", "selfhosted"}
# The past-tense verbs event names end with: what is left names the thing ("Access Token").
VERB_ENDING = r" (Created|Clicked|Updated|Submitted|Toggled|Installed|Saved|Opened|Shown|Added|Deleted|Closed|Selected|Loaded)$"
ABBREVIATIONS = {"ppl": "people", "wks": "weeks", "wk": "week", "qtr": "quarter", "mo": "month", "mos": "months",
                 "ext": "extension", "exts": "extensions", "repo": "repository", "repos": "repositories",
                 "thru": "through", "til": "until", "devs": "users", "dev": "user"}
NOT_SURE = "not sure"
BOTH = "both"
# Words that carry no evidence on their own (they never match a term by themselves).
STOP = {"how", "many", "much", "the", "a", "an", "of", "per", "by", "in", "on", "at", "to", "for", "and", "or",
        "last", "this", "next", "week", "weeks", "month", "months", "day", "days", "year", "years", "today",
        "yesterday", "daily", "weekly", "monthly", "quarter", "q1", "q2", "q3", "q4", "trend", "growth", "count",
        "counts", "number", "numbers", "total", "who", "what", "when", "which", "did", "do", "does", "is", "are",
        "was", "were", "we", "our", "us", "most", "more", "than", "with", "from", "after", "their", "first", "new",
        "people", "users", "user", "events", "event", "p95", "p50", "rate", "over", "time", "often", "there",
        "cloud", "sourcegraph", "com", "dotcom", "i", "me", "my", "it", "can", "see", "show", "where", "why",
        "analysis", "chart", "data", "look", "up", "get", "use"}
MONTHS = {m: i for i, m in enumerate(("january", "february", "march", "april", "may", "june", "july", "august",
                                       "september", "october", "november", "december"), start=1)}
MONTHS.update({m[:3]: i for m, i in list(MONTHS.items())})


@dataclasses.dataclass(frozen=True)
class Route:
    """Where a question is answered, and why: the facts in the order they were weighed, the first
    of them the one that decided; the events the question names and where each lives."""

    question: str
    answer: str                          # Amplitude | Looker | both | not sure
    decided_by: str                      # source | time | events | question | none
    facts: tuple[str, ...]
    sent: tuple[str, ...] = ()           # events it names that Amplitude has
    kept_out: tuple[tuple[str, str], ...] = ()   # (event, rule) it names that only Looker has
    topic: Topic | None = None
    alternatives: tuple[str, ...] = ()   # when not sure: the two closest routes, and why

    @property
    def confident(self) -> bool:
        return self.answer != NOT_SURE

    def to_dict(self) -> dict[str, Any]:
        return {"question": self.question, "answer": self.answer, "decided_by": self.decided_by,
                "facts": list(self.facts), "events_in_amplitude": list(self.sent),
                "events_only_in_looker": [{"event": e, "rule": r} for e, r in self.kept_out],
                "topic": self.topic.id if self.topic else None, "alternatives": list(self.alternatives)}


@dataclasses.dataclass(frozen=True)
class Vocabulary:
    """The phrases a question is read with: Looker-only sources, event synonyms and names, event
    families, and the routing table's topics (pure data, built once per routing table)."""

    sources: dict[str, Source]               # phrase -> source only Looker has
    events: dict[str, tuple[str, ...]]       # phrase -> catalogue event names
    topics: dict[str, list[Topic]]           # phrase -> topics it suggests
    families: dict[str, str] = dataclasses.field(default_factory=dict)  # phrase -> the family it names

    @classmethod
    def of(cls, routing: "Routing", entries: list[catalogue.CatalogueEvent]) -> "Vocabulary":
        sources = {}
        for s in routing.looker_only:
            for phrase in (s.what.split("(")[0], *s.keywords):
                sources[_phrase(phrase)] = s
        events: dict[str, set[str]] = collections.defaultdict(set)
        for e in entries:
            if "<" in e.name:
                # `ViewRepogroup:<name>` is asked about as "ViewRepogroup:kubernetes" or "view repogroup".
                events[_phrase(_split_name(e.name.split(":<")[0]))].add(e.name)
                continue
            events[_phrase(_split_name(e.name))].add(e.name)
            events[_phrase(e.name)].add(e.name)
            # "AccessTokenCreated" is asked about as "access tokens" and "created access tokens".
            thing = re.sub(VERB_ENDING, "", _split_name(e.name))
            if thing != _split_name(e.name) and len(_phrase(thing)) > 4:
                events[_phrase(thing)].add(e.name)
            for phrase in e.synonyms:
                events[_phrase(phrase)].add(e.name)
        by_family = collections.defaultdict(set)
        for e in entries:
            if "<" not in e.name:
                by_family[e.family].add(e.name)
        families = {}
        for family, words in catalogue.family_words().items():
            for phrase in words:
                events[_phrase(phrase)] |= by_family.get(family, set())
                families[_phrase(phrase)] = family
        topics: dict[str, list[Topic]] = collections.defaultdict(list)
        for t in routing.topics:
            for phrase in (t.topic, t.id.replace("_", " "), *t.keywords):
                topics[_phrase(phrase)].append(t)
        return cls(sources, {k: tuple(sorted(v)) for k, v in events.items() if k}, dict(topics), families)


def _phrase(text: str) -> str:
    return " ".join(_tokens(text))


def _tokens(text: str) -> list[str]:
    """Lower-case words; hyphens, slashes and dots split words, 'sign-up', 'sign up' and 'signup'
    all read 'signup', and chat abbreviations read as the word ('ppl', 'wks', 'ext')."""
    text = re.sub(r"([a-z])([A-Z])", r"\1 \2", text)
    # "went GA" is general availability, not Google Analytics.
    text = re.sub(r"\b(went|goes|gone|is|was|became|reached|since|after|until|at)\s+GA\b", r"\1 general availability", text)
    words = [ABBREVIATIONS.get(w, w) for w in re.findall(r"[a-z0-9]+", text.lower())]
    out = []
    for w in words:
        if out and out[-1] + w in JOINED:
            out[-1] += w
        else:
            out.append(w)
    return out


def _split_name(name: str) -> str:
    """`goToDefinition` -> 'go to definition', `search.latencies.literal` -> 'search latencies literal'."""
    return re.sub(r"([a-z])([A-Z])", r"\1 \2", name).replace(".", " ").replace("_", " ")


def _match(tokens: list[str], phrases, used: set[int]) -> list[tuple[str, int, int, float]]:
    """Phrases found in the question, longest first, each word used once. A phrase matches a run of
    words of its length word by word: the same word, or a typo of it (rapidfuzz's ratio, 90 for
    words of 5 or 6 letters, 85 for longer ones, and the same first letter: typos rarely touch it);
    a word of 4 letters or fewer matches only itself. (phrase, first word, words, score) each."""
    by_length: dict[int, list[tuple[str, list[str]]]] = collections.defaultdict(list)
    for phrase in phrases:
        words = phrase.split()
        by_length[len(words)].append((phrase, words))
    found = []
    for n in range(min(5, len(tokens)), 0, -1):
        for i in range(0, len(tokens) - n + 1):
            span = set(range(i, i + n))
            words = tokens[i:i + n]
            if span & used or (n == 1 and words[0] in STOP):
                continue
            best = None
            for phrase, target in by_length.get(n, ()):
                score = min(_word_score(a, b) for a, b in zip(words, target))
                if score and (best is None or score > best[1]):
                    best = (phrase, score)
            if best is not None:
                used |= span
                found.append((best[0], i, n, best[1]))
    return found


def _word_score(word: str, target: str) -> float:
    """100 for the same word, the ratio for a likely typo of it, else 0."""
    from rapidfuzz import fuzz
    if word == target:
        return 100.0
    if len(word) <= 4 or len(target) <= 4 or word[0] != target[0]:
        return 0.0
    score = fuzz.ratio(word, target)
    return score if score >= (90 if len(word) <= 6 else 85) else 0.0


def route(question: str, routing: "Routing", data_map: datamaps.DataMap, start_date: dt.date,
          entries: list[catalogue.CatalogueEvent] | None = None, vocabulary: Vocabulary | None = None,
          today: dt.date | None = None) -> Route:
    """Which tool answers `question`, reasoning in order from where the data comes from, when, which
    events (asking the live data map whether they are sent) and what kind of question it is (pure).
    An answer that involves Amplitude also says where Amplitude's data starts."""
    answer = _route(question, routing, data_map, start_date, entries, vocabulary, today)
    if answer.answer in ("Amplitude", BOTH) and answer.decided_by != "time" and not any("first day" in f for f in answer.facts):
        answer = dataclasses.replace(answer, facts=answer.facts + (
            f"Amplitude's data starts on {start_date:%Y-%m-%d} (`amplitude_start_date`): anything earlier is only in Looker",))
    return answer


def _route(question, routing, data_map, start_date, entries, vocabulary, today) -> Route:
    entries = catalogue.events() if entries is None else entries
    vocab = vocabulary or Vocabulary.of(routing, entries)
    tokens = _tokens(question)
    used: set[int] = set()
    facts: list[str] = []
    # 1. Where the data comes from: only Sourcegraph Cloud product events can be in Amplitude. Words
    # in quotes name something ('the "install self-hosted" button'), they are not a source.
    unquoted = _tokens(re.sub(r"(?<!\w)(['\"]).+?\1(?!\w)", " ", question))
    sources = {vocab.sources[hit].id: vocab.sources[hit] for hit, *_ in _match(unquoted, vocab.sources, set())}
    if sources:
        what = "; ".join(f"{s.what}" + (f" ({s.where})" if s.where else "") for s in sources.values())
        return Route(question, "Looker", "source", (f"only Looker has it: {what}; Amplitude holds Sourcegraph Cloud "
                                                     "product events only",))
    # 2. When: Amplitude's data starts on the start date.
    period = _period(tokens, today)
    if period is not None:
        first, end = period
        if end <= start_date:
            return Route(question, "Looker", "time", (f"{_when(first, end)} is before Amplitude's first day, "
                                                      f"{start_date:%Y-%m-%d}: only Looker has it",))
        if first < start_date:
            facts.append(f"{_when(first, end)} starts before Amplitude's first day, {start_date:%Y-%m-%d}: "
                         "Looker has all of it, Amplitude the part from then")
    # 3. Which events, and what the live data map does with them; 4. what kind of question.
    named = _named(_match(tokens, vocab.events, used), tokens, vocab, entries)
    backend = re.search(r"\b(backend|server side|serverside)\b", " ".join(tokens)) is not None
    telling = [i for i, t in enumerate(tokens) if t not in STOP and i not in used]
    topic_hits = _match(tokens, vocab.topics, used)
    topic, score = _best_topic(topic_hits, vocab)
    exact = any(s == 100 for *_, s in topic_hits)
    if topic is not None and not named and not exact and score < MATCH_THRESHOLD * len(telling):
        topic = None  # one misspelt word of several, and nothing else: too thin to answer on
    if backend and not named:
        # Events the server logs: a source-specific rule decides them as a whole; the exceptions are named.
        decision = data_map.decide("", "BACKEND")
        sent = tuple(sorted(e.name for e in entries if e.sources == ("BACKEND",) and data_map.decide(e.name, "BACKEND").sends))
        if not decision.sends:
            facts.insert(0, f"the data map keeps backend events out of Amplitude (rule `{decision.rule}`)"
                            + (f", except {_list(sent)}, which a rule sends" if sent else ""))
            return Route(question, "Looker", "events", tuple(facts), sent, (("BACKEND events", decision.rule),), topic)
    needed = _where(set(topic.events) if topic else set(), entries, data_map)
    missing = sorted(n for n, rule in needed.items() if rule is not None)
    where = _where(named, entries, data_map)
    sent = tuple(sorted(n for n, rule in where.items() if rule is None))
    kept = tuple(sorted((n, rule) for n, rule in where.items() if rule is not None))
    if topic is not None and topic.tool != "Amplitude":
        facts.insert(0, f"the question is about {topic.topic.lower()}: {topic.why}")
        return Route(question, topic.tool, "question", tuple(facts), sent, kept, topic)
    if missing:
        rules = ", ".join(f"rule `{r}`" for r in sorted({needed[n] for n in missing}))
        facts.insert(0, f"{topic.topic.lower()} needs {_list(missing)}, which the data map keeps out of Amplitude "
                        f"({rules}): the analysis is only possible in Looker")
        return Route(question, "Looker", "events", tuple(facts), sent, kept, topic)
    early = period is not None and period[0] < start_date
    if needed and not kept:
        # A kind of analysis whose events are all in Amplitude: the kind decides.
        facts[:0] = [f"{topic.topic.lower()} is answered in Amplitude: {topic.why}",
                     f"the data map sends every event it needs ({_list(sorted(needed))})"]
        if named:
            facts.insert(2, f"the data map sends {_list(sent)} to Amplitude")
        return Route(question, BOTH if early else "Amplitude", "question", tuple(facts), sent, kept, topic)
    if named:
        if not kept:
            facts.insert(0, f"the data map sends {_list(sent)} to Amplitude")
            return Route(question, BOTH if early else "Amplitude", "events", tuple(facts), sent, kept, topic)
        if not sent:
            facts.insert(0, f"the data map keeps {_list([n for n, _ in kept])} out of Amplitude ({_rules(kept)}): "
                            "only Looker has them")
            return Route(question, "Looker", "events", tuple(facts), sent, kept, topic)
        facts.insert(0, f"Amplitude has {_list(sent)}; the data map keeps {_list([n for n, _ in kept])} out "
                        f"({_rules(kept)}), so those are only in Looker")
        return Route(question, BOTH, "events", tuple(facts), sent, kept, topic)
    if topic is not None:
        facts.insert(0, f"the question is about {topic.topic.lower()}: {topic.why}")
        return Route(question, BOTH if early else topic.tool, "question", tuple(facts), sent, kept, topic)
    return Route(question, NOT_SURE, "none",
                 ("nothing in the question names a data source, an event ampkit knows or a kind of analysis",),
                 alternatives=_closest(tokens, routing))


def _named(hits, tokens: list[str], vocab: Vocabulary, entries) -> set[str]:
    """The events the question names. A family word beside a named event of that family is
    context ("notebook blocks run since notebooks launched" is about blocks), not the subject,
    unless the question says "all" of it ("all code intel events, incl. the extension's")."""
    family_of = {e.name: e.family for e in entries}
    specific = {n for hit, *_ in hits if hit not in vocab.families for n in vocab.events[hit]}
    named = set(specific)
    for hit, i, _, _ in hits:
        family = vocab.families.get(hit)
        whole = i > 0 and tokens[i - 1] in ("all", "every", "whole", "entire", "any")
        if family is not None and (whole or not any(family_of.get(n) == family for n in specific)):
            named |= set(vocab.events[hit])
    return named


def _best_topic(hits, vocab: Vocabulary) -> tuple[Topic | None, float]:
    """The topic the most question words point to (each weighed by how well it matched), and that weight."""
    score: dict[str, float] = collections.Counter()
    topics = {}
    for hit, _, n, s in hits:
        for t in vocab.topics[hit]:
            score[t.id] += n * s / 100
            topics[t.id] = t
    if not score:
        return None, 0.0
    # A question that is also about a Looker topic (OKRs, accounts, instances) is answered there:
    # Looker has the events too, Amplitude not the rest.
    looker = [k for k in score if topics[k].tool != "Amplitude"]
    best = max(looker or score, key=lambda k: (score[k], -list(topics).index(k)))
    return topics[best], score[best]


def _where(names: set[str], entries, data_map: datamaps.DataMap) -> dict[str, str | None]:
    """Event -> None if the data map sends it, else the rule keeping it out (`kept_by`)."""
    sources = {e.name: e.sources for e in entries}
    return {name: kept_by(data_map, name, sources.get(name, ("WEB",))) for name in names}


def kept_by(data_map: datamaps.DataMap, name: str, sources: Iterable[str]) -> str | None:
    """None when the data map sends the event from any source it comes from, else the rule that keeps
    it out: the one test of "is it in Amplitude" that `where`, the onboarding page and the
    reconciliation's table all use (pure)."""
    probe = re.sub(r"<[a-z]+>", "x", name)
    decisions = [data_map.decide(probe, s) for s in sources]
    return None if any(d.sends for d in decisions) else decisions[0].rule


def _period(tokens: list[str], today: dt.date | None) -> tuple[dt.date, dt.date] | None:
    """The period a question names, [first day, day after the last), or None: every month, year-month
    or year it names ("jan '22" is January 2022), from the first to the last; "before X" ends at X;
    "since X", "X to now" run on to today (or the far future)."""
    text = " ".join(tokens)
    spans = []
    month = "|".join(MONTHS)
    # A day: "dec 1 2020", "1 dec 2020".
    for m in re.finditer(rf"\b(?:({month})\s+(\d\d?)|(\d\d?)\s+({month}))\s+((?:19|20)\d\d)\b", text):
        day = dt.date(int(m[5]), MONTHS[m[1] or m[4]], int(m[2] or m[3]))
        spans.append((day, day + dt.timedelta(days=1)))
    text = re.sub(rf"\b(?:({month})\s+(\d\d?)|(\d\d?)\s+({month}))\s+((?:19|20)\d\d)\b", " ", text)
    for m in re.finditer(rf"\b({month})\s+((?:19|20)\d\d|\d\d)\b", text):
        year = int(m[2]) if len(m[2]) == 4 else 2000 + int(m[2])
        spans.append(_month(year, MONTHS[m[1]]))
    text_rest = re.sub(rf"\b({month})\s+((?:19|20)\d\d|\d\d)\b", " ", text)
    for m in re.finditer(r"\b((?:19|20)\d\d)\s+(\d\d?)\b", text_rest):
        if 1 <= int(m[2]) <= 12:
            spans.append(_month(int(m[1]), int(m[2])))
            text_rest = text_rest.replace(m[0], " ")
    for m in re.finditer(r"\b((?:19|20)\d\d)\b", text_rest):
        spans.append((dt.date(int(m[1]), 1, 1), dt.date(int(m[1]) + 1, 1, 1)))
    if not spans:
        return None
    first, end = min(a for a, _ in spans), max(b for _, b in spans)
    if re.search(r"\bbefore\b", text) and len(spans) == 1:
        return dt.date(1970, 1, 1), first
    if re.search(r"\b(since|(to|until|through|till) (now|today|date|present))\b", text):
        end = max(end, (today or dt.date(9999, 1, 1)) + dt.timedelta(days=1))
    return first, end


def _month(year: int, month: int) -> tuple[dt.date, dt.date]:
    first = dt.date(year, month, 1)
    return first, dt.date(year + month // 12, month % 12 + 1, 1)


def _when(first: dt.date, end: dt.date) -> str:
    if first == dt.date(1970, 1, 1):
        return f"the time before {end:%Y-%m-%d}"
    if (end - first).days <= 31:
        return f"{first:%B %Y}"
    if (first.month, first.day, end.month, end.day) == (1, 1, 1, 1) and end.year == first.year + 1:
        return f"{first:%Y}"
    return f"the period from {first:%B %Y}"


def _list(names, most: int = 4) -> str:
    names = list(names)
    shown = ", ".join(f"`{n}`" for n in names[:most])
    return shown + (f" and {len(names) - most} more" if len(names) > most else "")


def _rules(kept, only=None) -> str:
    rules = sorted({r for n, r in kept if only is None or n in only})
    return ", ".join(f"rule `{r}`" for r in rules)


def _closest(tokens: list[str], routing: "Routing") -> tuple[str, ...]:
    """The two closest routes for an unsure answer: the best topics by rapidfuzz over their words,
    else the two tools' own scope."""
    from rapidfuzz import fuzz
    text = " ".join(tokens)
    scored = sorted(routing.topics, key=lambda t: -fuzz.token_set_ratio(text, " ".join((t.topic, *t.keywords))))
    return tuple(f"{t.tool}, if it is about {t.topic.lower()}: {t.why}" for t in scored[:2])


@click.command("where")
@click.argument("question", nargs=-1)
@click.option("--routing", "routing_path", type=click.Path(dir_okay=False),
              help=f"A company routing file (${ENV_VAR}); default: the table shipped with ampkit.")
@click.option("--json", "as_json", is_flag=True, help="The route, the facts that decided it and the events it names.")
@click.pass_context
def where(ctx, question, routing_path, as_json):
    """Which tool answers a question: `ampkit where "signup funnel"`, reasoned from where the data
    comes from, when, which events (asked of the live data map) and what kind of question it is.
    Exits 1 when it is not sure. Without a question, the whole table."""
    from ampkit import config as configuration
    try:
        table = load(routing_path)
        config = configuration.load(getattr(ctx.find_root().obj, "overrides", None))
        data_map = datamaps.load(config.data_map or None)
    except AmpkitError as exc:
        raise click.ClickException(str(exc)) from None
    text = " ".join(question).strip()
    if not text:
        for topic in table.topics:
            click.echo(f"{topic.topic:<48} {topic.tool:<10} {topic.link or table.tools[topic.tool].link}")
        return
    answer = route(text, table, data_map, config.amplitude_start_date)
    if as_json:
        import json
        click.echo(json.dumps(answer.to_dict(), indent=2))
    else:
        click.echo(render_route(answer, table))
    if not answer.confident:
        ctx.exit(1)


# Questions the onboarding page asks `where` with the live data map, one per kind of fact.
SAMPLE_QUESTIONS = ("how many users searched last week", "signup funnel", "notebooks usage",
                    "how many users used code insights", "search latency", "retention of on-prem users",
                    "SFDC pipeline", "signups in November 2020")


def sample_routes(routing: Routing, data_map: datamaps.DataMap, start_date: dt.date,
                  questions: Iterable[str] = SAMPLE_QUESTIONS) -> list[Route]:
    """`where`'s answers to typical questions under `data_map` (pure)."""
    entries = catalogue.events()
    vocabulary = Vocabulary.of(routing, entries)
    return [route(q, routing, data_map, start_date, entries, vocabulary) for q in questions]


def render_route(answer: Route, routing: Routing) -> str:
    """A route as the CLI prints it: the answer, the fact that decided it, the others, the events (pure)."""
    how = {"source": "where the data comes from", "time": "when", "events": "which events, per the data map",
           "question": "what kind of question it is", "none": "nothing to go on"}[answer.decided_by]
    if not answer.confident:
        lines = [f'Not sure where "{answer.question}" is answered: {answer.facts[0]}. The closest routes:']
        lines += [f"  - {alt}" for alt in answer.alternatives]
        lines.append("Ask with an event, a feature or a data source in it (`ampkit where` lists the topics).")
        return "\n".join(lines)
    lines = [f"{answer.answer} (decided by {how})", f"  because: {answer.facts[0]}"]
    lines += [f"  also:    {fact}" for fact in answer.facts[1:]]
    if answer.kept_out and answer.answer != "Looker":
        lines.append("  only in Looker: " + ", ".join(f"{n} (rule {r})" for n, r in answer.kept_out[:8]))
    # The topic's example and link only where they lead to the answer's tool.
    if answer.topic is not None and answer.topic.tool in answer.answer:
        lines.append(f"  example: {answer.topic.example}")
        link = answer.topic.link or routing.tools[answer.topic.tool].link
        if link:
            lines.append(f"  link:    {link}")
    return "\n".join(lines)


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
        sends = kept_by(data_map, e.name, e.sources) is None
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
