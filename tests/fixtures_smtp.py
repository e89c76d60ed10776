"""SMTP fixtures: a real aiosmtpd server on loopback, and alerts to mail.

``smtp_server`` points the Airflow connection ``smtp_default`` (AIRFLOW_CONN_SMTP_DEFAULT)
at a fresh aiosmtpd ``Controller`` on a free port and collects every accepted message. It
misbehaves on request, as real servers do:

* ``stop()`` / ``start()``: a server that is down (connections refused);
* ``refuse(address)``: 550 after DATA for any message to that address (the whole message);
* ``refuse_recipient(address)``: 550 at RCPT TO for that address only, the others accepted;
* ``drop_after_storing(n)``: store the next n messages, then drop the connection before
  answering 250 (the client cannot know the message arrived);
* ``drop_before_storing(n)``: drop the connection of the next n messages at the end of DATA
  without storing them (a connection lost mid-message);
* ``delay``: seconds the server takes per message (a slow server; other connections go on).
"""
from __future__ import annotations

import asyncio
import email
import email.policy
import io
import json
import logging
import os
import re
import socket
import threading
from dataclasses import dataclass
from email.message import EmailMessage

import pytest

DATA_TEAM_EMAIL = "data-team@example.org"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class ReceivedMail:
    message: EmailMessage
    mail_from: str
    rcpt_tos: list[str]
    raw: bytes = b""  # the message as the server received it (DATA), before any re-serialisation

    @property
    def subject(self) -> str:
        return str(self.message["Subject"])

    @property
    def audience(self) -> str | None:
        return self.message["X-VBP-Audience"]

    @property
    def message_id(self) -> str:
        return str(self.message["Message-ID"])

    def html(self) -> str:
        return self.message.get_body(preferencelist=("html",)).get_content()

    def text(self) -> str:
        """The text/plain alternative."""
        return self.message.get_body(preferencelist=("plain",)).get_content()

    def attachments(self) -> dict[str, bytes]:
        return {part.get_filename(): part.get_payload(decode=True) for part in self.message.iter_attachments()}


# what an attachment's suffix must be sent as (never application/octet-stream)
EXPECTED_TYPES = {
    ".xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    ".docx": "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    ".csv": "text/csv",
}
_ENCODED_WORD = re.compile(rb"=\?[^?\s]+\?[bBqQ]\?[^?\s]*\?=")


def _raw_headers(raw: bytes) -> list[bytes]:
    """The header lines of every part of a raw message (the lines before each blank line that
    follows a boundary or the start), without the bodies."""
    lines, in_headers = [], True
    for line in raw.split(b"\r\n"):
        if in_headers:
            if line == b"":
                in_headers = False
            else:
                lines.append(line)
        elif line.startswith(b"--"):
            in_headers = True
    return lines


