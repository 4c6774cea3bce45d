"""The sandbox itself: routes a request to ingestion, export, dashboard or control, and keeps state.

HTTP-agnostic: `handle(Request) -> Reply`. The HTTP server only parses and writes bytes, so
this module holds every decision (faults, limits, dedup, storage order) in one place.
"""
from __future__ import annotations

import base64
import binascii
import hmac
import logging
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

import orjson
import pyarrow as pa

from ampkit.errors import ConfigError
from ampkit.sandbox import export, ingest, segmentation
from ampkit.sandbox.budget import DashboardBudget
from ampkit.sandbox.clock import Clock
from ampkit.sandbox.config import Project, SandboxConfig
from ampkit.sandbox.dedup import DedupIndex, key_of
from ampkit.sandbox.fault import DASHBOARD_PATHS, EXPORT_PATH, INGEST_PATHS, Fault, FaultPlan, FaultSpecError, reply_for
from ampkit.sandbox.reply import Reply
from ampkit.sandbox.stats import Stats
from ampkit.sandbox.store import Body, EventFilter, Store, StoreError, events_table
from ampkit.sandbox.throttle import DailyQuota, Throttle, id_counts

logger = logging.getLogger(__name__)

CONTROL_PREFIX = "/_sandbox/"
_THROTTLED = "Too many requests for some devices and users"


@dataclass
class Request:
    """One HTTP request as the sandbox sees it. Header names are lower-case."""

    method: str
    path: str
    params: Mapping[str, str] = field(default_factory=dict)
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes = b""
    client_ip: str | None = None


