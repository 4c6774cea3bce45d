"""The routing table (shipped and per company), `ampkit where`, and where each event lives per the data map."""
from __future__ import annotations

import datetime as dt
import json
from importlib import resources
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from ampkit import catalogue, config as configuration, datamap, routing
from ampkit.cli import cli
from ampkit.errors import ConfigError

REQUIRED = {  # the rows the team's wiki page had, and the tool each names
    "retention_engagement": "Amplitude", "signup_funnel": "Amplitude", "public_code_adoption": "Looker",
    "okr_progress": "Looker", "on_prem_instances": "Looker"}


@pytest.fixture
def table():
    return routing.load(env={})


def test_the_shipped_table_routes_the_known_questions(table):
    tools = {t.id: t.tool for t in table.topics}
    assert {k: tools[k] for k in REQUIRED} == REQUIRED
    assert set(table.tools) == {"Amplitude", "Looker"}
    assert all(t.why and t.example for t in table.topics)
    assert {s.id for s in table.looker_only} == {"pings", "cloud_postgres", "google_analytics", "salesforce"}


@pytest.mark.parametrize("question, topic", [
    ("signup funnel", "signup_funnel"), ("sign-up funnel", "signup_funnel"), ("Sign up funnel on Cloud", "signup_funnel"),
    ("how many people converted from sign up to search", "signup_funnel"),
    ("retention", "retention_engagement"), ("retension", "retention_engagement"),  # a typo
    ("weekly active users", "retention_engagement"), ("DAU/MAU", "retention_engagement"),
    ("OKR progress", "okr_progress"), ("adoption of public code", "public_code_adoption"),
    ("feature saturation", "pql_account_setup"),
])
def test_a_question_finds_its_topic_by_keyword(table, question, topic):
    assert routing.route(question, table, datamap.load(), dt.date(2020, 12, 1)).topic.id == topic


@pytest.mark.parametrize("question, decided_by", [
    ("pings", "source"), ("on-prem instances", "source"), ("salesforce pipeline", "source"), ("code insights", "events"),
])
def test_where_the_data_comes_from_and_the_events_decide_before_the_kind_of_question(table, question, decided_by):
    answer = routing.route(question, table, datamap.load(), dt.date(2020, 12, 1))
    assert (answer.answer, answer.decided_by) == ("Looker", decided_by)


@pytest.mark.parametrize("question", ["pizza", "", "the of on", "quarterly pizza budget"])
def test_too_little_to_go_on_is_not_sure_rather_than_a_guess(table, question):
    assert routing.route(question, table, datamap.load(), dt.date(2020, 12, 1)).answer == "not sure"


def company_file(tmp_path, doc: dict):
    path = tmp_path / "routing.acme.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def test_a_company_file_overrides_links_and_adds_topics(tmp_path):
    path = company_file(tmp_path, {
        "tools": {"Amplitude": {"link": "https://app.amplitude.com/analytics/acme"}},
        "topics": [{"id": "signup_funnel", "link": "https://app.amplitude.com/analytics/acme/chart/abc123"},
                   {"id": "billing", "topic": "Billing and invoices", "tool": "Looker", "why": "Finance data lives in the warehouse.",
                    "example": "Invoices per month.", "keywords": ["billing", "invoices"]}]})
    table = routing.load(env={"AMPKIT_ROUTING": str(path)})
    topics = {t.id: t for t in table.topics}
    assert topics["signup_funnel"].link == "https://app.amplitude.com/analytics/acme/chart/abc123"
    assert topics["signup_funnel"].tool == "Amplitude" and topics["signup_funnel"].why  # the rest is the shipped row's
    assert topics["okr_progress"].link == "https://sourcegraph.looker.com/dashboards/166"  # untouched
    assert table.tools["Amplitude"].link == "https://app.amplitude.com/analytics/acme" and table.tools["Amplitude"].why
    assert routing.route("invoices", table, datamap.load(), dt.date(2020, 12, 1)).topic.id == "billing"
    assert table.files[-1] == str(path)


