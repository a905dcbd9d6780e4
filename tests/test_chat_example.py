"""examples/chat.py end to end: two instances in pseudo-terminals talk to each
other through a real server; what one types appears on the other's screen."""

from __future__ import annotations

import fcntl
import json
import os
import re
import select
import subprocess
import sys
import termios
import time
from pathlib import Path

from .conftest import unique
from .support import ROOT, TEST_CLIENT, ServerProcess

PASSWORD = "correct horse battery"
WAIT = 15.0


def _take_terminal() -> None:
    """In the child: a new session whose controlling terminal is the pty, so
    that getpass reads the password from it (and never from ours)."""
    os.setsid()
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


class Terminal:
    """One chat.py process on a pseudo-terminal."""

    def __init__(self, server: ServerProcess, state: Path) -> None:
        master, slave = os.openpty()
        self.fd = master
        self.screen = ""
        self.proc = subprocess.Popen(
            [sys.executable, str(ROOT / "examples" / "chat.py"), "--host", server.host, "--port", str(server.port),
             "--state", str(state), "--client-name", TEST_CLIENT["nameclient"],
             "--client-hash", TEST_CLIENT["hashcert"], "--client-version", str(TEST_CLIENT["version"])],
            stdin=slave, stdout=slave, stderr=slave, preexec_fn=_take_terminal, cwd=ROOT,
        )
        os.close(slave)

    def expect(self, pattern: str, timeout: float = WAIT) -> re.Match:
        """Wait until ``pattern`` shows on the screen; consume the screen up to it."""
        deadline = time.monotonic() + timeout
        while True:
            match = re.search(pattern, self.screen)
            if match:
                self.screen = self.screen[match.end():]
                return match
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"{pattern!r} did not appear within {timeout}s; the screen shows:\n{self.screen}")
            if select.select([self.fd], [], [], min(left, 0.2))[0]:
                try:
                    data = os.read(self.fd, 65536)
                except OSError:  # the process ended and the terminal is gone
                    data = b""
                if not data:
                    raise AssertionError(f"{pattern!r} never appeared; the chat ended with:\n{self.screen}")
                self.screen += data.decode("utf-8", "replace").replace("\r\n", "\n")

    def type(self, line: str) -> None:
        os.write(self.fd, (line + "\n").encode())

    def register(self, login: str) -> int:
        self.expect(r"log in or register\? \[l/r\] ")
        self.type("r")
        self.expect("login: ")
        self.type(login)
        self.expect("email: ")
        self.type(f"{login}@example.org")
        self.expect("password: ")
        self.type(PASSWORD)
        return int(self.expect(rf"logged in as {login} \(id (\d+)\)").group(1))

    def finish(self, timeout: float = WAIT) -> int:
        code = self.proc.wait(timeout)
        os.close(self.fd)
        return code

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)


def test_two_chats_talk_to_each_other(server, tmp_path):
    alice_login, bob_login = unique("alice"), unique("bob")
    alice_state, bob_state = tmp_path / "alice.json", tmp_path / "bob.json"
    alice, bob = Terminal(server, alice_state), Terminal(server, bob_state)
    terminals = [alice, bob]
    try:
        alice.register(alice_login)
        bob_id = bob.register(bob_login)
        dialog = f"{alice_login} & {bob_login}"

        alice.type(f"/new {bob_id}")
        alice.expect(f"--- {dialog} ---")
        alice.type("hello bob, it is alice")
        # Bob has no dialog open: the message shows live, with its dialog's name.
        bob.expect(rf"\[{dialog}\] \d\d:\d\d {alice_login}: hello bob, it is alice")

        bob.type("/dialogs")
        bob.expect(f"1. {dialog}")
        bob.type("/open 1")
        bob.expect(f"--- {dialog} ---")
        bob.expect(f"{alice_login}: hello bob, it is alice")  # the history
        bob.type("hi alice")
        alice.expect(rf"\n\d\d:\d\d {bob_login}: hi alice")  # open dialog: no prefix

        alice.type("/unknown")
        alice.expect("unknown command or argument")
        alice.type("/quit")
        assert alice.finish() == 0

        # The next start resumes the saved session without asking.
        again = Terminal(server, alice_state)
        terminals.append(again)
        again.expect(rf"logged in as {alice_login} \(id \d+\)")
        again.type("/dialogs")
        again.expect(f"1. {dialog}")
        again.type("/logout")
        assert again.finish() == 0
        assert "token" not in json.loads(alice_state.read_text())
        assert alice_state.stat().st_mode & 0o077 == 0

        bob.type("/quit")
        assert bob.finish() == 0
    finally:
        for t in terminals:
            t.kill()
