"""Files in parts and by range: throughput by file size, and the server's memory.

    python -m bench.load media                          # 1 MiB, 64 MiB, 1 GiB; 2 GiB for memory
    python -m bench.load media --sizes 1,64 --big-mib 256 --readers 4
    python -m bench.load media --media-store local      # the blob store (others: the server's choices)

One own server (bench/servers.py), one run, side by side:

- the limit: the same number of bytes copied through a plain loopback socket
  (one thread sends 1 MiB buffers, one receives and drops them);
- upload: ``client.upload_file`` of a file on disk (SHA-256 computed first, as
  by default; four parts in flight), until the key is answered (the server has
  hashed the file and put it in the blob store);
- download: ``client.download_file`` of that key to disk (four 1 MiB ranges in
  flight), until the file is whole.

Then the memory bounds of docs/api/media.md, the server's RSS growth measured
(peak minus the settled value before): one client uploads a generated file of
``--big-mib`` (2 GiB) in parts; ``--readers`` clients (10) download the
largest file of ``--sizes`` by ranges at once; one client pipelines
``--pipelined`` (1,000) 1 MiB ranges and reads nothing until the server's
memory has settled.  Traffic is loopback only.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import client_sdk
from client_sdk.transport import CLIENT_ACCEPTS
from protocol.codecs import decode_body
from protocol.frames import Decoder, Frame, encode_request

from . import report as rep
from .servers import OwnServer

MiB = 1 << 20
DEVICE = {"deviceid": "bench-media", "os": "Linux"}
CLIENT = {"nameclient": "bench-media", "hashcert": "0" * 32, "version": 1}
PASSWORD = "correct horse battery"
BOUND_MIB = 64


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench.load media", description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", default="1,64,1024", help="file sizes in MiB, comma-separated (default %(default)s)")
    p.add_argument("--big-mib", type=int, default=2048, help="the upload whose memory is measured (default %(default)s)")
    p.add_argument("--readers", type=int, default=10, help="clients downloading at once (default %(default)s)")
    p.add_argument("--pipelined", type=int, default=1000, help="ranges pipelined and left unread (default %(default)s)")
    p.add_argument("--parallel", type=int, default=4, help="parts or ranges in flight per transfer (default %(default)s)")
    p.add_argument("--media-store", default="local",
                   help="the server's blob store: local (the default) or another the server offers,"
                   " set up with --server-arg (default %(default)s)")
    p.add_argument("--no-durable", dest="durable", action="store_false",
                   help="PostgreSQL and staged parts without fsync (figures are then not the durable ones)")
    p.add_argument("--server-arg", action="append", default=[], help="extra flag for the server (repeatable)")
    p.add_argument("--keep", action="store_true", help="keep the server's temporary data directory")
    p.add_argument("--json", metavar="FILE", help="also write the report as JSON")
    return p


# -- the limit: a plain loopback socket ------------------------------------------------------


def loopback_mib_s(size: int) -> float:
    """MiB/s of ``size`` bytes sent through a loopback TCP socket and dropped."""
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    got = 0

    def receive() -> None:
        nonlocal got
        conn, _ = listener.accept()
        buffer = bytearray(MiB)
        with conn:
            while n := conn.recv_into(buffer):
                got += n

    receiver = threading.Thread(target=receive)
    receiver.start()
    chunk = os.urandom(MiB)
    started = time.perf_counter()
    with socket.create_connection(("127.0.0.1", port)) as sender:
        left = size
        while left:
            n = min(left, MiB)
            sender.sendall(chunk[:n] if n < MiB else chunk)
            left -= n
    receiver.join()
    seconds = time.perf_counter() - started
    listener.close()
    assert got == size
    return size / MiB / seconds


# -- files ------------------------------------------------------------------------------------


def generated(part: int, length: int, salt: bytes) -> bytes:
    """Part ``part`` of a generated file: different in every part and every run
    (the store keeps one copy per content, so a rerun must not find its bytes)."""
    word = salt + part.to_bytes(8, "big")
    return (word * (length // len(word) + 1))[:length]


def write_file(path: Path, size: int, salt: bytes) -> None:
    with open(path, "wb") as f:
        for part in range(0, size, MiB):
            f.write(generated(part // MiB, min(MiB, size - part), salt))


class PeakRss:
    """The server's largest RSS (KiB) while the block runs, sampled every 20 ms."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, rep.rss_kib(self.pid))
            time.sleep(0.02)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def settled_kib(pid: int, quiet: float = 1.0, timeout: float = 30.0) -> int:
    """RSS once it has not grown for ``quiet`` seconds (the peak seen)."""
    deadline = time.monotonic() + timeout
    peak = rep.rss_kib(pid)
    still = time.monotonic()
    while time.monotonic() < deadline and time.monotonic() - still < quiet:
        time.sleep(0.1)
        now = rep.rss_kib(pid)
        if now > peak + 512:
            still = time.monotonic()
        peak = max(peak, now)
    return peak