@pytest.mark.parametrize("doc, message", [
    ({"topics": [{"id": "x", "topic": "X"}]}, "needs tool, why, example"),
    ({"topics": [{"id": "signup_funnel", "link": "javascript:alert(1)"}]}, "not an http"),
    ({"topics": [{"id": "signup_funnel", "tool": "Tableau"}]}, "'Tableau' is not one of"),
    ({"topics": [{"id": "signup_funnel", "owner": "me"}]}, "unknown key"),
    ({"dashboards": []}, "unknown key"),
    ({"topics": [{"topic": "no id"}]}, "needs an 'id'"),
])
def test_a_bad_company_file_is_a_config_error_naming_the_problem(tmp_path, doc, message):
    with pytest.raises(ConfigError, match=message):
        routing.load(company_file(tmp_path, doc), env={})


def test_a_missing_company_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="cannot be read"):
        routing.load(env={"AMPKIT_ROUTING": str(tmp_path / "nope.yaml")})


def test_markdown_table_has_a_row_per_topic_with_its_link(table):
    text = routing.markdown(table)
    lines = text.splitlines()
    assert len(lines) == 2 + len(table.topics)
    assert "| Adoption of public code | **Looker** |" in text
    assert "[sourcegraph.looker.com/dashboards/175](https://sourcegraph.looker.com/dashboards/175)" in text


# --- the command ------------------------------------------------------------------------------

def test_where_prints_the_answer_the_deciding_fact_example_and_link():
    # The README's example.
    result = CliRunner().invoke(cli, ["where", "signup funnel"])
    assert result.exit_code == 0, result.output
    out = result.output
    assert out.startswith("Amplitude (decided by what kind of question it is)\n")
    assert "  because: sign-up funnel on cloud is answered in Amplitude: Ordered funnels" in out
    assert "Amplitude's data starts on 2020-12-01" in out
    assert "  link:    https://analytics.amplitude.com/sourcegraph/dashboard/zlj82e0" in out


def test_where_never_shows_an_example_from_the_other_tool():
    result = CliRunner().invoke(cli, ["where", "how many users used code insights"])
    assert result.output.startswith("Looker (decided by which events, per the data map)")
    assert "example:" not in result.output and "amplitude.com" not in result.output


def test_where_json_gives_the_route_the_facts_and_the_events():
    result = CliRunner().invoke(cli, ["where", "--json", "notebooks usage"])
    assert result.exit_code == 0, result.output
    got = json.loads(result.output)
    assert got["answer"] == "both" and got["decided_by"] == "events"
    assert "SearchNotebookRunBlock" in got["events_in_amplitude"]
    assert {"event": "SearchNotebookCreated", "rule": "very_low_traffic"} in got["events_only_in_looker"]
    assert got["facts"][0].startswith("Amplitude has `SearchNotebookAddBlock`")


def test_where_reads_the_live_data_map(tmp_path):
    from importlib import resources
    shipped = resources.files("ampkit.resources").joinpath("datamap.yaml").read_text()
    path = tmp_path / "datamap.yaml"
    path.write_text(shipped.replace("  - id: product_ui\n    action: send\n", "  - id: product_ui\n    action: exclude\n    reason: low_traffic\n", 1))
    result = CliRunner().invoke(cli, ["--data-map", str(path), "where", "--json", "signup funnel"])
    got = json.loads(result.output)
    assert got["answer"] == "Looker" and "keeps out of Amplitude (rule `product_ui`)" in got["facts"][0]


def test_where_without_evidence_is_not_sure_names_the_two_closest_routes_and_exits_1():
    result = CliRunner().invoke(routing.where, ["pizza"])
    assert result.exit_code == 1
    assert result.output.startswith('Not sure where "pizza" is answered')
    assert len([line for line in result.output.splitlines() if line.startswith("  - ")]) == 2


def test_where_without_a_question_prints_the_table():
    result = CliRunner().invoke(routing.where, [])
    assert result.exit_code == 0
    assert len(result.output.splitlines()) == len(routing.load(env={}).topics)


def test_where_reads_the_company_file_from_the_environment(tmp_path, monkeypatch):
    path = company_file(tmp_path, {"topics": [{"id": "okr_progress", "link": "https://looker.acme.example/dashboards/9"}]})
    monkeypatch.setenv("AMPKIT_ROUTING", str(path))
    result = CliRunner().invoke(routing.where, ["okrs"])
    assert result.exit_code == 0 and "link:    https://looker.acme.example/dashboards/9" in result.output, result.output
    bad = CliRunner().invoke(routing.where, ["okrs", "--routing", str(tmp_path / "missing.yaml")])
    assert bad.exit_code == 1 and bad.output.startswith("Error: routing file") and "Traceback" not in bad.output


# --- what is in Amplitude, what is kept out, where families live -------------------------------

