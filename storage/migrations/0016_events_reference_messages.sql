-- An event that carries a message no longer stores a copy of it: the row
-- names the dialog and the message (dialog_key, message_key) and a read of
-- the log shows the message as it is now.  A message to a dialog of a
-- thousand members used to write a thousand copies of its text and media
-- keys; now it writes a thousand small rows of references.
--
-- Rows written before keep their payload (a read prefers the message itself
-- while it exists); they leave with the log's retention.
ALTER TABLE events ALTER COLUMN payload DROP NOT NULL;
