"""The `ampkit` command: parses options, calls one library function, prints the result."""
from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import json
import logging
import sys

import click

from ampkit import config as configuration
from ampkit import warehouse as warehouses
from ampkit.errors import HELD_EXIT, AmpkitError, RunnerError
from ampkit.log import configure_logging

logger = logging.getLogger(__name__)


class Context:
    """What every command shares: the config overrides from the group's options."""

    def __init__(self, overrides: dict, debug: bool):
        self.overrides = overrides
        self.debug = debug

    def config(self, **more) -> configuration.Config:
        return configuration.load({**self.overrides, **{k: v for k, v in more.items() if v is not None}})


def handle_errors(fn):
    """Turn an AmpkitError into one line on stderr and exit 1 (a traceback only with --debug)."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        ctx = click.get_current_context()
        try:
            return fn(*args, **kwargs)
        except AmpkitError as exc:
            if ctx.find_object(Context) and ctx.find_object(Context).debug:
                raise
            message = str(exc)
            try:
                message = configuration.load({}).redact(message)
            except AmpkitError:
                pass
            click.echo(f"Error: {message}", err=True)
            ctx.exit(1)
    return wrapper


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--warehouse", help="Warehouse URL: duckdb:///path.duckdb or bigquery://PROJECT/DATASET ($AMPKIT_WAREHOUSE).")
@click.option("--now", help="Clock override, ISO time (UTC if no offset): makes a run reproducible ($AMPKIT_NOW).")
@click.option("--data-map", "data_map", help="Data map file ($AMPKIT_DATA_MAP); default: the one shipped with ampkit.")
@click.option("--debug", is_flag=True, help="Show tracebacks and debug logs.")
@click.option("-q", "--quiet", is_flag=True, help="Only warnings and errors on stderr.")
@click.pass_context
def cli(ctx, warehouse, now, data_map, debug, quiet):
    """ampkit: warehouse events into Amplitude every hour, provably complete, and reconciled."""
    configure_logging(logging.DEBUG if debug else logging.WARNING if quiet else logging.INFO)
    ctx.obj = Context({"warehouse": warehouse, "now": now, "data_map": data_map}, debug)


def open_warehouse(config: configuration.Config) -> warehouses.Warehouse:
    return warehouses.open(config.warehouse, location=config.bigquery_location,
                           storage_api=config.bigquery_storage_api)


@cli.command()
@click.option("--start", help="First day (YYYY-MM-DD); default: --days days before today (or --now).")
@click.option("--days", default=7, show_default=True, type=click.IntRange(1, 3660))
@click.option("--events-per-day", default=50_000, show_default=True, type=click.IntRange(1, 50_000_000))
@click.option("--seed", "seed_value", default=42, show_default=True, type=int, help="Random seed: the same seed gives the same rows.")
@click.option("--dirty-share", default=0.005, show_default=True, type=click.FloatRange(0, 1))
@click.option("--late-share", default=0.01, show_default=True, type=click.FloatRange(0, 1))
@click.option("--replace", is_flag=True, help="Empty event_logs first.")
@click.pass_obj
@handle_errors
def seed(obj, start, days, events_per_day, seed_value, dirty_share, late_share, replace):
    """Fill event_logs with realistic synthetic Sourcegraph Cloud events."""
    from ampkit import seed as seeding
    config = obj.config()
    first = dt.date.fromisoformat(start) if start else (config.clock().date() - dt.timedelta(days=days - 1))
    spec = seeding.SeedSpec(start=first, days=days, events_per_day=events_per_day, seed=seed_value,
                            dirty_share=dirty_share, late_share=late_share,
                            until=config.clock())
    with open_warehouse(config) as wh:
        result = seeding.fill(wh, spec, replace=replace)
    click.echo(f"seeded {result.rows:,} rows into event_logs ({result.late_rows:,} late rows waiting) "
               f"for {first} .. {first + dt.timedelta(days=days - 1)} in {result.seconds:.1f}s")


@cli.command()
@click.option("--hourly-from", help="Replay the hourly schedule from this time up to --now (ISO time).")
@click.pass_obj
@handle_errors
def stage(obj, hourly_from):
    """Run the scheduled query that loads amplitude_events from event_logs (idempotent)."""
    from ampkit import stage as staging
    config = obj.config()
    with open_warehouse(config) as wh:
        if hourly_from:
            results = staging.replay(wh, config, configuration.parse_time(hourly_from), config.clock())
        else:
            results = [staging.run(wh, config)]
    for r in results:
        click.echo(f"staged {r.staged:,} rows into amplitude_events (loaded_at {r.run_time.isoformat()})")


@cli.command("config")
@click.pass_obj
@handle_errors
def show_config(obj):
    """Print the effective configuration, secrets masked."""
    click.echo(json.dumps(obj.config().public(), indent=2, default=str))


@cli.command()
@click.pass_obj
@handle_errors
def status(obj):
    """Print what is where: rows per table, the sync's position and the data map it runs with."""
    from ampkit import datamap as datamaps, state
    config = obj.config()
    with open_warehouse(config) as wh:
        wh.check_table("event_logs")
        wh.check_table("amplitude_events")
        wh.ensure_state()
        rows = wh.run("summary").to_pylist()
        if wh.columns("seed_late_arrivals") is not None:  # the demo's table of rows still to arrive
            rows += wh.run("summary_seed").to_pylist()
        mark, kept, deployed = state.position(wh)
        configured = datamaps.load(config.data_map or None)
        approved = bool(wh.run("guardrail_approved", {"data_map_version": configured.version}).column("approvals")[0].as_py())
    for row in rows:
        click.echo(f"{row['table_name']:<22} {row['row_count']:>12,}  events {_t(row['first_event'])} .. {_t(row['last_event'])}"
                   + (f"  last loaded {_t(row['last_loaded'])}" if row["last_loaded"] else ""))
    click.echo(f"{'watermark':<22} {_t(mark) if mark else 'none yet (no run has finished a window)'}")
    click.echo(f"{'row outcomes':<22} " + (f"kept for rows loaded since {_t(kept)}; earlier days have their counts only"
                                           if kept else "every row's outcome is kept (nothing rolled up yet)"))
    click.echo(f"{'data map':<22} {_map_status(configured.version, deployed, approved)}")


