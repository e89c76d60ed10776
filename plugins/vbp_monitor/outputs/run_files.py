"""Where a run's files go, and the criteria sheet beside every list a rule DAG writes.

``<VBP_OUTPUT_DIR>/<dag_id>/<period>/<prefix>_<audience>_<period>.xlsx``: one folder per DAG
and judged period, one file per audience (a branch, or the city).
"""
from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Mapping
from pathlib import Path

from vbp_monitor.core import config
from vbp_monitor.core.catalog import RULES, rule_title
from vbp_monitor.core.config import LOCAL_TZ
from vbp_monitor.core.labels import SEVERITY_ZH
from vbp_monitor.outputs.spreadsheets import branch_file_path

# named by the rule's Chinese title: the codes are for the data team (alert workbooks' technical sheet)
CRITERIA_HEADER = ["预警名称", "判定口径", "预警级别", "处理要求"]


def run_folder(dag_id: str, period_label: str) -> Path:
    return config.output_dir() / dag_id / period_label


def run_file_path(dag_id: str, prefix: str, period_label: str, audience: str, suffix: str = ".xlsx") -> Path:
    return branch_file_path(run_folder(dag_id, period_label), prefix, audience, period_label, suffix=suffix)


def criteria_sheet(conditions: Mapping[str, str], actions: Mapping[str, str],
                   note: str) -> tuple[list[str], list[list]]:
    """How a DAG judges, with the profile's figures: one row per rule code, then a note."""
    rows = [[rule_title(code), condition, SEVERITY_ZH[RULES[code].severity], actions[code]]
            for code, condition in conditions.items()]
    rows.append(["口径说明", note, "", ""])
    return CRITERIA_HEADER, rows


def files_digest(paths) -> str:
    """A short digest of files' bytes: a document's key, so that the same files are mailed once
    and changed files once more (``mailer.notify_documents``)."""
    digest = hashlib.sha256()
    for path in paths:
        digest.update(Path(path).read_bytes())
    return digest.hexdigest()[:16]


def run_stamp(run) -> dt.datetime:
    """A run's files' one time: D at 06:00 Asia/Shanghai (the schedules' run time), so a
    rerun on the same figures writes the same bytes."""
    return dt.datetime.combine(run.period.run_day, dt.time(6, 0), tzinfo=LOCAL_TZ)
