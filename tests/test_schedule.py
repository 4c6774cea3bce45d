"""The scheduling recipes rendered for a cadence: the committed hourly ones, and sub-hourly ones that
cron, systemd and Kubernetes accept and that fire when they should."""
from __future__ import annotations

import datetime as dt
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from ampkit import cli, schedule

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("kind", sorted(schedule.RECIPES))
def test_the_committed_recipes_are_the_hourly_rendering(kind):
    committed = (REPO / "scheduled" / schedule.RECIPES[kind]).read_text(encoding="utf-8")
    assert committed == schedule.render(kind, 60), f"scheduled/{schedule.RECIPES[kind]}: ampkit schedule {kind} > it"


@pytest.mark.parametrize("minutes, cron, calendar", [
    (5, "1-59/5 * * * *", "*-*-* *:01/5:00"), (15, "1-59/15 * * * *", "*-*-* *:01/15:00"),
    (60, "5 * * * *", "*-*-* *:05:00"), (180, "5 */3 * * *", "*-*-* 00/3:05:00"), (1, "* * * * *", "*-*-* *:00/1:00")])
def test_every_recipe_says_the_cadence_and_passes_it_to_the_run(minutes, cron, calendar):
    cadence = schedule.Cadence(minutes)
    assert (cadence.cron(), cadence.on_calendar()) == (cron, calendar)
    for kind in schedule.RECIPES:
        text = schedule.render(kind, minutes)
        if kind != "systemd-timer":  # the timer starts the service, which carries the setting
            assert re.search(rf"AMPKIT_SYNC_INTERVAL_MINUTES(\W|value)+{minutes}\b", text), kind
            assert re.search(rf"AMPKIT_STAGE_IN_RUN(\W|value)+{str(minutes < 60).lower()}\b", text), kind
    assert f'"{cron}"' in schedule.render("kubernetes", minutes) and f'"{cron}"' in schedule.render("cloud-scheduler", minutes)
    assert schedule.render("cron", minutes).splitlines()[2].startswith(f"{cron}  ")


def test_the_cli_renders_from_the_setting_and_refuses_a_cadence_that_does_not_tile_the_hour():
    out = CliRunner().invoke(cli.cli, ["schedule", "kubernetes"], env={"AMPKIT_SYNC_INTERVAL_MINUTES": "5"})
    assert out.exit_code == 0 and 'schedule: "1-59/5 * * * *"' in out.output and "startingDeadlineSeconds: 150" in out.output
    bad = CliRunner().invoke(cli.cli, ["schedule", "cron", "--interval-minutes", "7"])
    assert bad.exit_code == 1 and "must divide an hour" in bad.output


def test_a_five_minute_kubernetes_cronjob_is_a_valid_cronjob():
    import jsonschema
    import yaml
    from test_runner import CRONJOB_SCHEMA
    manifest = yaml.safe_load(schedule.render("kubernetes", 5))
    jsonschema.validate(manifest, CRONJOB_SCHEMA)
    assert manifest["spec"]["concurrencyPolicy"] == "Forbid" and manifest["spec"]["startingDeadlineSeconds"] == 150


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_a_five_minute_systemd_timer_verifies_and_fires_a_minute_past_every_fifth_minute(tmp_path):
    (tmp_path / "ampkit-hourly-sync.service").write_text(
        schedule.render("systemd-service", 5).replace("/opt/ampkit/scheduled/hourly_sync.sh", str(REPO / "scheduled" / "hourly_sync.sh")))
    (tmp_path / "ampkit-hourly-sync.timer").write_text(schedule.render("systemd-timer", 5))
    done = subprocess.run(["systemd-analyze", "verify", "--man=no", "./ampkit-hourly-sync.timer", "./ampkit-hourly-sync.service"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and not done.stderr.strip(), done.stderr
    calendar = subprocess.run(["systemd-analyze", "calendar", "--iterations=13", schedule.Cadence(5).on_calendar()],
                              capture_output=True, text=True, timeout=60, env={"TZ": "UTC", "PATH": "/usr/bin:/bin"})
    assert calendar.returncode == 0, calendar.stderr
    times = [dt.datetime.strptime(m, "%Y-%m-%d %H:%M:%S") for m in re.findall(r"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d) UTC", calendar.stdout)]
    assert len(times) == 13 and {t.minute % 5 for t in times} == {1} and {t.second for t in times} == {0}
    assert all(b - a == dt.timedelta(minutes=5) for a, b in zip(times, times[1:]))
