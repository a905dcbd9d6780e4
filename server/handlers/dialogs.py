"""Handlers for the dialogs requests."""
