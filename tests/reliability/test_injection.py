"""7. Injection and exposure.

Dataset and table names reach SQL only as validated identifiers, every other value only as a
query parameter: quotes, semicolons and backticks are tried in warehouse URLs, data-map event
names, event names in rows and CLI options; afterwards every state table is still there and
holds what it should. The sandbox listens on loopback unless told otherwise and refuses keys
it does not know.
"""
from __future__ import annotations

import ast
import datetime as dt
import json
import logging
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import requests

import ampkit
from ampkit import sync
from ampkit import warehouse as warehouses
from ampkit.errors import ConfigError

from . import support
from .support import API_KEY, HOUR, NOW, SECRET_KEY

EVIL = ["x'; DROP TABLE ampkit_runs; --", 'x"; DROP TABLE ampkit_runs; --', "x`; DROP TABLE ampkit_runs; --`",
        "x); DELETE FROM ampkit_deliveries; --", "x\n; DROP TABLE ampkit_state"]
STATE_TABLES = {"ampkit_runs", "ampkit_state", "ampkit_lease", "ampkit_pending", "ampkit_deliveries",
                "ampkit_dead_letters", "ampkit_run_rules", "amplitude_events", "event_logs"}


def tables(url: str) -> set[str]:
    return {r["table_name"] for r in support.query(url, "SELECT table_name FROM information_schema.tables")}


@pytest.fixture
def cli():
    """`ampkit ARGS` in-process; the 'ampkit' logger is put back afterwards."""
    from click.testing import CliRunner
    from ampkit.cli import cli as command
    logger = logging.getLogger("ampkit")
    saved = (list(logger.handlers), logger.level, logger.propagate)

    def invoke(*args, env=None):
        try:
            return CliRunner().invoke(command, list(args), env=env)
        finally:
            logger.handlers[:] = saved[0]
            logger.setLevel(saved[1])
            logger.propagate = saved[2]
    return invoke


# -- warehouse URLs and identifiers ------------------------------------------------------------------

@pytest.mark.parametrize("url", [
    pytest.param("bigquery://my-project/events;DROP TABLE ampkit_runs", id="semicolon-in-dataset"),
    pytest.param("bigquery://my-project/events`; DROP SCHEMA x; --", id="backtick-in-dataset"),
    pytest.param("bigquery://my-project/ev'ents", id="quote-in-dataset"),
    pytest.param('bigquery://my-project/ev"ents', id="double-quote-in-dataset"),
    pytest.param("bigquery://my-project/events%0A", id="encoded-newline-in-dataset"),
    pytest.param("bigquery://my-project/events/extra", id="extra-path"),
    pytest.param("bigquery://my'project/events", id="quote-in-project"),
    pytest.param("bigquery://my`project/events", id="backtick-in-project"),
    pytest.param("bigquery://my;project/events", id="semicolon-in-project"),
])
def test_bigquery_url_with_sql_metacharacters_is_refused_before_any_query(url, cli):
    with pytest.raises(ConfigError, match="not valid|must look like"):
        warehouses.open(url)
    result = cli("--warehouse", url, "sync")
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.exit_code == 1 and len(lines) == 1 and lines[0].startswith("Error: "), result.stderr


@pytest.mark.parametrize("name", ["we'ird;name`.duckdb", 'dq"uote; DROP TABLE ampkit_runs.duckdb'])
def test_duckdb_path_with_sql_metacharacters_is_only_a_file_name(name, tmp_path, amp, prefix, rel):
    url = f"duckdb:///{tmp_path}/{name}"
    rows = support.spread(prefix, 1, 30, NOW - HOUR, NOW)
    support.insert(url, rows)
    result = sync.run(support.config(url, amp.url, initial_lookback_hours=1), progress="none")
    assert result.status == "ok" and result.accepted == len(rows)
    assert (tmp_path / name).exists()
    assert STATE_TABLES <= tables(url)
    rel.delivered({r["insert_id"] for r in rows}, support.exported(amp.url, prefix), name)


@pytest.mark.parametrize("table", ["amplitude_events; DROP TABLE ampkit_runs", "amplitude_events`", "x'y",
                                   "amplitude_events\n", "1table", "amplitude-events", ""])
