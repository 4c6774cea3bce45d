"""A report: the HTML page a run record becomes, the scripts the pages share, and the index of them.

A run record (the executed notebook) keeps its figures as plotly JSON and its tables as rows
(`table.TABLE_MIME`); only the page renders them. Every page of a reports folder loads plotly.js and
the interactive tables' library from one copy in `<reports>/assets/` (named by version, so an
upgrade leaves old pages working), which keeps a page small, and nothing is fetched from another
host: a page opens offline. Beside each page a `.json` entry says what ran, when, over which window,
how it ended and what it counted; `index.html` lists them all, newest first, and each report's
`latest.html` leads to its newest run that handled rows.
"""
from __future__ import annotations

import copy
import dataclasses
import datetime as dt
import json
import logging
import mimetypes
import os
import posixpath
import re
import tempfile
from html import escape
from pathlib import Path

from ampkit.table import TABLE_MIME, Table, interactive, to_html as table_html

logger = logging.getLogger(__name__)

PLOTLY_MIME = "application/vnd.plotly.v1+json"
ASSETS = "assets"
INDEX = "index.html"
LATEST = "latest.html"
# Every page's index line, gathered: a run reads only the lines it has not seen, so the index costs
# one listing of the folder, not one read per page ever written.
MANIFEST = "index.json"
# The front page lists the pages of the last RECENT_DAYS; every month has a page of its own.
RECENT_DAYS = 31
RESOURCES = Path(__file__).resolve().parent / "resources"
TEMPLATE = "report_template"  # nbconvert's lab template without require.js, MathJax or mermaid (CDN scripts)
# What each report counts, in the order the index shows them.
COUNT_LABELS = {"extracted": "extracted", "accepted": "accepted", "filtered": "filtered", "rejected": "rejected",
                "looker": "in Looker", "amplitude": "in Amplitude", "unexplained": "unexplained",
                "anomalies": "anomalies", "runs": "runs"}


@dataclasses.dataclass
class Entry:
    """One line of the index: a run record and its page."""

    name: str
    when: str                # the run's clock, ISO UTC
    status: str
    report: str              # the page, relative to the reports folder
    record: str              # the run record, as the runner wrote it
    window_start: str = ""
    window_end: str = ""
    data_map_version: str = ""
    counts: dict = dataclasses.field(default_factory=dict)
    time_zone: str = ""      # the zone of a window of days (a reconciliation's); a window of times is UTC

    @property
    def handled_rows(self) -> bool:
        """Whether the page has something to show: rows handled, or a run that did not end well.
        Reports that count no rows (onboarding, reconciliation) always have; a dry run never
        stands for the real runs."""
        if self.status in ("skipped_locked", "dry_run"):
            return False
        if "extracted" not in self.counts:
            return True
        return bool(self.counts["extracted"]) or self.status != "ok"

    @property
    def shown_status(self) -> str:
        return shown_status(self.status, self.counts)


def shown_status(status: str, counts: dict) -> str:
    """A run's status as pages and the index say it: a reconciliation's failing verdict beside how its run ended."""
    verdict = counts.get("verdict")
    return f"{status} · verdict {verdict}" if verdict and verdict != "ok" else status


def _latest(mine: list[Entry]) -> Entry:
    """What latest.html shows of one report's pages (newest first): the newest that handled rows."""
    return next((e for e in mine if e.handled_rows), mine[0])


def html_path(record: str, runs_dir: str, reports_dir: str) -> str:
    """The page of a run record: the same place under the reports folder, `.html`."""
    return record.replace(runs_dir.rstrip("/"), reports_dir.rstrip("/"), 1).removesuffix(".ipynb") + ".html"


def links_from(record: str, runs_dir: str, reports_dir: str):
    """A function giving, for another run record, the link to its page from `record`'s page, or None
    when it has none; None itself without a record of our own (a notebook opened by hand has no page)."""
    if not record:
        return None
    page = html_path(record, runs_dir, reports_dir)

    def link(other: str) -> str | None:
        target = html_path(other, runs_dir, reports_dir)
        # A run written without its page (--no-report) has none to link to.
        return relative(target, page) if "://" in target or Path(target).exists() else None
    return link


def relative(target: str, page: str) -> str:
    """`target` as a link from the page at `page` (both paths, local or gs://, under one folder)."""
    def bare(p: str) -> str:
        return p.split("://", 1)[-1].lstrip("/") if "://" in p else str(Path(p).resolve())
    return posixpath.relpath(bare(target), posixpath.dirname(bare(page)))


