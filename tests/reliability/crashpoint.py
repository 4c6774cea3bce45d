"""Run `python -m ampkit ...` and SIGKILL (or stop, or stall) it when execution reaches a named point.

    python crashpoint.py --at return:state.begin:1 --action kill --trace FILE -- sync --progress none

Nothing in ampkit is replaced or patched: a profile hook (sys.setprofile / threading.setprofile)
only watches function entries and exits and, at the chosen point, the process sends itself a
real SIGKILL (or SIGSTOP, or sleeps). The run is otherwise exactly `python -m ampkit`.

A point is `EVENT:TARGET:N`, the N-th time (1-based, counted across threads):

- `call:state.begin:1`, `return:amplitude.Client.post:3`: entering / leaving a function,
  named by its path under the `ampkit` package;
- `qcall:sync_snapshot:1`, `qreturn:sync_finalize:2`: entering / leaving the warehouse's
  `run` (or `stream`) of a named SQL file, on DuckDB or BigQuery;
- `stmt:sync_finalize#3:1`: just before the 3rd statement (`#-1`: the last; `#INSERT`: the first
  one starting with that keyword) of the 1st `run` of that file is handed to DuckDB (the
  statements before it ran; a transaction may be open).

The action is `kill` (SIGKILL), `stop` (SIGSTOP: alive but frozen), `pause:SECONDS` (a stall), or
`wait:FILE:SECONDS` (stall until the test creates FILE: a barrier between processes).

`--trace FILE` appends the phases the run went through (lease, ledger, extract, transform,
send, checkpoint, release) and a final `KILL|STOP|PAUSE <point>` line, unbuffered, so a test
knows where a process died even when it was killed from outside.
"""
from __future__ import annotations

import argparse
import importlib
import os
import re
import runpy
import signal
import sys
import threading
import time

PHASES = {  # function -> phase entered when it is called
    "state.begin": "lease",
    "state.Lease.__init__": "ledger",
    "sync.Run._decide": "transform",
    "sender.Chunk.from_batch": "transform",
    "amplitude.Client.post": "send",
    "state.reject_params": "checkpoint",
    "state.finish": "ledger",
    "state.release": "release",
}
QUERY_PHASES = {"run_begin": "lease", "sync_snapshot": "extract", "sync_extract": "transform",
                "sync_finalize": "checkpoint", "lease_renew": "checkpoint", "run_finish": "ledger"}


def _code(path: str):
    module, _, rest = path.partition(".")
    obj = importlib.import_module(f"ampkit.{module}")
    for part in rest.split("."):
        obj = getattr(obj, part)
    obj = getattr(obj, "__func__", obj)
    return obj.__code__