def test_table_identifiers_are_checked(table, wh_url):
    import pyarrow as pa
    with warehouses.open(wh_url) as wh:
        with pytest.raises(ConfigError, match="not valid"):
            wh.columns(table)
        with pytest.raises(ConfigError, match="not valid"):
            wh.append(table, pa.table({"id": [1]}))
    assert STATE_TABLES <= tables(wh_url)


# -- values: data map names, event names, CLI options -------------------------------------------------

def test_data_map_names_with_sql_metacharacters_are_matched_as_values(wh_url, amp, prefix, tmp_path, rel):
    from importlib import resources
    shipped = resources.files("ampkit.resources").joinpath("datamap.yaml").read_text()
    names = json.dumps(EVIL)
    (tmp_path / "datamap.yaml").write_text(shipped + f"""
  - id: hostile_names
    action: exclude
    reason: privacy
    note: names that try to break out of SQL
    events: {names}
""")
    hostile = [support.row(i + 1, prefix, name=name) for i, name in enumerate(EVIL)]
    normal = support.spread(prefix, 100, 20, NOW - HOUR, NOW)
    support.insert(wh_url, hostile + normal)
    result = sync.run(support.config(wh_url, amp.url, initial_lookback_hours=1, data_map=str(tmp_path / "datamap.yaml")),
                      progress="none")
    support.identity(result)
    assert result.filtered == {"hostile_names": len(EVIL)} and result.accepted == len(normal)
    assert support.outcome_of(wh_url, [r["id"] for r in hostile]) == {r["id"]: ("filtered", "hostile_names") for r in hostile}
    assert STATE_TABLES <= tables(wh_url)
    assert len(support.ledger(wh_url)) == 1
    rel.delivered({r["insert_id"] for r in normal}, support.exported(amp.url, prefix), "hostile data map names")


def test_event_names_with_sql_metacharacters_are_sent_verbatim(wh_url, amp, prefix, rel):
    rows = [support.row(i + 1, prefix, name=name) for i, name in enumerate(EVIL)]
    support.insert(wh_url, rows)
    result = sync.run(support.config(wh_url, amp.url, initial_lookback_hours=1), progress="none")
    assert result.accepted == len(EVIL)
    assert len([w for w in result.warnings if "not in the data map" in w]) == len(EVIL)
    stored = {e["$insert_id"]: e["event_type"] for e in support.exported(amp.url, prefix, rows=True)}
    assert stored == {r["insert_id"]: r["name"] for r in rows}
    rel.delivered({r["insert_id"] for r in rows}, {k: 1 for k in stored}, "hostile event names")
    assert STATE_TABLES <= tables(wh_url)
    assert support.books(wh_url) == []


@pytest.mark.parametrize("args", [
    pytest.param(["--now", EVIL[0], "sync"], id="now"),
    pytest.param(["--data-map", "'; DROP TABLE ampkit_runs; --.yaml", "sync"], id="data-map"),
    pytest.param(["sync", "--lookback-hours", "1; DROP TABLE ampkit_runs"], id="lookback-hours"),
    pytest.param(["sync", "--endpoint", "batch'; DROP TABLE ampkit_runs"], id="endpoint"),
    pytest.param(["runs", "--limit", "1; DROP TABLE ampkit_runs"], id="runs-limit"),
    pytest.param(["sync", "--amplitude-url", "http://127.0.0.1:9/'; DROP TABLE ampkit_runs; --"], id="amplitude-url"),
    pytest.param(["sync", "--start", EVIL[0]], id="start"),
    pytest.param(["sync", "--start", "2022-03-14", "--end", EVIL[2]], id="end"),
    pytest.param(["stage", "--hourly-from", EVIL[1]], id="stage-hourly-from"),
    pytest.param(["reconcile", "--start", EVIL[0]], id="reconcile-start"),
])
def test_cli_options_with_sql_metacharacters_change_nothing(args, wh_url, cli):
    support.insert(wh_url, [support.row(1, "cli")])
    # The watermark and a held lease; a run may leave the lease's unowned row and the schema's version.
    durable = ("amplitude_events", "event_logs", "ampkit_deliveries", "ampkit_state WHERE key = 'watermark'",
               "ampkit_dead_letters", "ampkit_lease WHERE holder IS NOT NULL")
    before = {t: support.query(wh_url, f"SELECT COUNT(*) AS n FROM {t}")[0]["n"] for t in durable}
    result = cli("--warehouse", wh_url, *args, env={"AMPKIT_RETRY_BUDGET_SECONDS": "1", "AMPKIT_MAX_BACKOFF_SECONDS": "0.2",
                                                    "AMPKIT_NOW": NOW.isoformat(), "AMPKIT_SETTLE_SECONDS": "0",
                                                    "AMPKIT_INITIAL_LOOKBACK_HOURS": "1"})
    assert result.exit_code != 0, result.output
    assert STATE_TABLES <= tables(wh_url)
    after = {t: support.query(wh_url, f"SELECT COUNT(*) AS n FROM {t}")[0]["n"] for t in durable}
    assert after == before
    assert all(r["status"] == "failed" for r in support.ledger(wh_url).values())


