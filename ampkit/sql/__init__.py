"""The SQL files: BigQuery Standard SQL, the production dialect, translated for DuckDB by sqlglot."""
from __future__ import annotations

import functools
import logging
import re
from pathlib import Path

import sqlglot
from sqlglot import exp

from ampkit.errors import WarehouseError

HERE = Path(__file__).parent

# Every query parameter, with the BigQuery type the warehouse binds it as (a NULL too: BigQuery
# types a parameter by its declaration, never by its value). The ZetaSQL gate in tests/test_sql.py
# analyses each file with these types, and a parameter used in a file but missing here fails it.
PARAMETER_TYPES: dict[str, str] = {
    **dict.fromkeys([
        "run_time", "since", "until", "now", "expires_at", "start_ts", "end_ts", "scan_end", "start_time",
        "started_at", "finished_at", "window_start", "window_end", "event_start", "event_end",
        "lookback_start", "lag_cutoff", "watermark", "dedup_start", "future_limit", "horizon", "stage_since",
        "kept_from", "rollup_before", "hour_from", "hour_to", "accepted_at"], "TIMESTAMP"),
    "amplitude_start_date": "DATE",
    **dict.fromkeys([
        "extracted", "sent", "accepted", "filtered_total", "rejected_total", "requests", "retries", "limit",
        "lanes", "max_depth", "max_properties_bytes", "min_id_length", "window_seconds", "weeks"], "INT64"),
    "duration_seconds": "FLOAT64",
    "move_watermark": "BOOL",
    **dict.fromkeys([
        "run_id", "name", "holder", "mode", "host", "data_map_version", "notebook_path", "status", "error",
        "filtered", "rejected", "recon_id", "tz", "depth_pattern", "flags_depth_pattern", "schema_version",
        "approved_by", "note"], "STRING"),
    **dict.fromkeys(["steps", "active_events", "reasons", "blocklist", "names",
                     # The data map's decisions and a slice's rejected rows, as parallel arrays.
                     "key_names", "key_sources", "key_actions", "key_rules", "key_reasons",
                     "reject_insert_ids", "reject_names", "reject_event_times", "reject_loaded_ats", "reject_reasons",
                     "reject_details", "reject_events",
                     # Volume departures an operator accepted for a run's window, and why.
                     "accepted_volumes", "accepted_notes"], "ARRAY<STRING>"),
    "reject_ids": "ARRAY<INT64>",
    # A slice's lag histogram (lag.py), as parallel arrays.
    **dict.fromkeys(["lag_hours", "lag_newest"], "ARRAY<TIMESTAMP>"),
    # The ledger's holes (reconcile.holes): loaded_at ranges (start, end] no scheduled run covered.
    **dict.fromkeys(["gap_starts", "gap_ends"], "ARRAY<TIMESTAMP>"),
    "lag_measures": "ARRAY<STRING>",
    **dict.fromkeys(["lag_buckets", "lag_counts"], "ARRAY<INT64>"),
}

# sqlglot warns on BigQuery-only table options (PARTITION BY, CLUSTER BY) it drops for DuckDB;
# dropping them is right, since they only tune storage, so the warning is noise.
logging.getLogger("sqlglot").setLevel(logging.ERROR)


def path(name: str) -> Path:
    """The file behind a query name (`extract` -> ampkit/sql/extract.sql); a path is kept as is."""
    p = Path(name)
    return p if p.suffix == ".sql" else HERE / f"{name}.sql"


@functools.lru_cache(maxsize=None)
def text(name: str) -> str:
    """The BigQuery text of a query, as a user would paste it in the console."""
    p = path(name)
    try:
        return p.read_text(encoding="utf-8")
    except OSError as exc:
        raise WarehouseError(f"SQL file {p} cannot be read: {exc.strerror}") from None


def parameters(name: str) -> list[str]:
    """The query parameters a file uses (without the @), each once, as sqlglot finds them."""
    trees = sqlglot.parse(text(name), read="bigquery")
    return list(dict.fromkeys(node.name for tree in trees if tree is not None for node in tree.find_all(exp.Parameter)))


