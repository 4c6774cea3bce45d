"""A local, faithful Amplitude-compatible server for the demo, the notebooks, tests and benchmarks.

It serves ingestion (`/2/httpapi`, `/batch`), the Export API (`/api/2/export`), the Dashboard
REST API (`/api/2/events/segmentation`, `/api/2/events/list`) and a control API under
`/_sandbox/` on one port. See docs/SANDBOX.md for behaviour and the choices made where
Amplitude's own behaviour is undocumented.

    with start(SandboxConfig(api_keys=[("key", "secret")], export_lag_seconds=0)) as sandbox:
        sandbox.url                       # http://127.0.0.1:PORT
        sandbox.control.inject("/batch", status=503)
"""
from ampkit.sandbox.cli import command
from ampkit.sandbox.config import Project, SandboxConfig
from ampkit.sandbox.control import Control
from ampkit.sandbox.process import SandboxProcess, spawn
from ampkit.sandbox.server import Sandbox, start

__all__ = ["Control", "Project", "Sandbox", "SandboxConfig", "SandboxProcess", "command", "spawn", "start"]
