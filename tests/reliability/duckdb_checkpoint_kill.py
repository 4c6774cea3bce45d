"""DuckDB's bug behind `DamagedError`, shown without ampkit: kill a plain DuckDB writer until its file
fails its own checksums, then check ampkit names that file damaged.

Not part of the suite: the damage comes by luck. Run it by hand,
`.venv/bin/python tests/reliability/duckdb_checkpoint_kill.py [max kills]`, on a busy machine if you
can. In seven tries here it came twice: after 51 kills of a writer like this one on DuckDB 2.0.1
(beside two test runs loading the machine) and after 83 kills of one checkpointing in a loop on
1.5.6; the other tries stopped after 300 to 1,000 kills without it. CI met it once in
test_sigkill_at_random_moments_then_rerun.
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
i = 0
while True:  # as ampkit uses a DuckDB file: open, a few small transactions, close (which checkpoints)
    con = duckdb.connect(sys.argv[1])
    con.execute("CREATE TABLE IF NOT EXISTS ev (id BIGINT, name VARCHAR, arg VARCHAR)")
    con.execute("CREATE TABLE IF NOT EXISTS pending (id BIGINT, insert_id VARCHAR)")
    con.execute("CREATE TABLE IF NOT EXISTS runs (run VARCHAR, status VARCHAR, n BIGINT)")
    base = con.execute("SELECT coalesce(max(id), 0) FROM ev").fetchone()[0]
    con.execute("INSERT INTO ev SELECT ? + i, 'event' || (i % 50)::VARCHAR, repeat(md5(i::VARCHAR), 1 + i % 4) "
                "FROM range(?) r(i)", [base, random.randint(50, 400)])
    con.execute("INSERT INTO runs VALUES (?, 'running', 0)", [f"r{i}"])
    for k in range(3):
        con.execute("BEGIN")
        con.execute("INSERT INTO pending SELECT id, md5(id::VARCHAR) FROM ev WHERE id > ? AND id % 3 = ?", [base, k])
        con.execute("DELETE FROM pending")
        con.execute("UPDATE runs SET n = n + 1 WHERE run = ?", [f"r{i}"])
        con.execute("COMMIT")
    con.execute("UPDATE runs SET status = 'ok' WHERE run = ?", [f"r{i}"])
    con.close()
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
        time.sleep(0.25 + rng.uniform(0, 0.6))
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
