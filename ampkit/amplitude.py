"""Amplitude's ingestion API (Batch or HTTP V2): one request out, one classified answer back.

`classify()` is pure: it reads a status and body and says what the caller must do. `Client`
does the I/O over a pooled `requests.Session`, translating every transport failure into an
`ampkit.errors` type. The API key is written into request bodies and nowhere else.
"""
from __future__ import annotations

import dataclasses
import gzip
import logging
import threading
import time

import orjson
import requests

from ampkit.config import Config
from ampkit.errors import (AmplitudeError, FatalAmplitudeError, RetryableAmplitudeError)

logger = logging.getLogger(__name__)

# https://amplitude.com/docs/apis/analytics/batch-event-upload and .../http-v2 (limits)
MAX_EVENTS_PER_REQUEST = 2000
MAX_BATCH_BYTES = 20_000_000
MAX_HTTPAPI_BYTES = 1_000_000
PATHS = {"batch": "/batch", "httpapi": "/2/httpapi"}
# https://amplitude.com/docs/apis/analytics/http-v2 (blocklisted ids give 400)
BLOCKLISTED_IDS = ("anonymous", "nil", "none", "null", "n/a", "na", "undefined", "unknown", '""',
                   "00000000-0000-0000-0000-000000000000", "{}", "lmy47d", "0", "-1")
# Headroom under the byte cap for the envelope around the events.
ENVELOPE_BYTES = 256
# Events per second per device or user id, over a 30-second window (batch-event-upload and http-v2 limits).
EPS_PER_ID = {"batch": 1000, "httpapi": 30}


@dataclasses.dataclass(frozen=True)
class Verdict:
    """What to do with a request after Amplitude answered (see `classify`)."""

    kind: str                                  # ok | rejected | too_large | throttled | retry | fatal
    status: int
    message: str = ""
    ingested: int | None = None
    rejected: dict[int, str] = dataclasses.field(default_factory=dict)   # index -> reason
    throttled_ids: frozenset[str] = frozenset()
    throttled_indexes: frozenset[int] = frozenset()
    quota_ids: frozenset[str] = frozenset()


def classify(status: int, body: bytes, content_type: str = "") -> Verdict:
    """Read Amplitude's answer to one ingestion request (pure).

    The SDKs trust the body's `code`; a 200 whose body is not Amplitude's JSON did not prove
    anything was stored, so it is retried (the insert_id makes the resend safe).
    """
    try:
        data = orjson.loads(body) if body else None
    except orjson.JSONDecodeError:
        data = None
    if not isinstance(data, dict):
        if 200 <= status < 300:
            return Verdict("retry", status, "a 2xx answer without Amplitude's JSON body")
        if status in (400, 403):
            # An HTML 400 from the edge names no events: nothing to fix per event, nothing ingested.
            return Verdict("retry" if status == 400 else "fatal", status, f"HTTP {status} with a non-JSON body")
        if status == 413:
            return Verdict("too_large", status, "payload too large")
        return Verdict("retry", status, f"HTTP {status}")
    code = data.get("code", status)
    if status == 200 and code == 200:
        ingested = data.get("events_ingested")
        return Verdict("ok", status, ingested=ingested if isinstance(ingested, int) else None)
    error = str(data.get("error", ""))
    if status == 413 or code == 413:
        return Verdict("too_large", 413, error or "payload too large")
    if status == 429 or code == 429:
        ids = set()
        for key in ("throttled_devices", "throttled_users"):
            ids |= {str(k) for k in (data.get(key) or {})}
        quota = set()
        for key in ("exceeded_daily_quota_devices", "exceeded_daily_quota_users"):
            quota |= {str(k) for k in (data.get(key) or {})}
        indexes = frozenset(int(i) for i in data.get("throttled_events") or [] if isinstance(i, int))
        return Verdict("throttled", 429, error, throttled_ids=frozenset(ids), throttled_indexes=indexes,
                       quota_ids=frozenset(quota))
    if status == 400 or code == 400:
        rejected: dict[int, str] = {}
        for key in ("events_with_missing_fields", "events_with_invalid_fields", "events_with_invalid_id_lengths"):
            for field, indexes in (data.get(key) or {}).items():
                for i in indexes or []:
                    rejected.setdefault(int(i), f"amplitude_{key.removeprefix('events_with_')}:{field}")
        for i in data.get("silenced_events") or []:
            rejected.setdefault(int(i), "amplitude_silenced_device")
        if rejected:
            return Verdict("rejected", 400, error, rejected=rejected)
        return Verdict("fatal", 400, error or "bad request")
    if status in (401, 403) or code in (401, 403):
        return Verdict("fatal", status, error or "forbidden")
    if status >= 500 or status in (408, 409, 425):
        return Verdict("retry", status, error or f"HTTP {status}")
    return Verdict("fatal", status, error or f"HTTP {status}")


