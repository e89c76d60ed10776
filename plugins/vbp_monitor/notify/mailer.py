"""The one way to send mail (operations.md › Notification).

``notify_run`` sends, per run, one email to each audience that has alerts *of the run's own
period* it has not received yet:

* ``branch:<code>`` — a branch bureau: the alerts whose ``branch_code`` is that branch;
* ``city`` — the city bureau: a summary (counts per branch × rule) of every alert of the run
  plus the detail of the alerts routed to it (``catalog.routed_to_city``, and alerts of the
  city row itself or of an unknown branch);
* ``data_team`` — ``VBP_DATA_TEAM_EMAILS``: the alerts of the rules only the data team hears
  of (``catalog.RULES[code].data_team_only``: ``DATA_QUALITY``), and nobody else receives those.
* ``distributor:<branch>:<distributor>`` — a distributor with an address in ``distributors.csv``
  (when the profile's ``[order_response] send_to_distributors``, default true): its own orders
  of that branch's delay list (``DELAY_LIST_RULES``), the branch in copy (Cc), with its own
  delay-list file; the branch's email names the distributors it must contact itself.

The rules that make it safe to retry and to run in parallel:

* **Own period only.** A run mails the alerts whose ``period`` is its own, titled with that
  period and carrying that period's files. Alerts of another period that are still
  un-notified (an earlier run whose ``notify`` failed) are left to that run's retry — or to a
  clear of its ``notify`` task / a new run of that period; the run logs a warning naming
  those periods. So no email is ever labelled with a period its alerts are not of.
* **Claims.** Before sending, an attempt claims each (alert, audience address) it means to
  send in ``alert_deliveries`` (``audience`` = ``<audience>|<address>``, ``message_id`` =
  ``claim:<token>``), inserted with ON CONFLICT DO NOTHING: of two attempts at once only one
  owns a claim and sends it; the other waits until the claim is confirmed or released. An
  accepted address turns its claim into a delivery (the real Message-ID); a refused or
  failed one is released, so the retry sends it. A claim older than ``CLAIM_TTL`` (its
  attempt died) may be taken over.
* **Per address.** When every address of an audience has received an alert, one row
  ``(alert_id, <audience>)`` replaces the address rows; ``notified_at`` is set when every
  audience of the alert has its row. An address that the server refused (e.g. 550) keeps
  the alert pending for that address only: the task logs it, fails after sending the rest
  (the data team hears of it in the failure email after the last retry, which names the
  address), and the retry sends to that address alone.
* **Message-ID.** Each email's Message-ID is derived from the DAG, the period, the audience
  and the alerts it carries (and the run for a ``force_resend``): a copy sent again after a
  dropped connection has the same Message-ID, so mail clients drop it; a later email of the
  same period with other alerts has another one.
* **Dropped connections.** When the connection breaks, the attempt reconnects and sends the
  email again (same Message-ID), then the rest, instead of failing them all.

What an email says: the overview, the closing instructions chosen by who must act (the
``actor`` of each rule carried, catalog.toml: institutions, distributors, the branch itself, the
fund office; the city bureau and the data team have their own), and the alerts most severe
first, each figure with its rule's unit (catalog ``unit`` → ``formatting.with_unit``). The
content is one ``templates.Page`` rendered as HTML and as plain text; ``notify/mime.py`` builds
the MIME (multipart/alternative, attachments typed and with RFC 2231 + RFC 2047 Chinese names,
folded encoded-word subjects) and the From, whose display name comes from ``VBP_MAIL_FROM``.

Mail goes through the Airflow SMTP connection ``smtp_default`` (the provider's ``SmtpHook``
connects, with its TLS, login and ``retry_limit``/``timeout`` extras; keep those low so that
a down server fails the task fast — Airflow's task retries are the real retry). The message
is sent on the hook's client with ``send_message`` because the hook's ``send_email_smtp``
drops the per-recipient refusals that ``sendmail`` reports.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import logging
import re
import smtplib
import tempfile
import time
import traceback
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.utils import make_msgid
from pathlib import Path
from typing import Any, cast

from sqlalchemy import and_, delete, func, select, update
from sqlalchemy.engine import Connection

from vbp_monitor.core import config, formatting
from vbp_monitor.core.catalog import (
    BRANCH,
    CITY,
    DATA_TEAM,
    DISTRIBUTOR,
    FUND,
    INSTITUTION,
    RULES,
    dag_title,
    routed_to_city,
    rule_actor,
    rule_title,
    rule_units,
)
from vbp_monitor.core.db import upsert
from vbp_monitor.core.labels import CATEGORY_ZH, SEVERITY_ORDER, SEVERITY_ZH, label
from vbp_monitor.model.reference import (
    branch_directory,
    city_branch_code,
    distributor_audience,
    distributor_directory,
    distributor_of_audience,
)
from vbp_monitor.model.schema import alert_deliveries, alerts, batches, institutions, orders, products
from vbp_monitor.notify import mime
from vbp_monitor.notify import templates as mail_templates
from vbp_monitor.outputs.spreadsheets import TECHNICAL_SHEET, BookTitle, Column, TypedValue, safe_name_part

log = logging.getLogger(__name__)

SUBJECT_TAG = "【集采监管预警】"
DISTRIBUTOR_SUBJECT_TAG = "【配送响应督促】"
DQ_SUBJECT_TAG = "【集采数据质量】"
FAILURE_SUBJECT_TAG = "【集采监管系统】"
DEFAULT_FROM = "vbp-monitor@localhost"
DEFAULT_DISPLAY_NAME = "集采监管监测系统"  # the From's name unless VBP_MAIL_FROM gives one
MAX_HTML_ROWS = 300  # the body stays readable; the XLSX attachment always has every row
_CHUNK = 500
CLAIM_PREFIX = "claim:"
ADDRESS_SEPARATOR = "|"
# A claim is held while its attempt sends a handful of emails (seconds); one older than this
# belongs to an attempt that died, and the next attempt may take it over.
CLAIM_TTL = dt.timedelta(minutes=5)
CLAIM_WAIT_SECONDS = 120.0  # how long an attempt waits for another attempt's claims to settle
CLAIM_POLL_SECONDS = 0.5
MAX_CONNECTIONS = 4  # per attempt: the first one and up to three reconnects after a drop


class NotificationError(RuntimeError):
    """The SMTP server was unreachable or refused an email; what was not accepted stays pending."""


def branch_audience(branch_code: str) -> str:
    return f"branch:{branch_code}"


# The email's own workbook of the alerts it lists: a Chinese name the reader recognises.
ALERT_WORKBOOK_PREFIX = "预警明细"


def alert_workbook_name(audience: str, dag_id: str, period_label: str) -> str:
    """「预警明细_月度监测_360702_2025-08.xlsx」: the DAG, the branch (全市 / 数据组), the period."""
    who = {CITY: "全市", DATA_TEAM: "数据组"}.get(audience, audience.removeprefix("branch:"))
    parts = (dag_title(dag_id), who, period_label)
    return "_".join([ALERT_WORKBOOK_PREFIX, *map(safe_name_part, parts)]) + ".xlsx"


def address_key(audience: str, address: str) -> str:
    """``alert_deliveries.audience`` of one address of an audience (a claim or a partial delivery)."""
    return f"{audience}{ADDRESS_SEPARATOR}{address.strip().lower()}"


# ---------------------------------------------------------------- what is pending

def _run_conditions(run) -> list:
    # only the run's own period: an email is titled with it and carries its files
    conditions = [alerts.c.dag_id == run.dag_id, alerts.c.status == "open",
                  alerts.c.period == run.period.label, *run.scope.clauses()]
    if not run.force_resend:  # force_resend: an operator asked to re-send them, notified or not
        conditions.append(alerts.c.notified_at.is_(None))
    return conditions


def _pending_alerts(conn: Connection, run) -> list[dict]:
    source = (
        alerts.outerjoin(institutions, institutions.c.institution_code == alerts.c.institution_code)
        .outerjoin(batches, batches.c.batch_code == alerts.c.batch_code)
        .outerjoin(orders, orders.c.order_id == alerts.c.order_id)
        .outerjoin(products, products.c.product_code == alerts.c.product_code)
    )
    query = (
        # the order's distributor and figures: what a distributor's email lists
        select(alerts, institutions.c.institution_name, batches.c.batch_name, orders.c.distributor_code,
               orders.c.order_time, orders.c.response_time, orders.c.quantity.label("order_quantity"),
               orders.c.amount.label("order_amount"), products.c.specification)
        .select_from(source)
        .where(and_(*_run_conditions(run)))
    )
    return [dict(row) for row in conn.execute(query).mappings()]


def _other_periods_waiting(conn: Connection, run) -> dict[str, int]:
    """Un-notified open alerts of the DAG in other periods: their own run's retry sends them."""
    rows = conn.execute(
        select(alerts.c.period, func.count())
        .where(alerts.c.dag_id == run.dag_id, alerts.c.status == "open", alerts.c.notified_at.is_(None),
               alerts.c.period != run.period.label, *run.scope.clauses())
        .group_by(alerts.c.period).order_by(alerts.c.period)
    )
    return {str(period): int(count) for period, count in rows}


