"""Handlers for the friends requests."""
