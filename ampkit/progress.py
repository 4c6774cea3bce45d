"""Progress of a run: a tqdm bar when interactive, periodic log lines under cron or papermill."""
from __future__ import annotations

import logging
import sys
import time

logger = logging.getLogger(__name__)


class Progress:
    """Counts rows done; `make()` picks the right kind for where the run is."""

    def total(self, n: int) -> None:
        pass

    def update(self, n: int) -> None:
        pass

    def close(self) -> None:
        pass

    @staticmethod
    def make(kind: str, name: str) -> "Progress":
        """`bar`, `log`, `none`, or `auto` (a bar on a terminal, log lines otherwise)."""
        if kind == "auto":
            kind = "bar" if sys.stderr.isatty() else "log"
        if kind == "bar":
            return BarProgress(name)
        if kind == "log":
            return LogProgress(name)
        return Progress()


class LogProgress(Progress):
    """One INFO line every `interval_seconds`, greppable under cron and papermill --log-output."""

    def __init__(self, name: str, interval_seconds: float = 10.0):
        self.name, self.interval = name, interval_seconds
        self.done, self.expected, self.last = 0, 0, time.monotonic()

    def total(self, n: int) -> None:
        self.expected += n

    def update(self, n: int) -> None:
        self.done += n
        if time.monotonic() - self.last >= self.interval:
            self.last = time.monotonic()
            logger.info("progress task=%s done=%d of=%d", self.name, self.done, self.expected)


class BarProgress(Progress):
    """A tqdm bar on stderr."""

    def __init__(self, name: str):
        from tqdm.auto import tqdm
        self.bar = tqdm(desc=name, unit="ev", total=0, file=sys.stderr)

    def total(self, n: int) -> None:
        self.bar.total = (self.bar.total or 0) + n
        self.bar.refresh()

    def update(self, n: int) -> None:
        self.bar.update(n)

    def close(self) -> None:
        self.bar.close()
