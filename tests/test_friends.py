"""Friends and the block list end to end: every RequestFrBl operation, every
legal and illegal transition of the relation between two users, paging."""

from __future__ import annotations

import asyncio

import pytest

from client_sdk import Codec, Conflict, Forbidden, NotFound, Unprocessable, UserItem

CANNOT_REQUEST = "you cannot send a request to this user"
NO_SUCH_USER = 2**62  # a valid id that no test database reaches


def ids(contacts: list[UserItem]) -> list[int]:
    return [c.id for c in contacts]


async def lists_of(c) -> dict[str, list[int]]:
    """Everything one user sees of their relations."""
    return {
        "friends": ids(await c.friends()),
        "incoming": ids(await c.incoming_requests()),
        "outgoing": ids(await c.outgoing_requests()),
        "blocked": ids(await c.blocked()),
    }


def only(**kw: list[int]) -> dict[str, list[int]]:
    return {"friends": [], "incoming": [], "outgoing": [], "blocked": [], **kw}


async def befriend(a, b) -> None:
    await a.send_friend_request(b.user_id)
    await b.accept_friend(a.user_id)


# -- the happy paths -----------------------------------------------------------------


async def test_request_then_accept_makes_friends(user):
    alice, bob = await user(), await user()
    assert await alice.send_friend_request(bob.user_id, "met at the conference") == "requested"

    outgoing = await alice.outgoing_requests()
    assert outgoing == [UserItem(bob.user_id, bob.login_name, None, "met at the conference")]
    # The note is alice's own: bob sees who asked, not what alice wrote about him.
    assert await bob.incoming_requests() == [UserItem(alice.user_id, alice.login_name, None, "")]
    assert await lists_of(alice) == only(outgoing=[bob.user_id])
    assert await lists_of(bob) == only(incoming=[alice.user_id])

    await bob.accept_friend(alice.user_id, "alice from the conference")
    assert await alice.friends() == [UserItem(bob.user_id, bob.login_name, None, "met at the conference")]
    assert await bob.friends() == [UserItem(alice.user_id, alice.login_name, None, "alice from the conference")]
    assert await lists_of(alice) == only(friends=[bob.user_id])
    assert await lists_of(bob) == only(friends=[alice.user_id])


async def test_asking_someone_who_asked_you_makes_friends(user):
    alice, bob = await user(), await user()
    assert await alice.send_friend_request(bob.user_id, "a's note") == "requested"
    answer = await bob.call("RequestFrBl", {"operation": "append", "id": alice.user_id, "description": "b's note"})
    assert answer["Status"] == {"code": 200, "message": "Friend request accepted: you are now friends"}
    assert answer["State"] == "friend"
    assert await alice.friends() == [UserItem(bob.user_id, bob.login_name, None, "a's note")]
    assert await bob.friends() == [UserItem(alice.user_id, alice.login_name, None, "b's note")]
    assert await lists_of(alice) == only(friends=[bob.user_id])


async def test_cancel_withdraws_the_request(user):
    alice, bob = await user(), await user()
    await alice.send_friend_request(bob.user_id)
    await alice.cancel_friend_request(bob.user_id)
    assert await lists_of(alice) == only()
    assert await lists_of(bob) == only()
    with pytest.raises(NotFound, match="^no friend request from this user$"):
        await bob.accept_friend(alice.user_id)
    with pytest.raises(NotFound, match="^no friend request to this user$"):
        await alice.cancel_friend_request(bob.user_id)
    # Back to "none": asking again is allowed.
    assert await alice.send_friend_request(bob.user_id) == "requested"


async def test_remove_ends_the_friendship_for_both(user):
    alice, bob = await user(), await user()
    await befriend(alice, bob)
    await bob.remove_friend(alice.user_id)
    assert await lists_of(alice) == only()
    assert await lists_of(bob) == only()
    with pytest.raises(NotFound, match="^not friends with this user$"):
        await alice.remove_friend(bob.user_id)
    assert await alice.send_friend_request(bob.user_id) == "requested"


async def test_update_changes_only_my_note(user):
    alice, bob, carol = await user(), await user(), await user()
    await alice.send_friend_request(bob.user_id, "first")
    await alice.update_friend_note(bob.user_id, "second")  # on my pending request
    assert (await alice.outgoing_requests())[0].note == "second"

    await bob.accept_friend(alice.user_id, "bob's own")
    await alice.update_friend_note(bob.user_id, "third")  # on a friend
    assert (await alice.friends())[0].note == "third"
    assert (await bob.friends())[0].note == "bob's own"
    await alice.update_friend_note(bob.user_id, "")  # an empty description clears it
    assert (await alice.friends())[0].note == ""

    # Someone else's request to me, and a stranger: I have no note to change.
    await carol.send_friend_request(alice.user_id, "carol's")
    for other in (carol, await user()):
        with pytest.raises(NotFound, match="^neither a friend nor a pending request of yours$"):
            await alice.update_friend_note(other.user_id, "x")
    assert (await carol.outgoing_requests())[0].note == "carol's"


