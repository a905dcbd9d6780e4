"""Memory one connection can make the server hold, measured on the real server.

A client that asks and never reads must not turn the server's memory into its
own buffer: answers built and not yet written stay within
``--max-connection-buffer`` per connection (docs/operations.md), the server
stops reading and starting that connection's requests meanwhile, and nothing is
lost: once the client reads, every answer arrives, whole.  These tests read
the server process's resident memory (``VmRSS``) while a client misbehaves.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
from pathlib import Path

from client_sdk.transport import CLIENT_ACCEPTS
from protocol.codecs import decode_body
from protocol.frames import Decoder, Frame, FrameKind, encode_request

from .support import TEST_CLIENT, ServerProcess

MiB = 1 << 20
PASSWORD = "correct horse battery"


def rss(server: ServerProcess) -> int:
    """The server process's resident memory in bytes."""
    assert server.proc is not None
    for line in Path(f"/proc/{server.proc.pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def settled_rss(server: ServerProcess, *, quiet: float = 2.0, timeout: float = 30.0) -> int:
    """The server's RSS once it has stopped growing for ``quiet`` seconds (or
    after ``timeout``): what a client that stopped reading keeps it holding."""
    deadline = time.monotonic() + timeout
    peak = rss(server)
    still_since = time.monotonic()
    while time.monotonic() < deadline and time.monotonic() - still_since < quiet:
        time.sleep(0.1)
        now = rss(server)
        if now > peak + MiB // 2:
            still_since = time.monotonic()
        peak = max(peak, now)
    return peak


def non_reader(server: ServerProcess) -> socket.socket:
    """A raw connection with a small receive buffer, so the kernel takes
    little of what the server writes and the rest stays with the server."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect((server.host, server.port))
    return sock


def frames_from(sock: socket.socket, count: int, timeout: float = 60.0) -> list[Frame]:
    """Read until ``count`` frames have arrived (or the server closes)."""
    decoder = Decoder(CLIENT_ACCEPTS, 64 << 20)
    sock.settimeout(timeout)
    got: list[Frame] = []
    while len(got) < count:
        data = sock.recv(1 << 20)
        if not data:
            break
        for event in decoder.feed(data):
            assert isinstance(event, Frame), event
            got.append(event)
    return got


async def test_pipelined_downloads_a_client_never_reads_stay_within_a_few_mib(start_server, tmp_path) -> None:
    """300 pipelined GetMedia of one 1 MiB file, the answers left unread: the
    server holds a few MiB for that connection, not 300 copies of the file;
    when the client reads, all 300 answers arrive, each the whole file."""
    import client_sdk

    server = start_server()
    owner = await client_sdk.connect(server.host, server.port, device={"deviceid": "mem-owner"}, client=TEST_CLIENT)
    try:
        await owner.register("memowner", "memowner@example.org", PASSWORD)
        data = os.urandom(MiB)
        key = await owner.upload_media(data, "zip")
        for _ in range(3):  # warm: the allocator has seen a download or two
            assert (await owner.get_media(key)).data == data
        sessia = owner.sessia()
    finally:
        await owner.close()

    count = 300
    requests = b"".join(
        encode_request(i, "GetMedia", {"hash": key, "sessia": sessia}) for i in range(1, count + 1)
    )
    before = await asyncio.to_thread(settled_rss, server, quiet=0.5)
    sock = await asyncio.to_thread(non_reader, server)
    try:
        await asyncio.to_thread(sock.sendall, requests)
        held = await asyncio.to_thread(settled_rss, server) - before
        # 300 answers are 300 MiB: without a bound the server holds them all.
        assert held < 24 * MiB, f"server RSS grew by {held / MiB:.0f} MiB for one connection"

        got = await asyncio.to_thread(frames_from, sock, count)
    finally:
        sock.close()
    assert sorted(f.request_id for f in got) == list(range(1, count + 1))
    for frame in got:
        assert frame.kind == FrameKind.RESPONSE
        answer = decode_body(frame.codec, frame.body)
        assert answer["Status"]["code"] == 200 and answer["BytesBase64"] == data
