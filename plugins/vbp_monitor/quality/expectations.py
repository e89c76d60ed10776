"""The data contract's GX Core 1.x expectation suites (include/expectations/<table>.json).

Ingest validates each landing file (in chunks) with GX on a frame: the contract columns as
*text* exactly as the file carries them, a ``row_number`` column, and helper columns computed
here before validation (the rule DAGs' ``validate`` runs the same suites as set-based SQL over
the warehouse tables instead: ``quality/sql_suite.py``, with SQL versions of these helpers):

* ``<column>__num`` for numeric columns (NaN when the text is not a number: the type
  expectation on the text column reports it, the range expectation on the helper skips it);
* ``<column>__bool`` for boolean columns (True/False/None; used in ``row_condition``);
* ``<column>__time`` for date and time columns (NaT when the text does not parse in the
  contract's format): the one parse of the column that the cross-column figures, ingest's
  strftime check and its typing share;
* cross-column figures with a plain column expectation on them in the suite:
  ``amount_deviation``, ``response_after_order_hours``, ``acceptance_after_order_days``,
  ``period_length_days``, ``batch_generic``, ``period_conflicts``, ``is_city``,
  ``sanction_length_days``, ``extra_field_count``.

References to other tables are stored in the suite files as markers, e.g.
``"value_set": {"$ref": "institutions.institution_code"}`` or
``{"$ref": "products.batch_code+generic_name", "where": {"is_selected": true}}``, and are
resolved against the warehouse when the suite is built. Ingest loads files in
``contract.LOAD_ORDER`` and upserts each file's good rows before validating the next, so the
warehouse then holds the stored rows plus the good rows delivered earlier in the same run.

Heavy imports (pandas, great_expectations) happen inside functions only.
"""
from __future__ import annotations

import copy
import functools
import json
import logging
import os
import warnings
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from vbp_monitor.core import config
from vbp_monitor.model import contract

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

log = logging.getLogger(__name__)

ROW_NUMBER = "row_number"
KEY_SEPARATOR = "|"
REF_MARKER = "$ref"
EXTRA_FIELDS = "extra_field_count"
DATE_FORMAT = "%Y-%m-%d"
TIMESTAMP_FORMAT = "%Y-%m-%d %H:%M:%S"
NUMBER_PATTERN = r"^[+-]?(\d+(\.\d*)?|\.\d+)$"
INT_PATTERN = r"^[+-]?\d+$"
NUMERIC_KINDS = (contract.INT, contract.MONEY, contract.QUANTITY, contract.RATIO)
MAX_EXAMPLES = 5


class SuiteError(RuntimeError):
    """A suite could not be evaluated (a bug or a broken suite file, not bad data)."""


# ---------------------------------------------------------------- names people read
# Columns the suites check that are no contract column (helper and derived columns): what
# they are, in Chinese, for the data team's messages (a reader never sees ``quantity__num``).
DERIVED_COLUMN_LABELS = {
    EXTRA_FIELDS: "行尾多余字段数",
    "is_city": "level = city（市本级）的行数",
    "amount_deviation": "amount − quantity × unit_price（金额与数量×单价之差）",
    "response_after_order_hours": "response_time − order_time（响应距下单小时数）",
    "acceptance_after_order_days": "acceptance_date − order_time（验收距下单天数）",
    "period_length_days": "period_end − period_start（协议年度天数）",
    "batch_generic": "batch_code + generic_name（批次 + 通用名）",
    "period_conflicts": "与同一医疗机构、批次、通用名其他协议年度重叠的协议数",
    ROW_NUMBER: "行号",
    "order_date": "order_date（下单日期）",  # a warehouse column of orders
}
# The contract's kinds of value, as a reason reads them ("无法按 日期（YYYY-MM-DD）解析").
KIND_LABELS = {
    contract.TEXT: "文本", contract.DATE: "日期（YYYY-MM-DD）", contract.TIMESTAMP: "时间（YYYY-MM-DD HH:MM:SS）",
    contract.INT: "整数", contract.MONEY: "金额", contract.QUANTITY: "数量", contract.RATIO: "比例",
    contract.BOOL: "是/否（true/false）",
}


