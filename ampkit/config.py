"""The one typed configuration: defaults < ampkit.toml < AMPKIT_* environment < explicit overrides.

Secrets (the Amplitude API key and secret key) are not settings: they come only from the
environment (`AMPLITUDE_API_KEY`, `AMPLITUDE_SECRET_KEY`) or from a file named by the matching
`*_FILE` variable, and are never accepted from `ampkit.toml`, CLI flags or notebook parameters,
because papermill writes parameters into every run record.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import os
import re
import tomllib
from pathlib import Path
from typing import Any, Mapping
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from ampkit.errors import ConfigError, SecretError

# https://amplitude.com/docs/apis/analytics/http-v2 and .../batch-event-upload (hosts by region)
INGEST_URLS = {"US": "https://api2.amplitude.com", "EU": "https://api.eu.amplitude.com"}
DASHBOARD_URLS = {"US": "https://amplitude.com", "EU": "https://analytics.eu.amplitude.com"}

SECRET_NAMES = ("AMPLITUDE_API_KEY", "AMPLITUDE_SECRET_KEY")
# Settings that name a file holding a key: paths, allowed where keys are not.
KEY_FILE_SETTINGS = ("amplitude_api_key_file", "amplitude_secret_key_file")
# Names that look like they carry a secret; refused as parameters and as ampkit.toml keys.
SECRET_PATTERN = re.compile(r"(api[-_]?key|secret|passw(or)?d|token|credential|private[-_]?key|auth)", re.IGNORECASE)

GUARDRAIL_MODES = ("hold", "warn", "off")
MAX_GUARDRAIL_WEEKS = 8

ENV_PREFIX = "AMPKIT_"
CONFIG_FILE = "ampkit.toml"


@dataclasses.dataclass(frozen=True)
class Config:
    """Every setting of a run; build it with `load()`, never by hand in production code."""

    warehouse: str = "duckdb:///.ampkit/warehouse.duckdb"
    bigquery_location: str = "US"
    bigquery_storage_api: bool = False
    amplitude_region: str = "US"
    amplitude_url: str = ""          # ingestion base URL; empty = the region's host
    amplitude_dashboard_url: str = ""  # export + dashboard base URL; empty = region's host
    amplitude_endpoint: str = "batch"  # "batch" (/batch) or "httpapi" (/2/httpapi)
    amplitude_start_date: dt.date = dt.date(2020, 12, 1)
    data_map: str = ""               # path; empty = the data map shipped with ampkit
    time_zone: str = "UTC"           # the Amplitude project's time zone
    now: dt.datetime | None = None   # clock override: every run reproducible
    # How often the sync runs (docs/FRESHNESS.md): 60 = hourly, 5 = every five minutes; the scheduling
    # recipes (`ampkit schedule`) and the staging lookback follow it.
    sync_interval_minutes: int = 60
    # Each run stages its new rows itself (the staging query, under the run's lease) instead of a
    # BigQuery scheduled query: rows are sent by the run that staged them, with no settle delay.
    stage_in_run: bool = False
    settle_seconds: int = 300        # rows loaded by the scheduled query are sent this long after loaded_at
    lookback_hours: int = 6
    initial_lookback_hours: int = 6  # where a first run starts when there is no watermark
    max_events_per_request: int = 2000
    concurrency: int = 4
    gzip: bool = True                # compress request bodies (Amplitude accepts gzip)
    request_timeout_seconds: float = 30.0
    retry_budget_seconds: float = 600.0
    max_backoff_seconds: float = 60.0
    throttle_hold_seconds: float = 30.0
    pace_eps_per_id: float = 0.0     # per-id events/s the sender stays under; 0 = Amplitude's limit (1,000 batch, 30 HTTP V2), < 0 = off
    pace_window_seconds: float = 30.0  # the window Amplitude measures that rate over
    dedup_horizon_days: int = 7
    # Days a row's own outcome is kept (then only its 15-minute counts); 0 = keep every row for ever.
    outcome_retention_days: int = 35
    # The volume guardrail (docs/GUARDRAIL.md): "hold" a window whose events to send per rule or family
    # leave the band around the same hour of the last weeks, "warn" only, or "off".
    guardrail: str = "hold"
    guardrail_band: float = 3.0      # a departure is more than this many times the baseline, or less than 1/this
    guardrail_min_events: int = 50   # hours under this many events (seen or expected) never alarm
    guardrail_weeks: int = 4         # weeks of history the baseline is the median of (1 to 8)
    export_lag_seconds: int = 7200   # Amplitude's export lag (2 h); the sandbox's is configurable
    # `ampkit freshness`: the age of the newest event at a stage past which it warns / errs;
    # 0 = from the cadence (docs/FRESHNESS.md). The export stage is allowed export_lag_seconds more.
    freshness_warn_minutes: int = 0
    freshness_error_minutes: int = 0
    lease_seconds: int = 3600
    min_id_length: int = 5
    confirm_threshold_events: int = 5_000_000
    slice_rows: int = 0              # rows a run snapshots, sends and records at once; 0 = the warehouse's own
    runs_dir: str = "runs"
    reports_dir: str = "reports"
    # Paths of files holding the keys (not the keys): what $AMPLITUDE_API_KEY_FILE says, kept in
    # ampkit.toml by the demo so later commands in its folder find the sandbox's keys.
    amplitude_api_key_file: str = ""
    amplitude_secret_key_file: str = ""
    api_key: str = dataclasses.field(default="", repr=False)
    secret_key: str = dataclasses.field(default="", repr=False)

    @property
    def ingest_url(self) -> str:
        return (self.amplitude_url or INGEST_URLS[self.amplitude_region]).rstrip("/")

    @property
    def dashboard_url(self) -> str:
        base = self.amplitude_dashboard_url or self.amplitude_url or DASHBOARD_URLS[self.amplitude_region]
        return base.rstrip("/")

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.time_zone)

    def clock(self) -> dt.datetime:
        """The run's notion of now (UTC, aware): the override if set, else the wall clock."""
        return self.now or dt.datetime.now(dt.timezone.utc)

    def redact(self, text: str) -> str:
        """Return `text` with both secrets masked; used on every message that leaves ampkit."""
        for secret in (self.api_key, self.secret_key):
            if secret:
                text = text.replace(secret, "***")
        return text

    def settings(self) -> dict[str, Any]:
        """Every setting but the secrets, as plain values `load()` reads back: how the configuration
        crosses into a notebook's kernel whole (the secrets follow through the environment)."""
        out = {}
        for name in SETTINGS:
            value = getattr(self, name)
            out[name] = value.isoformat() if isinstance(value, (dt.date, dt.datetime)) else value
        return out

    def public(self) -> dict[str, Any]:
        """The settings as plain values, secrets masked (what `ampkit config` prints)."""
        out = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name in ("api_key", "secret_key"):
                value = mask(value)
            elif isinstance(value, (dt.date, dt.datetime)):
                value = value.isoformat()
            out[f.name] = value
        out["ingest_url"] = self.ingest_url
        out["dashboard_url"] = self.dashboard_url
        return out


