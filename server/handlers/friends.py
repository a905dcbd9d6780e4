"""RequestFrBl: friend requests, friends and the block list.

The relation between two users is a small state machine (see
docs/api/friends.md):

    none --append--> outgoing (for the asker) / incoming (for the other)
    incoming --accept, or append back--> friends
    outgoing --cancel--> none        friends --remove--> none
    any --addBlock--> blocked (friendship and requests dropped both ways)

Each operation below reads the relation under the pair lock and either makes
one legal transition or refuses with the precise reason.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from protocol import events as ev
from protocol.answers import UserItem
from protocol.requests import REQUEST_FR_BL
from protocol.requests import friends as ops
from protocol.requests.friends import ListOperation, UserOperation, parse_operation
from protocol.status import Conflict, Forbidden, NotFound, ok
from storage import friends

from ..routes import Call, route

NO_USER = "user not found"
CANNOT_REQUEST = "you cannot send a request to this user"
ALREADY_FRIENDS = "already friends with this user"


@route(REQUEST_FR_BL)
async def request_fr_bl(call: Call) -> dict[str, Any]:
    operation = parse_operation(call.body)
    if operation in ops.LIST_OPERATIONS:
        page = ListOperation.parse(operation, call.body)
        contacts = await LISTS[operation](call.app.db, call.user_id, page.take, page.skip)
        return ok("List formed", Users=[_user_entry(c) for c in contacts])
    req = UserOperation.parse(operation, call.body, call.user_id)
    return await ACTIONS[operation](call, req)


def _user_entry(contact: friends.Contact) -> dict[str, Any]:
    return UserItem(id=contact.id, nickname=contact.nickname, photo=contact.photo_key, note=contact.note).to_wire()


async def append(call: Call, req: UserOperation) -> dict[str, Any]:
    """Ask ``id`` to be friends; if they already asked me, we become friends."""
    async with call.app.changes("friends.append") as ch:
        rel = await friends.locked_relation(ch.db, call.user_id, req.user_id)
        if not rel.user_exists:
            raise NotFound(NO_USER)
        if rel.blocked:
            raise Forbidden(CANNOT_REQUEST)
        if rel.friends:
            raise Conflict(ALREADY_FRIENDS)
        if rel.outgoing:
            raise Conflict("friend request already sent")
        if rel.incoming:
            await friends.make_friends(ch.db, call.user_id, req.user_id, req.note or "")
            await ch.emit((call.user_id, req.user_id), ev.FriendAccepted(call.user_id, req.user_id))
            state = friends.FRIEND
        else:
            await friends.add_request(ch.db, call.user_id, req.user_id, req.note or "")
            await ch.emit((call.user_id, req.user_id), ev.FriendRequest(call.user_id, req.user_id))
            state = friends.REQUESTED
    if state == friends.FRIEND:
        return ok("Friend request accepted: you are now friends", State=state)
    return ok("Friend request sent", State=state)


async def accept(call: Call, req: UserOperation) -> dict[str, Any]:
    """Accept the pending request from ``id``; ``description``, if sent, is my note."""
    async with call.app.changes("friends.accept") as ch:
        rel = await friends.locked_relation(ch.db, call.user_id, req.user_id)
        if rel.friends:
            raise Conflict(ALREADY_FRIENDS)
        if not rel.incoming:
            raise NotFound("no friend request from this user")
        await friends.make_friends(ch.db, call.user_id, req.user_id, req.note or "")
        await ch.emit((call.user_id, req.user_id), ev.FriendAccepted(call.user_id, req.user_id))
    return ok("Friend request accepted", State=friends.FRIEND)


async def cancel(call: Call, req: UserOperation) -> dict[str, Any]:
    """Withdraw my pending request to ``id``."""
    async with call.app.changes("friends.cancel") as ch:
        await friends.lock_pair(ch.db, call.user_id, req.user_id)
        if not await friends.delete_request(ch.db, call.user_id, req.user_id):
            raise NotFound("no friend request to this user")
        await ch.emit((call.user_id, req.user_id), ev.FriendRequestCancelled(call.user_id, req.user_id))
    return ok("Friend request cancelled")


async def remove(call: Call, req: UserOperation) -> dict[str, Any]:
    """Unfriend ``id``: both sides lose the friendship (and their notes)."""
    async with call.app.changes("friends.remove") as ch:
        await friends.lock_pair(ch.db, call.user_id, req.user_id)
        if not await friends.remove_friendship(ch.db, call.user_id, req.user_id):
            raise NotFound("not friends with this user")
        await ch.emit((call.user_id, req.user_id), ev.FriendRemoved(call.user_id, req.user_id))
    return ok("Friend removed")


async def update(call: Call, req: UserOperation) -> dict[str, Any]:
    """Change my private note on a friend or on my pending request to them."""
    async with call.app.changes("friends.update") as ch:
        if not await friends.set_note(ch.db, call.user_id, req.user_id, req.note or ""):
            raise NotFound("neither a friend nor a pending request of yours")
    return ok("Note changed")


async def add_block(call: Call, req: UserOperation) -> dict[str, Any]:
    """Block ``id``: drop friendship and requests both ways, refuse their requests from now on."""
    async with call.app.changes("friends.add_block") as ch:
        rel = await friends.locked_relation(ch.db, call.user_id, req.user_id)
        if not rel.user_exists:
            raise NotFound(NO_USER)
        if rel.i_blocked:
            raise Conflict("user is already blocked")
        await friends.drop_contacts(ch.db, call.user_id, req.user_id)
        await friends.add_block(ch.db, call.user_id, req.user_id)
        # The blocked user learns only what their own lists will show anyway.
        await ch.emit([call.user_id], ev.Blocked(req.user_id))
        if rel.friends:
            await ch.emit([req.user_id], ev.FriendRemoved(call.user_id, req.user_id))
        elif rel.incoming or rel.outgoing:
            asker, other = (req.user_id, call.user_id) if rel.incoming else (call.user_id, req.user_id)
            await ch.emit([req.user_id], ev.FriendRequestCancelled(asker, other))
    return ok("User blocked")


async def del_block(call: Call, req: UserOperation) -> dict[str, Any]:
    """Unblock ``id``.  Nothing else comes back: a dropped friendship stays dropped."""
    async with call.app.changes("friends.del_block") as ch:
        if not await friends.remove_block(ch.db, call.user_id, req.user_id):
            raise NotFound("user is not blocked")
        await ch.emit([call.user_id], ev.Unblocked(req.user_id))
    return ok("User unblocked")


ACTIONS: dict[str, Callable[[Call, UserOperation], Awaitable[dict[str, Any]]]] = {
    ops.APPEND: append,
    ops.ACCEPT: accept,
    ops.CANCEL: cancel,
    ops.REMOVE: remove,
    ops.UPDATE: update,
    ops.ADD_BLOCK: add_block,
    ops.DEL_BLOCK: del_block,
}

LISTS: dict[str, Callable[..., Awaitable[list[friends.Contact]]]] = {
    ops.GET_FRIEND: friends.list_friends,
    ops.GET_INCOMING: friends.list_incoming,
    ops.GET_OUTCOMING: friends.list_outgoing,
    ops.LIST_BLOCKS: friends.list_blocked,
}
