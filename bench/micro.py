"""Microbenchmarks of the wire path, printed as ns per operation.

    python -m bench.micro            # all
    python -m bench.micro codec      # one

They measure the CPU cost of the pieces every request pays: body codec, frame
decoding, and dispatch with a (cached) session check.  No database involved.
``writes`` measures the floor under every push: one ``send`` of a 300-byte
frame to each of 1,000 loopback connections, drained by another process, as
user and kernel CPU per write (on loopback the kernel's receive path runs in
the sender's time too).
"""

from __future__ import annotations

import asyncio
import os
import resource
import selectors
import socket
import sys
import time
from collections.abc import Callable
from types import SimpleNamespace

from protocol.codecs import Codec, decode_body, encode_body
from protocol.frames import Decoder, FrameKind, encode_request
from server.config import Config
from server.dispatch import Dispatcher
from server.sessions import ClientRegistry, Session, SessionCache, new_token, token_hash

TOKEN = new_token(42)
SESSIA = {
    "tocken": TOKEN,
    "device": {"deviceid": "0fcd6085918843d29cc6d18ede006e82"},
    "client": {"hashcert": "08520331451320871a4e77a60d70dbe2", "nameclient": "RollaDieApp", "version": 1},
}
SEND_BODY = {
    "operation": "add",
    "message": {"infoMessage": {"content": "Hello, how are you doing today?", "pkDialog": "a" * 32}},
    "sessia": SESSIA,
}
ANSWER = {"Status": {"code": 200, "message": "Message sent"}, "msgkey": "f" * 32}


def bench(name: str, fn: Callable[[], object], n: int) -> float:
    for _ in range(min(n // 10, 1000)):
        fn()
    start = time.perf_counter()
    for _ in range(n):
        fn()
    ns = (time.perf_counter() - start) / n * 1e9
    print(f"{name:<44} {ns:>10.0f} ns/op")
    return ns


def codec() -> None:
    for codec in (Codec.MSGPACK, Codec.JSON):
        req = encode_body(codec, SEND_BODY)
        bench(f"codec {codec.name.lower()}: decode request + encode answer",
              lambda req=req, codec=codec: (decode_body(codec, req), encode_body(codec, ANSWER)), 200_000)


def frames() -> None:
    frame = encode_request(7, "SendMessage", SEND_BODY)
    batch = frame * 64
    decoder = Decoder(frozenset((FrameKind.REQUEST,)))
    per_batch = bench("frame decode: 64 pipelined frames per feed", lambda: decoder.feed(batch), 20_000)
    print(f"{'  = per frame':<44} {per_batch / 64:>10.0f} ns/op")
    bench("frame decode: one frame per feed", lambda: decoder.feed(frame), 200_000)
    bench("frame encode: request", lambda: encode_request(7, "SendMessage", SEND_BODY), 200_000)


def dispatch() -> None:
    """Auth-by-token through the dispatcher: decode, session check from the
    cache, handler, encode.  The cheapest complete request the server has."""
    config = Config(allow_any_client=False)
    clients = ClientRegistry(allow_any=False)
    clients._known[(SESSIA["client"]["nameclient"], SESSIA["client"]["hashcert"])] = 1  # type: ignore[index]
    sessions = SessionCache(db=None, clients=clients, max_size=10)  # type: ignore[arg-type]
    sessions.add(Session(1, 42, SESSIA["device"]["deviceid"], token_hash(TOKEN)))  # type: ignore[index]
    app = SimpleNamespace(config=config, clients=clients, sessions=sessions)
    conn = SimpleNamespace(peer="bench")
    dispatcher = Dispatcher(app)  # type: ignore[arg-type]
    decoder = Decoder(frozenset((FrameKind.REQUEST,)))
    (frame,) = decoder.feed(encode_request(9, "Auth", {"sessia": SESSIA}))
    loop = asyncio.new_event_loop()
    n = 50_000

    async def run() -> None:
        for _ in range(n):
            await dispatcher.dispatch(frame, conn)  # type: ignore[arg-type]

    loop.run_until_complete(dispatcher.dispatch(frame, conn))  # type: ignore[arg-type]
    start = time.perf_counter()
    loop.run_until_complete(run())
    ns = (time.perf_counter() - start) / n * 1e9
    print(f"{'dispatch: Auth by token (cached session)':<44} {ns:>10.0f} ns/op")
    loop.close()


def writes(connections: int = 1000, rounds: int = 100, size: int = 300) -> None:
    listener = socket.create_server(("127.0.0.1", 0), backlog=connections)
    readers, writers = [], []
    for _ in range(connections):
        readers.append(socket.create_connection(listener.getsockname()))
        writers.append(listener.accept()[0])
    listener.close()
    for s in readers + writers:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    child = os.fork()
    if child == 0:  # the readers: drain every connection until each has all its bytes
        sel = selectors.DefaultSelector()
        for s in readers:
            s.setblocking(False)
            sel.register(s, selectors.EVENT_READ)
        left = connections * rounds * size
        while left > 0:
            for key, _ in sel.select(5):
                sock = key.fileobj
                assert isinstance(sock, socket.socket)
                try:
                    left -= len(sock.recv(1 << 16))
                except BlockingIOError:
                    pass
        os._exit(0)
    frame = b"x" * size
    before = resource.getrusage(resource.RUSAGE_SELF)
    for _ in range(rounds):
        for s in writers:
            s.send(frame)
        time.sleep(0.005)  # one "message" at a time, as a push fan-out at inflight 1
    after = resource.getrusage(resource.RUSAGE_SELF)
    os.waitpid(child, 0)
    for s in readers + writers:
        s.close()
    n = connections * rounds
    user = (after.ru_utime - before.ru_utime) / n * 1e9
    kernel = (after.ru_stime - before.ru_stime) / n * 1e9
    print(f"{'send 300 B to one of 1,000 loopback sockets':<44} {user + kernel:>10.0f} ns/op"
          f"  ({kernel:.0f} in the kernel)")


ALL = {"codec": codec, "frames": frames, "dispatch": dispatch, "writes": writes}


def main(argv: list[str]) -> int:
    chosen = argv or list(ALL)
    unknown = [a for a in chosen if a not in ALL]
    if unknown:
        print(f"unknown benchmark(s): {', '.join(unknown)}; choose from {', '.join(ALL)}", file=sys.stderr)
        return 2
    print(f"python {sys.version.split()[0]}")
    for name in chosen:
        ALL[name]()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
