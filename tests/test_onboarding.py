"""The onboarding notebook, executed by papermill against the sandbox and DuckDB, and its report in Chromium."""
from __future__ import annotations

import datetime as dt
import html
import re
import shutil
import subprocess
from pathlib import Path

import nbformat
import pytest
import yaml

from ampkit import catalogue, config as configuration, datamap, product, reconcile, routing, runner, sync

from conftest import NOW, fill

CHROMIUM = shutil.which("chromium")
FIGURE = "application/vnd.plotly.v1+json"


@pytest.fixture
def onboarding_env(monkeypatch, warehouse_url, sandbox, make_config):
    """Two weeks of Cloud traffic, staged and synced into the sandbox; the environment a scheduled run has."""
    fill(warehouse_url, days=14, events_per_day=2000, dirty_share=0.01, hours=2)
    assert sync.run(make_config(initial_lookback_hours=4), progress="none").status == "ok"
    for name, value in {"AMPKIT_WAREHOUSE": warehouse_url, "AMPKIT_AMPLITUDE_URL": sandbox.url, "AMPKIT_SETTLE_SECONDS": "0",
                        "AMPKIT_EXPORT_LAG_SECONDS": "0", "AMPKIT_RUNS_DIR": "runs", "AMPKIT_REPORTS_DIR": "reports",
                        "AMPKIT_NOW": NOW.isoformat()}.items():
        monkeypatch.setenv(name, value)
    return configuration.load({})


def outputs(nb) -> list[dict]:
    return [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]


def texts(nb) -> str:
    """Every text, Markdown and HTML output of the executed notebook, as one string."""
    parts = []
    for o in outputs(nb):
        data = o.get("data", {})
        parts += [data.get("text/markdown", ""), data.get("text/html", ""), o.get("text", "")]
    return "\n".join(parts)


def table_rows(html_table: str) -> list[list[str]]:
    """The body cells of a displayed table, row by row."""
    body = html_table.split("<tbody>", 1)[1]
    return [[html.unescape(c).strip() for c in re.findall(r"<td[^>]*>([^<]*)</td>", row)]
            for row in re.findall(r"<tr>(.*?)</tr>", body, re.S)]


def displayed_table(nb, header: str) -> list[list[str]]:
    return table_rows(next(o["data"]["text/html"] for o in outputs(nb) if header in o.get("data", {}).get("text/html", "")))


def kept_out_rows(nb) -> dict[str, int]:
    """rule -> rows kept out, read from the kept-out table the notebook displayed."""
    return {row[0]: int(row[4].replace(",", "")) for row in displayed_table(nb, "rows kept out")}


def chromium_dom(report: Path, tmp_path: Path) -> str:
    return subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                           "--disable-component-update", f"--user-data-dir={tmp_path / 'chrome'}",
                           "--virtual-time-budget=10000", "--dump-dom", report.resolve().as_uri()],
                          capture_output=True, text=True, timeout=120).stdout


def test_onboarding_explains_the_setup_with_live_data(onboarding_env, warehouse_url, tmp_path):
    result = runner.run("onboarding", {}, config=onboarding_env)
    assert result.status == "ok", result
    nb = nbformat.read(result.notebook_path, as_version=4)
    errors = [o for o in outputs(nb) if o.get("output_type") == "error"]
    assert not errors, errors
    text = texts(nb)

    # What is in Amplitude: from the config and the data map the sync uses.
    assert "Sourcegraph Cloud UI events from 2020-12-01" in text and "`amplitude_events`" in text
    assert datamap.load().version in text
    # What is kept out, per rule, with the rows counted in the warehouse.
    first, last = reconcile.date_range(onboarding_env, "", "", days=28)
    volumes = product.volumes(onboarding_env, first, last)
    shown = kept_out_rows(nb)
    assert list(shown) == ["backend", "search_latencies", "code_insights", "codeintel_deny_list", "very_low_traffic"]
    assert shown["code_insights"] > 0 and shown["codeintel_deny_list"] > 0
    insights = {e.name for e in catalogue.events() if e.family == "code_insights"}
    assert shown["code_insights"] == sum(n for name, _, n in volumes if name in insights)
    # Only in Looker: pings, Postgres, third-party data, and the excluded events.
    for needle in ("On-prem instance pings", "Cloud Postgres tables", "Google Analytics", "Salesforce",
                   f"{sum(shown.values()):,} rows in the last 28 days"):
        assert needle in text, needle
    # The routing table, and each live example with its Amplitude recipe.
    for topic in routing.load().topics:
        assert topic.topic in text
    # `where`'s answers with the live map, each with the fact that decided it.
    routes = {row[0]: row[1:] for row in displayed_table(nb, "decided by")}
    assert routes["retention of on-prem users"][:2] == ["Looker", "where the data comes from"]
    assert routes["how many users searched last week"][0] == "Amplitude"
    assert routes["notebooks usage"][0] == "both" and routes["signups in November 2020"][:2] == ["Looker", "when"]
    assert "*Funnel Analysis*" in text and "conversion window **7 days**" in text
    assert "`ViewSignUp` → `SignupInitiated` → `SignUpSucceeded`" in text
    assert "*Retention Analysis*" in text
    figures = [o["data"][FIGURE] for o in outputs(nb) if FIGURE in o.get("data", {})]
    assert len(figures) == 4
    funnel_trace = figures[0]["data"][0]
    assert funnel_trace["type"] == "funnel" and list(funnel_trace["y"]) == list(product.SIGNUP_FUNNEL)
    expected = product.funnel(onboarding_env, first, last)
    assert list(funnel_trace["x"]) == list(expected.people) and expected.people[0] > expected.people[-1] > 0
    assert figures[1]["data"][0]["type"] == "heatmap"
    assert {"in Amplitude (and Looker)", "Looker only: code_insights"} <= {t["name"] for t in figures[2]["data"]}
    # The latest reconciliation: the tools agree, the differences are named.
    summary = {row[0]: row[1:] for row in displayed_table(nb, "meaning")}
    assert summary["status"][0] == "OK" and summary["unexplained"][0] == "0"
    assert summary["data-map rule codeintel_deny_list"][1] == "only in Looker, by design"
    assert int(summary["in Looker (event_logs)"][0].replace(",", "")) > int(summary["in Amplitude"][0].replace(",", "")) > 0

    report = Path(result.report_path)
    page = report.read_text()
    assert 'src="https://cdn.plot.ly' not in page and "from ampkit import" not in page  # embedded plotly, code hidden
    if CHROMIUM is None:
        pytest.skip("Debian's chromium is not installed: the charts were not rendered")
    dom = chromium_dom(report, tmp_path)
    assert dom.count('class="main-svg"') >= 4, "the plotly charts did not render"
    assert "Why two tools" in dom and "Where each event family lives" in html.unescape(dom)


