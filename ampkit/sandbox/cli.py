"""`ampkit sandbox`: run the local Amplitude-compatible server in the foreground."""
from __future__ import annotations

import gc
import logging
import signal
import sys
import threading
from pathlib import Path
from typing import Any

import click

from ampkit.errors import AmpkitError
from ampkit.sandbox.config import SandboxConfig
from ampkit.sandbox.server import start

DEFAULT_DB_PATH = ".ampkit/sandbox.duckdb"


@click.command("sandbox")
@click.option("--host", default=None, help="Address to bind (default 127.0.0.1; others need --allow-remote).")
@click.option("--port", type=int, default=None, help="Port to bind; 0 picks a free one (default 0).")
@click.option("--db", "db_path", type=click.Path(dir_okay=False), default=None,
              help=f"DuckDB file for stored events (default {DEFAULT_DB_PATH}).")
@click.option("--memory", is_flag=True, help="Keep events in memory only (lost on exit).")
@click.option("--allow-remote", is_flag=True, default=None,
              help="Allow binding a non-loopback address (the control API has no auth).")
@click.option("--time-zone", default=None, help="Project time zone for dashboard queries (default UTC).")
@click.option("--httpapi-eps", type=int, default=None, help="Per-id EPS limit on /2/httpapi (default 30).")
@click.option("--batch-eps", type=int, default=None, help="Per-id EPS limit on /batch (default 1000).")
@click.option("--throttle-window-seconds", type=int, default=None, help="Window for EPS limits (default 30).")
@click.option("--daily-quota", type=int, default=None, help="Events per id per rolling 24 h (default 500000).")
@click.option("--min-id-length", type=int, default=None, help="Default minimum id length (default 5).")
@click.option("--export-lag-seconds", type=int, default=None,
              help="Delay after an upload hour ends before it is exportable; 0 = immediately (default 7200).")
@click.option("--log-level", default="INFO", show_default=True,
              type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False))
def command(memory: bool, log_level: str, **options: Any) -> None:
    """Run the local Amplitude-compatible sandbox (ingestion, export, dashboard, control API).

    Keys come from AMPLITUDE_API_KEY / AMPLITUDE_SECRET_KEY or their *_FILE paths (as the sync
    reads them); other settings from the options below or AMPKIT_SANDBOX_* variables. In a folder
    whose ampkit.toml points the sync at a sandbox on this machine (the demo's), that file gives the
    port, keys, time zone and export lag not given otherwise, so the sync finds the sandbox there.
    Prints the base URL on stdout, then serves until SIGINT or SIGTERM.
    """
    logging.basicConfig(level=log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")
    overrides = {k: v for k, v in options.items() if v is not None}
    try:
        config = _in_this_folder(SandboxConfig.from_env(**overrides), overrides)
        if memory:
            config = config.replace(db_path=None)
        elif config.db_path is None:
            config = config.replace(db_path=DEFAULT_DB_PATH)
        if config.db_path:
            Path(config.db_path).parent.mkdir(parents=True, exist_ok=True)
        sandbox = start(config)
    except AmpkitError as exc:
        raise click.ClickException(str(exc)) from exc
    stopping = threading.Event()

    def request_stop(signum: int, frame: Any) -> None:
        stopping.set()

    previous = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    # Parsed request bodies are acyclic and die young; the cyclic collector only adds cost,
    # mostly by rescanning every long-lived object. This process is ours, so tune it here.
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)
    click.echo(sandbox.url)
    sys.stdout.flush()
    click.echo(f"ampkit sandbox: apps {', '.join(str(p.app_id) for p in config.projects)}; "
               f"events {'in ' + config.db_path if config.db_path else 'in memory'}; "
               f"time zone {config.time_zone}; stop with Ctrl-C", err=True)
    try:
        while not stopping.wait(0.5):
            pass
    finally:
        sandbox.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        logging.getLogger(__name__).info("sandbox stopped url=%s", sandbox.url)


def _in_this_folder(config: SandboxConfig, options: dict[str, Any]) -> SandboxConfig:
    """`config` completed from this folder's ampkit configuration where it points at a sandbox on
    this machine: what the option or AMPKIT_SANDBOX_* variable does not say, it does."""
    import os
    from urllib.parse import urlsplit

    from ampkit import config as configuration
    from ampkit.sandbox.config import ENV_PREFIX, is_loopback
    ampkit = configuration.load()
    url = urlsplit(ampkit.amplitude_url) if ampkit.amplitude_url else None
    if url is None or not url.hostname or not is_loopback(url.hostname):
        return config

    def unset(name: str) -> bool:
        return name not in options and not os.environ.get(ENV_PREFIX + name.upper())
    changes: dict[str, Any] = {}
    if unset("port") and url.port:
        changes["port"] = url.port
    if unset("time_zone"):
        changes["time_zone"] = ampkit.time_zone
    if unset("export_lag_seconds"):
        changes["export_lag_seconds"] = ampkit.export_lag_seconds
    if not config.projects and ampkit.api_key:
        changes["api_keys"] = [(ampkit.api_key, ampkit.secret_key or None)]
    return config.replace(**changes) if changes else config
