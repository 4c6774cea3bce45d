"""The main job on the embedded defaults, as a new user runs it: `ampkit demo` in an empty folder,
then the commands the demo says to keep going with, in that folder."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib

import pytest

from ampkit import demo

import children


def ampkit(*args, cwd, env, timeout=300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ampkit", *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)


@pytest.fixture
def folder(tmp_path):
    """An empty folder and an environment with no ampkit setting or key in it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AMPKIT_", "AMPLITUDE_"))}
    return tmp_path, env


def test_after_the_demo_every_command_in_its_folder_continues_where_it_left_off(folder):
    where, env = folder
    done = ampkit("demo", cwd=where, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "OK:" in done.stdout and "keep going here" in done.stdout
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


def test_lab_runs_as_root_with_allow_root_and_says_so(capsys):
    assert "--allow-root" in demo.lab_command([], euid=0)
    assert "running as root" in capsys.readouterr().out
    assert "--allow-root" not in demo.lab_command([], euid=1000)
