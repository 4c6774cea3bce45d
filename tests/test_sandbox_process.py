"""The sandbox as a process: spawn, crash and restart on the same database, the CLI, secrets."""
from __future__ import annotations

import gzip
import io
import json
import os
import signal
import subprocess
import sys
import threading
import time
import zipfile
from datetime import datetime, timezone

import pytest
import requests
from click.testing import CliRunner

from ampkit.errors import ConfigError
from ampkit.sandbox import SandboxConfig, command, spawn
from ampkit.sandbox.config import API_KEY_ENV, SECRET_KEY_ENV

import children

API_KEY = "process-test-api-key-0001"
SECRET = "process-test-secret-0001-do-not-print"


def exported_insert_ids(url):
    hour = datetime.now(timezone.utc)
    params = {"start": f"{hour:%Y%m%d}T00", "end": f"{hour:%Y%m%d}T23"}
    response = requests.get(url + "/api/2/export", params=params, auth=(API_KEY, SECRET), timeout=60)
    if response.status_code == 404:
        return []
    assert response.status_code == 200, response.text
    archive = zipfile.ZipFile(io.BytesIO(response.content))
    return [json.loads(line)["$insert_id"] for name in archive.namelist()
            for line in gzip.decompress(archive.read(name)).splitlines()]


def send_until_stopped(url, acknowledged, stop, errors):
    """Post 200-event batches with fresh insert_ids; record the ids of every 200."""
    with requests.Session() as session:
        n = 0
        while not stop.is_set():
            ids = [f"restart-{n}-{i}" for i in range(200)]
            n += 1
            body = {"api_key": API_KEY, "events": [{"event_type": "Tick", "device_id": f"device-{i % 50:04d}",
                                                    "insert_id": iid} for i, iid in enumerate(ids)]}
            try:
                response = session.post(url + "/batch", json=body, timeout=10)
            except requests.RequestException:
                return  # the server went away mid-request: that batch was not acknowledged
            if response.status_code == 200:
                acknowledged.extend(ids)
            else:
                errors.append(response.status_code)


@pytest.mark.parametrize("how", ["SIGKILL", "SIGTERM"])
def test_restart_mid_stream_loses_nothing_acknowledged(tmp_path, how):
    config = SandboxConfig(api_keys=[(API_KEY, SECRET)], db_path=str(tmp_path / "sandbox.duckdb"),
                           export_lag_seconds=0)
    first = spawn(config)
    acknowledged: list[str] = []
    errors: list[int] = []
    stop = threading.Event()
    sender = threading.Thread(target=send_until_stopped, args=(first.url, acknowledged, stop, errors))
    try:
        sender.start()
        deadline = time.monotonic() + 120
        while len(acknowledged) < 4000 and sender.is_alive():
            assert time.monotonic() < deadline, f"only {len(acknowledged)} events acknowledged in 120 s"
            threading.Event().wait(0.01)
        if how == "SIGKILL":
            os.kill(first.pid, signal.SIGKILL)
            first.kill()
        else:
            assert first.stop() == 0
    finally:
        stop.set()
        sender.join()
        first.kill()  # a no-op once it has ended; otherwise the test failed and it must not outlive it
    assert not errors and len(acknowledged) >= 4000
    second = spawn(config)
    try:
        ids = exported_insert_ids(second.url)
        assert set(acknowledged) <= set(ids)
        assert len(ids) == len(set(ids))  # nothing stored twice
        # The dedup index came back from disk: resending an acknowledged batch stores nothing.
        before = second.control.stats()["events_in_store"]
        body = {"api_key": API_KEY, "events": [{"event_type": "Tick", "device_id": f"device-{i % 50:04d}",
                                                "insert_id": f"restart-0-{i}"} for i in range(200)]}
        assert requests.post(second.url + "/batch", json=body).status_code == 200
        assert second.control.stats()["events_in_store"] == before
    finally:
        second.stop()


def test_spawn_passes_secrets_through_the_environment_and_never_prints_them(tmp_path):
    config = SandboxConfig(api_keys=[(API_KEY, SECRET)], db_path=str(tmp_path / "s.duckdb"))
    sandbox = spawn(config, log_path=tmp_path / "sandbox.log")
    try:
        with open(f"/proc/{sandbox.pid}/cmdline", "rb") as handle:
            argv = handle.read().decode()
        assert API_KEY not in argv and SECRET not in argv
        requests.post(sandbox.url + "/batch", json={"api_key": "wrong-key-123", "events": []})
        requests.get(sandbox.url + "/api/2/export", params={"start": "20260301T00", "end": "20260301T00"},
                     auth=(API_KEY, "bad-secret"))
        assert sandbox.control.health()["durable"] is True
    finally:
        assert sandbox.stop() == 0
    log = (tmp_path / "sandbox.log").read_text()
    assert "sandbox stopped" in log
    assert API_KEY not in log and SECRET not in log and "bad-secret" not in log
    assert SECRET not in repr(config) and API_KEY not in repr(config)