@cli.command("restore-warehouse")
@click.option("--force", is_flag=True, help="Put the copy back even if the warehouse reads fine or the copy is "
                                            "older than Amplitude's insert_id window.")
@click.pass_obj
@handle_errors
def restore_warehouse(obj, force):
    """Put back the DuckDB warehouse's last good copy (kept as each sync starts) after damage."""
    from ampkit import state
    config = obj.config()
    with open_warehouse(config) as wh, wh.exclusive(state.LEASE_NAME, "restore-warehouse"):
        aside = wh.restore(force=force, horizon_days=config.dedup_horizon_days)
    click.echo(f"put back the last good copy; the file it replaced is {aside}. The next sync re-sends what later "
               f"runs sent, and Amplitude drops those by insert_id (within {config.dedup_horizon_days} days).")


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="One JSON object: each stage's newest event, age and status.")
@click.option("--prometheus", is_flag=True, help="Prometheus text format (node_exporter's textfile collector).")
@click.option("--no-export", is_flag=True, help="Do not ask Amplitude's Export API (no request leaves the machine).")
@click.pass_obj
def freshness(obj, as_json, prometheus, no_export):
    """How old the newest event is in event_logs, in amplitude_events, accepted by Amplitude and in
    Amplitude's export. Exits 0 when fresh, 1 past a warn threshold, 2 past an error threshold, 3
    when it could not check (docs/FRESHNESS.md)."""
    from ampkit import freshness as fresh
    try:
        config = obj.config()
    except AmpkitError as exc:
        click.echo(f"Error: {exc}", err=True)
        sys.exit(fresh.EXIT["unknown"])
    result = fresh.measure(config, export=not no_export)
    if as_json:
        click.echo(json.dumps(result.to_dict()))
    elif prometheus:
        click.echo(result.prometheus(), nl=False)
    else:
        click.echo("\n".join(result.lines()))
    sys.exit(result.exit_code)


