"""The sandbox's notion of "now", which tests can freeze, set and advance."""
from __future__ import annotations

import threading
import time


class Clock:
    """Epoch milliseconds, UTC. Real time by default; `set` freezes it, `advance` moves it.

    Throttle windows, the dedup window, the export lag and the dashboard budgets all read
    this clock, so a test can cross a 7-day window without sleeping.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._frozen_ms: int | None = None
        self._offset_ms = 0

    def now_ms(self) -> int:
        frozen = self._frozen_ms
        if frozen is not None:
            return frozen
        return time.time_ns() // 1_000_000 + self._offset_ms

    def set(self, now_ms: int, frozen: bool = True) -> int:
        """Jump to `now_ms`; if not frozen, time keeps flowing from there."""
        with self._lock:
            if frozen:
                self._frozen_ms = int(now_ms)
                self._offset_ms = 0
            else:
                self._frozen_ms = None
                self._offset_ms = int(now_ms) - time.time_ns() // 1_000_000
        return self.now_ms()

    def advance(self, seconds: float) -> int:
        with self._lock:
            delta = int(round(seconds * 1000))
            if self._frozen_ms is not None:
                self._frozen_ms += delta
            else:
                self._offset_ms += delta
        return self.now_ms()

    def release(self) -> int:
        """Back to the real wall clock."""
        with self._lock:
            self._frozen_ms = None
            self._offset_ms = 0
        return self.now_ms()

    @property
    def is_frozen(self) -> bool:
        return self._frozen_ms is not None

    def describe(self) -> dict:
        return {"now_ms": self.now_ms(), "frozen": self.is_frozen, "offset_ms": self._offset_ms}
