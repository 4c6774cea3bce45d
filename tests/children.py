"""Child processes of the tests: each in a session of its own, ended with everything it started
(papermill's kernel, a sandbox) when the test that started it ends, pass or fail."""
from __future__ import annotations

import contextlib
import os
import signal
import subprocess

_started: list[subprocess.Popen] = []


def start(command, **popen) -> subprocess.Popen:
    """`subprocess.Popen(command, **popen)`, ended by `end_all` at the end of the test (conftest)."""
    process = subprocess.Popen(command, start_new_session=True, **popen)
    _started.append(process)
    return process


def end_all() -> None:
    """Kill what is still running of every child started since the last call, with its session
    (a stopped one is continued first, so it can die), and reap it."""
    while _started:
        process = _started.pop()
        if process.poll() is None:
            for sig in (signal.SIGCONT, signal.SIGKILL):
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(process.pid, sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=30)
        for stream in (process.stdin, process.stdout, process.stderr):
            if stream:
                with contextlib.suppress(OSError):
                    stream.close()