@cli.command()
@click.argument("kind", type=click.Choice(["cron", "systemd-timer", "systemd-service", "kubernetes", "cloud-scheduler"]))
@click.option("--interval-minutes", type=int, help="Minutes between runs ($AMPKIT_SYNC_INTERVAL_MINUTES; default 60).")
@click.pass_obj
@handle_errors
def schedule(obj, kind, interval_minutes):
    """Print a scheduling recipe for the sync at its cadence: a crontab line, a systemd timer or
    service, a Kubernetes CronJob, or the Cloud Scheduler + Cloud Run job commands."""
    from ampkit import schedule as schedules
    config = obj.config(sync_interval_minutes=interval_minutes)  # validated like every setting
    click.echo(schedules.render(kind, config.sync_interval_minutes), nl=False)


def _map_status(configured: str, deployed: str | None, approved: bool) -> str:
    if deployed is None:
        return f"{configured}; no window synced with a map yet"
    if configured == deployed:
        return f"{configured}, the deployed version"
    if approved:
        return f"{configured}, approved; the deployed version is {deployed} until the next run"
    return (f"{configured} is new (deployed: {deployed}) and not approved: the next run holds if it changes what "
            "reaches Amplitude; review with `ampkit datamap diff`, then `ampkit datamap approve`")


@cli.command()
@click.option("--start", help="Backfill: first event time (ISO, UTC) — sends staged rows without an outcome.")
@click.option("--end", help="Backfill: end of the range (exclusive; default now).")
@click.option("--dry-run", is_flag=True, help="Everything but send: counts per rule and sample payloads.")
@click.option("--force", is_flag=True, help="Resend even beyond Amplitude's 7-day dedup horizon.")
@click.option("--yes", is_flag=True, help="Confirm a backfill larger than confirm_threshold_events.")
@click.option("--json", "as_json", is_flag=True, help="Print the run result as one JSON object.")
@click.option("--progress", type=click.Choice(["auto", "bar", "log", "none"]), default="auto", show_default=True)
@click.option("--lookback-hours", type=int, help="Reach back this far for rows loaded late.")
@click.option("--amplitude-url", help="Ingestion base URL, e.g. the sandbox ($AMPKIT_AMPLITUDE_URL).")
@click.option("--endpoint", "amplitude_endpoint", type=click.Choice(["batch", "httpapi"]), help="Batch API (default) or HTTP V2.")
@click.option("--accept-volume", "accept_volume", multiple=True, metavar="RULE|FAMILY",
              help="Accept this rule's or family's volume departure for this run's window (recorded); 'all' for every one.")
@click.pass_obj
@handle_errors
def sync(obj, start, end, dry_run, force, yes, as_json, progress, lookback_hours, amplitude_url, amplitude_endpoint, accept_volume):
    """Send the new rows of amplitude_events to Amplitude (or backfill a range).

    Exit status: 0 sent (or nothing to send), 1 failed, 3 held by the volume guardrail."""
    from ampkit import sync as syncing
    config = obj.config(lookback_hours=lookback_hours, amplitude_url=amplitude_url, amplitude_endpoint=amplitude_endpoint)
    result = syncing.run(config, start=configuration.parse_time(start), end=configuration.parse_time(end),
                         dry_run=dry_run, force=force, yes=yes, progress="none" if as_json else progress,
                         accept_volume=accept_volume)
    if as_json:
        click.echo(json.dumps(result.to_dict(), default=str))
    else:
        click.echo(render_sync(result))
    if result.status in EXIT_CODES:
        sys.exit(EXIT_CODES[result.status])


EXIT_CODES = {"failed": 1, "held": HELD_EXIT}


def render_sync(result) -> str:
    lines = [f"{result.status}: run {result.run_id}"]
    if result.window_start:
        lines.append(f"  window     {result.window_start:%Y-%m-%d %H:%M} .. {result.window_end:%Y-%m-%d %H:%M} UTC ({len(result.windows)} hourly window(s))")
    lines.append(f"  extracted  {result.extracted:>10,}")
    lines.append(f"  accepted   {result.accepted:>10,}")
    for rule, n in sorted(result.filtered.items(), key=lambda kv: -kv[1]):
        lines.append(f"  filtered   {n:>10,}  rule {rule}")
    for reason, n in sorted(result.rejected.items(), key=lambda kv: -kv[1]):
        lines.append(f"  rejected   {n:>10,}  {reason} (dead-letter table)")
    lines.append(f"  requests   {result.requests:>10,}  retries {result.retries:,}  in {result.duration_seconds:.1f}s  data map {result.data_map_version}")
    if result.error:
        lines.append(f"  {'held' if result.status == 'held' else 'error'}: {result.error}")
    for warning in result.warnings:
        if warning.startswith("guardrail"):
            lines.append(f"  {warning}")
    return "\n".join(lines)