@functools.cache
def _contract_column_labels() -> dict[str, str]:
    """``{column: 'quantity（数量）'}`` from the suites' own header expectations ("表头须有列
    quantity（数量）"): the suites are where the contract's Chinese names are kept."""
    labels: dict[str, str] = {}
    for table in contract.FILES:
        for item in load_suite_json(table)["expectations"]:
            column = (item.get("kwargs") or {}).get("column")
            text = item.get("description") or ""
            if item["type"] == "expect_column_to_exist" and column and f" {column}（" in text:
                labels.setdefault(column, text[text.index(f" {column}（") + 1:])
    return labels


def column_label(column: str) -> str:
    """A suite's column as the data team reads it: the contract column with its Chinese name
    (``quantity__num`` → quantity（数量）), a derived column as what it is; ``a+b`` (a compound
    key) → both."""
    if "+" in column:
        return " + ".join(column_label(part) for part in column.split("+"))
    if column in DERIVED_COLUMN_LABELS:
        return DERIVED_COLUMN_LABELS[column]
    base = column.removesuffix("__num").removesuffix("__bool")
    return _contract_column_labels().get(base, base)


def kind_label(kind: str) -> str:
    return KIND_LABELS.get(kind, kind)


# ---------------------------------------------------------------- suite files
def suite_path(table: str):
    return config.EXPECTATIONS_DIR / f"{table}.json"


def load_suite_json(table: str) -> dict:
    """The suite of one contract file/table as stored (markers unresolved)."""
    with open(suite_path(table), encoding="utf-8") as handle:
        return json.load(handle)


def suite_name(table: str) -> str:
    return load_suite_json(table)["name"]


# ---------------------------------------------------------------- typed views of text
def numbers(series: pd.Series, kind: str = contract.MONEY) -> pd.Series:
    """Float view of a text column; NaN where the text is not a number of that kind. Each
    distinct text is parsed once (prices and quantities repeat) when that gives what parsing
    every row gives: floats, or integers (floats where a row has none)."""
    import numpy as np
    import pandas as pd

    codes, distinct = pd.factorize(series)
    texts = pd.Series(distinct).astype("str")
    parsed = pd.to_numeric(texts.where(fullmatches(texts, INT_PATTERN if kind == contract.INT else NUMBER_PATTERN)),
                           errors="coerce").to_numpy()
    if len(parsed) and parsed.dtype.kind in "if":
        if (codes < 0).any() or parsed.dtype.kind == "f":
            # a missing value's code is -1: the NaN appended
            return pd.Series(np.append(parsed.astype(float), np.nan)[codes], index=series.index)
        return pd.Series(parsed[codes], index=series.index)
    text = series.astype("str")
    valid = fullmatches(text, INT_PATTERN if kind == contract.INT else NUMBER_PATTERN) & series.notna()
    return pd.to_numeric(text.where(valid), errors="coerce")


def fullmatches(series: pd.Series, pattern: str) -> pd.Series:
    """``series.str.fullmatch(pattern).fillna(False).astype(bool)``: one ``re`` call per
    distinct value (numbers and codes repeat), mapped back to the rows at C speed."""
    import re

    import numpy as np
    import pandas as pd

    match = re.compile(pattern).fullmatch
    codes, distinct = pd.factorize(series)
    values = distinct.tolist()
    found = np.fromiter((type(v) is str and match(v) is not None for v in values), dtype=bool, count=len(values))
    # a missing value's code is -1: the False appended
    return pd.Series(np.append(found, False)[codes], index=series.index, dtype=bool)


def dates(series: pd.Series) -> pd.Series:
    import pandas as pd

    return pd.to_datetime(series, format=DATE_FORMAT, errors="coerce")


def timestamps(series: pd.Series) -> pd.Series:
    import pandas as pd

    return pd.to_datetime(series, format=TIMESTAMP_FORMAT, errors="coerce")


TIME_FORMATS = {contract.TIMESTAMP: TIMESTAMP_FORMAT, contract.DATE: DATE_FORMAT}


def time_helper(column: str) -> str:
    """The helper column of a date or time column (``add_helper_columns``)."""
    return f"{column}__time"


def booleans(series: pd.Series) -> pd.Series:
    import pandas as pd

    def parse(value):
        if value is None or value != value:  # None or NaN
            return None
        text = str(value).strip().lower()
        if text in contract.TRUE_VALUES:
            return True
        if text in contract.FALSE_VALUES:
            return False
        return None

    # each distinct value parsed once (a flag column has a handful), mapped back by position
    codes, distinct = series.factorize(use_na_sentinel=False)
    parsed = [parse(value) for value in distinct.tolist()]
    return pd.Series([parsed[code] for code in codes.tolist()], index=series.index, dtype=object)


