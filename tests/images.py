"""Images for the thumbnail tests, made with Pillow as the tests run (no
stored fixtures), and hostile ones written byte by byte."""

from __future__ import annotations

import io
import os
import re
import struct
import zlib
from pathlib import Path

from PIL import Image

from .support import ServerProcess

#: Pillow's format name and save options for each image extension.
SAVE: dict[str, tuple[str, dict[str, object]]] = {
    "png": ("PNG", {}),
    "jpg": ("JPEG", {"quality": 90}),
    "jpeg": ("JPEG", {"quality": 90}),
    "gif": ("GIF", {}),
    "webp": ("WEBP", {"quality": 90}),
    "bmp": ("BMP", {}),
}
RED, BLUE = (220, 20, 20), (20, 20, 220)


def halves(width: int, height: int, mode: str = "RGB") -> Image.Image:
    """Left half red, right half blue: where each half ends up tells how the
    picture was turned.  In RGBA the right half is transparent."""
    im = Image.new(mode, (width, height), RED + ((255,) if mode == "RGBA" else ()))
    im.paste(BLUE + ((0,) if mode == "RGBA" else ()), (width // 2, 0, width, height))
    return im


def encode(im: Image.Image, ext: str, **options: object) -> bytes:
    fmt, defaults = SAVE[ext]
    out = io.BytesIO()
    im.save(out, fmt, **{**defaults, **options})
    return out.getvalue()


def decode(data: bytes) -> Image.Image:
    im = Image.open(io.BytesIO(data))
    im.load()
    return im


def noisy(width: int, height: int) -> Image.Image:
    """A picture that compresses like a photo (not to nothing)."""
    return Image.frombytes("RGB", (width, height), os.urandom(width * height * 3))


def close(pixel: tuple[int, ...], colour: tuple[int, int, int], slack: int = 40) -> bool:
    return all(abs(a - b) <= slack for a, b in zip(pixel[:3], colour, strict=True))


# -- hostile images, written by hand --------------------------------------------------------


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_of_zeros(width: int, height: int, *, colour_type: int = 0) -> bytes:
    """A whole, valid PNG of ``width`` x ``height`` black pixels: a real
    decompression bomb (a few hundred KB that decode to ``width * height``
    pixels).  colour_type 0 is grey (1 byte a pixel), 6 RGBA (4)."""
    channels = {0: 1, 2: 3, 6: 4}[colour_type]
    row = bytes(1 + width * channels)  # filter byte 0, then the pixels
    packer = zlib.compressobj(9)
    parts = [packer.compress(row) for _ in range(height)]
    parts.append(packer.flush())
    ihdr = struct.pack(">IIBBBBB", width, height, 8, colour_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", b"".join(parts)) + _chunk(b"IEND", b"")


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width`` x ``height`` and whose pixels are
    a few bytes: what a huge-dimension attack sends."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + _chunk(
        b"IEND", b"")


def jpeg_header_claiming(width: int, height: int) -> bytes:
    """A real small JPEG with its frame header (SOF0) rewritten to claim
    ``width`` x ``height``."""
    data = bytearray(encode(noisy(16, 16), "jpg"))
    sof = data.index(b"\xff\xc0")
    struct.pack_into(">HH", data, sof + 5, height, width)
    return bytes(data)


def png_with_bad_chunk() -> bytes:
    """A real PNG with one byte of its pixel data flipped: the chunk's CRC no
    longer matches."""
    data = bytearray(encode(noisy(64, 64), "png"))
    idat = data.index(b"IDAT")
    data[idat + 20] ^= 0xFF
    return bytes(data)


def gif_of_frames(count: int) -> bytes:
    """A GIF of ``count`` 1x1 frames (15 bytes each)."""
    screen = b"GIF89a" + struct.pack("<HHBBB", 1, 1, 0x80, 0, 0) + b"\x00\x00\x00\xff\xff\xff"
    frame = b"\x2c" + struct.pack("<HHHHB", 0, 0, 1, 1, 0) + b"\x02\x02\x44\x01\x00"
    return screen + frame * count + b";"


# -- the worker processes of a server -------------------------------------------------------


def thumb_workers(server: ServerProcess) -> list[int]:
    """Pids of the thumbnail workers started by ``server`` (found by the
    parent pid on their command line: still found after the server died)."""
    assert server.proc is not None
    wanted = f"server.thumb_worker\0{server.proc.pid}\0"
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().decode(errors="replace")
            state = (entry / "stat").read_text()
        except OSError:
            continue
        if wanted in cmdline and not re.match(r"\d+ \(.*\) [ZX]", state):
            found.append(int(entry.name))
    return found


def peak_rss_mib(pid: int) -> float:
    """The most memory ``pid`` has held (VmHWM), in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmHWM for {pid}")
