"""The benchmark's quick mode runs end to end and reports every figure (numbers, not timings, are checked).

Runs `benchmarks/run.py --quick` as CI would, in a subprocess; a figure missing its goal does
not fail the test (this is a smoke run on a shared machine), a figure missing from the file does.
"""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NUMBER = r"[0-9][0-9,]*(?:\.[0-9]+)?"
FIGURES = [
    rf"1\. Sync throughput, .*ampkit \(default settings, gzip on\) \| {NUMBER} rows/s",
    rf"1\. \.\.\. ampkit with gzip off \| {NUMBER} rows/s",
    rf"1\. \.\.\. official SDK.*\| {NUMBER} rows/s; ampkit = \*\*{NUMBER}x\*\* the SDK",
    rf"1\. \.\.\. naive requests loop.*\| {NUMBER} rows/s; ampkit = \*\*{NUMBER}x\*\*",
    rf"1\. \.\.\. floor \(raw ready-made bodies.*\| {NUMBER} rows/s; ampkit = \*\*{NUMBER}x\*\* the floor",
    rf"1\. \.\.\. floor \(pre-gzipped ready-made bodies.*\| {NUMBER} rows/s; ampkit = \*\*{NUMBER}x\*\* the floor",
    rf"2\. Peak RSS of one sync .*\| .*{NUMBER} MB",
    rf"2\. \.\.\. growth from .*\| \*\*{NUMBER}x\*\*",
    rf"2\. \.\.\. largest peak \| \*\*{NUMBER} MB\*\*",
    rf"3\. Pacing: .*\| {NUMBER} s vs minimum {NUMBER} s = \*\*{NUMBER}x\*\*",
    rf"3\. \.\.\. requests answered 429 \| \*\*{NUMBER} of {NUMBER} \({NUMBER}%\)\*\*",
    rf"4\. Reconciliation counting, .*\| {NUMBER} s vs {NUMBER} s = \*\*{NUMBER}x\*\*",
    rf"5\. Seeding {NUMBER} rows with seed\.fill \| \*\*{NUMBER} s\*\*",
    rf"6\. Sandbox ingest, .*\| \*\*{NUMBER} events/s\*\*",
    rf"7\. Hourly sync of one seeded hour .*\| {NUMBER} s / {NUMBER} s / {NUMBER} s",
    rf"8\. BigQuery: jobs per hourly run .*\| \*\*{NUMBER} / {NUMBER}\*\* \| <= 7 \| met",
    rf"8\. \.\.\. bytes of an hourly run at 10x history over 1x \| \*\*{NUMBER}x\*\* \| within 1\.1x \| met",
    rf"8\. \.\.\. a 5-minute run staging its own rows: .*\| \*\*{NUMBER}\*\*; \*\*{NUMBER}x\*\* \| <= 8; within 1\.1x \| met",
    rf"8\. \.\.\. backfill since 2020-12-01 of 100M rows: .*\| \*\*{NUMBER} jobs\*\*",
    rf"9\. Freshness: a simulated 2 h at a 5-minute cadence \(24 runs, {NUMBER} events\).*\| {NUMBER} min / \*\*{NUMBER} min\*\*",
    rf"9\. \.\.\. every row that arrived staged once, sent once .*\| \*\*yes\*\* .*\| met",
]


@pytest.mark.timeout(240)
def test_quick_benchmark_writes_every_figure(tmp_path):
    output = tmp_path / "RESULTS.md"
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "run.py"), "--quick", "--output", str(output)],
                          cwd=tmp_path, capture_output=True, text=True, timeout=230)
    assert done.returncode == 0, done.stderr[-3000:]
    text = output.read_text()
    for figure in FIGURES:
        assert re.search(figure, text), f"RESULTS.md lacks a figure matching {figure!r}"
    assert "n/a" not in text.split("## Summary", 1)[1].split("##", 1)[0].replace("| n/a |", ""), "a summary figure has no number"
    # The same table is printed.
    assert "| Figure (median of the runs) | Result | Goal | Verdict |" in done.stdout
    for heading in ("## Machine", "## 1. End-to-end sync throughput", "## 2. Memory", "## 3. Pacing under real limits",
                    "## 4. Reconciliation counting", "## 5. Seeding", "## 6. Sandbox ingest", "## 7. Notebook overhead",
                    "## 8. The sync at BigQuery scale", "## 9. Freshness at a 5-minute cadence"):
        assert heading in text
