-- Search reads only the caller's dialogs, but the trigram index of 0003 knows
-- no dialogs: for a word common anywhere in the store it returned every
-- match in the database before the membership filter kept the caller's
-- (hundreds of milliseconds in a store of a million messages).
--
-- This index holds each message's dialog as a one-element array next to its
-- trigrams.  A GIN scan with conditions on both columns intersects their
-- posting lists inside the index, skipping through the long ones, so
-- "these dialogs AND these trigrams" costs about what the rarer side holds.
-- The array form matters: `ARRAY[dialog_id] && $dialogs` is one scan for
-- any number of dialogs, and no other index can serve it, so the planner
-- never trades it for a read of whole dialogs by primary key.
--
-- The pattern alone is still served (a multi-column GIN index answers a
-- condition on any of its columns), so the old index goes: one trigram
-- index fewer to maintain on every send.
CREATE INDEX messages_dialog_content_trgm ON messages
    USING gin ((ARRAY[dialog_id]), lower(content) gin_trgm_ops) WHERE deleted_at IS NULL;

DROP INDEX IF EXISTS messages_content_trgm;