async def test_lists_show_the_current_nickname_and_photo(user):
    alice, bob = await user(), await user()
    await alice.send_friend_request(bob.user_id)
    photo = await alice.upload_media(b"\x89PNG\r\n\x1a\n" + b"0" * 32, "png")
    await alice.change_user(nickname="Alice Photo", image_key=photo)
    assert await bob.incoming_requests() == [UserItem(alice.user_id, "Alice Photo", photo, "")]
    # The photo key in a list is downloadable by anyone.
    assert (await bob.get_media(photo)).extension == "png"


# -- illegal transitions ------------------------------------------------------------


async def test_append_refusals(user):
    alice, bob = await user(), await user()
    with pytest.raises(Unprocessable, match="^id: must be another user's id, not your own$"):
        await alice.send_friend_request(alice.user_id)
    with pytest.raises(NotFound, match="^user not found$"):
        await alice.send_friend_request(NO_SUCH_USER)
    await alice.send_friend_request(bob.user_id)
    with pytest.raises(Conflict, match="^friend request already sent$"):
        await alice.send_friend_request(bob.user_id)
    await bob.accept_friend(alice.user_id)
    for asker, other in ((alice, bob), (bob, alice)):
        with pytest.raises(Conflict, match="^already friends with this user$"):
            await asker.send_friend_request(other.user_id)
    assert await lists_of(alice) == only(friends=[bob.user_id])


async def test_accept_refusals(user):
    alice, bob, carol = await user(), await user(), await user()
    with pytest.raises(NotFound, match="^no friend request from this user$"):
        await alice.accept_friend(bob.user_id)
    # My own outgoing request is not one I can accept.
    await alice.send_friend_request(bob.user_id)
    with pytest.raises(NotFound, match="^no friend request from this user$"):
        await alice.accept_friend(bob.user_id)
    with pytest.raises(Unprocessable, match="^id: must be another user's id, not your own$"):
        await alice.accept_friend(alice.user_id)
    with pytest.raises(NotFound, match="^no friend request from this user$"):
        await alice.accept_friend(NO_SUCH_USER)
    await bob.accept_friend(alice.user_id)
    with pytest.raises(Conflict, match="^already friends with this user$"):
        await bob.accept_friend(alice.user_id)
    assert await lists_of(carol) == only()


async def test_cancel_and_remove_refusals(user):
    alice, bob = await user(), await user()
    await alice.send_friend_request(bob.user_id)
    # Bob cannot cancel alice's request (he may only decline by blocking or ignore it)...
    with pytest.raises(NotFound, match="^no friend request to this user$"):
        await bob.cancel_friend_request(alice.user_id)
    # ...and a pending request is not a friendship to remove.
    for c, other in ((alice, bob), (bob, alice)):
        with pytest.raises(NotFound, match="^not friends with this user$"):
            await c.remove_friend(other.user_id)
    await bob.accept_friend(alice.user_id)
    # A friendship is not a request to cancel.
    with pytest.raises(NotFound, match="^no friend request to this user$"):
        await alice.cancel_friend_request(bob.user_id)
    assert await lists_of(alice) == only(friends=[bob.user_id])


@pytest.mark.parametrize(
    ("body", "code", "message"),
    [
        ({"operation": "append"}, 400, "id: field is required"),
        ({"operation": "append", "id": "bob"}, 400, "id: must be an integer"),
        ({"operation": "append", "id": 0}, 422, "id: must be at least 1"),
        ({"operation": "append", "id": -5}, 422, "id: must be at least 1"),
        ({"operation": "append", "id": 2**63}, 422, f"id: must be at most {2**63 - 1}"),
        ({"operation": "append", "id": 1, "description": "x" * 501}, 422, "description: longer than 500 characters"),
        ({"operation": "update", "id": 1}, 400, "description: field is required"),
        ({}, 400, "operation: field is required"),
        ({"operation": 5}, 400, None),
    ],
)
async def test_malformed_bodies(user, body, code, message):
    alice = await user()
    answer = await alice.call("RequestFrBl", body)
    assert answer["Status"]["code"] == code
    if message is not None:
        assert answer["Status"]["message"] == message