FIELDS = {f.name: f for f in dataclasses.fields(Config)}
SETTINGS = tuple(n for n in FIELDS if n not in ("api_key", "secret_key"))


def mask(secret: str) -> str:
    """Show that a secret is set without showing it."""
    return "(set)" if secret else "(not set)"


def load(overrides: Mapping[str, Any] | None = None, *, env: Mapping[str, str] | None = None,
         path: str | os.PathLike | None = None) -> Config:
    """Resolve the configuration from every layer; reads the environment and `ampkit.toml`.

    Args:
        overrides: CLI flags or notebook parameters (None values are ignored).
        env: the environment (default `os.environ`).
        path: an explicit config file; default `$AMPKIT_CONFIG` or `./ampkit.toml` if present.
    Raises:
        ConfigError: a malformed file, an unknown key, or a value of the wrong type.
        SecretError: a secret given in the file or in `overrides`.
    """
    env = os.environ if env is None else env
    values: dict[str, Any] = {}
    values.update(_from_file(path or env.get("AMPKIT_CONFIG") or CONFIG_FILE, explicit=bool(path or env.get("AMPKIT_CONFIG"))))
    for name in SETTINGS:
        key = ENV_PREFIX + name.upper()
        if env.get(key, "") != "":
            values[name] = _coerce(name, env[key], f"${key}")
    for name, value in (overrides or {}).items():
        if value is None:
            continue
        if name in ("api_key", "secret_key") or (name not in FIELDS and SECRET_PATTERN.search(name)):
            raise SecretError(f"'{name}' looks like a secret; set it in the environment ({', '.join(SECRET_NAMES)}), never as a parameter")
        if name not in FIELDS:
            raise ConfigError(f"unknown setting '{name}'; known: {', '.join(SETTINGS)}")
        values[name] = _coerce(name, value, "override")
    if isinstance(values.get("amplitude_region"), str):
        values["amplitude_region"] = values["amplitude_region"].upper()  # `eu` means EU
    values["api_key"] = secret("AMPLITUDE_API_KEY", env, values.get("amplitude_api_key_file", ""))
    values["secret_key"] = secret("AMPLITUDE_SECRET_KEY", env, values.get("amplitude_secret_key_file", ""))
    config = Config(**values)
    _validate(config)
    return config


