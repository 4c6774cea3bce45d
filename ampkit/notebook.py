"""What every notebook's setup cell calls: logging, offline-safe plotly, and the config."""
from __future__ import annotations

import logging

from ampkit import config as configuration
from ampkit.log import configure_logging


def setup(**parameters) -> configuration.Config:
    """Configure logging and plotly for a notebook and return the config (parameters override; secrets refused).

    Empty-string parameters mean "not set", so a papermill default of "" falls through to the
    environment and ampkit.toml.
    """
    import plotly.io as pio
    configure_logging(logging.INFO)
    # Embeds plotly.js once per notebook, so exported HTML reports render offline; the
    # `notebook_connected` renderer would load it from a CDN and show blank charts offline.
    pio.renderers.default = "plotly_mimetype+notebook"
    return configuration.load({k: v for k, v in parameters.items() if v not in ("", None)})