def _chunks(items: list, size: int = _CHUNK) -> Iterator[list]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


@dataclass
class Ledger:
    """The ``alert_deliveries`` rows of some alerts."""

    delivered: dict[int, dict[str, str | None]] = field(default_factory=lambda: defaultdict(dict))
    """alert_id → {audience or address key: Message-ID} of what the server accepted"""
    claims: dict[tuple[int, str], str] = field(default_factory=dict)
    """(alert_id, address key) → the claim token of the attempt sending it now"""


def _ledger(conn: Connection, alert_ids: Iterable[int]) -> Ledger:
    ledger = Ledger()
    for chunk in _chunks(sorted(set(alert_ids))):
        rows = conn.execute(
            select(alert_deliveries.c.alert_id, alert_deliveries.c.audience, alert_deliveries.c.message_id)
            .where(alert_deliveries.c.alert_id.in_(chunk))
        )
        for alert_id, key, message_id in rows:
            if message_id and message_id.startswith(CLAIM_PREFIX):
                ledger.claims[(alert_id, key)] = message_id
            else:
                ledger.delivered[alert_id][key] = message_id
    return ledger


# The rules whose alerts make up a delay list (延迟响应清单, DAG 6): each such alert also goes to
# the order's distributor, when it has an address and the profile sends to distributors.
DELAY_LIST_RULES = frozenset({"ORDER_RESPONSE_OVERDUE"})
UNREGISTERED_DISTRIBUTOR = "未登记配送企业"


def sends_to_distributors(profile: dict) -> bool:
    """``[order_response] send_to_distributors`` (default true)."""
    return bool(profile.get("order_response", {}).get("send_to_distributors", True))


@dataclass
class Audiences:
    """Who receives what: the branch directory, the data team's addresses and the distributors."""

    directory: dict[str, dict]
    city_code: str
    data_team: list[str]
    distributors: dict[str, dict] = field(default_factory=dict)  # reference.distributor_directory
    send_to_distributors: bool = False
    profile: dict = field(default_factory=dict)  # the policy profile: the hours and clause a distributor reads

    def of(self, alert: dict) -> list[str]:
        """Every audience an alert is meant for (routing of operations.md)."""
        if _data_team_only(alert["rule_code"]):
            return [DATA_TEAM]
        branch = self.directory.get(alert["branch_code"])
        if branch and branch["level"] == "branch":
            return [branch_audience(alert["branch_code"]), *self._distributor(alert), CITY]
        return [CITY]

    def _distributor(self, alert: dict) -> list[str]:
        if self.send_to_distributors and alert["rule_code"] in DELAY_LIST_RULES and alert.get("distributor_code"):
            return [distributor_audience(alert["branch_code"], alert["distributor_code"])]
        return []

    def recipients(self, audience: str) -> list[str]:
        if audience == DATA_TEAM:
            return list(self.data_team)
        distributor = distributor_of_audience(audience)
        if distributor:
            return list(self.distributors.get(distributor[1], {}).get("emails", []))
        code = self.city_code if audience == CITY else audience.split(":", 1)[1]
        return list(self.directory.get(code, {}).get("emails", []))

    def copied(self, audience: str) -> list[str]:
        """The Cc of an audience's email: a distributor's email goes to its branch in copy."""
        distributor = distributor_of_audience(audience)
        return self.recipients(branch_audience(distributor[0])) if distributor else []

    def required(self, alert: dict) -> set[str]:
        """The audiences an alert must reach before it counts as notified (those with an address)."""
        return {audience for audience in self.of(alert) if self.recipients(audience)}

    def name(self, audience: str) -> str:
        if audience == DATA_TEAM:
            return "数据组"
        distributor = distributor_of_audience(audience)
        if distributor:
            return self.distributor_name(distributor[1])
        code = self.city_code if audience == CITY else audience.split(":", 1)[1]
        return self.directory.get(code, {}).get("name") or code

    def distributor_name(self, code: str | None) -> str:
        return self.distributors.get(code, {}).get("name") or UNREGISTERED_DISTRIBUTOR

    def mailed_directly(self, alert: dict) -> bool:
        """Whether the alert's distributor receives it itself (else the branch must contact it)."""
        return any(self.recipients(audience) for audience in self._distributor(alert))

    def is_branch(self, code: str | None) -> bool:
        return self.directory.get(code, {}).get("level") == "branch"

    def branch_name(self, code: str | None) -> str:
        return self.directory.get(code, {}).get("name") or (code or "")

    def city_detail(self, alert: dict) -> bool:
        """Whether the city email lists this alert in detail (not only in the summary)."""
        return (
            routed_to_city(alert["rule_code"], alert["severity"])
            or alert["branch_code"] == self.city_code
            # nobody else would see it in detail: an unknown branch, or one without an address
            or {a for a in self.required(alert) if not distributor_of_audience(a)} == {CITY}
        )


def _data_team_only(rule_code: str) -> bool:
    rule = RULES.get(rule_code)
    return bool(rule and rule.data_team_only)


def _audience_order(audience: str) -> tuple:
    if audience.startswith("branch:"):
        return (0, audience)
    if distributor_of_audience(audience):
        return (1, audience)
    return (2 if audience == CITY else 3, audience)


# ---------------------------------------------------------------- display

def _figures(row: dict) -> tuple[str, str]:
    """(metric, threshold) as people read them, each with the unit of its rule (catalog ``unit``).

    The metric is rounded away from its threshold so that it never reads as the line; a 0/1
    flag reads 已备案：否 and has no threshold.
    """
    metric_unit, threshold_unit = rule_units(row["rule_code"])
    metric = formatting.decimal_of(row.get("metric_value"))
    threshold = formatting.decimal_of(row.get("threshold_value"))
    if metric_unit == formatting.FLAG_UNIT:
        shown = formatting.with_unit(metric, metric_unit)
        return (f"{RULES[row['rule_code']].flag}：{shown}" if shown else ""), ""
    breach: formatting.Breach = None
    if metric is not None and threshold is not None and metric != threshold:
        breach = "below" if metric < threshold else "above"
    return formatting.with_unit(metric, metric_unit, breach), formatting.with_unit(threshold, threshold_unit)


def _code_and_name(code, name) -> str:
    if not code:
        return ""
    return f"{code} {name}" if name else str(code)


def _sort_key(alert: dict) -> tuple:
    return (
        SEVERITY_ORDER.get(alert["severity"], 9),
        alert["rule_code"],
        alert.get("institution_code") or "",
        alert.get("batch_code") or "",
        alert.get("generic_name") or "",
        alert.get("order_id") or "",
        alert.get("period") or "",
        alert["alert_id"],
    )


def _severity_counts_zh(rows: list[dict]) -> str:
    counts = Counter(row["severity"] for row in rows)
    parts = [f"{SEVERITY_ZH[s]}{counts[s]}条" for s in SEVERITY_ORDER if counts.get(s)]
    return "、".join(parts)


ALERT_COLUMNS = ["严重程度", "预警规则", "医疗机构", "批次", "通用名", "订单号", "指标值", "阈值", "说明"]


def _alert_table(rows: list[dict], audiences: Audiences, with_branch: bool) -> mail_templates.Table:
    """The alerts as a table (rows already sorted, most severe first); figures with their units."""
    omitted = max(0, len(rows) - MAX_HTML_ROWS)
    rows = rows[:MAX_HTML_ROWS]
    header = list(ALERT_COLUMNS)
    if with_branch:
        header.insert(1, "分局")
    body = []
    for row in rows:
        metric, threshold = _figures(row)
        values = [
            label(SEVERITY_ZH, row["severity"]),
            f"{rule_title(row['rule_code'])}（{row['rule_code']}）",
            _code_and_name(row.get("institution_code"), row.get("institution_name")),
            _code_and_name(row.get("batch_code"), row.get("batch_name")),
            row.get("generic_name") or "",
            row.get("order_id") or "",
            metric,
            threshold,
            row["message"],
        ]
        if with_branch:
            values.insert(1, audiences.branch_name(row["branch_code"]))
        body.append(values)
    numeric = {header.index("指标值"), header.index("阈值")}
    note = f"（正文仅列出最严重的 {len(rows)} 条，其余 {omitted} 条见附件 Excel。）" if omitted else ""
    return mail_templates.Table(header, body, numeric, [row["severity"] for row in rows], records=True, note=note)


