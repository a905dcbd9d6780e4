"""Outgoing mail: SMTP with aiosmtplib, or an outbox directory when no SMTP
server is configured.

``Mailer.send`` either delivers the message or raises: ``Unavailable`` (503)
when the SMTP server cannot be reached, times out or fails, ``Unprocessable``
(422) when it permanently refuses the recipient.  The whole exchange is bounded
by ``--smtp-timeout``, so a request that sends mail never hangs on a dead or
stalled mail server.

Without ``--smtp-url`` each message is written to ``<data-dir>/outbox/`` as an
``.eml`` file (written to a temporary name, then renamed, so a reader never
sees half a message) and the log says where.  That is the development setup:
open the file to read the code.

Message bodies carry confirmation codes, so they are never logged.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import secrets
import time
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate, make_msgid, parseaddr
from pathlib import Path
from urllib.parse import unquote, urlsplit

import aiosmtplib

from protocol.status import Unavailable, Unprocessable

from .config import Config

log = logging.getLogger("sessia.mail")

SEND_FAILED = "could not send mail, try again"


@dataclass(frozen=True, slots=True)
class SmtpTarget:
    """Where and how to deliver: parsed from ``smtp://`` / ``smtps://`` URLs."""

    host: str
    port: int
    implicit_tls: bool
    starttls: bool
    username: str | None
    password: str | None

    @classmethod
    def from_config(cls, config: Config) -> SmtpTarget | None:
        if not config.smtp_url:
            return None
        url = urlsplit(config.smtp_url)
        if url.scheme not in ("smtp", "smtps") or not url.hostname:
            raise ValueError("smtp_url: expected smtp://host[:port] or smtps://host[:port]")
        implicit_tls = url.scheme == "smtps"
        # Explicit settings win over credentials written into the URL.
        username = config.smtp_username or (unquote(url.username) if url.username else None)
        password = config.smtp_password or (unquote(url.password) if url.password else None)
        return cls(
            host=url.hostname,
            port=url.port or (465 if implicit_tls else 25),
            implicit_tls=implicit_tls,
            starttls=config.smtp_starttls and not implicit_tls,
            username=username,
            password=password,
        )


class Mailer:
    def __init__(self, config: Config) -> None:
        self.sender = config.mail_from
        self.timeout = config.smtp_timeout
        self.outbox = config.data_dir / "outbox"
        self.target = SmtpTarget.from_config(config)
        self._domain = parseaddr(config.mail_from)[1].rpartition("@")[2] or "localhost"
        #: Undelivered mail by reason ("unavailable", "refused", "outbox"): server/metrics.py.
        self.failures: dict[str, int] = {}

    def message(self, to: str, subject: str, text: str) -> EmailMessage:
        msg = EmailMessage()
        msg["From"] = self.sender
        msg["To"] = to
        msg["Subject"] = subject
        msg["Date"] = formatdate(localtime=True)
        # An explicit domain: make_msgid would otherwise look up this host's FQDN.
        msg["Message-ID"] = make_msgid(domain=self._domain)
        msg.set_content(text)
        return msg

    async def send(self, to: str, subject: str, text: str) -> None:
        """Deliver one plain-text message to ``to`` or raise (see the module doc)."""
        msg = self.message(to, subject, text)
        if self.target is None:
            await self._to_outbox(to, msg)
        else:
            await self._to_smtp(to, msg, self.target)

    async def _to_smtp(self, to: str, msg: EmailMessage, target: SmtpTarget) -> None:
        try:
            async with asyncio.timeout(self.timeout):
                await aiosmtplib.send(
                    msg,
                    hostname=target.host,
                    port=target.port,
                    username=target.username,
                    password=target.password,
                    use_tls=target.implicit_tls,
                    start_tls=target.starttls,
                    timeout=self.timeout,
                )
        except aiosmtplib.SMTPRecipientsRefused as exc:
            if all(r.code >= 500 for r in exc.recipients):
                log.info("mail server %s:%d refused recipient %s", target.host, target.port, to)
                self._failed("refused")
                raise Unprocessable("email: the mail server refused this address") from None
            self._failed("unavailable")
            raise self._unavailable(to, target, exc) from None
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            self._failed("unavailable")
            raise self._unavailable(to, target, exc) from None
        log.info("mail sent to %s via %s:%d", to, target.host, target.port)

    def _failed(self, reason: str) -> None:
        self.failures[reason] = self.failures.get(reason, 0) + 1

    @staticmethod
    def _unavailable(to: str, target: SmtpTarget, exc: BaseException) -> Unavailable:
        """Log why delivery failed; the client only learns that it did."""
        reason = type(exc).__name__ if isinstance(exc, TimeoutError) else f"{type(exc).__name__}: {exc}"
        log.warning("could not send mail to %s via %s:%d: %s", to, target.host, target.port, reason)
        return Unavailable(SEND_FAILED)

    async def _to_outbox(self, to: str, msg: EmailMessage) -> None:
        try:
            path = await asyncio.to_thread(write_atomically, self.outbox, msg.as_bytes())
        except OSError as exc:
            log.error("could not write mail to %s into %s: %s", to, self.outbox, exc)
            self._failed("outbox")
            raise Unavailable(SEND_FAILED) from None
        log.info("no SMTP server configured: mail to %s written to %s", to, path)


def write_atomically(directory: Path, data: bytes) -> Path:
    """Write ``data`` as a new ``.eml`` file in ``directory``: to a hidden
    temporary name first, then renamed, so the file appears complete or not at all."""
    directory.mkdir(parents=True, exist_ok=True)
    name = f"{time.strftime('%Y%m%dT%H%M%S')}-{secrets.token_hex(8)}.eml"
    final = directory / name
    temp = directory / f".{name}.tmp"
    try:
        with open(temp, "xb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temp, final)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    return final


def code_lifetime(ttl: float) -> str:
    """How long a mailed code stays valid, as the mail says it."""
    return f"{math.ceil(ttl / 60)} minutes" if ttl >= 120 else f"{math.ceil(ttl)} second(s)"