SMALL_MAP = datamap.parse("""
owner: bizops
rules:
  - {id: ui, action: send, note: UI events for product questions., events: [ViewBlob, SearchSubmitted, ViewInsightsX]}
  - {id: backend, action: exclude, reason: backend, source: BACKEND, note: Not UI., match: ["*"]}
  - {id: insights, action: exclude, reason: excluded_family, note: Enterprise feature., match: ["*Insight*"]}
  - {id: rare, action: exclude, reason: low_traffic, note: Too sparse., events: [NewOrgCreated]}
""", "small.yaml")
# 1,000 rows. SearchSubmitted from BACKEND is sent: an exact name beats the backend pattern, as in the sync.
VOLUMES = [("ViewBlob", "WEB", 600), ("SearchSubmitted", "WEB", 290), ("SearchSubmitted", "BACKEND", 5),
           ("SearchLatency", "BACKEND", 40), ("ViewInsights", "WEB", 50), ("ViewInsightsX", "WEB", 10),
           ("NewOrgCreated", "WEB", 5), ("Mystery", "WEB", 0)]


def test_kept_out_counts_rows_per_rule_as_the_sync_decides_them():
    rules = {r.rule: r for r in routing.kept_out(SMALL_MAP, VOLUMES)}
    assert list(rules) == ["backend", "insights", "rare"]  # file order, every exclusion rule
    assert (rules["backend"].rows, rules["insights"].rows, rules["rare"].rows) == (40, 50, 5)
    assert rules["insights"].share == 50 / 1000 and rules["insights"].top == ("ViewInsights",)  # ViewInsightsX is sent (exact name)
    assert rules["backend"].names == "names like * (from BACKEND)" and rules["rare"].names == "NewOrgCreated"
    held = datamap.parse(SMALL_MAP_TEXT_HOLD, "hold.yaml")
    assert [r.rule for r in routing.kept_out(held, [("Mystery", "WEB", 7)])][-1] == datamap.UNKNOWN_HELD


SMALL_MAP_TEXT_HOLD = """
unknown_events: hold
rules:
  - {id: ui, action: send, note: ui, events: [ViewBlob]}
"""


def test_families_say_amplitude_or_looker_only_from_the_map():
    events = [catalogue.CatalogueEvent("ViewBlob", "files", ("WEB",)), catalogue.CatalogueEvent("SearchSubmitted", "search", ("WEB", "BACKEND")),
              catalogue.CatalogueEvent("SearchLatency", "search", ("BACKEND",)),
              catalogue.CatalogueEvent("ViewInsights", "insights", ("WEB",)), catalogue.CatalogueEvent("NewOrgCreated", "settings", ("WEB",)),
              catalogue.CatalogueEvent("ViewRepogroup:<name>", "search", ("WEB",))]
    volumes = VOLUMES + [("ViewRepogroup:python", "WEB", 7)]
    got = {f.name: f for f in routing.families(SMALL_MAP, volumes, events)}
    assert got["files"].lives_in == "Amplitude" and got["files"].rows_sent == 600
    assert got["insights"].lives_in == "Looker only" and got["insights"].rows_kept_out == {"insights": 50}
    assert got["settings"].lives_in == "Looker only"
    # SearchLatency (backend) is kept out, SearchSubmitted is sent; ViewRepogroup:python is placed by its pattern.
    assert got["search"].lives_in == "Amplitude, part Looker only"
    assert (got["search"].rows_sent, got["search"].rows_kept_out) == (302, {"backend": 40})
    assert (got["search"].types_sent, got["search"].types_kept_out) == (2, 1)
    assert got[catalogue.UNCATALOGUED].rows_sent == 10  # ViewInsightsX, and Mystery with no rows


def test_in_amplitude_is_written_from_the_config_and_the_map():
    config = configuration.load({"amplitude_start_date": "2021-10-01", "time_zone": "America/New_York"}, env={})
    text = routing.in_amplitude(config, SMALL_MAP)
    assert "Sourcegraph Cloud UI events from 2021-10-01" in text and "**America/New_York**" in text
    assert "`ui`: UI events for product questions." in text and "`small.yaml`" in text and SMALL_MAP.version in text
    assert "the data map shipped with ampkit" in routing.in_amplitude(config, datamap.load())


