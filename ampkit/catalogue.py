"""The event catalogue: every event name Sourcegraph Cloud logs, its family, its sources and the
words analysts use for it ("signed up", "go to definition", "find refs").

Shipped as `resources/event_catalogue.csv`, with the families' own words in
`resources/event_families.csv` ("code insights", "notebooks"). The family (the catalogue's `area`: search, code_intel,
notebooks, ...) is how analysts group events, and it does not depend on the data map, so the
guardrail, the onboarding page and the routing table all group events the same way.
"""
from __future__ import annotations

import csv
import dataclasses
import functools
from importlib import resources
from typing import Callable

UNCATALOGUED = "not in the catalogue"


@dataclasses.dataclass(frozen=True)
class CatalogueEvent:
    """One row of the event catalogue: name, family (`area`) and the sources it comes from."""

    name: str
    family: str
    sources: tuple[str, ...]
    synonyms: tuple[str, ...] = ()


@functools.cache
def _shipped() -> tuple[CatalogueEvent, ...]:
    text = resources.files("ampkit.resources").joinpath("event_catalogue.csv").read_text(encoding="utf-8")
    return tuple(CatalogueEvent(row["name"], row["area"], tuple(row["source"].split("|")),
                                tuple(w for w in (row.get("synonyms") or "").split("|") if w))
                 for row in csv.DictReader(text.splitlines()))


@functools.cache
def family_words() -> dict[str, tuple[str, ...]]:
    """Family -> the words analysts use for it (`resources/event_families.csv`)."""
    text = resources.files("ampkit.resources").joinpath("event_families.csv").read_text(encoding="utf-8")
    return {row["family"]: tuple(w for w in row["words"].split("|") if w) for row in csv.DictReader(text.splitlines())}


def events() -> list[CatalogueEvent]:
    """The event catalogue shipped with ampkit."""
    return list(_shipped())


def family_of(entries: list[CatalogueEvent]) -> Callable[[str], str | None]:
    """A name -> family lookup that also places `ViewRepogroup:python` under `ViewRepogroup:<name>`."""
    exact = {e.name: e.family for e in entries}
    prefixes = {e.name.split(":<")[0] + ":": e.family for e in entries if ":<" in e.name}

    def lookup(name: str) -> str | None:
        if name in exact:
            return exact[name]
        head = name.split(":")[0] + ":"
        return prefixes.get(head) if ":" in name else None
    return lookup


@functools.cache
def family(name: str) -> str:
    """The family of one event name in the shipped catalogue; UNCATALOGUED when it has none."""
    return _lookup()(name) or UNCATALOGUED


@functools.cache
def _lookup() -> Callable[[str], str | None]:
    return family_of(events())
