"""Handlers for the messages requests."""