# -- the run ----------------------------------------------------------------------------------


async def connect(server: OwnServer, email: str | None = None) -> tuple[client_sdk.Client, str]:
    """A client logged in as ``email``, or as a new account; and its email."""
    client = await client_sdk.connect(server.host, server.port, device=DEVICE, client=CLIENT, timeout=120)
    if email is None:
        name = "bench" + secrets.token_hex(4)
        email = f"{name}@example.org"
        await client.register(name, email, PASSWORD)
    else:
        await client.login(email, PASSWORD)
    return client, email


async def throughput(server: OwnServer, args: argparse.Namespace, sizes: list[int], work: Path) -> tuple[list[dict[str, Any]], str, str]:
    """Upload and download each size; returns the rows, the largest file's key and its owner's email."""
    client, email = await connect(server)
    rows = []
    key = ""
    try:
        for size in sizes:
            salt = secrets.token_bytes(8)
            source = work / f"up-{size}.zip"
            await asyncio.to_thread(write_file, source, size, salt)
            limit = await asyncio.to_thread(loopback_mib_s, size)
            started = time.perf_counter()
            key = await client.upload_file(source, parallel=args.parallel)
            up = time.perf_counter() - started
            target = work / f"down-{size}.zip"
            started = time.perf_counter()
            await client.download_file(key, target, parallel=args.parallel)
            down = time.perf_counter() - started
            same = await asyncio.to_thread(_same_file, source, target)
            rows.append({
                "size_mib": round(size / MiB, 3),
                "loopback_mib_s": round(limit, 1),
                "upload_mib_s": round(size / MiB / up, 1),
                "download_mib_s": round(size / MiB / down, 1),
                "upload_share": round(size / MiB / up / limit, 3),
                "download_share": round(size / MiB / down / limit, 3),
                "identical": same,
            })
            print(f"  {_row(rows[-1])}", file=sys.stderr)
            source.unlink()
            target.unlink()
    finally:
        await client.close()
    return rows, key, email


def _same_file(a: Path, b: Path) -> bool:
    with open(a, "rb") as fa, open(b, "rb") as fb:
        while True:
            x, y = fa.read(MiB), fb.read(MiB)
            if x != y:
                return False
            if not x:
                return True


async def big_upload(server: OwnServer, args: argparse.Namespace) -> dict[str, Any]:
    """A generated file of --big-mib sent in parts (no file on the client's disk)."""
    assert server.pid is not None
    client, _ = await connect(server)
    size = args.big_mib * MiB
    salt = secrets.token_bytes(8)
    try:
        before = await asyncio.to_thread(settled_kib, server.pid)
        ticket = await client.start_upload(size, "zip")
        todo = iter(range(ticket.parts))
        part_size = ticket.part_size

        async def send() -> None:
            for part in todo:
                length = min(part_size, size - part * part_size)
                await client.upload_part(ticket.upload, part, generated(part, length, salt))

        started = time.perf_counter()
        with PeakRss(server.pid) as peak:
            await asyncio.gather(*(send() for _ in range(args.parallel)))
            await client.finish_upload(ticket.upload)
        seconds = time.perf_counter() - started
    finally:
        await client.close()
    return {"size_mib": args.big_mib, "mib_s": round(args.big_mib / seconds, 1),
            "rss_growth_mib": round((peak.peak - before) / 1024, 1)}


async def readers(server: OwnServer, args: argparse.Namespace, key: str, email: str, size: int) -> dict[str, Any]:
    """--readers clients download the whole file ``key`` by ranges at once (bytes dropped, counted)."""
    assert server.pid is not None
    clients = [(await connect(server, email))[0] for _ in range(args.readers)]
    try:
        before = await asyncio.to_thread(settled_kib, server.pid)

        async def read(client: client_sdk.Client) -> int:
            got = 0
            offsets = iter(range(0, size, MiB))

            async def worker() -> None:
                nonlocal got
                for offset in offsets:
                    answer = await client.get_media_range(key, offset)
                    got += len(answer.data)  # after the await: ``got +=`` of an awaited value would lose updates

            await asyncio.gather(*(worker() for _ in range(args.parallel)))
            return got

        started = time.perf_counter()
        with PeakRss(server.pid) as peak:
            counts = await asyncio.gather(*(read(c) for c in clients))
        seconds = time.perf_counter() - started
    finally:
        for c in clients:
            await c.close()
    assert all(n == size for n in counts), counts
    return {"readers": args.readers, "size_mib": round(size / MiB), "total_mib_s": round(sum(counts) / MiB / seconds, 1),
            "rss_growth_mib": round((peak.peak - before) / 1024, 1)}