# --- the page ---------------------------------------------------------------------------------

def write(nb, path: str, reports_dir: str, entry: Entry | None = None) -> str:
    """Write `nb` as its HTML page at `path` (I/O) and, with `entry`, its index line, the report's
    latest.html and the folder's index.html."""
    shared = {}
    try:
        shared = assets(reports_dir)
        page = render(nb, {kind: relative(a, path) for kind, a in shared.items()})
    except OSError as exc:
        # Without the folder's shared scripts the page carries its own: bigger, but it draws.
        logger.warning("could not write the shared scripts under %s (%s); the page carries its own", reports_dir, exc)
        page = render(nb, {}, inline=True)
    _write_text(path, page)
    if entry is not None:
        _write_text(path.removesuffix(".html") + ".json", json.dumps(dataclasses.asdict(entry), indent=1))
        try:
            refresh(reports_dir, shared or None)
        except Exception as exc:  # noqa: BLE001 - the page is written; a broken index must not fail the run
            logger.warning("could not refresh the reports index under %s (%s: %s)", reports_dir, type(exc).__name__, exc)
    return path


def standalone(nb, path: str) -> str:
    """Write `nb` as one HTML file that carries its scripts inline (I/O): a page to send or keep
    alone, e.g. `ampkit reconcile --html`."""
    _write_text(path, render(nb, {}, inline=True))
    return path


def render(nb, scripts: dict[str, str], inline: bool = False) -> str:
    """The page of a run record (pure): code hidden, figures and tables rendered, loading the
    `scripts` it needs (`assets`' kinds: plotly, itables) or carrying them inline."""
    from nbconvert import HTMLExporter
    from ampkit.notebook import OUTCOME_MIME
    page, needs = copy.deepcopy(nb), set()
    for cell in page.cells:
        # How the run ended is in the page's header; the runner's own line of it is not for people.
        cell["outputs"] = [o for o in cell.get("outputs", []) if OUTCOME_MIME not in o.get("data", {})]
        for out in cell["outputs"]:
            data = out.get("data", {})
            if PLOTLY_MIME in data:
                out["data"] = {"text/html": _figure_html(data[PLOTLY_MIME])}
                needs.add("plotly")
            elif TABLE_MIME in data:
                out["data"] = {"text/html": table_html(data[TABLE_MIME])}
                if interactive(data[TABLE_MIME]):
                    needs.add("itables")
    exporter = HTMLExporter(template_name=TEMPLATE, extra_template_basedirs=[str(RESOURCES)],
                            exclude_input=True, exclude_input_prompt=True, exclude_output_prompt=True)
    sources = {"plotly": _plotly_js, "itables": _itables_js}
    loaded = [scripts[k] for k in sources if k in needs and not inline]
    inline_js = [source() for k, source in sources.items() if k in needs and inline]
    body, _ = exporter.from_notebook_node(page, resources={"ampkit_scripts": loaded, "ampkit_inline": inline_js})
    return body


def _figure_html(figure: dict) -> str:
    import plotly.io as pio
    height = None if (figure.get("layout") or {}).get("height") else "480px"
    return pio.to_html(figure, include_plotlyjs=False, full_html=False, validate=False,
                       config={"displaylogo": False, "responsive": True}, default_height=height or "100%")


# --- the shared scripts -----------------------------------------------------------------------

def assets(reports_dir: str) -> dict[str, str]:
    """The scripts the pages load, by kind, written once per reports folder and version (I/O)."""
    import itables
    import plotly
    folder = f"{reports_dir.rstrip('/')}/{ASSETS}"
    wanted = {"plotly": (f"{folder}/plotly-{plotly.__version__}.min.js", _plotly_js),
              "itables": (f"{folder}/itables-{itables.__version__}.js", _itables_js)}
    for path, source in wanted.values():
        if not _exists(path):
            _write_text(path, source())
    return {kind: path for kind, (path, _) in wanted.items()}


def _plotly_js() -> str:
    from plotly.offline import get_plotlyjs
    return get_plotlyjs()


def _itables_js() -> str:
    """itables' offline library as a classic script: the body of its own `init_notebook_mode`
    output (the bundle, inlined), so tables wait for it as they do in a notebook."""
    from itables import options
    from itables.javascript import generate_init_offline_itables_html
    page = generate_init_offline_itables_html(options.dt_bundle)
    return re.search(r"<script>(.*?)</script>", page, re.S).group(1)


