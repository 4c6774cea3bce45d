"""Logging setup for the CLI and notebooks; library code only ever logs, never configures."""
from __future__ import annotations

import logging
import sys


def configure_logging(level: int = logging.INFO) -> None:
    """Send ampkit's log lines (`message key=value ...`) to stderr at `level`."""
    logger = logging.getLogger("ampkit")
    logger.setLevel(level)
    if not any(getattr(h, "_ampkit", False) for h in logger.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S"))
        handler._ampkit = True
        logger.addHandler(handler)
    logger.propagate = False
