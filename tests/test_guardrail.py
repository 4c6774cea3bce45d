"""The volume guardrail: real hourly runs on DuckDB and the sandbox, over two weeks of synced history."""
from __future__ import annotations

import datetime as dt
import re
import shutil
from importlib import resources

import pytest
from click.testing import CliRunner

from ampkit import catalogue, datamap, guardrail, seed, stage, state, sync, warehouse as warehouses
from ampkit.cli import cli
from ampkit.errors import HELD_EXIT
from conftest import NOW

HOUR = dt.timedelta(hours=1)
HISTORY_DAYS = 14
SIMULATED_DAYS = 7
SHIPPED = resources.files("ampkit.resources").joinpath("datamap.yaml").read_text()


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    """A warehouse with 3 weeks of events staged hourly (loaded at the top of the hour after they
    happened), the first two synced (the ledger's history), the third for the runs of a test: a row
    loaded after a run's clock is invisible to it, as if not yet staged."""
    path = tmp_path_factory.mktemp("guardrail") / "template.duckdb"
    url = f"duckdb:///{path}"
    from ampkit import config as configuration
    from ampkit.sandbox import SandboxConfig, start
    from conftest import API_KEY, SECRET_KEY
    with warehouses.open(url) as wh:
        seed.fill(wh, seed.SeedSpec(start=(NOW - dt.timedelta(days=HISTORY_DAYS)).date(),
                                    days=HISTORY_DAYS + SIMULATED_DAYS + 1, events_per_day=4000,
                                    dirty_share=0.0, late_share=0.0, until=NOW + dt.timedelta(days=SIMULATED_DAYS)))
        end = NOW + dt.timedelta(days=SIMULATED_DAYS)
        stage.run(wh, configuration.load({"warehouse": url, "now": end}), end)
        with wh.connect() as con:
            # As if staged at the top of every hour (336 staging runs' worth, in one statement).
            con.execute("UPDATE amplitude_events SET loaded_at = date_trunc('hour', timestamp) + INTERVAL 1 HOUR")
    with start(SandboxConfig(api_keys=[(API_KEY, SECRET_KEY)], export_lag_seconds=0)) as sb:
        cfg = configuration.load({"warehouse": url, "amplitude_url": sb.url, "now": NOW, "settle_seconds": 0,
                                  "initial_lookback_hours": HISTORY_DAYS * 24 + 1},
                                 env={"AMPLITUDE_API_KEY": API_KEY, "AMPLITUDE_SECRET_KEY": SECRET_KEY})
        first = sync.run(cfg, progress="none")
        assert first.status == "ok" and first.accepted > 0
    return path


@pytest.fixture
def world(template, tmp_path, make_config, sandbox):
    """A copy of the template, and a run at any hour after it: stage that hour, then sync."""
    path = tmp_path / "warehouse.duckdb"
    shutil.copy(template, path)
    url = f"duckdb:///{path}"

    class World:
        def config(self, at: dt.datetime, **overrides):
            return make_config(warehouse=url, now=at, guardrail_min_events=20, **overrides)

        def run(self, at: dt.datetime, **options) -> sync.SyncResult:
            return sync.run(self.config(at, **options.pop("config", {})), progress="none", **options)

        def sql(self, query: str, params=None):
            with warehouses.open(url) as wh, wh.connect() as con:
                return con.execute(query, params or {}).fetchall()

        def history_in_amplitude(self, since: dt.datetime) -> None:
            """Put the template's accepted events since `since` into this test's Amplitude (the
            template synced them to a sandbox of its own), as the runs had sent them."""
            rows = self.sql("SELECT d.insert_id, d.name, d.event_time, d.source, a.device_id FROM ampkit_deliveries AS d "
                            "JOIN amplitude_events AS a ON a.id = d.id WHERE d.outcome = 'accepted' AND d.event_time >= $t",
                            {"t": since})
            sandbox.control.seed_events([{"event_type": n, "time": int(t.timestamp() * 1000), "insert_id": i,
                                          "platform": src, "device_id": dev or f"device-{i}"} for i, n, t, src, dev in rows])

        def in_amplitude(self) -> tuple[int, int]:
            """(events Amplitude stores, events it received again with a known insert_id)."""
            stats = sandbox.control.stats()
            return stats["events_in_store"], stats["duplicates_dropped"]

    w = World()
    w.url, w.path = url, path
    return w