async def test_unknown_operation_lists_the_valid_ones(user):
    alice = await user()
    answer = await alice.call("RequestFrBl", {"operation": "befriend", "id": 1})
    assert answer["Status"] == {
        "code": 400,
        "message": "operation: unknown operation 'befriend'; valid operations: append, accept, cancel, remove,"
        " update, getFriend, getIncoming, getOutcoming, addBlock, delBlock, listBlocks",
    }


async def test_original_json_shapes(user):
    """Operation names and field names in any case, numbers as strings, JSON codec."""
    alice, bob = await user(codec=Codec.JSON), await user(codec=Codec.JSON)
    answer = await alice.call("RequestFrBl", {"OPERATION": "Append", "Id": str(bob.user_id), "Description": "hi"})
    assert answer == {"Status": {"code": 200, "message": "Friend request sent"}, "State": "requested"}
    answer = await bob.call("RequestFrBl", {"operation": "getincoming", "Take": "10", "Skip": "0"})
    assert answer == {
        "Status": {"code": 200, "message": "List formed"},
        "Users": [{"Id": alice.user_id, "Nickname": alice.login_name, "Photo": "", "Note": ""}],
    }
    answer = await bob.call("RequestFrBl", {"operation": "accept", "id": alice.user_id})
    assert answer == {"Status": {"code": 200, "message": "Friend request accepted"}, "State": "friend"}
    answer = await alice.call("RequestFrBl", {"operation": "getFriend"})
    assert answer["Users"] == [{"Id": bob.user_id, "Nickname": bob.login_name, "Photo": "", "Note": "hi"}]


# -- the block list ----------------------------------------------------------------------


async def test_block_drops_friendship_and_stops_requests(user):
    alice, bob = await user(), await user()
    await befriend(alice, bob)
    await alice.block(bob.user_id)
    assert await lists_of(alice) == only(blocked=[bob.user_id])
    # Bob's lists never show that alice blocked him.
    assert await lists_of(bob) == only()
    # Neither side can ask the other; both get the same message.
    for asker, other in ((bob, alice), (alice, bob)):
        with pytest.raises(Forbidden, match=f"^{CANNOT_REQUEST}$"):
            await asker.send_friend_request(other.user_id)
    assert await lists_of(bob) == only()
    assert await alice.blocked() == [UserItem(bob.user_id, bob.login_name, None, "")]


@pytest.mark.parametrize("direction", ["mine", "theirs"])
async def test_block_drops_pending_requests_both_ways(user, direction):
    alice, bob = await user(), await user()
    if direction == "mine":
        await alice.send_friend_request(bob.user_id)
    else:
        await bob.send_friend_request(alice.user_id)
    await alice.block(bob.user_id)
    assert await lists_of(alice) == only(blocked=[bob.user_id])
    assert await lists_of(bob) == only()
    with pytest.raises(NotFound):
        await alice.accept_friend(bob.user_id)
    with pytest.raises(NotFound):
        await bob.accept_friend(alice.user_id)


async def test_block_refusals(user):
    alice, bob = await user(), await user()
    with pytest.raises(Unprocessable, match="^id: must be another user's id, not your own$"):
        await alice.block(alice.user_id)
    with pytest.raises(NotFound, match="^user not found$"):
        await alice.block(NO_SUCH_USER)
    with pytest.raises(NotFound, match="^user is not blocked$"):
        await alice.unblock(bob.user_id)
    await alice.block(bob.user_id)
    with pytest.raises(Conflict, match="^user is already blocked$"):
        await alice.block(bob.user_id)
    # Only the blocker can lift a block.
    with pytest.raises(NotFound, match="^user is not blocked$"):
        await bob.unblock(alice.user_id)
    assert await lists_of(alice) == only(blocked=[bob.user_id])


async def test_blocks_are_independent_and_unblock_restores_requests(user):
    alice, bob = await user(), await user()
    await alice.block(bob.user_id)
    await bob.block(alice.user_id)  # the blocked user may block back
    await alice.unblock(bob.user_id)
    # Bob's block still stands, so neither may ask.
    for asker, other in ((bob, alice), (alice, bob)):
        with pytest.raises(Forbidden, match=f"^{CANNOT_REQUEST}$"):
            await asker.send_friend_request(other.user_id)
    await bob.unblock(alice.user_id)
    assert await lists_of(alice) == only()
    # Unblocking does not bring back anything, but requests work again.
    assert await bob.send_friend_request(alice.user_id) == "requested"
    await alice.accept_friend(bob.user_id)
    assert await lists_of(bob) == only(friends=[alice.user_id])


# -- paging ------------------------------------------------------------------------------


