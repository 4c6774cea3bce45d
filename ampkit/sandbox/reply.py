"""What the sandbox answers: a status, a body and a few headers, independent of the HTTP server."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson


@dataclass
class Reply:
    """One HTTP answer. `drop=True` closes the connection without answering (a fault)."""

    status: int
    body: bytes = b""
    content_type: str = "application/json"
    headers: tuple[tuple[str, str], ...] = ()
    drop: bool = False
    # Facts for the request log and stats (events seen, stored, dropped as duplicates).
    meta: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def json(cls, status: int, obj: Any, **kwargs: Any) -> Reply:
        return cls(status, orjson.dumps(obj), **kwargs)

    @classmethod
    def ingest_error(cls, status: int, error: str, **fields: Any) -> Reply:
        """Ingestion errors always carry `code` == status: the SDKs read the body's code."""
        return cls.json(status, {"code": status, "error": error, **fields})

    @classmethod
    def dashboard_error(cls, status: int, kind: str, message: str, details: str | None = None) -> Reply:
        """Dashboard REST and Export errors, in the shape Amplitude documents for a Dashboard 400."""
        error: dict[str, Any] = {"http_code": status, "type": kind, "message": message}
        if details is not None:
            error["metadata"] = {"details": details}
        headers: tuple[tuple[str, str], ...] = ()
        if status == 401:
            headers = (("WWW-Authenticate", 'Basic realm="Amplitude sandbox"'),)
        return cls.json(status, {"error": error}, headers=headers)
