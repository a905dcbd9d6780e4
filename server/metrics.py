"""Prometheus metrics, served over HTTP when ``--metrics-port`` is set.

Recording must not slow the request path, so nothing here takes a lock or
builds a Prometheus object per request: the dispatcher, the database and the
mailer count into plain dicts and lists (``RequestStats``, ``Timings``, a few
integers), and ``SessiaCollector`` turns them into metric families only when
Prometheus scrapes.  Gauges (connections, sessions, subscriptions, pool) are
read at scrape time from the objects that already hold them.

The HTTP listener is ``prometheus_client``'s, in a daemon thread: a scrape
never runs on the event loop.  It reads the event loop's structures without
locking; each read is a single C-level operation (``len``, ``dict.copy``,
``list(...)``) that the GIL keeps whole, so a scrape sees each number
consistent, though two numbers may be a few microseconds apart.

The list of metrics is in docs/operations.md.
"""

from __future__ import annotations

import logging
from bisect import bisect_left
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, GCCollector, PlatformCollector, ProcessCollector, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from wsgiref.simple_server import WSGIServer

    from .app import App

log = logging.getLogger("sessia.metrics")

#: Histogram bucket bounds in seconds (Prometheus ``le``), from 0.5 ms to 10 s.
BUCKETS: tuple[float, ...] = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_INF = len(BUCKETS)  # index of the +Inf bucket
_SUM = _INF + 1  # index of the running sum
#: Label for request names no handler serves: clients choose names, and an
#: unbounded label set would let them grow the server's memory.
UNKNOWN_REQUEST = "unknown"


class Timings:
    """Latency histograms by name: ``name -> [count per bucket..., +Inf, sum]``.
    Names must come from a bounded set (request or transaction names in code)."""

    __slots__ = ("_by_name",)

    def __init__(self) -> None:
        self._by_name: dict[str, list[float]] = {}

    def observe(self, name: str, seconds: float) -> None:
        row = self._by_name.get(name)
        if row is None:
            row = self._by_name[name] = [0] * (_SUM + 1)
        row[bisect_left(BUCKETS, seconds)] += 1
        row[_SUM] += seconds

    def snapshot(self) -> dict[str, list[float]]:
        """A copy safe to read from another thread."""
        return {name: list(row) for name, row in self._by_name.copy().items()}


class RequestStats:
    """Requests by name and Status code, and their latency by name.

    One row per request name, made up front for every route (plus
    ``UNKNOWN_REQUEST``), so that ``record`` is a single dict lookup and a
    few list and dict updates: it runs once per request."""

    __slots__ = ("_rows", "_unknown")

    def __init__(self, known_names: Iterable[str]) -> None:
        self._rows: dict[str, tuple[dict[int, int], list[float]]] = {
            name: ({}, [0] * (_SUM + 1)) for name in (*known_names, UNKNOWN_REQUEST)
        }
        self._unknown = self._rows[UNKNOWN_REQUEST]

    def record(self, name: str, code: int, seconds: float) -> None:
        codes, latency = self._rows.get(name) or self._unknown
        codes[code] = codes.get(code, 0) + 1
        latency[bisect_left(BUCKETS, seconds)] += 1
        latency[_SUM] += seconds

    def counts(self) -> dict[tuple[str, int], int]:
        """(name, code) -> requests; a copy safe to read from another thread."""
        return {
            (name, code): count
            for name, (codes, _) in self._rows.copy().items()
            for code, count in codes.copy().items()
        }

    def latency(self) -> dict[str, list[float]]:
        """Histogram rows of the names seen so far (see ``Timings``)."""
        return {name: list(latency) for name, (_, latency) in self._rows.copy().items() if any(latency)}


