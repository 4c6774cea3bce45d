"""Where rows ended: the one tally a slice, a window, a run and its ledger row all keep."""
from __future__ import annotations

import dataclasses
from typing import Iterable, Mapping

from ampkit.errors import AccountingError


@dataclasses.dataclass(kw_only=True)
class Counts:
    """Rows extracted, and where each ended: accepted by Amplitude, filtered by a named rule (or held
    back by one), or rejected with a reason. `sent` counts events handed to Amplitude; `requests`
    and `retries` the HTTP work it took."""

    extracted: int = 0
    sent: int = 0
    accepted: int = 0
    filtered: dict[str, int] = dataclasses.field(default_factory=dict)
    rejected: dict[str, int] = dataclasses.field(default_factory=dict)
    requests: int = 0
    retries: int = 0

    def add(self, other: "Counts") -> None:
        """Add `other`'s counts to these (a slice to its window, a window to its run)."""
        self.extracted += other.extracted
        self.sent += other.sent
        self.accepted += other.accepted
        self.requests += other.requests
        self.retries += other.retries
        for mine, theirs in ((self.filtered, other.filtered), (self.rejected, other.rejected)):
            for reason, n in theirs.items():
                mine[reason] = mine.get(reason, 0) + n

    def settle(self, outcomes: Iterable[Mapping]) -> None:
        """Take accepted, filtered and rejected from the warehouse's outcome counts: rows of
        (outcome, reason, row_count), held rows counted as filtered by their rule."""
        self.accepted, self.filtered, self.rejected = 0, {}, {}
        for row in outcomes:
            if row["outcome"] == "accepted":
                self.accepted += row["row_count"]
            elif row["outcome"] in ("filtered", "held"):
                self.filtered[row["reason"]] = self.filtered.get(row["reason"], 0) + row["row_count"]
            else:
                self.rejected[row["reason"]] = self.rejected.get(row["reason"], 0) + row["row_count"]

    def check(self, what: str) -> None:
        """Raise AccountingError unless every extracted row has exactly one outcome."""
        filtered, rejected = sum(self.filtered.values()), sum(self.rejected.values())
        if self.accepted + filtered + rejected != self.extracted:
            raise AccountingError(f"{what}: extracted {self.extracted} != accepted {self.accepted} + filtered "
                                  f"{filtered} + rejected {rejected}")

    def totals(self) -> dict:
        """The counts as plain values, reasons sorted (for JSON and the ledger)."""
        return {"extracted": self.extracted, "filtered": dict(sorted(self.filtered.items())), "sent": self.sent,
                "accepted": self.accepted, "rejected": dict(sorted(self.rejected.items())),
                "requests": self.requests, "retries": self.retries}

    def headline(self) -> dict[str, int]:
        """Where the rows ended in four numbers (a report's index line)."""
        return {"extracted": self.extracted, "accepted": self.accepted, "filtered": sum(self.filtered.values()),
                "rejected": sum(self.rejected.values())}