@cli.command()
@click.option("-n", "--limit", default=20, show_default=True, type=click.IntRange(1, 10_000))
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
@handle_errors
def runs(obj, limit, as_json):
    """Show the last runs from the ledger: status, window, counts, duration, lag, run record."""
    from ampkit import state
    config = obj.config()
    with open_warehouse(config) as wh:
        wh.ensure_state()
        rows = state.runs(wh, limit)
    if as_json:
        click.echo(json.dumps(rows, default=str))
        return
    # Lag: minutes from an accepted event's timestamp to Amplitude's acceptance (p50/p95), and the age
    # of the run's newest accepted event when it finished.
    click.echo(f"{'started (UTC)':<17} {'status':<15} {'window':<23} {'extracted':>10} {'accepted':>9} {'filtered':>9} "
               f"{'rejected':>9} {'secs':>6} {'p50/p95 min':>11} {'newest min':>10}  record")
    for r in rows:
        window = f"{_t(r['window_start'])[5:]}..{_t(r['window_end'])[11:]}" if r["window_start"] else "-"
        lag = "-" if r["lag_event_p50"] is None else f"{r['lag_event_p50'] / 60:.0f}/{r['lag_event_p95'] / 60:.0f}"
        age = "-" if r["newest_age_seconds"] is None else f"{r['newest_age_seconds'] / 60:.0f}"
        click.echo(f"{_t(r['started_at']):<17} {r['status']:<15} {window:<23} {r['extracted'] or 0:>10,} {r['accepted'] or 0:>9,} "
                   f"{r['filtered_total'] or 0:>9,} {r['rejected_total'] or 0:>9,} {r['duration_seconds'] or 0:>6.1f} "
                   f"{lag:>11} {age:>10}  {r['notebook_path'] or '-'}")


@cli.group()
def datamap():
    """The data map: what is sent to Amplitude and why the rest is not."""


@datamap.command("check")
@click.option("--days", default=7, show_default=True, type=click.IntRange(1, 3660), help="Warehouse volumes over the last N days.")
@click.option("--offline", is_flag=True, help="Validate the file only, without reading the warehouse.")
@click.pass_obj
@handle_errors
def datamap_check(obj, days, offline):
    """Validate the data map (keys, overlaps, events it never mentions); exit 1 on errors."""
    from ampkit import datamap as datamaps
    config = obj.config()
    m = datamaps.load(config.data_map or None)
    seen = [] if offline else _volumes(config, days)
    findings = datamaps.check(m, seen)
    for f in findings:
        click.echo(f"{f.level}: {f.message}")
    errors = sum(f.level == "error" for f in findings)
    click.echo(f"data map {m.path} version {m.version}: {len(m.rules)} rules, {errors} error(s), {len(findings) - errors} warning(s)")
    if errors:
        sys.exit(1)


@datamap.command("suggest")
@click.option("--days", default=28, show_default=True, type=click.IntRange(1, 3660))
@click.option("--threshold", default=10.0, show_default=True, type=float, help="Events per day under which an event counts as low traffic.")
@click.pass_obj
@handle_errors
def datamap_suggest(obj, days, threshold):
    """Propose low_traffic exclusions from real volumes: per day over the days with data, with when
    each was last seen; never an event the sign-up funnel, retention or a routing example needs."""
    from ampkit import datamap as datamaps, product, routing
    config = obj.config()
    m = datamaps.load(config.data_map or None)
    volumes, have = datamaps.totals(_daily(config, days))
    suggestions = datamaps.suggest(m, volumes, have, threshold, product.depended_on(routing.load().topics))
    click.echo(f"rates per day over the {have} day(s) with data in the last {days}" + (" (fewer than asked)" if have < days else ""))
    proposed = [s for s in suggestions if not s.needed_by]
    if not proposed:
        click.echo(f"no event sent today is under {threshold:g}/day")
    for s in proposed:
        click.echo(f"exclude {s.name:<45} ({s.source or '-'}): {s.per_day:8.2f}/day, last seen {_t(s.last_seen)}, "
                   f"would drop {s.rows:,} rows over {have} days")
    for s in suggestions:
        if s.needed_by:
            click.echo(f"keep    {s.name:<45} ({s.source or '-'}): {s.per_day:8.2f}/day, needed by {s.needed_by}")


