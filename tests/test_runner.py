"""Scheduled notebook runs: papermill executes the real notebooks against the sandbox and DuckDB."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nbformat
import pytest

from ampkit import config as configuration
from ampkit import runner, state, warehouse as warehouses
from ampkit.errors import SecretError

from conftest import API_KEY, NOW, SECRET_KEY

CHROMIUM = shutil.which("chromium")


@pytest.fixture
def kernel_env(monkeypatch, seeded, sandbox, tmp_path):
    """The environment a scheduled run has: the kernel reads it (secrets included), parameters never carry it."""
    monkeypatch.setenv("AMPKIT_WAREHOUSE", seeded)
    monkeypatch.setenv("AMPKIT_AMPLITUDE_URL", sandbox.url)
    monkeypatch.setenv("AMPKIT_SETTLE_SECONDS", "0")
    monkeypatch.setenv("AMPKIT_RUNS_DIR", "runs")  # relative to the run's working directory (tmp_path)
    monkeypatch.setenv("AMPKIT_REPORTS_DIR", "reports")
    monkeypatch.setenv("AMPKIT_RETRY_BUDGET_SECONDS", "20")
    monkeypatch.setenv("AMPKIT_MAX_BACKOFF_SECONDS", "0.5")
    return configuration.load({"now": NOW})


def outputs(nb) -> list[dict]:
    return [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]


def test_hourly_sync_run_leaves_a_record_with_table_and_charts(kernel_env, seeded):
    result = runner.run("hourly_sync", {}, config=kernel_env)
    assert result.status == "ok" and result.exit_code == 0
    nb = nbformat.read(result.notebook_path, as_version=4)
    html_tables = [o["data"]["text/html"] for o in outputs(nb) if "text/html" in o.get("data", {}) and "<table" in o["data"]["text/html"]]
    assert any("extracted" in t and "accepted" in t and "codeintel_deny_list" in t for t in html_tables)
    figures = [o for o in outputs(nb) if "application/vnd.plotly.v1+json" in o.get("data", {})]
    assert len(figures) == 2
    bars = figures[0]["data"]["application/vnd.plotly.v1+json"]["data"]
    assert {"accepted", "filtered: backend"} <= {b["name"] for b in bars}
    assert nb.metadata["papermill"]["input_path"] == "notebooks/hourly_sync.ipynb"
    assert "/tmp" not in json.dumps(nb.metadata)
    with warehouses.open(seeded) as wh:
        last = state.runs(wh, 1)[0]
    assert last["status"] == "ok" and last["notebook_path"] == result.notebook_path
    assert Path(result.report_path).exists()


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (./run test installs it as root)")
def test_report_renders_its_charts_in_headless_chromium(kernel_env, tmp_path):
    result = runner.run("hourly_sync", {}, config=kernel_env)
    html = Path(result.report_path)
    assert 'src="https://cdn.plot.ly' not in html.read_text()  # plotly.js is embedded, not fetched
    dom = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                          "--disable-component-update", f"--user-data-dir={tmp_path / 'chrome'}",
                          "--virtual-time-budget=10000", "--dump-dom", html.resolve().as_uri()],
                         capture_output=True, text=True, timeout=120).stdout
    assert dom.count('class="main-svg"') >= 2, "the plotly charts did not render"
    assert "Where every extracted event went" in dom


def test_a_failed_run_fails_the_notebook_and_the_next_run_resends(kernel_env, seeded, sandbox):
    sandbox.control.inject("/batch", status=403, share=1.0)
    failed = runner.run("hourly_sync", {}, config=kernel_env)
    assert failed.status == "failed" and failed.exit_code != 0
    nb = nbformat.read(failed.notebook_path, as_version=4)
    errors = [o for o in outputs(nb) if o.get("output_type") == "error"]
    assert errors and errors[0]["ename"] == "FatalAmplitudeError"
    with warehouses.open(seeded) as wh:
        assert state.watermark(wh) is None
        assert state.runs(wh, 1)[0]["status"] == "failed"
    sandbox.control.clear_faults()
    again = runner.run("hourly_sync", {}, config=kernel_env)
    assert again.status == "ok" and again.notebook_path != failed.notebook_path
    with warehouses.open(seeded) as wh:
        assert state.watermark(wh) is not None


def test_cell_timeout_fails_the_run_whatever_the_metadata_says(kernel_env, sandbox):
    sandbox.control.inject("/batch", kind="delay", delay_seconds=8, share=1.0)
    result = runner.run("hourly_sync", {}, config=kernel_env, cell_timeout_seconds=3)
    assert result.status == "failed" and result.exit_code != 0


def test_outer_timeout_kills_the_run(kernel_env, sandbox):
    sandbox.control.inject("/batch", kind="delay", delay_seconds=8, share=1.0)
    result = runner.run("hourly_sync", {}, config=kernel_env, timeout_seconds=6)
    assert result.status == "timeout" and result.exit_code == 124


def test_two_runners_at_once_one_runs_one_skips(kernel_env, seeded, sandbox, monkeypatch):
    monkeypatch.setenv("AMPKIT_NOW", NOW.isoformat())
    # The first run's requests are held by the sandbox until the second run has decided, so how
    # fast either kernel starts cannot change the outcome.
    sandbox.control.inject("/batch", kind="delay", delay_seconds=300, share=1.0)
    command = [sys.executable, "-m", "ampkit", "run-notebook", "hourly_sync", "--no-report"]
    lock = Path(seeded.removeprefix("duckdb:///") + f".{state.LEASE_NAME}.lock")
    first = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 120
        while not (lock.exists() and lock.read_text().strip()):
            assert time.monotonic() < deadline and first.poll() is None, "the first run never took the lease"
            time.sleep(0.05)
        second = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        seen = []
        for line in second.stdout:
            seen.append(line)
            if "skipped: another sync holds the lease" in line:
                break
        assert any("skipped" in line for line in seen), "".join(seen)[-2000:]
    finally:
        sandbox.control.clear_faults()
    outputs_ = [p.communicate(timeout=300)[0] for p in (first, second)]
    assert [first.returncode, second.returncode] == [0, 0], [o[-2000:] for o in outputs_]
    with warehouses.open(seeded) as wh:
        statuses = sorted(r["status"] for r in state.runs(wh, 5))
    assert statuses == ["ok", "skipped_locked"]
    assert not lock.read_text(), "the lock file still names a holder after the run"


def test_a_gs_destination_without_gcsfs_is_refused_before_anything_runs(kernel_env, seeded, monkeypatch):
    # gcsfs is the optional extra `gcs`; with it installed this check has nothing to refuse.
    try:
        import gcsfs  # noqa: F401
        pytest.skip("gcsfs is installed")
    except ImportError:
        pass
    monkeypatch.setenv("AMPKIT_RUNS_DIR", "gs://ampkit-records/runs")
    done = subprocess.run([sys.executable, "-m", "ampkit", "run-notebook", "hourly_sync"], capture_output=True, text=True)
    assert done.returncode == 1 and "needs gcsfs" in done.stderr and "ampkit[gcs]" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr
    with warehouses.open(seeded) as wh:
        wh.ensure_state()
        assert state.runs(wh, 5) == [], "the notebook ran although its record could not be archived"


def test_a_record_that_cannot_be_archived_fails_the_job_and_is_kept_locally(kernel_env, seeded, monkeypatch, tmp_path):
    (tmp_path / "not-a-dir").write_text("")
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # where the unarchived copy goes
    monkeypatch.setenv("AMPKIT_RUNS_DIR", str(tmp_path / "not-a-dir" / "runs"))
    result = runner.run("hourly_sync", {}, config=configuration.load({"now": NOW}))
    assert result.status == "failed" and result.exit_code != 0
    assert Path(result.notebook_path).exists() and "ampkit-unarchived" in result.notebook_path
    with warehouses.open(seeded) as wh:
        assert [r["status"] for r in state.runs(wh, 5)] == ["ok"]  # the sync itself went through


def test_secret_looking_parameters_are_refused(kernel_env, tmp_path):
    with pytest.raises(SecretError):
        runner.run("hourly_sync", {"amplitude_api_key": "x"}, config=kernel_env)
    with pytest.raises(SecretError):
        runner.run("hourly_sync", {"now": API_KEY}, config=kernel_env)
    done = subprocess.run([sys.executable, "-m", "ampkit", "run-notebook", "hourly_sync", "-p", "secret_key", "x"],
                          capture_output=True, text=True)
    assert done.returncode == 1 and "looks like a secret" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "runs").exists()


def test_runs_overview_shows_the_ledger(kernel_env):
    runner.run("hourly_sync", {}, config=kernel_env, report=False)
    result = runner.run("runs_overview", {"limit": 10}, config=kernel_env)
    assert result.status == "ok"
    nb = nbformat.read(result.notebook_path, as_version=4)
    tables = [o["data"]["text/html"] for o in outputs(nb) if "<table" in o.get("data", {}).get("text/html", "")]
    assert tables and "hourly_sync" in tables[0] and "ok" in tables[0]


def test_no_secret_in_any_record_report_or_log(kernel_env, sandbox, tmp_path, capfd):
    sandbox.control.inject("/batch", status=403, count=1)
    runner.run("hourly_sync", {}, config=kernel_env)
    runner.run("hourly_sync", {}, config=kernel_env)
    logs = capfd.readouterr()
    texts = [logs.out, logs.err]
    for path in tmp_path.rglob("*"):
        if path.is_file() and path.suffix in (".ipynb", ".html", ".log", ".json"):
            texts.append(path.read_text(errors="replace"))
    assert len(texts) > 4
    for text in texts:
        assert API_KEY not in text and SECRET_KEY not in text
