"""The `ampkit` command as a user meets it: help everywhere, one clear line for every user error."""
import subprocess
import sys

import click
import pytest
from click.testing import CliRunner

from ampkit.cli import cli, main


def all_commands(group=cli, prefix=()):
    for name, command in group.commands.items():
        yield prefix + (name,), command
        if isinstance(command, click.Group):
            yield from all_commands(command, prefix + (name,))


def ampkit(*args, env=None):
    import os
    return subprocess.run([sys.executable, "-m", "ampkit", *args], capture_output=True, text=True, timeout=120,
                          env={**os.environ, **(env or {})})


def test_every_command_has_help():
    runner = CliRunner()
    names = []
    for path, command in all_commands():
        result = runner.invoke(cli, [*path, "--help"])
        assert result.exit_code == 0, (path, result.output)
        assert command.help or command.short_help, f"{' '.join(path)} has no help text"
        names.append(" ".join(path))
    assert {"seed", "stage", "config", "sync", "reconcile", "datamap check", "datamap import", "datamap suggest",
            "runs", "run-notebook", "dead-letters replay", "sandbox", "demo", "where", "lab"} <= set(names)


@pytest.mark.parametrize("args, env, message", [
    (["status"], {"AMPKIT_WAREHOUSE": "postgres://nope"}, "unknown warehouse URL 'postgres://nope'"),
    (["status"], {"AMPKIT_WAREHOUSE": "bigquery://only-project"}, "bigquery://PROJECT/DATASET"),
    (["config"], {"AMPKIT_CONCURRENCY": "lots"}, "setting 'concurrency' from $AMPKIT_CONCURRENCY"),
    (["sync"], {"AMPKIT_TIME_ZONE": "Mars/Base"}, "IANA"),
    (["--data-map", "nope.yaml", "datamap", "check", "--offline"], {}, "data map nope.yaml cannot be read"),
    (["sync", "--start", "not-a-date"], {}, "Error:"),
])
def test_user_errors_are_one_line_without_traceback(args, env, message):
    done = ampkit(*args, env=env)
    assert done.returncode != 0
    assert message in done.stderr, done.stderr
    assert "Traceback" not in done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1


def test_malformed_toml_and_missing_column(tmp_path):
    (tmp_path / "ampkit.toml").write_text("lookback_hours = = 3\n")
    done = ampkit("config")
    assert done.returncode == 1 and "ampkit.toml is not valid TOML" in done.stderr and "Traceback" not in done.stderr
    (tmp_path / "ampkit.toml").unlink()
    import duckdb
    con = duckdb.connect(str(tmp_path / "w.duckdb"))
    con.execute("CREATE TABLE amplitude_events (id BIGINT, name VARCHAR)")
    con.close()
    done = ampkit("sync", env={"AMPKIT_WAREHOUSE": f"duckdb:///{tmp_path}/w.duckdb"})
    assert done.returncode == 1 and "has no column 'url'" in done.stderr and "Traceback" not in done.stderr


@pytest.mark.parametrize("command", [["sync"], ["stage"], ["status"], ["reconcile"]])
def test_a_mistyped_warehouse_fails_and_creates_no_event_table(tmp_path, command):
    """A wrong URL or dataset must not be 'synced' as an empty warehouse every hour."""
    url = f"duckdb:///{tmp_path}/typo.duckdb"
    done = ampkit(*command, env={"AMPKIT_WAREHOUSE": url, "AMPKIT_NOW": "2022-03-14T12:00:00Z"})
    assert done.returncode == 1 and "does not exist" in done.stderr and "check the warehouse URL" in done.stderr
    assert "Traceback" not in done.stderr
    assert list(tmp_path.glob("typo.duckdb*")) == [], "a mistyped path became a warehouse"


def test_seed_stage_twice_and_status(tmp_path):
    env = {"AMPKIT_WAREHOUSE": f"duckdb:///{tmp_path}/w.duckdb", "AMPKIT_NOW": "2022-03-14T12:00:00Z"}
    seeded = ampkit("-q", "seed", "--days", "2", "--events-per-day", "2000", env=env)
    assert seeded.returncode == 0 and "seeded" in seeded.stdout
    first = ampkit("-q", "stage", env=env)
    second = ampkit("-q", "stage", env=env)
    assert first.returncode == second.returncode == 0
    assert "staged 0 rows" not in first.stdout and "staged 0 rows" in second.stdout
    status = ampkit("status", env=env)
    assert "event_logs" in status.stdout and "amplitude_events" in status.stdout and "seed_late_arrivals" in status.stdout
    assert "watermark" in status.stdout and "none yet" in status.stdout and "nothing rolled up yet" in status.stdout


def test_datamap_import_and_check(tmp_path):
    csv = tmp_path / "sheet.csv"
    csv.write_text("Event,Sent,Reason\nSearchSubmitted,yes,\nViewInsights,no,code insights\n")
    out = tmp_path / "map.yaml"
    done = ampkit("datamap", "import", str(csv), "-o", str(out))
    assert done.returncode == 0 and out.exists()
    checked = ampkit("--data-map", str(out), "datamap", "check", "--offline")
    assert checked.returncode == 0 and "0 error(s)" in checked.stdout