@datamap.command("diff")
@click.argument("maps", nargs=-1, type=click.Path(exists=True, dir_okay=False), required=True)
@click.option("--days", default=14, show_default=True, type=click.IntRange(1, 63))
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
@handle_errors
def datamap_diff(obj, maps, days, as_json):
    """What a data map change does to Amplitude, per rule and family, in events per day.

    With NEW only: against the deployed map, as the ledger recorded what the runs sent; with OLD
    NEW: both maps replayed over the last days of amplitude_events."""
    from ampkit import datamap as datamaps, guardrail
    if len(maps) > 2:
        raise click.UsageError("give NEW, or OLD NEW")
    config = obj.config()
    new = datamaps.load(maps[-1])
    old = datamaps.load(maps[0]) if len(maps) == 2 else None
    result = guardrail.review(config, new, old, days)
    if as_json:
        click.echo(json.dumps(dataclasses.asdict(result), default=str))
    else:
        click.echo(str(result))


@datamap.command("approve")
@click.option("--note", default="", help="Why (recorded with the approval).")
@click.option("--days", default=14, show_default=True, type=click.IntRange(1, 63))
@click.pass_obj
@handle_errors
def datamap_approve(obj, note, days):
    """Approve the configured data map's version after review: the guardrail lets its first run send."""
    from ampkit import datamap as datamaps, guardrail
    config = obj.config()
    m = datamaps.load(config.data_map or None)
    review = guardrail.review(config, m, None, days)
    click.echo(str(review))
    done = guardrail.approve(config, m, note or "; ".join(f"{s.kind} {s.key} {s.before:,.0f}->{s.after:,.0f}/day"
                                                         for s in review.shifts if round(s.change))[:1000])
    click.echo(f"data map {m.version} ({m.path}) {'approved' if done else 'was already approved'}")


@datamap.command("import")
@click.argument("csv_path", type=click.Path(exists=True, dir_okay=False))
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="Write the map here (default: stdout).")
@handle_errors
def datamap_import(csv_path, output):
    """Convert the old spreadsheet export (event name, sent or not, reason) into a data map."""
    from ampkit import datamap as datamaps
    with open(csv_path, encoding="utf-8-sig") as f:
        text = datamaps.from_spreadsheet(f.read())
    datamaps.parse(text, output or "<imported>")
    if output:
        with open(output, "w", encoding="utf-8") as f:
            f.write(text)
        click.echo(f"wrote {output}")
    else:
        click.echo(text)


def _daily(config, days):
    now = config.clock()
    with open_warehouse(config) as wh:
        wh.check_table("amplitude_events")
        return wh.run("datamap_daily", {"since": now - dt.timedelta(days=days), "until": now}).to_pylist()


def _volumes(config, days):
    now = config.clock()
    with open_warehouse(config) as wh:
        wh.check_table("amplitude_events")
        rows = wh.run("datamap_volumes", {"since": now - dt.timedelta(days=days), "until": now}).to_pylist()
    return [(r["name"], r["source"], r["row_count"]) for r in rows]


@cli.command("run-notebook")
@click.argument("name")
@click.option("-p", "--parameter", "parameters", nargs=2, multiple=True, metavar="NAME VALUE",
              help="A notebook parameter (never a secret: parameters are archived in the run record).")
