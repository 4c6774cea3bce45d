"""Staging: the scheduled query BigQuery runs is ampkit's staging file with its lookback spelled out."""
from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

from ampkit import sql as sqlfiles
from ampkit import stage

ROOT = Path(__file__).resolve().parents[1]


def _body(text: str) -> str:
    """The statements without comments (the two files explain themselves differently)."""
    return "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("--")).strip()


def test_the_scheduled_query_is_the_staging_file_with_its_lookback_spelled_out():
    hours = int(stage.LOOKBACK / dt.timedelta(hours=1))
    ours = _body(sqlfiles.text("amplitude_events"))
    scheduled = _body((ROOT / "scheduled" / "amplitude_events.sql").read_text(encoding="utf-8"))
    assert "@stage_since" in ours and "@stage_since" not in scheduled
    assert ours.replace("@stage_since", f"TIMESTAMP_SUB(@run_time, INTERVAL {hours} HOUR)") == scheduled
    # Scheduled queries take @run_time (and @run_date) only, besides the start date the README says to inline.
    assert set(re.findall(r"@(\w+)", scheduled)) == {"run_time", "amplitude_start_date"}
