"""Handlers for the search requests."""