# ---------------------------------------------------------------- helper columns
def add_helper_columns(conn, table: str, frame: pd.DataFrame) -> pd.DataFrame:
    """A copy of ``frame`` with the helper columns the table's suite expects."""
    spec = contract.FILES[table]
    out = frame.copy(deep=False)  # (copy-on-write: the columns added are out's only)
    if EXTRA_FIELDS not in out.columns:
        out[EXTRA_FIELDS] = 0
    for column, kind in spec.columns.items():
        if kind in NUMERIC_KINDS:
            out[f"{column}__num"] = numbers(frame[column], kind)
        elif kind == contract.BOOL:
            out[f"{column}__bool"] = booleans(frame[column])
        elif kind in TIME_FORMATS:
            out[time_helper(column)] = (timestamps if kind == contract.TIMESTAMP else dates)(frame[column])

    def parsed(column: str) -> pd.Series:
        return out[time_helper(column)]

    if table == "branches":
        out["is_city"] = (frame["level"] == "city").fillna(False).astype(int)
    elif table == "orders":
        quantity, unit_price = out["quantity__num"], out["unit_price__num"]
        # 6 decimals: far below the 0.01 tolerance, far above a binary float's noise
        out["amount_deviation"] = (out["amount__num"] - quantity * unit_price).abs().round(6)
        ordered = parsed("order_time")
        out["response_after_order_hours"] = (parsed("response_time") - ordered).dt.total_seconds() / 3600
        out["acceptance_after_order_days"] = (parsed("acceptance_date") - ordered.dt.normalize()).dt.days
    elif table == "agreements":
        out["period_length_days"] = (parsed("period_end") - parsed("period_start")).dt.days
        out["batch_generic"] = _joined(frame, ["batch_code", "generic_name"])
        out["period_conflicts"] = _period_conflicts(conn, frame)
    elif table == "supplier_sanctions":
        # NaN when sanction_end is blank (the profile's sanction_years): nothing to check
        out["sanction_length_days"] = (parsed("sanction_end") - parsed("sanction_start")).dt.days
    elif table == "baseline_prices":
        out["batch_generic"] = _joined(frame, ["batch_code", "generic_name"])
    return out


def _joined(frame: pd.DataFrame, columns: list[str]) -> pd.Series:
    joined = frame[columns[0]].astype(object)
    for column in columns[1:]:
        joined = joined + KEY_SEPARATOR + frame[column].astype(object)
    return joined.where(frame[columns].notna().all(axis=1), None)


def _period_conflicts(conn, frame: pd.DataFrame):
    """Per row: 1 when its agreement year is the odd one out among the agreements of its
    institution and batch, else 0.

    The agreements of one institution and batch share their periods (domain.md DAG 3): two
    years either are identical or do not overlap. Of two overlapping different years, the
    one backed by fewer agreements is the odd one; once those are set aside, years that
    still overlap another (a tie) are all odd. Stored agreements that the frame does not
    redeliver take part.
    """
    import pandas as pd
    from sqlalchemy import select

    from vbp_monitor.model.schema import agreements

    group = ["institution_code", "batch_code"]
    year = [*group, "period_start", "period_end"]
    mine = pd.DataFrame({
        "agreement_id": frame["agreement_id"].astype(object),
        "institution_code": frame["institution_code"].astype(object),
        "batch_code": frame["batch_code"].astype(object),
        "period_start": dates(frame["period_start"]),
        "period_end": dates(frame["period_end"]),
    })
    stored = pd.DataFrame(
        conn.execute(select(agreements.c.agreement_id, *[agreements.c[k] for k in year])).all(),
        columns=["agreement_id", *year],
    )
    stored = stored[~stored["agreement_id"].isin(mine["agreement_id"].dropna())]
    everyone = mine
    if not stored.empty:
        stored["period_start"] = pd.to_datetime(stored["period_start"])
        stored["period_end"] = pd.to_datetime(stored["period_end"])
        everyone = pd.concat([mine, stored], ignore_index=True)
    everyone = everyone.dropna(subset=year)
    if everyone.empty:
        return 0
    years = everyone.groupby(year).size().rename("support").reset_index()
    pairs = years.merge(years, on=group, suffixes=("", "_other"))
    pairs = pairs[
        ((pairs["period_start"] != pairs["period_start_other"]) | (pairs["period_end"] != pairs["period_end_other"]))
        & (pairs["period_start"] <= pairs["period_end_other"])
        & (pairs["period_start_other"] <= pairs["period_end"])
    ]
    outvoted = pairs[pairs["support_other"] > pairs["support"]][year].drop_duplicates()
    odd_other = pairs[group + ["period_start_other", "period_end_other"]].merge(
        outvoted.rename(columns={"period_start": "period_start_other", "period_end": "period_end_other"}),
        how="left", indicator=True)["_merge"].eq("both").to_numpy()
    odd_self = pairs[year].merge(outvoted, how="left", indicator=True)["_merge"].eq("both").to_numpy()
    tied = pairs[~odd_other & ~odd_self][year].drop_duplicates()
    odd = pd.concat([outvoted, tied]).drop_duplicates()
    odd["period_conflicts"] = 1
    merged = mine.merge(odd, how="left", on=year)
    return merged["period_conflicts"].fillna(0).astype(int).to_numpy()


