"""Search: ``everyWhere`` (my dialogs containing the text, and public dialogs
by name) and ``inDialogs`` (matching messages in given dialogs of mine).

Only dialogs the caller is a member of are searched; a listed dialog the
caller is not in is left out as if it did not exist, and when none of the
listed dialogs is the caller's the answer is 404.
"""

from __future__ import annotations

from typing import Any

from protocol.requests import SEARCH
from protocol.requests.search import EVERYWHERE, SearchEverywhere, SearchInDialogs, like_pattern, operation
from protocol.status import NotFound, ok
from storage import search as search_store

from ..routes import Call, route
from .dialogs import DIALOG_NOT_FOUND


@route(SEARCH)
async def search(call: Call) -> dict[str, Any]:
    # The costliest request there is (a text with no trigram reads whole dialogs): rate-limited.
    await call.app.limits.search.check(call.user_id)
    if operation(call.body) == EVERYWHERE:
        return await _everywhere(call, SearchEverywhere.parse(call.body))
    return await _in_dialogs(call, SearchInDialogs.parse(call.body))


async def _everywhere(call: Call, req: SearchEverywhere) -> dict[str, Any]:
    pattern = like_pattern(req.text)
    page = req.page
    mine = await search_store.my_dialogs(call.app.db, call.user_id, pattern, take=page.take, skip=page.skip)
    public = await search_store.public_dialogs(call.app.db, call.user_id, pattern, take=page.take, skip=page.skip)
    return ok(
        "Dialogs found",
        Dialogs=mine,
        PublicDialogs=[{"hash": d.key, "name": d.name, "photo": d.photo_key or ""} for d in public],
    )


async def _in_dialogs(call: Call, req: SearchInDialogs) -> dict[str, Any]:
    dialogs = await search_store.my_dialog_ids(call.app.db, call.user_id, req.dialogs)
    if not dialogs:
        raise NotFound(DIALOG_NOT_FOUND)
    page = req.page
    hits = await search_store.in_dialogs(
        call.app.db, call.user_id, dialogs, like_pattern(req.text), take=page.take, skip=page.skip
    )
    return ok(
        "Messages found",
        Messages=[h.key for h in hits],
        Hits=[{"msgKey": h.key, "pkDialog": h.dialog_key} for h in hits],
    )
