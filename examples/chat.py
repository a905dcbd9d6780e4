"""A small terminal chat on the sessia SDK.

    .venv/bin/python examples/chat.py                 # against `make run` (127.0.0.1:7788)
    .venv/bin/python examples/chat.py --host chat.example.org --port 7788 --tls

Each start offers the sessions kept in ~/.sessia-chat.json (``--state``), one
per user (``continue as alice? [Y/n]``); ``n`` leads to log in or register, so
two terminals started the same way can be two users.  Type /help for the
commands; any other line is sent to the open dialog (or, with none open, to
the dialog of the last message that arrived), and new messages appear as they
arrive.  A line typed while the server is unreachable waits and is sent when
the connection is back; a session ended elsewhere asks to log in again.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import secrets
import socket
import sys
import threading
from collections.abc import Callable
from pathlib import Path

CHECKOUT = Path(__file__).resolve().parent.parent
if (CHECKOUT / "client_sdk" / "__init__.py").exists():  # run from a checkout: use its SDK
    sys.path.insert(0, str(CHECKOUT))

import client_sdk  # noqa: E402
from client_sdk import (  # noqa: E402
    ClientError,
    ConnectionClosed,
    DialogItem,
    MessageItem,
    NotFound,
    RequestTimeout,
    SessiaError,
    Unauthorized,
    Unavailable,
    Unprocessable,
)
from protocol.events import NewMessage  # noqa: E402

HELP = """commands:
  /dialogs          list my dialogs          /open N      open dialog N of the list
  /new LOGIN        start a dialog with a user (LOGIN, or their user id) and open it
  /history          the open dialog's last messages
  /send PATH        send a file to the open dialog (with a progress bar; resumes if the connection drops)
  /get N PATH       save attachment N of the open dialog's history to PATH
  /me               my login and user id     /logout      log out and quit
  /quit             quit (stay logged in)
anything else: sent to the open dialog; with none open, to the dialog of the last message that arrived"""

#: What a send that did not reach the server raises: the line waits in the outbox.
UNSENT = (ConnectionClosed, RequestTimeout, OSError, Unavailable)


def say(text: str) -> None:
    print(text, flush=True)


class ProgressBar:
    """``progress(done, total)`` for ``upload_file``/``download_file``: a bar
    redrawn in place on a terminal, a line at every quarter otherwise."""

    WIDTH = 30

    def __init__(self, label: str) -> None:
        self.label = label
        self.tty = sys.stdout.isatty()
        self.shown = -1

    def __call__(self, done: int, total: int) -> None:
        share = done / total if total else 1.0
        if self.tty:
            filled = int(share * self.WIDTH)
            bar = "#" * filled + "." * (self.WIDTH - filled)
            sys.stdout.write(f"\r{self.label} [{bar}] {share:4.0%} {done / 2**20:.1f}/{total / 2**20:.1f} MiB")
            if done >= total:
                sys.stdout.write("\n")
            sys.stdout.flush()
        elif int(share * 4) > self.shown:
            self.shown = int(share * 4)
            say(f"{self.label}: {share:.0%}")


class Keyboard:
    """The terminal, read by one thread, one request at a time.

    A single reader matters: ``getpass`` reads the terminal itself, so a
    second thread reading stdin meanwhile would steal the password line.
    Requests are served in order; the chat keeps one line request pending,
    and a log-in asked in the middle of the chat (a revoked session) takes
    its first answer from that pending request."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self._thread_requests: list[tuple[Callable[[str], str], str, asyncio.Future[str | None]]] = []
        self._ready = threading.Semaphore(0)
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            self._ready.acquire()
            read, prompt, future = self._thread_requests.pop(0)
            try:
                answer: str | None = read(prompt)
            except EOFError:
                answer = None
            self.loop.call_soon_threadsafe(_settle, future, answer)

    def ask(self, prompt: str = "", *, secret: bool = False) -> asyncio.Future[str | None]:
        """The next line typed (None at end of input), after ``prompt``."""
        future: asyncio.Future[str | None] = self.loop.create_future()
        self._thread_requests.append((getpass.getpass if secret else input, prompt, future))
        self._ready.release()
        return future


def _settle(future: asyncio.Future[str | None], answer: str | None) -> None:
    if not future.done():
        future.set_result(answer)


