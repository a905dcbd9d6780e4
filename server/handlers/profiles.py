"""Handlers for the profiles requests."""