# The closing instructions: who must act, by audience and by the actors of the rules carried
# (catalog ``actor``), in this order.
BRANCH_ACTIONS = {
    INSTITUTION: "请督促相关医疗机构核实情况、限期整改，并按规定时限反馈处理情况。",
    DISTRIBUTOR: ("请将延迟响应清单（见附件）及时发送相关配送企业，督促其尽快响应、配送到位；"
                  "配送企业被督促后仍未响应的，请及时报告市医疗保障局。"),
    BRANCH: "请贵局按模板要求按时报送（或补正）年度集采监管工作报告；已逾期的，请一并说明逾期原因。",
    FUND: ("请会同医保经办机构（基金管理中心）核对相关医疗机构的预付款台账：拨付不足的及时足额拨付，"
           "归还（冲抵）不足的督促按进度归还或在结算中冲抵，台账有误的及时更正。"),
}
CITY_ACTIONS = {
    INSTITUTION: ("涉及医疗机构的预警，请督促相关分局跟进整改；严重预警请视情况约谈医疗机构负责人，拒不整改的，"
                  "将有关线索移交同级行风主管部门和纪检监察部门。"),
    DISTRIBUTOR: ("配送企业被督促后仍未响应的订单，请通过约谈、暂停拨付结算款、建议生产企业取消其配送委托资格等方式，"
                  "督促配送企业落实配送。"),
    BRANCH: "年度集采监管工作报告未按时或未按模板报送的分局，请督促其限期报送（补正）。",
    FUND: "预付款拨付不足或台账有误的，请督促医保经办机构（基金管理中心）及时足额拨付、核对更正台账。",
}
CITY_SUMMARY_ACTION = "各分局负责督促本辖区整改；请市局掌握全市预警情况，对需市局关注的预警及时督办。"
CITY_SUMMARY_ONLY_ACTION = "各分局负责督促本辖区整改；本次没有需市局直接处理的预警，请市局掌握全市预警情况。"
DATA_TEAM_ACTION = ("请核对相关平台导出文件，修正后重新投放至数据接入目录；问题行已隔离、未参与预警计算，"
                    "修正数据入库后重跑相关任务即可更新预警。")


def _actions(table: dict[str, str], rows: list[dict]) -> list[str]:
    present = {rule_actor(row["rule_code"]) for row in rows}
    return [sentence for actor, sentence in table.items() if actor in present]


# The alert workbook of every email (issue 8): typed columns and a title block like the other
# reports; each figure typed by its rule's unit (money #,##0.00, ratios as percentages, counts as
# integers when whole); identifiers only the data team uses in the last sheet.
XLSX_ALERT_HEADER = [
    Column("严重程度"), Column("期间"), Column("分局"), Column("预警规则"), Column("医疗机构代码"),
    Column("医疗机构"), Column("批次"), Column("通用名"), Column("产品代码"), Column("订单号"), Column("类别"),
    Column("执行月份", "integer"), Column("数据文件"), Column("指标值"), Column("阈值"), Column("计量单位"),
    Column("说明", "long_text"), Column("首次发现时间", "datetime"),
]
XLSX_TECHNICAL_HEADER = [
    Column("预警编号", "integer"), Column("alert_key"), Column("期间"), Column("规则代码"), Column("分局代码"),
    Column("批次代码"), Column("DAG"), Column("运行"),
]
# unit (catalog ``unit``) → the cell's kind; the unit column names what the format does not show
_UNIT_KINDS = {formatting.MONEY_UNIT: "money", formatting.UNIT_PRICE_UNIT: "money",
               formatting.PERCENT_UNIT: "percent", formatting.HOURS_UNIT: "decimal"}
_UNIT_SHOWN_BY_FORMAT = {formatting.PERCENT_UNIT, formatting.FLAG_UNIT}


def _typed_figure(value, unit: str, breach: formatting.Breach):
    number = formatting.decimal_of(value)
    if number is None:
        return None
    if unit == formatting.FLAG_UNIT:
        return "是" if number else "否"
    return TypedValue(number, _UNIT_KINDS.get(unit, "quantity"), breach)


def _xlsx_figures(row: dict) -> tuple:
    """(metric cell, threshold cell, unit) of an alert: typed by its rule's units, the metric
    rounded away from its threshold (as in the email's text)."""
    metric_unit, threshold_unit = rule_units(row["rule_code"])
    metric = formatting.decimal_of(row.get("metric_value"))
    threshold = formatting.decimal_of(row.get("threshold_value"))
    breach: formatting.Breach = None
    if metric is not None and threshold is not None and metric != threshold:
        breach = "below" if metric < threshold else "above"
    if metric_unit == formatting.FLAG_UNIT:
        return _typed_figure(metric, metric_unit, None), None, ""
    unit = metric_unit if metric_unit == threshold_unit else f"{metric_unit}/{threshold_unit}".strip("/")
    shown_unit = "" if metric_unit in _UNIT_SHOWN_BY_FORMAT else unit
    return (_typed_figure(metric, metric_unit, breach), _typed_figure(threshold, threshold_unit, None),
            shown_unit)


def _xlsx_alert_rows(rows: list[dict], audiences: Audiences) -> list[list]:
    out = []
    for row in rows:
        metric, threshold, unit = _xlsx_figures(row)
        out.append([
            label(SEVERITY_ZH, row["severity"]), formatting.period_zh(row["period"]),
            audiences.branch_name(row["branch_code"]), rule_title(row["rule_code"]),
            row.get("institution_code"), row.get("institution_name"),
            row.get("batch_name") or row.get("batch_code"), row.get("generic_name"), row.get("product_code"),
            row.get("order_id"), label(CATEGORY_ZH, row.get("category")) or None, row.get("milestone_month"),
            row.get("source_file"), metric, threshold, unit, row["message"],
            formatting.as_utc(row.get("first_raised_at")),
        ])
    return out


def _xlsx_technical_rows(rows: list[dict]) -> list[list]:
    return [[row["alert_id"], row["alert_key"], row["period"], row["rule_code"], row["branch_code"],
             row.get("batch_code"), row.get("dag_id"), row.get("run_id")] for row in rows]


def _alert_sheets(named: dict[str, list[dict]], everything: list[dict], audiences: Audiences) -> dict:
    """The alert sheets of an email, then the technical sheet (last) of every alert listed."""
    sheets: dict = {title: (XLSX_ALERT_HEADER, _xlsx_alert_rows(rows, audiences)) for title, rows in named.items()}
    sheets[TECHNICAL_SHEET] = (XLSX_TECHNICAL_HEADER, _xlsx_technical_rows(everything))
    return sheets


def _workbook_title(audience: str, run, audiences: Audiences) -> BookTitle:
    """Issued by the city bureau (the system's office), for the audience, of the run's period."""
    # each sheet's title line: 「月度监测·预警明细（2025年2月）」
    return BookTitle(office=audiences.name(CITY), title=dag_title(run.dag_id),
                     period=run.period.label, profile=audiences.profile or None,
                     notes=(f"发送对象：{audiences.name(audience)}",))


def _involved(rows: list[dict], audiences: Audiences) -> str:
    """What the alerts concern, counted by kind: 2 个分局、5 家医疗机构 (and the others)."""
    branches = {row["branch_code"] for row in rows if audiences.is_branch(row["branch_code"])}
    institutions = {row["institution_code"] for row in rows if row.get("institution_code")}
    other = sum(1 for row in rows if not audiences.is_branch(row["branch_code"]))
    text = f"涉及 {len(branches)} 个分局"
    if institutions:
        text += f"、{len(institutions)} 家医疗机构"
    if other:
        text += f"（另有 {other} 条属市局本级或未登记的分局）"
    return text


def _summary(rows: list[dict], audiences: Audiences) -> tuple[list[str], list[list]]:
    """Counts per branch × rule, by severity."""
    counts: dict[tuple[str, str], Counter] = defaultdict(Counter)
    for row in rows:
        counts[(row["branch_code"], row["rule_code"])][row["severity"]] += 1
    rule_rank = {code: index for index, code in enumerate(RULES)}
    header = ["分局", "预警规则", *(SEVERITY_ZH[s] for s in SEVERITY_ORDER), "合计"]
    body = []
    for (branch_code, rule_code) in sorted(counts, key=lambda key: (key[0], rule_rank.get(key[1], 99))):
        by_severity = counts[(branch_code, rule_code)]
        body.append([
            _code_and_name(branch_code, audiences.branch_name(branch_code)),
            f"{rule_title(rule_code)}（{rule_code}）",
            *(by_severity.get(s, 0) for s in SEVERITY_ORDER),
            sum(by_severity.values()),
        ])
    total: Counter = Counter()
    for by_severity in counts.values():
        total.update(by_severity)
    body.append(["合计", "", *(total.get(s, 0) for s in SEVERITY_ORDER), sum(total.values())])
    return header, body


# ---------------------------------------------------------------- composing

