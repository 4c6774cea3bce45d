"""Sandbox settings: one frozen value, built from arguments or from the environment."""
from __future__ import annotations

import re

import dataclasses
import hashlib
import ipaddress
import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from ampkit.errors import ConfigError

ENV_PREFIX = "AMPKIT_SANDBOX_"
# One environment drives both the sync and the sandbox: the sync reads the same two variables.
API_KEY_ENV = "AMPLITUDE_API_KEY"
SECRET_KEY_ENV = "AMPLITUDE_SECRET_KEY"
# Extra projects, for multi-project tests: a JSON list of [api_key, secret_key] or
# [api_key, secret_key, app_id]. Kept in the environment because it holds secrets.
PROJECTS_ENV = ENV_PREFIX + "PROJECTS"


@dataclass(frozen=True)
class Project:
    """One Amplitude project the sandbox accepts: its key pair and its numeric id (`app`)."""

    api_key: str = field(repr=False)
    secret_key: str | None = field(repr=False, default=None)
    app_id: int = 0

    def __post_init__(self) -> None:
        if not isinstance(self.api_key, str) or not self.api_key:
            raise ConfigError("sandbox project: api_key must be a non-empty string")
        if self.secret_key is not None and not isinstance(self.secret_key, str):
            raise ConfigError("sandbox project: secret_key must be a string")
        if not self.app_id:
            object.__setattr__(self, "app_id", app_id_for(self.api_key))


def app_id_for(api_key: str) -> int:
    """A stable six-digit project id derived from the key, so restarts keep the same `app`."""
    digest = hashlib.sha256(api_key.encode()).digest()
    return 100000 + int.from_bytes(digest[:4], "big") % 900000


@dataclass(frozen=True)
class SandboxConfig:
    """Everything the sandbox needs; defaults mirror Amplitude's documented limits.

    Times are in seconds, sizes in bytes, rates in events per second. `port=0` picks a free
    port. `db_path=None` keeps events in memory. Secrets never appear in `repr()`.
    """

    host: str = "127.0.0.1"
    port: int = 0
    db_path: str | None = None
    api_keys: Any = field(default=(), repr=False)
    time_zone: str = "UTC"
    allow_remote: bool = False
    # https://amplitude.com/docs/apis/analytics/http-v2 (30 EPS per id) and
    # https://amplitude.com/docs/apis/analytics/batch-event-upload (1,000 EPS per id, 500k/day).
    httpapi_eps: int = 30
    batch_eps: int = 1000
    throttle_window_seconds: int = 30
    daily_quota: int = 500_000
    project_eps: int | None = None
    min_id_length: int = 5
    max_events_per_request: int = 2000
    httpapi_max_bytes: int = 1_000_000
    batch_max_bytes: int = 20_000_000
    dedup_window_seconds: int = 7 * 24 * 3600
    count_duplicates_as_ingested: bool = True
    empty_events_ok: bool = True
    silenced_devices: tuple[str, ...] = ()
    # https://amplitude.com/docs/apis/analytics/export (2 h latency, 4 GB cap, 365 days).
    export_lag_seconds: int = 7200
    export_max_bytes: int = 4_000_000_000
    export_max_days: int = 365
    export_part_max_rows: int = 100_000
    # Upload hours (`YYYYMMDDTHH`, UTC) the export leaves out while the Dashboard still counts their
    # events: Amplitude's export has been known to lack an hour it later refills. For tests of
    # the reconciliation's export-gap check.
    export_missing_hours: tuple[str, ...] = ()
    # https://amplitude.com/docs/apis/analytics/dashboard-rest (5 concurrent; cost budgets).
    dashboard_max_concurrency: int = 5
    dashboard_cost_per_5_minutes: int = 1000
    dashboard_cost_per_hour: int = 108_000
    request_log_size: int = 1000
    record_bodies: bool = False
    fault_seed: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "api_keys", _projects(self.api_keys))
        object.__setattr__(self, "silenced_devices", tuple(self.silenced_devices))
        object.__setattr__(self, "export_missing_hours", tuple(self.export_missing_hours))
        _check(self)

    @property
    def projects(self) -> tuple[Project, ...]:
        return self.api_keys

    def replace(self, **changes: Any) -> SandboxConfig:
        return dataclasses.replace(self, **changes)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> SandboxConfig:
        """Build from `AMPLITUDE_API_KEY`/`AMPLITUDE_SECRET_KEY` and `AMPKIT_SANDBOX_*`.

        Explicit `overrides` win over the environment; unset fields keep their defaults.
        Every field can be set as `AMPKIT_SANDBOX_<FIELD>` (e.g. `AMPKIT_SANDBOX_BATCH_EPS=50`).
        """
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            if f.name == "api_keys":
                continue
            raw = env.get(ENV_PREFIX + f.name.upper())
            if raw is not None and raw != "":
                values[f.name] = _coerce(f.name, f.type, raw)
        if "api_keys" not in overrides:
            values["api_keys"] = _projects_from_env(env)
        values.update({k: v for k, v in overrides.items()})
        return cls(**values)

    def to_env(self) -> dict[str, str]:
        """The environment that makes `from_env` rebuild this config (used by `spawn`)."""
        out: dict[str, str] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name == "api_keys":
                out[PROJECTS_ENV] = json.dumps([[p.api_key, p.secret_key, p.app_id] for p in value])
            elif value is None:
                out[ENV_PREFIX + f.name.upper()] = ""
            elif isinstance(value, tuple):
                out[ENV_PREFIX + f.name.upper()] = ",".join(value)
            else:
                out[ENV_PREFIX + f.name.upper()] = str(value)
        return out


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _projects(value: Any) -> tuple[Project, ...]:
    if isinstance(value, Project):
        return (value,)
    if isinstance(value, Mapping):
        items: Iterable[Any] = value.items()
    elif isinstance(value, (str, bytes)):
        raise ConfigError("sandbox api_keys: pass (api_key, secret_key) pairs, not a string")
    else:
        items = value or ()
    projects: list[Project] = []
    for item in items:
        if isinstance(item, Project):
            projects.append(item)
        elif isinstance(item, (tuple, list)) and len(item) in (2, 3):
            projects.append(Project(*item))
        else:
            raise ConfigError("sandbox api_keys: each entry must be (api_key, secret_key[, app_id])")
    keys = [p.api_key for p in projects]
    if len(set(keys)) != len(keys):
        raise ConfigError("sandbox api_keys: the same api_key is listed twice")
    return tuple(projects)


