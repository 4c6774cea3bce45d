"""Scheduled notebook runs: papermill executes the real notebooks against the sandbox and DuckDB."""
from __future__ import annotations

import datetime as dt
import json
import re
import os
import shutil
import signal
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

import children
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


def tables(nb) -> list[str]:
    """The HTML tables a record shows, the settings it ran with aside."""
    from ampkit.notebook import SETTINGS_MIME
    return [o["data"]["text/html"] for o in outputs(nb)
            if "<table" in o.get("data", {}).get("text/html", "") and SETTINGS_MIME not in o["data"]]


def test_hourly_sync_run_leaves_a_record_with_table_and_charts(kernel_env, seeded):
    result = runner.run("hourly_sync", {}, config=kernel_env)
    assert result.status == "ok" and result.exit_code == 0
    nb = nbformat.read(result.notebook_path, as_version=4)
    html_tables = tables(nb)
    assert any("extracted" in t and "accepted" in t and "codeintel_deny_list" in t for t in html_tables)
    figures = [o for o in outputs(nb) if "application/vnd.plotly.v1+json" in o.get("data", {})]
    assert len(figures) == 4
    # How fresh Amplitude is: this run's lag as a table, the recent runs' as a chart with data.
    assert any("from the event&#x27;s timestamp" in t or "from the event's timestamp" in t for t in html_tables)
    lag = figures[2]["data"]["application/vnd.plotly.v1+json"]
    assert {t["name"] for t in lag["data"]} >= {"p50 event to Amplitude", "p95 event to Amplitude"}
    assert all(t["y"] for t in lag["data"]) and lag["layout"]["yaxis"]["type"] == "log"
    # The first run on this warehouse: the guardrail has no history yet, and says so.
    band = figures[0]["data"]["application/vnd.plotly.v1+json"]["layout"]
    assert "no week of history for these hours yet" in band["annotations"][0]["text"]
    bars = figures[1]["data"]["application/vnd.plotly.v1+json"]["data"]
    assert {"accepted", "filtered: backend"} <= {b["name"] for b in bars}
    assert nb.metadata["papermill"]["input_path"] == "notebooks/hourly_sync.ipynb"
    # No path of the machine it ran on, beyond the settings it ran with (the test's warehouse is in /tmp).
    meta = {**nb.metadata, "papermill": {k: v for k, v in nb.metadata["papermill"].items() if k != "parameters"}}
    assert "/tmp" not in json.dumps(meta)
    assert nb.metadata["papermill"]["parameters"]["ampkit_settings"]["warehouse"] == seeded
    with warehouses.open(seeded) as wh:
        last = state.runs(wh, 1)[0]
    assert last["status"] == "ok" and last["notebook_path"] == result.notebook_path
    assert Path(result.report_path).exists()


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (./run test installs it as root)")
def test_report_renders_its_charts_in_headless_chromium(kernel_env, tmp_path):
    result = runner.run("hourly_sync", {}, config=kernel_env)
    html = Path(result.report_path)
    sources = re.findall(r'<script[^>]* src="([^"]+)"', html.read_text())
    assert sources and all(src.startswith("../../../../assets/") for src in sources)  # the folder's own copy
    dom = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                          "--disable-component-update", f"--user-data-dir={tmp_path / 'chrome'}",
                          "--virtual-time-budget=10000", "--dump-dom", html.resolve().as_uri()],
                         capture_output=True, text=True, timeout=120).stdout
    assert dom.count('class="main-svg"') >= 2, "the plotly charts did not render"
    assert "Where every extracted event went" in dom
    # A report, not a console: its title and header say what ran and how it ended; the log lines
    # are in one collapsed section at the end, nowhere else on the page.
    assert "<title>ampkit · hourly sync · 2022-03-14 12:00 UTC · ok</title>" in dom
    assert "status <strong>ok</strong>" in dom and "window 2022-03-14 06:00 .. 2022-03-14 12:00 UTC" in dom
    assert "data map " in dom
    outside = re.sub(r"<details>.*?</details>", "", dom, flags=re.S)
    assert not re.search(r"\d\d:\d\d:\d\d (DEBUG|INFO|WARNING|ERROR) ampkit", outside)  # plotly.js says INFO, a log line says this
    assert re.search(r"<details><summary>[\d,]+ log lines? \(collapsed\)</summary>.*ampkit\.sync", dom, re.S)


