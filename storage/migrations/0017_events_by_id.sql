-- An event names its dialog and its message by id (8 bytes each) rather
-- than by key (33 bytes each): a message to a dialog of a thousand members
-- writes a thousand of these rows, so their width is most of what a message
-- costs the database.  Reads join by primary key instead of by key.
ALTER TABLE events
    ADD COLUMN dialog_id bigint,
    ADD COLUMN message_id bigint;

UPDATE events e SET dialog_id = d.id FROM dialogs d WHERE e.dialog_key IS NOT NULL AND d.key = e.dialog_key;
UPDATE events e SET message_id = m.id FROM messages m
    WHERE e.message_key IS NOT NULL AND m.dialog_id = e.dialog_id AND m.key = e.message_key;

ALTER TABLE events DROP COLUMN dialog_key, DROP COLUMN message_key;
