"""The one way to send mail (operations.md › Notification).

``notify_run`` sends, per run, exactly one email to each audience that has alerts it has not
received yet:

* ``branch:<code>`` — a branch bureau: the alerts whose ``branch_code`` is that branch;
* ``city`` — the city bureau: a summary (counts per branch × rule) of every alert of the run
  plus the detail of the alerts routed to it (``catalog.routed_to_city``, and alerts of the
  city row itself or of an unknown branch);
* ``data_team`` — ``VBP_DATA_TEAM_EMAILS``: the ``DATA_QUALITY`` alerts, and nobody else
  receives those.

Bookkeeping makes it safe to retry: once the SMTP server accepted an email, one
``alert_deliveries`` row per carried alert and audience is committed, and an alert gets
``notified_at`` when every audience it has was delivered. A retry (the task's, or the next
run's) sends only the audiences still missing. If the server is down or refuses, the call
raises so the Airflow task fails and retries.

Mail goes through the Airflow SMTP provider (connection ``smtp_default``); the hook's own
``retry_limit`` and ``timeout`` come from the connection extras, keep them low so that a
down server fails the task fast (Airflow's task retries are the real retry).
"""
from __future__ import annotations

import datetime as dt
import logging
import re
import tempfile
import traceback
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from decimal import Decimal
from email.utils import make_msgid
from pathlib import Path

from sqlalchemy import and_, select, update
from sqlalchemy.engine import Connection

from vbp_monitor.core import config
from vbp_monitor.notify import templates as mail_templates
from vbp_monitor.core.catalog import RULES, SEVERITY_ORDER, SEVERITY_ZH, routed_to_city, rule_title
from vbp_monitor.model.reference import branch_directory, city_branch_code
from vbp_monitor.model.schema import alert_deliveries, alerts, batches, institutions

log = logging.getLogger(__name__)

CITY = "city"
DATA_TEAM = "data_team"
DATA_QUALITY = "DATA_QUALITY"

# Chinese names of the DAGs, for subjects and greetings.
DAG_NAMES_ZH = {
    "vbp_ingest": "数据接入",
    "vbp_entry_sweep": "进院排查",
    "vbp_monthly_monitoring": "月度监测",
    "vbp_prepayment_reconciliation": "预付对账",
    "vbp_annual_report_collection": "年度报告收集",
    "vbp_volume_review": "报量审核",
    "vbp_order_response": "配送响应",
}
CATEGORY_ZH = {"drug": "药品", "consumable": "医用耗材", "high_value_consumable": "高值医用耗材"}
SUBJECT_TAG = "【集采监管预警】"
DQ_SUBJECT_TAG = "【集采数据质量】"
FAILURE_SUBJECT_TAG = "【集采监管系统】"
DEFAULT_FROM = "vbp-monitor@localhost"
MAX_HTML_ROWS = 300  # the body stays readable; the XLSX attachment always has every row
_CHUNK = 500


class NotificationError(RuntimeError):
    """The SMTP server was unreachable or refused an email; what was not accepted stays pending."""


def branch_audience(branch_code: str) -> str:
    return f"branch:{branch_code}"


# ---------------------------------------------------------------- what is pending

def _run_conditions(run) -> list:
    conditions = [alerts.c.dag_id == run.dag_id, alerts.c.status == "open", *run.scope.clauses()]
    if run.force_resend:
        # an operator asked to re-send this period's alerts, notified or not
        conditions.append(alerts.c.period == run.period.label)
    else:
        # un-notified alerts of this DAG, including those an earlier failed run left behind
        conditions.append(alerts.c.notified_at.is_(None))
    return conditions


def _pending_alerts(conn: Connection, run) -> list[dict]:
    source = (
        alerts.outerjoin(institutions, institutions.c.institution_code == alerts.c.institution_code)
        .outerjoin(batches, batches.c.batch_code == alerts.c.batch_code)
    )
    query = (
        select(alerts, institutions.c.institution_name, batches.c.batch_name)
        .select_from(source)
        .where(and_(*_run_conditions(run)))
    )
    return [dict(row) for row in conn.execute(query).mappings()]


