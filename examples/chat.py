"""A small terminal chat on the sessia SDK.

    .venv/bin/python examples/chat.py                 # against `make run` (127.0.0.1:7788)
    .venv/bin/python examples/chat.py --host chat.example.org --port 7788 --tls

The first start asks to register or log in; the session (token and device id)
is kept in ~/.sessia-chat.json (``--state``) and resumed at the next start.
Type /help for the commands; any other line is sent to the open dialog, and
new messages appear as they arrive.
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
from pathlib import Path

CHECKOUT = Path(__file__).resolve().parent.parent
if (CHECKOUT / "client_sdk" / "__init__.py").exists():  # run from a checkout: use its SDK
    sys.path.insert(0, str(CHECKOUT))

import client_sdk  # noqa: E402
from client_sdk import ClientError, DialogItem, MessageItem, SessiaError, Unauthorized  # noqa: E402
from protocol.events import NewMessage  # noqa: E402

HELP = """commands:
  /dialogs          list my dialogs          /open N      open dialog N of the list
  /new USERID       start a dialog with a user and open it
  /history          the open dialog's last messages
  /me               my user id               /logout      log out and quit
  /quit             quit (stay logged in)    anything else: send to the open dialog"""


def say(text: str) -> None:
    print(text, flush=True)


class Chat:
    def __init__(self, client: client_sdk.Client) -> None:
        self.client = client
        self.listed: list[DialogItem] = []
        self.names: dict[str, str] = {}  # dialog key -> name
        self.nicks: dict[int, str] = {}
        self.open: str | None = None

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
        say(f"{where}{msg.created_at.astimezone():%H:%M} {await self.nick(msg.author_id)}: {msg.content}")

    async def listen(self, stream: client_sdk.EventStream) -> None:
        """Print every new message from others as it arrives (the stream
        reconnects by itself; it ends only if the session was revoked)."""
        try:
            async for update in stream:
                event = update.event
                if isinstance(event, NewMessage) and event.item.author_id != self.client.user_id:
                    if event.dialog_key not in self.names:
                        await self.refresh()
                    await self.show(event.item, event.dialog_key)
        except (SessiaError, ClientError) as exc:
            say(f"live updates stopped: {exc}")

    async def refresh(self) -> None:
        self.listed = await self.client.dialogs()
        self.names.update((d.key, d.name or "(no name)") for d in self.listed)

    async def command(self, line: str) -> bool:
        """Run one input line; False to quit."""
        word, _, arg = line.partition(" ")
        if word == "/quit":
            return False
        if word == "/logout":
            await self.client.logout()
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
                say("no dialogs yet: /new USERID starts one")
        elif word == "/open" and arg.strip().isdigit() and 0 < int(arg) <= len(self.listed):
            await self.enter(self.listed[int(arg) - 1].key)
        elif word == "/new" and arg.strip().isdigit():
            other = int(arg)
            name = f"{await self.nick(self.client.user_id)} & {await self.nick(other)}"
            key = await self.client.create_dialog(name, members=[other])
            self.names[key] = name
            await self.enter(key)
        elif word == "/history" and self.open:
            await self.enter(self.open)
        elif word.startswith("/"):
            say("unknown command or argument; /help lists the commands")
        elif self.open is None:
            say("no dialog is open: /dialogs then /open N, or /new USERID")
        elif line.strip():
            await self.client.send_message(self.open, line)
        return True

    async def enter(self, key: str) -> None:
        self.open = key
        say(f"--- {self.names.get(key, key)} ---")
        for msg in reversed(await self.client.messages(key, take=20)):
            if msg.deleted_at is None:
                await self.show(msg)


def read_lines(loop: asyncio.AbstractEventLoop, queue: asyncio.Queue[str | None]) -> None:
    """stdin in a thread: the event loop keeps printing while the user types."""
    for line in sys.stdin:
        loop.call_soon_threadsafe(queue.put_nowait, line.rstrip("\n"))
    loop.call_soon_threadsafe(queue.put_nowait, None)


async def log_in(client: client_sdk.Client, state: dict, path: Path) -> None:
    """Resume the saved session, or register / log in by password and save it."""
    if state.get("token"):
        try:
            await client.login_with_token(state["token"])
            return
        except Unauthorized:
            say("the saved session has ended: log in again")
    async def ask(prompt: str) -> str:
        return await asyncio.to_thread(input, prompt)

    while client.token is None:
        choice = (await ask("log in or register? [l/r] ")).strip().lower()
        try:
            if choice == "r":
                login, email = (await ask("login: ")).strip(), (await ask("email: ")).strip()
                await client.register(login, email, await asyncio.to_thread(getpass.getpass, "password: "))
            elif choice == "l":
                email = (await ask("email or login: ")).strip()
                await client.login(email, await asyncio.to_thread(getpass.getpass, "password: "))
        except SessiaError as exc:
            say(f"refused: {exc.message}")
    state["token"] = client.token
    save(state, path)


def save(state: dict, path: Path) -> None:
    path.touch(0o600)  # the token is a password: readable by its owner only
    path.write_text(json.dumps(state))


async def main(args: argparse.Namespace) -> None:
    path = args.state.expanduser()
    state = json.loads(path.read_text()) if path.exists() else {}
    state.setdefault("device", secrets.token_hex(16))  # the token is bound to this id
    client = await client_sdk.connect(
        args.host,
        args.port,
        device={"deviceid": state["device"], "os": sys.platform, "hostname": socket.gethostname()},
        client={"nameclient": args.client_name, "hashcert": args.client_hash, "version": args.client_version},
        tls=args.tls,
        cafile=args.cafile,
    )
    async with client:
        await log_in(client, state, path)
        chat = Chat(client)
        stream = await client.events().start()  # subscribed before anything is shown
        say(f"logged in as {await chat.nick(client.user_id)} (id {client.user_id}); /help for the commands")
        listener = asyncio.create_task(chat.listen(stream))
        lines: asyncio.Queue[str | None] = asyncio.Queue()
        threading.Thread(target=read_lines, args=(asyncio.get_running_loop(), lines), daemon=True).start()
        while (line := await lines.get()) is not None:
            try:
                if not await chat.command(line):
                    break
            except (SessiaError, ClientError) as exc:
                say(f"error: {exc}")
        listener.cancel()
        if client.token is None:  # logged out
            state.pop("token", None)
            save(state, path)


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
