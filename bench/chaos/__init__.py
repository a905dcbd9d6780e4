"""``python -m bench.chaos``: faults under load, then an audit of what survived.

The harness starts its own PostgreSQL (embedded, durable), its own server
nodes on it and, with ``--broker nats``, its own NATS server; it runs senders
and subscribed receivers through the SDK while it kills nodes, crashes
PostgreSQL and restarts NATS; then it reads the database and every receiver's
events and counts what was lost, stored twice, missed or pushed out of order
(docs/operations.md, "Chaos runs").  Everything it started is stopped by pid
when it ends, fails or is interrupted.
"""
