"""The main job on the embedded defaults: seed, stage hourly, sync hourly into the sandbox, reconcile.

Everything runs offline: a DuckDB warehouse under `.ampkit/`, the local Amplitude sandbox on
127.0.0.1, and a fixed clock so two runs give the same result. Safe to run twice: the seed is
skipped when the warehouse has data, staging and the sync only move what is new.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
import os
import secrets
from pathlib import Path

from ampkit import config as configuration
from ampkit import seed, stage, warehouse as warehouses

logger = logging.getLogger(__name__)

DEMO_NOW = "2022-03-14T12:00:00+00:00"
DEMO_DAYS = 14
DEMO_EVENTS_PER_DAY = 20_000
HOURLY_RUNS = 3
STATE_DIR = Path(".ampkit")
# The demo's sandbox answers here, so the URL it leaves in ampkit.toml works again with `ampkit sandbox`.
SANDBOX_PORT = 8377
CONFIG_MARK = "# Written by `ampkit demo`"
SECRET_FILES = {"AMPLITUDE_API_KEY": STATE_DIR / "secrets" / "sandbox_api_key",
                "AMPLITUDE_SECRET_KEY": STATE_DIR / "secrets" / "sandbox_secret_key"}


@dataclasses.dataclass
class DemoResult:
    """What the demo did and where its records are."""

    seeded: int
    staged: int
    runs: list
    run_records: list[str]
    reports: list[str]
    sandbox_db: str
    reconciliation: object = None
    index: str = ""  # the reports folder's front page


def ensure_secrets(env=os.environ) -> None:
    """Give the sandbox and the sync one key pair: the environment's, or a local one in .ampkit/secrets (0600)."""
    for name, path in SECRET_FILES.items():
        if env.get(name) or env.get(name + "_FILE"):
            continue
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(secrets.token_hex(16))
            path.chmod(0o600)
        env[name + "_FILE"] = str(path.resolve())


def demo_config(overrides: dict | None = None) -> configuration.Config:
    """The demo's configuration: the embedded defaults with a fixed clock unless AMPKIT_NOW is set."""
    # The sandbox runs with no export lag, so the reconciliation expects none.
    values = {"now": os.environ.get("AMPKIT_NOW") or DEMO_NOW, "export_lag_seconds": os.environ.get("AMPKIT_EXPORT_LAG_SECONDS") or 0}
    values.update({k: v for k, v in (overrides or {}).items() if v is not None})
    return configuration.load(values)


def sandbox_port(config: configuration.Config) -> int:
    """The port of the demo's sandbox: the one ampkit.toml names, else SANDBOX_PORT, else (when that
    one is taken) any free port (I/O: tries to bind)."""
    import socket
    from urllib.parse import urlsplit
    wanted = urlsplit(config.amplitude_url).port if config.amplitude_url else None
    for port in (wanted or SANDBOX_PORT, 0):
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                logger.warning("port %d is taken; the demo's sandbox takes another", port)
                continue
            return probe.getsockname()[1]
    raise RuntimeError("no free port on 127.0.0.1")  # pragma: no cover - bind to 0 does not fail


def write_settings(config: configuration.Config, url: str, path: Path = Path(configuration.CONFIG_FILE)) -> bool:
    """Leave the demo's settings in ./ampkit.toml, so every later command in this folder continues
    where the demo left off; never over a file the demo did not write. Returns whether it wrote (I/O)."""
    if path.exists() and not path.read_text(encoding="utf-8").startswith(CONFIG_MARK):
        logger.warning("%s is yours: the demo leaves it as it is", path)
        return False
    values = {"warehouse": config.warehouse, "now": config.clock().isoformat(), "amplitude_url": url,
              "export_lag_seconds": config.export_lag_seconds, "time_zone": config.time_zone}
    for setting, (name, file) in zip(configuration.KEY_FILE_SETTINGS, SECRET_FILES.items()):
        if not os.environ.get(name) and os.environ.get(name + "_FILE") == str(file.resolve()):
            values[setting] = str(file)  # relative: the folder's own key files
    lines = [CONFIG_MARK + ": the demo's settings, so ampkit commands in this folder continue where it",
             "# left off. `ampkit sandbox` serves its Amplitude sandbox again. Delete this file to start afresh.",
             "[ampkit]", *(f"{k} = {json.dumps(v)}" for k, v in values.items())]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return True


def prepare(config: configuration.Config) -> tuple[int, int]:
    """Seed the warehouse if it is empty and replay the hourly staging up to the demo's first run (I/O)."""
    now = config.clock()
    seeded = 0
    with warehouses.open(config.warehouse) as wh:
        wh.ensure_tables()
        wh.run("schema_seed")
        empty = int(wh.run("event_logs_count").column("row_count")[0].as_py()) == 0
        if empty:
            result = seed.fill(wh, seed.SeedSpec(start=(now - dt.timedelta(days=DEMO_DAYS - 1)).date(), days=DEMO_DAYS,
                                                 events_per_day=DEMO_EVENTS_PER_DAY, seed=42, until=now))
            seeded = result.rows
        first = now.replace(minute=0, second=0, microsecond=0) - dt.timedelta(hours=HOURLY_RUNS + 1)
        staged = stage.run(wh, config, first).staged
    return seeded, staged


def hourly_times(config: configuration.Config) -> list[dt.datetime]:
    """The demo's scheduled run times: the last HOURLY_RUNS hours, five minutes past each."""
    top = config.clock().replace(minute=0, second=0, microsecond=0)
    return [top - dt.timedelta(hours=h) + dt.timedelta(minutes=5) for h in range(HOURLY_RUNS, 0, -1)]