# ---------------------------------------------------------------- references
def reference_values(conn, marker: dict) -> set[str]:
    """The values a ``{"$ref": "table.col[+col2]", "where": {...}}`` marker stands for."""
    from sqlalchemy import select

    from vbp_monitor.model.schema import metadata

    table_name, _, columns = marker[REF_MARKER].partition(".")
    table = metadata.tables[table_name]
    query = select(*[table.c[name] for name in columns.split("+")]).distinct()
    for name, value in (marker.get("where") or {}).items():
        query = query.where(table.c[name] == value)
    return {
        KEY_SEPARATOR.join(str(part) for part in row)
        for row in conn.execute(query)
        if all(part is not None for part in row)
    }


def resolve_references(conn, suite_json: dict, frame: pd.DataFrame) -> dict:
    """A copy of the suite with every ``$ref`` value set resolved for this frame.

    Equivalent for this frame and much cheaper for GX (whose cost grows with the size of a
    value set): ``in_set(reference)`` becomes ``in_set(frame values found)`` or
    ``not_in_set(frame values not found)``, whichever list is shorter.
    """
    resolved = copy.deepcopy(suite_json)
    for position, expectation in enumerate(resolved["expectations"]):
        expectation["meta"] = {**(expectation.get("meta") or {}), "position": position}
        kwargs = expectation.get("kwargs", {})
        marker = kwargs.get("value_set")
        if not (isinstance(marker, dict) and REF_MARKER in marker):
            continue
        present = set(frame[kwargs["column"]].dropna().astype(str).unique())
        known = reference_values(conn, marker)
        found, missing = sorted(present & known), sorted(present - known)
        expectation["meta"].update(reference=marker, stated_type=expectation["type"])
        if expectation["type"] == "expect_column_values_to_be_in_set" and len(missing) < len(found):
            expectation["type"] = "expect_column_values_to_not_be_in_set"
            kwargs["value_set"] = missing
        else:
            kwargs["value_set"] = found
    return resolved


# ---------------------------------------------------------------- running GX
@dataclass
class Failure:
    """One expectation that failed."""

    expectation_type: str
    column: str
    description: str
    scope: str  # 'row' (rows can be set aside) or 'file' (the whole file/table is broken)
    count: int
    row_numbers: list[int] = field(default_factory=list)
    examples: list[str] = field(default_factory=list)  # row keys
    observed: Any = None
    position: int = 0  # in the suite file

    @property
    def label(self) -> str:
        """「期望（列：说明）」; the column as its Chinese label, left out where the
        description already names it."""
        shown = column_label(self.column) if self.column else ""
        if not shown or shown in self.description:
            return f"{self.expectation_type}（{self.description}）"
        return f"{self.expectation_type}（{shown}：{self.description}）"