def test_a_dry_run_record_shows_what_it_would_send_per_rule_per_event_and_as_payloads(kernel_env, seeded, sandbox):
    result = runner.run("hourly_sync", {"dry_run": True}, config=kernel_env, html_report=False)
    assert (result.status, result.exit_code) == ("dry_run", 0)
    nb = nbformat.read(result.notebook_path, as_version=4)
    shown = tables(nb)
    assert any("codeintel_deny_list" in t and "no_id" in t for t in shown), "the per-rule table"
    figures = [o["data"]["application/vnd.plotly.v1+json"] for o in outputs(nb)
               if "application/vnd.plotly.v1+json" in o.get("data", {})]
    figure = next(f for f in figures if "event type" in json.dumps(f["layout"].get("title", "")))
    assert "No events" not in json.dumps(figure["layout"].get("title", ""))
    assert {"accepted", "filtered: backend", "rejected: no_id"} <= {b["name"] for b in figure["data"]}
    payloads = [o["data"]["text/markdown"] for o in outputs(nb) if "text/markdown" in o.get("data", {})]
    assert any('"event_type"' in p and '"insert_id"' in p for p in payloads), "sample payloads"
    assert sandbox.control.stats()["requests"] == 0
    with warehouses.open(seeded) as wh:
        assert state.runs(wh, 1)[0]["status"] == "dry_run" and state.watermark(wh) is None


def test_a_run_on_an_unapproved_data_map_is_held_exits_3_and_its_record_shows_the_review(kernel_env, seeded, monkeypatch, tmp_path):
    from importlib import resources
    first = runner.run("hourly_sync", {}, config=configuration.load({"now": NOW - dt.timedelta(hours=1)}))
    assert first.status == "ok"
    shipped = resources.files("ampkit.resources").joinpath("datamap.yaml").read_text()
    edited = tmp_path / "datamap.yaml"
    edited.write_text(shipped.replace("  - id: product_ui\n    action: send\n", "  - id: product_ui\n    action: exclude\n    reason: low_traffic\n", 1))
    monkeypatch.setenv("AMPKIT_DATA_MAP", str(edited))
    held = runner.run("hourly_sync", {}, config=configuration.load({"now": NOW}))
    assert held.status == "held" and held.exit_code == 3
    nb = nbformat.read(held.notebook_path, as_version=4)
    text = json.dumps([o for o in outputs(nb)])
    assert "is not approved and changes what reaches Amplitude" in text
    review = [t for t in tables(nb) if "events/day before" in t]
    assert review and "product_ui" in review[0]
    with warehouses.open(seeded) as wh:
        assert state.runs(wh, 1)[0]["status"] == "held" and state.watermark(wh) == NOW - dt.timedelta(hours=1)


