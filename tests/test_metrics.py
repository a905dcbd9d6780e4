"""Prometheus metrics: scraped over HTTP from a real server while it serves."""

from __future__ import annotations

import asyncio
import re
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from client_sdk.errors import Unauthorized, Unavailable
from protocol.events import FriendRequest
from server.metrics import BUCKETS, Timings, _histogram

from .support import ServerProcess, free_port

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


@pytest.fixture(scope="module")
def metered(start_server) -> ServerProcess:
    """Metrics on a free port; mail goes to a port nobody listens on."""
    return start_server("--metrics-port", "0", "--smtp-url", f"smtp://127.0.0.1:{free_port()}", "--smtp-timeout", "2")


def metrics_address(server: ServerProcess) -> tuple[str, int]:
    for line in server.log:
        match = re.search(r"metrics on http://([\d.]+):(\d+)/metrics", line)
        if match:
            return match.group(1), int(match.group(2))
    raise AssertionError("no metrics address in the log")


async def scrape(server: ServerProcess) -> tuple[str, Samples]:
    host, port = metrics_address(server)

    def get() -> tuple[str, str]:
        with urllib.request.urlopen(f"http://{host}:{port}/metrics", timeout=5) as response:
            return response.headers["Content-Type"], response.read().decode()

    content_type, text = await asyncio.to_thread(get)
    assert content_type.startswith("text/plain")
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return text, samples


def value(samples: Samples, metric: str, **labels: str) -> float:
    return samples.get((metric, frozenset(labels.items())), 0.0)


def test_listener_is_off_by_default_and_on_loopback_when_set(server: ServerProcess, metered: ServerProcess) -> None:
    assert not any("metrics on" in line for line in server.log)
    assert metrics_address(metered)[0] == "127.0.0.1"


async def test_request_counters_and_latency_move(metered: ServerProcess, user, connect) -> None:
    _, before = await scrape(metered)
    alice = await user(target=metered)  # one Registration
    stranger = await connect(target=metered)
    with pytest.raises(Unauthorized):
        await stranger.login(alice.email, "not the password")
    await stranger.call("NoSuchRequest", {})
    await stranger.call("AnotherMadeUpName", {})
    text, after = await scrape(metered)

    def delta(metric: str, **labels: str) -> float:
        return value(after, metric, **labels) - value(before, metric, **labels)

    assert delta("sessia_requests_total", request="Registration", code="200") == 1
    assert delta("sessia_requests_total", request="Auth", code="401") == 1
    # Names no handler serves share one label: clients cannot grow the label set.
    assert delta("sessia_requests_total", request="unknown", code="400") == 2
    assert "NoSuchRequest" not in text
    assert delta("sessia_request_duration_seconds_count", request="Auth") == 1
    # Cumulative buckets, ending at +Inf == count.
    counts = [value(after, "sessia_request_duration_seconds_bucket", request="Auth", le=repr(b)) for b in BUCKETS]
    assert counts == sorted(counts)
    inf = value(after, "sessia_request_duration_seconds_bucket", request="Auth", le="+Inf")
    assert inf == value(after, "sessia_request_duration_seconds_count", request="Auth") >= counts[-1]
    # Argon2 makes a password check take measurable time.
    assert delta("sessia_request_duration_seconds_sum", request="Auth") > 0.001

    assert value(after, "sessia_connections") >= 2
    assert value(after, "sessia_sessions_cached") >= 1
    assert value(after, "sessia_db_pool_size") >= 1
    assert value(after, "sessia_db_pool_max") == 20
    assert 0 <= value(after, "sessia_db_pool_in_use") <= value(after, "sessia_db_pool_size")
    assert delta("sessia_db_seconds_count", name="users.find_for_login") == 1
    assert value(after, "process_cpu_seconds_total") > 0


async def test_push_metrics(metered: ServerProcess, user) -> None:
    alice, bob = await user(target=metered), await user(target=metered)
    stream = await alice.events().start()
    _, before = await scrape(metered)
    assert value(before, "sessia_push_subscriptions") >= 1
    await bob.send_friend_request(alice.user_id)
    update = await asyncio.wait_for(anext(stream), 10)
    assert update.event == FriendRequest(from_id=bob.user_id, to_id=alice.user_id)
    _, after = await scrape(metered)
    assert value(after, "sessia_push_events_total") - value(before, "sessia_push_events_total") >= 1


async def test_mail_failures_counted(metered: ServerProcess, user) -> None:
    alice = await user(target=metered)
    _, before = await scrape(metered)
    with pytest.raises(Unavailable):
        await alice.request_email_code(alice.email)
    _, after = await scrape(metered)
    failures = "sessia_mail_failures_total"
    assert value(after, failures, reason="unavailable") - value(before, failures, reason="unavailable") == 1


def test_histogram_buckets_are_le_bounds() -> None:
    timings = Timings()
    for seconds in (0.0005, 0.0006, 3.0, 60.0):
        timings.observe("t", seconds)
    family = _histogram("x_seconds", "doc", "name", timings.snapshot())
    samples = {(s.name, s.labels.get("le")): s.value for s in family.samples}
    assert samples[("x_seconds_bucket", "0.0005")] == 1  # a bound holds the values equal to it
    assert samples[("x_seconds_bucket", "0.001")] == 2
    assert samples[("x_seconds_bucket", "2.5")] == 2
    assert samples[("x_seconds_bucket", "5.0")] == 3
    assert samples[("x_seconds_bucket", "10.0")] == 3
    assert samples[("x_seconds_bucket", "+Inf")] == samples[("x_seconds_count", None)] == 4
    assert samples[("x_seconds_sum", None)] == pytest.approx(63.0011)