def _deliveries(conn: Connection, alert_ids: list[int]) -> dict[int, set[str]]:
    delivered: dict[int, set[str]] = defaultdict(set)
    for start in range(0, len(alert_ids), _CHUNK):
        rows = conn.execute(
            select(alert_deliveries.c.alert_id, alert_deliveries.c.audience)
            .where(alert_deliveries.c.alert_id.in_(alert_ids[start:start + _CHUNK]))
        )
        for alert_id, audience in rows:
            delivered[alert_id].add(audience)
    return delivered


@dataclass
class Audiences:
    """Who receives what: the branch directory and the data team's addresses."""

    directory: dict[str, dict]
    city_code: str
    data_team: list[str]

    def of(self, alert: dict) -> list[str]:
        """Every audience an alert is meant for (routing of operations.md)."""
        if alert["rule_code"] == DATA_QUALITY:
            return [DATA_TEAM]
        branch = self.directory.get(alert["branch_code"])
        if branch and branch["level"] == "branch":
            return [branch_audience(alert["branch_code"]), CITY]
        return [CITY]

    def recipients(self, audience: str) -> list[str]:
        if audience == DATA_TEAM:
            return list(self.data_team)
        code = self.city_code if audience == CITY else audience.split(":", 1)[1]
        return list(self.directory.get(code, {}).get("emails", []))

    def required(self, alert: dict) -> set[str]:
        """The audiences an alert must reach before it counts as notified (those with an address)."""
        return {audience for audience in self.of(alert) if self.recipients(audience)}

    def name(self, audience: str) -> str:
        if audience == DATA_TEAM:
            return "数据组"
        code = self.city_code if audience == CITY else audience.split(":", 1)[1]
        return self.directory.get(code, {}).get("name") or code

    def branch_name(self, code: str | None) -> str:
        return self.directory.get(code, {}).get("name") or (code or "")

    def city_detail(self, alert: dict) -> bool:
        """Whether the city email lists this alert in detail (not only in the summary)."""
        return (
            routed_to_city(alert["rule_code"], alert["severity"])
            or alert["branch_code"] == self.city_code
            # nobody else would see it in detail: an unknown branch, or one without an address
            or self.required(alert) == {CITY}
        )


def _audience_order(audience: str) -> tuple:
    if audience.startswith("branch:"):
        return (0, audience)
    return (1 if audience == CITY else 2, audience)


# ---------------------------------------------------------------- display

def _number(value) -> str:
    if value is None:
        return ""
    number = value if isinstance(value, Decimal) else Decimal(str(value))
    return format(number.normalize(), "f")  # 0.240000 → 0.24, 45.000000 → 45


def _utc(value: dt.datetime | None) -> dt.datetime | None:
    # SQLite gives naive datetimes; they were stored in UTC
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=dt.timezone.utc)
    return value


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


def period_zh(label: str) -> str:
    """'2025-02' → 2025年2月; '2025-03-02' → 2025年3月2日."""
    parts = [int(part) for part in label.split("-")]
    if len(parts) == 2:
        return f"{parts[0]}年{parts[1]}月"
    if len(parts) == 3:
        return f"{parts[0]}年{parts[1]}月{parts[2]}日"
    return label


def _severity_counts_zh(rows: list[dict]) -> str:
    counts = Counter(row["severity"] for row in rows)
    parts = [f"{SEVERITY_ZH[s]}{counts[s]}条" for s in SEVERITY_ORDER if counts.get(s)]
    return "、".join(parts)


ALERT_COLUMNS = ["严重程度", "预警规则", "医疗机构", "批次", "通用名", "订单号", "指标值", "阈值", "说明"]