def _projects_from_env(env: Mapping[str, str]) -> tuple[Project, ...]:
    from ampkit.config import secret
    projects: list[Any] = []
    # The same variables, and *_FILE paths, the sync reads its keys from.
    api_key = secret(API_KEY_ENV, env)
    if api_key:
        projects.append((api_key, secret(SECRET_KEY_ENV, env) or None))
    raw = env.get(PROJECTS_ENV)
    if raw:
        try:
            extra = json.loads(raw)
        except ValueError:
            raise ConfigError(f"{PROJECTS_ENV} must be a JSON list of [api_key, secret_key] pairs") from None
        if not isinstance(extra, list):
            raise ConfigError(f"{PROJECTS_ENV} must be a JSON list of [api_key, secret_key] pairs")
        seen = {p[0] for p in projects}
        projects.extend(tuple(p) for p in extra if isinstance(p, list) and p and p[0] not in seen)
        if any(not isinstance(p, list) for p in extra):
            raise ConfigError(f"{PROJECTS_ENV} must be a JSON list of [api_key, secret_key] pairs")
    return _projects(projects)


def _coerce(name: str, annotation: Any, raw: str) -> Any:
    kind = str(annotation)
    where = f"{ENV_PREFIX}{name.upper()}"
    try:
        if "bool" in kind:
            lowered = raw.strip().lower()
            if lowered in ("1", "true", "yes", "on"):
                return True
            if lowered in ("0", "false", "no", "off"):
                return False
            raise ValueError(raw)
        if "tuple" in kind:
            return tuple(part for part in (p.strip() for p in raw.split(",")) if part)
        if "int" in kind:
            return int(raw)
    except ValueError:
        raise ConfigError(f"{where}: cannot read {raw!r} as {kind}") from None
    return raw


def _check(config: SandboxConfig) -> None:
    if not config.allow_remote and not is_loopback(config.host):
        raise ConfigError(
            f"sandbox host {config.host!r} is not a loopback address; the sandbox has no real auth "
            "and an open control API, so binding it elsewhere needs --allow-remote "
            "(allow_remote=True)"
        )
    if not (0 <= config.port <= 65535):
        raise ConfigError(f"sandbox port must be between 0 and 65535, got {config.port}")
    try:
        ZoneInfo(config.time_zone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(f"sandbox time_zone {config.time_zone!r} is not an IANA time zone") from None
    positive = (
        "httpapi_eps", "batch_eps", "throttle_window_seconds", "daily_quota", "min_id_length",
        "max_events_per_request", "httpapi_max_bytes", "batch_max_bytes", "dedup_window_seconds",
        "export_max_bytes", "export_max_days", "export_part_max_rows", "dashboard_max_concurrency",
        "dashboard_cost_per_5_minutes", "dashboard_cost_per_hour", "request_log_size",
    )
    for name in positive:
        value = getattr(config, name)
        if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
            raise ConfigError(f"sandbox {name} must be a positive integer, got {value!r}")
    if config.export_lag_seconds < 0:
        raise ConfigError("sandbox export_lag_seconds must be >= 0")
    for hour in config.export_missing_hours:
        if not re.match(r"^\d{8}T\d{2}$", str(hour)):
            raise ConfigError(f"sandbox export_missing_hours: {hour!r} is not an upload hour like 20220313T14")
    if config.project_eps is not None and config.project_eps <= 0:
        raise ConfigError("sandbox project_eps must be a positive integer or None")
    apps = [p.app_id for p in config.api_keys]
    if len(set(apps)) != len(apps):
        raise ConfigError("sandbox api_keys: two projects share one app_id")