def test_changing_the_data_map_changes_what_the_page_says_is_kept_out(onboarding_env, tmp_path, monkeypatch):
    """Nothing in the notebook names a rule: a new map (no code_insights rule, ViewBlob kept out) shows as such."""
    doc = yaml.safe_load(datamap.default_path().read_text())
    doc["rules"] = [r for r in doc["rules"] if r["id"] != "code_insights"]
    product_ui = next(r for r in doc["rules"] if r["id"] == "product_ui")
    product_ui["events"].remove("ViewBlob")
    doc["rules"].append({"id": "blob_views", "action": "exclude", "reason": "low_traffic",
                         "note": "File views are analysed in Looker from now on.", "events": ["ViewBlob"]})
    changed = tmp_path / "datamap.changed.yaml"
    changed.write_text(yaml.safe_dump(doc, sort_keys=False))
    monkeypatch.setenv("AMPKIT_DATA_MAP", str(changed))
    result = runner.run("onboarding", {"reconcile_days": 1}, config=configuration.load({}))
    assert result.status == "ok", result
    nb = nbformat.read(result.notebook_path, as_version=4)
    text = texts(nb)
    shown = kept_out_rows(nb)
    assert "code_insights" not in shown and shown["blob_views"] > 0
    assert "File views are analysed in Looker from now on." in text
    assert "the data map `datamap.changed.yaml` ($AMPKIT_DATA_MAP)" in text
    assert datamap.load(changed).version in text and datamap.load().version not in text
    figures = [o["data"][FIGURE] for o in outputs(nb) if FIGURE in o.get("data", {})]
    family_traces = {t["name"] for t in figures[2]["data"]}
    assert "Looker only: blob_views" in family_traces and "Looker only: code_insights" not in family_traces
    # Insights are sent now, and the family table says so.
    places = {row[0]: row[1] for row in displayed_table(nb, "lives in")}
    assert places["code_insights"] == "Amplitude" and places["repo_file_views"] == "Amplitude, part Looker only"
    # And `where` answers from the same map: code insights are in Amplitude now.
    routes = {row[0]: row[1:] for row in displayed_table(nb, "decided by")}
    assert routes["how many users used code insights"][0] == "Amplitude"


# --- the onboarding charts on their own --------------------------------------------------------

def test_charts_of_empty_results_say_so_instead_of_failing():
    from ampkit import chart
    empty = product.Funnel(product.SIGNUP_FUNNEL, (0,) * 7, dt.date(2024, 1, 1), dt.date(2024, 1, 28), 7, "UTC")
    def said(fig):
        return " ".join(a.text for a in fig.layout.annotations if a.name == chart.EMPTY)
    assert "nobody started the funnel" in said(chart.funnel_chart(empty))
    none = product.Retention({}, dt.date(2024, 1, 1), dt.date(2024, 1, 28), "UTC", ("SearchSubmitted",))
    assert none.matrix() == [] and "no active people" in said(chart.retention_heatmap(none))
    assert "no events" in said(chart.family_chart([]))


def test_retention_heatmap_leaves_weeks_not_yet_seen_blank():
    from ampkit import chart
    jan = lambda d: dt.date(2024, 1, d)  # noqa: E731
    r = product.Retention({(jan(1), 0): 4, (jan(1), 1): 1, (jan(8), 0): 2}, jan(1), jan(10), "UTC", ("SearchSubmitted",))
    heat = chart.retention_heatmap(r).data[0]
    assert [list(row) for row in heat.z] == [[100.0, 25.0], [100.0, None]]
    assert list(heat.y) == ["2024-01-01 (4)", "2024-01-08 (2)"] and list(heat.x) == ["week 0", "week 1"]
