"""Run the sandbox as a child process (`python -m ampkit.sandbox`) and wait until it is ready.

Secrets travel to the child through its environment only; its argv carries no key.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, Any

import requests

import ampkit
from ampkit.errors import AmpkitError
from ampkit.sandbox.config import API_KEY_ENV, ENV_PREFIX, SECRET_KEY_ENV, SandboxConfig
from ampkit.sandbox.control import Control


class SandboxProcess:
    """A sandbox child process. `stop()` sends SIGTERM (clean shutdown), `kill()` SIGKILL."""

    def __init__(self, process: subprocess.Popen, url: str, log_path: str) -> None:
        self._process = process
        self.url = url
        self.log_path = log_path
        self.control = Control(url)

    @property
    def pid(self) -> int:
        return self._process.pid

    @property
    def returncode(self) -> int | None:
        return self._process.poll()

    def stop(self, timeout_seconds: float = 15.0) -> int:
        """SIGTERM, then wait; SIGKILL if it does not exit in time. Returns the exit code."""
        if self._process.poll() is None:
            self._process.send_signal(signal.SIGTERM)
            try:
                self._process.wait(timeout_seconds)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        self.control.close()
        return self._process.returncode

    def kill(self) -> int:
        """SIGKILL: no shutdown at all, as in a crash."""
        if self._process.poll() is None:
            self._process.kill()
        self._process.wait()
        self.control.close()
        return self._process.returncode

    def log(self) -> str:
        return Path(self.log_path).read_text(errors="replace")

    def __enter__(self) -> SandboxProcess:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"SandboxProcess(url={self.url!r}, pid={self.pid})"


def spawn(
    config: SandboxConfig | Sequence[str] | None = None,
    *,
    env: Mapping[str, str] | None = None,
    log_path: str | os.PathLike | None = None,
    ready_timeout_seconds: float = 30.0,
) -> SandboxProcess:
    """Start `python -m ampkit.sandbox` and return once `/_sandbox/health` answers.

    `config` is a SandboxConfig (passed to the child as environment variables, secrets
    included, never as arguments) or a list of CLI arguments (then the child reads keys from
    `env`, default this process's environment). The child's stderr goes to `log_path`
    (default: a temporary file, see `.log_path`).
    """
    child_env = dict(os.environ if env is None else env)
    if isinstance(config, SandboxConfig):
        # The config is complete: stale AMPKIT_SANDBOX_* or key variables must not add to it.
        for name in list(child_env):
            if name.startswith(ENV_PREFIX) or name in (API_KEY_ENV, SECRET_KEY_ENV):
                del child_env[name]
        child_env.update(config.to_env())
        args: list[str] = ["--memory"] if config.db_path is None else []
    else:
        args = list(config or [])
    root = str(Path(next(iter(ampkit.__path__))).resolve().parent)
    child_env["PYTHONPATH"] = os.pathsep.join(p for p in (root, child_env.get("PYTHONPATH")) if p)
    child_env["PYTHONUNBUFFERED"] = "1"
    if log_path is None:
        handle, log_path = tempfile.mkstemp(prefix="ampkit-sandbox-", suffix=".log")
        os.close(handle)
    log = open(log_path, "ab")
    try:
        process = subprocess.Popen([sys.executable, "-m", "ampkit.sandbox", *args], env=child_env,
                                   stdout=subprocess.PIPE, stderr=log, stdin=subprocess.DEVNULL)
    finally:
        log.close()
    try:
        url = _read_url(process, ready_timeout_seconds, str(log_path))
        _wait_healthy(process, url, ready_timeout_seconds, str(log_path))
    except BaseException:
        if process.poll() is None:
            process.kill()
            process.wait()
        raise
    return SandboxProcess(process, url, str(log_path))


def _read_url(process: subprocess.Popen, timeout_seconds: float, log_path: str) -> str:
    """The child prints its base URL as the first line of stdout; later output is drained."""
    assert process.stdout is not None
    found: list[str] = []
    ready = threading.Event()

    def pump(stream: IO[bytes]) -> None:
        for raw in stream:
            if not found:
                found.append(raw.decode(errors="replace").strip())
                ready.set()
        ready.set()

    threading.Thread(target=pump, args=(process.stdout,), daemon=True).start()
    if not ready.wait(timeout_seconds) or not found or not found[0].startswith("http"):
        raise AmpkitError(f"the sandbox did not start (exit code {process.poll()}); see {log_path}: "
                          f"{_tail(log_path)}")
    return found[0]


def _wait_healthy(process: subprocess.Popen, url: str, timeout_seconds: float, log_path: str) -> None:
    deadline = time.monotonic() + timeout_seconds
    with requests.Session() as session:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                break
            try:
                if session.get(f"{url}/_sandbox/health", timeout=2).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.05)
    raise AmpkitError(f"the sandbox at {url} never became healthy; see {log_path}: {_tail(log_path)}")


def _tail(log_path: str, lines: int = 5) -> Any:
    try:
        return " | ".join(Path(log_path).read_text(errors="replace").strip().splitlines()[-lines:])
    except OSError:
        return ""
