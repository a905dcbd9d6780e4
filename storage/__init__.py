"""Persistence: the schema (numbered SQL migrations), the connection pool, and
one module per area with plain async functions returning typed rows.

Nothing above this package writes SQL; nothing in it knows about frames or
sessions on the wire.
"""
