"""CreateDialog, ChangeDialog, KickUser, GetDialogs, GetUsersDialog, and the
dialog listing of GetMedia (``dialog_media``, called by the media handler).

Who may do what (spec decision 7): the creator owns the dialog; the owner and
admins change it and remove members; anyone may leave.  To a non-member a
dialog does not exist (404), except that a public dialog can be joined.
"""

from __future__ import annotations

import secrets
from typing import Any

from protocol.answers import DialogItem, MediaItem
from protocol.events import DialogChanged, DialogCreated, MemberKicked, MembersAdded
from protocol.requests import CHANGE_DIALOG, CREATE_DIALOG, GET_DIALOGS, GET_USERS_DIALOG, KICK_USER
from protocol.requests.dialogs import (
    ChangeDialog,
    CreateDialog,
    DialogMedia,
    GetDialogs,
    GetUsersDialog,
    KickUser,
)
from protocol.status import Forbidden, NotFound, Unprocessable, ok
from storage import dialogs as dialog_store
from storage import friends, media
from storage import messages as message_store
from storage.db import Database, Transaction

from ..changes import Change
from ..routes import Call, route

DIALOG_NOT_FOUND = "dialog not found"


def new_dialog_key() -> str:
    """Opaque and unguessable: knowing a key grants nothing, but it should not
    tell how many dialogs exist or when one was made."""
    return secrets.token_hex(16)


async def member_of(call: Call, key: str) -> tuple[int, str]:
    """(dialog id, role) of the caller in dialog ``key``; 404 for a non-member
    exactly as for a dialog that does not exist."""
    found = await dialog_store.membership(call.app.db, key, call.user_id)
    if found is None:
        raise NotFound(DIALOG_NOT_FOUND)
    return found


async def check_users_exist(db: Database, user_ids: tuple[int, ...], field: str) -> None:
    unknown = await dialog_store.unknown_users(db, user_ids)
    if unknown:
        raise NotFound(f"{field}: no user with id {', '.join(map(str, unknown))}")


async def check_no_blocks(tx: Transaction, user_id: int, others: tuple[int, ...]) -> None:
    """Nobody is put into a dialog with a user they blocked or who blocked
    them, by either of them: a group is no back door around a block.  The
    refusal does not say who blocked whom."""
    blocked = await friends.blocked_among(tx, user_id, others)
    if blocked:
        raise Forbidden(f"cannot start a dialog with user {blocked[0]}: one of you has blocked the other")


async def check_photo(db: Database, user_id: int, key: str) -> None:
    """A dialog photo is a media key the caller uploaded, or one already shown
    publicly (another dialog's or a profile photo).  A key the caller may not
    download is answered as one that does not exist (as GetMedia does)."""
    row = await media.visible_to(db, key, user_id)
    if row is None:
        raise NotFound(f"dialog.photo: media {key!r} not found")
    if row.owner_id != user_id and not await dialog_store.is_public_photo(db, key):
        raise Unprocessable("dialog.photo: not your upload; upload the picture with Media first")


@route(CREATE_DIALOG)
async def create_dialog(call: Call) -> dict[str, Any]:
    req = CreateDialog.parse(call.body)
    others = tuple(u for u in req.members if u != call.user_id)
    async with call.app.changes("dialogs.create") as ch:
        # Decided in the transaction that creates the dialog: a photo removed
        # or a block made a moment earlier is seen, not raced past.
        await check_users_exist(ch.db, others, "dialog.idUsers")
        if req.photo is not None:
            await check_photo(ch.db, call.user_id, req.photo)
        await check_no_blocks(ch.db, call.user_id, others)
        dialog = await dialog_store.create_dialog(
            ch.db,
            key=new_dialog_key(),
            name=req.name,
            private=req.private,
            photo_key=req.photo,
            owner_id=call.user_id,
            members=others,
        )
        created = DialogCreated(dialog.key, dialog.name, dialog.photo_key, dialog.private, call.user_id)
        await ch.emit([call.user_id, *others], created)
        await ch.members_added(dialog.id, dialog.key, others)
    return ok("Dialog started", hash=dialog.key)


@route(CHANGE_DIALOG)
async def change_dialog(call: Call) -> dict[str, Any]:
    """Who may change what is decided inside the transaction that changes it,
    under the dialog's management lock (``dialog_store.lock_access``): a manager
    kicked a moment earlier is refused, never half-obeyed."""
    req = ChangeDialog.parse(call.body)
    async with call.app.changes("dialogs.change") as ch:
        access = await dialog_store.lock_access(ch.db, req.key, call.user_id)
        if access is None:
            raise NotFound(DIALOG_NOT_FOUND)
        if not access.is_member:
            if access.dialog.private or not req.only_adds(call.user_id):
                raise NotFound(DIALOG_NOT_FOUND)
            await dialog_store.change_members(ch.db, access.dialog.id, add_members=req.add_members)
            await ch.members_added(access.dialog.id, req.key, req.add_members)
            await ch.emit_to_dialog(access.dialog.id, MembersAdded(req.key, req.add_members))
            await dialog_store.change_settings(ch.db, access.dialog.id)
            joined = True
        else:
            await _change(call, ch, req, access)
            joined = False
    return ok("Joined the dialog" if joined else "Dialog changed")


