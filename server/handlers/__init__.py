"""Request handlers, one module per area of the API.  Importing this package
registers every route with the dispatcher."""

from . import accounts, devices, dialogs, friends, media, messages, presence, profiles, search, sync, uploads  # noqa: F401