def _portable(node: exp.Expression) -> exp.Expression:
    """Rewrite the constructs whose BigQuery meaning sqlglot's DuckDB output loses (one place)."""
    # DIV(a + b, c) becomes `a + b // c` in sqlglot 30.31: the function's parentheses are lost and
    # `//` binds tighter than `+`. Each operand that is not atomic, and the division itself, is
    # parenthesised, whatever the generator does with precedence.
    if isinstance(node, exp.IntDiv):
        for key in ("this", "expression"):
            arg = node.args.get(key)
            if isinstance(arg, (exp.Binary, exp.Unary)) and not isinstance(arg, exp.Paren):
                node.set(key, exp.Paren(this=arg.copy()))
        return node if isinstance(node.parent, exp.Paren) else exp.Paren(this=node.copy())
    # TIMESTAMP_MICROS/MILLIS are instants in BigQuery, but sqlglot writes DuckDB's MAKE_TIMESTAMP /
    # EPOCH_MS, which return a TIMESTAMP without a zone: a Python caller then compares a naive
    # datetime with aware ones and matches nothing. Read as UTC, they are the same instant.
    if (isinstance(node, exp.UnixToTime) and node.args.get("scale") is not None
            and node.args["scale"].name in ("3", "6") and not isinstance(node.parent, exp.AtTimeZone)):
        return exp.AtTimeZone(this=node.copy(), zone=exp.Literal.string("UTC"))
    # BigQuery's SAFE. prefix (NULL instead of an error) has no DuckDB spelling in sqlglot;
    # DuckDB's TRY() has the same meaning.
    if isinstance(node, exp.SafeFunc):
        if isinstance(node.this, exp.ParseJSON):
            # TRY() falls back to row-by-row evaluation with an exception per invalid value,
            # which made SAFE.PARSE_JSON most of the extract's cost; json_valid() first keeps
            # TRY's meaning (NULL for invalid JSON) without raising.
            arg = node.this.this
            return exp.case().when(exp.Anonymous(this="JSON_VALID", expressions=[arg.copy()]),
                                   exp.Anonymous(this="TRY", expressions=[node.this]))
        return exp.Anonymous(this="TRY", expressions=[node.this])
    # COUNTIF over no rows is 0 in BigQuery but NULL in DuckDB's COUNT_IF, so a check like
    # `IF(COUNTIF(...) = 0, 1, ERROR(...))` over an empty table would pass there, silently (found by
    # the ZetaSQL gate on sync_finalize.sql). COUNT of a CASE is 0 over no rows in both.
    if isinstance(node, exp.CountIf):
        return exp.Count(this=exp.case().when(node.this.copy(), exp.Literal.number(1)))
    # FARM_FINGERPRINT only spreads keys over lanes here (the lane numbers are the engine's own;
    # tests/test_sql.py checks their properties, not their values); DuckDB's HASH does the same job.
    # HASH is an unsigned 64-bit number: halved, it is an INT64 as FARM_FINGERPRINT's result is.
    if isinstance(node, exp.FarmFingerprint):
        hashed = exp.Anonymous(this="HASH", expressions=node.expressions or [node.this])
        return exp.Cast(this=exp.Paren(this=exp.BitwiseRightShift(this=hashed, expression=exp.Literal.number(1))),
                        to=exp.DataType.build("BIGINT"))
    return node


@functools.lru_cache(maxsize=None)
def duckdb_statements(name: str) -> tuple[str, ...]:
    """The query as DuckDB statements (one per `;`), translated from BigQuery by sqlglot."""
    try:
        trees = sqlglot.parse(text(name), read="bigquery")
    except sqlglot.errors.ParseError as exc:
        # sqlglot's message spans lines and carries terminal colour codes; keep one plain line.
        detail = re.sub(r"\x1b\[[0-9;]*m", "", str(exc)).strip().splitlines()[0]
        raise WarehouseError(f"{path(name).name} is not valid BigQuery SQL: {detail}") from None
    return tuple(portable(t).sql(dialect="duckdb") for t in trees if t is not None)


def portable(tree: exp.Expression) -> exp.Expression:
    """`tree` with _portable's rewrites applied bottom-up (a rewritten node's subtree is already
    rewritten when it is wrapped or copied, which sqlglot's top-down transform does not ensure)."""
    for node in reversed(list(tree.walk(bfs=False))):
        new = _portable(node)
        if new is not node:
            if node is tree:
                tree = new
            else:
                node.replace(new)
    return tree


def bigquery_statements(name: str) -> tuple[str, ...]:
    """The query as BigQuery runs it: the whole file as one script."""
    return (text(name),)