async def _change(call: Call, ch: Change, req: ChangeDialog, access: dialog_store.Access) -> None:
    """A member's ChangeDialog, inside its transaction: refusals first, then
    the change and its events."""
    tx = ch.db
    if not access.is_manager:
        raise Forbidden("only the owner or an admin can change this dialog")
    if req.admins and access.role != dialog_store.OWNER:
        raise Forbidden("only the owner can appoint admins")
    await check_users_exist(tx, req.add_members, "dialog.IdUsers")
    old = access.dialog
    if req.admins:
        members = await dialog_store.roles_of(tx, old.id, req.admins)
        outsiders = [u for u in req.admins if u not in members and u not in req.add_members]
        if outsiders:
            raise Unprocessable(f"dialog.admins: not members of this dialog: {', '.join(map(str, outsiders))}")
    if req.add_members:
        present = await dialog_store.roles_of(tx, old.id, req.add_members)
        await check_no_blocks(tx, call.user_id, tuple(u for u in req.add_members if u not in present))
    if req.photo is not None:
        await check_photo(tx, call.user_id, req.photo)
    await dialog_store.change_members(tx, old.id, add_members=req.add_members, admins=req.admins)
    if req.name is not None or req.private is not None or req.photo is not None or req.admins:
        await ch.emit_to_dialog(old.id, DialogChanged(
            req.key,
            old.name if req.name is None else req.name,
            old.photo_key if req.photo is None else req.photo,
            old.private if req.private is None else req.private,
        ))
    if req.add_members:
        await ch.members_added(old.id, req.key, req.add_members)
        await ch.emit_to_dialog(old.id, MembersAdded(req.key, req.add_members))
    await dialog_store.change_settings(tx, old.id, name=req.name, private=req.private, photo_key=req.photo)


@route(KICK_USER)
async def kick_user(call: Call) -> dict[str, Any]:
    """Kick or leave, decided under the dialog's management lock (see ChangeDialog)."""
    req = KickUser.parse(call.body)
    async with call.app.changes("dialogs.remove_member") as ch:
        access = await dialog_store.lock_access(ch.db, req.key, call.user_id)
        if access is None or not access.is_member:
            raise NotFound(DIALOG_NOT_FOUND)
        if req.user_id != call.user_id:
            await _check_kick(ch.db, access, req.user_id)
        dialog_id = access.dialog.id
        removed = await dialog_store.remove_member(ch.db, dialog_id, req.user_id)
        await ch.emit_to_dialog(dialog_id, MemberKicked(req.key, req.user_id, call.user_id), also=(req.user_id,))
        if removed is not None and removed.new_owner:
            await dialog_store.set_owner(ch.db, dialog_id, removed.heir)
    return ok("You left the dialog" if req.user_id == call.user_id else "User removed from the dialog")


async def _check_kick(tx: Transaction, access: dialog_store.Access, user_id: int) -> None:
    role = access.role
    if role not in dialog_store.MANAGERS:
        raise Forbidden("only the owner or an admin can remove members")
    target = (await dialog_store.roles_of(tx, access.dialog.id, [user_id])).get(user_id)
    if target is None:
        raise NotFound(f"user {user_id} is not a member of this dialog")
    if target == dialog_store.OWNER:
        raise Forbidden("the owner cannot be removed from the dialog")
    if target == dialog_store.ADMIN and role != dialog_store.OWNER:
        raise Forbidden("only the owner can remove an admin")


def dialog_out(item: dialog_store.DialogItem) -> dict[str, Any]:
    return DialogItem(
        key=item.key,
        name=item.name,
        photo=item.photo_key,
        private=item.private,
        role=item.role,
        created_at=item.created_at,
        last_message_at=item.last_message_at,
        unread=item.unread,
    ).to_wire()


@route(GET_DIALOGS)
async def get_dialogs(call: Call) -> dict[str, Any]:
    page = GetDialogs.parse(call.body).page
    items = await dialog_store.my_dialogs(call.app.db, call.user_id, since=page.since, take=page.take, skip=page.skip)
    return ok("List formed", Dialogs=[dialog_out(item) for item in items])


@route(GET_USERS_DIALOG)
async def get_users_dialog(call: Call) -> dict[str, Any]:
    req = GetUsersDialog.parse(call.body)
    dialog_id, _ = await member_of(call, req.key)
    members = await dialog_store.members(call.app.db, dialog_id)
    return ok(
        "Members listed",
        UsersId=[m.user_id for m in members],
        Owner=next((m.user_id for m in members if m.role == dialog_store.OWNER), None),
        Admins=[m.user_id for m in members if m.role == dialog_store.ADMIN],
    )


async def dialog_media(call: Call) -> dict[str, Any]:
    """``GetMedia`` with ``PkDialog``: metadata of the dialog's media (spec
    decision 5); the bytes come from ``GetMedia`` by key.  Not a route: the
    media handler owns ``GetMedia`` and hands dialog listings here."""
    req = DialogMedia.parse(call.body)
    dialog_id, _ = await member_of(call, req.key)
    items = await message_store.dialog_media(
        call.app.db, dialog_id, call.user_id, take=req.page.take, skip=req.page.skip
    )
    return ok(
        "Media listed",
        Media=[
            MediaItem(
                key=item.key,
                extension=item.extension,
                size=item.size,
                message_key=item.message_key,
                created_at=item.created_at,
            ).to_wire()
            for item in items
        ],
    )