@dataclass
class SuiteOutcome:
    table: str
    suite_name: str
    row_count: int
    failures: list[Failure]
    row_reasons: dict[int, list[str]]  # row_number -> readable reasons
    row_keys: dict[int, str]  # row_number -> key, for failing rows

    @property
    def file_failures(self) -> list[Failure]:
        return [f for f in self.failures if f.scope == "file"]

    @property
    def row_failures(self) -> list[Failure]:
        return [f for f in self.failures if f.scope == "row"]

    @property
    def failed_rows(self) -> list[int]:
        return sorted(self.row_reasons)

    def example_keys(self, limit: int = MAX_EXAMPLES) -> list[str]:
        return [self.row_keys[number] for number in self.failed_rows[:limit]]

    def failure_summary(self) -> str:
        """'expectation（column：description）n 行；…' for messages to people."""
        parts = []
        for failure in self.failures:
            if failure.scope == "row":
                parts.append(f"{failure.label} {failure.count} 行")
            else:
                parts.append(f"{failure.label}，实际值 {_plain(failure.observed)}")
        return "；".join(parts)

    def as_dict(self) -> dict:
        return {
            "suite": self.suite_name,
            "rows": self.row_count,
            "failed_rows": len(self.row_reasons),
            "failed_expectations": [
                {"expectation": f.expectation_type, "column": f.column, "scope": f.scope,
                 "count": f.count, "examples": f.examples}
                for f in self.failures
            ],
        }


def quiet_gx() -> None:
    """No analytics, no progress bars, no INFO chatter from GX inside a task."""
    os.environ["GX_ANALYTICS_ENABLED"] = "False"
    os.environ.setdefault("TQDM_DISABLE", "1")
    logging.getLogger("great_expectations").setLevel(logging.ERROR)
    # some GX modules pin their own logger at INFO when imported
    for name in list(logging.root.manager.loggerDict):
        if name.startswith("great_expectations."):
            logging.getLogger(name).setLevel(logging.ERROR)


def _context():
    import great_expectations as gx
    from great_expectations.data_context.types.base import (
        DataContextConfig,
        InMemoryStoreBackendDefaults,
        ProgressBarsConfig,
    )

    quiet_gx()
    return gx.get_context(mode="ephemeral", project_config=DataContextConfig(
        store_backend_defaults=InMemoryStoreBackendDefaults(init_temp_docs_sites=False),
        progress_bars=ProgressBarsConfig(globally=False, metric_calculations=False),
        analytics_enabled=False,
    ))


def _raised(info) -> str | None:
    """The message of an exception GX caught while evaluating an expectation, if any."""
    if not isinstance(info, dict):
        return None
    if info.get("raised_exception"):
        return str(info.get("exception_message") or "exception")
    for value in info.values():
        found = _raised(value)
        if found:
            return found
    return None


def _plain(value):
    """numpy scalars and NaN to plain Python for messages and JSON."""
    if value is None:
        return None
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and value != value:
        return None
    return value


# Expectations whose verdict pandas can state for a whole frame at C speed (or nearly), with
# the kwargs GX then needs nothing else to judge them (no ``mostly``, no ``row_condition``).
_PROVABLE_KWARGS = {
    "expect_column_to_exist": {"column"},
    "expect_column_values_to_not_be_null": {"column"},
    "expect_column_values_to_match_regex": {"column", "regex"},
    "expect_column_values_to_be_in_set": {"column", "value_set"},
    "expect_column_values_to_not_be_in_set": {"column", "value_set"},
    "expect_column_values_to_be_between": {"column", "min_value", "max_value", "strict_min", "strict_max"},
    "expect_column_values_to_be_unique": {"column"},
}


def _bound(value) -> bool:
    return value is None or (type(value) in (int, float) and value == value)


