"""RESULTS.md from one run's measurements: the summary table (also printed), details, notes."""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

NOTES = Path(__file__).resolve().parent / "NOTES.md"


def n(x: float, digits: int = 0) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "n/a"
    return f"{x:,.{digits}f}"


def size(x: int) -> str:
    for unit, div in (("M", 1_000_000), ("k", 1_000)):
        if x >= div and x % (div // 10 or 1) == 0:
            v = x / div
            return f"{v:g}{unit}"
    return f"{x:,}"


def verdict(ok: bool | None) -> str:
    return "n/a" if ok is None else ("met" if ok else "**missed**")


def summary_rows(results: dict[str, Any], goals: dict[str, float], quick: bool) -> list[list[str]]:
    rows: list[list[str]] = []
    t = results.get("throughput")
    if t:
        for s, d in t["sizes"].items():
            m = d["methods"]
            amp, amp_off = m["ampkit_gzip"], m["ampkit"]
            label = f"{size(int(s))} events ({d['staged']:,} rows)"
            rows.append([f"1. Sync throughput, {label}: ampkit (default settings, gzip on)",
                         f"{n(amp['rows_per_s'])} rows/s ({n(amp['accepted_per_s'])} events accepted/s)", "", ""])
            rows.append([f"1. ... ampkit with gzip off", f"{n(amp_off['rows_per_s'])} rows/s ({amp_off['rows_per_s'] / amp['rows_per_s']:.2f}x gzip on)", "", ""])
            sdk = m["sdk"]
            ratio = amp["rows_per_s"] / sdk["rows_per_s"]
            rows.append([f"1. ... official SDK, batch mode, flush_queue_size={d['sdk_flush_queue_size']} (first {sdk['rows']:,} rows)",
                         f"{n(sdk['rows_per_s'])} rows/s; ampkit = **{ratio:.1f}x** the SDK", f">= {goals['sdk']:g}x",
                         verdict(ratio >= goals["sdk"])])
            naive = m["naive"]
            rows.append([f"1. ... naive requests loop (json.dumps, one batch at a time)",
                         f"{n(naive['rows_per_s'])} rows/s; ampkit = **{amp['rows_per_s'] / naive['rows_per_s']:.1f}x**", "", ""])
            for floor_name, mine, what in (("floor_gzip", amp, "gzip on vs the gzip'd floor"), ("floor", amp_off, "gzip off vs the raw floor")):
                fl = m[floor_name]
                r = mine["rows_per_s"] / fl["rows_per_s"]
                rows.append([f"1. ... floor ({'pre-gzipped' if floor_name == 'floor_gzip' else 'raw'} ready-made bodies, best of 2/4 threads); ampkit {what}",
                             f"{n(fl['rows_per_s'])} rows/s; ampkit = **{r:.2f}x** the floor", f">= {goals['floor']:g}x",
                             verdict(r >= goals["floor"])])
    mem = results.get("memory")
    if mem:
        sizes = sorted(mem["sizes"], key=int)
        vals = [mem["sizes"][s]["peak_mb"] for s in sizes]
        text = ", ".join(f"{size(int(s))}: {n(v)} MB" for s, v in zip(sizes, vals))
        flat = max(vals) / vals[0]
        rows.append([f"2. Peak RSS of one sync ({', '.join(size(int(s)) for s in sizes)} events)", text, "", ""])
        rows.append([f"2. ... growth from {size(int(sizes[0]))} to {size(int(sizes[-1]))}", f"**{flat:.2f}x**",
                     f"<= {goals['memory_flat']:g}x", verdict(flat <= goals["memory_flat"])])
        rows.append(["2. ... largest peak", f"**{n(max(vals))} MB**", f"< {goals['memory_mb']:g} MB", verdict(max(vals) < goals["memory_mb"])])
    p = results.get("pacing")
    if p:
        rows.append([f"3. Pacing: backfill of {size(p['events'])} events from {p['devices']} devices, {p['eps']:,} EPS per id over {p['window']} s",
                     f"{n(p['seconds'], 1)} s vs minimum {n(p['minimum']['with_floor'], 1)} s = **{p['ratio']:.2f}x**",
                     f"<= {goals['pacing_ratio']:g}x", verdict(p["ratio"] <= goals["pacing_ratio"])])
        rows.append(["3. ... requests answered 429", f"**{n(p['throttled'])} of {n(p['requests'])} ({p['throttled_share']:.2%})**",
                     f"< {goals['pacing_429']:.0%}", verdict(p["throttled_share"] < goals["pacing_429"])])
    r = results.get("reconcile")
    if r:
        for s, d in r["sizes"].items():
            rows.append([f"4. Reconciliation counting, {size(int(s))} event_logs rows: ampkit's 3 queries vs bare GROUP BY",
                         f"{n(d['ampkit'], 2)} s vs {n(d['bare'], 2)} s = **{d['ratio']:.2f}x**", f"<= {goals['recon_ratio']:g}x",
                         verdict(d["ratio"] <= goals["recon_ratio"])])
    sd = results.get("seeding")
    if sd:
        target = goals["seed_seconds"]
        scaled = target * sd["rows"] / 10_000_000
        rows.append([f"5. Seeding {sd['rows']:,} rows with seed.fill", f"**{n(sd['seconds'], 1)} s** ({n(sd['rows_per_s'])} rows/s)",
                     f"< {target:g} s for 10M" + ("" if sd["rows"] >= 10_000_000 else f" (pro rata {scaled:.1f} s)"),
                     verdict(sd["seconds"] < scaled)])
    ing = results.get("ingest")
    if ing:
        rows.append([f"6. Sandbox ingest, {ing['events_per_request']:,}-event batches ({ing['events']:,} events)",
                     f"**{n(ing['events_per_second'])} events/s**", f">= {n(goals['ingest_eps'])}/s",
                     verdict(ing["events_per_second"] >= goals["ingest_eps"])])
    nb = results.get("notebook")
    if nb:
        rows.append([f"7. Hourly sync of one seeded hour ({nb['hour_rows']:,} rows): papermill notebook / CLI / library",
                     f"{n(nb['notebook'], 2)} s / {n(nb['cli'], 2)} s / {n(nb['library'], 2)} s "
                     f"(notebook overhead **+{n(nb['overhead_vs_cli'], 2)} s** vs the CLI)", "(measured, no goal)", ""])
    bq = results.get("bigquery")
    if bq:
        rows.append(["8. BigQuery: jobs per hourly run (on the hour / real clock)",
                     f"**{bq['hourly_on_the_hour']['jobs']} / {bq['hourly_real_clock']['jobs']}**", "<= 7",
                     verdict(max(bq['hourly_on_the_hour']['jobs'], bq['hourly_real_clock']['jobs']) <= 7)])
        growth = bq["history_10x"]["bytes"] / bq["history_1x"]["bytes"]
        rows.append(["8. ... bytes of an hourly run at 10x history over 1x", f"**{growth:.2f}x**", "within 1.1x",
                     verdict(abs(growth - 1) <= 0.1)])
        if bq.get("five_minute_1x"):
            f1, f10 = bq["five_minute_1x"], bq["five_minute_10x"]
            rows.append(["8. ... a 5-minute run staging its own rows: jobs; bytes at 10x history over 1x",
                         f"**{f1['jobs']}**; **{f10['bytes'] / f1['bytes']:.2f}x**", "<= 8; within 1.1x",
                         verdict(max(f1["jobs"], f10["jobs"]) <= 8 and abs(f10["bytes"] / f1["bytes"] - 1) <= 0.1)])
        b = bq["backfill_100m"]
        rows.append(["8. ... backfill since 2020-12-01 of 100M rows: jobs, estimated wall time",
                     f"**{b['jobs']:,} jobs**, {b['seconds'] / 3600:,.1f} h", "a few hundred jobs",
                     verdict(b["jobs"] <= 500)])
    fr = results.get("freshness")
    if fr:
        rows.append([f"9. Freshness: a simulated {fr['hours']} h at a 5-minute cadence ({fr['runs']} runs, {fr['events']:,} events): "
                     "event to Amplitude p50 / p95",
                     f"{n(fr['p50_seconds'] / 60, 1)} min / **{n(fr['p95_seconds'] / 60, 1)} min**",
                     f"p95 <= {goals['freshness_p95_seconds'] / 60:g} min", verdict(fr["p95_seconds"] <= goals["freshness_p95_seconds"])])
        rows.append(["9. ... every row that arrived staged once, sent once (ledger, export)",
                     f"**{'yes' if fr['nothing_lost_nothing_twice'] else 'NO'}** ({fr['accepted']:,} accepted, "
                     f"{fr['stored_twice']} stored twice)", "nothing lost, nothing twice", verdict(fr["nothing_lost_nothing_twice"])])
    return rows


def table(rows: list[list[str]]) -> str:
    head = ["Figure (median of the runs)", "Result", "Goal", "Verdict"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def render(info: dict[str, Any], plan: dict[str, Any], results: dict[str, Any], *, quick: bool,
           goals: dict[str, float]) -> tuple[str, str]:
    summary = table(summary_rows(results, goals, quick))
    out = [f"# ampkit benchmark results{' (quick mode)' if quick else ''}", ""]
    if results.get("failed_sections"):
        out += [f"**Sections that failed in this run** (figures missing): {', '.join(results['failed_sections'])}.", ""]
    out.append(f"Produced by `./run bench{' --quick' if quick else ''}` (`python benchmarks/run.py"
               f"{' --quick' if quick else ''}`) on {info['date']} in {info['seconds'] / 60:.1f} minutes.")
    out.append("")
    if quick:
        out.append("**Quick mode**: small sizes and one run per figure (CI smoke run); the pacing backfill is scaled "
                   f"down to {plan['pacing']['events']:,} events from {plan['pacing']['devices']} devices with a "
                   f"{plan['pacing']['window']} s window at {plan['pacing']['eps']:,} EPS per id, memory uses "
                   f"{' and '.join(size(s) for s in plan['memory_sizes'])} instead of 100k/1M/10M, reconciliation "
                   f"{' and '.join(size(s) for s in plan['recon_sizes'])} rows, seeding {plan['seed_rows']:,} rows "
                   "(the 60 s goal is applied pro rata). Run without --quick for the real figures.")
        out.append("")
    out += ["## Machine", "",
            f"- CPU: {info['cpu'] or 'unknown'}, {info['cores']} cores; RAM {info['memory_mb']:,} MB; {info['os']}",
            f"- Python {info['python']}; " + ", ".join(f"{k} {v}" for k, v in info["versions"].items()),
            f"- ampkit commit: {info['commit'] or 'unknown'}",
            f"- Load average before / after the run: {', '.join(f'{x:.2f}' for x in info['load_before'])} / "
            f"{', '.join(f'{x:.2f}' for x in info['load_after'])} (the machine is shared; each timed part records the CPU "
            "other processes used meanwhile, in the detail tables)", ""]
    out += ["## Summary", "", summary, ""]
    out += details(results)
    if NOTES.exists():
        out += ["", NOTES.read_text().strip(), ""]
    return "\n".join(out) + "\n", summary


def details(results: dict[str, Any]) -> list[str]:
    out: list[str] = []
    t = results.get("throughput")
    if t:
        out += ["## 1. End-to-end sync throughput", "",
                "Same seeded, staged warehouse for every method (seven days of `seed.fill` traffic, one staging load), "
                "a fresh copy and a fresh sandbox process (DuckDB-file store) per run; rows/s = warehouse rows processed "
                "(each ends accepted, filtered by the data map or rejected) per second of wall time, so ratios are ratios "
                "of wall time for the same work. The SDK runs on the first rows of the window only (it is slow); its "
                "`flush_queue_size` was tuned in the same run (tries below).", ""]
        for s, d in t["sizes"].items():
            out += [f"### {size(int(s))} events: {d['staged']:,} staged rows, {d['bodies']} request bodies of "
                    f"{d['body_mb']:.2f} MB (gzip: {d['gzip_ratio']:.1f}x smaller)", "",
                    "| Method | rows/s | events accepted/s | seconds | rows | accepted | other CPU-s | runs (rows/s) |",
                    "|---|---|---|---|---|---|---|---|"]
            names = {"ampkit_gzip": "ampkit, gzip on (default)", "ampkit": "ampkit, gzip off", "sdk": "SDK (batch)",
                     "naive": "naive requests loop", "floor": "floor, raw bodies", "floor_gzip": "floor, gzip'd bodies"}
            for key, label in names.items():
                m = d["methods"][key]
                out.append(f"| {label} | {n(m['rows_per_s'])} | {n(m['accepted_per_s'])} | {n(m['seconds'], 2)} | "
                           f"{m['rows']:,} | {m['accepted']:,} | {n(m['other_cpu'], 1)} | "
                           f"{', '.join(n(r['rows_per_s']) for r in m['runs'])} |")
            out += ["", "SDK tuning (one try each): " + ", ".join(
                f"flush_queue_size={x['flush_queue_size']}: {n(x['rows_per_s'])} rows/s" for x in d["sdk_tuning"]), ""]
    mem = results.get("memory")
    if mem:
        out += ["## 2. Memory", "", "One sync over the whole staged backlog per run (every row loaded at once, the largest "
                "window a sync can meet), in a fresh process; peak RSS is the kernel's high-water mark of that process "
                "(`VmHWM`, /proc/self/status). `ru_maxrss` is shown too: Linux carries it over from the parent across "
                "fork+exec, so it reads the benchmark process's own size when that is larger. The sandbox runs in its own process.", "",
                "| Events | rows | peak RSS, VmHWM (MB) | ru_maxrss (MB) | sync seconds | runs (MB) |", "|---|---|---|---|---|---|"]
        for s, d in mem["sizes"].items():
            out.append(f"| {size(int(s))} | {d['rows']:,} | {n(d['peak_mb'])} | {n(d['maxrss_mb'])} | {n(d['seconds'], 1)} | "
                       f"{', '.join(n(r['vmhwm_mb']) for r in d['runs'])} |")
        out.append("")
    p = results.get("pacing")
    if p:
        m = p["minimum"]
        out += ["## 3. Pacing under real limits", "",
                f"{p['events']:,} events staged in one hour of event time, round-robin over {p['devices']} devices, "
                f"backfilled with `sync.run(config, start=, end=, yes=True)` against a sandbox enforcing {p['eps']:,} events "
                f"per second per id over {p['window']} s, the pacer set to the same limit (5% under it).", "",
                f"- Minimum the limits allow: each device has {math.ceil(p['events'] / p['devices']):,} events and may send "
                f"{p['eps'] * p['window']:,} per window, so its last events wait {n(m['by_limits'], 1)} s; the "
                f"{n(m['leftover_events'])} events left for after that cannot go faster than the floor for these bodies "
                f"({n(p['floor_rate'])} events/s, measured in this run): **{n(m['with_floor'], 1)} s** "
                f"({n(m['by_limits'], 1)} s counting the limits alone: {p['ratio_limits_only']:.2f}x).",
                f"- ampkit: **{n(p['seconds'], 1)} s** (runs: {', '.join(n(r['seconds'], 1) for r in p['runs'])}), "
                f"{n(p['requests'])} requests, {n(p['throttled'])} answered 429.", ""]
        if "without_pacer" in p:
            w = p["without_pacer"]
            out += [f"- The same backfill with the pacer off (429s handled by holding the throttled ids "
                    f"{p['window']} s, the sender's behaviour before the pacer): **{n(w['seconds'], 1)} s**, "
                    f"{w['throttled']} of {w['requests']} requests answered 429 ({w['throttled_share']:.1%}).", ""]
    r = results.get("reconcile")
    if r:
        out += ["## 4. Reconciliation counting", "",
                "`event_logs` generated with DuckDB `range()` (30 days, ~225 event names, all columns filled) plus the "
                "15-minute stage and outcome aggregates the hourly jobs would have kept; each query from a fresh connection.", "",
                "| event_logs rows | file | ampkit: recon_looker + recon_staged + recon_outcomes (s) | bare GROUP BY (s) | ratio | "
                "reconcile.run, counts only (s) | runs ampkit / bare |", "|---|---|---|---|---|---|---|"]
        for s, d in r["sizes"].items():
            out.append(f"| {int(s):,} | {d['gb']:.1f} GB | {n(d['ampkit'], 2)} | {n(d['bare'], 2)} | {d['ratio']:.2f}x | "
                       f"{n(d['reconcile_run'], 2)} | {', '.join(n(x, 2) for x in d['runs']['ampkit'])} / "
                       f"{', '.join(n(x, 2) for x in d['runs']['bare'])} |")
        out.append("")
        old = [(s, d["per_row_looker"]) for s, d in r["sizes"].items() if d.get("per_row_looker")]
        if old:
            out += ["The previous `recon_looker` (a time-zone conversion per row rather than per 15-minute bucket), "
                    "timed in the same run: " + ", ".join(f"{size(int(s))} rows: {n(v, 2)} s" for s, v in old) + ".", ""]
    sd = results.get("seeding")
    if sd:
        out += ["## 5. Seeding", "", f"`seed.fill` of {sd['rows']:,} rows (seven days) into a fresh DuckDB file: "
                f"median **{n(sd['seconds'], 1)} s** (runs: {', '.join(n(x['seconds'], 1) for x in sd['runs'])}).", ""]
    ing = results.get("ingest")
    if ing:
        out += ["## 6. Sandbox ingest", "", f"`benchmarks/sandbox_ingest.py` (2 threads, keep-alive, DuckDB-file store, "
                f"{ing['mean_body_bytes'] / 1e6:.2f} MB bodies): median **{n(ing['events_per_second'])} events/s**; runs: "
                + ", ".join(f"{n(x['events_per_second'])}/s (server {x['server_cpu_seconds']} CPU-s, other processes "
                            f"{x['other_processes_cpu_seconds']} CPU-s)" for x in ing["runs"]) + ".", ""]
    nb = results.get("notebook")
    if nb:
        out += ["## 7. Notebook overhead", "",
                f"One seeded hour ({nb['hour_rows']:,} rows, {nb['accepted']:,} events accepted), fresh warehouse copy and "
                "sandbox per run.", "", "| How | seconds (median) | runs |", "|---|---|---|"]
        for how, label in (("notebook", "`runner.run(\"hourly_sync\")`: papermill, kernel, executed notebook + HTML report"),
                           ("cli", "`python -m ampkit sync` (a fresh process)"), ("library", "`sync.run` in-process")):
            out.append(f"| {label} | {n(nb[how], 2)} | {', '.join(n(x['seconds'], 2) for x in nb['runs'][how])} |")
        out.append("")
    out += bigquery_details(results.get("bigquery"))
    out += freshness_details(results.get("freshness"))
    pr = results.get("profile")
    if pr:
        ph = pr["phases"]
        out += ["## Profile: where ampkit's sync time goes (measured in this run)", "",
                f"One sync of {ph['rows']:,} rows ({ph['accepted']:,} events accepted), gzip off: **{n(ph['wall'], 1)} s** wall, "
                f"{n(ph['cpu'], 1)} CPU-s in the ampkit process (DuckDB runs inside it, on both cores), "
                f"{n(ph['sandbox_cpu'], 1)} CPU-s in the sandbox.", "",
                "| Part | wall s | ampkit CPU-s | calls |", "|---|---|---|---|"]
        for part in ph["parts"]:
            out.append(f"| {part['part']} | {n(part['wall'], 2)} | {n(part['cpu'], 2)} | {part['calls'] or ''} |")
        out += ["", "Ablations (each measured in this run, on the same warehouse):", ""]
        for name, v in pr["extract_sql"].items():
            out.append(f"- transform query over the whole window, {name}: {n(v['seconds'], 2)} s")
        out.append(f"- sync without event-time slices (the whole backlog as one window): {n(pr['without_slices']['seconds'], 1)} s "
                   f"({n(pr['without_slices']['rows_per_s'])} rows/s); peak RSS {n(pr['memory_without_slices']['vmhwm_mb'])} MB")
        out.append(f"- sync without holding the warehouse open per slice (a file open + checkpoint per query): "
                   f"{n(pr['without_held']['seconds'], 1)} s ({n(pr['without_held']['rows_per_s'])} rows/s)")
        if "without_sending" in pr:
            out.append(f"- sync with sending made free (every event accepted at once, no HTTP, no sandbox): "
                       f"{n(pr['without_sending']['seconds'], 1)} s ({n(pr['without_sending']['rows_per_s'])} rows/s), "
                       "the most any tuning of the sender could give")
        out.append("")
    return out


BEFORE = Path(__file__).resolve().parent / "bigquery_before.json"


def bigquery_details(bq: dict[str, Any] | None) -> list[str]:
    """Section 8: jobs and bytes on the BigQuery stand-in, beside the recorded figures of the design before."""
    if not bq:
        return []
    before = json.loads(BEFORE.read_text()) if BEFORE.exists() else {}

    def cell(d: dict | None, key: str, fmt=lambda v: f"{v:,}") -> str:
        return fmt(d[key]) if d and key in d else "n/a"
    rows = [
        ("Jobs per hourly run, clock on the hour (300 new rows)", "hourly_on_the_hour", "jobs"),
        ("Jobs per hourly run, a real clock (seconds past the hour)", "hourly_real_clock", "jobs"),
        ("... windows the real clock made of the hour", "hourly_real_clock", "windows"),
        ("Load jobs per hourly run (count against 1,500/table/day)", "hourly_on_the_hour", "loads"),
        ("Bytes read by an hourly run, 14 days of history", "history_1x", "bytes"),
        ("Bytes read by an hourly run, 140 days of history (10x)", "history_10x", "bytes"),
        ("The day's first run, rolling up a day of row outcomes: jobs", "rollup_10x", "jobs"),
        ("... of which the roll-up", "rollup_10x", "rollup_jobs"),
        ("... bytes the roll-up read, 14 days of history", "rollup_1x", "rollup_bytes"),
        ("... bytes the roll-up read, 140 days of history (10x)", "rollup_10x", "rollup_bytes"),
        ("Backfill of 3 days (3,600 rows in 72 loaded hours): jobs", "backfill_3_days", "jobs"),
        ("... its load jobs", "backfill_3_days", "loads"),
        ("... the same backfill again (all done): jobs", "backfill_3_days_again", "jobs"),
        ("Backfill since 2020-12-01 of 100M rows: windows", "backfill_100m", "windows"),
        ("... jobs", "backfill_100m", "jobs"),
        ("A 5-minute run that stages its own rows (60 new events): jobs", "five_minute_1x", "jobs"),
        ("... bytes, 14 days of history (staging reads 2 h of event_logs)", "five_minute_1x", "bytes"),
        ("... bytes, 140 days of history (10x)", "five_minute_10x", "bytes"),
        ("... the hour's first run (staging sweeps 72 h): bytes, 14 days", "five_minute_sweep", "bytes"),
    ]
    out = ["## 8. The sync at BigQuery scale (jobs and bytes on the stand-in)", "",
           "Counted by `benchmarks/bigquery.py` through the real google-cloud-bigquery client against "
           "`tests/bigquery_standin.py`, which bills as BigQuery's on-demand pricing does (columns named, partitions "
           "not pruned) and counts jobs, statements and load jobs; counts, not timings, so they do not depend on the "
           f"machine. *Before*: {before.get('ampkit', 'not recorded')}.", "",
           "| Figure | before | now |", "|---|---|---|"]
    for label, key, field in rows:
        out.append(f"| {label} | {cell(before.get(key), field)} | {cell(bq.get(key), field)} |")
    for label, d in (("before", before.get("backfill_100m")), ("now", bq.get("backfill_100m"))):
        if d:
            out.append(f"| ... wall time {label} ({d['how']}; 2 s a job, 5,000 events/s to Amplitude) | "
                       + (f"{d['seconds'] / 3600:,.1f} h | |" if label == "before" else f" | {d['seconds'] / 3600:,.1f} h |"))
    growth = [d["history_10x"]["bytes"] / d["history_1x"]["bytes"] for d in (before, bq)
              if d.get("history_1x") and d.get("history_10x")]
    if len(growth) == 2:
        out += ["", f"Bytes of an hourly run at 10x history over 1x: before **{growth[0]:.2f}x**, now **{growth[1]:.2f}x** "
                "(the test `tests/test_sync_bigquery.py` holds it within 10%)."]
    out += ["", "The seventh job of an hourly run is the volume guardrail's history (`docs/GUARDRAIL.md`): a few hourly "
            "partitions of `ampkit_volumes` for each of the last weeks, so it too follows the window, not the history. "
            "The synthetic history is sparser than the measured hour, a flood to the guardrail, so the measured runs "
            "accept it (`--accept-volume all`); benchmarks/NOTES.md has the job-by-job change it brought."]
    return out + [""]


def freshness_details(fr: dict[str, Any] | None) -> list[str]:
    """Section 9: a simulated day at a 5-minute cadence (benchmarks/freshness.py)."""
    if not fr:
        return []
    def minutes(v):
        return "n/a" if v is None else f"{v:.0f} s" if v < 120 else f"{v / 60:,.1f} min"
    return ["## 9. Freshness at a 5-minute cadence", "",
            f"`benchmarks/freshness.py`: a fixed clock steps through {fr['hours']} h every 5 minutes on the embedded "
            "warehouse and a sandbox in its own process; each step is one run with the settings "
            "`ampkit schedule --interval-minutes 5` writes (it stages its own rows). Every row is committed to "
            "event_logs after a log-normal delay (median 20 s, capped at 30 min) and 1% of rows 2 to 30 hours late. "
            "The lag is what ampkit records in `ampkit_lags` (event timestamp to Amplitude's acceptance, by the run's "
            "clock plus the seconds the run really took), over every run but the first, which sent the backlog "
            "before the simulated period.", "",
            "| Figure | Value |", "|---|---|",
            f"| Runs (statuses) | {fr['runs']} ({', '.join(f'{k} {v}' for k, v in fr['statuses'].items())}) |",
            f"| Events accepted in them | {fr['events']:,} |",
            f"| Event to Amplitude: p50 / p95 / p99 / max | {minutes(fr['p50_seconds'])} / {minutes(fr['p95_seconds'])} / "
            f"{minutes(fr['p99_seconds'])} / {minutes(fr['max_seconds'])} |",
            f"| Staged to Amplitude: p95 | {minutes(fr['loaded_p95_seconds'])} |",
            f"| Wall time of a run: p50 / p95 | {fr['run_wall_p50_seconds']:.2f} s / {fr['run_wall_p95_seconds']:.2f} s |",
            f"| Rows that arrived in the period / staged / staged twice | {fr['arrived']:,} / {fr['staged']:,} / {fr['staged_twice']} |",
            f"| Staged rows in the windows / with one outcome / with two | {fr['rows_in_windows']:,} / {fr['decided'] - fr['decided_twice']:,} / {fr['decided_twice']} |",
            f"| Accepted (ledger) / by the runs / insert_ids in Amplitude's export / stored twice | "
            f"{fr['accepted']:,} / {fr['accepted_by_runs']:,} / {fr['exported_ids']:,} / {fr['stored_twice']} |",
            "", "The max is the rows committed hours late: they are sent by the first run after they arrive, and "
            "the lookback of that run reaches them.", ""]