@dataclass
class Outgoing:
    audience: str
    recipients: list[str]
    subject: str
    page: mail_templates.Page
    alert_ids: list[int]
    xlsx_name: str | None  # the email's own workbook (None: its files say it all)
    sheets: dict
    files: list[Path] = field(default_factory=list)
    title: BookTitle | None = None  # the title block of its own workbook
    cc: list[str] = field(default_factory=list)  # in copy (a distributor's branch)

    @property
    def html(self) -> str:
        return mail_templates.html(self.page)

    @property
    def text(self) -> str:
        return mail_templates.text(self.page)

    def attachment_names(self) -> list[str]:
        return [*([self.xlsx_name] if self.xlsx_name else []), *(path.name for path in self.files)]


# ---------------------------------------------------------------- the delay list to distributors
# seed 002 §二(六): the branch sends each distributor its delay list; the system sends the part of
# every distributor with an address itself (the branch in copy) and names the others in the
# branch's email.
DELAY_LIST_NAME = "延迟响应清单"


def _delay_list_rows(rows: list[dict]) -> list[dict]:
    return [row for row in rows if row["rule_code"] in DELAY_LIST_RULES]


def _distributor_counts(rows: list[dict], audiences: Audiences, mailed: bool) -> list[list]:
    """[name, code, orders] of the delay list's distributors mailed directly (or not)."""
    counts = Counter(row.get("distributor_code") or "" for row in _delay_list_rows(rows)
                     if audiences.mailed_directly(row) == mailed)
    return [[audiences.distributor_name(code) if code else UNREGISTERED_DISTRIBUTOR, code or "（订单未填写）", count]
            for code, count in sorted(counts.items())]


def _distributor_sections(rows: list[dict], audiences: Audiences) -> list[tuple[str, mail_templates.Block]]:
    """In a branch's email: the distributors it must contact itself, and those the system mailed."""
    sections: list[tuple[str, mail_templates.Block]] = []
    header = ["配送企业", "配送企业代码", "延迟响应订单数"]
    itself = _distributor_counts(rows, audiences, mailed=False)
    if itself:
        sections.append(("需贵局自行联系的配送企业（未登记联系邮箱，系统未直接发送）",
                         mail_templates.Table(header, itself, {2})))
    mailed = _distributor_counts(rows, audiences, mailed=True)
    if mailed:
        sections.append(("已由系统直接发送延迟响应清单的配送企业（抄送贵局）",
                         mail_templates.Table(header, mailed, {2})))
    return sections


def _branch_actions(rows: list[dict], audiences: Audiences) -> list[str]:
    actions = _actions(BRANCH_ACTIONS, rows)
    delay = _delay_list_rows(rows)
    if not delay:
        return actions
    grace = _grace_hours(audiences.profile)
    itself = [name for name, _, _ in _distributor_counts(rows, audiences, mailed=False)]
    if itself:
        sentence = (f"请将延迟响应清单及时发送{'、'.join(itself)}（未登记联系邮箱；附件中已按配送企业分别生成"
                    f"清单，可直接转发），督促其在收到清单后{grace}小时内响应、配送到位；")
        if len(itself) < len({row.get("distributor_code") for row in delay}):
            sentence += "其余配送企业的清单已由系统直接发送（抄送贵局）；"
    else:
        sentence = (f"各配送企业的延迟响应清单已由系统直接发送（抄送贵局），请督促其在收到清单后{grace}小时内"
                    "响应、配送到位；")
    sentence += "配送企业被督促后仍未响应的，请及时报告市医疗保障局。"
    return [sentence if text == BRANCH_ACTIONS[DISTRIBUTOR] else text for text in actions]


def _grace_hours(profile: dict) -> int:
    return int(profile.get("order_response", {}).get("distributor_grace_hours", 24))


def _citation(profile: dict, rule_code: str) -> str:
    from vbp_monitor.core.profiles import cite

    try:
        return cite(profile, rule_code)
    except KeyError:
        return ""


DISTRIBUTOR_COLUMNS = [Column("序号", "integer"), Column("订单号"), Column("医疗机构代码"), Column("医疗机构"),
                       Column("产品代码"), Column("通用名"), Column("规格"), Column("数量", "quantity"),
                       Column("金额（元）", "money"), Column("下单时间", "datetime"), Column("响应时限", "datetime"),
                       Column("响应时间", "datetime"), Column("未响应小时数", "decimal", breach="above")]


def _mark(row: dict) -> dt.datetime | None:
    ordered = formatting.as_datetime(row.get("order_time"))
    limit = formatting.decimal_of(row.get("threshold_value"))
    return None if ordered is None or limit is None else ordered + dt.timedelta(hours=float(limit))


def _compose_distributor(audience: str, recipients: list[str], rows: list[dict], run, audiences: Audiences,
                         files: list[Path]) -> Outgoing:
    """A distributor's part of one branch's delay list: its orders only, the branch in copy."""
    branch_code, distributor_code = distributor_of_audience(audience) or ("", "")
    rows = sorted(rows, key=lambda r: (str(r.get("order_time") or ""), r.get("order_id") or "", r["alert_id"]))
    branch, name = audiences.branch_name(branch_code), audiences.distributor_name(distributor_code)
    when = formatting.period_zh(run.period.label)
    limit = formatting.quantity(formatting.decimal_of(rows[0].get("threshold_value")) or 48)
    grace = _grace_hours(audiences.profile)
    citation = _citation(audiences.profile, rows[0]["rule_code"])
    verb = "重发" if run.force_resend else ""
    subject = f"{DISTRIBUTOR_SUBJECT_TAG}{branch} · {DELAY_LIST_NAME} · {when} · {name} · {verb}{len(rows)}笔订单"
    institutions_count = len({row.get("institution_code") for row in rows})
    paragraphs = [
        f"{name}：",
        (f"依据{citation or '集采配送保障有关规定'}：全市各级医疗机构发送给配送企业的订单超过{limit}小时未响应的，"
         f"医疗保障部门汇总形成延迟响应清单发送给配送企业，督促及时配送到位；被督促的配送企业无不可抗力原因再次超过"
         f"{grace}小时仍未响应的，医疗保障部门将报告市医疗保障局，通过约谈、暂停拨付结算款、建议生产企业取消配送企业的"
         "委托资格等方式，督促配送企业切实落实配送计划。"),
        (f"贵公司以下 {len(rows)} 笔订单（涉及 {institutions_count} 家医疗机构）在下单后{limit}小时内未响应，"
         f"已列入{branch}{when}延迟响应清单，明细见下表及附件 Excel。"),
        *(["（应操作人员要求重新发送。）"] if run.force_resend else []),
    ]
    actions = [f"请贵公司在收到本清单后{grace}小时内响应上述订单并及时配送到位；因不可抗力等原因无法按时配送的，"
               f"请在此期限内向{branch}书面说明。逾期仍未响应的，{branch}将报告市医疗保障局。",
               f"本邮件已抄送{branch}；如对订单有疑问，请与{branch}或下单医疗机构联系。"]
    body = []
    for number, row in enumerate(rows, 1):
        mark = _mark(row)
        answered = row.get("response_time")
        body.append([number, row.get("order_id") or "", _code_and_name(row.get("institution_code"),
                                                                       row.get("institution_name")),
                     _code_and_name(row.get("product_code"), row.get("generic_name")),
                     formatting.datetime_local(row.get("order_time")), formatting.datetime_local(mark),
                     f"{formatting.datetime_local(answered)} 响应" if answered else "未响应",
                     formatting.hours(row.get("metric_value"))])
    table = mail_templates.Table(["序号", "订单号", "医疗机构", "产品", "下单时间", f"{limit}小时响应时限",
                                  "响应情况", "未响应小时数"], body, {0, 7}, records=True)
    footer = ("本邮件由集采监管监测系统（vbp-monitor）自动发送，请勿直接回复；同一订单只列入一次清单"
              f"（操作人员要求重发时除外）。如对订单数据有疑问，请联系{branch}。")
    page = mail_templates.Page(subject, paragraphs, [("延迟响应订单", table)], actions, footer)
    xlsx_name = None
    sheets: dict = {}
    if not files:  # the judge wrote no part for it (an older run): the email makes its own
        log.warning("no delay-list file for %s: the email carries a workbook of its orders", audience)
        xlsx_name = "_".join(map(safe_name_part, (DELAY_LIST_NAME, branch_code, distributor_code,
                                                  run.period.label))) + ".xlsx"
        sheets = {DELAY_LIST_NAME: (DISTRIBUTOR_COLUMNS, [
            [number, row.get("order_id"), row.get("institution_code"), row.get("institution_name"),
             row.get("product_code"), row.get("generic_name"), row.get("specification"),
             row.get("order_quantity"), row.get("order_amount"), row.get("order_time"), _mark(row),
             row.get("response_time") or "未响应", row.get("metric_value")]
            for number, row in enumerate(rows, 1)])}
    title = BookTitle(office=branch, title=DELAY_LIST_NAME, period=run.period.label,
                      profile=audiences.profile or None, notes=(f"致：{name}（{distributor_code}）",))
    lowered = {address.lower() for address in recipients}
    cc = [address for address in audiences.copied(audience) if address.lower() not in lowered]
    return Outgoing(audience, recipients, subject, page, [row["alert_id"] for row in rows], xlsx_name, sheets,
                    files, title=title, cc=cc)