def edited_map(tmp_path, old: str, new: str):
    assert old in SHIPPED
    path = tmp_path / "datamap.yaml"
    path.write_text(SHIPPED.replace(old, new, 1))
    return str(path)


def test_a_normal_week_of_hourly_runs_is_never_held(world):
    """Seven days of hourly runs, with the daily peak and the quiet weekend of real traffic."""
    statuses, judged = [], 0
    for k in range(1, SIMULATED_DAYS * 24 + 1):
        result = world.run(NOW + k * HOUR)
        statuses.append((k, result.status, result.error))
        judged += sum(1 for h in (result.guardrail or {}).get("hours", ()) if h["complete"])
    held = [s for s in statuses if s[1] != "ok"]
    assert held == [], held[:3]
    # The week was really weighed, hour by hour: every rule and family with traffic, every complete hour.
    assert judged >= SIMULATED_DAYS * 24 * 5


def test_a_flood_from_a_map_change_is_held_then_sent_once_after_approval(world, tmp_path):
    world.run(NOW + HOUR)
    before = world.in_amplitude()
    # The exclusion of the code-intel extension events is removed.
    flood = edited_map(tmp_path, "  - id: codeintel_deny_list\n    action: exclude\n    reason: excluded_family\n",
                       "  - id: codeintel_deny_list\n    action: send\n")
    at = NOW + 2 * HOUR
    held = world.run(at, config={"data_map": flood})
    assert held.status == "held" and held.accepted == 0
    assert "not approved" in held.error and "family 'code_intel' 0 -> " in held.error, held.error
    assert {c["key"] for c in held.guardrail["changes"]} == {"codeintel_deny_list", "code_intel"}
    assert world.in_amplitude() == before, "a held run sent something"
    with warehouses.open(world.url) as wh:
        assert state.watermark(wh) == NOW + HOUR
    # `ampkit status` says which map is deployed and that this one waits for approval.
    def status() -> str:
        out = CliRunner().invoke(cli, ["--warehouse", world.url, "--data-map", flood, "status"])
        assert out.exit_code == 0, out.output
        return next(line for line in out.output.splitlines() if line.startswith("data map"))
    shipped = datamap.load().version
    assert f"is new (deployed: {shipped}) and not approved" in status()
    # Reviewed and approved: the next run sends the held window and the new one, each row once.
    guardrail.approve(world.config(at, data_map=flood), datamap.load(flood), "codeintel events wanted")
    assert f"approved; the deployed version is {shipped} until the next run" in status()
    sent = world.run(at + HOUR, config={"data_map": flood})
    assert sent.status == "ok" and sent.accepted > 0
    codeintel = world.sql("SELECT COUNT(*) FROM ampkit_deliveries WHERE name LIKE 'codeintel.%' AND outcome = 'accepted' "
                          "AND loaded_at > $t", {"t": NOW + HOUR})[0][0]
    assert codeintel > 20
    stored, again = world.in_amplitude()
    assert again == 0, "an event reached Amplitude twice"
    assert stored - before[0] == sent.accepted
    assert world.run(at + 2 * HOUR, config={"data_map": flood}).status == "ok"
    assert world.in_amplitude()[1] == 0
    assert status().endswith(", the deployed version")


def test_a_starvation_from_a_map_change_is_held_then_recorded_once_after_approval(world, tmp_path):
    world.run(NOW + HOUR)
    starve = edited_map(tmp_path, "  - id: product_ui\n    action: send\n",
                        "  - id: product_ui\n    action: exclude\n    reason: low_traffic\n")
    at = NOW + 2 * HOUR
    held = world.run(at, config={"data_map": starve})
    assert held.status == "held" and "rule 'product_ui'" in held.error and "-> 0 events" in held.error
    # The CLI says it in one line and exits 3, so the scheduler sees it.
    out = CliRunner().invoke(cli, ["--warehouse", world.url, "--now", at.isoformat(), "--data-map", starve, "sync"],
                             env={"AMPKIT_GUARDRAIL_MIN_EVENTS": "20", "AMPKIT_SETTLE_SECONDS": "0",
                                  "AMPKIT_AMPLITUDE_URL": world.config(at).amplitude_url})
    assert out.exit_code == HELD_EXIT, out.output
    assert "held: data map" in out.output
    approve = CliRunner().invoke(cli, ["--warehouse", world.url, "--now", at.isoformat(), "--data-map", starve,
                                       "datamap", "approve", "--note", "product UI moves to a new pipeline"])
    assert approve.exit_code == 0 and "approved" in approve.output, approve.output
    assert "rule    product_ui" in approve.output
    done = world.run(at + HOUR, config={"data_map": starve})
    assert done.status == "ok" and done.filtered.get("product_ui", 0) > 100
    # Every staged row has exactly one outcome.
    assert world.sql("SELECT COUNT(*) - COUNT(DISTINCT id) FROM ampkit_deliveries WHERE loaded_at > $t",
                     {"t": NOW - dt.timedelta(days=1)})[0][0] == 0