def test_looker_only_lists_sources_and_the_excluded_rows(table):
    text = routing.looker_only(table, routing.kept_out(SMALL_MAP, VOLUMES), 28)
    assert "**On-prem instance pings**" in text and "Salesforce" in text
    assert "95 rows in the last 28 days (`backend` 40, `insights` 50, `rare` 5)" in text


# --- the questions analysts type -------------------------------------------------------------

QUESTIONS = yaml.safe_load((Path(__file__).parent / "routing_questions.yaml").read_text())["questions"]
HOLDOUT = yaml.safe_load((Path(__file__).parent / "routing_questions_holdout.yaml").read_text())["questions"]
WITHOUT_UI = datamap.parse(resources.files("ampkit.resources").joinpath("datamap.yaml").read_text().replace(
    "  - id: product_ui\n    action: send\n", "  - id: product_ui\n    action: exclude\n    reason: low_traffic\n", 1), "without_ui")


@pytest.mark.parametrize("label", ["shipped", "without_ui"])
def test_the_questions_analysts_type_go_to_the_right_tool_and_never_confidently_to_the_wrong_one(label):
    table = routing.load(env={})
    data_map = datamap.load() if label == "shipped" else WITHOUT_UI
    entries = catalogue.events()
    vocabulary = routing.Vocabulary.of(table, entries)
    assert len(QUESTIONS) >= 80
    answers = [(q, routing.route(q["q"], table, data_map, dt.date(2020, 12, 1), entries, vocabulary)) for q in QUESTIONS]
    key = "expect" if label == "shipped" else "without_ui"
    misses = [(q["q"], q.get(key, q["expect"]), r) for q, r in answers if r.answer != q.get(key, q["expect"])]
    assert len(misses) <= 0.05 * len(QUESTIONS), [(q, want, r.answer) for q, want, r in misses]
    # A miss may only ever be "not sure": never a confident wrong tool.
    assert [(q, want, r.answer) for q, want, r in misses if r.confident] == []
    # Every answer says which fact decided it.
    assert all(r.facts and r.decided_by for _, r in answers)
    if label == "without_ui":
        flipped = [q["q"] for q in QUESTIONS if q.get("without_ui", q["expect"]) != q["expect"]]
        assert len(flipped) >= 40


def test_before_the_start_date_is_looker_and_a_period_across_it_is_both():
    table, m = routing.load(env={}), datamap.load()
    early = routing.route("searches in November 2020", table, m, dt.date(2020, 12, 1))
    assert early.answer == "Looker" and early.decided_by == "time" and "2020-12-01" in early.facts[0]
    across = routing.route("searches in 2020", table, m, dt.date(2020, 12, 1))
    assert across.answer == "both" and any("starts before Amplitude's first day" in f for f in across.facts)
    later = routing.route("searches in November 2020", table, m, dt.date(2020, 11, 1))
    assert later.answer == "Amplitude", "the start date comes from the config"


def test_the_reconciliation_and_the_onboarding_page_say_the_same_of_every_family():
    from ampkit import chart, reconcile
    m = datamap.load()
    rows = [reconcile.Row(day=dt.date(2022, 3, 14), name=n, looker=10, amplitude=10 if sent else 0,
                          filtered={} if sent else {"rule": 10})
            for n, sent in (("hover", True), ("codeintel.lsifHover", False), ("ViewInsights", False), ("SearchSubmitted", True),
                            ("search.latencies.literal", False))]
    rec = reconcile.Reconciliation(dt.date(2022, 3, 14), dt.date(2022, 3, 14), "UTC", rows, [], m.version)
    table = chart.tool_matrix(rec, m).frame
    onboarding = {f.name: f.lives_in for f in routing.families(m, [])}
    assert dict(zip(table["family"], table["answered in"])) == {f: onboarding[f] for f in table["family"]}
    assert onboarding["code_intel"] == "Amplitude, part Looker only" and onboarding["code_insights"] == "Looker only"


def test_the_reviewers_questions_go_to_the_right_tool_too():
    table, m, entries = routing.load(env={}), datamap.load(), catalogue.events()
    vocabulary = routing.Vocabulary.of(table, entries)
    answers = [(q, routing.route(q["q"], table, m, dt.date(2020, 12, 1), entries, vocabulary)) for q in HOLDOUT]
    misses = [(q, r) for q, r in answers if r.answer != q["expect"]]
    assert len(misses) <= 0.05 * len(HOLDOUT), [(q["q"], q["expect"], r.answer) for q, r in misses]
    assert [(q["q"], r.answer) for q, r in misses if r.confident] == []
