"""examples/chat.py end to end, driven as a newcomer drives it: real chat
processes in pseudo-terminals against a real server.  Two chats started with
the same command (one state file) are two users; ``/new LOGIN``; answering the
last message without opening its dialog; a line typed while the server is
down is sent when it is back; a session revoked elsewhere asks to log in again;
a file sent with a progress bar and saved by the other user."""

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
        self.expect(r"log in or register\? \[l/r\]")
        self.type("r")
        self.expect("login: ")
        self.type(login)
        self.expect("email: ")
        self.type(f"{login}@example.org")
        self.expect("password: ")
        self.type(PASSWORD)
        return int(self.expect(rf"logged in as {login} \(id (\d+)\)").group(1))

    def log_in(self, login: str) -> int:
        self.expect(r"log in or register\? \[l/r\]")
        self.type("l")
        self.expect("email or login: ")
        self.type(login)
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


def test_two_chats_with_one_command_are_two_users_and_talk(server, tmp_path):
    alice_login, bob_login = unique("alice"), unique("bob")
    state = tmp_path / "chat.json"  # both use the default state file, as the README's command does
    terminals = []
    try:
        alice = Terminal(server, state)
        terminals.append(alice)
        alice.register(alice_login)
        bob = Terminal(server, state)
        terminals.append(bob)
        bob.expect(rf"continue as {alice_login}\? \[Y/n\] ")
        bob.type("n")
        bob.register(bob_login)
        dialog = f"{alice_login} & {bob_login}"

        # A login that nobody has is said so; a newcomer's login just works.
        alice.type("/new nobody-has-this-login")
        alice.expect("no user with the login 'nobody-has-this-login'")
        alice.type(f"/new {bob_login}")
        alice.expect(f"--- {dialog} ---")
        alice.type("hello bob, it is alice")
        # Bob has no dialog open: the message shows live, with its dialog's name...
        bob.expect(rf"\[{dialog}\] \d\d:\d\d {alice_login}: hello bob, it is alice")
        # ...and his next line answers it, without /dialogs and /open.
        bob.type("hi alice")
        bob.expect(rf"\(sent to \[{dialog}\], the dialog of the last message")
        alice.expect(rf"\n\d\d:\d\d {bob_login}: hi alice")  # open dialog: no prefix

        # Logins are found in any letter case.
        bob.type(f"/new {alice_login.upper()}")
        bob.expect(f"--- {bob_login} & {alice_login} ---")
        bob.type("/dialogs")
        listed = bob.expect(r"1\. (.*)\n2\. (.*)\n").groups()
        assert set(listed) == {dialog, f"{bob_login} & {alice_login}"}  # in the order of their activity
        bob.type(f"/open {listed.index(dialog) + 1}")
        bob.expect(f"--- {dialog} ---")
        bob.expect(f"{alice_login}: hello bob, it is alice")  # the history

        alice.type("/unknown")
        alice.expect("unknown command or argument")
        alice.type("/quit")
        assert alice.finish() == 0

        # The next start offers the kept sessions, the most recent first.
        again = Terminal(server, state)
        terminals.append(again)
        again.expect(rf"continue as {bob_login}\? \[Y/n\] ")
        again.type("n")
        again.expect(rf"continue as {alice_login}\? \[Y/n\] ")
        again.type("")
        again.expect(rf"logged in as {alice_login} \(id \d+\)")
        again.type("/dialogs")
        again.expect(rf"\d\. {bob_login} & {alice_login}")
        again.type("/logout")
        assert again.finish() == 0
        kept = json.loads(state.read_text())["sessions"]
        assert [s["login"] for s in kept.values()] == [bob_login]  # Alice's is gone, Bob's is kept
        assert state.stat().st_mode & 0o077 == 0

        bob.type("/quit")
        assert bob.finish() == 0
    finally:
        for t in terminals:
            t.kill()


def test_a_line_typed_while_the_server_is_down_is_sent_when_it_is_back(start_server, tmp_path):
    own = start_server("--allow-any-client")
    alice_login, bob_login = unique("alice"), unique("bob")
    alice, bob = Terminal(own, tmp_path / "alice.json"), Terminal(own, tmp_path / "bob.json")
    try:
        alice.register(alice_login)
        bob_id = bob.register(bob_login)
        alice.type(f"/new {bob_id}")
        alice.expect(f"--- {alice_login} & {bob_login} ---")

        own.stop()
        alice.type("typed while the server was down")
        alice.expect("not sent yet, the server is unreachable: 1 line")
        own.start()
        alice.expect(r"connection back: 1 waiting line\(s\) sent", timeout=30)
        bob.expect(f"{alice_login}: typed while the server was down", timeout=30)
        alice.type("and after")
        bob.expect(f"{alice_login}: and after")
        assert "typed while the server was down" not in bob.screen  # sent once
    finally:
        alice.kill()
        bob.kill()


async def test_a_session_revoked_elsewhere_asks_to_log_in_again(server, connect, tmp_path):
    login = unique("alice")
    chat = Terminal(server, tmp_path / "chat.json")
    try:
        chat.register(login)
        elsewhere = await connect()
        await elsewhere.login(login, PASSWORD)
        await elsewhere.revoke_other_sessions()  # "log out my other devices"

        chat.expect("your session has ended")
        user_id = chat.log_in(login)
        assert user_id == elsewhere.user_id
        chat.type("/me")
        chat.expect(rf"you are {login} \(id {user_id}\)")
        chat.type("/quit")
        assert chat.finish() == 0
    finally:
        chat.kill()


def test_a_file_sent_shows_a_progress_bar_and_arrives_whole(server, tmp_path):
    """``/send PATH`` uploads in parts with a bar drawn in place up to 100 %,
    sends the file as a message, and the other user saves it with ``/get``."""
    alice_login, bob_login = unique("alice"), unique("bob")
    data = os.urandom(3 * 1024 * 1024 + 5)  # four 1 MiB parts
    sent = tmp_path / "holiday.mp4"
    sent.write_bytes(data)
    terminals = []
    try:
        alice = Terminal(server, tmp_path / "a.json")
        terminals.append(alice)
        alice.register(alice_login)
        bob = Terminal(server, tmp_path / "b.json")
        terminals.append(bob)
        bob.register(bob_login)
        alice.type(f"/new {bob_login}")
        alice.expect(f"--- {alice_login} & {bob_login} ---")
        alice.type(f"/send {sent}")
        # Drawn at 0 %, then redrawn in place (a carriage return, no new line) up to 100 %.
        alice.expect(r"sending holiday\.mp4 \[\.{30}\]   0% 0\.0/3\.0 MiB\r")
        alice.expect(r"\rsending holiday\.mp4 \[#{30}\] 100% 3\.0/3\.0 MiB\n")
        alice.expect(rf"sent holiday\.mp4 \({len(data)} bytes\)")
        bob.expect(rf"{alice_login}: holiday\.mp4 \[attachment 1\]")
        saved = tmp_path / "saved.mp4"
        bob.type(f"/get 1 {saved}")
        bob.expect(rf"saved {re.escape(str(saved))} \({len(data)} bytes\)")
        assert saved.read_bytes() == data
        alice.type(f"/send {tmp_path / 'nothing-here'}")
        alice.expect("no file ")
        bob.type("/get 7 x")
        bob.expect("no such attachment")
    finally:
        for t in terminals:
            t.kill()
