"""The scheduled notebook runner: papermill executes a notebook, the executed copy is the run record.

Each run writes `runs/<name>/YYYY/MM/DD/<window-start>.ipynb` (a local or `gs://` prefix) and its
page in the reports folder (`report.write`: offline, code hidden, listed in the folder's index).
Cell output streams to the log (`--log-output`). A
per-cell timeout and an outer wall-clock timeout bound the run: papermill can hang on a dead
kernel, and on a cell timeout it exits 1 while the notebook metadata may still read
"completed", so the exit code is what counts. Parameters that look like secrets are refused:
papermill writes every parameter into the run record.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from html import escape
from pathlib import Path

import nbformat

from ampkit import config as configuration
from ampkit import report
from ampkit.errors import HELD_EXIT, RunnerError, SecretError

logger = logging.getLogger(__name__)

# Inside the package (package data), so a pip-installed ampkit runs them; `notebooks/` in a
# checkout is a link to the same folder.
NOTEBOOKS = Path(__file__).resolve().parent / "notebooks"


@dataclasses.dataclass(frozen=True)
class RunnerResult:
    """One scheduled run: where its record and report are, and how it ended."""

    name: str
    status: str            # how the run ended: ok | dry_run | skipped_locked | held (as the notebook said) | failed | timeout
    exit_code: int
    notebook_path: str
    report_path: str
    seconds: float


def notebook_file(name: str) -> Path:
    """The source notebook for `name` (e.g. hourly_sync -> ampkit/notebooks/hourly_sync.ipynb)."""
    path = Path(name)
    if path.suffix != ".ipynb":
        path = NOTEBOOKS / f"{name}.ipynb"
    if not path.exists():
        raise RunnerError(f"no notebook {path}")
    return path


def check_parameters(parameters: dict, config: configuration.Config) -> None:
    """Refuse parameters that are, or look like, secrets (they would be archived in the run record)."""
    for name, value in parameters.items():
        if configuration.SECRET_PATTERN.search(name):
            raise SecretError(f"parameter '{name}' looks like a secret; secrets reach the kernel through the environment only")
        text = str(value)
        if (config.api_key and config.api_key in text) or (config.secret_key and config.secret_key in text):
            raise SecretError(f"parameter '{name}' carries a secret value; pass secrets through the environment only")


def papermill_parameters(source: Path) -> set[str]:
    """The parameters a notebook declares in its `parameters` cell."""
    import papermill
    return set(papermill.inspect_notebook(str(source)))


def record_path(prefix: str, name: str, window_start: dt.datetime, suffix: str = ".ipynb") -> str:
    """`<prefix>/<name>/YYYY/MM/DD/<window-start>.ipynb` (the run record's place)."""
    stamp = window_start.astimezone(dt.timezone.utc)
    return f"{prefix.rstrip('/')}/{name}/{stamp:%Y/%m/%d}/{stamp:%Y%m%dT%H%M%SZ}{suffix}"


def unique(path: str) -> str:
    """`path`, or `path` with -2, -3... when a record for the same window exists (a retry keeps both)."""
    if "://" in path or not Path(path).exists():
        return path
    stem, suffix = path.rsplit(".", 1)
    n = 2
    while Path(f"{stem}-{n}.{suffix}").exists():
        n += 1
    return f"{stem}-{n}.{suffix}"


def run(name: str, parameters: dict | None = None, *, config: configuration.Config | None = None,
        cell_timeout_seconds: int = 1800, timeout_seconds: int = 3300, html_report: bool = True,
        log_path: str | None = None) -> RunnerResult:
    """Execute notebook `name` with papermill as a scheduled run (I/O); never raises for a failed notebook.

    Cell output streams to stderr, or to `log_path` when given.
    """
    config = config or configuration.load()
    parameters = dict(parameters or {})
    check_parameters(parameters, config)
    source = notebook_file(name)
    declared = papermill_parameters(source)
    unknown = sorted(set(parameters) - declared)
    if unknown:
        raise RunnerError(f"{source.name} declares no parameter {', '.join(unknown)}; it takes {', '.join(sorted(declared))}")
    for prefix in {config.runs_dir, config.reports_dir}:
        check_destination(prefix)
    window_start = config.clock()
    output = unique(record_path(config.runs_dir, source.stem, window_start))
    html = report.html_path(output, config.runs_dir, config.reports_dir)
    parameters.setdefault("now", window_start.isoformat())
    parameters["notebook_path"] = output
    if "ampkit_settings" in declared:
        # The kernel runs with this process's configuration whole (CLI options, environment,
        # ampkit.toml as resolved here); secrets reach it through the environment only.
        parameters["ampkit_settings"] = config.settings()
        check_parameters({"ampkit_settings": parameters["ampkit_settings"]}, config)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="ampkit-run-") as tmp:
        executed = Path(tmp) / source.name
        params_file = Path(tmp) / "parameters.json"
        params_file.write_text(json.dumps(parameters))
        command = [sys.executable, "-m", "papermill", str(source), str(executed), "-f", str(params_file),
                   "--log-output", "--execution-timeout", str(cell_timeout_seconds),
                   "--no-progress-bar"]
        logger.info("notebook run name=%s record=%s", source.stem, output)
        status, code = _execute(command, timeout_seconds, log_path)
        if executed.exists():
            nb = nbformat.read(executed, as_version=4)
            if code == 0:
                status = reported_status(nb) or status
                # A window held by the volume guardrail waits for a person: the scheduler must see it.
                code = HELD_EXIT if status == "held" else code
            clean(nb, config, source, output)
            # A run that failed before its notebook said how it went: the ledger knows its window and counts.
            known = _ledger_details(config, output) if status in ("failed", "timeout") and not reported_status(nb) else {}
            details = present(nb, source.stem, window_start, status, known)
            try:
                _write(nb, output)
            except Exception as exc:  # noqa: BLE001 - any storage failure; the run itself is over
                # The run happened (and is in the ledger); only its record is missing, so keep a
                # local copy and fail the job, so the scheduler alerts.
                kept = _write_local_copy(nb, source.stem, window_start)
                logger.error("could not archive the run record to %s (%s: %s); kept at %s", output,
                             type(exc).__name__, config.redact(str(exc)).splitlines()[0] if str(exc) else "", kept)
                output, html, status, code = kept, "", "failed", code or 1
            else:
                if html_report and not _page(nb, details, source.stem, window_start, status, output, html, config):
                    html = ""
        else:
            output, html = "", ""
    seconds = time.monotonic() - started
    logger.info("notebook run finished name=%s status=%s exit=%d seconds=%.1f", source.stem, status, code, seconds)
    return RunnerResult(source.stem, status, code, output, html if html_report else "", seconds)