def check_mime(mail: ReceivedMail) -> dict[str, str]:
    """Assert what older Outlook, Foxmail and webmail clients need of ``mail``; returns
    {attachment name: content type}.

    multipart/alternative with one text/plain and one text/html (the HTML in multipart/related
    when it has inline images), attachments in multipart/mixed around it, each with its MIME
    type by suffix and a Chinese name readable both from RFC 2231 (``get_filename()``) and from
    the RFC 2047 ``name=`` of Content-Type (what old clients read); every encoded word ≤ 75
    characters; header lines ≤ 78 (but a long Message-ID or MIME type, which cannot be folded)
    and CRLF line ends.
    """
    from email.header import decode_header, make_header

    raw = mail.raw
    assert b"\n" not in raw.replace(b"\r\n", b""), "bare LF in the message"
    words = _ENCODED_WORD.findall(raw)
    assert all(len(word) <= 75 for word in words), [w for w in words if len(w) > 75]
    for line in _raw_headers(raw):  # a line longer than 78 only when nothing in it can be folded
        assert len(line) <= 78 or b" " not in line.split(b": ", 1)[-1].strip(), line
    message = mail.message
    plain = [part for part in message.walk() if part.get_content_type() == "text/plain"
             and part.get_content_disposition() is None]
    html = [part for part in message.walk() if part.get_content_type() == "text/html"
            and part.get_content_disposition() is None]
    assert len(plain) == 1 and len(html) == 1, [part.get_content_type() for part in message.walk()]
    alternative = [part for part in message.walk() if part.get_content_type() == "multipart/alternative"]
    assert len(alternative) == 1
    assert alternative[0].get_payload()[0] is plain[0]  # the plain text first, the richer last
    assert alternative[0].get_payload()[-1].get_content_type() in ("text/html", "multipart/related")
    assert plain[0].get_content_charset() == "utf-8" and html[0].get_content_charset() == "utf-8"
    types = {}
    attachments = list(message.iter_attachments())
    if attachments:
        assert message.get_content_type() == "multipart/mixed"
        assert message.get_payload()[0] is alternative[0]
    else:
        assert message.get_content_type() == "multipart/alternative"
    old_reader = email.message_from_bytes(raw, policy=email.policy.compat32)
    old_parts = [part for part in old_reader.walk() if part.get_content_disposition() == "attachment"]
    assert len(old_parts) == len(attachments)
    for part, old in zip(attachments, old_parts):
        name = part.get_filename()
        assert name and "=?" not in name, name
        suffix = name[name.rfind("."):].lower()
        if suffix in EXPECTED_TYPES:
            assert part.get_content_type() == EXPECTED_TYPES[suffix], (name, part.get_content_type())
        assert part.get_content_type() != "application/octet-stream", name
        # what an old client reads: Content-Type's name= as RFC 2047 encoded words, and the
        # Content-Disposition's filename= likewise
        for value in (old.get_param("name"), old.get_param("filename", header="content-disposition")):
            assert isinstance(value, str), value
            assert str(make_header(decode_header(value))) == name, (value, name)
        if not name.isascii():
            disposition = old["Content-Disposition"]
            assert "filename*=utf-8''" in disposition or "filename*0*=utf-8''" in disposition, disposition
            assert old.get_param("name").startswith("=?utf-8?b?"), old.get_param("name")
        types[name] = part.get_content_type()
    for part in message.walk():
        if part.get("Content-ID"):
            assert re.fullmatch(r"<[^<>@\s]+@[A-Za-z0-9.-]+>", part["Content-ID"].strip()), part["Content-ID"]
    return types


class _Handler:
    def __init__(self, server: SmtpTestServer):
        self.server = server

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address.lower() in self.server.refuse_rcpt:
            self.server.note("refused_rcpt")
            return "550 5.1.1 Mailbox unavailable (test server)"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        if self.server.delay:
            await asyncio.sleep(self.server.delay)
        refused = self.server.refuse_all or any(
            address.lower() in self.server.refuse_recipients for address in envelope.rcpt_tos)
        if refused:
            self.server.note("refused")
            return "550 5.7.1 Message refused by the test server"
        if self.server.take("drop_before"):
            server.transport.abort()  # lost mid-message: nothing stored, no reply
            return "421 4.4.2 connection dropped (never seen by the client)"
        raw = envelope.original_content or envelope.content
        message = email.message_from_bytes(raw, policy=email.policy.default)
        with self.server.lock:
            self.server.messages.append(ReceivedMail(message, envelope.mail_from, list(envelope.rcpt_tos), raw))
        if self.server.take("drop_after"):
            server.transport.abort()  # stored, but the client never hears 250
            return "250 2.0.0 accepted (never seen by the client)"
        return "250 2.0.0 Message accepted for delivery"


