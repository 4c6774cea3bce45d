#!/usr/bin/env bash
# One scheduled run of the hourly sync: papermill executes notebooks/hourly_sync.ipynb and the
# executed notebook is archived under $AMPKIT_RUNS_DIR/hourly_sync/YYYY/MM/DD/. Exits non-zero when
# the run failed, so the scheduler alerts. Secrets come from the environment (or *_FILE paths).
set -euo pipefail
cd "$(dirname "$0")/.."
exec .venv/bin/ampkit run-notebook hourly_sync --cell-timeout "${AMPKIT_CELL_TIMEOUT:-1800}" --timeout "${AMPKIT_RUN_TIMEOUT:-3300}" "$@"