# --- the index --------------------------------------------------------------------------------

def entries(reports_dir: str) -> list[Entry]:
    """Every page's index line under `reports_dir`, newest first (I/O): the manifest's, and those
    of pages it has not seen yet (read, then kept in it)."""
    root = reports_dir.rstrip("/")
    try:
        known = json.loads(_read_text(f"{root}/{MANIFEST}"))
    except (OSError, ValueError):
        known = {}
    found, fresh = {}, False
    for path in _glob(f"{root}/*/*/*/*/*.json"):
        key = posixpath.relpath(path.split("://", 1)[-1].lstrip("/"), root.split("://", 1)[-1].lstrip("/"))
        if key in known:
            found[key] = known[key]
            continue
        try:
            found[key] = dataclasses.asdict(Entry(**json.loads(_read_text(path))))
            fresh = True
        except (ValueError, TypeError) as exc:
            logger.warning("skipping %s in the reports index: %s", path, exc)
    if fresh or found.keys() != known.keys():
        _write_text(f"{root}/{MANIFEST}", json.dumps(found, separators=(",", ":")))
    return sorted((Entry(**e) for e in found.values()), key=_order, reverse=True)


def _order(e: Entry) -> tuple:
    # A retry of the same clock is written as <stamp>-2.html, -3...: it is the newer.
    stem = posixpath.basename(e.report).removesuffix(".html")
    retry = int(stem.rsplit("-", 1)[1]) if "-" in stem and stem.rsplit("-", 1)[1].isdigit() else 1
    return e.when, retry, e.report


def refresh(reports_dir: str, scripts: dict[str, str] | None = None) -> str:
    """Rewrite `index.html`, the month pages and every report's `latest.html` from the index lines
    (I/O); `scripts` are the folder's shared scripts when the caller has them already."""
    found = entries(reports_dir)
    root = reports_dir.rstrip("/")
    for name in sorted({e.name for e in found}):
        mine = [e for e in found if e.name == name]
        shown = _latest(mine)
        _write_text(f"{root}/{name}/{LATEST}", _redirect(posixpath.relpath(shown.report, name), shown))
    scripts = scripts or assets(reports_dir)
    months = sorted({e.when[:7] for e in found}, reverse=True)
    newest = dt.datetime.fromisoformat(found[0].when) if found else None
    recent = [e for e in found if newest and dt.datetime.fromisoformat(e.when) > newest - dt.timedelta(days=RECENT_DAYS)]
    for month in months:
        page = f"{root}/index-{month}.html"
        _write_text(page, index_page([e for e in found if e.when.startswith(month)], scripts, page, months, month))
    index = f"{root}/{INDEX}"
    _write_text(index, index_page(recent, scripts, index, months, summary=found))
    return index


def index_page(shown: list[Entry], scripts: dict[str, str], page: str, months: list[str], month: str = "",
               summary: list[Entry] | None = None) -> str:
    """A page of the index (pure): with `summary`, the front page (per report its newest run and
    what latest.html shows, then the pages of the last RECENT_DAYS); else the pages of `month`."""
    from jinja2 import Template
    lines = []
    for name in sorted({e.name for e in summary or []}):
        mine = [e for e in summary if e.name == name]
        newest, latest = mine[0], _latest(mine)
        say = (f'<a href="{escape(name)}/{LATEST}">{escape(_title(name))}</a>: newest '
               f'<a href="{escape(newest.report)}">{escape(_when(newest.when))}</a> ({escape(newest.shown_status)})')
        if latest is not newest:
            say += f"; {_quiet(newest)}, so {LATEST} shows {escape(_when(latest.when))}, the newest that did"
        elif not newest.handled_rows:
            say += f"; {_quiet(newest)}, nor did any run before it"
        lines.append(say)
    import pandas as pd
    rows = [{"when (UTC)": escape(_when(e.when)), "report": f'<a href="{escape(e.report)}">{escape(_title(e.name))}</a>',
             "status": escape(e.shown_status), "window": escape(_window(e)), "counts": escape(_counts(e.counts)),
             "data map": escape(e.data_map_version),
             "run record": escape(e.record) if "://" in e.record else f'<a href="{escape(e.record)}">{escape(posixpath.basename(e.record))}</a>'}
            for e in shown]
    columns = ["when (UTC)", "report", "status", "window", "counts", "data map", "run record"]
    table = Table(pd.DataFrame(rows, columns=columns), empty="No report has been written yet.", links=tuple(columns)).payload()
    needed = [relative(scripts["itables"], page)] if interactive(table) else []
    title = f"ampkit · reports · {month}" if month else "ampkit · reports"
    what = (f"The pages of {month}" if month else
            f"The pages of the last {RECENT_DAYS} days") + f" ({len(shown):,}), newest first."
    template = Template((RESOURCES / "reports_index.html.j2").read_text(encoding="utf-8"))
    return template.render(title=title, scripts=needed, what=what, lines=lines, table=table_html(table),
                           months=[(m, f"index-{m}.html") for m in months], front=INDEX if month else "")


