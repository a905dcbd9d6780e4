"""Typed shapes of the dialogs requests."""
