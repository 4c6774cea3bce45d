"""The HTTP edge: a threaded HTTP/1.1 keep-alive server that turns bytes into `Request`s.

Everything the sandbox decides lives in `service.py`; this module only reads requests,
writes replies, and starts/stops the server in a background thread (`start`).
"""
from __future__ import annotations

import logging
import socket
import sys
import threading
from email.utils import formatdate
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import parse_qsl

from ampkit.errors import ConfigError
from ampkit.sandbox.config import SandboxConfig
from ampkit.sandbox.control import Control
from ampkit.sandbox.reply import Reply
from ampkit.sandbox.service import Request, Service

logger = logging.getLogger(__name__)

# Large enough for a 20 MB batch body sent with chunked transfer encoding, small enough that a
# broken client cannot exhaust memory; ingestion applies the real (smaller) caps itself.
_MAX_CHUNKED_BYTES = 64 * 1024 * 1024
_REASONS = {status.value: status.phrase for status in HTTPStatus}


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: the benchmark and SDKs reuse connections
    disable_nagle_algorithm = True  # replies are small; Nagle would add ~40 ms per request
    server_version = "ampkit-sandbox"
    sys_version = ""
    server: _Server

    def do_POST(self) -> None:
        self._serve()

    def do_GET(self) -> None:
        self._serve()

    def do_DELETE(self) -> None:
        self._serve()

    def do_PUT(self) -> None:
        self._serve()

    def _serve(self) -> None:
        with self.server.tracker:
            body = self._read_body()
            if body is None:
                self._write(Reply.ingest_error(400, "Missing request body"))
                self.close_connection = True
                return
            path, _, query = self.path.partition("?")
            request = Request(
                method=self.command, path=path, params=dict(parse_qsl(query, keep_blank_values=True)),
                headers={k.lower(): v for k, v in self.headers.items()}, body=body,
                client_ip=self.client_address[0] if self.client_address else None,
            )
            try:
                reply = self.server.service.handle(request)
            except Exception:  # a bug must not kill the connection thread silently
                logger.exception("sandbox request failed method=%s path=%s", self.command, path)
                reply = Reply.ingest_error(500, "Internal server error (sandbox bug; see its log)")
            if reply.drop:
                self.close_connection = True
                try:
                    self.connection.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                return
            self._write(reply)

    def _read_body(self) -> bytes | None:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            return self._read_chunked()
        length = self.headers.get("Content-Length")
        if not length:
            return b""
        try:
            n = int(length)
        except ValueError:
            return None
        if n <= 0:
            return b""
        # What the header read buffered first, then the rest in one blocking recv: reading a
        # large body through the buffered file costs one GIL round-trip per 64 KB chunk.
        first = self.rfile.read1(n)
        if len(first) == n:
            return first
        body = bytearray(n)
        body[:len(first)] = first
        view = memoryview(body)
        got = len(first)
        while got < n:
            received = self.connection.recv_into(view[got:], n - got, socket.MSG_WAITALL)
            if received == 0:
                return None  # the client went away mid-body
            got += received
        return bytes(body)

    def _read_chunked(self) -> bytes | None:
        parts: list[bytes] = []
        total = 0
        while True:
            line = self.rfile.readline(1024)
            try:
                size = int(line.split(b";", 1)[0].strip(), 16)
            except ValueError:
                return None
            if size == 0:
                while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                return b"".join(parts)
            total += size
            if total > _MAX_CHUNKED_BYTES:
                return None
            parts.append(self.rfile.read(size))
            self.rfile.readline(8)

    def _write(self, reply: Reply) -> None:
        # One write per reply (status line, headers and body together): fewer syscalls and
        # no small packets for the peer to wait on.
        lines = [f"HTTP/1.1 {reply.status} {_REASONS.get(reply.status, '')}",
                 f"Server: {self.server_version}", f"Date: {formatdate(usegmt=True)}",
                 f"Content-Type: {reply.content_type}", f"Content-Length: {len(reply.body)}"]
        lines += [f"{name}: {value}" for name, value in reply.headers]
        if self.close_connection:
            lines.append("Connection: close")
        self.wfile.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + reply.body)

    def log_message(self, format: str, *args: Any) -> None:
        # The service logs one line per request (without secrets); http.server's own line goes
        # to stderr unconditionally, so it is silenced here.
        pass


class _InFlight:
    """Counts requests being processed, so `stop()` can let them finish before closing the store."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._active = 0

    def __enter__(self) -> None:
        with self._cond:
            self._active += 1

    def __exit__(self, *exc: object) -> None:
        with self._cond:
            self._active -= 1
            self._cond.notify_all()

    def wait_idle(self, timeout_seconds: float) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: self._active == 0, timeout_seconds)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], service: Service) -> None:
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        self.service = service
        self.tracker = _InFlight()
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(address, _Handler)

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        with self._connections_lock:
            self._connections.add(request)
        try:
            super().process_request_thread(request, client_address)
        finally:
            with self._connections_lock:
                self._connections.discard(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that goes away mid-request (killed, timed out) is routine for a test server;
        # socketserver would print a traceback to stderr for each one.
        error = sys.exc_info()[1]
        if isinstance(error, (ConnectionError, TimeoutError)):
            logger.debug("sandbox client went away address=%s error=%s", client_address[0], error)
        else:
            logger.exception("sandbox connection failed address=%s", client_address[0])

    def close_idle_connections(self) -> None:
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class Sandbox:
    """A sandbox running in a background thread of this process. Use as a context manager."""

    def __init__(self, server: _Server, service: Service, thread: threading.Thread) -> None:
        self._server = server
        self._thread = thread
        self.service = service
        self.config = service.config
        host, port = server.server_address[:2]
        self.host, self.port = host, port
        # A wildcard bind is reached through loopback by local clients.
        shown = {"0.0.0.0": "127.0.0.1", "::": "[::1]"}.get(host) or (f"[{host}]" if ":" in host else host)
        self.url = f"http://{shown}:{port}"
        self.control = Control(self.url)
        self._stopped = False

    def stop(self, timeout_seconds: float = 10.0) -> None:
        """Stop accepting, let in-flight requests finish, then commit and close the store."""
        if self._stopped:
            return
        self._stopped = True
        self._server.shutdown()
        self._server.server_close()
        self._server.tracker.wait_idle(timeout_seconds)
        self._server.close_idle_connections()
        self._thread.join(timeout_seconds)
        self.service.close()
        self.control.close()

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"Sandbox(url={self.url!r})"


def start(config: SandboxConfig | None = None, **overrides: Any) -> Sandbox:
    """Start a sandbox in a background thread and return once it accepts connections.

    Without `config`, settings come from the environment (`SandboxConfig.from_env`); keyword
    overrides are applied on top either way.
    """
    if config is None:
        config = SandboxConfig.from_env(**overrides)
    elif overrides:
        config = config.replace(**overrides)
    service = Service(config)
    try:
        server = _Server((config.host, config.port), service)
    except OSError as exc:
        service.close()
        raise ConfigError(f"cannot listen on {config.host}:{config.port}: {exc.strerror or exc}") from exc
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2},
                              name="ampkit-sandbox", daemon=True)
    thread.start()
    sandbox = Sandbox(server, service, thread)
    logger.info("sandbox started url=%s apps=%s durable=%s", sandbox.url,
                ",".join(str(p.app_id) for p in config.projects), config.db_path is not None)
    return sandbox