def _compose(audience: str, recipients: list[str], rows: list[dict], run, audiences: Audiences,
             files: list[Path]) -> Outgoing:
    other = {row["period"] for row in rows} - {run.period.label}
    if other:  # the subject, the text and the files are the run's period: never another's alerts
        raise ValueError(f"alerts of {sorted(other)} in an email of {run.period.label}")
    if distributor_of_audience(audience):
        return _compose_distributor(audience, recipients, rows, run, audiences, files)
    rows = sorted(rows, key=_sort_key)
    dag_zh = dag_title(run.dag_id)
    when = formatting.period_zh(run.period.label)
    verb = "重发" if run.force_resend else "新增"
    name = audiences.name(audience)
    severity_note = _severity_counts_zh(rows)
    resend_note = ["（应操作人员要求重新发送本期预警。）"] if run.force_resend else []
    xlsx_name = alert_workbook_name(audience, run.dag_id, run.period.label)

    if audience == DATA_TEAM:
        subject = f"{DQ_SUBJECT_TAG}{dag_zh} · {when} · {len(rows)}条数据质量问题"
        header = ["严重程度", "期间", "数据文件", "问题行数", "说明"]
        body = [[label(SEVERITY_ZH, r["severity"]), r["period"], r.get("source_file") or "",
                 formatting.with_unit(r.get("metric_value"), rule_units(r["rule_code"])[0]), r["message"]]
                for r in rows]
        page = mail_templates.Page(subject, [
            "数据组：",
            f"{dag_zh}（{when}）的数据校验发现 {len(rows)} 项数据质量问题（{severity_note}）。",
            *resend_note,
        ], [("数据质量问题", mail_templates.Table(header, body, {3}, [r["severity"] for r in rows],
                                                 records=True))],
            [DATA_TEAM_ACTION])
        sheets = _alert_sheets({"数据质量问题": rows}, rows, audiences)
    elif audience == CITY:
        detail = [row for row in rows if audiences.city_detail(row)]
        subject = (f"{SUBJECT_TAG}{name} · {dag_zh} · {when} · 汇总{verb}{len(rows)}条"
                   f"（需市局关注{len(detail)}条）")
        summary_header, summary_rows = _summary(rows, audiences)
        sections: list[tuple[str, mail_templates.Block]] = [("各分局预警汇总", mail_templates.Table(
            summary_header, summary_rows, set(range(2, len(summary_header)))))]
        if detail:
            sections.append(("需市局关注的预警（严重预警、预付款拨付不足、分局辖区网采率、年度报告等）",
                             _alert_table(detail, audiences, with_branch=True)))
        overview = (f"{dag_zh}（{when}）{verb}预警 {len(rows)} 条（{severity_note}），"
                    f"{_involved(rows, audiences)}，各分局已分别收到本辖区明细。")
        if detail:
            overview += f"其中需市局关注的 {len(detail)} 条列于汇总表之后，全部明细见附件 Excel。"
            actions = [CITY_SUMMARY_ACTION, *_actions(CITY_ACTIONS, detail)]
        else:
            overview += "本次没有需市局直接处理的预警，全部明细见附件 Excel。"
            actions = [CITY_SUMMARY_ONLY_ACTION]
        page = mail_templates.Page(subject, [f"{name}：", overview, *resend_note], sections, actions)
        counts = [Column(title, "integer") if index >= 2 else Column(title)
                  for index, title in enumerate(summary_header)]
        sheets = {"汇总": (counts, summary_rows),
                  **_alert_sheets({"需市局关注": detail, "全部预警": rows}, rows, audiences)}
    else:
        subject = f"{SUBJECT_TAG}{name} · {dag_zh} · {when} · {verb}{len(rows)}条"
        paragraphs = [
            f"{name}：",
            f"{dag_zh}（{when}）发现贵局辖区{verb}预警 {len(rows)} 条（{severity_note}），按严重程度从高到低"
            "列于下表，明细见附件 Excel。",
            *resend_note,
        ]
        page = mail_templates.Page(subject, paragraphs, [
            ("预警明细", _alert_table(rows, audiences, with_branch=False)), *_distributor_sections(rows, audiences)],
            _branch_actions(rows, audiences))
        sheets = _alert_sheets({"预警明细": rows}, rows, audiences)
    return Outgoing(audience, recipients, subject, page, [row["alert_id"] for row in rows], xlsx_name,
                    sheets, files, title=_workbook_title(audience, run, audiences))


def _extra_files(attachments: dict | None, key: str | None) -> list[Path]:
    files = []
    for item in (attachments or {}).get(key, []) if key else []:
        path = Path(item)
        if path.is_file():
            files.append(path)
        else:
            log.warning("attachment %s for %s does not exist: sent without it", path, key)
    return files


def _files_key(audience: str, audiences: Audiences) -> str:
    """The key of ``attachments`` for an audience: a branch code, the city's code, or data_team."""
    if audience == DATA_TEAM or distributor_of_audience(audience):
        return audience  # a distributor's part of the delay list: keyed by its audience
    return audiences.city_code if audience == CITY else audience.split(":", 1)[1]


Pair = tuple[int, str, str]  # (alert_id, audience, address): one alert for one address


def _wanted(rows: list[dict], ledger: Ledger, audiences: Audiences, force: bool) -> tuple[set[Pair], Counter]:
    """Every (alert, audience, address) still to send, and the alerts per audience without an address."""
    wanted: set[Pair] = set()
    unaddressed: Counter = Counter()
    for row in rows:
        delivered = ledger.delivered.get(row["alert_id"], {})
        for audience in audiences.of(row):
            recipients = audiences.recipients(audience)
            if not recipients:
                unaddressed[audience] += 1
            elif force or audience not in delivered:
                wanted.update((row["alert_id"], audience, address) for address in recipients
                              if force or address_key(audience, address) not in delivered)
    return wanted, unaddressed


def _compose_all(pairs: set[Pair], rows: dict[int, dict], run, audiences: Audiences,
                 attachments: dict | None) -> list[Outgoing]:
    """One email per audience and set of alerts: the addresses that miss the same alerts share it."""
    by_audience: dict[str, dict[str, set[int]]] = defaultdict(lambda: defaultdict(set))
    for alert_id, audience, address in pairs:
        by_audience[audience][address].add(alert_id)
    outgoing = []
    for audience in sorted(by_audience, key=_audience_order):
        groups: dict[frozenset[int], list[str]] = {}
        for address in audiences.recipients(audience):
            if address in by_audience[audience]:
                groups.setdefault(frozenset(by_audience[audience][address]), []).append(address)
        files = _extra_files(attachments, _files_key(audience, audiences))
        for alert_ids, recipients in groups.items():
            outgoing.append(_compose(audience, recipients, [rows[i] for i in alert_ids], run, audiences, files))
    return outgoing


def message_id(run, mail: Outgoing, domain: str) -> str:
    """A stable Message-ID: the same email sent again (dropped connection, retry) has the same one.

    From the DAG, the period, the audience and the alerts carried; a ``force_resend`` adds the run
    (an operator's resend is a new email).
    """
    basis = [run.dag_id, run.period.label, mail.audience, ",".join(map(str, sorted(mail.alert_ids)))]
    if run.force_resend:
        basis.append(f"resend {run.run_id}")
    digest = hashlib.sha256("\n".join(basis).encode("utf-8")).hexdigest()[:24]
    readable = ".".join(re.sub(r"[^A-Za-z0-9_-]+", "-", part).strip("-")[:40]
                        for part in (run.dag_id, run.period.label, mail.audience))
    domain = re.sub(r"[^A-Za-z0-9.-]+", "", domain) or "localhost"
    return f"<vbp.{readable}.{digest}@{domain}>"


# ---------------------------------------------------------------- bookkeeping

