#!/usr/bin/env bash
# One scheduled run of the hourly sync: papermill executes ampkit's hourly_sync notebook and the
# executed notebook is archived under $AMPKIT_RUNS_DIR/hourly_sync/YYYY/MM/DD/. Exits non-zero when
# the run failed, so the scheduler alerts. Secrets come from the environment (or *_FILE paths).
#
# ampkit is the one on PATH (a pip install, a container image), else $AMPKIT_BIN, else the
# checkout's .venv beside this script. Relative run and report folders are taken from the working
# directory: set it in the scheduler (systemd's WorkingDirectory, cron's `cd`), or use absolute
# paths or gs:// in AMPKIT_RUNS_DIR / AMPKIT_REPORTS_DIR.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
ampkit="${AMPKIT_BIN:-$(command -v ampkit || true)}"
if [[ -z "$ampkit" && -x "$here/../.venv/bin/ampkit" ]]; then
  ampkit="$here/../.venv/bin/ampkit"
fi
if [[ -z "$ampkit" ]]; then
  echo "hourly_sync.sh: ampkit is not installed: pip install ampkit, put it on PATH or set AMPKIT_BIN" >&2
  exit 127
fi
exec "$ampkit" run-notebook hourly_sync --cell-timeout "${AMPKIT_CELL_TIMEOUT:-1800}" --timeout "${AMPKIT_RUN_TIMEOUT:-3300}" "$@"
