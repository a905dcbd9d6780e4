-- Rate limits that every server process shares (server/ratelimit.py
-- SharedLimiter): one row per limiter and key, holding the bucket's
-- "theoretical arrival time" (GCRA): the moment, in epoch seconds, at which
-- the key's budget is whole again.  A row whose ``tat`` has passed says
-- nothing a missing row does not, so it may be deleted at any time.
--
-- UNLOGGED: no WAL for a write per login attempt.  A database crash empties
-- the table (every budget starts whole again); a clean restart keeps it.
CREATE UNLOGGED TABLE rate_limits (
    limiter text             NOT NULL,
    key     text             NOT NULL,
    tat     double precision NOT NULL,
    PRIMARY KEY (limiter, key)
);
