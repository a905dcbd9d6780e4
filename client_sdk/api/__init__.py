"""Typed SDK methods, one mixin per area of the API."""

from .devices import DevicesAPI
from .dialogs import DialogsAPI
from .friends import FriendsAPI
from .media import MediaAPI
from .messages import MessagesAPI
from .profiles import ProfilesAPI
from .search import SearchAPI

__all__ = ["DevicesAPI", "DialogsAPI", "FriendsAPI", "MediaAPI", "MessagesAPI", "ProfilesAPI", "SearchAPI"]