class Client:
    """Posts ingestion requests to Amplitude (or the sandbox) over a pooled session (I/O)."""

    def __init__(self, config: Config, session: requests.Session | None = None):
        if not config.api_key:
            from ampkit.errors import ConfigError
            raise ConfigError("AMPLITUDE_API_KEY is not set (environment or AMPLITUDE_API_KEY_FILE)")
        self.config = config
        self.url = config.ingest_url + PATHS[config.amplitude_endpoint]
        self.max_bytes = (MAX_BATCH_BYTES if config.amplitude_endpoint == "batch" else MAX_HTTPAPI_BYTES) - ENVELOPE_BYTES
        self._local = threading.local()
        self._shared = session
        self._prefix = b'{"api_key":' + orjson.dumps(config.api_key) + b',"events":['
        options = {"min_id_length": config.min_id_length} if config.min_id_length != 5 else None
        self._suffix = b"]" + (b',"options":' + orjson.dumps(options) if options else b"") + b"}"
        self.gzip = config.gzip
        # The per-id rate the sender paces to: the setting, else the endpoint's documented limit.
        rate = getattr(config, "pace_eps_per_id", 0.0)
        self.eps_per_id = float(rate) if rate else float(EPS_PER_ID[config.amplitude_endpoint])
        self.pace_window_seconds = float(getattr(config, "pace_window_seconds", 30.0))

    @property
    def session(self) -> requests.Session:
        # One session per sending thread: connections are reused, never shared across threads.
        if self._shared is not None:
            return self._shared
        s = getattr(self._local, "session", None)
        if s is None:
            s = requests.Session()
            s.headers.update({"Content-Type": "application/json", "Accept": "*/*",
                              "User-Agent": "ampkit/0.1"})
            self._local.session = s
        return s

    def body(self, events: bytes | memoryview) -> bytes:
        """The request body around already-serialized, comma-separated events."""
        return b"".join((self._prefix, events, self._suffix))

    def post(self, events: bytes | memoryview) -> Verdict:
        """Send one request; returns the verdict, or raises RetryableAmplitudeError on transport failure."""
        payload = self.body(events)
        headers = {}
        if self.gzip:
            payload = gzip.compress(payload, compresslevel=1)
            headers["Content-Encoding"] = "gzip"
        try:
            response = self.session.post(self.url, data=payload, headers=headers,
                                         timeout=self.config.request_timeout_seconds)
        except requests.Timeout as exc:
            raise RetryableAmplitudeError(f"timeout after {self.config.request_timeout_seconds}s posting to {self.url}") from None
        except requests.ConnectionError as exc:
            raise RetryableAmplitudeError(f"connection to {self.url} failed: {type(exc).__name__}") from None
        except requests.RequestException as exc:
            raise RetryableAmplitudeError(f"request to {self.url} failed: {type(exc).__name__}") from None
        verdict = classify(response.status_code, response.content, response.headers.get("Content-Type", ""))
        # Amplitude's error text (or a proxy's) may echo the request, key included; it reaches logs,
        # dead letters and errors, so it is redacted here, where it enters ampkit.
        return dataclasses.replace(verdict, message=self.config.redact(verdict.message)) if verdict.message else verdict

    def close(self) -> None:
        s = getattr(self._local, "session", None)
        if s is not None:
            s.close()
