"""Amplitude's read APIs: the Export API (row-level truth) and Dashboard REST event segmentation.

Both use HTTP Basic auth with the project's API key and secret key. Segmentation is bound by
Amplitude's concurrency and cost limits: 429s are retried with backoff, and a small pool keeps
requests under the concurrency cap.
"""
from __future__ import annotations

import collections
import datetime as dt
import gzip
import io
import logging
import random
import time
import zipfile
from typing import Iterable, Iterator

import orjson
import requests

from ampkit.config import Config
from ampkit.errors import AmplitudeError, ConfigError, FatalAmplitudeError

logger = logging.getLogger(__name__)

# https://amplitude.com/docs/apis/analytics/dashboard-rest (5 concurrent requests per project)
MAX_CONCURRENT = 5
MAX_ATTEMPTS = 8


def export_time(value: str | None) -> dt.datetime | None:
    """A time of an exported row (`YYYY-MM-DD HH:MM:SS.ffffff`, UTC) as an aware datetime (pure)."""
    if not value:
        return None
    t = dt.datetime.fromisoformat(str(value).replace(" ", "T").replace("Z", "+00:00"))
    return t if t.tzinfo else t.replace(tzinfo=dt.timezone.utc)


class Dashboard:
    """A read client for one Amplitude project (I/O)."""

    def __init__(self, config: Config, session: requests.Session | None = None, sleep=time.sleep):
        if not config.api_key or not config.secret_key:
            raise ConfigError("reading from Amplitude needs AMPLITUDE_API_KEY and AMPLITUDE_SECRET_KEY in the environment")
        self.config = config
        self.base = config.dashboard_url
        self.session = session or requests.Session()
        self.session.auth = (config.api_key, config.secret_key)
        self.sleep = sleep

    def _get(self, path: str, params: dict, *, ok_missing: bool = False) -> requests.Response | None:
        url = self.base + path
        for attempt in range(MAX_ATTEMPTS):
            try:
                response = self.session.get(url, params=params, timeout=self.config.request_timeout_seconds * 4)
            except requests.ConnectionError as exc:
                if _on_this_machine(self.base):
                    # Nothing listens on this machine's port: no retry makes it answer.
                    raise AmplitudeError(f"nothing answers at {self.base} (reading {path}): is the sandbox running? "
                                         "`ampkit sandbox` serves it (in the demo's folder, on the demo's port)") from exc
                error = f"{type(exc).__name__} reading {path}"
            except requests.RequestException as exc:
                error = f"{type(exc).__name__} reading {path}"
            else:
                if response.status_code == 200:
                    return response
                if response.status_code == 404 and ok_missing:
                    return None
                if response.status_code in (401, 403):
                    raise FatalAmplitudeError(f"Amplitude refused the credentials for {path} (HTTP {response.status_code}); check the key pair and the region", response.status_code)
                if response.status_code == 400:
                    raise AmplitudeError(f"Amplitude rejected the query {path}: {self.config.redact(response.text[:300])}", 400)
                error = f"HTTP {response.status_code} from {path}"
            delay = min(30.0, 0.5 * 2 ** attempt) * (0.5 + random.random() / 2)
            logger.warning("dashboard retry attempt=%d delay=%.1fs reason=%s", attempt + 1, delay, error)
            self.sleep(delay)
        raise AmplitudeError(f"gave up reading {path} after {MAX_ATTEMPTS} attempts ({error})")

    def export(self, start_hour: dt.datetime, end_hour: dt.datetime) -> Iterator[dict]:
        """Every exported event uploaded in [start_hour, end_hour] (both UTC hours included), one dict per row.

        Long ranges are read in 30-day pieces (Amplitude caps one export at 365 days and 4 GB).
        """
        piece = dt.timedelta(days=30)
        while start_hour <= end_hour:
            last = min(end_hour, start_hour + piece - dt.timedelta(hours=1))
            yield from self._export(start_hour, last)
            start_hour = last + dt.timedelta(hours=1)

    def _export(self, start_hour: dt.datetime, end_hour: dt.datetime) -> Iterator[dict]:
        response = self._get("/api/2/export", {"start": start_hour.strftime("%Y%m%dT%H"), "end": end_hour.strftime("%Y%m%dT%H")},
                             ok_missing=True)
        if response is None:
            return
        with zipfile.ZipFile(io.BytesIO(response.content)) as archive:
            for name in archive.namelist():
                if not name.endswith(".json.gz"):
                    continue
                for line in gzip.decompress(archive.read(name)).splitlines():
                    if line.strip():
                        yield orjson.loads(line)

    def insert_ids(self, start_hour: dt.datetime, end_hour: dt.datetime) -> collections.Counter:
        """How many times each `$insert_id` appears in the export of those upload hours."""
        return collections.Counter(row.get("$insert_id") for row in self.export(start_hour, end_hour))

    def segmentation(self, event_type: str, start: dt.date, end: dt.date, interval: int = 1,
                     metric: str = "totals") -> dict[str, int]:
        """Event totals per bucket (`xValues` -> count) by event time in the project's time zone."""
        e = orjson.dumps({"event_type": event_type}).decode()
        response = self._get("/api/2/events/segmentation", {"e": e, "start": start.strftime("%Y%m%d"),
                                                             "end": end.strftime("%Y%m%d"), "m": metric, "i": interval})
        data = response.json()["data"]
        series = data["series"][0] if data["series"] else [0] * len(data["xValues"])
        out: dict[str, int] = collections.defaultdict(int)
        for label, n in zip(data["xValues"], series):
            out[label] += n  # an hour a clock falls back is labelled twice: both count
        return dict(out)

    def events(self) -> list[dict]:
        """The project's event types (`/api/2/events/list`)."""
        return self._get("/api/2/events/list", {}).json()["data"]

    def close(self) -> None:
        self.session.close()


def _on_this_machine(url: str) -> bool:
    from urllib.parse import urlsplit

    from ampkit.sandbox.config import is_loopback
    host = urlsplit(url).hostname
    return bool(host) and is_loopback(host)