async def test_lists_are_paged_in_a_stable_order(user):
    me = await user()
    others = [await user() for _ in range(5)]
    for other in others:
        await other.send_friend_request(me.user_id)
    expected = [o.user_id for o in others]
    assert ids(await me.incoming_requests()) == expected
    assert ids(await me.incoming_requests(take=2)) == expected[:2]
    assert ids(await me.incoming_requests(take=2, skip=2)) == expected[2:4]
    assert ids(await me.incoming_requests(take=2, skip=4)) == expected[4:]
    assert ids(await me.incoming_requests(take=2, skip=5)) == []
    # Friends are ordered by when the friendship began, not by the request.
    for other in reversed(others):
        await me.accept_friend(other.user_id)
    assert ids(await me.friends()) == expected[::-1]
    assert ids(await me.friends(take=3, skip=1)) == expected[::-1][1:4]
    for other in others:
        await me.remove_friend(other.user_id)
        await me.block(other.user_id)
    assert ids(await me.blocked(take=100)) == expected
    await me.unblock(others[0].user_id)
    await me.send_friend_request(others[0].user_id, "n")
    assert await me.outgoing_requests(take=1) == [UserItem(others[0].user_id, others[0].login_name, None, "n")]


async def test_default_page_is_50(user):
    me = await user()
    others = await asyncio.gather(*(user() for _ in range(51)))
    await asyncio.gather(*(me.block(o.user_id) for o in others))
    page = await me.blocked()
    assert len(page) == 50
    assert len(await me.blocked(take=100)) == 51
    rest = await me.blocked(skip=50)
    assert len(rest) == 1
    assert set(ids(page) + ids(rest)) == {o.user_id for o in others}


@pytest.mark.parametrize("operation", ["getFriend", "getIncoming", "getOutcoming", "listBlocks"])
@pytest.mark.parametrize(
    ("paging", "code", "message"),
    [
        ({"take": 0}, 422, "take: must be at least 1"),
        ({"take": 101}, 422, "take: must be at most 100"),
        ({"take": -1}, 422, "take: must be at least 1"),
        ({"skip": -1}, 422, "skip: must be at least 0"),
        ({"skip": 10**15}, 422, f"skip: must be at most {2**31 - 1}"),
        ({"take": "many"}, 400, "take: must be an integer"),
        ({"take": 1.5}, 400, "take: must be an integer"),
    ],
)
async def test_paging_limits(user, operation, paging, code, message):
    alice = await user()
    answer = await alice.call("RequestFrBl", {"operation": operation, **paging})
    assert answer["Status"] == {"code": code, "message": message}


async def test_take_100_is_allowed(user):
    alice = await user()
    answer = await alice.call("RequestFrBl", {"operation": "getFriend", "take": 100, "skip": 0})
    assert answer == {"Status": {"code": 200, "message": "List formed"}, "Users": []}


# -- concurrency ------------------------------------------------------------------------


async def test_asking_each_other_at_once_ends_as_friends(user):
    pairs = [(await user(), await user()) for _ in range(8)]
    results = await asyncio.gather(
        *(c.send_friend_request(other.user_id) for a, b in pairs for c, other in ((a, b), (b, a)))
    )
    # One of each pair made the request, the other completed the friendship.
    for i in range(len(pairs)):
        assert sorted(results[2 * i : 2 * i + 2]) == ["friend", "requested"]
    for a, b in pairs:
        assert await lists_of(a) == only(friends=[b.user_id])
        assert await lists_of(b) == only(friends=[a.user_id])


async def test_racing_accepts_and_block_leave_a_legal_state(user):
    alice, bob = await user(), await user()
    await alice.send_friend_request(bob.user_id)
    outcomes = await asyncio.gather(
        bob.accept_friend(alice.user_id), bob.accept_friend(alice.user_id), return_exceptions=True
    )
    assert sorted(type(o).__name__ for o in outcomes) == ["Conflict", "NoneType"]
    assert await lists_of(alice) == only(friends=[bob.user_id])

    carol, dave = await user(), await user()
    await carol.send_friend_request(dave.user_id)
    outcomes = await asyncio.gather(
        dave.accept_friend(carol.user_id), carol.block(dave.user_id), return_exceptions=True
    )
    # Whatever the order, the block wins and nothing of the friendship is left.
    assert outcomes[1] is None
    assert outcomes[0] is None or isinstance(outcomes[0], NotFound)
    assert await lists_of(carol) == only(blocked=[dave.user_id])
    assert await lists_of(dave) == only()


async def test_operation_without_session_is_refused(connect):
    c = await connect()
    answer = await c.call("RequestFrBl", {"operation": "getFriend"})
    assert answer["Status"] == {"code": 400, "message": "sessia: field is required"}
