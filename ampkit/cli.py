"""The `ampkit` command: parses options, calls one library function, prints the result."""
from __future__ import annotations

import datetime as dt
import functools
import json
import logging
import sys

import click

from ampkit import config as configuration
from ampkit import warehouse as warehouses
from ampkit.errors import AmpkitError
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
                            dirty_share=dirty_share, late_share=late_share)
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
    """Print what is where: rows per table and the sync's position."""
    config = obj.config()
    with open_warehouse(config) as wh:
        wh.ensure_tables()
        wh.run("schema_seed")
        table = wh.run("summary")
    for row in table.to_pylist():
        click.echo(f"{row['table_name']:<22} {row['row_count']:>12,}  events {_t(row['first_event'])} .. {_t(row['last_event'])}"
                   + (f"  last loaded {_t(row['last_loaded'])}" if row["last_loaded"] else ""))


def _t(value) -> str:
    return value.strftime("%Y-%m-%d %H:%M") if value else "-"


def main() -> None:
    """Entry point of the `ampkit` console script."""
    try:
        from ampkit.sandbox import command as sandbox_command
        cli.add_command(sandbox_command)
    except ImportError:  # the sandbox package is optional while it is being built
        pass
    cli(prog_name="ampkit")


if __name__ == "__main__":
    main()