def _ledger_details(config: configuration.Config, record: str) -> dict:
    """What the run ledger says of the sync run that wrote `record` (I/O): its window, data map and
    counts; {} when it has no such run or cannot be read (the warehouse may be why the run failed)."""
    from ampkit import state, warehouse
    try:
        with warehouse.open(config.warehouse, location=config.bigquery_location) as wh:
            rows = [r for r in state.runs(wh, 20) if r.get("notebook_path") == record]
    except Exception as exc:  # noqa: BLE001 - any failure: the page goes without, the run's status stands
        logger.warning("could not read the ledger for the page of %s (%s)", record, type(exc).__name__)
        return {}
    if not rows:
        return {}
    r = rows[0]
    return {"window_start": r["window_start"].isoformat() if r.get("window_start") else "",
            "window_end": r["window_end"].isoformat() if r.get("window_end") else "",
            "data_map_version": r.get("data_map_version") or "",
            "counts": {"extracted": r.get("extracted") or 0, "accepted": r.get("accepted") or 0,
                       "filtered": r.get("filtered_total") or 0, "rejected": r.get("rejected_total") or 0}}


def _page(nb, details: dict, name: str, when: dt.datetime, status: str, record: str, html: str,
          config: configuration.Config) -> bool:
    """Write the record's page and its index line (I/O); a page that cannot be drawn or stored is
    logged, not a failed run: the record and the ledger hold everything it would show."""
    index = f"{config.reports_dir.rstrip('/')}/{report.INDEX}"
    entry = report.entry_of(details, name=name, when=when, status=status, report=report.relative(html, index),
                            record=record if "://" in record else report.relative(record, index))
    try:
        report.write(nb, html, config.reports_dir, entry)
    except Exception as exc:  # noqa: BLE001 - nbconvert, the template, the bucket: the run itself is over
        logger.error("could not write the page of %s to %s (%s: %s)", record, html, type(exc).__name__,
                     config.redact(str(exc)).splitlines()[0] if str(exc) else "")
        return False
    return True


def _execute(command: list[str], timeout_seconds: int, log_path: str | None) -> tuple[str, int]:
    log = None
    if log_path:
        Path(log_path).parent.mkdir(parents=True, exist_ok=True)
        log = open(log_path, "ab")
    # A session of its own, so an outer timeout takes the kernel down with papermill.
    try:
        process = subprocess.Popen(command, start_new_session=True, stdout=log, stderr=log)
        return _wait(process, timeout_seconds)
    finally:
        if log:
            log.close()


def _wait(process: subprocess.Popen, timeout_seconds: int) -> tuple[str, int]:
    # A scheduler stopping this job (SIGTERM: cron's kill, Kubernetes' deadline) or anything that
    # interrupts the wait must take papermill's session, kernel included, down with it.
    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, _terminated)
    try:
        code = process.wait(timeout=timeout_seconds)
    except subprocess.TimeoutExpired:
        _end_session(process)
        logger.error("notebook run timed out after %ds", timeout_seconds)
        return "timeout", 124
    except BaseException:
        _end_session(process)
        raise
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    return ("ok" if code == 0 else "failed"), code


def _terminated(signum, frame) -> None:
    raise SystemExit(128 + signum)