def _alert_table(rows: list[dict], audiences: Audiences, with_branch: bool) -> str:
    """The alerts as an HTML table (rows already sorted, most severe first)."""
    omitted = max(0, len(rows) - MAX_HTML_ROWS)
    rows = rows[:MAX_HTML_ROWS]
    several_periods = len({row["period"] for row in rows}) > 1
    header = list(ALERT_COLUMNS)
    if several_periods:
        header.insert(1, "期间")
    if with_branch:
        header.insert(1, "分局")
    body = []
    for row in rows:
        values = [
            SEVERITY_ZH.get(row["severity"], row["severity"]),
            f"{rule_title(row['rule_code'])}（{row['rule_code']}）",
            _code_and_name(row.get("institution_code"), row.get("institution_name")),
            _code_and_name(row.get("batch_code"), row.get("batch_name")),
            row.get("generic_name") or "",
            row.get("order_id") or "",
            _number(row.get("metric_value")),
            _number(row.get("threshold_value")),
            row["message"],
        ]
        if several_periods:
            values.insert(1, row["period"])
        if with_branch:
            values.insert(1, audiences.branch_name(row["branch_code"]))
        body.append(values)
    numeric = {header.index("指标值"), header.index("阈值")}
    html = mail_templates.table(header, body, numeric, [row["severity"] for row in rows])
    if omitted:
        html += f"<p>（正文仅列出最严重的 {len(rows)} 条，其余 {omitted} 条见附件 Excel。）</p>"
    return html


XLSX_ALERT_HEADER = [
    "严重程度", "期间", "分局代码", "分局", "规则代码", "预警规则", "机构代码", "医疗机构", "批次代码", "批次",
    "通用名", "产品代码", "订单号", "类别", "执行月份", "数据文件", "指标值", "阈值", "说明", "首次发现时间",
    "alert_key",
]


def _xlsx_alert_rows(rows: list[dict], audiences: Audiences) -> list[list]:
    out = []
    for row in rows:
        out.append([
            SEVERITY_ZH.get(row["severity"], row["severity"]), row["period"], row["branch_code"],
            audiences.branch_name(row["branch_code"]), row["rule_code"], rule_title(row["rule_code"]),
            row.get("institution_code"), row.get("institution_name"), row.get("batch_code"),
            row.get("batch_name"), row.get("generic_name"), row.get("product_code"), row.get("order_id"),
            CATEGORY_ZH.get(row.get("category"), row.get("category")), row.get("milestone_month"),
            row.get("source_file"), row.get("metric_value"), row.get("threshold_value"), row["message"],
            _utc(row.get("first_raised_at")), row["alert_key"],
        ])
    return out


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
    total = Counter()
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
    html: str
    alert_ids: list[int]
    xlsx_name: str
    sheets: dict
    files: list[Path] = field(default_factory=list)


def _safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_") or "x"


