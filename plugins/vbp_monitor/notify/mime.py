"""The MIME of every email the pipeline sends, for older Outlook, Foxmail and webmail clients.

Structure (RFC 2046)::

    multipart/mixed                      (only when there are attachments)
    ├── multipart/alternative
    │   ├── text/plain; charset=utf-8    the same content as plain text
    │   └── multipart/related            (only when there are inline images)
    │       ├── text/html; charset=utf-8
    │       └── image/png  Content-ID: <…@domain>
    └── application/vnd.openxmlformats-officedocument.spreadsheetml.sheet …

Headers are written here, not left to the email package's folder, so that every client reads
them the same way:

* the Subject and the sender's display name are RFC 2047 encoded words of at most 75
  characters each (``MAX_ENCODED_WORD``), folded onto lines of at most 78;
* an attachment's Chinese file name is given three times: ``filename*=utf-8''…`` (RFC 2231,
  continued over lines when long) on Content-Disposition for current clients, and RFC 2047
  encoded words in ``filename="…"`` and in Content-Type's ``name="…"`` for the old ones
  (Outlook 2007–2013, Foxmail 7, older webmail) that read only those;
* content types by file suffix (``CONTENT_TYPES``), never left to the host's mime.types.
"""
from __future__ import annotations

import base64
import email.policy
import hashlib
import mimetypes
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate, parseaddr
from pathlib import Path
from typing import cast
from urllib.parse import quote

MAX_ENCODED_WORD = 75  # RFC 2047 §2
MAX_LINE = 78  # RFC 5322 §2.1.1
# CRLF line ends, 78-character lines for the headers set as values; the headers written here
# (set_raw) are sent as they are: refolding would undo the encoded words' folding, and a long
# MIME type (…wordprocessingml.document) cannot be folded anyway (a line may hold 998)
POLICY = email.policy.SMTP.clone(refold_source="none")

# by suffix: deterministic whatever the host's /etc/mime.types says
CONTENT_TYPES = {
    ".xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    ".docx": "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    ".pptx": "application/vnd.openxmlformats-officedocument.presentationml.presentation",
    ".xls": "application/vnd.ms-excel",
    ".doc": "application/msword",
    ".csv": "text/csv",
    ".txt": "text/plain",
    ".md": "text/markdown",
    ".html": "text/html",
    ".json": "application/json",
    ".pdf": "application/pdf",
    ".zip": "application/zip",
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".gif": "image/gif",
    ".svg": "image/svg+xml",
}
_ATTR_CHARS = "!#$&+-.^_`|~"  # RFC 2231 attribute-char besides letters and digits (quote() keeps these)
_EW_PREFIX, _EW_SUFFIX = "=?utf-8?b?", "?="


def content_type(name: str) -> str:
    """The MIME type of a file by its suffix; application/octet-stream when unknown."""
    suffix = Path(name).suffix.lower()
    return CONTENT_TYPES.get(suffix) or mimetypes.guess_type(name)[0] or "application/octet-stream"


# ---------------------------------------------------------------- encoded words

def _is_plain(text: str) -> bool:
    return text.isascii() and "=?" not in text and all(char.isprintable() for char in text)


def _encoded(chunk: str) -> str:
    return _EW_PREFIX + base64.b64encode(chunk.encode("utf-8")).decode("ascii") + _EW_SUFFIX


def encoded_words(text: str, rooms: Iterable[int]) -> list[str]:
    """``text`` as RFC 2047 B encoded words (utf-8), split between characters: the i-th word is
    at most ``rooms[i]`` characters (the last room repeats) and never more than 75."""
    words: list[str] = []
    rooms = list(rooms)
    chunk = ""
    for char in text:
        room = min(MAX_ENCODED_WORD, rooms[min(len(words), len(rooms) - 1)])
        if chunk and len(_encoded(chunk + char)) > room:
            words.append(_encoded(chunk))
            chunk = ""
        chunk += char
    if chunk or not words:
        words.append(_encoded(chunk))
    return words


