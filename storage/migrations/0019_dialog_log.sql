-- A large dialog keeps one log of its own instead of a row in every member's
-- log per event: a message to a dialog of 100,000 members writes one row.
-- ``dialogs.large`` says which dialogs do; ``last_pts`` numbers the dialog's
-- events (locked with the dialog row until its transaction commits, so they
-- commit in order); ``joined_pts`` is where a member's reading of the log
-- starts (what came before is history, read with GetMessages).
ALTER TABLE dialogs
    ADD COLUMN large boolean NOT NULL DEFAULT false,
    ADD COLUMN last_pts bigint NOT NULL DEFAULT 0;

ALTER TABLE dialog_members ADD COLUMN joined_pts bigint NOT NULL DEFAULT 0;

CREATE TABLE dialog_events (
    dialog_id  bigint      NOT NULL REFERENCES dialogs (id) ON DELETE CASCADE,
    pts        bigint      NOT NULL,
    kind       text        NOT NULL,
    payload    jsonb,
    message_id bigint,
    subject_id bigint,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (dialog_id, pts)
);
CREATE INDEX dialog_events_created ON dialog_events (created_at);