def run(overrides: dict | None = None, echo=print) -> DemoResult:
    """The whole main job (I/O): prepare the warehouse, start the sandbox, run the hourly notebook, reconcile."""
    from ampkit import runner
    from ampkit.sandbox import SandboxConfig, spawn

    ensure_secrets()
    base = demo_config(overrides)
    echo(f"warehouse {base.warehouse} · clock {base.clock().isoformat()} (reproducible; set AMPKIT_NOW to change)")
    seeded, staged = prepare(base)
    echo(f"seeded {seeded:,} synthetic Sourcegraph Cloud events" if seeded else "warehouse already seeded")
    echo(f"notebook cell output goes to {STATE_DIR / 'logs' / 'demo.log'}")
    sandbox_db = str(STATE_DIR / "sandbox.duckdb")
    keys = configuration.load({})
    records, reports, outcomes = [], [], []
    port = sandbox_port(base)
    with spawn(SandboxConfig(db_path=sandbox_db, api_keys=[(keys.api_key, keys.secret_key)], export_lag_seconds=0,
                             time_zone=base.time_zone, port=port)) as sandbox:
        echo(f"Amplitude sandbox at {sandbox.url} (events kept in {sandbox_db})")
        if write_settings(base, sandbox.url):
            echo(f"settings in {configuration.CONFIG_FILE}: later ampkit commands here use the demo's warehouse, clock and sandbox")
        os.environ["AMPKIT_AMPLITUDE_URL"] = sandbox.url
        os.environ["AMPKIT_WAREHOUSE"] = base.warehouse
        os.environ.setdefault("AMPKIT_EXPORT_LAG_SECONDS", "0")
        with warehouses.open(base.warehouse) as wh:
            for at in hourly_times(base):
                cfg = configuration.load({"now": at})
                staged += stage.run(wh, cfg, at.replace(minute=0)).staged
                result = runner.run("hourly_sync", {}, config=cfg, log_path=str(STATE_DIR / "logs" / "demo.log"))
                records.append(result.notebook_path)
                reports.append(result.report_path)
                outcomes.append(result)
                echo(f"hourly sync at {at:%Y-%m-%d %H:%M} UTC: {result.status} ({result.seconds:.0f}s) -> {result.notebook_path}")
                if result.status != "ok":
                    raise_failed(result)
            # The scheduled query's run at the clock's hour: its rows wait for the next sync (a pending window).
            staged += stage.run(wh, base, base.clock()).staged
        log = str(STATE_DIR / "logs" / "demo.log")
        final = configuration.load({"now": base.clock()})
        first_day = (base.clock() - dt.timedelta(days=DEMO_DAYS - 1)).date().isoformat()
        for name, params in (("runs_overview", {}), ("reconciliation", {"start": first_day}), ("onboarding", {})):
            done = runner.run(name, params, config=final, log_path=log)
            reports.append(done.report_path)
            records.append(done.notebook_path)
            echo(f"{name}: {done.status} ({done.seconds:.0f}s) -> {done.report_path}")
            if done.status != "ok":
                raise_failed(done)
        from ampkit import reconcile
        first, last = reconcile.date_range(final, (base.clock() - dt.timedelta(days=DEMO_DAYS - 1)).date().isoformat(), None)
        recon = reconcile.run(final, first, last)
    from ampkit import report
    return DemoResult(seeded, staged, outcomes, records, reports, sandbox_db, recon,
                      index=f"{base.reports_dir.rstrip('/')}/{report.INDEX}")


def raise_failed(result) -> None:
    from ampkit.errors import RunnerError
    raise RunnerError(f"the {result.name} notebook run {result.status} (exit {result.exit_code}); see {result.notebook_path or 'the log above'}")


def lab(args: list[str]) -> int:
    """JupyterLab on the notebooks with the demo's warehouse, clock and a running sandbox (I/O)."""
    import subprocess
    from ampkit.sandbox import SandboxConfig, spawn

    ensure_secrets()
    base = demo_config()
    keys = configuration.load({})
    with spawn(SandboxConfig(db_path=str(STATE_DIR / "sandbox.duckdb"), api_keys=[(keys.api_key, keys.secret_key)],
                             export_lag_seconds=0, time_zone=base.time_zone, port=sandbox_port(base))) as sandbox:
        env = {**os.environ, "AMPKIT_AMPLITUDE_URL": sandbox.url, "AMPKIT_WAREHOUSE": base.warehouse,
               "AMPKIT_NOW": base.clock().isoformat(), "AMPKIT_EXPORT_LAG_SECONDS": "0"}
        print(f"Amplitude sandbox at {sandbox.url}; warehouse {base.warehouse}; clock {base.clock().isoformat()}")
        return subprocess.call(lab_command(args), env=env)


def lab_command(args: list[str], euid: int | None = None) -> list[str]:
    """JupyterLab's command line; as root (a container's usual user) with --allow-root, said aloud,
    since Jupyter refuses root without it and exits at once (pure but for the line it prints)."""
    import sys
    command = [sys.executable, "-m", "jupyterlab", "--notebook-dir=notebooks", *args]
    if (os.geteuid() if euid is None else euid) == 0 and "--allow-root" not in args:
        print("running as root: JupyterLab started with --allow-root (it refuses root otherwise)")
        command.append("--allow-root")
    return command
