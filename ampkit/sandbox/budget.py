"""Dashboard REST limits: at most N concurrent requests and a query-cost budget per project."""
from __future__ import annotations

import threading
from collections import deque

from ampkit.sandbox.reply import Reply

_FIVE_MINUTES_MS = 5 * 60 * 1000
_HOUR_MS = 60 * 60 * 1000


class DashboardBudget:
    """Concurrency slots and cost windows. Times come from the caller's clock (epoch ms).

    Amplitude does not document the 429 body of these limits; ours is the Dashboard error
    shape with `type: "rate_limit"` and a message naming the limit that was hit.
    """

    def __init__(self, max_concurrency: int, cost_per_5_minutes: int, cost_per_hour: int) -> None:
        self._max_concurrency = max_concurrency
        self._cost_per_5_minutes = cost_per_5_minutes
        self._cost_per_hour = cost_per_hour
        self._lock = threading.Lock()
        self._active = 0
        self._spent: deque[tuple[int, int]] = deque()

    def enter(self) -> Reply | None:
        """Take a concurrency slot, or the 429 to answer. Pair with `leave()`."""
        with self._lock:
            if self._active >= self._max_concurrency:
                return Reply.dashboard_error(
                    429, "rate_limit", "Too many concurrent requests",
                    f"at most {self._max_concurrency} concurrent Dashboard REST requests per project",
                )
            self._active += 1
        return None

    def leave(self) -> None:
        with self._lock:
            self._active -= 1

    def charge(self, cost: int, now_ms: int) -> Reply | None:
        """Spend `cost` now, or return the 429 when a budget would be exceeded (nothing spent)."""
        with self._lock:
            spent = self._spent
            while spent and spent[0][0] <= now_ms - _HOUR_MS:
                spent.popleft()
            last_hour = sum(c for t, c in spent if t <= now_ms)
            last_5_minutes = sum(c for t, c in spent if now_ms - _FIVE_MINUTES_MS < t <= now_ms)
            if last_5_minutes + cost > self._cost_per_5_minutes:
                return Reply.dashboard_error(
                    429, "rate_limit", "Exceeded rate limit with query cost",
                    f"cost {cost} would exceed {self._cost_per_5_minutes} per 5 minutes (spent {last_5_minutes})",
                )
            if last_hour + cost > self._cost_per_hour:
                return Reply.dashboard_error(
                    429, "rate_limit", "Exceeded rate limit with query cost",
                    f"cost {cost} would exceed {self._cost_per_hour} per hour (spent {last_hour})",
                )
            spent.append((now_ms, cost))
        return None

    def clear(self) -> None:
        with self._lock:
            self._spent.clear()