def test_an_upstream_drop_of_one_family_is_held_with_its_numbers(world):
    world.run(NOW + HOUR)
    # The search family stops arriving upstream (a client release broke its logging).
    search = [e.name for e in catalogue.events() if e.family == "search"]
    at = NOW + 2 * HOUR
    world.sql("DELETE FROM amplitude_events WHERE loaded_at > $t AND list_contains($names, name)",
              {"t": NOW + HOUR, "names": search})
    first = world.run(at)
    assert first.status == "ok"  # the hour it vanished in is still loading: a drop is judged once it is complete
    held = world.run(at + HOUR)
    assert held.status == "held", held.error
    # (A few search events the catalogue names by pattern, ViewRepogroup:python, still arrive.)
    found = re.match(r"family 'search' would send (\d+) events loaded 2022-03-14 14:00 UTC, expected ([\d,]+) ", held.error)
    assert found and int(found[1]) * 3 < int(found[2].replace(",", "")), held.error
    assert "ampkit sync --accept-volume search" in held.error
    # Accepted for that window (recorded), the run sends it; nothing is sent twice.
    ok = world.run(at + HOUR, accept_volume=("search",))
    assert ok.status == "ok" and ok.accepted > 0
    accepted = world.sql("SELECT subject, kind FROM ampkit_approvals")
    assert ("search", "volume") in accepted
    assert world.in_amplitude()[1] == 0


def test_diff_of_the_shipped_map_against_an_edited_one(world, tmp_path):
    world.run(NOW + HOUR)
    edited = edited_map(tmp_path, "    match: [\"codeintel.*\"]\n", "    match: [\"codeintel.lsp*\"]\n")
    shipped = tmp_path / "shipped.yaml"
    shipped.write_text(SHIPPED)
    out = CliRunner().invoke(cli, ["--warehouse", world.url, "--now", (NOW + HOUR).isoformat(),
                                   "datamap", "diff", str(shipped), edited, "--days", "7"])
    assert out.exit_code == 0, out.output
    assert re.search(r"over [78] day\(s\) with data", out.output)
    lines = out.output.splitlines()
    unknown = next(line for line in lines if line.split()[:2] == ["rule", "unknown"])
    assert float(unknown.split()[2].replace(",", "")) == 0 and float(unknown.split()[3].replace(",", "")) > 10
    assert "would start reaching Amplitude" in out.output and "codeintel.lsifHover" in out.output
    assert "codeintel.lspHover" not in out.output.split("would start reaching Amplitude")[1]
    # Against the deployed map (the ledger's record of what the runs did), the same change.
    ledger = guardrail.review(world.config(NOW + HOUR), datamap.load(edited), None, 7)
    assert ledger.old.startswith("deployed") and {n for n, _, _ in ledger.starts} >= {"codeintel.lsifHover"}
    assert not ledger.stops


