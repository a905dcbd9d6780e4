-- A large dialog's log is trimmed like the users' logs: by age and to a
-- number of newest events.  ``trimmed_pts`` remembers how far, so a reader
-- asking for events after an older position is told they are gone (and
-- reloads the dialog) instead of silently missing them.
ALTER TABLE dialogs ADD COLUMN trimmed_pts bigint NOT NULL DEFAULT 0;
