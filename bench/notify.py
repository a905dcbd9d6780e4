"""How many LISTEN/NOTIFY signals one PostgreSQL carries: the ceiling of the
default cross-node broker (docs/scaling.md).

    python -m bench.notify [--seconds 5] [--publishers 8] [--payload 200]

Publishers send ``pg_notify`` as fast as they can for a fixed time; one
listener counts what arrives and the delay from send to receipt.  Runs on its
own embedded PostgreSQL in a temporary directory.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time

import asyncpg

from storage.embedded import EmbeddedPostgres


async def run(url: str, seconds: float, publishers: int, payload: int) -> None:
    listener = await asyncpg.connect(url)
    delays: list[float] = []
    received = 0

    def on_notify(_c, _pid, _channel, text: str) -> None:
        nonlocal received
        received += 1
        if received % 10 == 0:
            delays.append(time.perf_counter() - float(text.split("|", 1)[0]))

    await listener.add_listener("bench", on_notify)
    pool = await asyncpg.create_pool(url, min_size=publishers, max_size=publishers)
    pad = "x" * payload
    sent = 0
    deadline = time.perf_counter() + seconds

    async def publish() -> None:
        nonlocal sent
        async with pool.acquire() as conn:
            while time.perf_counter() < deadline:
                await conn.execute("SELECT pg_notify('bench', $1)", f"{time.perf_counter()}|{pad}")
                sent += 1

    start = time.perf_counter()
    await asyncio.gather(*(publish() for _ in range(publishers)))
    elapsed = time.perf_counter() - start
    await asyncio.sleep(1.0)
    print(f"publishers {publishers}, payload {payload} B, {seconds:.0f} s")
    print(f"sent      {sent / elapsed:>10.0f} notifies/s")
    print(f"received  {received / elapsed:>10.0f} notifies/s ({received}/{sent})")
    if delays:
        delays.sort()
        print(f"delay     p50 {statistics.median(delays) * 1000:.2f} ms  p99 {delays[int(len(delays) * 0.99)] * 1000:.2f} ms")
    await pool.close()
    await listener.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--publishers", type=int, default=8)
    parser.add_argument("--payload", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        pg = EmbeddedPostgres(tmp, durable=False)
        url = pg.start()
        try:
            asyncio.run(run(url, args.seconds, args.publishers, args.payload))
        finally:
            pg.stop()


if __name__ == "__main__":
    main()