class Hook:
    def __init__(self, at: str | None, action: str, trace: str | None):
        from ampkit import warehouse
        self.lock = threading.Lock()
        self.counts: dict[str, int] = {}
        self.trace_fd = os.open(trace, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644) if trace else None
        self.phase = ""
        self.action = action
        self.query_codes = {cls.__dict__[name].__code__ for cls in (warehouse.DuckDBWarehouse, warehouse.BigQueryWarehouse)
                            for name in ("run", "stream")}
        self.params_code = warehouse._used_params.__code__
        self.phase_codes = {_code(name): phase for name, phase in PHASES.items()}
        self.event = self.target = None
        self.n = 0
        self.stmt = 0
        self.code = None
        if at:
            self.event, target, n = at.split(":")
            self.n = int(n)
            if self.event == "stmt":
                target, stmt = target.split("#")
                from ampkit import sql
                statements = sql.duckdb_statements(target)
                if stmt.lstrip("-").isdigit():
                    self.stmt = int(stmt)
                    if self.stmt < 0:  # counted from the end: -1 is the last statement (a COMMIT)
                        self.stmt += len(statements) + 1
                else:  # the first statement that starts with this keyword (comments skipped)
                    bare = [re.sub(r"^\s*(/\*.*?\*/\s*)*", "", s, flags=re.S).upper() for s in statements]
                    self.stmt = next(i for i, s in enumerate(bare, 1) if s.startswith(stmt.upper()))
            if self.event in ("call", "return"):
                self.code = _code(target)
            self.target = target
        self.point = at or ""
        self.armed = None   # the warehouse call whose statements are being counted (stmt points)
        self.stmt_done = 0

    def write(self, line: str) -> None:
        if self.trace_fd is not None:
            os.write(self.trace_fd, (line + "\n").encode())

    def enter_phase(self, phase: str) -> None:
        if phase != self.phase:
            self.phase = phase
            self.write(f"phase {phase}")

    def fire(self) -> None:
        self.write(f"{self.action.split(':')[0].upper()} {self.point} (phase {self.phase or 'startup'})")
        if self.action == "kill":
            os.kill(os.getpid(), signal.SIGKILL)
        elif self.action == "stop":
            os.kill(os.getpid(), signal.SIGSTOP)
        elif self.action.startswith("pause:"):
            time.sleep(float(self.action.split(":", 1)[1]))
        elif self.action.startswith("wait:"):
            # wait:FILE:SECONDS — stall until the test creates FILE (a barrier), at most SECONDS.
            path, seconds = self.action[len("wait:"):].rsplit(":", 1)
            deadline = time.monotonic() + float(seconds)
            while not os.path.exists(path) and time.monotonic() < deadline:
                time.sleep(0.02)

    def count(self, key: str) -> int:
        with self.lock:
            self.counts[key] = self.counts.get(key, 0) + 1
            return self.counts[key]

    def __call__(self, frame, event, arg):
        code = frame.f_code
        if event == "call":
            phase = self.phase_codes.get(code)
            if phase:
                self.enter_phase(phase)
            elif code in self.query_codes:
                query = frame.f_locals.get("query")
                if query in QUERY_PHASES:
                    self.enter_phase(QUERY_PHASES[query])
                if query == self.target and self.event in ("qcall", "stmt") and self.count("q") == self.n:
                    if self.event == "stmt":
                        self.armed = frame  # fire before its self.stmt-th statement
                    else:
                        self.fire()
            if self.code is code and self.event == "call" and self.count("c") == self.n:
                self.fire()
        elif event == "return":
            if self.code is code and self.event == "return" and self.count("c") == self.n:
                self.fire()
            elif code in self.query_codes and self.event == "qreturn" and frame.f_locals.get("query") == self.target:
                # A generator (stream) returns at every yield; only the end of the run counts here.
                if code.co_name == "run" and self.count("q") == self.n:
                    self.fire()
            if code is self.params_code and self.armed is not None and frame.f_back is self.armed:
                # The warehouse binds each statement's parameters just before handing it to DuckDB.
                self.stmt_done += 1
                if self.stmt_done == self.stmt:
                    self.fire()


def _warm() -> None:
    """Import what a sync imports and translate its SQL once (a pure, cached step), before the hook.

    Under a profile hook every Python call costs more; sqlglot's parser makes many. Doing this
    first keeps the hooked run close to a normal run's timing without changing what it does.
    """
    import ampkit.cli, ampkit.sync  # noqa: E401,F401
    from ampkit import sql
    for path in sorted(sql.HERE.glob("*.sql")):
        try:
            sql.duckdb_statements(path.stem)
        except Exception:  # an invalid file fails later, in the run, as it would without the harness
            pass


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--at", help="the point, EVENT:TARGET:N (none: only trace)")
    parser.add_argument("--action", default="kill", help="kill | stop | pause:SECONDS | wait:FILE:SECONDS")
    parser.add_argument("--trace", help="append phases and the fired point to this file")
    parser.add_argument("ampkit_args", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    rest = args.ampkit_args[1:] if args.ampkit_args[:1] == ["--"] else args.ampkit_args
    hook = Hook(args.at, args.action, args.trace)
    _warm()
    sys.argv = ["ampkit", *rest]
    threading.setprofile(hook)
    sys.setprofile(hook)
    try:
        runpy.run_module("ampkit", run_name="__main__", alter_sys=True)
    finally:
        sys.setprofile(None)
        hook.write(f"exit (phase {hook.phase})")


if __name__ == "__main__":
    main(sys.argv[1:])
