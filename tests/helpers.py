"""Small builders for test data: a minimal city and typed rows."""
from __future__ import annotations

import datetime as dt
from decimal import Decimal

from vbp_monitor.model import contract


def typed_row(table: str, row: dict) -> dict:
    """Parse CSV-like values with the contract's column kinds; missing optional → None."""
    spec = contract.FILES[table]
    out = {}
    for column, kind in spec.columns.items():
        value = row.get(column)
        if value is None or (isinstance(value, str) and value == ""):
            out[column] = None
            continue
        if kind == contract.DATE and isinstance(value, str):
            value = dt.date.fromisoformat(value)
        elif kind == contract.TIMESTAMP and isinstance(value, str):
            value = dt.datetime.fromisoformat(value)
        elif kind in (contract.MONEY, contract.QUANTITY, contract.RATIO):
            value = Decimal(str(value))
        elif kind == contract.INT:
            value = int(value)
        elif kind == contract.BOOL:
            value = contract.parse_bool(value)
        out[column] = value
    return out


def city(**extra) -> dict[str, list[dict]]:
    """A city with two branches (B1, B2), public/military/private institutions, one drug batch."""
    data = {
        "branches": [
            {"branch_code": "CITY", "branch_name": "市医保局", "level": "city", "emails": "city@example.org"},
            {"branch_code": "B1", "branch_name": "章贡分局", "level": "branch", "emails": "b1@example.org"},
            {"branch_code": "B2", "branch_name": "南康分局", "level": "branch", "emails": "b2@example.org;b2b@example.org"},
        ],
        "institutions": [
            {"institution_code": "H1", "institution_name": "第一人民医院", "branch_code": "B1", "ownership": "public"},
            {"institution_code": "H2", "institution_name": "南康区人民医院", "branch_code": "B2", "ownership": "public"},
            {"institution_code": "M1", "institution_name": "部队医院", "branch_code": "B1", "ownership": "military"},
            {"institution_code": "P1", "institution_name": "仁爱民营医院", "branch_code": "B2", "ownership": "private"},
        ],
        "batches": [
            {"batch_code": "NB1", "batch_name": "第一批国家集采", "level": "national", "category": "drug",
             "start_date": "2025-01-01", "cycle_months": 24, "report_deadline": "2024-11-20"},
        ],
        "products": [
            {"product_code": "P-AML-S", "generic_name": "氨氯地平", "manufacturer": "甲药业", "category": "drug",
             "consistency_passed": "true", "is_selected": "true", "batch_code": "NB1", "selected_price": "0.50"},
            {"product_code": "P-AML-N", "generic_name": "氨氯地平", "manufacturer": "乙药业", "category": "drug",
             "consistency_passed": "true", "is_selected": "false"},
        ],
    }
    for key, rows in extra.items():
        data.setdefault(key, []).extend(rows)
    return data
