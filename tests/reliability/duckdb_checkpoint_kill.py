"""DuckDB's bug behind `DamagedError`, shown without ampkit: kill a plain DuckDB writer until its file
fails its own checksums, then check ampkit names that file damaged.

Not part of the suite (it takes from a minute to a quarter of an hour, by luck): run it by hand,
`.venv/bin/python tests/reliability/duckdb_checkpoint_kill.py [max kills]`. This writer damaged
DuckDB 1.5.6's file after 83 kills; one that opens, writes and closes instead damaged 2.0.1's after 51.
A block the header on disk points at is reused before the new header is written
(duckdb/duckdb#25106), so a kill between the two leaves the file unreadable.
"""
from __future__ import annotations

import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

WRITER = """
import duckdb, random, sys
con = duckdb.connect(sys.argv[1])
con.execute("CREATE TABLE IF NOT EXISTS ev (id BIGINT, name VARCHAR, arg VARCHAR)")
i = 0
while True:  # small changes, each followed by a checkpoint: most kills land inside one
    base = con.execute("SELECT coalesce(max(id), 0) FROM ev").fetchone()[0]
    con.execute("INSERT INTO ev SELECT ? + i, 'event' || (i % 50)::VARCHAR, md5(i::VARCHAR) FROM range(?) r(i)",
                [base, random.randint(10, 300)])
    con.execute("DELETE FROM ev WHERE id % 7 = ?", [i % 7])
    con.execute("CHECKPOINT")
    i += 1
"""


def main(max_kills: int = 2000) -> int:
    import duckdb
    from ampkit import warehouse
    from ampkit.errors import DamagedError
    path = Path(tempfile.mkdtemp(prefix="duckdb-kill-")) / "w.duckdb"
    rng = random.Random(0)
    for kill in range(1, max_kills + 1):
        child = subprocess.Popen([sys.executable, "-c", WRITER, str(path)])
        time.sleep(0.3 + rng.uniform(0, 0.4))
        child.kill()
        child.wait()
        try:
            duckdb.connect(str(path)).close()
        except duckdb.Error as exc:
            print(f"DuckDB {duckdb.__version__}: damaged after {kill} kills: {exc}")
            try:
                warehouse.open(f"duckdb:///{path}").columns("ev")
            except DamagedError as named:
                print(f"ampkit: {named}")
                return 0
            print("ampkit did not name the file damaged")
            return 1
    print(f"DuckDB {duckdb.__version__}: {max_kills} kills, the file always opened")
    return 0


if __name__ == "__main__":
    sys.exit(main(*(int(a) for a in sys.argv[1:])))
