"""The reliability suite's fixtures, its soak switch and the one-line tally printed at the end.

Soak mode (more crash points, longer fault storms, more events): `--soak` when pytest is
pointed at this directory (`pytest tests/reliability --soak`), or `AMPKIT_SOAK=1` from
anywhere (pytest only honours options of conftests it loads before parsing the command line).
"""
from __future__ import annotations

import dataclasses
import logging
import os
from pathlib import Path

import pytest

from . import support


@dataclasses.dataclass
class Tally:
    """What the suite tried and checked, for the closing line."""

    tests: int = 0
    subcases: int = 0          # extra cases inside one test: kill points of a loop, storms, probes
    kills: int = 0
    events: int = 0            # insert_ids checked against the export (each check counted)
    lost: int = 0
    duplicated: int = 0
    unexpected: int = 0
    known_bugs: int = 0        # xfail tests (each a bug documented in its reason)
    known_bug_lost: int = 0
    known_bug_duplicated: int = 0
    restored: int = 0          # DuckDB files damaged by a kill (DuckDB's bug) and put back from their copy
    soak: bool = False
    paths: dict = dataclasses.field(default_factory=dict)       # tmp dir -> produced by a known-bug test
    log_leaks: list = dataclasses.field(default_factory=list)   # (test, message) of log records carrying a secret
    log_records: int = 0
    current: str = ""
    current_known_bug: bool = False


TALLY = Tally()


def pytest_addoption(parser):
    group = parser.getgroup("reliability")
    group.addoption("--soak", action="store_true", default=False,
                    help="reliability suite: more crash points, longer fault storms (or AMPKIT_SOAK=1)")


def pytest_configure(config):
    # Read before any test runs: the suite's autouse fixture clears AMPKIT_* from the environment.
    try:
        flag = config.getoption("soak")
    except ValueError:
        flag = False
    TALLY.soak = bool(flag) or os.environ.get("AMPKIT_SOAK", "") not in ("", "0")


def is_soak() -> bool:
    return TALLY.soak


class LeakWatch(logging.Handler):
    """Sees every log record of the suite (ampkit's, the sandbox's, libraries') and keeps those carrying a secret."""

    def emit(self, record: logging.LogRecord) -> None:
        if not TALLY.current:  # only while a reliability test (or its fixtures) runs
            return
        TALLY.log_records += 1
        try:
            text = record.getMessage() + (self.formatException(record.exc_info) if record.exc_info else "")
        except Exception:  # a broken record is not ours to judge
            return
        if support.leaks(text) and not TALLY.current_known_bug:
            TALLY.log_leaks.append((TALLY.current, text[:500]))


WATCH = LeakWatch(logging.DEBUG)
_SAVED_LEVEL: list[int] = []


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    """Before a reliability test and its fixtures (module-scoped ones too): watch the log at DEBUG."""
    TALLY.current = item.nodeid
    TALLY.current_known_bug = item.get_closest_marker("xfail") is not None
    for logger in (logging.getLogger("ampkit"), logging.getLogger()):
        if WATCH not in logger.handlers:
            logger.addHandler(WATCH)
    ampkit_logger = logging.getLogger("ampkit")
    _SAVED_LEVEL[:] = [ampkit_logger.level]
    ampkit_logger.setLevel(logging.DEBUG)


@pytest.hookimpl(trylast=True)
def pytest_runtest_teardown(item, nextitem):
    if _SAVED_LEVEL:
        logging.getLogger("ampkit").setLevel(_SAVED_LEVEL.pop())
    TALLY.current, TALLY.current_known_bug = "", False


def pytest_sessionfinish(session):
    for logger in (logging.getLogger("ampkit"), logging.getLogger()):
        if WATCH in logger.handlers:
            logger.removeHandler(WATCH)


@pytest.fixture(autouse=True)
def _sweep_later(request, tmp_path):
    """Every reliability test's tmp dir is swept for secrets at the end (test_zz_secret_scan.py)."""
    TALLY.paths[str(tmp_path)] = request.node.get_closest_marker("xfail") is not None