class Service:
    """All sandbox state and behaviour. Thread-safe; one instance per running sandbox."""

    def __init__(self, config: SandboxConfig, clock: Clock | None = None) -> None:
        if not config.projects:
            raise ConfigError(
                "the sandbox has no API keys: set AMPLITUDE_API_KEY and AMPLITUDE_SECRET_KEY, "
                "or pass api_keys=[(api_key, secret_key)]"
            )
        self.config = config
        self.clock = clock or Clock()
        self.zone = ZoneInfo(config.time_zone)
        self.store = Store(config.db_path)
        self.faults = FaultPlan(config.fault_seed)
        self.stats = Stats(config.request_log_size, config.record_bodies)
        self._by_key = {p.api_key: p for p in config.projects}
        self._by_app = {p.app_id: p for p in config.projects}
        self._secret_keys = frozenset(p.secret_key for p in config.projects if p.secret_key)
        self._silenced = frozenset(config.silenced_devices)
        self._limits = {"/2/httpapi": (config.httpapi_max_bytes, config.httpapi_eps),
                        "/batch": (config.batch_max_bytes, config.batch_eps)}
        # One lock orders throttle checks, dedup and store submission, so commits happen in
        # the order requests were admitted (see Store.submit).
        self._ingest_lock = threading.Lock()
        self._build_limits()
        self._restore_dedup()

    # -- entry point ----------------------------------------------------------------------
    def handle(self, request: Request) -> Reply:
        path = request.path
        if path.startswith(CONTROL_PREFIX) or path == CONTROL_PREFIX[:-1]:
            return self._control(request)
        started = time.perf_counter()
        fault = self.faults.take(path)
        reply = self._with_fault(request, fault)
        self.stats.record(self.clock.now_ms(), request.method, path, reply.status, len(request.body), reply.body,
                          reply.content_type, reply.meta, fault and fault.kind, reply.meta.pop("body", None))
        logger.debug("request method=%s path=%s status=%s events=%s fault=%s ms=%.1f", request.method, path,
                     reply.status if not reply.drop else "dropped", reply.meta.get("events"),
                     fault and fault.kind, (time.perf_counter() - started) * 1000)
        return reply

    def close(self) -> None:
        self.store.close()

    def _with_fault(self, request: Request, fault: Fault | None) -> Reply:
        if fault is None:
            return self._route(request)
        if fault.delay_seconds and request.path not in DASHBOARD_PATHS:
            self.faults.pause(fault.delay_seconds)
        if fault.kind == "delay":
            return self._route(request, fault.delay_seconds)
        if not fault.after_ingest:
            return self._fault_reply(fault, request, {})
        real = self._route(request)
        return self._fault_reply(fault, request, real.meta)

    def _fault_reply(self, fault: Fault, request: Request, meta: dict[str, Any]) -> Reply:
        eps = self._limits.get(request.path, (0, self.config.batch_eps))[1]
        reply = reply_for(fault, request.path, request.body, request.headers.get("content-encoding"), eps,
                          self.config.daily_quota)
        reply.meta = dict(meta)
        return reply

    def _route(self, request: Request, hold_seconds: float = 0.0) -> Reply:
        path, method = request.path, request.method
        if path in INGEST_PATHS:
            if method != "POST":
                return Reply.ingest_error(400, "Invalid request path")
            return self.ingest(path, request.body, request.headers, request.client_ip)
        if path == EXPORT_PATH or path in DASHBOARD_PATHS:
            if method != "GET":
                return Reply.dashboard_error(405, "invalid", f"{method} is not allowed here; use GET")
            project = self._authenticate(request.headers.get("authorization"))
            if project is None:
                return Reply.dashboard_error(401, "unauthorized", "Invalid API key or secret key",
                                             "use HTTP Basic auth with the project's api_key:secret_key")
            if path == EXPORT_PATH:
                return self.export(project, request.params)
            return self._dashboard(project, path, request.params, hold_seconds)
        if path.startswith("/api/"):
            return Reply.dashboard_error(404, "not_found", f"No such endpoint {path}")
        return Reply.ingest_error(400, "Invalid request path")

    # -- ingestion ------------------------------------------------------------------------
    def ingest(self, path: str, raw: bytes, headers: Mapping[str, str], client_ip: str | None) -> Reply:
        """POST /2/httpapi and /batch: validate, throttle, dedup, store durably, then answer."""
        max_bytes, eps = self._limits[path]
        data = ingest.decode(raw, headers.get("content-type"), headers.get("content-encoding"), max_bytes)
        if isinstance(data, Reply):
            return data
        now = self.clock.now_ms()
        config = self.config
        body: dict | None = None
        accepted = ingest.accept_fast(data, self._by_key, max_bytes, config.max_events_per_request,
                                      config.empty_events_ok, config.min_id_length, now, self._silenced)
        if accepted is None or self.stats.record_bodies:
            parsed = ingest.parse(data)
            if isinstance(parsed, Reply):
                return parsed
            body = parsed
            checked = ingest.check_request(body, len(data), self._by_key, max_bytes, config.max_events_per_request,
                                           config.empty_events_ok, self._secret_keys)
            if isinstance(checked, Reply):
                checked.meta["events"] = len(body["events"]) if isinstance(body.get("events"), list) else None
                return checked
            project, events = checked
            accepted = ingest.check_events(project, events, ingest.min_id_length_of(body, config.min_id_length),
                                           now, ingest.client_upload_ms_of(body), self._silenced)
            if isinstance(accepted, Reply):
                accepted.meta.update(events=len(events), events_received=len(events), events_rejected=len(events))
                return accepted
        elif isinstance(accepted, Reply):  # a silenced device: the fast path's only refusal
            n = len(ingest.parse(data)["events"])
            accepted.meta.update(events=n, events_received=n, events_rejected=n)
            return accepted
        project = accepted.project
        n = len(accepted.event_types)
        meta: dict[str, Any] = {"events": n, "events_received": n}
        if body is not None and self.stats.record_bodies:
            meta["body"] = {k: v for k, v in body.items() if k != "api_key"}
        if n == 0:
            return Reply.json(200, self._success(0, len(raw), now), meta=meta)
        app = project.app_id
        sep = "\x1f"  # key_of(), inlined: this runs for every event
        keys = [d + sep + i if i is not None else None for d, i in zip(accepted.effective_device_ids, accepted.insert_ids)]
        users, devices = id_counts(accepted.user_ids), id_counts(accepted.device_ids)
        table = events_table(app, path, now, accepted.event_types, accepted.user_ids, accepted.device_ids,
                             accepted.times_ms, accepted.insert_ids)
        # The stored body is what export reads back; the project's key has no business on disk.
        stored_body = Body(_mask_key(data, project.api_key), accepted.client_upload_ms, client_ip)
        with self._ingest_lock:
            throttle = self._throttles[(app, path)]
            verdict = throttle.check(users, devices, n, now)
            if verdict:
                meta["events_throttled"] = n
                return Reply.json(429, self._throttle_body(path, verdict, accepted), meta=meta)
            duplicates, added = self._dedup[app].admit(keys, now)
            if duplicates:
                dropped = set(duplicates)
                kept = [i not in dropped for i in range(n)]
                table = table.filter(pa.array(kept))
                users = id_counts([u for u, k in zip(accepted.user_ids, kept) if k])
                devices = id_counts([d for d, k in zip(accepted.device_ids, kept) if k])
            throttle.record(users, devices, n - len(duplicates), now)
            pending = self.store.submit(stored_body, table)
        try:
            self.store.wait(pending)
        except StoreError:
            with self._ingest_lock:
                self._dedup[app].forget(added)
            # 503 means "not committed", so a client can resend without duplicate risk.
            unavailable = Reply.ingest_error(503, "Service unavailable")
            unavailable.meta = meta
            return unavailable
        stored = n - len(duplicates)
        ingested = n if self.config.count_duplicates_as_ingested else stored
        meta.update(events_ingested=ingested, events_stored=stored, duplicates_dropped=len(duplicates))
        return Reply.json(200, self._success(ingested, len(raw), now), meta=meta)

    @staticmethod
    def _success(ingested: int, payload_bytes: int, now_ms: int) -> dict[str, int]:
        return {"code": 200, "events_ingested": ingested, "payload_size_bytes": payload_bytes,
                "server_upload_time": now_ms}

    def _throttle_body(self, path: str, verdict: Any, accepted: ingest.Accepted) -> dict[str, Any]:
        users = set(verdict.throttled_users) | set(verdict.exceeded_daily_quota_users)
        devices = set(verdict.throttled_devices) | set(verdict.exceeded_daily_quota_devices)
        indexes = [i for i, (u, d) in enumerate(zip(accepted.user_ids, accepted.device_ids))
                   if (u is not None and u in users) or (d is not None and d in devices)]
        body: dict[str, Any] = {
            "code": 429,
            "error": _THROTTLED if (users or devices) else "Too many requests for this project",
            "eps_threshold": verdict.eps_threshold,
            "throttled_devices": verdict.throttled_devices,
            "throttled_users": verdict.throttled_users,
            "throttled_events": indexes,
        }
        if path == "/batch" or verdict.exceeded_daily_quota_users or verdict.exceeded_daily_quota_devices:
            body["exceeded_daily_quota_users"] = verdict.exceeded_daily_quota_users
            body["exceeded_daily_quota_devices"] = verdict.exceeded_daily_quota_devices
        return body

    # -- export and dashboard -------------------------------------------------------------
    def export(self, project: Project, params: Mapping[str, str]) -> Reply:
        """GET /api/2/export: a zip of upload hours that have finished loading."""
        bounds = export.parse_range(params.get("start"), params.get("end"), self.config.export_max_days)
        if isinstance(bounds, Reply):
            return bounds
        start_ms, end_ms = bounds
        end_ms = min(end_ms, export.ready_before_ms(self.clock.now_ms(), self.config.export_lag_seconds))
        data = None
        if end_ms > start_ms:
            try:
                batches = export.without_hours(self.store.export_batches(project.app_id, start_ms, end_ms),
                                               self.config.export_missing_hours)
                data = export.build_zip(project.app_id, batches,
                                        self.store.body, self.store.uuid_salt(), self.config.export_part_max_rows,
                                        self.config.export_max_bytes)
            except export.ExportTooLarge:
                return Reply.dashboard_error(400, "invalid", "Export too large",
                                             f"the export is over {self.config.export_max_bytes} bytes; "
                                             "use a smaller range")
        if data is None:
            return Reply.dashboard_error(404, "not_found", "Raw data files were not found.",
                                         "no exportable events in this range (yet)")
        return Reply(200, data, content_type="application/zip",
                     headers=(("Content-Disposition", 'attachment; filename="export.zip"'),))

    def _dashboard(self, project: Project, path: str, params: Mapping[str, str], hold_seconds: float) -> Reply:
        budget = self._budgets[project.app_id]
        refused = budget.enter()
        if refused is not None:
            return refused
        try:
            if hold_seconds:
                self.faults.pause(hold_seconds)  # an injected delay occupies its concurrency slot
            if path == "/api/2/events/list":
                return self._events_list(project, budget)
            return self._segmentation(project, params, budget)
        finally:
            budget.leave()

    def _segmentation(self, project: Project, params: Mapping[str, str], budget: DashboardBudget) -> Reply:
        query = segmentation.parse(params)
        if isinstance(query, Reply):
            return query
        refused = budget.charge(query.cost, self.clock.now_ms())
        if refused is not None:
            return refused
        starts, ends, labels = segmentation.intervals(query, self.zone)
        counts, collapsed = self.store.interval_counts(project.app_id, query.event_type, starts, ends,
                                                       query.metric == "uniques")
        return Reply.json(200, segmentation.response(counts, collapsed, labels))

    def _events_list(self, project: Project, budget: DashboardBudget) -> Reply:
        refused = budget.charge(1, self.clock.now_ms())
        if refused is not None:
            return refused
        start_ms, end_ms = segmentation.current_week_ms(self.clock.now_ms(), self.zone)
        return Reply.json(200, segmentation.events_list(self.store.event_type_totals(project.app_id, start_ms, end_ms)))

    def _authenticate(self, header: str | None) -> Project | None:
        if not header or not header[:6].lower() == "basic ":
            return None
        try:
            decoded = base64.b64decode(header[6:].strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return None
        api_key, _, secret = decoded.partition(":")
        project = self._by_key.get(api_key)
        if project is None or project.secret_key is None:
            return None
        if not hmac.compare_digest(secret.encode(), project.secret_key.encode()):
            return None
        return project

    # -- control API ----------------------------------------------------------------------
    def _control(self, request: Request) -> Reply:
        action = request.path[len(CONTROL_PREFIX):].strip("/")
        method = request.method
        try:
            payload = orjson.loads(request.body) if request.body else {}
        except orjson.JSONDecodeError:
            return _control_error(400, "the control API takes a JSON body")
        routes = {
            ("GET", "health"): lambda: self.health(),
            ("POST", "reset"): lambda: self.reset(**_only(payload, "keep_events", "keep_clock")),
            ("GET", "faults"): lambda: {"faults": self.faults.describe()},
            ("POST", "faults"): lambda: self.add_faults(payload),
            ("DELETE", "faults"): lambda: self.clear_faults(),
            ("POST", "faults/clear"): lambda: self.clear_faults(),
            ("GET", "clock"): lambda: self.clock.describe(),
            ("POST", "clock"): lambda: self.move_clock(payload),
            ("GET", "stats"): lambda: self.snapshot(),
            ("GET", "requests"): lambda: {"requests": self.stats.requests(
                int(request.params.get("limit") or 0) or None, request.params.get("path"))},
            ("POST", "events/delete"): lambda: self.delete_events(payload),
            ("POST", "events/seed"): lambda: self.seed_events(payload),
        }
        handler = routes.get((method, action))
        if handler is None:
            known = {a for _, a in routes}
            if action in known:
                return _control_error(405, f"{method} is not allowed on /_sandbox/{action}")
            return _control_error(404, f"no control endpoint /_sandbox/{action}")
        try:
            return Reply.json(200, handler())
        except (FaultSpecError, ValueError, TypeError) as exc:
            return _control_error(400, str(exc))

    def health(self) -> dict[str, Any]:
        return {"status": "ok", "apps": sorted(self._by_app), "now_ms": self.clock.now_ms(),
                "time_zone": self.config.time_zone, "durable": self.config.db_path is not None}

    def reset(self, keep_events: bool = False, keep_clock: bool = False) -> dict[str, Any]:
        """Forget faults, stats, throttle windows, budgets and (unless kept) events and the clock."""
        with self._ingest_lock:
            self.faults.clear()
            self.stats.clear()
            if not keep_clock:
                self.clock.release()
            self._build_limits()
            if not keep_events:
                self.store.clear()
                for index in self._dedup.values():
                    index.clear()
        return {"status": "reset", "events_stored": self.store.count()}

    def add_faults(self, payload: Any) -> dict[str, Any]:
        specs = payload if isinstance(payload, list) else [payload]
        if not all(isinstance(s, dict) for s in specs):
            raise FaultSpecError("a fault is a JSON object")
        return {"faults": [self.faults.add(spec).describe() for spec in specs]}

    def clear_faults(self) -> dict[str, Any]:
        self.faults.clear()
        return {"faults": []}

    def move_clock(self, payload: dict[str, Any]) -> dict[str, Any]:
        if payload.get("real"):
            self.clock.release()
        elif "now_ms" in payload:
            self.clock.set(int(payload["now_ms"]), frozen=bool(payload.get("frozen", True)))
        elif "advance_seconds" in payload:
            self.clock.advance(float(payload["advance_seconds"]))
        else:
            raise ValueError("send now_ms (and frozen), advance_seconds, or real: true")
        return self.clock.describe()

    def snapshot(self) -> dict[str, Any]:
        return {**self.stats.snapshot(), "events_in_store": self.store.count(),
                "dedup_keys": sum(len(d) for d in self._dedup.values())}

    def delete_events(self, payload: dict[str, Any]) -> dict[str, Any]:
        """Remove stored events (e.g. one hour's, to test reconciliation). Needs a filter or `all`.

        Deleted insert_ids are forgotten by dedup unless `forget_insert_ids` is false, so a
        client that resends them is stored again, as after a real loss.
        """
        payload = dict(payload)
        forget = bool(payload.pop("forget_insert_ids", True))
        delete_all = bool(payload.pop("all", False))
        where = _event_filter(payload)
        if where == EventFilter() and not delete_all:
            raise ValueError("give at least one filter, or all: true")
        with self._ingest_lock:
            deleted = self.store.delete(where)
            if forget:
                for app, device_id, user_id, insert_id in deleted:
                    if insert_id is not None and app in self._dedup:
                        device_id = device_id or ingest.device_id_for_user(user_id)
                        self._dedup[app].forget([key_of(device_id, insert_id)])
        self.stats.add(events_deleted=len(deleted))
        return {"deleted": len(deleted)}

    def seed_events(self, payload: dict[str, Any]) -> dict[str, Any]:
        """Store events as if Amplitude already had them (no validation of limits, no throttle).

        `events` use the ingestion format; `app` picks the project (default: the first);
        `upload_time_ms` backdates them (default: now); `path` defaults to /batch.
        """
        events = payload.get("events")
        if not isinstance(events, list) or not all(isinstance(e, dict) for e in events):
            raise ValueError("events must be a list of event objects")
        app = payload.get("app", self.config.projects[0].app_id)
        project = self._by_app.get(app)
        if project is None:
            raise ValueError(f"unknown app {app}")
        path = payload.get("path", "/batch")
        now = int(payload.get("upload_time_ms") or self.clock.now_ms())
        accepted = ingest.check_events(project, events, 1, now)
        if isinstance(accepted, Reply):
            raise ValueError(f"seeded events must have event_type and user_id or device_id: {accepted.body.decode()}")
        table = events_table(app, path, now, accepted.event_types, accepted.user_ids, accepted.device_ids,
                             accepted.times_ms, accepted.insert_ids)
        body = Body(orjson.dumps({"events": events}), None, payload.get("request_ip"))
        keys = [key_of(d, i) for d, i in zip(accepted.effective_device_ids, accepted.insert_ids) if i is not None]
        with self._ingest_lock:
            self._dedup[app].load((k, now) for k in keys)
            pending = self.store.submit(body, table)
        self.store.wait(pending)
        self.stats.add(events_seeded=len(events))
        return {"seeded": len(events), "app": app}

    # -- state ----------------------------------------------------------------------------
    def _build_limits(self) -> None:
        config = self.config
        self._throttles: dict[tuple[int, str], Throttle] = {}
        self._budgets: dict[int, DashboardBudget] = {}
        for project in config.projects:
            app = project.app_id
            daily = DailyQuota(config.daily_quota, self._loader(app, None, "user_id"),
                               self._loader(app, None, "device_id"))
            for path, (_, eps) in self._limits.items():
                project_eps = config.project_eps if path == "/2/httpapi" else None
                self._throttles[(app, path)] = Throttle(
                    eps, config.throttle_window_seconds, daily, self._loader(app, path, "user_id"),
                    self._loader(app, path, "device_id"), project_eps)
            self._budgets[project.app_id] = DashboardBudget(
                config.dashboard_max_concurrency, config.dashboard_cost_per_5_minutes, config.dashboard_cost_per_hour)

    def _loader(self, app: int, path: str | None, column: str) -> Any:
        """Exact per-id counts for a throttle window, read from the store when it needs them."""
        return lambda since_ms, bucket_ms: self.store.id_counts(app, path, column, since_ms, bucket_ms)

    def _restore_dedup(self) -> None:
        window_ms = self.config.dedup_window_seconds * 1000
        self._dedup = {p.app_id: DedupIndex(window_ms) for p in self.config.projects}
        rows = self.store.dedup_keys(self.clock.now_ms() - window_ms)
        for app, device_id, user_id, insert_id, first_ms in rows:
            if app in self._dedup:
                device_id = device_id or ingest.device_id_for_user(user_id)
                self._dedup[app].load([(key_of(device_id, insert_id), first_ms)])
        if rows:
            logger.info("sandbox restored dedup keys=%d", len(rows))


def _mask_key(data: bytes, api_key: str) -> bytes:
    """Replace the key's JSON string with asterisks of the same length (JSON stays valid)."""
    quoted = orjson.dumps(api_key)
    masked = b'"' + b"*" * (len(quoted) - 2) + b'"'
    # One forward scan; bytes.replace would scan twice and copy even when it usually finds
    # the key within the first few bytes.
    parts = []
    start = 0
    while (found := data.find(quoted, start)) != -1:
        parts += (data[start:found], masked)
        start = found + len(quoted)
    if not parts:
        return data
    parts.append(data[start:])
    return b"".join(parts)


def _control_error(status: int, message: str) -> Reply:
    return Reply.json(status, {"error": message})


def _only(payload: Any, *names: str) -> dict[str, Any]:
    if not isinstance(payload, dict):
        raise ValueError("expected a JSON object")
    unknown = set(payload) - set(names)
    if unknown:
        raise ValueError(f"unknown keys: {', '.join(sorted(unknown))}")
    return payload


def _event_filter(payload: dict[str, Any]) -> EventFilter:
    def many(name: str, plural: str) -> tuple[str, ...] | None:
        value = payload.pop(plural, None)
        single = payload.pop(name, None)
        if single is not None:
            value = [single] if isinstance(single, str) else single
        if value is None:
            return None
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ValueError(f"{name} must be a string or a list of strings")
        return tuple(value)

    def ms(name: str) -> int | None:
        value = payload.pop(name, None)
        if value is not None and type(value) is not int:
            raise ValueError(f"{name} must be epoch milliseconds (an integer)")
        return value

    where = EventFilter(
        app=ms("app"),
        event_types=many("event_type", "event_types"),
        event_start_ms=ms("event_start_ms"), event_end_ms=ms("event_end_ms"),
        upload_start_ms=ms("upload_start_ms"), upload_end_ms=ms("upload_end_ms"),
        user_ids=many("user_id", "user_ids"), device_ids=many("device_id", "device_ids"),
        insert_ids=many("insert_id", "insert_ids"),
    )
    if payload:
        raise ValueError(f"unknown filter keys: {', '.join(sorted(payload))}")
    return where