def _claim(conn: Connection, pairs: set[Pair], token: str, now: dt.datetime) -> tuple[set[Pair], set[Pair]]:
    """Claim ``pairs`` for this attempt: returns (owned, held by another attempt).

    INSERT … ON CONFLICT DO NOTHING (``core.db.upsert``) of one row per pair: of two attempts at
    once only one inserts it. Claims older than CLAIM_TTL (their attempt died) are taken over.
    """
    alert_ids = sorted({alert_id for alert_id, _, _ in pairs})
    for chunk in _chunks(alert_ids):
        conn.execute(delete(alert_deliveries).where(
            alert_deliveries.c.alert_id.in_(chunk), alert_deliveries.c.message_id.like(f"{CLAIM_PREFIX}%"),
            alert_deliveries.c.sent_at < now - CLAIM_TTL))
    # a fixed order: two attempts claiming at once wait for each other instead of deadlocking
    upsert(conn, alert_deliveries, [
        {"alert_id": alert_id, "audience": address_key(audience, address), "sent_at": now, "message_id": token}
        for alert_id, audience, address in sorted(pairs)], update_columns=[])
    # Read after the insert (READ COMMITTED: a fresh snapshot): an attempt that completed the
    # audience meanwhile has replaced its address rows by the audience row, so our insert did
    # not conflict — the audience row says it is done.
    ledger = _ledger(conn, alert_ids)
    owned, held = set(), set()
    for pair in pairs:
        holder = ledger.claims.get((pair[0], address_key(pair[1], pair[2])))
        if pair[1] in ledger.delivered.get(pair[0], {}):
            continue  # our claim row, if any, is released at the end of the attempt
        if holder == token:
            owned.add(pair)
        elif holder is not None:
            held.add(pair)
    return owned, held


def _release(engine, token: str) -> int:
    """Delete this attempt's claims that were not turned into deliveries: the retry sends them."""
    with engine.begin() as conn:
        return conn.execute(delete(alert_deliveries).where(alert_deliveries.c.message_id == token)).rowcount or 0


def _settle(conn: Connection, audiences: Audiences, rows: list[dict], now: dt.datetime,
            sent: tuple[str, str] | None = None) -> int:
    """Record the audiences every address of which has an alert, and set ``notified_at``.

    One row ``(alert_id, audience)`` replaces the address rows of a complete audience. ``sent``
    (audience, Message-ID): the email just accepted, whose audience rows are refreshed even if
    present (a ``force_resend``). Returns the number of alerts newly marked notified.
    """
    ledger = _ledger(conn, [row["alert_id"] for row in rows])
    complete: list[dict] = []
    done_ids = []
    for row in rows:
        delivered = ledger.delivered.get(row["alert_id"], {})
        for audience in audiences.of(row):
            recipients = audiences.recipients(audience)
            just_sent = sent is not None and sent[0] == audience
            if not recipients or (audience in delivered and not just_sent):
                continue
            keys = [address_key(audience, address) for address in recipients]
            if all(key in delivered for key in keys):
                message = sent[1] if just_sent and sent else delivered[keys[-1]]
                complete.append({"alert_id": row["alert_id"], "audience": audience, "sent_at": now,
                                 "message_id": message})
                delivered[audience] = message
        if audiences.required(row) <= delivered.keys():
            done_ids.append(row["alert_id"])
    # one order for every attempt: two settling the same alerts wait for each other, never deadlock
    upsert(conn, alert_deliveries, sorted(complete, key=lambda item: (item["alert_id"], item["audience"])))
    for audience in {item["audience"] for item in complete}:
        ids = [item["alert_id"] for item in complete if item["audience"] == audience]
        for chunk in _chunks(ids):
            conn.execute(delete(alert_deliveries).where(
                alert_deliveries.c.alert_id.in_(chunk),
                alert_deliveries.c.audience.startswith(f"{audience}{ADDRESS_SEPARATOR}", autoescape=True)))
    marked = 0
    for chunk in _chunks(done_ids):
        result = conn.execute(update(alerts).where(alerts.c.alert_id.in_(chunk), alerts.c.notified_at.is_(None))
                              .values(notified_at=now))
        marked += result.rowcount or 0
    return marked


def _record(engine, mail: Outgoing, accepted: list[str], rows: dict[int, dict], audiences: Audiences,
            message: str) -> None:
    """The server accepted ``mail`` for ``accepted``: their claims become deliveries."""
    sent_at = dt.datetime.now(dt.UTC)
    with engine.begin() as conn:
        upsert(conn, alert_deliveries, [
            {"alert_id": alert_id, "audience": address_key(mail.audience, address), "sent_at": sent_at,
             "message_id": message} for alert_id in mail.alert_ids for address in accepted])
        _settle(conn, audiences, [rows[i] for i in mail.alert_ids], sent_at, (mail.audience, message))


# ---------------------------------------------------------------- sending

class SmtpUnreachable(NotificationError):
    """No connection to the SMTP server could be made (or kept): the remaining emails wait."""


def _smtp_hook():
    from airflow.providers.smtp.hooks.smtp import SmtpHook

    return SmtpHook(smtp_conn_id=config.smtp_conn_id())


class SmtpSession:
    """The attempt's connection to ``smtp_default``; after a drop it reconnects and sends again."""

    def __init__(self, max_connections: int | None = None):
        self.max_connections = max_connections or MAX_CONNECTIONS
        self.connections = 0
        self._hook: Any = None
        self.sender = sender()

    def _client(self) -> smtplib.SMTP:
        if self._hook is None:
            if self.connections >= self.max_connections:
                raise SmtpUnreachable(f"the connection dropped {self.connections} times")
            self.connections += 1
            hook = _smtp_hook()
            try:
                hook.get_conn()
            except Exception as exc:
                raise SmtpUnreachable(f"SMTP connection {config.smtp_conn_id()} unreachable: {exc}") from exc
            self._hook = hook
            self.sender = sender(hook.from_email)
        # the hook's own client: its send_email_smtp drops the refused-recipient report of sendmail
        return cast("smtplib.SMTP", self._hook._smtp_client)

    def open(self) -> tuple[str, str]:
        """Connect (if not yet); returns the sender (display name, address)."""
        self._client()
        return self.sender

    def close(self) -> None:
        hook, self._hook = self._hook, None
        if hook is not None:
            try:
                hook.__exit__(None, None, None)
            except Exception:  # an already broken connection
                log.debug("closing the SMTP connection failed", exc_info=True)

    def send(self, message: EmailMessage, recipients: list[str]) -> dict[str, tuple[int, bytes | str]]:
        """Send ``message``; returns the refused recipients {address: (code, reply)}.

        Raises smtplib.SMTPRecipientsRefused / SMTPResponseException when the server refuses it
        for everyone, SmtpUnreachable when no connection can be made.
        """
        while True:
            client = self._client()
            try:
                return dict(client.send_message(message, from_addr=self.sender[1], to_addrs=recipients))
            except (smtplib.SMTPRecipientsRefused, smtplib.SMTPResponseException):
                raise
            except OSError as exc:  # the connection broke: the server may or may not have stored it
                self.close()
                log.warning("SMTP connection dropped while sending %s to %s (%s): reconnecting to send it "
                            "again with the same Message-ID %s (a client drops a copy it already has)",
                            message["X-VBP-Audience"], ", ".join(recipients), exc, message["Message-ID"])


def sender(connection_from: str | None = None) -> tuple[str, str]:
    """(display name, address) of the From: ``VBP_MAIL_FROM`` (``名称 <address>``, an address or a
    name), else ``DEFAULT_DISPLAY_NAME`` and the SMTP connection's ``from_email``."""
    display_name, address = mime.parse_sender(config.mail_from())
    return display_name or DEFAULT_DISPLAY_NAME, address or connection_from or DEFAULT_FROM


def _domain(address: str) -> str:
    return address.rsplit("@", 1)[-1]


def _message(mail: Outgoing, sender: tuple[str, str], message: str, folder: Path) -> EmailMessage:
    from vbp_monitor.outputs.spreadsheets import write_xlsx

    own = [write_xlsx(folder / mail.xlsx_name, mail.sheets, title=mail.title)] if mail.xlsx_name else []
    headers = {"X-VBP-Audience": mail.audience}
    if mail.cc:
        headers["Cc"] = ", ".join(mail.cc)
    # names come from platform files: a CR/LF in one must not start a header of its own
    return mime.build_message(
        subject=" ".join(mail.subject.split()), sender=sender, to=mail.recipients, text=mail.text, html=mail.html,
        message_id=message, attachments=[mime.Attachment.of(path) for path in [*own, *mail.files]],
        headers=headers)


@dataclass
class Attempt:
    """What one call of ``notify_run`` did."""

    sent: list[Outgoing] = field(default_factory=list)
    refused: list[tuple[Outgoing, str, str]] = field(default_factory=list)  # (mail, address, reason)
    unreachable: SmtpUnreachable | None = None
    held: set[Pair] = field(default_factory=set)
    failed: set[Pair] = field(default_factory=set)  # not retried within this attempt

    def summary(self) -> dict:
        carried = {alert_id for mail in self.sent for alert_id in mail.alert_ids}
        audiences = list(dict.fromkeys(mail.audience for mail in self.sent))
        return {"emails": len(self.sent), "alerts": len(carried), "audiences": audiences}


