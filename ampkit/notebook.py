"""What every notebook's setup cell calls: logging, offline-safe plotly, and the config."""
from __future__ import annotations

import datetime as dt
import html
import json
import logging
from typing import Any

from ampkit import config as configuration
from ampkit.log import configure_logging

# The mime types of what a notebook tells its runner: the settings it ran with, and how it ended.
SETTINGS_MIME = "application/vnd.ampkit.settings+json"
OUTCOME_MIME = "application/vnd.ampkit.outcome+json"


def setup(settings: dict[str, Any] | None = None, **parameters) -> configuration.Config:
    """Configure logging and plotly for a notebook and return its config (I/O: shows the settings).

    `settings` is the runner's whole configuration (`Config.settings()`, no secrets); without it
    (a notebook opened by hand) the environment and ampkit.toml decide. Parameters given to the
    notebook override either; None and "" mean "not given".
    """
    import plotly.io as pio
    configure_logging(logging.INFO)
    # The record keeps each figure as plotly JSON (JupyterLab draws it); its HTML page draws it with
    # the reports folder's one copy of plotly.js (report.py), so no record carries 5 MB of it.
    pio.renderers.default = "plotly_mimetype"
    given = {k: v for k, v in parameters.items() if v not in ("", None)}
    config = configuration.load({**(settings or {}), **given})
    _show_settings(config.settings())
    return config


def _show_settings(values: dict[str, Any]) -> None:
    from IPython.display import display
    rows = "".join(f"<tr><td>{html.escape(k)}</td><td>{html.escape(json.dumps(v))}</td></tr>" for k, v in values.items())
    display({"text/html": f"<details><summary>Settings of this run</summary><table>{rows}</table></details>",
             "text/plain": "settings: " + ", ".join(f"{k}={v}" for k, v in values.items()),
             SETTINGS_MIME: values}, raw=True)


def outcome(status: str, **details: Any) -> None:
    """Tell the runner how the run ended (`ok`, `skipped_locked`, `dry_run`, `failed`...) (I/O)."""
    from IPython.display import display
    plain = {k: v.isoformat() if isinstance(v, (dt.date, dt.datetime)) else v for k, v in details.items()}
    display({"text/plain": f"outcome: {status}", OUTCOME_MIME: {"status": status, **plain}}, raw=True)
