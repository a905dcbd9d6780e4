"""A thumbnail worker: a child process of the server that turns images into
thumbnails (server/imaging.py), one request at a time, until its stdin closes.

    python -m server.thumb_worker PARENT_PID MEMORY_MIB

Requests and answers are msgpack maps behind a 4-byte big-endian length, on
stdin and stdout.  A request: ``{"size": n, "sides": {tag: pixels}, "caps":
[max_pixels, max_side, max_frames]}`` followed by the image's ``n`` bytes as
they are (packing megabytes into msgpack would copy them on the server's
event loop); an answer: ``{"thumbs": [[tag, extension, width, height, bytes],
...]}`` or ``{"refused": reason}``.

It never outlives the server, however the server ends: the kernel kills it
when its parent dies (``PR_SET_PDEATHSIG``, set first thing; if the parent
died before that, ``getppid`` no longer names it and the worker exits), and an
idle worker also exits when its stdin reaches end of file.  Its address space
is capped (``RLIMIT_AS``), so a decompression bomb that gets past the header
checks fails with ``MemoryError`` inside this process instead of growing the
server.  The time limit is the server's: it kills a worker that takes too long.
"""

from __future__ import annotations

import ctypes
import os
import resource
import signal
import struct
import sys
from typing import Any, BinaryIO

import msgpack

from .imaging import Caps, Refused, make_thumbnails

PR_SET_PDEATHSIG = 1
LENGTH = struct.Struct(">I")


def die_with(parent: int) -> None:
    """Ask the kernel for SIGKILL when the parent dies; exit if it already has."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:
        os._exit(0)


def read_request(stream: BinaryIO) -> tuple[dict[str, Any], bytes] | None:
    """The next request and its image, or None at end of input."""
    head = stream.read(LENGTH.size)
    if len(head) < LENGTH.size:
        return None
    (length,) = LENGTH.unpack(head)
    body = stream.read(length)
    if len(body) < length:
        return None
    request: dict[str, Any] = msgpack.unpackb(body)
    data = stream.read(request["size"])
    if len(data) < request["size"]:
        return None
    return request, data


def write_message(stream: BinaryIO, message: dict[str, Any]) -> None:
    body: bytes = msgpack.packb(message)
    stream.write(LENGTH.pack(len(body)) + body)
    stream.flush()


def answer(request: dict[str, Any], data: bytes, memory_mib: int) -> dict[str, Any]:
    try:
        thumbs = make_thumbnails(data, request["sides"], Caps(*request["caps"]))
    except Refused as exc:
        return {"refused": exc.reason}
    except MemoryError:
        return {"refused": f"image needs more than {memory_mib} MiB to decode"}
    return {"thumbs": [[t.tag, t.extension, t.width, t.height, t.data] for t in thumbs]}


def main(argv: list[str]) -> int:
    parent, memory_mib = int(argv[0]), int(argv[1])
    die_with(parent)
    limit = memory_mib << 20
    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)  # a limit may be lowered, never raised
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    while (request := read_request(stdin)) is not None:
        write_message(stdout, answer(*request, memory_mib))
        del request  # the image's bytes go before the next one is read
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