def _end_session(process: subprocess.Popen) -> None:
    """SIGTERM to the run's session, SIGKILL if it is still there 10 s later."""
    for sig, grace in ((signal.SIGTERM, 10), (signal.SIGKILL, None)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            break
        try:
            process.wait(timeout=grace)
            break
        except subprocess.TimeoutExpired:
            continue


def reported_status(nb) -> str | None:
    """How the notebook says its run ended (`notebook.outcome`), e.g. skipped_locked or dry_run."""
    from ampkit.notebook import OUTCOME_MIME
    found = [o["data"][OUTCOME_MIME] for c in nb.cells if c.cell_type == "code"
             for o in c.get("outputs", []) if OUTCOME_MIME in o.get("data", {})]
    return found[-1].get("status") if found else None


def clean(nb, config: configuration.Config, source: Path, output: str) -> None:
    """Strip machine paths from the metadata and mask any secret that reached an output."""
    meta = nb.metadata.get("papermill", {})
    meta["input_path"] = f"notebooks/{source.name}"
    meta["output_path"] = output
    meta.pop("cwd", None)
    for key in ("environment_variables",):
        meta.pop(key, None)
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            for field in ("text", "evalue"):
                if isinstance(out.get(field), str):
                    out[field] = config.redact(out[field])
            if "traceback" in out:
                out["traceback"] = [config.redact(line) for line in out["traceback"]]
            data = out.get("data", {})
            for mime, value in list(data.items()):
                if isinstance(value, str):
                    data[mime] = config.redact(value)
                else:  # a figure's or a table's JSON: the page is drawn from it
                    text = json.dumps(value)
                    if config.redact(text) != text:
                        data[mime] = json.loads(config.redact(text))


def present(nb, name: str, when: dt.datetime, status: str, known: dict | None = None) -> dict:
    """Make the record read as a report (pure, on the notebook): a title and a header saying what
    ran, when, over which window, how it ended and with which data map; the log lines the cells
    wrote to stderr moved out of the way into one collapsed section at the end (the run's log
    file has them too, and the ledger the run's numbers)."""
    from ampkit.notebook import OUTCOME_MIME
    details = dict(known or {})
    lines: list[str] = []
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        kept = []
        for out in cell.get("outputs", []):
            if out.get("output_type") == "stream" and out.get("name") == "stderr":
                lines += out.get("text", "").splitlines()
                continue
            details.update(out.get("data", {}).get(OUTCOME_MIME, {}))
            kept.append(out)
        cell["outputs"] = kept
    what = name.replace("_", " ")
    verdict = (details.get("counts") or {}).get("verdict")
    # A reconciliation's run can end ok with a failing verdict: the title says both.
    nb.metadata["title"] = f"ampkit · {what} · {when:%Y-%m-%d %H:%M} UTC · {report.shown_status(status, details.get('counts') or {})}"
    facts = [f"**{what}**", f"{when:%Y-%m-%d %H:%M} UTC", f"status **{status}**"]
    if details.get("window_start") and details.get("window_end"):
        start, end = (details[k][:16].replace("T", " ") for k in ("window_start", "window_end"))
        facts.append(f"window {start} .. {end}" + (" UTC" if len(start) > 10 else f" ({details.get('time_zone') or 'UTC'})"))
    elif status not in ("ok", "dry_run", "skipped_locked"):
        facts.append("window not on this page: the run failed before saying it (`ampkit runs` has it; the error is below)")
    if verdict:
        facts.append(f"verdict **{verdict}**")
    if details.get("data_map_version"):
        facts.append(f"data map {details['data_map_version']}")
    header = nbformat.v4.new_markdown_cell(" · ".join(facts))
    header.metadata["ampkit"] = "header"
    nb.cells.insert(0, header)
    if lines:
        log = "\n".join(escape(line) for line in lines)
        section = nbformat.v4.new_markdown_cell(
            f"## Log of this run\n\n<details><summary>{len(lines):,} log line{'s' * (len(lines) != 1)} (collapsed)</summary>\n\n<pre>{log}</pre>\n</details>")
        section.metadata["ampkit"] = "log"
        nb.cells.append(section)
    return details


def check_destination(prefix: str) -> None:
    """Raise RunnerError, before anything runs, when run records cannot be written under `prefix`."""
    scheme = prefix.split("://", 1)[0] if "://" in prefix else ""
    if scheme == "gs":
        try:
            import gcsfs  # noqa: F401 - papermill writes gs:// through it
        except ImportError:
            raise RunnerError(f"run records go to {prefix}, which needs gcsfs: install ampkit with "
                              "`pip install 'ampkit[gcs]'`") from None
    elif scheme:
        raise RunnerError(f"run records cannot go to {prefix}: use a local directory or gs://bucket/prefix")


def _write_local_copy(nb, name: str, window_start: dt.datetime) -> str:
    path = unique(record_path(str(Path(tempfile.gettempdir()) / "ampkit-unarchived"), name, window_start))
    _write(nb, path)
    return path


def _write(nb, path: str) -> None:
    if "://" in path:
        from papermill.iorw import write_ipynb
        write_ipynb(nb, path)
        return
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)
