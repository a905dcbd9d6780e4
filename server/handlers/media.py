"""Handlers for the media requests."""