def _histogram(name: str, doc: str, label: str, rows: dict[str, list[float]]) -> HistogramMetricFamily:
    family = HistogramMetricFamily(name, doc, labels=[label])
    for key, row in sorted(rows.items()):
        cumulative, buckets = 0.0, []
        for bound, count in zip((*BUCKETS, float("inf")), row[:_SUM], strict=True):
            cumulative += count
            buckets.append(("+Inf" if bound == float("inf") else repr(bound), cumulative))
        family.add_metric([key], buckets, sum_value=row[_SUM])
    return family


def _gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, value=value)


class SessiaCollector(Collector):
    """Reads the server's counters when Prometheus scrapes (see the module doc)."""

    def __init__(self, app: App) -> None:
        self.app = app

    def collect(self) -> Iterator[Metric]:
        app = self.app
        stats: RequestStats = app.dispatcher.stats
        requests = CounterMetricFamily(
            "sessia_requests", "Requests answered, by request name and Status code", labels=["request", "code"]
        )
        for (name, code), count in sorted(stats.counts().items()):
            requests.add_metric([name, str(code)], count)
        yield requests
        yield _histogram(
            "sessia_request_duration_seconds",
            "Time from a decoded request frame to its encoded answer, by request name",
            "request",
            stats.latency(),
        )
        yield _gauge("sessia_connections", "Open client connections", len(app.connections))
        yield _gauge("sessia_sessions_cached", "Authenticated sessions held in the in-memory cache", len(app.sessions))
        yield _gauge("sessia_push_subscriptions", "Connections subscribed to push events", app.push.subscriptions)
        yield CounterMetricFamily("sessia_push_events", "Events pushed to subscribed connections", value=app.push.pushed)
        pages = app.push.pages
        yield _gauge("sessia_history_cache_bytes", "Memory of the newest pages kept (about; --history-cache-mib)",
                     pages.bytes)
        yield CounterMetricFamily("sessia_history_cache_hits", "Newest pages served from memory", value=pages.hits)
        yield CounterMetricFamily("sessia_history_cache_misses", "Newest pages read from the database",
                                  value=pages.misses)
        thumbnails = app.thumbnails
        made = CounterMetricFamily("sessia_thumbnails", "Thumbnail work: made (an image decoded into its thumbnails),"
                                   " refused (an image refused, and remembered), stored (a request answered from"
                                   " what was stored: a thumbnail or a remembered refusal)",
                                   labels=["outcome"])
        for outcome, count in (("made", thumbnails.made), ("refused", thumbnails.refused),
                               ("stored", thumbnails.stored)):
            made.add_metric([outcome], count)
        yield made
        yield _gauge("sessia_thumb_workers", "Thumbnail worker processes running (--thumb-workers at most)",
                     thumbnails.pool.running)
        yield CounterMetricFamily("sessia_thumb_worker_kills", "Thumbnail workers killed for exceeding --thumb-timeout",
                                  value=thumbnails.pool.timed_out)
        pool = app.db.pool
        yield _gauge("sessia_db_pool_size", "Open connections in the database pool", pool.get_size())
        yield _gauge("sessia_db_pool_in_use", "Pool connections lent out right now", pool.get_size() - pool.get_idle_size())
        yield _gauge("sessia_db_pool_max", "Largest size of the database pool (--db-pool-size)", pool.get_max_size())
        yield _histogram(
            "sessia_db_seconds",
            "Named database operations (transactions and single statements), including the wait for a connection",
            "name",
            app.db.timings.snapshot(),
        )
        failures = CounterMetricFamily("sessia_mail_failures", "Mail that could not be sent, by reason", labels=["reason"])
        for reason, count in sorted(app.mailer.failures.copy().items()):
            failures.add_metric([reason], count)
        yield failures


class MetricsServer:
    """The HTTP listener; ``port`` is the bound one (useful with port 0)."""

    def __init__(self, app: App, host: str, port: int) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(SessiaCollector(app))
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        GCCollector(registry=self.registry)
        self._httpd: WSGIServer
        self._httpd, self._thread = start_http_server(port, addr=host, registry=self.registry)
        self.host = host
        self.port: int = self._httpd.server_port

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(5)
