"""Hostile images asked for thumbnails: refused with 422 at bounded cost,
while the server keeps answering everyone else; the worker processes that
decode them are bounded in number, time and memory, and never outlive the
server (a clean stop or a kill -9)."""

from __future__ import annotations

import asyncio
import os
import signal
import time

import pytest

from client_sdk import Unprocessable

from .images import (
    encode,
    gif_of_frames,
    jpeg_header_claiming,
    noisy,
    peak_rss_mib,
    png_header_only,
    png_of_zeros,
    png_with_bad_chunk,
    thumb_workers,
)
from .support import ServerProcess
from .test_memory import rss
from .test_metrics import scrape, value


@pytest.fixture(scope="module")
def guarded(start_server) -> ServerProcess:
    """One worker, default limits, metrics on."""
    return start_server("--metrics-port", "0", "--thumb-workers", "1")


async def counters(server: ServerProcess) -> dict[str, float]:
    _, samples = await scrape(server)
    out = {outcome: value(samples, "sessia_thumbnails_total", outcome=outcome)
           for outcome in ("made", "refused", "stored")}
    out["kills"] = value(samples, "sessia_thumb_worker_kills_total")
    return out


def status(answer: dict) -> tuple[int, str]:
    return answer["Status"]["code"], answer["Status"]["message"]