def _deliver(engine, session: SmtpSession, attempt: Attempt, mail: Outgoing, run, rows: dict[int, dict],
             audiences: Audiences, folder: Path) -> None:
    pairs = {(alert_id, mail.audience, address) for alert_id in mail.alert_ids for address in mail.recipients}
    if attempt.unreachable is not None:
        attempt.failed |= pairs
        return
    try:
        sender = session.open()
        message = message_id(run, mail, _domain(sender[1]))
        refused = session.send(_message(mail, sender, message, folder), [*mail.recipients, *mail.cc])
    except SmtpUnreachable as exc:
        attempt.unreachable = exc
        attempt.failed |= pairs
        return
    except smtplib.SMTPRecipientsRefused as exc:
        refused = dict(exc.recipients)
    except smtplib.SMTPResponseException as exc:
        refused = dict.fromkeys([*mail.recipients, *mail.cc], (exc.smtp_code, exc.smtp_error))
    refused_lower = {address.lower(): reply for address, reply in refused.items()}
    for address in mail.cc:  # a copy: the branch has its own email of these alerts
        if address.lower() in refused_lower and address.lower() not in {a.lower() for a in mail.recipients}:
            log.warning("%s refused the copy of %r (%s): the branch's own email carries these alerts",
                        address, mail.subject, refused_lower[address.lower()])
    accepted = [address for address in mail.recipients if address.lower() not in refused_lower]
    for address in mail.recipients:
        if address.lower() in refused_lower:
            code, reply = refused_lower[address.lower()]
            text = reply.decode("utf-8", "replace") if isinstance(reply, bytes) else str(reply)
            attempt.refused.append((mail, address, f"{code} {text}"))
            attempt.failed |= {(alert_id, mail.audience, address) for alert_id in mail.alert_ids}
            log.error("%s (%s) refused the email %r: %s %s; its %d alerts stay un-notified for this address "
                      "and the retry sends them to it alone", address, mail.audience, mail.subject, code, text,
                      len(mail.alert_ids))
    if accepted:
        _record(engine, mail, accepted, rows, audiences, message)
        attempt.sent.append(mail)
        log.info("sent %s to %s: %d alerts (%s), attachments: %s, Message-ID %s", mail.audience,
                 ", ".join(accepted), len(mail.alert_ids), mail.subject, ", ".join(mail.attachment_names()),
                 message)


def notify_run(engine, run, attachments: dict[str, list[Path]] | None = None, profile: dict | None = None) -> dict:
    """Email the un-notified alerts of ``run``'s DAG and period (see module docs).

    ``attachments``: the period's files per audience: a branch_code (that branch's email) or the
    city row's branch_code (the city's email), ``"data_team"`` for the data team's email, a
    distributor audience (``reference.distributor_audience``) for its part of the delay list.
    ``profile``: the policy profile (default ``load_profile()``): ``send_to_distributors``, the
    hours and the clause a distributor's email names.
    Returns ``{"emails": n, "alerts": m, "audiences": [...]}``. Raises NotificationError when
    the SMTP server is down or refused an address (after sending everything else).
    """
    where = f"{run.dag_id} {run.period.label}"
    from vbp_monitor.core.profiles import load_profile

    profile = profile if profile is not None else load_profile()
    with engine.connect() as conn:
        audiences = Audiences(branch_directory(conn), city_branch_code(conn), config.data_team_emails(),
                              distributor_directory(conn), sends_to_distributors(profile), profile)
        waiting = _other_periods_waiting(conn, run)
    if waiting:
        log.warning("%s: alerts of other periods are still un-notified (%s); this run mails only its own "
                    "period. Clear the notify task of those periods' runs (or trigger them again) to send them",
                    where, ", ".join(f"{period}: {count}" for period, count in waiting.items()))
    token = f"{CLAIM_PREFIX}{uuid.uuid4().hex}"
    attempt = Attempt()
    session = SmtpSession()
    deadline = time.monotonic() + CLAIM_WAIT_SECONDS
    first = True
    try:
        with tempfile.TemporaryDirectory(prefix="vbp-mail-") as folder:
            while True:
                now = dt.datetime.now(dt.UTC)
                with engine.begin() as conn:
                    pending = _pending_alerts(conn, run)
                    if not run.force_resend:  # an earlier attempt may have stopped before settling
                        _settle(conn, audiences, pending, now)
                    wanted, unaddressed = _wanted(pending, _ledger(conn, [r["alert_id"] for r in pending]),
                                                  audiences, run.force_resend)
                    wanted -= attempt.failed
                    if run.force_resend:
                        owned, attempt.held = wanted, set()
                    else:
                        owned, attempt.held = _claim(conn, wanted, token, now)
                if first:
                    for audience, count in unaddressed.items():
                        if distributor_of_audience(audience):  # named in its branch's email instead
                            log.info("%s has no email address (distributors.emails): its %d delay-list "
                                     "orders are named in the branch's email", audience, count)
                            continue
                        log.warning("%s has no email address (branches.emails / VBP_DATA_TEAM_EMAILS): "
                                    "%d alerts cannot be mailed to it", audience, count)
                    first = False
                rows = {row["alert_id"]: row for row in pending}
                for mail in _compose_all(owned, rows, run, audiences, attachments):
                    _deliver(engine, session, attempt, mail, run, rows, audiences, Path(folder))
                if not attempt.held or attempt.unreachable is not None or time.monotonic() > deadline:
                    break
                # another attempt (a parallel run of the period) is sending these: wait for it to
                # confirm them, or to release them after a failure and send them then
                time.sleep(CLAIM_POLL_SECONDS)
    finally:
        session.close()
        _release(engine, token)
    return _outcome(run, attempt)


def _outcome(run, attempt: Attempt) -> dict:
    where = f"{run.dag_id} {run.period.label}"
    result = attempt.summary()
    log.info("%s: %d emails sent (%s), %d alerts", where, result["emails"],
             ", ".join(result["audiences"]) or "none", result["alerts"])
    if attempt.unreachable is not None:
        pending = len({alert_id for alert_id, _, _ in attempt.failed})
        log.error("%s: %s; %d alerts stay un-notified and the next attempt sends them", where,
                  attempt.unreachable, pending)
        raise NotificationError(f"SMTP server unreachable ({attempt.unreachable}); "
                                f"{pending} alerts not sent") from attempt.unreachable
    if attempt.refused:
        names = "; ".join(f"{mail.audience} {address}: {reason}" for mail, address, reason in attempt.refused)
        raise NotificationError(
            f"{len(attempt.refused)} addresses refused the email ({names}); their alerts stay un-notified "
            "for them and the next attempt sends them to these addresses only")
    if attempt.held:
        raise NotificationError(
            f"{len({alert_id for alert_id, _, _ in attempt.held})} alerts are still being sent by another "
            f"attempt after {CLAIM_WAIT_SECONDS:.0f}s; the next attempt checks them again")
    return result


# ---------------------------------------------------------------- task failures

def _failure_mail(context) -> tuple[str, mail_templates.Page]:
    ti = context.get("task_instance") or context.get("ti")
    dag_run = context.get("dag_run")
    dag_id = getattr(ti, "dag_id", None) or getattr(dag_run, "dag_id", None) or "?"
    task_id = getattr(ti, "task_id", None) or "?"
    run_id = context.get("run_id") or getattr(ti, "run_id", None) or getattr(dag_run, "run_id", None) or "?"
    logical = context.get("logical_date") or getattr(dag_run, "logical_date", None)
    try_number = getattr(ti, "try_number", None)
    max_tries = getattr(ti, "max_tries", None)
    tries = f"{try_number}" + (f" / {max_tries + 1}" if isinstance(max_tries, int) else "")
    exception = context.get("exception")
    if isinstance(exception, BaseException):
        detail = "".join(traceback.format_exception(exception))
    else:
        detail = str(exception or "（无异常信息 no exception in context）")
    detail = detail[-8000:]
    try:
        log_url = getattr(ti, "log_url", None)
    except Exception:
        log_url = None
    dag_zh = dag_title(dag_id)
    subject = f"{FAILURE_SUBJECT_TAG}任务失败 Task failed: {dag_id}.{task_id} · {logical or run_id}"
    rows = [
        ["DAG", f"{dag_id}（{dag_zh}）"],
        ["任务 Task", task_id],
        ["运行 Run ID", run_id],
        ["逻辑日期 Logical date", str(logical or "")],
        ["尝试次数 Try number", tries],
        ["异常 Exception", str(exception or "")[:500]],
    ]
    if log_url:
        rows.append(["日志 Log", log_url])
    page = mail_templates.Page(subject, [
        "数据组：",
        f"{dag_zh}（{dag_id}）的任务 {task_id} 在用尽重试次数后仍然失败，本次运行的预警可能未计算或未发送。",
        f"Task {task_id} of DAG {dag_id} failed after its last retry; this run's alerts may not be "
        "computed or sent.",
    ], [("", mail_templates.Table(["项目 Item", "内容 Value"], rows)),
        ("异常详情 Traceback", mail_templates.Preformatted(detail))], [
        "请查看日志排除原因后，在 Airflow 中清除（Clear）该任务重跑；重跑不会重复发送已发出的预警。",
        "Check the log, fix the cause and clear the task to rerun it (reruns never send an alert twice).",
    ])
    return subject, page


