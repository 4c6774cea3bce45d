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


def _safe_to_try(node: exp.Expression) -> exp.Expression:
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
    # FARM_FINGERPRINT only spreads keys over lanes here; DuckDB's HASH does the same job.
    if isinstance(node, exp.FarmFingerprint):
        return exp.Anonymous(this="HASH", expressions=node.expressions or [node.this])
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
    return tuple(t.transform(_safe_to_try).sql(dialect="duckdb") for t in trees if t is not None)


def bigquery_statements(name: str) -> tuple[str, ...]:
    """The query as BigQuery runs it: the whole file as one script."""
    return (text(name),)