@pytest.mark.parametrize("args", [
    pytest.param(["sync", "--start", EVIL[0]], id="sync-start"),
    pytest.param(["sync", "--start", "2022-03-14", "--end", EVIL[2]], id="sync-end"),
    pytest.param(["stage", "--hourly-from", EVIL[1]], id="stage-hourly-from"),
    pytest.param(["dead-letters", "list", "--since", EVIL[0]], id="dead-letters-since"),
    pytest.param(["reconcile", "--start", EVIL[0]], id="reconcile-start"),
    pytest.param(["reconcile", "--end", EVIL[3]], id="reconcile-end"),
])
def test_malformed_time_options_fail_with_one_clear_line(args, wh_url, cli):
    result = cli("--warehouse", wh_url, *args)
    lines = [line for line in (result.stderr or "").splitlines() if line.strip()]
    assert result.exit_code in (1, 2) and isinstance(result.exception, SystemExit), repr(result.exception)
    assert len(lines) == 1 and lines[0].startswith("Error"), result.stderr
    assert "Traceback" not in result.stderr


def test_sql_reaches_engines_only_through_parameters_and_checked_identifiers():
    """Static audit: every SQL string built with interpolation in ampkit is one of a few reviewed places."""
    root = Path(ampkit.__file__).parent
    reviewed = {
        # (file, function): why the interpolation is safe
        ("warehouse.py", "append"): "table passes check_identifier() first (asserted below)",
        ("warehouse.py", "_check_reads"): "names from the copied file's own catalog, each through _quoted() (asserted below)",
        ("sandbox/store.py", "__init__"): "a module constant (checkpoint threshold)",
        ("sandbox/store.py", "delete"): "EventFilter.where(): fixed column names, values as ? parameters",
        ("sandbox/store.py", "interval_counts"): "fixed SQL fragments; event_type as a ? parameter",
        ("sandbox/store.py", "_insert"): "a module constant (column list)",
        ("sandbox/store.py", "export_batches"): "a module constant (column list)",
    }
    found = set()
    for path in sorted(root.rglob("*.py")):
        rel_path = path.relative_to(root).as_posix()
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for fn in [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]:
            for call in [n for n in ast.walk(fn) if isinstance(n, ast.Call)]:
                name = call.func.attr if isinstance(call.func, ast.Attribute) else getattr(call.func, "id", "")
                if name not in ("execute", "executemany", "sql", "query", "_run"):
                    continue
                for arg in call.args[:2]:
                    built = isinstance(arg, ast.JoinedStr) or (isinstance(arg, ast.BinOp) and isinstance(arg.op, (ast.Mod, ast.Add))) \
                        or (isinstance(arg, ast.Call) and getattr(arg.func, "attr", "") == "format")
                    if built:
                        found.add((rel_path, fn.name))
    unreviewed = found - set(reviewed)
    assert not unreviewed, f"SQL built by string interpolation outside the reviewed places: {sorted(unreviewed)}"
    source = (root / "warehouse.py").read_text()
    append = source[source.index("    def append(self, table, rows):\n        check_identifier"):]
    assert append.index("check_identifier") < append.index("INSERT INTO {table}")
    reads = source[source.index("def _check_reads("):source.index("def _quoted(")]
    assert reads.count('execute(f"') == 1 and 'execute(f"SELECT bit_xor(hash(t)) FROM {_quoted(schema)}.{_quoted(table)} AS t")' in reads
    for sql_file in (root / "sql").glob("*.sql"):
        text = sql_file.read_text()
        assert not re.search(r"\{[A-Za-z_]\w*\}|%\(|%s\b|\$\{", text), f"{sql_file.name} has a template placeholder"