def proven(expectation: dict, frame: pd.DataFrame, present: dict | None = None) -> bool:
    """Whether ``expectation`` certainly succeeds on every row of ``frame``, judged as GX's
    pandas engine judges it (a column map expectation skips the column's missing values).
    ``present``: the columns' ``notna()`` found so far, kept for the frame's next expectations.

    False means "not proven" (GX judges it then): an unknown type or kwarg, a missing column,
    a failing row, a frame without rows."""
    import re

    import numpy as np

    kind = expectation.get("type")
    kwargs = expectation.get("kwargs") or {}
    allowed = _PROVABLE_KWARGS.get(kind)
    column = kwargs.get("column")
    if (allowed is None or not set(kwargs) <= allowed or not isinstance(column, str)
            or column not in frame.columns or not len(frame)):
        return False
    if kind == "expect_column_to_exist":
        return True
    series = frame[column]
    if present is None:
        present = {}
    if column not in present:
        present[column] = series.notna()
    known = present[column]
    if kind == "expect_column_values_to_not_be_null":
        return bool(known.all())
    values = series[known]
    if kind == "expect_column_values_to_match_regex":
        regex = kwargs.get("regex")
        if not isinstance(regex, str):
            return False
        helper = f"{column}__num"
        if regex == NUMBER_PATTERN and helper in frame.columns and frame[helper].dtype.kind == "f":
            # numbers() gave a number exactly where the text fully matched NUMBER_PATTERN
            return bool(frame[helper][known].notna().all())
        # pandas' str.contains: re.search, here once per distinct value (flags and codes repeat)
        search = re.compile(regex).search
        return all(search(text) is not None for text in values.astype(str).unique().tolist())
    if kind in ("expect_column_values_to_be_in_set", "expect_column_values_to_not_be_in_set"):
        value_set = kwargs.get("value_set")
        if not isinstance(value_set, list) or series.dtype.kind == "M":  # GX parses a datetime's set
            return False
        inside = values.isin(value_set)
        return bool(inside.all() if kind == "expect_column_values_to_be_in_set" else not inside.any())
    if kind == "expect_column_values_to_be_between":
        low, high = kwargs.get("min_value"), kwargs.get("max_value")
        if (low is None and high is None) or not (_bound(low) and _bound(high)) or series.dtype.kind not in "iuf":
            return False
        if low is not None and high is not None and low > high:
            return False
        ok = np.ones(len(values), dtype=bool)
        if low is not None:
            ok &= (values > low if kwargs.get("strict_min") else values >= low).to_numpy(dtype=bool)
        if high is not None:
            ok &= (values < high if kwargs.get("strict_max") else values <= high).to_numpy(dtype=bool)
        return bool(ok.all())
    if kind == "expect_column_values_to_be_unique":
        return not bool(values.duplicated().any())
    return False