def _compose(audience: str, rows: list[dict], run, audiences: Audiences, files: list[Path]) -> Outgoing:
    rows = sorted(rows, key=_sort_key)
    dag_zh = DAG_NAMES_ZH.get(run.dag_id, run.dag_id)
    when = period_zh(run.period.label)
    verb = "重发" if run.force_resend else "新增"
    name = audiences.name(audience)
    severity_note = _severity_counts_zh(rows)
    resend_note = ["（应操作人员要求重新发送本期预警。）"] if run.force_resend else []
    xlsx_name = f"vbp_alerts_{_safe_name(audience)}_{run.dag_id}_{run.period.label}.xlsx"

    if audience == DATA_TEAM:
        subject = f"{DQ_SUBJECT_TAG}{dag_zh} · {when} · {len(rows)}条数据质量问题"
        header = ["严重程度", "期间", "数据文件", "指标值（问题行数）", "说明"]
        body = [[SEVERITY_ZH.get(r["severity"], r["severity"]), r["period"], r.get("source_file") or "",
                 _number(r.get("metric_value")), r["message"]] for r in rows]
        html = mail_templates.page(subject, [
            "数据组：",
            f"{dag_zh}（{when}）的数据校验发现 {len(rows)} 项数据质量问题（{severity_note}）。"
            "问题行已隔离，未参与预警计算；请核对平台导出文件后重新投放。",
            *resend_note,
        ], [("数据质量问题", mail_templates.table(header, body, {3}, [r["severity"] for r in rows]))])
        sheets = {"数据质量问题": (XLSX_ALERT_HEADER, _xlsx_alert_rows(rows, audiences))}
    elif audience == CITY:
        detail = [row for row in rows if audiences.city_detail(row)]
        branches_involved = {row["branch_code"] for row in rows}
        subject = (f"{SUBJECT_TAG}{name} · {dag_zh} · {when} · 汇总{verb}{len(rows)}条"
                   f"（需市局关注{len(detail)}条）")
        summary_header, summary_rows = _summary(rows, audiences)
        sections = [("各分局预警汇总", mail_templates.table(
            summary_header, summary_rows, set(range(2, len(summary_header)))))]
        if detail:
            sections.append(("需市局关注的预警（严重预警、预付款拨付不足、分局辖区网采率、年度报告等）",
                             _alert_table(detail, audiences, with_branch=True)))
        overview = (f"{dag_zh}（{when}）{verb}预警 {len(rows)} 条（{severity_note}），涉及 "
                    f"{len(branches_involved)} 个单位，各分局已分别收到本辖区明细。")
        if detail:
            overview += f"其中需市局关注的 {len(detail)} 条列于汇总表之后，全部明细见附件 Excel。"
        else:
            overview += "本次没有需市局直接处理的预警，全部明细见附件 Excel。"
        paragraphs = [f"{name}：", overview, *resend_note]
        html = mail_templates.page(subject, paragraphs, sections)
        sheets = {
            "汇总": (summary_header, summary_rows),
            "需市局关注": (XLSX_ALERT_HEADER, _xlsx_alert_rows(detail, audiences)),
            "全部预警": (XLSX_ALERT_HEADER, _xlsx_alert_rows(rows, audiences)),
        }
    else:
        subject = f"{SUBJECT_TAG}{name} · {dag_zh} · {when} · {verb}{len(rows)}条"
        paragraphs = [
            f"{name}：",
            f"{dag_zh}（{when}）发现贵局辖区{verb}预警 {len(rows)} 条（{severity_note}），按严重程度从高到低"
            "列于下表，明细见附件 Excel。请督促相关医疗机构及配送企业核实整改，并按规定时限反馈处理情况。",
            *resend_note,
        ]
        html = mail_templates.page(subject, paragraphs,
                                   [("预警明细", _alert_table(rows, audiences, with_branch=False))])
        sheets = {"预警明细": (XLSX_ALERT_HEADER, _xlsx_alert_rows(rows, audiences))}
    return Outgoing(audience, audiences.recipients(audience), subject, html,
                    [row["alert_id"] for row in rows], xlsx_name, sheets, files)


def _extra_files(attachments: dict | None, key: str | None) -> list[Path]:
    files = []
    for item in (attachments or {}).get(key, []) if key else []:
        path = Path(item)
        if path.is_file():
            files.append(path)
        else:
            log.warning("attachment %s for %s does not exist: sent without it", path, key)
    return files


def plan(engine, run, attachments: dict | None = None) -> tuple[list[Outgoing], Audiences, dict]:
    """The emails ``notify_run`` would send now, without sending them."""
    with engine.connect() as conn:
        audiences = Audiences(branch_directory(conn), city_branch_code(conn), config.data_team_emails())
        pending = _pending_alerts(conn, run)
        delivered = _deliveries(conn, [row["alert_id"] for row in pending])
    by_audience: dict[str, list[dict]] = defaultdict(list)
    unaddressed: Counter = Counter()
    required = {}
    for alert in pending:
        required[alert["alert_id"]] = audiences.required(alert)
        for audience in audiences.of(alert):
            if not audiences.recipients(audience):
                unaddressed[audience] += 1
            elif run.force_resend or audience not in delivered.get(alert["alert_id"], set()):
                by_audience[audience].append(alert)
    for audience, count in unaddressed.items():
        log.warning("%s has no email address (branches.emails / VBP_DATA_TEAM_EMAILS): "
                    "%d alerts cannot be mailed to it", audience, count)
    outgoing = []
    for audience in sorted(by_audience, key=_audience_order):
        key = DATA_TEAM if audience == DATA_TEAM else (
            audiences.city_code if audience == CITY else audience.split(":", 1)[1])
        outgoing.append(_compose(audience, by_audience[audience], run, audiences,
                                 _extra_files(attachments, key)))
    return outgoing, audiences, required