class Sessions:
    """The state file: this machine's device id and one session per user,
    re-read before each change so that two chats running at once keep each
    other's sessions."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self) -> dict:
        state = json.loads(self.path.read_text()) if self.path.exists() else {}
        state.setdefault("device", secrets.token_hex(16))  # tokens are bound to this id
        state.setdefault("sessions", {})  # user id -> {"login", "token"}, the latest last
        if "token" in state:  # the single session of older versions of this chat
            state["sessions"].setdefault("?", {"login": "the saved user", "token": state.pop("token")})
        return state

    def device(self) -> str:
        """This machine's device id, written down at once: the tokens kept
        later are valid only with it."""
        state = self.load()
        if not self.path.exists():
            self._write(state)
        return str(state["device"])

    def saved(self) -> list[tuple[str, dict]]:
        """The kept sessions, the most recently used first."""
        return list(reversed(self.load()["sessions"].items()))

    def keep(self, user_id: int, login: str, token: str) -> None:
        state = self.load()
        state["sessions"].pop(str(user_id), None)  # re-added last: the most recent
        state["sessions"][str(user_id)] = {"login": login, "token": token}
        self._write(state)

    def forget(self, key: str) -> None:
        state = self.load()
        state["sessions"].pop(key, None)
        self._write(state)

    def _write(self, state: dict) -> None:
        self.path.touch(0o600)  # the tokens are passwords: readable by their owner only
        self.path.write_text(json.dumps(state))


class Chat:
    def __init__(self, client: client_sdk.Client, keyboard: Keyboard, sessions: Sessions) -> None:
        self.client = client
        self.keyboard = keyboard
        self.sessions = sessions
        self.listed: list[DialogItem] = []
        self.names: dict[str, str] = {}  # dialog key -> name
        self.nicks: dict[int, str] = {}
        self.open: str | None = None
        self.last_from: str | None = None  # the dialog of the last message from someone else
        self.outbox: list[tuple[str, str, str]] = []  # (dialog, msgkey, text) not yet sent
        self.attachments: list[str] = []  # media keys of the attachments shown, numbered from 1
        self.back = asyncio.Event()  # set when the connection is back
        self.sending = asyncio.Lock()  # one flush at a time: a line is never sent twice at once
        self.revoked = asyncio.Event()  # set when the session ended elsewhere
        client.on_reconnect.append(self.back.set)

    async def nick(self, user_id: int | None) -> str:
        if user_id is None:
            return "?"
        if user_id not in self.nicks:
            try:
                self.nicks[user_id] = (await self.client.get_user(user_id)).nickname
            except SessiaError:
                self.nicks[user_id] = f"user {user_id}"
        return self.nicks[user_id]

    async def show(self, msg: MessageItem, dialog: str | None = None) -> None:
        where = f"[{self.names.get(dialog, 'new dialog')}] " if dialog and dialog != self.open else ""
        files = ""
        for key in msg.media:
            self.attachments.append(key)
            files += f" [attachment {len(self.attachments)}]"
        say(f"{where}{msg.created_at.astimezone():%H:%M} {await self.nick(msg.author_id)}: {msg.content}{files}")

    async def listen(self, stream: client_sdk.EventStream) -> None:
        """Print every new message from others as it arrives.  The stream
        reconnects by itself (then the outbox is sent); it ends when the
        session was revoked, and the chat then asks to log in again."""
        try:
            async for update in stream:
                event = update.event
                if isinstance(event, NewMessage) and event.item.author_id != self.client.user_id:
                    if event.dialog_key not in self.names:
                        await self.refresh()
                    self.last_from = event.dialog_key
                    await self.show(event.item, event.dialog_key)
        except Unauthorized:
            say("your session has ended (logged out elsewhere, or the password changed): log in again")
            self.revoked.set()
        except (SessiaError, ClientError) as exc:
            say(f"live updates stopped: {exc}")

    async def refresh(self) -> None:
        self.listed = await self.client.dialogs()
        self.names.update((d.key, d.name or "(no name)") for d in self.listed)

    async def find_user(self, who: str) -> int | None:
        """A user id from a login (``GetUser`` by login; any letter case), or
        a number taken as a user id; None if there is no such user."""
        if who.isdigit():
            return int(who)
        try:
            return (await self.client.find_user(who)).id
        except (NotFound, Unprocessable):
            return None

    async def command(self, line: str) -> bool:
        """Run one input line; False to quit."""
        word, _, arg = line.partition(" ")
        arg = arg.strip()
        if word == "/quit":
            return False
        if word == "/logout":
            user_id = self.client.user_id
            await self.client.logout()
            self.sessions.forget(str(user_id))
            return False
        if word == "/help":
            say(HELP)
        elif word == "/me":
            say(f"you are {await self.nick(self.client.user_id)} (id {self.client.user_id})")
        elif word == "/dialogs":
            await self.refresh()
            for n, d in enumerate(self.listed, 1):
                say(f"{n}. {self.names[d.key]}")
            if not self.listed:
                say("no dialogs yet: /new LOGIN starts one")
        elif word == "/open" and arg.isdigit() and 0 < int(arg) <= len(self.listed):
            await self.enter(self.listed[int(arg) - 1].key)
        elif word == "/new" and arg:
            other = await self.find_user(arg)
            if other is None:
                say(f"no user with the login {arg!r}")
                return True
            name = f"{await self.nick(self.client.user_id)} & {await self.nick(other)}"
            key = await self.client.create_dialog(name, members=[other])
            self.names[key] = name
            await self.enter(key)
        elif word == "/history" and self.open:
            await self.enter(self.open)
        elif word == "/send" and arg and self.open:
            await self.send_file(self.open, Path(arg).expanduser())
        elif word == "/get" and len(arg.split(maxsplit=1)) == 2 and arg.split()[0].isdigit():
            number, path = arg.split(maxsplit=1)
            await self.get_file(int(number), Path(path).expanduser())
        elif word.startswith("/"):
            say("unknown command or argument; /help lists the commands")
        elif not line.strip():
            pass
        elif self.open is not None:
            await self.send(self.open, line)
        elif self.last_from is not None:
            await self.send(self.last_from, line)
            say(f"(sent to [{self.names.get(self.last_from, 'new dialog')}], the dialog of the last message; "
                "/open N to choose another)")
        else:
            say("no dialog is open: /dialogs then /open N, or /new LOGIN")
        return True

    async def send(self, dialog: str, text: str) -> None:
        """Send, or keep the line in the outbox when the server cannot be
        reached.  Each line has its own msgkey, so the retry is safe: a send
        that reached the server before the connection dropped is not made twice."""
        self.outbox.append((dialog, secrets.token_hex(16), text))
        await self.flush()

    async def send_file(self, dialog: str, path: Path) -> None:
        """Upload in parts with a progress bar, then send it as a message.
        A drop on the way keeps the upload: the same /send again resumes."""
        if not path.is_file():
            say(f"no file {path}")
            return
        try:
            key = await self.client.upload_file(path, progress=ProgressBar(f"sending {path.name}"))
        except UNSENT:
            say(f"\nthe connection dropped: /send {path} again when it is back continues where it stopped")
            return
        except SessiaError as exc:
            say(f"\nnot sent ({exc.message}): {path.name}")
            return
        await self.client.send_message(dialog, path.name, media=[key])
        say(f"sent {path.name} ({path.stat().st_size} bytes)")

    async def get_file(self, number: int, path: Path) -> None:
        if not 0 < number <= len(self.attachments):
            say("no such attachment: they are numbered as shown, [attachment N]")
            return
        try:
            got = await self.client.download_file(self.attachments[number - 1], path, progress=ProgressBar(f"saving {path.name}"))
        except UNSENT:
            say(f"\nthe connection dropped: /get {number} {path} again continues where it stopped")
            return
        except SessiaError as exc:
            say(f"\nnot saved ({exc.message})")
            return
        say(f"saved {got.path} ({got.size} bytes)")

    async def flush(self, *, reconnected: bool = False) -> None:
        """Send the waiting lines, in order; stop at the first that cannot go."""
        async with self.sending:
            sent = 0
            while self.outbox:
                dialog, msgkey, text = self.outbox[0]
                try:
                    await self.client.send_message(dialog, text, msgkey=msgkey)
                except UNSENT:
                    say(f"not sent yet, the server is unreachable: {len(self.outbox)} line(s) will be sent "
                        "when the connection is back")
                    return
                except SessiaError as exc:
                    say(f"not sent ({exc.message}): {text}")
                else:
                    sent += 1
                self.outbox.pop(0)
            if reconnected and sent:
                say(f"connection back: {sent} waiting line(s) sent")

    async def resend(self) -> None:
        """Each time the connection is back, send what waits."""
        while True:
            await self.back.wait()
            self.back.clear()
            if self.outbox:
                await self.flush(reconnected=True)

    async def enter(self, key: str) -> None:
        self.open = key
        say(f"--- {self.names.get(key, key)} ---")
        for msg in reversed(await self.client.messages(key, take=20)):
            if msg.deleted_at is None:
                await self.show(msg)


def yes(answer: str | None) -> bool:
    return (answer or "").strip().lower() in ("", "y", "yes")


async def log_in(client: client_sdk.Client, keyboard: Keyboard, sessions: Sessions, *,
                 first: asyncio.Future[str | None] | None = None, offer_saved: bool = True) -> bool:
    """Resume a kept session (each is offered, the most recent first), or
    log in / register by password and keep the session.  ``first``: a line
    request already pending, which answers the first question.  False at the
    end of input."""

    def ask(prompt: str, *, secret: bool = False) -> asyncio.Future[str | None]:
        nonlocal first
        if first is not None:
            pending, first = first, None
            say(prompt.rstrip())
            return pending
        return keyboard.ask(prompt, secret=secret)

    if offer_saved:
        for key, saved in sessions.saved():
            answer = await ask(f"continue as {saved['login']}? [Y/n] ")
            if answer is None:
                return False
            if not yes(answer):
                continue
            try:
                await client.login_with_token(saved["token"])
                sessions.keep(client.user_id or 0, saved["login"], saved["token"])
                if key != str(client.user_id):
                    sessions.forget(key)
                return True
            except Unauthorized:
                sessions.forget(key)
                say(f"the session of {saved['login']} has ended: log in again")
                break

    while client.token is None:
        choice = await ask("log in or register? [l/r] ")
        if choice is None:
            return False
        choice = choice.strip().lower()
        try:
            if choice == "r":
                login, email = (await ask("login: ") or "").strip(), (await ask("email: ") or "").strip()
                await client.register(login, email, await ask("password: ", secret=True) or "")
            elif choice == "l":
                login = (await ask("email or login: ") or "").strip()
                await client.login(login, await ask("password: ", secret=True) or "")
        except SessiaError as exc:
            say(f"refused: {exc.message}")
    assert client.token is not None and client.user_id is not None  # set by the login
    me = await client.get_user(client.user_id)
    sessions.keep(client.user_id, me.nickname, client.token)
    return True


async def main(args: argparse.Namespace) -> None:
    sessions = Sessions(args.state.expanduser())
    client = await client_sdk.connect(
        args.host,
        args.port,
        device={"deviceid": sessions.device(), "os": sys.platform, "hostname": socket.gethostname()},
        client={"nameclient": args.client_name, "hashcert": args.client_hash, "version": args.client_version},
        tls=args.tls,
        cafile=args.cafile,
    )
    keyboard = Keyboard(asyncio.get_running_loop())
    async with client:
        if not await log_in(client, keyboard, sessions):
            return
        chat = Chat(client, keyboard, sessions)
        resender = asyncio.create_task(chat.resend())
        pending = keyboard.ask()
        while True:
            stream = await client.events().start()  # subscribed before anything is shown
            say(f"logged in as {await chat.nick(client.user_id)} (id {client.user_id}); /help for the commands")
            listener = asyncio.create_task(chat.listen(stream))
            revoked = asyncio.create_task(chat.revoked.wait())
            quit_chat = False
            while True:
                await asyncio.wait((pending, revoked), return_when=asyncio.FIRST_COMPLETED)
                if not pending.done():  # the session ended: log in again, the next line answers first
                    break
                line = pending.result()
                if line is None:
                    quit_chat = True
                    break
                pending = keyboard.ask()
                try:
                    if not await chat.command(line):
                        quit_chat = True
                        break
                except Unauthorized:
                    await asyncio.wait((revoked,), timeout=2)  # the listener says so, and the chat logs in again
                    if not revoked.done():
                        say("your session has ended: log in again")
                        chat.revoked.set()
                    break
                except (SessiaError, ClientError) as exc:
                    say(f"error: {exc}")
            listener.cancel()
            revoked.cancel()
            if quit_chat:
                break
            chat.revoked.clear()
            chat.nicks.clear()
            chat.names.clear()
            chat.open = chat.last_from = None
            chat.outbox.clear()
            if client.token is not None:  # the SDK drops it only when a resume is refused
                sessions.forget(str(client.user_id))
                client.token = None
            client.user_id = None
            if not client.transport.is_open:
                await client.reconnect()
            if not await log_in(client, keyboard, sessions, first=pending, offer_saved=False):
                break
            pending = keyboard.ask()
        resender.cancel()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="terminal chat on the sessia SDK")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=7788)
    parser.add_argument("--state", type=Path, default=Path("~/.sessia-chat.json"), help="where the session is kept")
    parser.add_argument("--tls", action="store_true", help="connect with TLS (verify the server certificate)")
    parser.add_argument("--cafile", help="CA certificate to verify the server with (self-hosted CA)")
    parser.add_argument("--client-name", default="sessia-chat", help="the build's nameclient")
    parser.add_argument("--client-hash", default="0" * 32, help="the build's hashcert, if the server verifies builds")
    parser.add_argument("--client-version", default="1")
    try:
        asyncio.run(main(parser.parse_args()))
    except KeyboardInterrupt:
        pass
