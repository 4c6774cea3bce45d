"""Counts: the one tally of a slice, a window, a run and its ledger row."""
from __future__ import annotations

import pytest
from hypothesis import given, strategies as st

from ampkit.counts import Counts
from ampkit.errors import AccountingError

reasons = st.dictionaries(st.sampled_from(["a", "b", "c"]), st.integers(0, 1000))


@given(st.integers(0, 10_000), reasons, reasons)
def test_accounting_identity_is_enforced(accepted, filtered, rejected):
    exact = Counts(extracted=accepted + sum(filtered.values()) + sum(rejected.values()), sent=accepted,
                   accepted=accepted, filtered=filtered, rejected=rejected)
    exact.check("window")
    off = Counts(extracted=exact.extracted + 1, accepted=accepted, filtered=filtered, rejected=rejected)
    with pytest.raises(AccountingError, match="window: extracted"):
        off.check("window")


@given(st.lists(st.tuples(st.integers(0, 100), reasons, reasons), max_size=5))
def test_slices_add_up_to_their_window(parts):
    total = Counts()
    for accepted, filtered, rejected in parts:
        total.add(Counts(extracted=accepted + sum(filtered.values()) + sum(rejected.values()), accepted=accepted,
                         filtered=filtered, rejected=rejected, requests=1))
    total.check("run")
    assert total.requests == len(parts)
    assert total.filtered == {k: sum(f.get(k, 0) for _, f, _ in parts) for k in {k for _, f, _ in parts for k in f}}


def test_outcomes_from_the_warehouse_settle_the_counts_held_rows_as_filtered():
    c = Counts(extracted=10, accepted=99)
    c.settle([{"outcome": "accepted", "reason": None, "row_count": 5},
              {"outcome": "filtered", "reason": "backend", "row_count": 2},
              {"outcome": "held", "reason": "unknown_held", "row_count": 1},
              {"outcome": "rejected", "reason": "no_id", "row_count": 2}])
    assert (c.accepted, c.filtered, c.rejected) == (5, {"backend": 2, "unknown_held": 1}, {"no_id": 2})
    c.check("slice")
