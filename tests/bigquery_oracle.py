"""BigQuery's oracle, offline: Google's ZetaSQL analyzer (would BigQuery accept this file?) and its
reference evaluator (what would BigQuery return over these rows?), through the `zetasql` package
(ZetaSQL compiled to WebAssembly, run in-process by wasmtime).

The catalog is built from the project's own `CREATE TABLE` files and the parameters are typed as the
warehouse binds them (`ampkit.sql.PARAMETER_TYPES`), so a file passes only as BigQuery would see it.
The evaluator runs one statement at a time over table contents handed to it: a query answers rows,
DML answers the rows it changed, and this module applies those changes to its copy of the tables,
so a multi-statement script runs as BigQuery's would (one session, no other writer).
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import json
import re
from pathlib import Path
from typing import Any

import sqlglot
from sqlglot import exp

from ampkit import sql as sqlfiles

ROOT = Path(__file__).resolve().parent.parent
SCHEMA_FILES = [sqlfiles.path("schema_event_logs"), sqlfiles.path("schema_state"), sqlfiles.path("schema_seed")]
ROW_ID = "__oracle_row"  # a pseudo-column (invisible to SELECT * and INSERT) that tells DELETE/UPDATE which row
EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)

# BigQuery's language as Google's zetasql-toolkit declares it (BigQueryLanguageOptions), with QUALIFY
# reserved. Names this ZetaSQL build does not know are skipped (the check below lists them).
BIGQUERY_FEATURES = """
ALLOW_MISSING_PATH_EXPRESSION_IN_ALTER_DDL ALTER_COLUMN_SET_DATA_TYPE ALTER_TABLE_RENAME_COLUMN ANALYTIC_FUNCTIONS
ANONYMIZATION BIGNUMERIC_TYPE CBRT_FUNCTIONS CREATE_EXTERNAL_TABLE_WITH_CONNECTION
CREATE_EXTERNAL_TABLE_WITH_PARTITION_COLUMNS CREATE_EXTERNAL_TABLE_WITH_TABLE_ELEMENT_LIST
CREATE_MATERIALIZED_VIEW_CLUSTER_BY CREATE_MATERIALIZED_VIEW_PARTITION_BY CREATE_SNAPSHOT_TABLE
CREATE_TABLE_AS_SELECT_COLUMN_LIST CREATE_TABLE_CLONE CREATE_TABLE_CLUSTER_BY CREATE_TABLE_COPY
CREATE_TABLE_FIELD_ANNOTATIONS CREATE_TABLE_FUNCTION CREATE_TABLE_LIKE CREATE_TABLE_NOT_NULL CREATE_TABLE_PARTITION_BY
CREATE_VIEW_WITH_COLUMN_LIST DML_UPDATE_WITH_JOIN ENCRYPTION FOREIGN_KEYS GEOGRAPHY GROUP_BY_ROLLUP INTERVAL_TYPE
INVERSE_TRIG_FUNCTIONS JSON_ARRAY_FUNCTIONS JSON_TYPE JSON_VALUE_EXTRACTION_FUNCTIONS NAMED_ARGUMENTS NUMERIC_TYPE
PARAMETERIZED_TYPES PARAMETERS_IN_GRANTEE_LIST ROUND_WITH_ROUNDING_MODE TABLESAMPLE TABLE_VALUED_FUNCTIONS
TEMPLATE_FUNCTIONS TIMESTAMP_NANOS TIME_BUCKET_FUNCTIONS UNENFORCED_PRIMARY_KEYS V_1_1_HAVING_IN_AGGREGATE
V_1_1_LIMIT_IN_AGGREGATE V_1_1_NULL_HANDLING_MODIFIER_IN_AGGREGATE V_1_1_NULL_HANDLING_MODIFIER_IN_ANALYTIC
V_1_1_ORDER_BY_IN_AGGREGATE V_1_1_SELECT_STAR_EXCEPT_REPLACE V_1_2_CIVIL_TIME V_1_2_SAFE_FUNCTION_CALL
V_1_2_WEEK_WITH_WEEKDAY V_1_3_ADDITIONAL_STRING_FUNCTIONS V_1_3_ALLOW_DASHES_IN_TABLE_NAME
V_1_3_ALLOW_REGEXP_EXTRACT_OPTIONALS V_1_3_ANNOTATION_FRAMEWORK V_1_3_CASE_STMT V_1_3_COLLATION_SUPPORT
V_1_3_COLUMN_DEFAULT_VALUE V_1_3_CONCAT_MIXED_TYPES V_1_3_DATE_ARITHMETICS V_1_3_DATE_TIME_CONSTRUCTORS
V_1_3_DECIMAL_ALIAS V_1_3_EXTENDED_DATE_TIME_SIGNATURES V_1_3_EXTENDED_GEOGRAPHY_PARSERS V_1_3_FORMAT_IN_CAST
V_1_3_FOR_IN V_1_3_IS_DISTINCT V_1_3_LIKE_ANY_SOME_ALL V_1_3_NULLS_FIRST_LAST_IN_ORDER_BY
V_1_3_OMIT_INSERT_COLUMN_LIST V_1_3_PIVOT V_1_3_QUALIFY V_1_3_REMOTE_FUNCTION V_1_3_REPEAT V_1_3_SCRIPT_LABEL
V_1_3_UNNEST_AND_FLATTEN_ARRAYS V_1_3_UNPIVOT V_1_3_WITH_GROUP_ROWS V_1_3_WITH_RECURSIVE
""".split()

STATEMENT_KINDS = """
ADD_CONSTRAINT_ACTION ALTER_ENTITY_STMT ALTER_MATERIALIZED_VIEW_STMT ALTER_MODEL_STMT ALTER_SCHEMA_STMT
ALTER_TABLE_STMT ALTER_VIEW_STMT ASSERT_STMT ASSIGNMENT_STMT AUX_LOAD_DATA_STMT BEGIN_STMT CALL_STMT COMMIT_STMT
CREATE_ENTITY_STMT CREATE_EXTERNAL_TABLE_STMT CREATE_FUNCTION_STMT CREATE_INDEX_STMT CREATE_MATERIALIZED_VIEW_STMT
CREATE_MODEL_STMT CREATE_PROCEDURE_STMT CREATE_ROW_ACCESS_POLICY_STMT CREATE_SCHEMA_STMT CREATE_SNAPSHOT_TABLE_STMT
CREATE_TABLE_AS_SELECT_STMT CREATE_TABLE_FUNCTION_STMT CREATE_TABLE_STMT CREATE_VIEW_STMT DELETE_STMT
DROP_CONSTRAINT_ACTION DROP_FUNCTION_STMT DROP_MATERIALIZED_VIEW_STMT DROP_ROW_ACCESS_POLICY_STMT
DROP_SEARCH_INDEX_STMT DROP_SNAPSHOT_TABLE_STMT DROP_STMT DROP_TABLE_FUNCTION_STMT EXECUTE_IMMEDIATE_STMT
EXPORT_DATA_STMT EXPORT_MODEL_STMT GRANT_STMT INSERT_STMT MERGE_STMT QUERY_STMT REVOKE_STMT ROLLBACK_STMT
TRUNCATE_STMT UPDATE_STMT
""".split()


class OracleError(Exception):
    """ZetaSQL refused or failed a statement; `finding` says where."""

    def __init__(self, finding: "Finding"):
        super().__init__(str(finding))
        self.finding = finding


@dataclasses.dataclass(frozen=True)
class Finding:
    file: str
    line: int
    column: int
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}: {self.message}"


@dataclasses.dataclass(frozen=True)
class Statement:
    text: str
    offset: int  # byte offset of the statement in its file
    kind: str  # the resolved node's field name, e.g. resolved_query_stmt_node


@dataclasses.dataclass
class Result:
    columns: list[str]
    rows: list[tuple] | None  # None when the last statement is DML (it answers no rows on BigQuery)
    tables: dict[str, list[dict]]


@dataclasses.dataclass(frozen=True)
class TableSchema:
    columns: list[tuple[str, str]]  # (column, BigQuery type), in order
    required: set[str]  # the columns declared NOT NULL
    partition: str | None  # the column of PARTITION BY DATE(column)


def schema(files=SCHEMA_FILES) -> dict[str, TableSchema]:
    """The project's tables, from its CREATE TABLE statements."""
    tables: dict[str, TableSchema] = {}
    for path in files:
        for tree in sqlglot.parse(Path(path).read_text(encoding="utf-8"), read="bigquery"):
            if not (isinstance(tree, exp.Create) and isinstance(tree.this, exp.Schema)):
                continue
            defs = [c for c in tree.this.expressions if isinstance(c, exp.ColumnDef)]
            partition = tree.find(exp.PartitionedByProperty)
            tables[tree.this.this.name] = TableSchema(
                columns=[(c.name, c.args["kind"].sql("bigquery").upper()) for c in defs],
                required={c.name for c in defs
                          if any(isinstance(k.args.get("kind"), exp.NotNullColumnConstraint) for k in c.constraints)},
                partition=next(partition.this.find_all(exp.Column)).name if partition is not None else None)
    return tables