def test_cli_prints_the_url_serves_and_stops_cleanly_on_sigterm(tmp_path):
    env = {**os.environ, API_KEY_ENV: API_KEY, SECRET_KEY_ENV: SECRET, "PYTHONUNBUFFERED": "1"}
    # In a folder of its own: an ampkit.toml where it runs would give it the demo's port and keys.
    process = children.start([sys.executable, "-m", "ampkit.sandbox", "--db", str(tmp_path / "cli.duckdb"),
                              "--export-lag-seconds", "0", "--batch-eps", "50", "--throttle-window-seconds", "1"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True, cwd=tmp_path)
    try:
        url = process.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:")
        body = {"api_key": API_KEY, "events": [{"event_type": "Tick", "device_id": "device-cli1",
                                                "insert_id": f"cli-{i}"} for i in range(51)]}
        throttled = requests.post(url + "/batch", json=body, timeout=10)
        assert throttled.status_code == 429 and throttled.json()["eps_threshold"] == 50
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=20)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=30)
    assert process.returncode == 0
    assert API_KEY not in stderr and SECRET not in stderr
    assert (tmp_path / "cli.duckdb").exists()


def test_cli_refuses_a_non_loopback_host_without_allow_remote():
    result = CliRunner().invoke(command, ["--host", "0.0.0.0", "--memory"],
                                env={API_KEY_ENV: API_KEY, SECRET_KEY_ENV: SECRET})
    assert result.exit_code == 1
    assert "not a loopback address" in result.output and "--allow-remote" in result.output
    assert SECRET not in result.output


def test_cli_allows_remote_binding_when_asked():
    sandbox = spawn(["--host", "0.0.0.0", "--allow-remote", "--memory"],
                    env={**os.environ, API_KEY_ENV: API_KEY, SECRET_KEY_ENV: SECRET})
    try:
        assert sandbox.url.startswith("http://127.0.0.1:")
        assert sandbox.control.health()["status"] == "ok"
    finally:
        sandbox.stop()


def test_cli_without_keys_says_which_variables_to_set():
    result = CliRunner().invoke(command, ["--memory"], env={API_KEY_ENV: "", SECRET_KEY_ENV: ""})
    assert result.exit_code == 1
    assert "AMPLITUDE_API_KEY" in result.output


def test_config_from_env_reads_keys_and_ampkit_sandbox_variables():
    env = {API_KEY_ENV: API_KEY, SECRET_KEY_ENV: SECRET, "AMPKIT_SANDBOX_BATCH_EPS": "12",
           "AMPKIT_SANDBOX_TIME_ZONE": "Europe/Berlin", "AMPKIT_SANDBOX_ALLOW_REMOTE": "true",
           "AMPKIT_SANDBOX_PROJECTS": json.dumps([["second-key-0002", "second-secret", 123456]])}
    config = SandboxConfig.from_env(env, httpapi_eps=3)
    assert (config.batch_eps, config.httpapi_eps, config.time_zone, config.allow_remote) == (12, 3, "Europe/Berlin",
                                                                                            True)
    assert [(p.api_key, p.secret_key) for p in config.projects] == [(API_KEY, SECRET),
                                                                    ("second-key-0002", "second-secret")]
    assert config.projects[1].app_id == 123456
    assert SandboxConfig.from_env(config.to_env()) == config
    with pytest.raises(ConfigError, match="AMPKIT_SANDBOX_BATCH_EPS"):
        SandboxConfig.from_env({"AMPKIT_SANDBOX_BATCH_EPS": "lots"})
    with pytest.raises(ConfigError, match="time zone"):
        SandboxConfig(api_keys=[(API_KEY, SECRET)], time_zone="Mars/Olympus")
    with pytest.raises(ConfigError, match="positive"):
        SandboxConfig(api_keys=[(API_KEY, SECRET)], batch_eps=0)


def test_the_sandbox_takes_its_keys_from_key_files_as_the_sync_does(tmp_path):
    from ampkit.sandbox.config import SandboxConfig
    (tmp_path / "k").write_text("sandbox-file-key-0123456789\n")
    (tmp_path / "s").write_text("sandbox-file-secret-0123456789\n")
    config = SandboxConfig.from_env({"AMPLITUDE_API_KEY_FILE": str(tmp_path / "k"),
                                     "AMPLITUDE_SECRET_KEY_FILE": str(tmp_path / "s")})
    assert [(p.api_key, p.secret_key) for p in config.projects] == [("sandbox-file-key-0123456789",
                                                                    "sandbox-file-secret-0123456789")]