async def unread_ranges(server: OwnServer, args: argparse.Namespace, key: str, email: str, size: int) -> dict[str, Any]:
    """One raw connection pipelines --pipelined 1 MiB ranges and reads nothing until RSS settles."""
    assert server.pid is not None
    client, _ = await connect(server, email)
    sessia = client.sessia()
    await client.close()
    count = args.pipelined
    spots = max(1, size // MiB)
    requests = b"".join(
        encode_request(i, "GetMedia", {"hash": key, "offset": (i % spots) * MiB, "limit": MiB, "sessia": sessia})
        for i in range(1, count + 1)
    )
    before = await asyncio.to_thread(settled_kib, server.pid)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect((server.host, server.port))
    try:
        await asyncio.to_thread(sock.sendall, requests)
        held = await asyncio.to_thread(settled_kib, server.pid, 2.0)
        answered = await asyncio.to_thread(_read_frames, sock, count)
    finally:
        sock.close()
    return {"pipelined": count, "answered_200": answered, "rss_growth_mib": round((held - before) / 1024, 1)}


def _read_frames(sock: socket.socket, count: int) -> int:
    decoder = Decoder(CLIENT_ACCEPTS, 64 * MiB)
    sock.settimeout(120)
    ok = 0
    seen = 0
    while seen < count:
        data = sock.recv(MiB)
        if not data:
            break
        for event in decoder.feed(data):
            assert isinstance(event, Frame), event
            seen += 1
            ok += decode_body(event.codec, event.body)["Status"]["code"] == 200
    return ok


def _row(r: dict[str, Any]) -> str:
    return (f"{r['size_mib']:>7} MiB  loopback {r['loopback_mib_s']:>7.1f} MiB/s  upload {r['upload_mib_s']:>6.1f} MiB/s"
            f" ({r['upload_share']:.0%})  download {r['download_mib_s']:>6.1f} MiB/s ({r['download_share']:.0%})"
            f"  {'identical' if r['identical'] else 'DIFFERENT'}")


def render(report: dict[str, Any]) -> str:
    lines = [f"media, store {report['media_store']}, durable {report['durable']}:"]
    lines += [f"  {_row(r)}" for r in report["throughput"]]
    big, many, unread = report["big_upload"], report["readers"], report["unread"]
    bound = report["bound_mib"]

    def verdict(grew: float) -> str:
        return "within" if grew < bound else "OVER"

    lines.append(f"  memory (bound {bound} MiB of RSS growth):")
    lines.append(f"    upload of {big['size_mib']} MiB in parts at {big['mib_s']} MiB/s: +{big['rss_growth_mib']} MiB"
                 f" ({verdict(big['rss_growth_mib'])})")
    lines.append(f"    {many['readers']} readers of a {many['size_mib']} MiB file by ranges at once,"
                 f" {many['total_mib_s']} MiB/s in all: +{many['rss_growth_mib']} MiB ({verdict(many['rss_growth_mib'])})")
    lines.append(f"    {unread['pipelined']} ranges pipelined, unread: +{unread['rss_growth_mib']} MiB"
                 f" ({verdict(unread['rss_growth_mib'])}), then {unread['answered_200']} answered 200")
    return "\n".join(lines)


async def amain(args: argparse.Namespace) -> dict[str, Any]:
    sizes = [int(float(s) * MiB) for s in args.sizes.split(",") if s.strip()]
    extra = ["--media-quota", "0", "--max-media-size", str(max([*sizes, args.big_mib * MiB]))]
    if args.media_store != "local":
        extra += ["--media-store", args.media_store]
    args.server_arg = [*extra, *args.server_arg]
    server = OwnServer(args)
    work = Path(tempfile.mkdtemp(prefix="sessia-media-"))
    try:
        print("starting a server with an embedded PostgreSQL...", file=sys.stderr)
        await asyncio.to_thread(server.start)
        print("throughput (upload_file / download_file beside a plain loopback socket):", file=sys.stderr)
        rows, key, email = await throughput(server, args, sizes, work)
        print("memory...", file=sys.stderr)
        big = await big_upload(server, args)
        many = await readers(server, args, key, email, sizes[-1])
        unread = await unread_ranges(server, args, key, email, sizes[-1])
        return {"media_store": args.media_store, "durable": args.durable, "throughput": rows, "big_upload": big,
                "readers": many, "unread": unread, "bound_mib": BOUND_MIB, "machine": rep.machine()}
    except BaseException:
        if server.log:
            print("server log (last lines):\n" + "\n".join(server.log[-20:]), file=sys.stderr)
        raise
    finally:
        await asyncio.to_thread(server.stop)
        for leftover in work.iterdir():
            leftover.unlink()
        work.rmdir()


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    try:
        import uvloop

        runner = uvloop.run
    except ImportError:  # pragma: no cover
        runner = asyncio.run
    report = runner(amain(args))
    print(render(report))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    return 0