def _fold(prefix_length: int, words: Sequence[str], suffix: str = "") -> str:
    """A header value of one encoded word per line (continuation lines start with a space);
    ``suffix`` after the last word, or on a line of its own when it would not fit in 78.
    ``prefix_length``: what precedes the value on the first line ("Subject: ")."""
    lines = list(words)
    last = len(lines[-1]) + (prefix_length if len(lines) == 1 else 1)
    if suffix and last + len(suffix) > MAX_LINE:
        lines.append(suffix.lstrip())
    else:
        lines[-1] += suffix
    return "\n ".join(lines)


def _rooms(prefix_length: int) -> list[int]:
    """Rooms for encoded words: the first after a prefix, then on lines that start with a space."""
    return [MAX_LINE - prefix_length, MAX_LINE - 1]


def unstructured(name: str, text: str) -> str:
    """The value of an unstructured header (Subject): as is when plain ASCII that fits, else
    encoded words (≤ 75 characters each) folded onto lines of ≤ 78 with ``name: ``."""
    prefix = len(name) + 2
    if _is_plain(text) and prefix + len(text) <= MAX_LINE:
        return text
    return _fold(prefix, encoded_words(text, _rooms(prefix)))


def mailbox(name: str, display_name: str, address: str) -> str:
    """``Display Name <address>`` with the display name as encoded words when not plain ASCII."""
    if not display_name:
        return address
    if _is_plain(display_name) and not re.search(r'[()<>\[\]:;@\\,."]', display_name):
        plain = f"{display_name} <{address}>"
        if len(name) + 2 + len(plain) <= MAX_LINE:
            return plain
    prefix = len(name) + 2
    return _fold(prefix, encoded_words(display_name, _rooms(prefix)), f" <{address}>")


def parse_sender(configured: str | None) -> tuple[str, str]:
    """(display name, address) of ``VBP_MAIL_FROM``: ``名称 <addr>``, a bare address, or a bare
    display name (then the address is the connection's); ("", "") when not set."""
    configured = (configured or "").strip()
    if not configured:
        return "", ""
    if "@" not in configured:
        return configured.strip('"'), ""
    display_name, address = parseaddr(configured)
    return display_name.strip(), address.strip()


# ---------------------------------------------------------------- attachments

def _quoted_words(name: str, file_name: str, tail: str) -> str:
    """`` name="…"`` + tail, the file name as encoded words when not plain ASCII (a quoted string
    may be folded: FWS inside it is unfolded to one space, which decoders drop between words)."""
    if _is_plain(file_name):
        escaped = file_name.replace("\\", "\\\\").replace('"', '\\"')
        return f'{name}="{escaped}"{tail}'
    # the first line is ' name="word', the others ' word'; the last ends with '"' and the tail
    closing = 1 + len(tail)
    words = encoded_words(file_name, [MAX_LINE - len(name) - 3 - closing, MAX_LINE - 1 - closing])
    lines = [f'{name}="{words[0]}', *words[1:]]
    lines[-1] += f'"{tail}'
    return "\n ".join(lines)


def _rfc2231(name: str, file_name: str) -> str:
    """``filename*=utf-8''%E6…`` (RFC 2231), in continuations ``filename*0*=…`` when long."""
    encoded = quote(file_name.encode("utf-8"), safe=_ATTR_CHARS)
    single = f"{name}*=utf-8''{encoded}"
    if len(single) + 1 <= MAX_LINE - 1:
        return single
    pieces: list[str] = []
    rest = "utf-8''" + encoded
    number = 0
    while rest:
        head = f"{name}*{number}*="
        room = MAX_LINE - 1 - len(head) - 1  # ' ' before, ';' after
        cut = min(room, len(rest))
        while cut < len(rest) and "%" in rest[max(0, cut - 2):cut]:  # never split a %XX triplet
            cut -= 1
        pieces.append(head + rest[:cut])
        rest = rest[cut:]
        number += 1
    return ";\n ".join(pieces)


