"""A DuckDB warehouse damaged as a kill inside DuckDB's checkpoint leaves it, and the way back a user
is told to take (see DuckDBWarehouse.good_copy and docs/RELIABILITY.md)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from ampkit import warehouse as warehouses
from ampkit.errors import DamagedError


def damage(path: Path, block: int | None = None) -> None:
    """Overwrite a block: by default the first, which the header on disk points at; else table data
    block `block` from its start (DuckDB checks a block where its data is read)."""
    offset = 12288 + 64 if block is None else 12288 + block * 262144 + 8
    with open(path, "r+b") as f:
        f.seek(offset)
        f.write(b"\x5a" * 4096)


def damaged(url: str) -> bool:
    """Whether the warehouse fails DuckDB's own checks (ampkit says so with DamagedError)."""
    try:
        with warehouses.open(url) as wh:
            wh.columns("amplitude_events")
    except DamagedError:
        return True
    return False


def restore(url: str, *more: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """`ampkit restore-warehouse`, as the DamagedError's message tells a user to run it."""
    return subprocess.run([sys.executable, "-m", "ampkit", "--warehouse", url, "restore-warehouse", *more],
                          capture_output=True, text=True, timeout=120, env=env or dict(os.environ))