def _from_file(path: str | os.PathLike, explicit: bool) -> dict[str, Any]:
    p = Path(path)
    if not p.exists():
        if explicit:
            raise ConfigError(f"config file {p} does not exist")
        return {}
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{p} is not valid TOML: {exc}") from exc
    section = data.get("ampkit", data)
    out = {}
    for name, value in section.items():
        if SECRET_PATTERN.search(name) and name not in KEY_FILE_SETTINGS:
            raise SecretError(f"{p}: '{name}' looks like a secret; secrets come only from the environment "
                              f"or from files named by {' / '.join(KEY_FILE_SETTINGS)}")
        if name not in FIELDS:
            raise ConfigError(f"{p}: unknown key '{name}'; known: {', '.join(SETTINGS)}")
        out[name] = _coerce(name, value, str(p))
    return out


def secret(name: str, env: Mapping[str, str], path: str = "") -> str:
    """A key from $NAME, else the file $NAME_FILE names, else the file `path` names ("" if none)."""
    if env.get(name):
        return env[name].strip()
    file_var = name + "_FILE"
    source, path = (f"${file_var}", env[file_var]) if env.get(file_var) else (f"setting {name.lower()}_file", path)
    if path:
        try:
            return Path(path).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError(f"{source} names a file that cannot be read: {exc.strerror}") from None
    return ""


def _coerce(name: str, value: Any, source: str) -> Any:
    kind = FIELDS[name].type
    try:
        if kind == "bool":
            if isinstance(value, bool):
                return value
            text = str(value).strip().lower()
            if text in ("1", "true", "yes", "on"):
                return True
            if text in ("0", "false", "no", "off"):
                return False
            raise ValueError(f"expected true or false, got {value!r}")
        if kind == "int":
            if isinstance(value, bool):
                raise ValueError("expected a whole number")
            return int(value)
        if kind == "float":
            return float(value)
        if kind == "dt.date":
            return value if isinstance(value, dt.date) else dt.date.fromisoformat(str(value))
        if kind == "dt.datetime | None":
            return parse_time(value)
        return str(value)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"setting '{name}' from {source}: {exc}") from None


def parse_time(value: Any) -> dt.datetime | None:
    """Parse an ISO time (or date) into an aware UTC datetime; naive values are taken as UTC."""
    if value in (None, ""):
        return None
    if isinstance(value, dt.datetime):
        t = value
    elif isinstance(value, dt.date):
        t = dt.datetime(value.year, value.month, value.day)
    else:
        try:
            t = dt.datetime.fromisoformat(str(value).strip().replace("Z", "+00:00"))
        except ValueError:
            raise ConfigError(f"'{value}' is not an ISO time (e.g. 2022-03-14T12:00:00Z)") from None
    if t.tzinfo is None:
        t = t.replace(tzinfo=dt.timezone.utc)
    return t.astimezone(dt.timezone.utc)


