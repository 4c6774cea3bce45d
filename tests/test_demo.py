"""The main job on the embedded defaults, as a new user runs it: `ampkit demo` in an empty folder,
then the commands the demo says to keep going with, in that folder."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tomllib

import nbformat
import pytest

from ampkit import demo
from ampkit.table import SHORT_ROWS, TABLE_MIME, rows

import browser
import children


def ampkit(*args, cwd, env, timeout=300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ampkit", *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    """`ampkit demo` once, in an empty folder, with an environment with no ampkit setting or key in it."""
    where = tmp_path_factory.mktemp("demo")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AMPKIT_", "AMPLITUDE_"))}
    done = ampkit("demo", cwd=where, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return where, env, done


def test_after_the_demo_every_command_in_its_folder_continues_where_it_left_off(demo_run):
    where, env, done = demo_run
    assert "OK:" in done.stdout and "keep going here" in done.stdout
    assert "every report and run record, newest first: reports/index.html" in done.stdout
    settings = tomllib.loads((where / "ampkit.toml").read_text())["ampkit"]
    assert settings["now"] == demo.DEMO_NOW and settings["export_lag_seconds"] == 0
    assert settings["amplitude_url"] == f"http://127.0.0.1:{demo.SANDBOX_PORT}"
    assert (where / settings["amplitude_api_key_file"]).exists()
    assert "api_key =" not in (where / "ampkit.toml").read_text()

    runs = ampkit("runs", "--json", cwd=where, env=env)
    assert runs.returncode == 0 and len(json.loads(runs.stdout)) >= 3
    # On the demo's clock, not today's: the dry run's window ends at the demo's hour.
    dry = ampkit("sync", "--dry-run", "--json", cwd=where, env=env)
    assert dry.returncode == 0, dry.stderr[-2000:]
    result = json.loads(dry.stdout)
    assert result["status"] == "dry_run" and result["run_id"].startswith("20220314T12")
    assert result["window_end"].startswith("2022-03-14T11:55")

    # The sandbox is down after the demo: the reconciliation says what to start.
    down = ampkit("reconcile", cwd=where, env=env)
    assert down.returncode == 1 and "ampkit sandbox" in down.stderr
    sandbox = children.start([sys.executable, "-m", "ampkit", "sandbox"], cwd=where, env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert sandbox.stdout.readline().strip() == settings["amplitude_url"]  # printed once it serves
        again = ampkit("reconcile", "--json", cwd=where, env=env)
        assert again.returncode == 0, again.stderr[-2000:]
        summary = json.loads(again.stdout)["summary"]
        assert summary["status"] == "ok" and summary["unexplained_total"] == 0
    finally:
        sandbox.terminate()
        sandbox.wait(timeout=30)

    # A second demo in the same folder keeps its own file up to date, never a file it did not write.
    (where / "ampkit.toml").write_text('[ampkit]\nlookback_hours = 5\n')
    assert not demo.write_settings(demo.demo_config({"warehouse": "duckdb:///x.duckdb"}), "http://127.0.0.1:1",
                                   where / "ampkit.toml")
    assert (where / "ampkit.toml").read_text() == '[ampkit]\nlookback_hours = 5\n'


LOG_LINE = re.compile(r"\d\d:\d\d:\d\d (DEBUG|INFO|WARNING|ERROR) |Traceback \(most recent call last\)")


@pytest.mark.skipif(browser.CHROMIUM is None, reason="Debian's chromium is not installed (./run test installs it as root)")
def test_every_page_the_demo_leaves_opens_offline_and_shows_what_its_record_holds(demo_run):
    """Every report and run record of a demo, opened in headless Chromium with the network off: no
    request fails, nothing but the folder's own files is asked for, no log text is on the visible
    page, every figure has data or says why not, every table has all its rows, and each page is small."""
    where, _, _ = demo_run
    reports = where / "reports"
    pages = sorted(p for p in reports.rglob("*.html") if p.name != "latest.html")
    # three hourly runs, the runs overview, the reconciliation, the onboarding page, the index and its month's page
    assert len(pages) == 8
    seen = browser.open_pages(pages)
    for page in seen:
        where_ = page.path.relative_to(reports)
        assert page.failed == [] and page.errors == [], (where_, page.failed, page.errors)
        assert all(url.startswith((reports.resolve().as_uri() + "/", "blob:", "data:")) for url in page.requests), (where_, page.requests)
        assert page.title.startswith("ampkit · "), (where_, page.title)
        assert not LOG_LINE.search(page.text), (where_, LOG_LINE.search(page.text))
        for figure in page.figures:
            assert figure["drawn"] and (figure["points"] > 0 or figure["empty"]), (where_, figure)
        if page.path.parent == reports:  # the index's pages
            continue
        record = where / "runs" / where_.with_suffix(".ipynb")
        payloads = [o["data"][TABLE_MIME] for c in nbformat.read(record, as_version=4).cells if c.cell_type == "code"
                    for o in c.get("outputs", []) if TABLE_MIME in o.get("data", {})]
        assert [t["rows"] for t in page.tables] == [len(rows(p)) for p in payloads], (where_, page.tables)
        assert all(t["kind"] == "interactive" for t, p in zip(page.tables, payloads) if len(rows(p)) > SHORT_ROWS)
        figures = [o for c in nbformat.read(record, as_version=4).cells if c.cell_type == "code"
                   for o in c.get("outputs", []) if "application/vnd.plotly.v1+json" in o.get("data", {})]
        assert len(page.figures) == len(figures), where_
    by_name = {p.path.relative_to(reports).parts[0]: p for p in seen}
    recon = by_name["reconciliation"]
    assert recon.title == "ampkit · reconciliation · 2022-03-14 12:00 UTC · ok"
    assert any(t["kind"] == "interactive" and t["rows"] > 1000 for t in recon.tables), "every row, searchable"
    assert "every difference between Looker and Amplitude is explained" in recon.text
    hourly = [p for p in seen if p.path.parts[-5:-4] == ("hourly_sync",)]
    assert len(hourly) == 3 and all("no retries or refusals in this run" in p.text for p in hourly)
    # The index: every page, newest first, each with its status; latest.html leads to a page that exists.
    index = by_name["index.html"]
    listed = [line for line in index.text.splitlines() if line.startswith("2022-03-14")]
    assert len(listed) == 6 and listed == sorted(listed, reverse=True), listed
    assert by_name["index-2022-03.html"].text.count("\n2022-03-14 ") == 6
    for name in ("hourly_sync", "reconciliation", "runs_overview", "onboarding"):
        target = re.search(r'url=([^"]+)"', (reports / name / "latest.html").read_text()).group(1)
        assert (reports / name / target).exists(), (name, target)
    # Small: plotly.js and the table library are in reports/assets once, not in every page or record.
    for path in [*pages, *(where / "runs").rglob("*.ipynb")]:
        assert path.stat().st_size < 1_000_000, (path, path.stat().st_size)
    assert len(list((reports / "assets").glob("plotly-*.min.js"))) == 1


def test_lab_runs_as_root_with_allow_root_and_says_so(capsys):
    assert "--allow-root" in demo.lab_command([], euid=0)
    assert "running as root" in capsys.readouterr().out
    assert "--allow-root" not in demo.lab_command([], euid=1000)


def test_the_readme_shows_the_reconciliation_page_as_a_small_committed_picture():
    from pathlib import Path
    root = Path(__file__).resolve().parents[1]
    pictures = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", (root / "README.md").read_text())
    assert pictures == ["docs/img/reconciliation.jpg"]
    picture = root / pictures[0]
    assert picture.read_bytes()[:3] == b"\xff\xd8\xff" and picture.stat().st_size < 200_000