HOSTILE = {
    "bomb": (lambda: png_of_zeros(10_000, 10_000), "png",
             "no thumbnail: image is 10000x10000: more than 50000000 pixels"),
    "huge-header": (lambda: png_header_only(100_000, 100_000), "png",
                    "no thumbnail: image has more than 50000000 pixels"),
    "huge-jpeg-header": (lambda: jpeg_header_claiming(9_000, 9_000), "jpg",
                         "no thumbnail: image is 9000x9000: more than 50000000 pixels"),
    "long-side": (lambda: png_header_only(25_000, 10), "png",
                  "no thumbnail: image is 25000x10: more than 20000 pixels on a side"),
    "frames": (lambda: gif_of_frames(5_000), "gif", "no thumbnail: image has more than 1000 frames"),
    "bad-chunk": (png_with_bad_chunk, "png", "no thumbnail: image is truncated or corrupt"),
    "truncated-jpeg": (lambda: encode(noisy(1000, 1000), "jpg")[:100_000], "jpg",
                       "no thumbnail: image is truncated or corrupt"),
    "truncated-png": (lambda: encode(noisy(500, 500), "png")[:300_000], "png",
                      "no thumbnail: image is truncated or corrupt"),
    "magic-only": (lambda: b"\x89PNG\r\n\x1a\n" + os.urandom(1000), "png",
                   "no thumbnail: not an image in a known format (png, jpeg, gif, webp, bmp)"),
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
async def test_hostile_images_are_refused_once_and_remembered(user, guarded, name):
    make, ext, message = HOSTILE[name]
    alice = await user(target=guarded)
    key = await alice.upload_media(make(), ext)  # it passed the magic check: stored as sent
    before = await counters(guarded)
    for size in ("s", "m", "s"):
        answer = await alice.call("GetMedia", {"hash": key, "thumb": size})
        assert status(answer) == (422, message)
    after = await counters(guarded)
    # Decoded once; the two later requests were answered from the stored refusal.
    assert (after["refused"], after["made"], after["stored"]) == (
        before["refused"] + 1, before["made"], before["stored"] + 2)
    with pytest.raises(Unprocessable, match="^no thumbnail: "):
        await alice.get_thumbnail(key)
    assert (await alice.get_media(key)).extension == ext  # the file itself stays downloadable
    assert guarded.alarms() == []


async def test_the_worst_image_the_caps_let_through_costs_bounded_time_and_memory(user, guarded):
    """50 million RGBA pixels (a 190 KB PNG that decodes to 200 MB): made, in
    bounded time, in the worker's memory, while the server answers others."""
    alice, bob = await user(target=guarded), await user(target=guarded)
    key = await alice.upload_media(png_of_zeros(7071, 7071, colour_type=6), "png")
    small = await bob.upload_media(encode(noisy(64, 64), "png"), "png")
    await bob.get_thumbnail(small, "s")  # a worker is running, warm
    (worker,) = thumb_workers(guarded)
    server_before = rss(guarded)

    async def others() -> list[float]:
        waits = []
        while not thumb.done():
            started = time.perf_counter()
            await bob.get_media(small)
            waits.append(time.perf_counter() - started)
            await asyncio.sleep(0.02)
        return waits

    started = time.perf_counter()
    thumb = asyncio.ensure_future(alice.get_thumbnail(key, "m"))
    waits = await others()
    made = await thumb
    took = time.perf_counter() - started
    assert (made.width, made.height, made.extension) == (640, 640, "png")
    worker_peak = peak_rss_mib(worker)
    server_growth = (rss(guarded) - server_before) / (1 << 20)
    print(f"\nworst image: {took:.2f} s, worker peak RSS {worker_peak:.0f} MiB, server RSS +{server_growth:.1f} MiB,"
          f" {len(waits)} other requests meanwhile, slowest {max(waits) * 1000:.0f} ms")
    assert took < 10  # --thumb-timeout: the worker would have been killed
    assert worker_peak < 1024  # --thumb-memory-mib
    assert server_growth < 32  # the pixels were never in the server
    assert len(waits) >= 3 and max(waits) < 1.0


async def test_a_burst_of_new_thumbnails_takes_at_most_the_workers(user, guarded):
    alice = await user(target=guarded)
    keys = [await alice.upload_media(encode(noisy(1500, 1000), "png"), "png") for _ in range(6)]
    burst = asyncio.ensure_future(asyncio.gather(*(alice.get_thumbnail(k, "m") for k in keys)))
    most = 0
    while not burst.done():
        most = max(most, len(thumb_workers(guarded)))
        await asyncio.sleep(0.01)
    assert len(await burst) == 6
    assert most == 1  # --thumb-workers 1: the burst queued


async def test_an_image_over_the_time_limit_is_refused_and_its_worker_killed(user, start_server):
    server = start_server("--metrics-port", "0", "--thumb-workers", "1", "--thumb-timeout", "0.3")
    alice = await user(target=server)
    slow = await alice.upload_media(png_of_zeros(7071, 7071, colour_type=6), "png")  # about 2 s of work
    fine = await alice.upload_media(encode(noisy(300, 200), "png"), "png")
    await alice.get_thumbnail(fine, "s")
    (worker,) = thumb_workers(server)
    answer = await alice.call("GetMedia", {"hash": slow, "thumb": "s"})
    assert status(answer) == (422, "no thumbnail: image could not be decoded within 0.3 s")
    assert not os.path.exists(f"/proc/{worker}")  # killed (and reaped): its core is free
    assert (await counters(server))["kills"] == 1
    # The refusal is remembered; other images get a new worker.
    assert status(await alice.call("GetMedia", {"hash": slow, "thumb": "m"}))[0] == 422
    other = await alice.upload_media(encode(noisy(200, 300), "jpg"), "jpg")
    assert (await alice.get_thumbnail(other, "s")).height == 160
    assert thumb_workers(server) != [worker]


async def test_an_image_over_the_memory_limit_is_refused(user, start_server):
    server = start_server("--thumb-workers", "1", "--thumb-memory-mib", "200")
    alice = await user(target=server)
    big = await alice.upload_media(png_of_zeros(7071, 7071, colour_type=6), "png")  # 200 MB decoded
    answer = await alice.call("GetMedia", {"hash": big, "thumb": "s"})
    assert status(answer) == (422, "no thumbnail: image needs more than 200 MiB to decode")
    fine = await alice.upload_media(encode(noisy(300, 200), "bmp"), "bmp")
    assert (await alice.get_thumbnail(fine, "s")).width == 160  # the same worker goes on
    assert server.alarms() == []


@pytest.mark.parametrize("how", ["stop", "kill -9"])
async def test_workers_never_outlive_the_server(user, start_server, how):
    server = start_server("--thumb-workers", "2")
    alice = await user(target=server)
    heavy = [await alice.upload_media(png_of_zeros(side, side, colour_type=6), "png") for side in (7000, 7071)]
    busy = asyncio.ensure_future(asyncio.gather(*(alice.call("GetMedia", {"hash": key, "thumb": "s"})
                                                  for key in heavy), return_exceptions=True))

    def decoding() -> list[int]:
        """Workers holding over 100 MiB: long past reading their pipe."""
        found = []
        for pid in thumb_workers(server):
            try:
                if peak_rss_mib(pid) > 100:
                    found.append(pid)
            except OSError:
                pass
        return found

    deadline = time.monotonic() + 10
    while len(decoding()) < 2 and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    workers = decoding()
    assert len(workers) == 2
    ended = time.monotonic()
    if how == "stop":
        assert await asyncio.to_thread(server.stop) == 0
    else:
        await asyncio.to_thread(server.stop, signal.SIGKILL)
    while thumb_workers(server) and time.monotonic() < ended + 5:
        await asyncio.sleep(0.01)
    assert thumb_workers(server) == []
    if how == "kill -9":
        # Killed by the kernel with their parent (PR_SET_PDEATHSIG), in the
        # middle of decoding: not seconds later, when they finish and find
        # their pipe closed.
        assert time.monotonic() - ended < 1.0
    await busy


async def test_a_worker_that_crashes_is_not_held_against_the_image(user, connect, start_server):
    """A memory limit too small for the worker itself: it dies on every
    image.  Each request is refused, but none is remembered: fixed settings
    (or a machine no longer short of memory) thumbnail the same image."""
    server = start_server("--metrics-port", "0", "--thumb-workers", "1", "--thumb-memory-mib", "16")
    alice = await user(target=server)
    key = await alice.upload_media(encode(noisy(300, 200), "png"), "png")
    for _ in range(2):
        answer = await alice.call("GetMedia", {"hash": key, "thumb": "s"})
        assert status(answer) == (422, "no thumbnail: image could not be decoded")
    assert (await counters(server))["refused"] == 0
    assert any("a thumbnail worker failed" in line for line in server.log)
    # The same data and database, a memory limit the worker can live with:
    database_url = server.args[server.args.index("--database-url") + 1]
    server.stop()
    fixed = start_server("--thumb-workers", "1", database_url=database_url, data_dir=server.data_dir)
    again = await connect(target=fixed)
    await again.login(alice.email, alice.password)
    assert (await again.get_thumbnail(key, "s")).width == 160
