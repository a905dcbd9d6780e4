"""The newest page kept in memory (server/history_cache.py) answers exactly
what the database would: per-reader read marks and hidden messages, and
every change of the dialog's messages, on this node or another, seen by the
next read."""

from __future__ import annotations

import asyncio
import secrets
from datetime import UTC, datetime

import client_sdk
from protocol.events import MessageEdited
from server.history_cache import PageCache, page_bytes
from storage.messages import MessageRow

from .conftest import unique
from .support import TEST_CLIENT


def texts(page) -> list[str]:
    return [m.content for m in page]


async def test_read_marks_are_each_readers_own_on_a_shared_page(user):
    alice, bob, carol = await user(), await user(), await user()
    dialog = await alice.create_dialog("marks", members=[bob.user_id, carol.user_id])
    first = await alice.send_message(dialog, "one")
    await alice.send_message(dialog, "two")
    await bob.messages(dialog)  # the page is now kept
    await bob.mark_read(dialog, first)
    # Alice's own messages: read up to what another member has read.
    assert [(m.content, m.read) for m in await alice.messages(dialog)] == [("two", False), ("one", True)]
    # Bob's and Carol's view of Alice's messages: their own marks.
    assert [(m.content, m.read) for m in await bob.messages(dialog)] == [("two", False), ("one", True)]
    assert [(m.content, m.read) for m in await carol.messages(dialog)] == [("two", False), ("one", False)]


async def test_a_reader_who_hid_a_message_does_not_see_it_and_the_others_still_do(user):
    alice, bob = await user(), await user()
    dialog = await alice.create_dialog("hide", members=[bob.user_id])
    keys = [await alice.send_message(dialog, f"m{i}") for i in range(3)]
    assert texts(await bob.messages(dialog)) == ["m2", "m1", "m0"]
    await bob.hide_message(dialog, keys[1])
    assert texts(await bob.messages(dialog)) == ["m2", "m0"]
    assert texts(await alice.messages(dialog)) == ["m2", "m1", "m0"]


async def test_every_change_of_the_messages_is_seen_by_the_next_read(user):
    alice, bob = await user(), await user()
    dialog = await alice.create_dialog("changes", members=[bob.user_id])
    key = await alice.send_message(dialog, "hello")
    assert texts(await bob.messages(dialog)) == ["hello"]
    await alice.send_message(dialog, "again")
    assert texts(await bob.messages(dialog)) == ["again", "hello"]
    await alice.edit_message(dialog, key, "hello, edited")
    assert texts(await bob.messages(dialog)) == ["again", "hello, edited"]
    await alice.delete_message(dialog, key)
    assert texts(await bob.messages(dialog)) == ["again"]
    # Shorter pages come from the same kept page; longer and later ones from the database.
    assert texts(await bob.messages(dialog, take=1)) == ["again"]
    assert texts(await bob.messages(dialog, take=60)) == ["again"]
    assert texts(await bob.messages(dialog, skip=1)) == []


async def test_a_change_on_another_node_reaches_the_page_kept_here(start_server, new_database):
    url = new_database()
    node_a, node_b = start_server(database_url=url), start_server(database_url=url)
    clients = []

    async def on(node) -> client_sdk.Client:
        c = await client_sdk.connect(node.host, node.port, device={"deviceid": secrets.token_hex(8)},
                                     client=TEST_CLIENT)
        login = unique()
        await c.register(login, f"{login}@example.org", "correct horse battery")
        clients.append(c)
        return c

    try:
        alice, bob = await on(node_a), await on(node_b)
        dialog = await alice.create_dialog("two nodes", members=[bob.user_id])
        key = await alice.send_message(dialog, "before")
        stream = bob.events()
        await stream.start()
        assert texts(await bob.messages(dialog)) == ["before"]  # kept on node B
        await alice.edit_message(dialog, key, "after")
        # Bob's node learns of the edit with its push; the next read shows it.
        while True:
            update = await asyncio.wait_for(stream.__anext__(), 10)
            if isinstance(update.event, MessageEdited):
                break
        assert texts(await bob.messages(dialog)) == ["after"]
    finally:
        for c in clients:
            await c.close()


WHEN = datetime(2026, 1, 1, tzinfo=UTC)


def row(i: int) -> MessageRow:
    return MessageRow(i, f"k{i}", 1, f"m{i}", WHEN, None, None, None, False, (), ())


def test_a_page_read_while_its_dialog_changed_is_not_kept() -> None:
    pages = PageCache(1 << 20)
    version = pages.version(7)
    pages.changed(7)  # a commit landed while the page was being read
    pages.put(7, version, [row(1)])
    assert pages.get(7) is None
    pages.put(7, pages.version(7), [row(2)])
    assert pages.get(7) == [row(2)]
    pages.changed(7)
    assert pages.get(7) is None


def test_forgotten_versions_and_a_clear_still_refuse_a_stale_page() -> None:
    one_page = page_bytes([row(1)])
    pages = PageCache(one_page + one_page // 2)  # room for one page of one message
    old = pages.version(5)
    for dialog in range(2000):  # more changes than it remembers: versions are forgotten
        pages.changed(dialog)
    pages.put(5, old, [row(1)])  # began before dialog 5's change: refused
    assert pages.get(5) is None
    before = pages.version(9)
    pages.clear()
    pages.put(9, before, [row(1)])
    assert pages.get(9) is None
    pages.put(9, pages.version(9), [row(3)])
    pages.put(8, pages.version(8), [row(4)])  # one dialog kept: the least recently read goes
    assert pages.get(9) is None and pages.get(8) == [row(4)]
    assert pages.bytes == one_page


def test_kept_pages_stay_within_their_memory() -> None:
    big = [MessageRow(i, f"k{i}", 1, "x" * 4096, WHEN, None, None, None, False, ("m" * 32,) * 32, tuple(range(32)))
           for i in range(50)]
    pages = PageCache(4 << 20)
    for dialog in range(100):
        pages.put(dialog, pages.version(dialog), big)
    assert pages.bytes <= 4 << 20 and pages.dialogs == (4 << 20) // page_bytes(big)
    assert pages.get(99) is big and pages.get(0) is None  # the least recently read went first