def run_suite(table: str, suite_json: dict, frame: pd.DataFrame) -> SuiteOutcome:
    """Validate ``frame`` (with ``row_number`` and helper columns) with a resolved suite.

    Expectations pandas proves for every row (``proven``) are left out of GX's run (a success
    is no part of the outcome); when all are, GX is not run (nor imported)."""
    present: dict = {}
    pending = [item for item in suite_json["expectations"] if not proven(item, frame, present)]
    if not pending:
        return SuiteOutcome(table, suite_json["name"], len(frame), [], {}, {})
    suite_json = {**suite_json, "expectations": pending}
    quiet_gx()  # before the import: GX logs while it imports
    import great_expectations as gx
    from great_expectations.core.expectation_suite import ExpectationSuite

    key = list(contract.FILES[table].key)
    context = _context()
    suite = context.suites.add(ExpectationSuite(
        name=suite_json["name"],
        expectations=suite_json["expectations"],
        meta=suite_json.get("meta") or {},
        notes=suite_json.get("notes"),
    ))
    asset = context.data_sources.add_pandas(name="vbp_monitor").add_dataframe_asset(name=table)
    batch_definition = asset.add_batch_definition_whole_dataframe(name="whole_frame")
    definition = context.validation_definitions.add(
        gx.ValidationDefinition(name=f"{suite_json['name']}_validation", data=batch_definition, suite=suite)
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = definition.run(
            batch_parameters={"dataframe": frame},
            result_format={
                "result_format": "COMPLETE",
                "unexpected_index_column_names": [*key, ROW_NUMBER],
                "return_unexpected_index_query": False,
            },
        )

    failures: list[Failure] = []
    row_reasons: dict[int, list[str]] = {}
    row_keys: dict[int, str] = {}
    for item in result.results:
        config_ = item.expectation_config
        error = _raised(item.exception_info)
        if error:
            raise SuiteError(f"suite {suite_json['name']}: {config_.type} {config_.kwargs} raised: {error}")
        if item.success:
            continue
        kwargs = config_.kwargs
        column = kwargs.get("column") or "+".join(kwargs.get("column_list") or [])
        stated_type = (config_.meta or {}).get("stated_type", config_.type)
        description = config_.description or stated_type
        details = item.result or {}
        if "unexpected_index_list" not in details:
            failures.append(Failure(stated_type, column, description, "file", 0,
                                    observed=_plain(details.get("observed_value")),
                                    position=(config_.meta or {}).get("position", 0)))
            continue
        numbers_: list = []
        examples: list = []
        for unexpected in details["unexpected_index_list"]:
            number = int(unexpected[ROW_NUMBER])
            row_key = KEY_SEPARATOR.join("" if _plain(unexpected.get(k)) is None else str(_plain(unexpected.get(k)))
                                         for k in key)
            row_keys[number] = row_key
            numbers_.append(number)
            if len(examples) < MAX_EXAMPLES and row_key not in examples:
                examples.append(row_key)
            shown = [f"{column_label(name)} = {_plain(unexpected.get(name))!r}"
                     for name in column.split("+") if name in unexpected]
            reason = f"{description}（{stated_type}"
            reason += f"；{'，'.join(shown)}）" if shown else "）"
            row_reasons.setdefault(number, []).append(reason)
        failures.append(Failure(stated_type, column, description, "row", len(numbers_), numbers_, examples,
                                position=(config_.meta or {}).get("position", 0)))
    failures.sort(key=lambda f: f.position)  # the suite file's order: messages read like it
    return SuiteOutcome(table, suite_json["name"], len(frame), failures, row_reasons, row_keys)


def validate_frame(conn, table: str, frame: pd.DataFrame) -> SuiteOutcome:
    """Helper columns, runtime references, GX run: the whole validation of one frame."""
    suite_json = load_suite_json(table)
    prepared = add_helper_columns(conn, table, frame)
    resolved = resolve_references(conn, suite_json, prepared)
    return run_suite(table, resolved, prepared)


# ---------------------------------------------------------------- chunks
# Expectations whose verdict on a table is the union of their verdicts on its parts: a table
# whose suite has only these can be validated chunk by chunk (bounded memory). Uniqueness is
# among them because every unique column of the suites is the warehouse table's primary key.
CHUNKABLE_TYPES = frozenset({
    "expect_column_to_exist", "expect_column_values_to_not_be_null",
    "expect_column_values_to_match_strftime_format", "expect_column_values_to_match_regex",
    "expect_column_values_to_be_between", "expect_column_values_to_be_in_set",
    "expect_column_values_to_not_be_in_set", "expect_column_values_to_be_unique",
    "expect_compound_columns_to_be_unique",
})


def chunkable(table: str) -> bool:
    """Whether ``table``'s suite may be run on parts of the table (no whole-table figure)."""
    return all(item["type"] in CHUNKABLE_TYPES for item in load_suite_json(table)["expectations"])


def merge_outcomes(table: str, outcomes: list[SuiteOutcome]) -> SuiteOutcome:
    """One outcome of the chunks of one table (row numbers run on across the chunks)."""
    if len(outcomes) == 1:
        return outcomes[0]
    merged: dict[int, Failure] = {}
    row_reasons: dict[int, list[str]] = {}
    row_keys: dict[int, str] = {}
    for outcome in outcomes:
        for failure in outcome.failures:
            known = merged.get(failure.position)
            if known is None:
                merged[failure.position] = copy.copy(failure)
                merged[failure.position].row_numbers = list(failure.row_numbers)
                merged[failure.position].examples = list(failure.examples)
                continue
            known.count += failure.count
            known.row_numbers.extend(failure.row_numbers)
            known.examples.extend(key for key in failure.examples
                                  if key not in known.examples)
            del known.examples[MAX_EXAMPLES:]
        for number, reasons in outcome.row_reasons.items():
            row_reasons.setdefault(number, []).extend(reasons)
        row_keys.update(outcome.row_keys)
    failures = sorted(merged.values(), key=lambda f: f.position)
    name = outcomes[0].suite_name if outcomes else suite_name(table)
    return SuiteOutcome(table, name, sum(o.row_count for o in outcomes), failures, row_reasons, row_keys)


# ---------------------------------------------------------------- alerts
def data_quality_alert(conn, source_file: str, message: str, metric: int) -> dict:
    """A DATA_QUALITY candidate for ``AlertStore.replace`` (data team; city row)."""
    from vbp_monitor.model.reference import city_branch_code

    return {
        "rule_code": "DATA_QUALITY",
        "severity": "high",
        "branch_code": city_branch_code(conn),
        "source_file": source_file,
        "message": message,
        "metric_value": metric,
        "threshold_value": 0,
    }


def clause() -> str:
    from vbp_monitor.core.profiles import cite, load_profile

    return cite(load_profile(), "DATA_QUALITY")

