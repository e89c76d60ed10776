"""Spreadsheets for people (XLSX). INTERFACE STUB: to be implemented."""
from __future__ import annotations

from pathlib import Path


def safe_cell(value):
    """Neutralise formula injection: a text starting with = + - @ is written as text."""
    raise NotImplementedError


def write_xlsx(path: Path, sheets: dict[str, tuple[list[str], list[list]]]) -> Path:
    """Write sheets {title: (header, rows)}; every text cell goes through safe_cell."""
    raise NotImplementedError
