"""The reports' fixed palette: a hue per group, a colour per known rule and reason, the docs equal to it."""
from __future__ import annotations

import re
from pathlib import Path

from ampkit import datamap, palette

DOCS = Path(__file__).resolve().parents[1] / "docs" / "REPORTS.md"


def test_every_known_cause_has_its_own_colour_and_groups_never_share_one():
    named = [c for colors in palette.GROUPS.values() for c in colors.values()]
    assert len(named) == len(set(named)), "two causes share a colour"
    spare = [c for colors in palette.SPARE.values() for c in colors]
    assert not set(spare) & set(named)


def test_by_design_is_never_painted_as_wrong():
    for rule in datamap.load().rules:
        if rule.action == "exclude":
            assert palette.group(f"filtered:{rule.id}") == "by design"
            assert palette.color(f"filtered:{rule.id}") == palette.BY_DESIGN[rule.id], rule.id
    assert palette.group("before_start") == "by design"
    assert {palette.group(c) for c in ("not_staged", "not_synced", "export_lag", "held:backend")} == {"in flight"}
    assert {palette.group(c) for c in ("amplitude_only", "duplicated", "planner_gap", "late_beyond_lookback", "unexplained")} == {"wrong"}
    assert palette.group("rejected:no_id") == "rejected" and palette.color("rejected:no_id") == palette.REJECTED["no_id"]


def test_an_unknown_rule_or_reason_takes_a_colour_of_its_group_the_same_every_time():
    assert palette.color("filtered:a_new_rule") in palette.SPARE["by design"]
    assert palette.color("filtered:a_new_rule") == palette.color("filtered:a_new_rule")
    assert palette.color("rejected:a_new_reason") in palette.SPARE["rejected"]
    assert palette.color("held:any_rule") == palette.IN_FLIGHT["held"]


def test_the_docs_list_the_palette_as_it_is():
    text = DOCS.read_text()
    listed = {(g, k, c) for g, k, c in re.findall(r"^\| ([a-z ]+) \| `([a-z_]+)` \| `(#[0-9a-f]{6})` \|$", text, re.M)}
    assert listed == {(g, k, c) for g, colors in palette.GROUPS.items() for k, c in colors.items()}
    for colors in (palette.GROUP_COLORS, palette.STATUS):
        for key, c in colors.items():
            assert re.search(rf"^\| `?{re.escape(key)}`? \| `{c}` \|$", text, re.M), key
