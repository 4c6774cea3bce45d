"""Small fixtures over real parts: a DuckDB warehouse on disk, the sandbox on 127.0.0.1, real keys in the env."""
from __future__ import annotations

import contextlib
import datetime as dt
import os
import signal
from pathlib import Path

import pytest

import children

from ampkit import config as configuration
from ampkit import seed, stage, warehouse as warehouses

# Distinctive values, so the secret scans of the suite can find any leak of them.
API_KEY = "testapikey0123456789abcdefABCDEF"
SECRET_KEY = "testsecret9876543210fedcbaFEDCBA"
NOW = dt.datetime(2022, 3, 14, 12, 0, tzinfo=dt.timezone.utc)


@pytest.fixture(autouse=True)
def end_children():
    """Every process a test started through `children.start` ends with the test, pass or fail."""
    yield
    children.end_all()


@pytest.fixture(autouse=True)
def clean_environ(monkeypatch, tmp_path):
    """No developer setting leaks into a test; every test gets the test key pair and its own cwd."""
    for name in list(os.environ):
        if name.startswith("AMPKIT_") or name.startswith("AMPLITUDE_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("AMPLITUDE_API_KEY", API_KEY)
    monkeypatch.setenv("AMPLITUDE_SECRET_KEY", SECRET_KEY)
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def sandbox():
    """The real sandbox server, in this process, answering on 127.0.0.1 with no export lag."""
    from ampkit.sandbox import SandboxConfig, start
    with start(SandboxConfig(api_keys=[(API_KEY, SECRET_KEY)], export_lag_seconds=0)) as sb:
        yield sb


@pytest.fixture
def warehouse_url(tmp_path):
    return f"duckdb:///{tmp_path}/warehouse.duckdb"


@pytest.fixture
def make_config(warehouse_url, sandbox):
    """A Config on the test warehouse and sandbox; keyword overrides win."""
    def make(**overrides):
        values = {"warehouse": warehouse_url, "amplitude_url": sandbox.url, "now": NOW,
                  "retry_budget_seconds": 60, "max_backoff_seconds": 0.5, "throttle_hold_seconds": 0.5,
                  "settle_seconds": 0, "export_lag_seconds": 0}
        values.update(overrides)
        return configuration.load(values)
    return make


def fill(url: str, *, days: int = 2, events_per_day: int = 3000, dirty_share: float = 0.02,
         late_share: float = 0.0, hours: int = 6, now: dt.datetime = NOW) -> None:
    """Seed `days` days ending at `now` and replay the hourly staging over the last `hours` hours."""
    with warehouses.open(url) as wh:
        seed.fill(wh, seed.SeedSpec(start=(now - dt.timedelta(days=days - 1)).date(), days=days,
                                    events_per_day=events_per_day, dirty_share=dirty_share, late_share=late_share,
                                    until=now))
        cfg = configuration.load({"warehouse": url, "now": now})
        stage.replay(wh, cfg, now - dt.timedelta(hours=hours), now)


@pytest.fixture
def seeded(warehouse_url):
    """A small seeded and staged warehouse (2 days, ~6k rows, 2% dirty)."""
    fill(warehouse_url)
    return warehouse_url


def _children_alive() -> list[tuple[int, str]]:
    """This process's children that are still running (not yet reaped zombies aside), from /proc."""
    me, found = os.getpid(), []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        name, rest = text[text.index("(") + 1:text.rindex(")")], text[text.rindex(")") + 2:].split()
        if int(rest[1]) == me and rest[0] != "Z":
            found.append((int(stat.parent.name), name))
    return found


@pytest.fixture(scope="session", autouse=True)
def no_process_outlives_the_suite():
    """The suite fails if a process it started outlives it (each test ends its own: children.start).
    A fixture's teardown, not a session hook, so under xdist each worker's failure is reported."""
    yield
    children.end_all()
    left = _children_alive() if Path("/proc").is_dir() else []
    for pid, _ in left:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    if left:
        pytest.fail("processes the tests started were still running (killed now): "
                    + ", ".join(f"{pid} ({name})" for pid, name in left))


def pytest_collection_modifyitems(config, items):
    """With `-n` (./run test), a test file runs on one worker, so its module fixtures and any port
    or file it holds are its own; tests/reliability runs whole on one, because its last module
    sweeps what the others wrote (--dist loadgroup)."""
    for item in items:
        path = Path(str(item.fspath))
        item.add_marker(pytest.mark.xdist_group("reliability" if "reliability" in path.parts else path.name))
