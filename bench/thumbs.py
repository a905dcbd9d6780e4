"""Thumbnailing in a thread or in a worker process: the same images through
both, as the server would run them (one at a time, warm).

    python -m bench.thumbs

For each image and each way: wall time, the CPU the calling process spent
(what the server itself would pay), and the longest the event loop waited
for its turn while the image was made (a 1 ms ticker).  The worker figures
include sending the image over the pipe.  docs/security.md quotes a run.
"""

from __future__ import annotations

import asyncio
import io
import os
import time
import zlib
from collections.abc import Awaitable, Callable

from PIL import Image

from protocol.requests.media import THUMB_SIZES
from server.imaging import Caps, make_thumbnails
from server.thumb_pool import ThumbPool


def photo(width: int, height: int, fmt: str) -> bytes:
    """Noise over a gradient: compresses like a photo, not to nothing."""
    grey = Image.linear_gradient("L").resize((width, height))
    noise = Image.effect_noise((width, height), 40)
    out = io.BytesIO()
    Image.merge("RGB", (grey, noise, grey)).save(out, fmt, **({"quality": 90} if fmt == "JPEG" else {}))
    return out.getvalue()


def worst(side: int = 7071) -> bytes:
    """The largest image the caps let through: 50 MP RGBA of zeros, a real PNG."""
    packer = zlib.compressobj(9)
    row = bytes(1 + side * 4)
    idat = b"".join(packer.compress(row) for _ in range(side)) + packer.flush()

    def chunk(kind: bytes, data: bytes) -> bytes:
        return len(data).to_bytes(4, "big") + kind + data + zlib.crc32(kind + data).to_bytes(4, "big")

    ihdr = side.to_bytes(4, "big") * 2 + bytes((8, 6, 0, 0, 0))
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


async def measure(make: Callable[[], Awaitable[object]]) -> tuple[float, float, float]:
    """(wall s, this process's CPU s, longest loop stall ms) of one ``make``."""
    stalls: list[float] = []
    done = asyncio.Event()

    async def ticker() -> None:
        while not done.is_set():
            started = time.perf_counter()
            await asyncio.sleep(0.001)
            stalls.append(time.perf_counter() - started - 0.001)

    tick = asyncio.create_task(ticker())
    await asyncio.sleep(0.02)
    cpu, wall = time.process_time(), time.perf_counter()
    await make()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    done.set()
    await tick
    return wall, cpu, max(stalls) * 1000


async def main() -> None:
    images = {
        "1 MP JPEG": photo(1280, 960, "JPEG"),
        "12 MP JPEG": photo(4000, 3000, "JPEG"),
        "12 MP PNG": photo(4000, 3000, "PNG"),
        "50 MP RGBA PNG": worst(),
    }
    pool = ThumbPool(workers=1, timeout=60, memory_mib=1024)
    started = time.perf_counter()
    await pool.make(lambda: asyncio.sleep(0, images["1 MP JPEG"]), THUMB_SIZES)
    print(f"cores {os.cpu_count()}; first worker start and a 1 MP JPEG: {time.perf_counter() - started:.3f} s")
    print(f"{'image':16} {'bytes':>10}  {'way':7} {'wall s':>7} {'own CPU s':>9} {'loop stall ms':>13}")
    try:
        for name, data in images.items():
            ways: dict[str, Callable[[], Awaitable[object]]] = {
                "thread": lambda data=data: asyncio.to_thread(make_thumbnails, data, THUMB_SIZES, Caps()),
                "process": lambda data=data: pool.make(lambda: asyncio.sleep(0, data), THUMB_SIZES),
            }
            for way, make in ways.items():
                await make()  # warm: caches, allocator
                wall, cpu, stall = await measure(make)
                print(f"{name:16} {len(data):>10}  {way:7} {wall:7.3f} {cpu:9.3f} {stall:13.1f}")
    finally:
        await pool.close()


if __name__ == "__main__":
    asyncio.run(main())
