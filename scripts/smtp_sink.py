"""A local SMTP sink for the demo and the end-to-end tests: every message becomes a .eml file.

    python scripts/smtp_sink.py --host 127.0.0.1 --port 1025 --outbox data/outbox

Each accepted message is saved as ``<timestamp>-<n>.eml`` (the raw message, openable by a
mail client), preceded by ``X-Envelope-From`` / ``X-Envelope-To`` trace lines. Prints a line
containing "ready" once it listens; stops cleanly on SIGTERM or Ctrl-C.
"""
from __future__ import annotations

import argparse
import datetime as dt
import itertools
import signal
import sys
import threading
from pathlib import Path


class OutboxHandler:
    """aiosmtpd handler: writes each message to the outbox folder."""

    def __init__(self, outbox: Path):
        self.outbox = outbox
        self._counter = itertools.count(1)
        self._lock = threading.Lock()

    async def handle_DATA(self, server, session, envelope):
        with self._lock:
            number = next(self._counter)
        stamp = dt.datetime.now().strftime("%Y%m%dT%H%M%S%f")
        trace = (f"X-Envelope-From: <{envelope.mail_from}>\r\n"
                 f"X-Envelope-To: {', '.join(f'<{r}>' for r in envelope.rcpt_tos)}\r\n").encode()
        raw = envelope.original_content or envelope.content
        if isinstance(raw, str):
            raw = raw.encode("utf-8")
        path = self.outbox / f"{stamp}-{number}.eml"
        partial = path.with_suffix(".part")
        partial.write_bytes(trace + raw)
        partial.replace(path)  # a reader never sees half a message
        print(f"saved {path.name}: {envelope.mail_from} -> {', '.join(envelope.rcpt_tos)} "
              f"({len(raw)} bytes)", flush=True)
        return "250 2.0.0 Message accepted for delivery"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=1025)
    parser.add_argument("--outbox", type=Path, default=Path("data/outbox"))
    args = parser.parse_args(argv)

    from aiosmtpd.controller import Controller

    args.outbox.mkdir(parents=True, exist_ok=True)
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())

    controller = Controller(OutboxHandler(args.outbox), hostname=args.host, port=args.port)
    try:
        controller.start()
    except Exception as exc:  # e.g. the port is taken
        print(f"smtp sink could not listen on {args.host}:{args.port}: {exc}", file=sys.stderr, flush=True)
        return 1
    print(f"smtp sink ready on {args.host}:{args.port}, saving messages to {args.outbox}", flush=True)
    try:
        while not stop.wait(0.5):
            pass
    finally:
        controller.stop()
        print("smtp sink stopped", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
