"""Thumbnails of one image, made with Pillow: plain blocking code, no asyncio.

It runs only inside a thumbnail worker process (server/thumb_worker.py), never
in the server's own process: decoding an image someone else chose is the
riskiest thing the server does with input, so it happens where a time limit
can kill it and an address-space limit caps its memory.

Before a single pixel is decoded, the header alone must pass the caps of
``Caps``: pixels, the length of each side and the number of frames.  Only the
five formats media uploads allow are opened (``Image.open(formats=...)``), so
no other decoder Pillow carries is reachable.  A JPEG is decoded at a reduced
scale (``Image.draft``) when the thumbnails are much smaller than the photo,
which makes a 12-megapixel photo about eight times cheaper.

What comes out: for every size asked, the image fitted into a square of that
side (aspect ratio kept, never enlarged), turned upright by its EXIF
orientation, without metadata (no GPS position leaves with a thumbnail),
as JPEG when it is opaque and PNG when it has transparency.  An animated
image gives its first frame.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Mapping
from dataclasses import dataclass

from PIL import GifImagePlugin, Image, ImageOps, UnidentifiedImageError

#: The formats media uploads allow (protocol/requests/media.py), as Pillow names them.
FORMATS = ("PNG", "JPEG", "GIF", "WEBP", "BMP")
JPEG_QUALITY = 85


@dataclass(frozen=True, slots=True)
class Caps:
    """What an image's header must stay within before it is decoded."""

    #: width x height: 50 MP is a 8660 x 5773 photo, larger than phone cameras
    #: take; decoded as RGBA it is 200 MB.
    max_pixels: int = 50_000_000
    #: each side: a 20000 x 2 strip is few pixels but no picture
    max_side: int = 20_000
    #: frames of an animated GIF, PNG or WebP (only the first is used, but
    #: counting thousands of frames is itself work an attacker could ask for)
    max_frames: int = 1_000


@dataclass(frozen=True, slots=True)
class Thumbnail:
    tag: str
    extension: str
    width: int
    height: int
    data: bytes


class Refused(Exception):
    """The image cannot be thumbnailed; ``reason`` says why, in words a
    client can be shown (no file paths, no Pillow internals).  ``lasting``:
    the image itself is at fault, and asking again would only repeat the
    work (False for a worker that crashed: that may be the machine's fault)."""

    def __init__(self, reason: str, *, lasting: bool = True) -> None:
        self.reason = reason
        self.lasting = lasting
        super().__init__(reason)


def make_thumbnails(data: bytes, sides: Mapping[str, int], caps: Caps) -> list[Thumbnail]:
    """One thumbnail per ``sides`` entry (tag -> longest side in pixels).

    ``Refused`` for anything that is not a whole, decodable image within
    ``caps``; any other exception is a bug."""
    # Pillow's own bomb check, at our cap: it refuses at open an image of more
    # than twice this many pixels; check_header refuses the rest by the header.
    Image.MAX_IMAGE_PIXELS = caps.max_pixels
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data), formats=FORMATS) as im:
                check_header(im, caps)
                if im.format == "JPEG":
                    # Decode at 1/2, 1/4 or 1/8 scale while that still leaves
                    # at least the largest side asked for.
                    largest = max(sides.values())
                    im.draft("RGB", (largest, largest))
                im.seek(0)
                im.load()
                picture = upright(im)
                picture = flatten(picture)
    except Refused:
        raise
    except Image.DecompressionBombError:
        raise Refused(f"image has more than {caps.max_pixels} pixels") from None
    except UnidentifiedImageError:
        raise Refused("not an image in a known format (png, jpeg, gif, webp, bmp)") from None
    except (OSError, SyntaxError, ValueError, EOFError, IndexError, TypeError, KeyError):
        # Pillow's words for a broken file: "image file is truncated", "broken
        # PNG file", "cannot identify ...", a bad chunk CRC (SyntaxError) ...
        raise Refused("image is truncated or corrupt") from None
    made: list[Thumbnail] = []
    for tag, side in sorted(sides.items(), key=lambda kv: -kv[1]):
        # Largest first, in place (the full-size pixels are not needed after
        # it); each smaller size from the one before: a 160 px thumbnail made
        # from the 640 px one looks the same and costs a fraction.
        if made:
            picture = picture.copy()
        picture.thumbnail((side, side), Image.Resampling.LANCZOS, reducing_gap=3.0)
        made.append(encode(picture, tag))
    return made


def check_header(im: Image.Image, caps: Caps) -> None:
    """Refuse by the header alone: nothing is decoded yet."""
    width, height = im.size
    if width < 1 or height < 1:
        raise Refused("image has no pixels")
    if width > caps.max_side or height > caps.max_side:
        raise Refused(f"image is {width}x{height}: more than {caps.max_side} pixels on a side")
    if width * height > caps.max_pixels:
        raise Refused(f"image is {width}x{height}: more than {caps.max_pixels} pixels")
    if frames_up_to(im, caps.max_frames + 1) > caps.max_frames:
        raise Refused(f"image has more than {caps.max_frames} frames")


def frames_up_to(im: Image.Image, limit: int) -> int:
    """The image's frame count, counting no further than ``limit``.

    PNG and WebP state the count in their headers; a GIF must be walked frame
    by frame, and Pillow's ``n_frames`` walks all of them (1.5 s for a 15 MB
    GIF of a million 1x1 frames), so GIFs are counted here with Pillow's own
    step that skips the pixels, stopping at ``limit``."""
    if not isinstance(im, GifImagePlugin.GifImageFile):
        return int(getattr(im, "n_frames", 1))
    count = 1
    try:
        while count < limit:
            im._seek(count, False)
            count += 1
    except EOFError:
        pass
    im.seek(0)
    return count


def upright(im: Image.Image) -> Image.Image:
    """The first frame turned by its EXIF orientation (in place: a copy of
    50 MP would double the memory a bomb may take)."""
    ImageOps.exif_transpose(im, in_place=True)
    return im


def flatten(im: Image.Image) -> Image.Image:
    """RGB or L for an opaque picture, RGBA for one with transparency that is
    actually used (an alpha channel that is everywhere 255 is dropped)."""
    if im.mode in ("RGBA", "LA", "PA") or "transparency" in im.info:
        rgba = im if im.mode == "RGBA" else im.convert("RGBA")
        alpha = rgba.getextrema()[-1]  # per band; no copy of the alpha channel
        if isinstance(alpha, tuple) and alpha[0] < 255:
            return rgba
        return rgba.convert("RGB")
    if im.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        # 16-bit and float greyscale: scale to 8 bits instead of clipping.
        return im.convert("I").point(lambda v: v * (1 / 256)).convert("L")
    if im.mode in ("L", "RGB"):
        return im
    return im.convert("RGB")


def encode(small: Image.Image, tag: str) -> Thumbnail:
    out = io.BytesIO()
    if small.mode == "RGBA":
        small.save(out, "PNG", optimize=False)
        extension = "png"
    else:
        small.save(out, "JPEG", quality=JPEG_QUALITY, optimize=True)
        extension = "jpg"
    return Thumbnail(tag, extension, small.width, small.height, out.getvalue())
