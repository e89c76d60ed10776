"""SMTP fixtures: a real aiosmtpd server on loopback, and alerts to mail.

``smtp_server`` points the Airflow connection ``smtp_default`` (AIRFLOW_CONN_SMTP_DEFAULT)
at a fresh aiosmtpd ``Controller`` on a free port and collects every accepted message. It
can be stopped and restarted (a server that is down) and told to refuse messages (a server
that answers 550).
"""
from __future__ import annotations

import email
import email.policy
import json
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

    @property
    def subject(self) -> str:
        return str(self.message["Subject"])

    @property
    def audience(self) -> str | None:
        return self.message["X-VBP-Audience"]

    def html(self) -> str:
        return self.message.get_body(preferencelist=("html",)).get_content()

    def attachments(self) -> dict[str, bytes]:
        return {part.get_filename(): part.get_payload(decode=True) for part in self.message.iter_attachments()}


class _Handler:
    def __init__(self, server: "SmtpTestServer"):
        self.server = server

    async def handle_DATA(self, server, session, envelope):
        refused = self.server.refuse_all or any(
            address.lower() in self.server.refuse_recipients for address in envelope.rcpt_tos)
        if refused:
            return "550 5.7.1 Message refused by the test server"
        message = email.message_from_bytes(envelope.original_content or envelope.content,
                                           policy=email.policy.default)
        with self.server.lock:
            self.server.messages.append(ReceivedMail(message, envelope.mail_from, list(envelope.rcpt_tos)))
        return "250 2.0.0 Message accepted for delivery"


class SmtpTestServer:
    """An aiosmtpd Controller on 127.0.0.1 that keeps what it accepted."""

    def __init__(self, port: int | None = None):
        self.host = "127.0.0.1"
        self.port = port or free_port()
        self.messages: list[ReceivedMail] = []
        self.refuse_recipients: set[str] = set()
        self.refuse_all = False
        self.lock = threading.Lock()
        self._controller = None

    def start(self) -> "SmtpTestServer":
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

    def accept_all(self) -> None:
        self.refuse_recipients.clear()
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
    """The small city of tests/helpers.py in the warehouse; returns the engine."""
    from conftest import seed
    from helpers import city

    with engine.begin() as conn:
        seed(conn, city())
    return engine
