"""insert_id deduplication: one key per (effective device_id, insert_id), kept for a window."""
from __future__ import annotations

from collections.abc import Iterable

# Never seen in ids we accept (control characters are not used in device ids or insert ids
# in practice), so the joined key cannot collide across different pairs.
_SEPARATOR = "\x1f"


def key_of(device_id: str, insert_id: str) -> str:
    return device_id + _SEPARATOR + insert_id


class DedupIndex:
    """When each key was first stored; a key repeats only within `window_ms` of that (receive time).

    Pure state: callers pass `now_ms` and hold a lock around `admit`/`forget`.
    """

    def __init__(self, window_ms: int) -> None:
        self._window_ms = window_ms
        self._seen: dict[str, int] = {}
        self._last_prune_ms = 0

    def __len__(self) -> int:
        return len(self._seen)

    def admit(self, keys: list[str | None], now_ms: int) -> tuple[list[int], list[str]]:
        """Mark new keys as seen. Returns (indexes of duplicates, the keys newly added).

        A key repeated inside one request is a duplicate from its second occurrence on.
        `None` keys (no insert_id) are never duplicates.
        """
        self._maybe_prune(now_ms)
        seen = self._seen
        present = keys if None not in keys else [k for k in keys if k is not None]
        if seen.keys().isdisjoint(present) and len(set(present)) == len(present):
            # The common case, done in C: nothing in this request was seen before.
            seen.update(dict.fromkeys(present, now_ms))
            return [], present
        window = self._window_ms
        duplicates: list[int] = []
        added: list[str] = []
        for index, key in enumerate(keys):
            if key is None:
                continue
            first = seen.get(key)
            # A key first seen "after" now is a duplicate too: concurrent requests read the clock
            # before taking the ingest lock, so the later reading may be admitted first.
            if first is not None and now_ms - first < window:
                duplicates.append(index)
                continue
            seen[key] = now_ms
            added.append(key)
        return duplicates, added

    def forget(self, keys: Iterable[str]) -> None:
        """Drop keys (their events were never stored, or were deleted on purpose)."""
        seen = self._seen
        for key in keys:
            seen.pop(key, None)

    def load(self, pairs: Iterable[tuple[str, int]]) -> None:
        """Restore keys from the store after a restart (`(key, first_seen_ms)`)."""
        seen = self._seen
        for key, first in pairs:
            current = seen.get(key)
            if current is None or first < current:
                seen[key] = first

    def clear(self) -> None:
        self._seen.clear()

    def _maybe_prune(self, now_ms: int) -> None:
        # Pruning is O(n); doing it about once per day of sandbox time keeps it off the hot path.
        if abs(now_ms - self._last_prune_ms) < self._window_ms // 7:
            return
        self._last_prune_ms = now_ms
        cutoff = now_ms - self._window_ms
        self._seen = {k: t for k, t in self._seen.items() if cutoff < t}