@click.option("--cell-timeout", default=1800, show_default=True, type=click.IntRange(1), help="Seconds one cell may run.")
@click.option("--timeout", default=3300, show_default=True, type=click.IntRange(1), help="Seconds the whole run may take.")
@click.option("--runs-dir", help="Where run records go: a local path or gs://bucket/prefix ($AMPKIT_RUNS_DIR).")
@click.option("--no-report", is_flag=True, help="Skip the HTML report.")
@click.pass_obj
@handle_errors
def run_notebook(obj, name, parameters, cell_timeout, timeout, runs_dir, no_report):
    """Execute a notebook (e.g. hourly_sync) with papermill as a scheduled run; exit non-zero if it failed."""
    from ampkit import runner
    config = obj.config(runs_dir=runs_dir)
    values = {}
    for key, value in parameters:
        values[key] = _parameter_value(value)
    result = runner.run(name, values, config=config, cell_timeout_seconds=cell_timeout,
                        timeout_seconds=timeout, html_report=not no_report)
    click.echo(f"{result.status}: {result.name} in {result.seconds:.1f}s; record {result.notebook_path or '-'}"
               + (f"; report {result.report_path}" if result.report_path else ""))
    sys.exit(result.exit_code if result.exit_code else 0)


def _parameter_value(text: str):
    try:
        return json.loads(text)
    except ValueError:
        return text


@cli.command()
@click.pass_obj
@handle_errors
def demo(obj):
    """The main job on the embedded defaults: seed, stage, sync hourly into the sandbox, reconcile."""
    from ampkit import demo as demos
    result = demos.run({k: v for k, v in obj.overrides.items() if v is not None}, echo=click.echo)
    click.echo("")
    click.echo(render_reconciliation(result.reconciliation))
    click.echo("")
    click.echo("run records (executed notebooks):")
    for path in result.run_records:
        click.echo(f"  {path}")
    click.echo("HTML reports (open in a browser, work offline):")
    for path in result.reports:
        click.echo(f"  {path}")
    click.echo(f"every report and run record, newest first: {result.index}")
    click.echo("keep going here (ampkit.toml holds the demo's settings): .venv/bin/ampkit runs · .venv/bin/ampkit status · "
               ".venv/bin/ampkit sync --dry-run · .venv/bin/ampkit sandbox (in another terminal), then .venv/bin/ampkit reconcile · ./run lab")


@cli.command()
@click.option("--start", help="First local day (YYYY-MM-DD); default: 6 days before --end.")
@click.option("--end", help="Last local day (YYYY-MM-DD); default: today (the clock's day).")
@click.option("--time-zone", help="The Amplitude project's time zone (IANA name); default UTC ($AMPKIT_TIME_ZONE).")
@click.option("--tolerance", default=0.005, show_default=True, type=float, help="Unexplained share allowed per row.")
@click.option("--floor", default=3, show_default=True, type=int, help="Unexplained events always allowed per row.")
@click.option("--json", "as_json", is_flag=True, help="Print the per-row table with reasons and a summary as JSON.")
@click.option("--html", "html_path", type=click.Path(dir_okay=False), help="Also write the reconciliation report (offline HTML).")
@click.option("--amplitude-url", help="Amplitude base URL (export + dashboard), e.g. the sandbox.")
@click.pass_obj
@handle_errors
def reconcile(obj, start, end, time_zone, tolerance, floor, as_json, html_path, amplitude_url):
    """Compare warehouse (Looker) and Amplitude counts per day and event; exit 1 when anything fails."""
    from ampkit import reconcile as reconciling
    config = obj.config(time_zone=time_zone, amplitude_url=amplitude_url)
    first, last = reconciling.date_range(config, start, end)
    result = reconciling.run(config, first, last, tolerance=reconciling.Tolerance(floor=floor, pct=tolerance))
    if html_path:
        _reconciliation_report(config, result, html_path)
    if as_json:
        click.echo(json.dumps(result.to_dict(), default=str))
    else:
        click.echo(render_reconciliation(result))
    if result.status == "fail":
        sys.exit(1)


