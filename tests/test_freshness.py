"""`ampkit freshness`: each stage's newest event, judged against thresholds, with Nagios' exit codes."""
from __future__ import annotations

import datetime as dt
import json

from click.testing import CliRunner

from ampkit import cli, config as configuration, freshness, sync
from conftest import NOW

HOUR = dt.timedelta(hours=1)


def freshness_cli(make_config, now: dt.datetime, *args: str, **settings):
    """`ampkit freshness` on the test warehouse and sandbox, its clock at `now`."""
    config = make_config(now=now, **settings)
    argv = ["--warehouse", config.warehouse, "--now", now.isoformat(), "freshness", *args]
    env = {"AMPKIT_AMPLITUDE_URL": config.amplitude_url, **{f"AMPKIT_{k.upper()}": str(v) for k, v in settings.items()}}
    return CliRunner().invoke(cli.cli, argv, env=env)


def test_exit_codes_follow_the_oldest_stage_through_fresh_warn_error_and_unknown(seeded, make_config):
    """Hourly cadence, so warn after 2 h 5 min and err after 6 h 5 min (settle 5 min): fresh just
    after a run, a warning three hours later, an error seven hours later; 3 when it cannot look."""
    assert sync.run(make_config(settle_seconds=300), progress="none").accepted > 0

    fresh = freshness_cli(make_config, NOW, "--json", settle_seconds=300)
    assert fresh.exit_code == 0, fresh.output
    report = json.loads(fresh.output)
    stages = {s["stage"]: s for s in report["stages"]}
    assert report["status"] == "ok" and list(stages) == list(freshness.STAGES)
    assert {s["status"] for s in stages.values()} == {"ok"}
    # The stages line up in the order events pass them: nothing reaches a stage before the one before it.
    newest = [dt.datetime.fromisoformat(stages[s]["newest"]) for s in freshness.STAGES]
    assert newest[0] >= newest[1] >= newest[2] and newest[3] <= newest[2]
    assert stages["accepted"]["age_seconds"] >= 300  # the settle time: rows loaded in the last 5 minutes wait
    assert stages["accepted"]["warn_after_seconds"] == 2 * 3600 + 300
    assert report["age_seconds"]["accepted"] == stages["accepted"]["age_seconds"]

    later = freshness_cli(make_config, NOW + 3 * HOUR, settle_seconds=300)
    assert later.exit_code == 1, later.output
    assert "freshness at 2022-03-14 15:00 UTC: warn" in later.output and "last run that ended ok: 2022-03-14 12:00" in later.output
    assert report["last_ok_run"].startswith("2022-03-14T12:00")

    stale = freshness_cli(make_config, NOW + 7 * HOUR, "--prometheus", settle_seconds=300)
    assert stale.exit_code == 2, stale.output
    assert 'ampkit_freshness_status{stage="all"} 2' in stale.output
    assert 'ampkit_freshness_age_seconds{stage="accepted"}' in stale.output

    # Thresholds from the config win over the cadence's.
    strict = freshness_cli(make_config, NOW, "--no-export", freshness_warn_minutes=1, freshness_error_minutes=600)
    assert strict.exit_code == 1 and "export" in strict.output and "not checked (--no-export)" in strict.output

    missing = CliRunner().invoke(cli.cli, ["--warehouse", "bigquery://no-such-project/x y", "freshness", "--json"])
    assert missing.exit_code == 3, missing.output
    assert json.loads(missing.output)["status"] == "unknown"


def test_a_sync_that_stopped_is_named_while_upstream_is_fresh(seeded, make_config):
    """No run ever sent anything: event_logs and amplitude_events are fresh, `accepted` is the
    stage in error, so the fault is ampkit's, not upstream's."""
    out = freshness_cli(make_config, NOW, "--json", "--no-export")
    assert out.exit_code == 2, out.output
    stages = {s["stage"]: s for s in json.loads(out.output)["stages"]}
    assert (stages["event_logs"]["status"], stages["amplitude_events"]["status"]) == ("ok", "ok")
    assert stages["accepted"]["status"] == "error" and stages["accepted"]["newest"] is None
    assert stages["export"]["status"] == "skipped"
    result = freshness.judge(NOW, {"event_logs": NOW, "amplitude_events": NOW, "accepted": NOW}, freshness.Thresholds(600, 1800, 0))
    assert result.status == "ok" and result.exit_code == 0  # a stage not checked spoils nothing


def test_thresholds_follow_the_cadence_unless_set():
    hourly = freshness.Thresholds.of(configuration.load({}, env={}))
    assert (hourly.warn, hourly.error, hourly.export_allowance) == (2 * 3600 + 300, 6 * 3600 + 300, 7200 + 3600)
    five = freshness.Thresholds.of(configuration.load({"sync_interval_minutes": 5, "stage_in_run": True}, env={}))
    assert (five.warn, five.error) == (600, 1800)
    set_ = freshness.Thresholds.of(configuration.load({"freshness_warn_minutes": 15, "freshness_error_minutes": 45}, env={}))
    assert (set_.warn, set_.error) == (900, 2700)


def test_judge_is_pure_and_names_a_stage_with_nothing():
    t = freshness.Thresholds(600, 1800, 7200)
    result = freshness.judge(NOW, {"event_logs": NOW - dt.timedelta(seconds=30), "amplitude_events": NOW - 700 * dt.timedelta(seconds=1),
                                   "accepted": None}, t, {"export": "not checked"})
    assert [s.status for s in result.stages] == ["ok", "warn", "error", "skipped"]
    assert result.exit_code == 2 and "no event in the last 3.0 d" in result.stages[2].note