# -- the sandbox's exposure ------------------------------------------------------------------------

def test_sandbox_listens_on_loopback_only_unless_told_otherwise():
    from ampkit.sandbox import SandboxConfig, start
    assert SandboxConfig(api_keys=[(API_KEY, SECRET_KEY)]).host == "127.0.0.1"
    for host in ("0.0.0.0", "::", "10.1.2.3", "example.com"):
        with pytest.raises(ConfigError, match="loopback"):
            SandboxConfig(api_keys=[(API_KEY, SECRET_KEY)], host=host)
    assert SandboxConfig(api_keys=[(API_KEY, SECRET_KEY)], host="0.0.0.0", allow_remote=True).host == "0.0.0.0"
    with start(SandboxConfig(api_keys=[(API_KEY, SECRET_KEY)])) as sb:
        assert sb.host == "127.0.0.1" and sb.url.startswith("http://127.0.0.1:")
        outward = _outward_address()
        if outward:
            with pytest.raises(OSError):
                socket.create_connection((outward, sb.port), timeout=2).close()


def _outward_address() -> str | None:
    """This machine's non-loopback address, if it has one (no packet is sent)."""
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        probe.connect(("192.0.2.1", 9))
        address = probe.getsockname()[0]
    except OSError:
        return None
    finally:
        probe.close()
    return None if address.startswith("127.") else address


def test_sandbox_command_refuses_a_public_address_without_allow_remote():
    environ = {**support.env("duckdb:///unused.duckdb", "http://127.0.0.1:9"), "PYTHONUNBUFFERED": "1"}
    child = subprocess.run([sys.executable, "-m", "ampkit.sandbox", "--memory", "--host", "0.0.0.0"],
                           env=environ, capture_output=True, text=True, timeout=60)
    assert child.returncode != 0 and "loopback" in child.stderr and "--allow-remote" in child.stderr
    assert not support.leaks(child.stdout + child.stderr)


def test_sandbox_refuses_unknown_keys(amp, prefix):
    event = {"event_type": "SearchSubmitted", "device_id": "dev-unknown-key-1", "insert_id": f"{prefix}-x", "time": 1}
    for key in ("not-a-project-key", "", SECRET_KEY, f"{API_KEY}'; DROP TABLE events; --"):
        r = requests.post(f"{amp.url}/batch", json={"api_key": key, "events": [event]}, timeout=30)
        assert r.status_code == 400, (key, r.status_code)
        assert SECRET_KEY not in r.text
    r = requests.post(f"{amp.url}/batch", json={"events": [event]}, timeout=30)
    assert r.status_code == 400 and "api_key" in r.text
    assert support.exported(amp.url, prefix) == {}, "an event with an unknown key was stored"
    start = (dt.datetime.now(dt.timezone.utc) - dt.timedelta(hours=1)).strftime("%Y%m%dT%H")
    for auth in ((API_KEY, "wrong-secret"), ("unknown", SECRET_KEY), (API_KEY, ""), None):
        r = requests.get(f"{amp.url}/api/2/export", params={"start": start, "end": start}, auth=auth, timeout=30)
        assert r.status_code == 401, (auth, r.status_code)
    seg = requests.get(f"{amp.url}/api/2/events/segmentation", auth=(API_KEY, SECRET_KEY), timeout=30,
                       params={"e": json.dumps({"event_type": EVIL[0]}), "start": "20220301", "end": "20220302"})
    assert seg.status_code == 200 and sum(seg.json()["data"]["series"][0]) == 0
    for payload in ({"endpoint": "/batch", "status": 503, "bogus": 1}, {"endpoint": "batch; DROP", "status": 503},
                    {"endpoint": "/batch", "status": "503; DROP"}):
        r = requests.post(f"{amp.url}/_sandbox/faults", json=payload, timeout=30)
        assert r.status_code == 400, payload
    assert requests.post(f"{amp.url}/_sandbox/reset", json={"keep_events": True, "evil": 1}, timeout=30).status_code == 400