def _location(message: str, text: str, offset: int) -> tuple[int, int, str]:
    """(line, column, message) from ZetaSQL's ' [at L:C]' suffix, else the statement's start."""
    m = re.search(r"\s*\[at (\d+):(\d+)\]\s*$", message)
    if m:
        return int(m.group(1)), int(m.group(2)), message[:m.start()]
    before = text.encode("utf-8")[:offset].decode("utf-8", "replace")
    return before.count("\n") + 1, len(before) - before.rfind("\n"), message


class Oracle:
    """One ZetaSQL instance (≈15 s to start: make one per test session)."""

    def __init__(self, parameter_types: dict[str, str] | None = None):
        import zetasql.wasi
        from zetasql.core.wasm_client import WasmClient
        from zetasql.wasi._pb2.zetasql.local_service import local_service_pb2
        from zetasql.wasi._pb2.zetasql.proto import options_pb2 as proto_options, simple_catalog_pb2
        from zetasql.wasi._pb2.zetasql.public import options_pb2, type_pb2, value_pb2
        from zetasql.wasi._pb2.zetasql.resolved_ast import resolved_node_kind_pb2

        self.pb = local_service_pb2
        self.types = type_pb2
        self.values = value_pb2
        self.client = WasmClient(wasm_path=zetasql.wasi.get_wasm_path())
        self.tables = {name: t.columns for name, t in schema().items()}
        self.parameter_types = dict(parameter_types or sqlfiles.PARAMETER_TYPES)

        language = proto_options.LanguageOptionsProto(
            name_resolution_mode=options_pb2.NAME_RESOLUTION_DEFAULT, product_mode=options_pb2.PRODUCT_EXTERNAL)
        known = set(options_pb2.LanguageFeature.keys())
        self.unknown_features = [f for f in BIGQUERY_FEATURES if f"FEATURE_{f}" not in known]
        language.enabled_language_features.extend(
            options_pb2.LanguageFeature.Value(f"FEATURE_{f}") for f in BIGQUERY_FEATURES if f"FEATURE_{f}" in known)
        kinds = set(resolved_node_kind_pb2.ResolvedNodeKind.keys())
        language.supported_statement_kinds.extend(
            resolved_node_kind_pb2.ResolvedNodeKind.Value(f"RESOLVED_{k}") for k in STATEMENT_KINDS
            if f"RESOLVED_{k}" in kinds)
        language.reserved_keywords.append("QUALIFY")
        self.language = language
        self.options = proto_options.AnalyzerOptionsProto(
            language_options=language, default_timezone="UTC",
            error_message_mode=options_pb2.ERROR_MESSAGE_ONE_LINE)
        for name, kind in self.parameter_types.items():
            self.options.query_parameters.add(name=name, type=self.type_proto(kind))
        self.catalog = self._catalog(simple_catalog_pb2, row_ids=False)
        self.eval_catalog = self._catalog(simple_catalog_pb2, row_ids=True)
        self._row = 0

    # --- types and values ------------------------------------------------------------------------

    def type_proto(self, kind: str):
        t = self.types
        m = re.fullmatch(r"ARRAY<(.+)>", kind)
        if m:
            return t.TypeProto(type_kind=t.TYPE_ARRAY, array_type=t.ArrayTypeProto(element_type=self.type_proto(m.group(1))))
        simple = {"INT64": t.TYPE_INT64, "STRING": t.TYPE_STRING, "TIMESTAMP": t.TYPE_TIMESTAMP, "DATE": t.TYPE_DATE,
                  "FLOAT64": t.TYPE_DOUBLE, "BOOL": t.TYPE_BOOL, "JSON": t.TYPE_JSON, "BYTES": t.TYPE_BYTES}
        return t.TypeProto(type_kind=simple[kind])

    def value(self, kind: str, v: Any):
        """A ValueProto of BigQuery type `kind` (an empty one is NULL)."""
        out = self.values.ValueProto()
        if v is None:
            return out
        if kind.startswith("ARRAY<"):
            element = kind[6:-1]
            out.array_value.SetInParent()
            for item in v:
                out.array_value.element.append(self.value(element, item))
        elif kind == "INT64":
            out.int64_value = int(v)
        elif kind == "STRING":
            out.string_value = v
        elif kind == "BOOL":
            out.bool_value = bool(v)
        elif kind == "FLOAT64":
            out.double_value = float(v)
        elif kind == "DATE":
            out.date_value = (v - dt.date(1970, 1, 1)).days
        elif kind == "TIMESTAMP":
            micros = (v - EPOCH) // dt.timedelta(microseconds=1)
            out.timestamp_value.seconds, rest = divmod(micros, 1_000_000)
            out.timestamp_value.nanos = rest * 1000
        elif kind == "JSON":
            out.json_value = v if isinstance(v, str) else json.dumps(v)
        else:
            raise TypeError(f"no oracle value for {kind}")
        return out

    def python(self, value) -> Any:
        which = value.WhichOneof("value")
        if which is None:
            return None
        if which == "array_value":
            return [self.python(e) for e in value.array_value.element]
        if which == "timestamp_value":
            ts = value.timestamp_value
            return EPOCH + dt.timedelta(seconds=ts.seconds, microseconds=ts.nanos // 1000)
        if which == "date_value":
            return dt.date(1970, 1, 1) + dt.timedelta(days=value.date_value)
        if which == "json_value":
            return value.json_value
        if which == "struct_value":
            return tuple(self.python(f) for f in value.struct_value.field)
        return getattr(value, which)

    def _catalog(self, simple_catalog_pb2, row_ids: bool):
        catalog = simple_catalog_pb2.SimpleCatalogProto(name="bigquery")
        catalog.builtin_function_options.language_options.CopyFrom(self.language)
        for name, columns in self.tables.items():
            table = catalog.table.add(name=name)
            for column, kind in columns:
                table.column.add(name=column, type=self.type_proto(kind))
            if row_ids:
                table.column.add(name=ROW_ID, type=self.type_proto("INT64"), is_pseudo_column=True)
                table.primary_key_column_index.append(len(columns))
        return catalog

    # --- the analyzer -------------------------------------------------------------------------------

    def _call(self, rpc: str, request, response):
        from zetasql.core.exceptions import ServerError
        try:
            return self.client.call_grpc_func(f"ZetaSqlLocalService_{rpc}", request, response)
        except ServerError as exc:
            raise RuntimeError(re.sub(r"^\[[A-Z_]+\]\s*", "", str(exc))) from exc

    def statements(self, path: Path) -> list[Statement]:
        """The file's statements as BigQuery's analyzer reads them; OracleError at the first it refuses."""
        text = Path(path).read_text(encoding="utf-8")
        data = text.encode("utf-8")
        out: list[Statement] = []
        pos = 0
        while data[pos:].strip() and not _only_comments(data[pos:].decode("utf-8")):
            request = self.pb.AnalyzeRequest(options=self.options, simple_catalog=self.catalog)
            request.parse_resume_location.input = text
            request.parse_resume_location.byte_position = pos
            try:
                response = self._call("Analyze", request, self.pb.AnalyzeResponse)
            except RuntimeError as exc:
                line, column, message = _location(str(exc), text, pos)
                raise OracleError(Finding(_display(path), line, column, message)) from exc
            end = response.resume_byte_position
            kind = response.resolved_statement.WhichOneof("node") or ""
            if kind == "resolved_create_statement_node":
                kind = response.resolved_statement.resolved_create_statement_node.WhichOneof("node") or kind
            out.append(Statement(data[pos:end].decode("utf-8").strip().rstrip(";"), pos, kind))
            if end <= pos:
                break
            pos = end
        return out

    def check(self, path: Path) -> list[Finding]:
        """What BigQuery would refuse in the file (empty when it accepts every statement)."""
        try:
            self.statements(path)
        except OracleError as exc:
            return [exc.finding]
        return []

    # --- the evaluator ------------------------------------------------------------------------------

    def run(self, path: Path, tables: dict[str, list[dict]], params: dict[str, Any]) -> Result:
        """Run the file's statements in order over `tables`; the result is the last query's rows."""
        state = {name: [dict(r, **{ROW_ID: self._next_row()}) for r in tables.get(name, [])] for name in self.tables}
        columns: list[str] = []
        rows: list[tuple] = []
        for statement in self.statements(path):
            kind = statement.kind
            if kind in ("resolved_begin_stmt_node", "resolved_commit_stmt_node") or "create" in kind:
                continue  # one session, no other writer; the catalog already has every table
            if kind == "resolved_query_stmt_node":
                request = self.pb.EvaluateQueryRequest(sql=statement.text, options=self.options,
                                                       simple_catalog=self.eval_catalog)
                self._fill(request, state, params, statement.text)
                response = self._evaluate("EvaluateQuery", request, self.pb.EvaluateQueryResponse, path, statement)
                columns = [c.name for c in response.prepared.columns]
                rows = [tuple(self.python(c) for c in r.cell) for r in response.content.table_data.row]
            elif kind in ("resolved_insert_stmt_node", "resolved_delete_stmt_node", "resolved_update_stmt_node"):
                # DELETE and UPDATE name the rows they change by primary key (the pseudo-column); an
                # INSERT answers only the rows it adds, and a key it cannot fill would collide.
                keyed = kind != "resolved_insert_stmt_node"
                request = self.pb.EvaluateModifyRequest(sql=statement.text, options=self.options,
                                                        simple_catalog=self.eval_catalog if keyed else self.catalog)
                self._fill(request, state, params, statement.text, keyed)
                response = self._evaluate("EvaluateModify", request, self.pb.EvaluateModifyResponse, path, statement)
                self._apply(state, response)
                columns, rows = [], None
            else:
                raise OracleError(Finding(_display(path), *_location("", Path(path).read_text(), statement.offset)[:2],
                                          f"the oracle does not evaluate {kind}"))
        return Result(columns, rows, {name: [{k: v for k, v in r.items() if k != ROW_ID} for r in rs]
                                      for name, rs in state.items()})

    def _next_row(self) -> int:
        self._row += 1
        return self._row

    def _fill(self, request, state, params, text: str, keyed: bool = True) -> None:
        for name, rows in state.items():
            if not re.search(rf"\b{name}\b", text):
                continue
            content = request.table_content[name]
            content.table_data.SetInParent()  # an empty table is still a table
            columns = self.tables[name] + ([(ROW_ID, "INT64")] if keyed else [])
            for r in rows:
                row = content.table_data.row.add()
                for column, kind in columns:
                    row.cell.append(self.value(kind, r.get(column)))
        for name in self.parameter_types:
            if name in params and re.search(rf"@{name}\b", text):
                request.params.add(name=name).value.CopyFrom(self.value(self.parameter_types[name], params[name]))

    def _evaluate(self, rpc, request, response, path, statement):
        try:
            return self._call(rpc, request, response)
        except RuntimeError as exc:
            # The evaluator places an error in the statement it was given; placed in the file here.
            line, column, message = _location(str(exc), statement.text, 0)
            data = Path(path).read_text(encoding="utf-8").encode("utf-8")
            rest = data[statement.offset:].decode("utf-8", "replace")
            head = data[:statement.offset].decode("utf-8", "replace") + rest[:len(rest) - len(rest.lstrip())]
            top, left = head.count("\n") + 1, len(head) - head.rfind("\n")
            line, column = top + line - 1, (left + column - 1 if line == 1 else column)
            raise OracleError(Finding(_display(path), line, column, message)) from exc

    def _apply(self, state, response) -> None:
        name = response.table_name
        columns = [c for c, _ in self.tables[name]] + [ROW_ID]
        rows = state[name]
        if not rows and not response.content:
            return
        index = {r[ROW_ID]: i for i, r in enumerate(rows)}
        gone: set[int] = set()
        for change in response.content:
            op = self.pb.EvaluateModifyResponse.Row.Operation.Name(change.operation)
            values = dict(zip(columns, (self.python(c) for c in change.cell)))
            key = self.python(change.old_primary_key[0]) if len(change.old_primary_key) else None
            if op == "INSERT":
                values[ROW_ID] = self._next_row()
                rows.append(values)
            elif op == "DELETE":
                gone.add(key)
            elif op == "UPDATE":
                values[ROW_ID] = key
                rows[index[key]] = values
        if gone:
            state[name] = [r for r in rows if r[ROW_ID] not in gone]


def _only_comments(text: str) -> bool:
    return not re.sub(r"--[^\n]*", "", text).strip().strip(";").strip()


def _display(path) -> str:
    p = Path(path).resolve()
    try:
        return str(p.relative_to(ROOT))
    except ValueError:
        return str(p)
