"""SDK methods for the dialogs requests."""

from __future__ import annotations


class DialogsAPI:
    """Mixed into ``client_sdk.Client``; uses its ``request()``."""