def _reconciliation_report(config, result, html_path: str) -> None:
    """The reconciliation notebook rendering `result` as computed here (not a second reconciliation)."""
    import tempfile

    from papermill.iorw import load_notebook_node

    from ampkit import reconcile as reconciling, report as pages, runner
    with tempfile.TemporaryDirectory(prefix="ampkit-reconcile-") as tmp:
        saved = f"{tmp}/result.json"
        reconciling.save(result, saved)
        report = runner.run("reconciliation", {"start": result.start.isoformat(), "end": result.end.isoformat(),
                                               "result_file": saved}, config=config)
    if report.status != "ok" or not report.notebook_path:
        raise RunnerError(f"the reconciliation report could not be written ({report.status}); record {report.notebook_path or '-'}")
    # A page to keep or send on its own: it carries its scripts, the folder's copy is not beside it.
    pages.standalone(load_notebook_node(report.notebook_path), html_path)


def render_reconciliation(result) -> str:
    t = result.totals()
    lines = [f"{result.status.upper()}: {result.start} .. {result.end} ({result.time_zone}), data map {result.data_map_version}",
             f"  Looker (event_logs)   {t['looker']:>10,}",
             f"  Amplitude             {t['amplitude']:>10,}",
             f"  explained by:"]
    for key in ("before_start", "not_staged", "not_synced", "late_beyond_lookback", "export_lag"):
        if t[key]:
            lines.append(f"    {key:<22}{t[key]:>10,}")
    for rule, n in sorted(t["filtered"].items(), key=lambda kv: -kv[1]):
        lines.append(f"    filtered: {rule:<12}{n:>10,}")
    for reason, n in sorted(t["rejected"].items(), key=lambda kv: -kv[1]):
        lines.append(f"    rejected: {reason:<12}{n:>10,}")
    for key in ("amplitude_only", "duplicated"):
        if t[key]:
            lines.append(f"    {key:<22}{-t[key]:>10,}")
    lines.append(f"  unexplained           {t['unexplained']:>10,}")
    for a in result.anomalies:
        lines.append(f"  {a.severity.upper()} {a.kind}: {a.message}")
    for note in result.checks:
        lines.append(f"  check: {note}")
    return "\n".join(lines)


@cli.group("dead-letters")
def dead_letters():
    """Events that could not be delivered: list them, replay the fixable ones."""


@dead_letters.command("list")
@click.option("--since", default="1970-01-01", show_default=True, help="Only dead letters created since (ISO time).")
@click.pass_obj
@handle_errors
def dead_letters_list(obj, since):
    """Dead letters per reason."""
    from ampkit import deadletter
    for row in deadletter.counts(obj.config(), configuration.parse_time(since)):
        click.echo(f"{row['reason']:<40} {row['events']:>10,}  open {row['open_events']:>10,}  last {_t(row['last'])}")


@dead_letters.command("replay")
@click.option("--reason", "reasons", multiple=True, required=True, help="Replay dead letters with this reason (repeatable).")
@click.option("--since", required=True, help="Only dead letters created since (ISO time).")
@click.option("--force", is_flag=True, help="Resend even beyond Amplitude's 7-day dedup horizon.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
@handle_errors
def dead_letters_replay(obj, reasons, since, force, as_json):
    """Send the matching dead letters again through the normal pipeline (from the warehouse's current data)."""
    from ampkit import deadletter
    result = deadletter.replay(obj.config(), list(reasons), configuration.parse_time(since), force=force)
    if result is None:
        click.echo("no dead letters match")
        return
    click.echo(json.dumps(result.to_dict(), default=str) if as_json else render_sync(result))
    if result.status == "failed":
        sys.exit(1)


@cli.command(context_settings={"ignore_unknown_options": True})
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
@handle_errors
def lab(args):
    """JupyterLab on the notebooks, with the demo's warehouse and a running sandbox (needs the `lab` extra)."""
    from ampkit import demo as demos
    sys.exit(demos.lab(list(args)))


def _t(value) -> str:
    return value.strftime("%Y-%m-%d %H:%M") if value else "-"


def _register() -> None:
    # Commands that live with their noun's module rather than here.
    from ampkit.routing import where
    from ampkit.sandbox import command as sandbox_command
    cli.add_command(sandbox_command)
    cli.add_command(where)


_register()


def main() -> None:
    """Entry point of the `ampkit` console script."""
    cli(prog_name="ampkit")


if __name__ == "__main__":
    main()