# ---------------------------------------------------------------- bookkeeping

def _insert_statement(conn: Connection):
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    stmt = insert(alert_deliveries)
    return stmt.on_conflict_do_update(
        index_elements=[alert_deliveries.c.alert_id, alert_deliveries.c.audience],
        set_={"sent_at": stmt.excluded.sent_at, "message_id": stmt.excluded.message_id},
    )


def _record_delivery(conn: Connection, alert_ids: list[int], audience: str, sent_at, message_id) -> None:
    rows = [{"alert_id": alert_id, "audience": audience, "sent_at": sent_at, "message_id": message_id}
            for alert_id in alert_ids]
    stmt = _insert_statement(conn)
    for start in range(0, len(rows), 1000):
        conn.execute(stmt, rows[start:start + 1000])


def _mark_notified(conn: Connection, required: dict[int, set[str]], alert_ids, now) -> int:
    """Set notified_at on the alerts every audience of which has been delivered."""
    alert_ids = list(alert_ids)
    delivered = _deliveries(conn, alert_ids)
    done = [i for i in alert_ids if required.get(i) and required[i] <= delivered.get(i, set())]
    marked = 0
    for start in range(0, len(done), _CHUNK):
        result = conn.execute(
            update(alerts)
            .where(alerts.c.alert_id.in_(done[start:start + _CHUNK]), alerts.c.notified_at.is_(None))
            .values(notified_at=now)
        )
        marked += result.rowcount or 0
    return marked


# ---------------------------------------------------------------- sending

def _send(hook, outgoing: Outgoing, folder: Path) -> str:
    """Send one email through the hook's open connection; returns its Message-ID once accepted."""
    from vbp_monitor.outputs.spreadsheets import write_xlsx

    files = []
    if outgoing.sheets:
        files.append(str(write_xlsx(folder / outgoing.xlsx_name, outgoing.sheets)))
    files.extend(str(path) for path in outgoing.files)
    sender = hook.from_email or DEFAULT_FROM
    message_id = make_msgid(idstring="vbp", domain=sender.rsplit("@", 1)[-1] or "localhost")
    hook.send_email_smtp(
        to=outgoing.recipients,
        subject=outgoing.subject,
        html_content=outgoing.html,
        from_email=sender,
        files=files,
        custom_headers={"Message-ID": message_id, "X-VBP-Audience": outgoing.audience},
    )
    return message_id


def _smtp_hook():
    from airflow.providers.smtp.hooks.smtp import SmtpHook

    return SmtpHook(smtp_conn_id=config.smtp_conn_id())