def notify_task_failure(context) -> None:
    """``on_failure_callback``: email the data team once (Airflow calls it after the last retry).

    Never raises: a failing callback must not hide the task's own failure.
    """
    try:
        recipients = config.data_team_emails()
        subject, page = _failure_mail(context)
        if not recipients:
            log.warning("VBP_DATA_TEAM_EMAILS is empty: not emailing the failure %s", subject)
            return
        session = SmtpSession(max_connections=2)
        try:
            sender = session.open()
            message = mime.build_message(
                subject=subject, sender=sender, to=recipients, text=mail_templates.text(page),
                html=mail_templates.html(page),
                message_id=make_msgid(idstring="vbp-failure", domain=_domain(sender[1])),
                headers={"X-VBP-Audience": DATA_TEAM})
            refused = session.send(message, recipients)
        finally:
            session.close()
        if refused:
            log.error("the data team's addresses %s refused the failure email %s", ", ".join(refused), subject)
        log.info("emailed the data team (%s) about %s", ", ".join(recipients), subject)
    except Exception:
        log.exception("could not email the data team about a failed task")


# ================================================================ documents (no alert attached)
# A document mailed once (the monthly progress report; an annual notice may follow): there
# is no alert to hang the delivery on, so ``document_deliveries`` records it, one row per
# document key and recipient address, with the same claims as alert deliveries (two attempts
# at once: one sends) and the same SmtpSession / MIME code. A rerun with the same key mails
# nothing; ``force_resend`` mails again; a server that is down leaves the claim released and
# the next attempt sends it.

def _document_rows(conn: Connection, key: str) -> dict[str, str | None]:
    from vbp_monitor.model.schema import document_deliveries

    rows = conn.execute(select(document_deliveries.c.recipient, document_deliveries.c.message_id)
                        .where(document_deliveries.c.document_key == key))
    return {row[0]: row[1] for row in rows}


def document_message_id(key: str, audience: str, run, domain: str) -> str:
    """Stable per document and audience (a copy sent again after a drop has the same one);
    a ``force_resend`` adds the run."""
    basis = [key, audience] + ([f"resend {run.run_id}"] if run.force_resend else [])
    digest = hashlib.sha256("\n".join(basis).encode("utf-8")).hexdigest()[:24]
    readable = ".".join(re.sub(r"[^A-Za-z0-9_-]+", "-", part).strip("-")[:40]
                        for part in (run.dag_id, run.period.label, audience))
    domain = re.sub(r"[^A-Za-z0-9.-]+", "", domain) or "localhost"
    return f"<vbp.doc.{readable}.{digest}@{domain}>"


def send_documents(engine, run, audience: str, subject: str, page: mail_templates.Page, files: list[Path],
                   key: str) -> dict:
    """Mail ``files`` with ``page`` to ``audience`` (``city``, ``branch:<code>``, ``data_team``)
    once per ``key``: the addresses that already received ``key`` get nothing (unless
    ``run.force_resend``). Returns ``{"emails", "recipients", "key"}``; raises
    NotificationError when the server is down or refused an address (the next attempt sends
    to the addresses still missing)."""
    from vbp_monitor.model.schema import document_deliveries

    with engine.connect() as conn:
        audiences = Audiences(branch_directory(conn), city_branch_code(conn), config.data_team_emails())
    recipients = audiences.recipients(audience)
    outcome: dict = {"emails": 0, "recipients": [], "key": key}
    if not recipients:
        log.warning("%s has no email address: the document %s cannot be mailed", audience, key)
        return outcome
    token = f"{CLAIM_PREFIX}{uuid.uuid4().hex}"
    now = dt.datetime.now(dt.UTC)
    keys = {address_key(audience, address): address for address in recipients}
    files_text = "; ".join(Path(path).name for path in files)
    base = {"document_key": key, "dag_id": run.dag_id, "period": run.period.label, "audience": audience,
            "files": files_text, "run_id": run.run_id}
    with engine.begin() as conn:
        conn.execute(delete(document_deliveries).where(
            document_deliveries.c.document_key == key, document_deliveries.c.message_id.like(f"{CLAIM_PREFIX}%"),
            document_deliveries.c.sent_at < now - CLAIM_TTL))
        done = {recipient for recipient, message in _document_rows(conn, key).items()
                if not (message or "").startswith(CLAIM_PREFIX)}
        wanted = sorted(keys) if run.force_resend else sorted(set(keys) - done)
        if not run.force_resend:
            upsert(conn, document_deliveries, [{**base, "recipient": recipient, "sent_at": now, "message_id": token}
                                               for recipient in wanted], update_columns=[])
            rows = _document_rows(conn, key)
            held = [recipient for recipient in wanted if rows.get(recipient) != token]
            wanted = [recipient for recipient in wanted if rows.get(recipient) == token]
        else:
            held = []
    if not wanted:
        if held:
            raise NotificationError(f"the document {key} is being sent by another attempt to {', '.join(held)}; "
                                    "the next attempt checks it again")
        log.info("%s: the document %s was already mailed to %s: nothing sent", run.dag_id, key, audience)
        return outcome
    addresses = [keys[recipient] for recipient in wanted]
    session = SmtpSession()
    try:
        try:
            sender = session.open()
            message_id_doc = document_message_id(key, audience, run, _domain(sender[1]))
            email = mime.build_message(
                subject=" ".join(subject.split()), sender=sender, to=addresses, text=mail_templates.text(page),
                html=mail_templates.html(page), message_id=message_id_doc,
                attachments=[mime.Attachment.of(Path(path)) for path in files],
                headers={"X-VBP-Audience": audience})
            refused = session.send(email, addresses)
        except SmtpUnreachable as exc:
            raise NotificationError(f"SMTP server unreachable ({exc}); the document {key} was not sent, "
                                    "the next attempt sends it") from exc
        except smtplib.SMTPRecipientsRefused as exc:
            refused = dict(exc.recipients)
        except smtplib.SMTPResponseException as exc:
            refused = dict.fromkeys(addresses, (exc.smtp_code, exc.smtp_error))
        finally:
            session.close()
        refused_lower = {address.lower() for address in refused}
        accepted = [address for address in addresses if address.lower() not in refused_lower]
        if accepted:
            sent_at = dt.datetime.now(dt.UTC)
            with engine.begin() as conn:
                upsert(conn, document_deliveries, [
                    {**base, "recipient": address_key(audience, address), "sent_at": sent_at,
                     "message_id": message_id_doc} for address in accepted])
            log.info("sent the document %s to %s (%s): %s, Message-ID %s", key, audience, ", ".join(accepted),
                     files_text, message_id_doc)
        if refused:
            raise NotificationError(f"{', '.join(refused)} refused the document {key}; the next attempt sends it "
                                    "to these addresses only")
        return {"emails": 1, "recipients": accepted, "key": key}
    finally:
        with engine.begin() as conn:
            conn.execute(delete(document_deliveries).where(document_deliveries.c.message_id == token))


def notify_documents(engine, run, judged: dict) -> dict:
    """Mail the documents a task described (``judged["documents"]``: audience, key, series,
    subject, paragraphs, sections [[title, {header, rows, numeric}]], actions, files), each
    once per key. A document of a series (e.g. one period's report) that replaces an earlier
    one already mailed (the figures changed) says so in its subject."""
    from vbp_monitor.model.schema import document_deliveries

    sent: list[dict] = []
    for document in judged.get("documents") or []:
        subject, paragraphs = document["subject"], list(document.get("paragraphs") or [])
        series = document.get("series")
        if series:
            with engine.connect() as conn:
                earlier = conn.execute(select(func.count()).select_from(document_deliveries).where(
                    document_deliveries.c.document_key.startswith(f"{series}|", autoescape=True),
                    document_deliveries.c.document_key != document["key"],
                    ~document_deliveries.c.message_id.startswith(CLAIM_PREFIX, autoescape=True))).scalar()
            if earlier:
                subject = "【更新】" + subject
                paragraphs.insert(1, "本期报告此前已发送；因数据更新重新生成，请以本次附件为准。")
        if run.force_resend:
            paragraphs.insert(1, "（应操作人员要求重新发送。）")
        sections: list[tuple[str, mail_templates.Block]] = [
            (title, mail_templates.Table(table["header"], table["rows"], set(table.get("numeric") or ())))
            for title, table in document.get("sections") or []]
        page = mail_templates.Page(subject, paragraphs, sections, list(document.get("actions") or []))
        sent.append(send_documents(engine, run, document["audience"], subject, page,
                                   [Path(path) for path in document.get("files") or []], document["key"]))
    return {"emails": sum(item["emails"] for item in sent), "documents": sent}
