"""Test helpers: run the real server as a subprocess, receive real mail."""

from __future__ import annotations

import asyncio
import email
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from email.message import Message
from pathlib import Path

from aiosmtpd.controller import Controller

ROOT = Path(__file__).resolve().parent.parent
TEST_CLIENT = {"nameclient": "sessia-tests", "hashcert": "0123456789abcdef0123456789abcdef", "version": 3}
#: What a server's log must never show, whatever a client sends: a handler's
#: bug (logged with its traceback and answered 500), an answer that could not
#: be encoded, or a task that died unseen.
LOG_ALARMS = ("Traceback", "unhandled error", "cannot encode", "exception was never retrieved",
              "Exception in callback")


class ServerProcess:
    """``python -m server`` on a free port, with its stderr kept for assertions."""

    def __init__(self, data_dir: Path, args: list[str], env: dict[str, str] | None = None) -> None:
        self.data_dir = data_dir
        self.args = args
        self.env = env
        self.proc: subprocess.Popen | None = None
        self.host = "127.0.0.1"
        self.port = 0
        self.log: list[str] = []
        self._asked: subprocess.Popen | None = None  # the process ask_to_stop signalled
        self._reader: threading.Thread | None = None

    def start(self, timeout: float = 60.0) -> ServerProcess:
        env = {**os.environ, **(self.env or {})}
        env.pop("SESSIA_DATABASE_URL", None) if "--database-url" in self.args else None
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "server", "--host", "127.0.0.1", "--port", str(self.port or 0),
             "--data-dir", str(self.data_dir), *self.args],
            cwd=ROOT,
            stderr=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stdin=subprocess.DEVNULL,
            text=True,
            env=env,
        )
        ready = threading.Event()
        listening = threading.Event()

        def read() -> None:
            assert self.proc is not None and self.proc.stderr is not None
            for line in self.proc.stderr:
                self.log.append(line.rstrip("\n"))
                match = re.search(r"listening on ([\d.]+):(\d+)", line)
                if match:
                    self.port = int(match.group(2))
                    listening.set()
                    ready.set()
            ready.set()

        self._reader = threading.Thread(target=read, daemon=True)
        self._reader.start()
        # Its stderr may close a moment before the process can be seen to exit:
        # only a "listening" line means it started.
        if not ready.wait(timeout) or not listening.is_set() or self.proc.poll() is not None:
            self.stop()
            raise RuntimeError("server did not start:\n" + "\n".join(self.log[-40:]))
        return self

    def ask_to_stop(self) -> None:
        """Send SIGTERM and go on: many servers then stop at once, and
        ``stop`` waits for this one without signalling it again."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self._asked = self.proc

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None and not (sig == signal.SIGTERM and self._asked is self.proc):
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self._reader is not None:
            self._reader.join(5)
        return self.proc.returncode

    async def logged(self, text: str, timeout: float = 10.0) -> bool:
        """Whether a line containing ``text`` is in the log within ``timeout``:
        a line written just before an answer may be read after it."""
        deadline = time.monotonic() + timeout
        while not any(text in line for line in self.log):
            if time.monotonic() > deadline:
                return False
            await asyncio.sleep(0.02)
        return True

    def alarms(self, since: int = 0) -> list[str]:
        """The lines of the log from line ``since`` on that show a bug (``LOG_ALARMS``)."""
        return [line for line in self.log[since:] if any(alarm in line for alarm in LOG_ALARMS)]

    def kill(self) -> None:
        self.stop(signal.SIGKILL)

    def restart(self) -> ServerProcess:
        """Stop and start on the same data dir and port."""
        self.stop()
        return self.start()


@dataclass
class MailBox:
    """Mail received by the test SMTP server."""

    messages: list[Message] = field(default_factory=list)
    _cond: threading.Condition = field(default_factory=threading.Condition)

    async def handle_DATA(self, server, session, envelope):  # aiosmtpd handler hook
        msg = email.message_from_bytes(envelope.original_content or envelope.content)
        msg["X-Envelope-To"] = ",".join(envelope.rcpt_tos)
        with self._cond:
            self.messages.append(msg)
            self._cond.notify_all()
        return "250 OK"

    def _find(self, to: str, after: int) -> Message | None:
        for msg in self.messages[after:]:
            if to.lower() in msg["X-Envelope-To"].lower():
                return msg
        return None

    async def wait_for(self, to: str, *, after: int = 0, timeout: float = 15.0) -> Message:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._cond:
                found = self._find(to, after)
            if found is not None:
                return found
            await asyncio.sleep(0.05)
        raise AssertionError(f"no mail to {to} within {timeout}s")

    def count(self) -> int:
        return len(self.messages)


def mail_text(msg: Message) -> str:
    if msg.is_multipart():
        parts = [p.get_payload(decode=True) or b"" for p in msg.walk() if p.get_content_type() == "text/plain"]
        return b"".join(parts).decode("utf-8", "replace")
    return (msg.get_payload(decode=True) or b"").decode("utf-8", "replace")


def code_from(msg: Message) -> str:
    match = re.search(r"\b(\d{6})\b", mail_text(msg))
    assert match, "no 6-digit code in the mail"
    return match.group(1)


def database_url(server: ServerProcess) -> str:
    """The URL of the database a test server was started on."""
    return server.args[server.args.index("--database-url") + 1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_smtp() -> tuple[Controller, MailBox, int]:
    box = MailBox()
    port = free_port()
    controller = Controller(box, hostname="127.0.0.1", port=port)
    controller.start()
    return controller, box, port


async def refused(code: int, coro, match: str | None = None):
    """Await ``coro`` and require it to fail with exactly ``code`` (and a
    message matching ``match``); returns the error."""
    import pytest

    from client_sdk import SessiaError

    with pytest.raises(SessiaError) as info:
        await coro
    assert info.value.code == code, info.value
    if match is not None:
        assert re.search(match, info.value.message), info.value.message
    return info.value