def test_a_failed_run_fails_the_notebook_and_the_next_run_resends(kernel_env, seeded, sandbox):
    sandbox.control.inject("/batch", status=403, share=1.0)
    failed = runner.run("hourly_sync", {}, config=kernel_env)
    assert failed.status == "failed" and failed.exit_code != 0
    nb = nbformat.read(failed.notebook_path, as_version=4)
    errors = [o for o in outputs(nb) if o.get("output_type") == "error"]
    assert errors and errors[0]["ename"] == "FatalAmplitudeError"
    with warehouses.open(seeded) as wh:
        assert state.watermark(wh) is None
        row = state.runs(wh, 1)[0]
    # The ledger keeps what the failed run did: the window it was in and the rows it had extracted.
    assert row["status"] == "failed" and row["window_start"] < row["window_end"]
    assert row["extracted"] > 0 and row["accepted"] == 0 and "403" in row["error"]
    # Its page and index line say so too, from the ledger: the notebook failed before it could.
    assert f"window {row['window_start']:%Y-%m-%d %H:%M} .. {row['window_end']:%Y-%m-%d %H:%M} UTC" in nb.cells[0].source
    entry = json.loads(Path(failed.report_path).with_suffix(".json").read_text())
    assert entry["status"] == "failed" and entry["counts"]["extracted"] == row["extracted"]
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
    first = children.start(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 120
        while not (lock.exists() and lock.read_text().strip()):
            assert time.monotonic() < deadline and first.poll() is None, "the first run never took the lease"
            time.sleep(0.05)
        second = children.start(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
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
    # Each says how its run really ended, not only that the notebook completed.
    assert outputs_[0].splitlines()[-1].startswith("ok: hourly_sync")
    assert (outputs_[1] or "".join(seen)).splitlines()[-1].startswith("skipped_locked: hourly_sync"), outputs_[1][-500:]
    with warehouses.open(seeded) as wh:
        statuses = sorted(r["status"] for r in state.runs(wh, 5))
    assert statuses == ["ok", "skipped_locked"]
    assert not lock.read_text(), "the lock file still names a holder after the run"


def test_a_run_notebook_stopped_by_its_scheduler_takes_the_kernel_down_with_it(kernel_env, seeded, sandbox, monkeypatch):
    monkeypatch.setenv("AMPKIT_NOW", NOW.isoformat())
    sandbox.control.inject("/batch", kind="delay", delay_seconds=300, share=1.0)  # the kernel waits on Amplitude
    lock = Path(seeded.removeprefix("duckdb:///") + f".{state.LEASE_NAME}.lock")
    run = children.start([sys.executable, "-m", "ampkit", "run-notebook", "hourly_sync", "--no-report"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while not (lock.exists() and lock.read_text().strip()):  # the kernel's sync holds the lease
            assert time.monotonic() < deadline and run.poll() is None, "the run never took the lease"
            time.sleep(0.05)
        kernel = int(lock.read_text().splitlines()[0].rsplit(":", 1)[1])  # holder: run@host:pid
        run.send_signal(signal.SIGTERM)  # cron's kill, Kubernetes' deadline
        assert run.wait(timeout=60) == 128 + signal.SIGTERM
        gone_by = time.monotonic() + 15  # the runner gives papermill's session 10 s, then kills it
        while True:
            try:
                os.kill(kernel, 0)
            except ProcessLookupError:
                break
            assert time.monotonic() < gone_by, f"the kernel (pid {kernel}) outlived its run"
            time.sleep(0.05)
    finally:
        sandbox.control.clear_faults()


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


def test_runs_overview_shows_the_ledger_with_a_working_link_to_each_run_page(kernel_env):
    hourly = runner.run("hourly_sync", {}, config=kernel_env)
    result = runner.run("runs_overview", {"limit": 10}, config=kernel_env)
    assert result.status == "ok"
    nb = nbformat.read(result.notebook_path, as_version=4)
    shown = tables(nb)
    assert shown and "<td>ok</td>" in shown[0] and "p95 lag (min)" in shown[0]
    href = re.search(r'<a href="([^"]+)">run page</a>', shown[0]).group(1)
    assert (Path(result.report_path).parent / href).resolve() == Path(hourly.report_path).resolve()
    figures = [o["data"]["application/vnd.plotly.v1+json"] for o in outputs(nb) if "application/vnd.plotly.v1+json" in o.get("data", {})]
    per_run, per_hour = figures[-2], figures[-1]
    assert per_run["data"] and all(t["y"] for t in per_run["data"])
    assert per_hour["data"] and per_hour["layout"]["xaxis"]["title"]["text"] == "event hour (UTC)"


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


# Each notebook run takes every setting from a different layer, with a decoy one layer below that
# must lose (a decoy warehouse or data map that does not exist fails the run if it is used):
# a parameter beats the CLI, the CLI beats the environment, the environment beats ampkit.toml.
WAYS = ("parameter", "cli", "env", "toml")
LAYERS_BELOW = {"parameter": ("cli", "env", "toml"), "cli": ("env", "toml"), "env": ("toml",), "toml": ()}
NOTEBOOK_SETTINGS = {"hourly_sync": "lookback_hours", "reconciliation": "time_zone", "onboarding": "time_zone",
                     "runs_overview": None}


@pytest.mark.parametrize("rotation", range(4))
def test_every_notebook_runs_with_the_settings_it_was_given_whichever_way(rotation, seeded, sandbox, tmp_path):
    from ampkit import datamap
    name = list(NOTEBOOK_SETTINGS)[rotation]
    work = tmp_path / "work"
    work.mkdir()
    shutil.copy(datamap.default_path(), tmp_path / "map.yaml")
    real = {"now": NOW.isoformat(), "warehouse": seeded, "data_map": str(tmp_path / "map.yaml")}
    decoy = {"now": "2021-01-01T00:00:00+00:00", "warehouse": f"duckdb:///{tmp_path}/decoy.duckdb",
             "data_map": str(tmp_path / "no-such-map.yaml")}
    own = NOTEBOOK_SETTINGS[name]
    if own == "lookback_hours":
        real[own], decoy[own] = 9, 2
    elif own == "time_zone":
        real[own], decoy[own] = "Asia/Kolkata", "Asia/Tokyo"
    layers: dict[str, dict] = {way: {} for way in WAYS}
    for k, setting in enumerate(real):
        ways = [w for w in WAYS if (w != "parameter" or setting in ("now", own)) and (w != "cli" or setting in ("now", "warehouse", "data_map"))]
        # Shifted for the notebook's own setting so hourly_sync takes lookback_hours from the
        # environment: a notebook default once overrode it there.
        way = ways[(rotation + k + (setting == own)) % len(ways)]
        layers[way][setting] = real[setting]
        for below in LAYERS_BELOW[way]:
            if below != "cli" or setting in ("now", "warehouse", "data_map"):
                layers[below][setting] = decoy[setting]
    (work / "ampkit.toml").write_text("[ampkit]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in layers["toml"].items()))
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("AMPKIT_")},
           "AMPKIT_AMPLITUDE_URL": sandbox.url, "AMPKIT_SETTLE_SECONDS": "0",
           **{f"AMPKIT_{k.upper()}": str(v) for k, v in layers["env"].items()}}
    command = [sys.executable, "-m", "ampkit", *[a for k, v in layers["cli"].items() for a in (f"--{k.replace('_', '-')}", str(v))],
               "run-notebook", name, "--no-report", *[a for k, v in layers["parameter"].items() for a in ("-p", k, json.dumps(v))]]
    done = subprocess.run(command, cwd=work, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and done.stdout.startswith("ok:"), (layers, done.stdout[-1500:], done.stderr[-3000:])
    record = done.stdout.split("record ", 1)[1].split(";")[0].strip()
    nb = nbformat.read(work / record, as_version=4)
    from ampkit.notebook import SETTINGS_MIME
    used = next(o["data"][SETTINGS_MIME] for o in outputs(nb) if SETTINGS_MIME in o.get("data", {}))
    for setting, value in real.items():
        got = used[setting]
        assert (configuration.parse_time(got) == configuration.parse_time(value)) if setting == "now" else got == value, \
            (setting, got, value, layers)
    assert not (tmp_path / "decoy.duckdb").exists()
    if name == "hourly_sync":
        with warehouses.open(seeded) as wh:
            assert state.runs(wh, 1)[0]["notebook_path"] == record


REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """ampkit built as a wheel and installed into a virtualenv outside the checkout. Its dependencies
    are this environment's, put on the new one's path: what is tested is the wheel's own files."""
    import sysconfig
    base = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(base / "dist"), str(REPO)],
                   check=True, timeout=600, cwd=base)
    wheel = next((base / "dist").glob("ampkit-*.whl"))
    venv = base / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    site = next((venv / "lib").glob("python3*/site-packages"))
    (site / "ampkit_test_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run([sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install", "--no-deps", "-q",
                    str(wheel)], check=True, timeout=300, cwd=base)
    return venv


def test_a_wheel_installed_outside_the_checkout_runs_the_scheduled_hourly_sync(installed, seeded, sandbox, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    found = subprocess.run([str(installed / "bin" / "python"), "-c",
                            "import ampkit, ampkit.runner as r, ampkit.datamap as d; "
                            "print(ampkit.__file__, r.notebook_file('hourly_sync'), d.default_path())"],
                           cwd=elsewhere, capture_output=True, text=True, timeout=120)
    assert found.returncode == 0, found.stderr
    assert all(p.startswith(str(installed)) for p in found.stdout.split()), found.stdout
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("AMPKIT_") and k != "VIRTUAL_ENV"},
           "PATH": f"{installed / 'bin'}:/usr/bin:/bin", "AMPKIT_WAREHOUSE": seeded, "AMPKIT_AMPLITUDE_URL": sandbox.url,
           "AMPKIT_SETTLE_SECONDS": "0", "AMPKIT_NOW": NOW.isoformat()}
    # The scheduled script, from wherever it was copied, runs the ampkit it finds on PATH: the wheel's.
    script = shutil.copy(REPO / "scheduled" / "hourly_sync.sh", tmp_path / "hourly_sync.sh")
    done = subprocess.run([script, "--no-report"], cwd=elsewhere, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and done.stdout.startswith("ok: hourly_sync"), (done.stdout[-1000:], done.stderr[-3000:])
    with warehouses.open(seeded) as wh:
        last = state.runs(wh, 1)[0]
    assert last["status"] == "ok" and (elsewhere / last["notebook_path"]).exists()
    # Without ampkit anywhere, it says so.
    bare = subprocess.run([script], cwd=elsewhere, env={**env, "PATH": "/usr/bin:/bin"}, capture_output=True, text=True)
    assert bare.returncode == 127 and "ampkit is not installed" in bare.stderr
    # The recipes ship in the wheel: any cadence renders from a pip install.
    recipe = subprocess.run([str(installed / "bin" / "ampkit"), "schedule", "cron", "--interval-minutes", "5"],
                            cwd=elsewhere, env=env, capture_output=True, text=True, timeout=120)
    assert recipe.returncode == 0 and recipe.stdout.splitlines()[2].startswith("1-59/5 * * * *"), recipe.stderr


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_the_systemd_units_verify(tmp_path):
    # The unit as installed: its ExecStart pointing at the script (systemd checks it exists and runs).
    unit = (REPO / "scheduled" / "ampkit-hourly-sync.service").read_text()
    (tmp_path / "ampkit-hourly-sync.service").write_text(
        unit.replace("/opt/ampkit/scheduled/hourly_sync.sh", str(REPO / "scheduled" / "hourly_sync.sh")))
    shutil.copy(REPO / "scheduled" / "ampkit-hourly-sync.timer", tmp_path)
    done = subprocess.run(["systemd-analyze", "verify", "--man=no", "./ampkit-hourly-sync.timer", "./ampkit-hourly-sync.service"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and not done.stderr.strip(), done.stderr


def _object(properties: dict, required: tuple = ()) -> dict:
    return {"type": "object", "properties": properties, "required": list(required), "additionalProperties": False}


_STRING, _INT = {"type": "string"}, {"type": "integer", "minimum": 0}
_QUANTITIES = {"type": "object", "additionalProperties": {"type": ["string", "integer"]}}
# The fields of batch/v1 CronJob the manifest uses, with their types and allowed values as the
# Kubernetes API reference gives them; any other field (a typo, a field at the wrong level) fails.
_ENV = _object({"name": {"type": "string", "pattern": "^[A-Za-z_][A-Za-z0-9_]*$"}, "value": _STRING,
                "valueFrom": _object({"secretKeyRef": _object({"name": _STRING, "key": _STRING,
                                                                "optional": {"type": "boolean"}}, ("key",))})},
               ("name",))
_CONTAINER = _object({"name": _STRING, "image": _STRING, "workingDir": _STRING,
                      "command": {"type": "array", "items": _STRING}, "args": {"type": "array", "items": _STRING},
                      "env": {"type": "array", "items": _ENV},
                      "resources": _object({"requests": _QUANTITIES, "limits": _QUANTITIES})},
                     ("name", "image"))
_POD_SPEC = _object({"restartPolicy": {"enum": ["Never", "OnFailure"]}, "serviceAccountName": _STRING,
                     "containers": {"type": "array", "minItems": 1, "items": _CONTAINER}}, ("containers",))
_JOB_SPEC = _object({"backoffLimit": _INT, "activeDeadlineSeconds": _INT, "ttlSecondsAfterFinished": _INT,
                     "template": _object({"spec": _POD_SPEC}, ("spec",))}, ("template",))
_CRONJOB_SPEC = _object({"schedule": {"type": "string", "pattern": r"^(\S+\s+){4}\S+$"}, "timeZone": _STRING,
                         "concurrencyPolicy": {"enum": ["Allow", "Forbid", "Replace"]},
                         "startingDeadlineSeconds": _INT, "successfulJobsHistoryLimit": _INT,
                         "failedJobsHistoryLimit": _INT, "suspend": {"type": "boolean"},
                         "jobTemplate": _object({"spec": _JOB_SPEC}, ("spec",))}, ("schedule", "jobTemplate"))
CRONJOB_SCHEMA = _object({"apiVersion": {"const": "batch/v1"}, "kind": {"const": "CronJob"},
                          "metadata": _object({"name": {"type": "string", "pattern": "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"},
                                               "namespace": _STRING, "labels": {"type": "object"}}, ("name",)),
                          "spec": _CRONJOB_SPEC}, ("apiVersion", "kind", "metadata", "spec"))


def test_the_kubernetes_cronjob_is_a_valid_cronjob_that_runs_the_installed_ampkit():
    import jsonschema
    import yaml
    manifest = yaml.safe_load((REPO / "scheduled" / "kubernetes-cronjob.yaml").read_text())
    jsonschema.validate(manifest, CRONJOB_SCHEMA)
    container = manifest["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]
    assert container["command"][:3] == ["ampkit", "run-notebook", "hourly_sync"]  # not a path into a checkout
    secrets = {e["name"] for e in container["env"] if "valueFrom" in e}
    assert {"AMPLITUDE_API_KEY", "AMPLITUDE_SECRET_KEY"} <= secrets, "secrets come from a Secret, never a value"
    # The schema is not a rubber stamp: a field at the wrong level fails it.
    broken = json.loads(json.dumps(manifest))
    broken["spec"]["restartPolicy"] = "Never"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, CRONJOB_SCHEMA)


def test_a_secret_in_a_table_or_figure_of_the_record_is_masked_before_its_page_is_drawn():
    from ampkit.table import TABLE_MIME
    config = configuration.load({}, env={"AMPLITUDE_API_KEY": API_KEY, "AMPLITUDE_SECRET_KEY": SECRET_KEY})
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("")
    cell.outputs = [nbformat.v4.new_output("display_data", {TABLE_MIME: {"columns": ["error"], "rows": [[f"bad key {API_KEY}"]]}}),
                    nbformat.v4.new_output("display_data", {"application/vnd.plotly.v1+json": {"data": [], "layout": {"title": SECRET_KEY}}})]
    nb.cells.append(cell)
    runner.clean(nb, config, Path("hourly_sync.ipynb"), "runs/x.ipynb")
    text = json.dumps(nb)
    assert API_KEY not in text and SECRET_KEY not in text and "bad key ***" in text


def test_a_page_that_cannot_be_drawn_leaves_the_run_ok_and_its_record_archived(kernel_env, monkeypatch):
    from ampkit import report

    def broken(*args, **kwargs):
        raise RuntimeError("the template is gone")
    monkeypatch.setattr(report, "write", broken)
    result = runner.run("hourly_sync", {}, config=kernel_env)
    assert (result.status, result.exit_code, result.report_path) == ("ok", 0, "")
    assert Path(result.notebook_path).exists() and "/ampkit-unarchived/" not in result.notebook_path