def _quiet(e: Entry) -> str:
    if e.status == "skipped_locked":
        return "it was skipped (another run held the lease)"
    if e.status == "dry_run":
        return "it was a dry run"
    return "it handled no rows"


def _redirect(target: str, entry: Entry) -> str:
    safe = escape(target)
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><meta http-equiv="refresh" content="0; url={safe}">'
            f"<title>ampkit · latest {escape(_title(entry.name))}</title></head>"
            f'<body><p>The newest {escape(_title(entry.name))} that handled rows: <a href="{safe}">{escape(_when(entry.when))}</a>.</p></body></html>')


def _counts(counts: dict) -> str:
    order = list(COUNT_LABELS)
    ranked = sorted(counts.items(), key=lambda kv: order.index(kv[0]) if kv[0] in order else len(order))
    return " · ".join(f"{COUNT_LABELS.get(k, k)} {v:,}" if isinstance(v, int) else f"{k} {v}" for k, v in ranked)


def _title(name: str) -> str:
    return name.replace("_", " ")


def _when(iso: str) -> str:
    return iso[:16].replace("T", " ") if iso else ""


def _window(e: Entry) -> str:
    if not e.window_start:
        return ""
    days = len(e.window_start) <= 10
    return f"{_when(e.window_start)} .. {_when(e.window_end)}" + (f" ({e.time_zone or 'UTC'})" if days else " UTC")


# --- local folders and gs:// -------------------------------------------------------------------

def _write_text(path: str, text: str) -> None:
    if "://" in path:
        import fsspec
        # With its type, so a bucket serves a page as a page and a script as a script.
        kind = mimetypes.guess_type(path)[0] or "text/plain"
        with fsspec.open(path, "w", encoding="utf-8", content_type=kind) as f:
            f.write(text)
        return
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    # A temporary file of its own, then a rename: two runs writing the same page (or the same
    # script after an upgrade) never meet, and a page being rewritten is never seen half written.
    with tempfile.NamedTemporaryFile("w", encoding="utf-8", dir=Path(path).parent, prefix=Path(path).name + ".",
                                     suffix=".partial", delete=False) as f:
        f.write(text)
    os.replace(f.name, path)


def _read_text(path: str) -> str:
    if "://" in path:
        import fsspec
        with fsspec.open(path, "r", encoding="utf-8") as f:
            return f.read()
    return Path(path).read_text(encoding="utf-8")


def _exists(path: str) -> bool:
    if "://" in path:
        import fsspec
        fs, bare = fsspec.core.url_to_fs(path)
        return fs.exists(bare)
    return Path(path).exists()


def _glob(pattern: str) -> list[str]:
    if "://" in pattern:
        import fsspec
        scheme = pattern.split("://", 1)[0]
        fs, bare = fsspec.core.url_to_fs(pattern)
        return [f"{scheme}://{p.lstrip('/')}" for p in fs.glob(bare)]
    import glob
    return glob.glob(pattern)


def entry_of(details: dict, *, name: str, when: dt.datetime, status: str, report: str, record: str) -> Entry:
    """The index line of a run from what its notebook said (`notebook.outcome`'s details)."""
    counts = {k: v for k, v in (details.get("counts") or {}).items() if v is not None}
    return Entry(name=name, when=when.astimezone(dt.timezone.utc).isoformat(), status=status, report=report, record=record,
                 window_start=details.get("window_start") or "", window_end=details.get("window_end") or "",
                 data_map_version=details.get("data_map_version") or "", counts=counts,
                 time_zone=details.get("time_zone") or "")
