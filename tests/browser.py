"""Report pages as an analyst's browser shows them: Debian's headless Chromium, driven by Playwright,
with the network off. What a page asked of the network, what it shows and what it failed at."""
from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

CHROMIUM = shutil.which("chromium")

# Per page, in the browser: the visible text outside collapsed sections, every figure (data, or the
# annotation that says why there is none) and every table (rows it holds, or its empty state).
FACTS = """() => {
  const figures = [...document.querySelectorAll('.js-plotly-plot')].map(gd => ({
    points: (gd.calcdata || []).reduce((n, trace) => n + trace.length, 0),  // after plotly.js decoded the data
    empty: ((gd.layout || {}).annotations || []).filter(a => a.name === 'empty state').map(a => a.text),
    drawn: gd.querySelectorAll('.main-svg').length > 0,
  }));
  const tables = [...document.querySelectorAll('table.ampkit-table, div.dt-container, p.ampkit-empty')].map(el => {
    if (el.matches('p.ampkit-empty')) return {kind: 'empty', rows: 0, text: el.innerText};
    if (el.matches('div.dt-container')) {
      const info = (el.querySelector('.dt-info') || {}).innerText || '';
      const m = info.match(/of ([\\d,]+) entries/);
      return {kind: 'interactive', rows: m ? parseInt(m[1].replace(/,/g, '')) : -1, text: info};
    }
    return {kind: 'static', rows: el.querySelectorAll('tbody tr').length, text: ''};
  });
  const scripts = [...document.querySelectorAll('script[src]')].map(s => s.getAttribute('src'));
  document.querySelectorAll('details').forEach(d => d.remove());  // read last: the page is not used again
  return {title: document.title, text: document.body.innerText, figures, tables, scripts};
}"""


@dataclasses.dataclass
class Page:
    path: Path
    title: str
    text: str                      # visible, outside collapsed <details>
    figures: list[dict]
    tables: list[dict]
    scripts: list[str]
    requests: list[str]            # every URL the page asked for
    failed: list[str]              # requests that failed (offline: any outside host)
    errors: list[str]              # uncaught JavaScript errors


def open_pages(paths: list[Path], settle_ms: int = 400) -> list[Page]:
    """Open each page in one offline headless Chromium and read it once its scripts have run."""
    from playwright.sync_api import sync_playwright
    pages = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            context = browser.new_context(offline=True, viewport={"width": 1300, "height": 900})
            for path in paths:
                tab = context.new_page()
                requests, failed, errors = [], [], []
                tab.on("request", lambda r: requests.append(r.url))
                tab.on("requestfailed", lambda r: failed.append(r.url))
                tab.on("pageerror", lambda e: errors.append(str(e)))
                tab.goto(path.resolve().as_uri(), wait_until="load")
                tab.wait_for_timeout(settle_ms)
                facts = tab.evaluate(FACTS)
                pages.append(Page(path, facts["title"], facts["text"], facts["figures"], facts["tables"], facts["scripts"],
                                  requests, failed, errors))
                tab.close()
        finally:
            browser.close()
    return pages


def screenshot(path: Path, out: Path, height: int = 1400) -> None:
    """The top of a page as a JPEG (the README's picture of a report)."""
    from playwright.sync_api import sync_playwright
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            tab = browser.new_context(offline=True, viewport={"width": 1300, "height": height}).new_page()
            tab.goto(path.resolve().as_uri(), wait_until="load")
            tab.wait_for_timeout(1000)
            tab.screenshot(path=str(out), type="jpeg", quality=70)
        finally:
            browser.close()