def attachment_headers(file_name: str, mime_type: str | None = None,
                       disposition: str = "attachment") -> tuple[str, str]:
    """(Content-Type, Content-Disposition) values of a file attachment (see module docs)."""
    mime_type = mime_type or content_type(file_name)
    content = f"{mime_type};\n " + _quoted_words("name", file_name, "")
    if _is_plain(file_name):
        return content, f"{disposition};\n " + _quoted_words("filename", file_name, "")
    return content, (f"{disposition};\n " + _quoted_words("filename", file_name, ";")
                     + "\n " + _rfc2231("filename", file_name))


def content_id(name: str, domain: str) -> str:
    """A Content-ID (without the brackets) for an inline part: ``<name>.<hash>@<domain>``."""
    local = re.sub(r"[^A-Za-z0-9_-]+", "-", name).strip("-")[:40] or "part"
    digest = hashlib.sha256(name.encode("utf-8")).hexdigest()[:12]
    domain = re.sub(r"[^A-Za-z0-9.-]+", "", domain) or "localhost"
    return f"{local}.{digest}@{domain}"


@dataclass(frozen=True)
class Attachment:
    name: str
    data: bytes
    mime_type: str | None = None  # default: by the name's suffix

    @classmethod
    def of(cls, path: Path) -> Attachment:
        return cls(Path(path).name, Path(path).read_bytes())


@dataclass(frozen=True)
class InlineImage:
    content_id: str  # without the angle brackets (templates.Image refers to it)
    data: bytes
    mime_type: str = "image/png"


def _set_part_headers(part: EmailMessage, name: str, value: str) -> None:
    del part[name]
    part.set_raw(name, value)


def _attachment_part(attachment: Attachment) -> EmailMessage:
    mime_type = attachment.mime_type or content_type(attachment.name)
    maintype, subtype = mime_type.split("/", 1)
    part = EmailMessage(policy=POLICY)
    part.set_content(attachment.data, maintype=maintype, subtype=subtype, cte="base64")
    if maintype == "text" and "charset" not in mime_type:
        try:
            attachment.data.decode("utf-8")
            mime_type += "; charset=utf-8"
        except UnicodeDecodeError:
            pass  # a GB18030 CSV: the client guesses, as it would from a file on disk
    content, disposition = attachment_headers(attachment.name, mime_type)
    _set_part_headers(part, "Content-Type", content)
    _set_part_headers(part, "Content-Disposition", disposition)
    return part


def build_message(*, subject: str, sender: tuple[str, str], to: Sequence[str], text: str, html: str,
                  message_id: str, attachments: Sequence[Attachment] = (),
                  inline_images: Sequence[InlineImage] = (), headers: dict[str, str] | None = None,
                  ) -> EmailMessage:
    """One email: ``multipart/alternative`` (text, HTML — in ``multipart/related`` with the inline
    images), in ``multipart/mixed`` with the attachments. ``sender``: (display name, address)."""
    message = EmailMessage(policy=POLICY)
    message.set_raw("Subject", unstructured("Subject", subject))
    message.set_raw("From", mailbox("From", *sender))
    message["To"] = ", ".join(to)
    message["Date"] = formatdate(localtime=True)
    message["Message-ID"] = message_id
    for name, value in (headers or {}).items():
        message[name] = value
    message.set_content(text, subtype="plain", charset="utf-8", cte="base64")
    message.add_alternative(html, subtype="html", charset="utf-8", cte="base64")
    if inline_images:
        html_part = cast("list[EmailMessage]", message.get_payload())[1]
        for image in inline_images:
            maintype, subtype = image.mime_type.split("/", 1)
            html_part.add_related(image.data, maintype=maintype, subtype=subtype, cte="base64",
                                  cid=f"<{image.content_id}>", disposition="inline")
    if attachments:
        message.make_mixed()
        for attachment in attachments:
            message.attach(_attachment_part(attachment))
    for part in message.walk():  # MIME-Version belongs to the message, not to its parts
        if part is not message:
            del part["MIME-Version"]
    return message


def encoded_word_lengths(raw: bytes) -> list[int]:
    """The length of every RFC 2047 encoded word in a raw message's headers (all parts)."""
    return [len(word) for word in re.findall(rb"=\?[^?\s]+\?[bBqQ]\?[^?\s]*\?=", raw)]