def _validate(c: Config) -> None:
    if c.amplitude_region not in INGEST_URLS:
        raise ConfigError(f"amplitude_region must be US or EU, got '{c.amplitude_region}'")
    if c.amplitude_endpoint not in ("batch", "httpapi"):
        raise ConfigError(f"amplitude_endpoint must be 'batch' or 'httpapi', got '{c.amplitude_endpoint}'")
    try:
        ZoneInfo(c.time_zone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(f"time_zone '{c.time_zone}' is not an IANA time zone") from None
    if not 1 <= c.max_events_per_request <= 2000:
        raise ConfigError("max_events_per_request must be between 1 and 2000 (Amplitude's cap)")
    for name in ("concurrency", "lease_seconds", "min_id_length"):
        if getattr(c, name) < 1:
            raise ConfigError(f"{name} must be at least 1")
    for name in ("throttle_hold_seconds", "retry_budget_seconds", "request_timeout_seconds", "max_backoff_seconds"):
        # Zero would let a 429 storm or a dead endpoint spin without pause.
        if getattr(c, name) <= 0:
            raise ConfigError(f"{name} must be more than 0")
    for name in ("lookback_hours", "settle_seconds", "initial_lookback_hours", "export_lag_seconds", "slice_rows"):
        if getattr(c, name) < 0:
            raise ConfigError(f"{name} must not be negative")
    if c.outcome_retention_days < 0:
        raise ConfigError("outcome_retention_days must not be negative (0 keeps every row's outcome)")
    if c.outcome_retention_days and (c.outcome_retention_days <= c.dedup_horizon_days
                                     or c.outcome_retention_days * 24 <= c.lookback_hours + 24):
        # Row outcomes are what keeps a re-run from sending a row twice: they must outlive both
        # Amplitude's insert_id dedup and the lookback the hourly run reads back over.
        raise ConfigError(f"outcome_retention_days ({c.outcome_retention_days}) must be more than dedup_horizon_days "
                          f"({c.dedup_horizon_days}) and more than a day beyond lookback_hours ({c.lookback_hours})")
    n = c.sync_interval_minutes
    if not (1 <= n <= 60 and 60 % n == 0) and not (60 < n <= 1440 and n % 60 == 0 and 1440 % n == 0):
        # A schedule must tile the hour (or the day) so every recipe can say it in cron's terms.
        raise ConfigError(f"sync_interval_minutes must divide an hour (1, 5, 10, 15, 30, 60) or be whole hours "
                          f"dividing a day (120, 180, ..., 1440), got {n}")
    if c.freshness_warn_minutes < 0 or c.freshness_error_minutes < 0:
        raise ConfigError("freshness_warn_minutes and freshness_error_minutes must not be negative (0 = from the cadence)")
    if c.freshness_warn_minutes and c.freshness_error_minutes and c.freshness_error_minutes < c.freshness_warn_minutes:
        raise ConfigError(f"freshness_error_minutes ({c.freshness_error_minutes}) must not be below "
                          f"freshness_warn_minutes ({c.freshness_warn_minutes})")
    if c.guardrail not in GUARDRAIL_MODES:
        raise ConfigError(f"guardrail must be one of {', '.join(GUARDRAIL_MODES)}, got '{c.guardrail}'")
    if c.guardrail_band <= 1:
        raise ConfigError(f"guardrail_band must be more than 1 (3 holds a window at 3x or a third of its baseline), got {c.guardrail_band:g}")
    if c.guardrail_min_events < 1:
        raise ConfigError("guardrail_min_events must be at least 1")
    if not 1 <= c.guardrail_weeks <= MAX_GUARDRAIL_WEEKS:
        # The volume history keeps 63 days (ampkit_volumes' partition expiry): 8 weeks and a margin.
        raise ConfigError(f"guardrail_weeks must be between 1 and {MAX_GUARDRAIL_WEEKS}, got {c.guardrail_weeks}")
    for url in (c.amplitude_url, c.amplitude_dashboard_url):
        if url and not re.match(r"^https?://[^\s/]+", url):
            raise ConfigError(f"'{url}' is not an http(s) URL")