def register_path(path) -> None:
    """A directory a module-scoped fixture wrote to, for the final secret sweep."""
    TALLY.paths[str(Path(path))] = False


def pytest_runtest_logreport(report):
    if "tests/reliability/" not in report.nodeid.replace("\\", "/") and not report.nodeid.startswith("reliability/"):
        return
    if report.when == "call" or (report.when == "setup" and report.outcome != "passed"):
        TALLY.tests += 1
        if hasattr(report, "wasxfail"):
            TALLY.known_bugs += 1


def pytest_terminal_summary(terminalreporter):
    if not TALLY.tests:
        return
    t = TALLY
    terminalreporter.write_line(
        f"reliability: {t.tests + t.subcases} cases, {t.events} events checked, lost {t.lost}, duplicated {t.duplicated}")
    terminalreporter.write_line(
        f"reliability: {t.tests} tests + {t.subcases} sub-cases, {t.kills} SIGKILLs, {t.unexpected} unexpected events, "
        f"{t.known_bugs} known bugs (xfail; lost {t.known_bug_lost}, duplicated {t.known_bug_duplicated} there), "
        f"{t.restored} DuckDB files damaged by a kill and put back, soak {'on' if t.soak else 'off'}")


class Recorder:
    """A test's handle on the tally: counts sub-cases and kills, and checks delivery against the oracle."""

    def __init__(self, known_bug: bool):
        self.known_bug = known_bug

    def subcase(self, n: int = 1) -> None:
        TALLY.subcases += n

    def killed(self, n: int = 1) -> None:
        TALLY.kills += n

    def restored(self) -> None:
        TALLY.restored += 1

    def delivered(self, expected: set[str], got, what: str = "") -> None:
        """Assert the export holds exactly `expected`, each once (`got`: insert_id -> copies)."""
        lost = expected - set(got)
        twice = {k: n for k, n in got.items() if n > 1}
        unexpected = set(got) - expected
        TALLY.events += len(expected)
        if self.known_bug:
            TALLY.known_bug_lost += len(lost)
            TALLY.known_bug_duplicated += sum(n - 1 for n in twice.values())
        else:
            TALLY.lost += len(lost)
            TALLY.duplicated += sum(n - 1 for n in twice.values())
            TALLY.unexpected += len(unexpected)
        where = f" ({what})" if what else ""
        assert not lost, f"{len(lost)} events lost{where}, e.g. {sorted(lost)[:5]}"
        assert not twice, f"{len(twice)} insert_ids stored more than once{where}, e.g. {dict(list(twice.items())[:5])}"
        assert not unexpected, f"{len(unexpected)} events in Amplitude that should not be{where}, e.g. {sorted(unexpected)[:5]}"


@pytest.fixture
def rel(request) -> Recorder:
    return Recorder(known_bug=request.node.get_closest_marker("xfail") is not None)


@pytest.fixture
def soak() -> bool:
    return is_soak()


@pytest.fixture(scope="module")
def amp_server():
    """One in-process sandbox per module (loopback, no export lag); tests keep apart by insert_id prefix."""
    from ampkit.sandbox import SandboxConfig, start
    with start(SandboxConfig(api_keys=[(support.API_KEY, support.SECRET_KEY)], export_lag_seconds=0)) as sb:
        yield sb


@pytest.fixture
def amp(amp_server):
    """The module's sandbox with no faults, fresh stats and limits, the real clock; its events kept."""
    amp_server.control.reset(keep_events=True)
    yield amp_server
    amp_server.control.clear_faults()


@pytest.fixture
def wh_url(tmp_path) -> str:
    return support.fresh_warehouse(tmp_path)


@pytest.fixture
def prefix(request) -> str:
    """An insert_id prefix unique to this test (its events never mix with another test's)."""
    import hashlib
    return "r" + hashlib.sha1(request.node.nodeid.encode()).hexdigest()[:10]