def test_suggest_rates_over_the_days_with_data_and_keeps_what_analyses_need(world):
    # Four weeks asked, two weeks of data: rates are per day of data, not halved.
    out = CliRunner().invoke(cli, ["--warehouse", world.url, "--now", NOW.isoformat(), "datamap", "suggest",
                                   "--days", "28", "--threshold", "40"])
    assert out.exit_code == 0, out.output
    assert "over the 15 day(s) with data in the last 28 (fewer than asked)" in out.output
    proposed = [line for line in out.output.splitlines() if line.startswith("exclude ")]
    kept = [line for line in out.output.splitlines() if line.startswith("keep ")]
    assert proposed and all(re.search(r"last seen 2022-0[23]-\d\d \d\d:\d\d, would drop", line) for line in proposed)
    for name in ("SignupInitiated", "InitiateSignUp", "SignUpFailed", "SignUpSucceeded"):
        assert not any(f" {name} " in line for line in proposed), name
    assert any("SignUpFailed" in line and "sign-up funnel" in line for line in kept), kept
    with warehouses.open(world.url) as wh:
        daily = wh.run("datamap_daily", {"since": NOW - dt.timedelta(days=28), "until": NOW}).to_pylist()
    name, source = proposed[0].split()[1], proposed[0].split()[2].strip("():")
    rows = sum(r["row_count"] for r in daily if (r["name"], r["source"] or "-") == (name, source))
    per_day = float(proposed[0].split(":")[1].split("/day")[0])
    assert per_day == pytest.approx(rows / 15, abs=0.01)


def test_the_band_is_pure_arithmetic():
    band = guardrail.Band(factor=3, min_events=50)
    assert band.departs(100, 301, complete=False) and not band.departs(100, 300, complete=False)
    assert band.departs(100, 33, complete=True) and not band.departs(100, 33, complete=False)
    assert not band.departs(40, 0, complete=True), "a quiet hour never alarms"
    assert band.departs(0, 60, complete=False), "a family that was never sent, now flooding"


def test_the_reconciliation_names_the_family_an_approved_map_change_emptied(world, tmp_path):
    """The guardrail let an approved change through; the reconciliation still names what vanished,
    from the day it started, with the map version in force then."""
    from ampkit import reconcile
    # Before product_ui in the file, so the earlier rule wins where both name an event.
    files = sorted(e.name for e in catalogue.events() if e.family == "repo_file_views")
    starve = edited_map(tmp_path, "rules:\n", f"""rules:
  - id: no_file_views
    action: exclude
    reason: excluded_family
    note: file views move to their own tool
    events: [{", ".join(files)}]

""")
    world.history_in_amplitude(NOW - dt.timedelta(days=4))
    guardrail.approve(world.config(NOW), datamap.load(starve), "file views leave Amplitude")
    for k in range(1, 37):
        assert world.run(NOW + k * HOUR, config={"data_map": starve}).status == "ok"
    at = NOW + 36 * HOUR
    rec = reconcile.run(world.config(at, data_map=starve), (NOW - dt.timedelta(days=3)).date(), at.date())
    vanished = [a for a in rec.anomalies if a.kind == "family_vanished"]
    assert [(a.name, a.day, a.severity) for a in vanished] == [("repo_file_views", "2022-03-14", "fail")], rec.anomalies
    # Events of 12:00-13:00 were loaded at 13:00, the first run with the new map: the first kept out.
    assert vanished[0].message.startswith("family 'repo_file_views' vanished from Amplitude from 2022-03-14 12:00 (UTC)")
    assert "kept out by rule 'no_file_views'" in vanished[0].message
    assert f"data map version {datamap.load(starve).version} in force" in vanished[0].message
    assert not [a for a in rec.anomalies if a.kind == "family_flood"]
    # The report's chart has the family's days against their band.
    days = [f for f in rec.families if f["family"] == "repo_file_views" and f["expected"] is not None]
    assert days and days[-1]["seen"] < days[-1]["low"]


def test_a_family_flooding_amplitude_is_named_with_its_day():
    from ampkit import reconcile
    day = dt.datetime(2022, 3, 10, tzinfo=dt.timezone.utc)
    hourly = [{"hour": day + dt.timedelta(days=d, hours=h), "name": name, "amplitude": n, "accepted_recent": 0, "accepted": n}
              for d in range(4) for h in range(24)
              for name, n in (("ViewBlob", 100), ("SearchSubmitted", 100 if d < 3 else 500))]
    found, series = reconcile._families({}, hourly, reconcile.ZoneInfo("UTC"), reconcile.Tolerance(), [])
    assert [(a.kind, a.name, a.day) for a in found] == [("family_flood", "search", "2022-03-13")]
    assert {f["family"] for f in series} == {"search", "repo_file_views"}
