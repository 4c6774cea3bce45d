"""Every error ampkit raises, in one tree.

```
AmpkitError                      base: every ampkit failure; the CLI prints it as one line
├── ConfigError                  a bad or missing setting (names the key and where it came from)
│   ├── DataMapError             an invalid data map (file, rule, reason)
│   └── SecretError              a secret passed where secrets are refused (parameters, files in the repo)
├── WarehouseError               the warehouse failed or is not what ampkit expects
│   ├── SchemaError              a table or column is missing or has the wrong type
│   ├── DamagedError             a DuckDB file fails its checksums (says how to put its last good copy back)
│   └── LockedError              another run holds the lease (the sync records `skipped_locked`)
├── AmplitudeError               anything from the Amplitude HTTP APIs (status_code, attempt)
│   ├── FatalAmplitudeError      stop the run: bad API key, a request ampkit built wrongly, 403
│   └── RetryableAmplitudeError  429, 5xx, timeouts, dropped connections, non-JSON bodies
├── SyncError                    a run could not deliver its window (the watermark did not move)
│   ├── AccountingError          extracted != accepted + filtered + rejected: a bug, never ignored
│   └── HeldError                the guardrail held the window (the sync records `held`, sends nothing)
├── ReconcileError               reconciliation could not be computed
└── RunnerError                  the scheduled notebook runner failed (papermill exit, timeout)
```

Third-party exceptions are translated where they enter (`warehouse.py`, `amplitude.py`), never
elsewhere, and keep them as their cause (`raise ... from exc`). A 413 or a 400 naming events is not
an error to raise: the sender bisects or dead-letters, and says so in its result. Messages say what happened and what to do next, and never carry a secret: `redact()`
in `config.py` runs over anything that could echo one.
"""
from __future__ import annotations


class AmpkitError(Exception):
    """Raised for every ampkit failure; `str(err)` is one line fit for a user."""


class ConfigError(AmpkitError):
    """Raised when a setting is missing, malformed, or of the wrong type."""


class DataMapError(ConfigError):
    """Raised when the data map file is invalid (unknown keys, bad patterns, overlaps)."""


class SecretError(ConfigError):
    """Raised when a secret is passed through a channel that persists it (parameters, files)."""


class WarehouseError(AmpkitError):
    """Raised when the warehouse query or connection fails."""


class SchemaError(WarehouseError):
    """Raised when a table is missing, or lacks a column, or a column has the wrong type."""


class DamagedError(WarehouseError):
    """Raised when a DuckDB warehouse file fails its own checksums; the message says how to restore it."""


class LockedError(WarehouseError):
    """Raised when another run holds the sync lease."""

    def __init__(self, message: str, holder: str = "", expires_at=None):
        super().__init__(message)
        self.holder = holder
        self.expires_at = expires_at


class AmplitudeError(AmpkitError):
    """Raised for failures talking to Amplitude's HTTP APIs."""

    def __init__(self, message: str, status_code: int | None = None, body: object = None):
        super().__init__(message)
        self.status_code = status_code
        self.body = body


class FatalAmplitudeError(AmplitudeError):
    """Raised when retrying cannot help: bad API key, 403, a malformed request."""


class RetryableAmplitudeError(AmplitudeError):
    """Raised for 429, 5xx, timeouts, dropped connections and non-JSON success bodies."""

    def __init__(self, message: str, status_code: int | None = None, body: object = None,
                 retry_after_seconds: float | None = None):
        super().__init__(message, status_code, body)
        self.retry_after_seconds = retry_after_seconds


class SyncError(AmpkitError):
    """Raised when a run ends with events undelivered; the watermark stays where it was."""


# The exit status of a command (`ampkit sync`, a scheduled `ampkit run-notebook`) whose window was
# held: not a failure, but a scheduler must see it, since the window waits for a person.
HELD_EXIT = 3


class HeldError(SyncError):
    """The volume guardrail held the window: a departure from the baseline, or an unapproved data map.

    Raised inside a run and turned into its `held` result, like LockedError into `skipped_locked`:
    holding is the guardrail working, not a failure.
    """

    def __init__(self, verdict):
        super().__init__(verdict.line())
        self.verdict = verdict


class AccountingError(SyncError):
    """Raised when extracted != accepted + filtered + rejected; always a bug."""


class ReconcileError(AmpkitError):
    """Raised when a reconciliation cannot be computed (no data source, bad range)."""


class RunnerError(AmpkitError):
    """Raised when a scheduled notebook run fails or times out."""