def notify_run(engine, run, attachments: dict[str, list[Path]] | None = None) -> dict:
    """Email the new, un-notified alerts of ``run.dag_id`` (see module docs).

    ``attachments``: extra files per audience: a branch_code (that branch's email) or the
    city row's branch_code (the city's email), ``"data_team"`` for the data team's email.
    Returns ``{"emails": n, "alerts": m, "audiences": [...]}``. Raises NotificationError when
    the SMTP server is down or refuses an email (after trying the others).
    """
    outgoing, _audiences, required = plan(engine, run, attachments)
    now = dt.datetime.now(dt.timezone.utc)
    with engine.begin() as conn:
        # an earlier attempt may have delivered everything and stopped before this step
        _mark_notified(conn, required, required.keys(), now)
    if not outgoing:
        log.info("%s %s: no new alerts to notify", run.dag_id, run.period.label)
        return {"emails": 0, "alerts": 0, "audiences": []}

    sent: list[Outgoing] = []
    failures: list[tuple[Outgoing, BaseException]] = []
    connected = False
    try:
        with _smtp_hook() as hook, tempfile.TemporaryDirectory(prefix="vbp-mail-") as folder:
            connected = True
            for mail in outgoing:
                try:
                    message_id = _send(hook, mail, Path(folder))
                except Exception as exc:  # refused, or the connection broke: the others may still go
                    log.error("email to %s (%s, %d alerts) was not accepted: %s",
                              mail.audience, ", ".join(mail.recipients), len(mail.alert_ids), exc)
                    failures.append((mail, exc))
                    continue
                sent_at = dt.datetime.now(dt.timezone.utc)
                with engine.begin() as conn:
                    _record_delivery(conn, mail.alert_ids, mail.audience, sent_at, message_id)
                    _mark_notified(conn, required, mail.alert_ids, sent_at)
                sent.append(mail)
                log.info("sent %s to %s: %d alerts, %s, Message-ID %s", mail.audience,
                         ", ".join(mail.recipients), len(mail.alert_ids), mail.subject, message_id)
    except Exception as exc:
        if connected:
            raise
        pending = len({i for mail in outgoing for i in mail.alert_ids})
        log.error("SMTP connection %s unreachable: %s; %d alerts stay un-notified and are sent by the "
                  "next attempt", config.smtp_conn_id(), exc, pending)
        raise NotificationError(f"SMTP server unreachable ({exc}); {len(outgoing)} emails not sent") from exc
    if failures:
        names = ", ".join(mail.audience for mail, _ in failures)
        raise NotificationError(
            f"{len(failures)} of {len(outgoing)} emails were not accepted ({names}): {failures[0][1]}; "
            "their alerts stay un-notified and the next attempt sends them"
        ) from failures[0][1]
    carried = {alert_id for mail in sent for alert_id in mail.alert_ids}
    return {"emails": len(sent), "alerts": len(carried), "audiences": [mail.audience for mail in sent]}


# ---------------------------------------------------------------- task failures

def _failure_mail(context) -> tuple[str, str]:
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
    dag_zh = DAG_NAMES_ZH.get(dag_id, dag_id)
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
    html = mail_templates.page(subject, [
        "数据组：",
        f"{dag_zh}（{dag_id}）的任务 {task_id} 在用尽重试次数后仍然失败，本次运行的预警可能未计算或未发送。"
        "请查看日志排除原因后，在 Airflow 中清除（Clear）该任务重跑；重跑不会重复发送已发出的预警。",
        f"Task {task_id} of DAG {dag_id} failed after its last retry; this run's alerts may not be "
        "computed or sent. Check the log, fix the cause and clear the task to rerun it (reruns never "
        "send an alert twice).",
    ], [("", mail_templates.table(["项目 Item", "内容 Value"], rows)),
        ("异常详情 Traceback", mail_templates.preformatted(detail))])
    return subject, html


def notify_task_failure(context) -> None:
    """``on_failure_callback``: email the data team once (Airflow calls it after the last retry).

    Never raises: a failing callback must not hide the task's own failure.
    """
    try:
        recipients = config.data_team_emails()
        subject, html = _failure_mail(context)
        if not recipients:
            log.warning("VBP_DATA_TEAM_EMAILS is empty: not emailing the failure %s", subject)
            return
        hook = _smtp_hook()
        with hook:
            sender = hook.from_email or DEFAULT_FROM
            hook.send_email_smtp(
                to=recipients, subject=subject, html_content=html, from_email=sender,
                custom_headers={"Message-ID": make_msgid(idstring="vbp-failure",
                                                         domain=sender.rsplit("@", 1)[-1]),
                                "X-VBP-Audience": DATA_TEAM},
            )
        log.info("emailed the data team (%s) about %s", ", ".join(recipients), subject)
    except Exception:
        log.exception("could not email the data team about a failed task")