class SmtpTestServer:
    """An aiosmtpd Controller on 127.0.0.1 that keeps what it accepted."""

    def __init__(self, port: int | None = None):
        self.host = "127.0.0.1"
        self.port = port or free_port()
        self.messages: list[ReceivedMail] = []
        self.refuse_recipients: set[str] = set()
        self.refuse_rcpt: set[str] = set()
        self.refuse_all = False
        self.delay = 0.0
        self.pending_faults = {"drop_before": 0, "drop_after": 0}
        self.faults: dict[str, int] = {}  # faults injected so far, by kind
        self.lock = threading.Lock()
        self._controller = None

    def note(self, kind: str) -> None:
        with self.lock:
            self.faults[kind] = self.faults.get(kind, 0) + 1

    def take(self, kind: str) -> bool:
        """Consume one pending fault of ``kind``; whether there was one."""
        with self.lock:
            if not self.pending_faults[kind]:
                return False
            self.pending_faults[kind] -= 1
            self.faults[kind] = self.faults.get(kind, 0) + 1
            return True

    def start(self) -> SmtpTestServer:
        from aiosmtpd.controller import Controller

        if self._controller is None:
            self._controller = Controller(_Handler(self), hostname=self.host, port=self.port)
            self._controller.start()
        return self

    def stop(self) -> None:
        """The server is down: connections are refused."""
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def refuse(self, *addresses: str) -> None:
        """Answer 550 to messages for these addresses (none given: for everybody)."""
        if addresses:
            self.refuse_recipients.update(address.lower() for address in addresses)
        else:
            self.refuse_all = True

    def refuse_recipient(self, *addresses: str) -> None:
        """Answer 550 at RCPT TO for these addresses; the message goes to the other recipients."""
        self.refuse_rcpt.update(address.lower() for address in addresses)

    def drop_after_storing(self, count: int = 1) -> None:
        self.pending_faults["drop_after"] += count

    def drop_before_storing(self, count: int = 1) -> None:
        self.pending_faults["drop_before"] += count

    def accept_all(self) -> None:
        self.refuse_recipients.clear()
        self.refuse_rcpt.clear()
        self.refuse_all = False

    def clear(self) -> None:
        with self.lock:
            self.messages.clear()

    def to(self, address: str) -> list[ReceivedMail]:
        """Messages whose envelope included ``address``."""
        with self.lock:
            return [mail for mail in self.messages if address.lower() in (r.lower() for r in mail.rcpt_tos)]

    def per_recipient(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        with self.lock:
            for mail in self.messages:
                for address in mail.rcpt_tos:
                    counts[address] = counts.get(address, 0) + 1
        return counts

    def distinct_per_recipient(self) -> dict[str, int]:
        """Emails per recipient counted by Message-ID: what a mail client that drops a copy shows."""
        seen: dict[str, set[str]] = {}
        with self.lock:
            for mail in self.messages:
                for address in mail.rcpt_tos:
                    seen.setdefault(address, set()).add(mail.message_id)
        return {address: len(ids) for address, ids in seen.items()}

    def connection_json(self) -> str:
        return json.dumps({
            "conn_type": "smtp", "host": self.host, "port": self.port,
            "extra": {"from_email": "vbp-monitor@example.org", "disable_tls": True, "disable_ssl": True,
                      "timeout": 5, "retry_limit": 0},
        })


@pytest.fixture
def smtp_server(monkeypatch):
    """A running SMTP server that ``smtp_default`` points at; VBP_DATA_TEAM_EMAILS is set."""
    server = SmtpTestServer().start()
    monkeypatch.setenv("AIRFLOW_CONN_SMTP_DEFAULT", server.connection_json())
    monkeypatch.setenv("VBP_DATA_TEAM_EMAILS", DATA_TEAM_EMAIL)
    monkeypatch.delenv("VBP_SMTP_CONN_ID", raising=False)
    yield server
    server.stop()


# ---------------------------------------------------------------- alerts to mail

def alert(rule_code: str, institution: str | None, branch: str, severity: str = "warning", **fields) -> dict:
    """A candidate alert for AlertStore.replace (subject fields as keyword arguments)."""
    row = {
        "rule_code": rule_code, "severity": severity, "branch_code": branch,
        "institution_code": institution, "metric_value": fields.pop("metric_value", "0"),
        "threshold_value": fields.pop("threshold_value", "1"),
        "message": fields.pop("message", f"{institution or branch} 触发 {rule_code}"),
    }
    row.update(fields)
    return row


def raise_alerts(engine, run, candidates: list[dict]) -> None:
    """Write candidates through the run's AlertStore, one write per rule code (as rules do)."""
    by_rule: dict[str, list[dict]] = {}
    for candidate in candidates:
        by_rule.setdefault(candidate["rule_code"], []).append(candidate)
    with engine.begin() as conn:
        for rule_code, rows in by_rule.items():
            run.store.replace(conn, [rule_code], rows, scope=run.scope)


@pytest.fixture
def mail_city(engine):
    """The small city of tests/builders.py in the warehouse; returns the engine."""
    from builders import city, seed

    with engine.begin() as conn:
        seed(conn, city())
    return engine


# ---------------------------------------------------------------- what reached whom

_PERIOD_IN_NAME = re.compile(r"(?<!\d)(\d{4}-\d{2}(?:-\d{2})?)(?!\d)")


@dataclass
class MailAudit:
    """What the server received against what the warehouse says each address must get.

    ``lost``: (address, open alert) pairs no email carried; ``duplicates``: an address that got
    one alert in two different emails (different Message-IDs); ``copies``: the same email
    received again (same Message-ID, after a dropped connection), which mail clients drop;
    ``mislabelled``: emails whose subject is not the period of every alert they carry, or that
    carry a file of another period.
    """

    alerts: int
    expected: int
    lost: int
    duplicates: int
    copies: int
    mislabelled: int
    unnotified: int

    def figures(self) -> dict[str, int]:
        return {"lost": self.lost, "duplicates": self.duplicates, "mislabelled": self.mislabelled}


def _alerts_in(mail: ReceivedMail) -> dict[str, str]:
    """alert_key → period of the alerts the email's alert workbook lists."""
    from openpyxl import load_workbook

    from vbp_monitor.notify.mailer import ALERT_WORKBOOK_PREFIX

    carried: dict[str, str] = {}
    for name, content in mail.attachments().items():
        if not name.startswith(ALERT_WORKBOOK_PREFIX):
            continue
        for sheet in load_workbook(io.BytesIO(content), read_only=True).worksheets:
            rows = sheet.iter_rows(values_only=True)
            header: list = []
            for _ in range(8):  # the header is under the title block (row 4 or later)
                header = list(next(rows, ()))
                if "alert_key" in header:
                    break
            if "alert_key" not in header:
                continue
            for row in rows:
                carried[row[header.index("alert_key")]] = row[header.index("期间")]
    return carried


def audit_mail(engine, server: SmtpTestServer) -> MailAudit:
    from sqlalchemy import select

    from vbp_monitor.core import config, formatting
    from vbp_monitor.model.reference import branch_directory, city_branch_code
    from vbp_monitor.model.schema import alerts
    from vbp_monitor.notify.mailer import ALERT_WORKBOOK_PREFIX, Audiences

    with engine.connect() as conn:
        audiences = Audiences(branch_directory(conn), city_branch_code(conn), config.data_team_emails())
        rows = [dict(row) for row in conn.execute(select(alerts).where(alerts.c.status == "open")).mappings()]
    expected = {(address.lower(), row["alert_key"]) for row in rows for audience in audiences.of(row)
                for address in audiences.recipients(audience)}
    received: dict[tuple[str, str], set[str]] = {}
    copies: dict[tuple[str, str], int] = {}
    mislabelled = 0
    with server.lock:
        messages = list(server.messages)
    for mail in messages:
        carried = _alerts_in(mail)
        periods = set(carried.values())
        files = [name for name in mail.attachments() if not name.startswith(ALERT_WORKBOOK_PREFIX)]
        file_periods = {period for name in files for period in _PERIOD_IN_NAME.findall(name)}
        if any(formatting.period_zh(period) not in mail.subject for period in periods) or file_periods - periods:
            mislabelled += 1
        for address in mail.rcpt_tos:
            copies[(address.lower(), mail.message_id)] = copies.get((address.lower(), mail.message_id), 0) + 1
            for key in carried:
                received.setdefault((address.lower(), key), set()).add(mail.message_id)
    return MailAudit(
        alerts=len(rows), expected=len(expected), lost=len(expected - received.keys()),
        duplicates=sum(len(ids) - 1 for ids in received.values()),
        copies=sum(count - 1 for count in copies.values()), mislabelled=mislabelled,
        unnotified=sum(1 for row in rows if row["notified_at"] is None))


def print_summary(request, title: str, columns: list[str], rows: list[dict]) -> None:
    """Print a fault suite's summary table when its module ends (shown with -q too, not only on
    failure); with VBP_RELIABILITY_SUMMARY set, each row is also appended to that file as a JSON line."""
    if not rows:
        return
    widths = {c: max(len(c), *(len(str(row.get(c, ""))) for row in rows)) for c in columns}
    lines = [" | ".join(c.ljust(widths[c]) for c in columns),
             "-+-".join("-" * widths[c] for c in columns)]
    lines += [" | ".join(str(row.get(c, "")).ljust(widths[c]) for c in columns) for row in rows]
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    if reporter is not None and capture is not None:
        with capture.global_and_fixture_disabled():
            reporter.write_line("")
            reporter.write_line(f"{title} ({request.module.__name__})")
            for line in lines:
                reporter.write_line(line)
    target = os.environ.get("VBP_RELIABILITY_SUMMARY")
    if target:
        with open(target, "a", encoding="utf-8") as out:
            for row in rows:
                out.write(json.dumps({"module": request.module.__name__, **row}, ensure_ascii=False) + "\n")


@pytest.fixture(scope="module")
def mail_fault_table(request):
    """Rows of the mail fault suite's summary table, printed when the module ends."""
    rows: list[dict] = []
    yield rows
    print_summary(request, "mail fault summary",
                  ["case", "db", "faults", "alerts", "expected", "lost", "duplicates", "copies", "mislabelled"],
                  rows)


# the columns of the other fault suites' tables (tests/reliability/): what was expected, how the
# case ended, and the figures that must all be 0
FAULT_COLUMNS = ["case", "db", "faults", "expected", "ended", "lost", "duplicates", "mislabelled", "mismatched"]


@pytest.fixture(scope="module")
def fault_table(request):
    """Rows of a fault suite's summary table (FAULT_COLUMNS), printed when the module ends."""
    rows: list[dict] = []
    yield rows
    print_summary(request, "fault summary", FAULT_COLUMNS, rows)


def record_case(table: list[dict], case: str, engine, server: SmtpTestServer, faults: int | str) -> MailAudit:
    """Audit the mail of a case, add its row to the summary table and return the audit."""
    audit = audit_mail(engine, server)
    table.append({"case": case, "db": engine.dialect.name, "faults": faults, "alerts": audit.alerts,
                  "expected": audit.expected, "lost": audit.lost, "duplicates": audit.duplicates,
                  "copies": audit.copies, "mislabelled": audit.mislabelled})
    return audit


def sample_alerts(tag: str) -> list[dict]:
    """Alerts of one monthly run for every audience: B1, B2 (two addresses), the city, the data team.

    ``tag`` goes into the messages (e.g. the period) so that runs of different periods differ.
    """
    return [
        alert("PROGRESS_BEHIND", "H1", "B1", "warning", batch_code="NB1", generic_name="氨氯地平",
              metric_value="0.24", threshold_value="0.3156", message=f"{tag} 第一人民医院氨氯地平完成率24%"),
        alert("PAYMENT_OVERDUE", "M1", "B1", "critical", order_id=f"O-M1-{tag}", metric_value="45",
              threshold_value="30", message=f"{tag} 部队医院货款逾期45天"),
        alert("PROGRESS_BEHIND", "H2", "B2", "warning", batch_code="NB1", generic_name="氨氯地平",
              metric_value="0.10", threshold_value="0.3156", message=f"{tag} 南康区人民医院氨氯地平完成率10%"),
        alert("PAYMENT_OVERDUE", "P1", "B2", "high", order_id=f"O-P1-{tag}", metric_value="35",
              threshold_value="30", message=f"{tag} 仁爱民营医院货款逾期35天"),
        alert("DATA_QUALITY", None, "CITY", "high", source_file=f"orders_{tag}.csv", metric_value="3",
              message=f"{tag} orders.csv 有3行金额不符，已隔离"),
    ]


@pytest.fixture
def mail_log():
    """The records the mailer logs during a test (its INFO lines are what a task log shows).

    A handler on the mailer's own logger: Airflow configures logging on first use of a hook,
    which replaces the root handlers that ``caplog`` relies on.
    """
    import airflow.providers.smtp.hooks.smtp  # noqa: F401  - configures Airflow's logging first

    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    logger = logging.getLogger("vbp_monitor.notify.mailer")
    handler, level, disabled = Keep(logging.INFO), logger.level, logger.disabled
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.disabled = False
    yield records
    logger.removeHandler(handler)
    logger.setLevel(level)
    logger.disabled = disabled


def log_text(records: list[logging.LogRecord], level: int = logging.INFO) -> str:
    return "\n".join(record.getMessage() for record in records if record.levelno >= level)


def period_files(folder, period: str, codes=("B1", "B2", "CITY")) -> dict[str, list]:
    """A period's own files, as a judge returns them (one per branch, one for the city)."""
    files = {}
    for code in codes:
        path = folder / f"执行报表_{code}_{period}.xlsx"
        path.write_bytes(f"PK {code} {period}".encode())
        files[code] = [path]
    return files
