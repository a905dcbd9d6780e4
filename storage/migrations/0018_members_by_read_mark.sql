-- "The newest message another member has read" (a history page's read marks
-- of the reader's own messages) is the first entry of this index that is not
-- the reader: two entries read whatever the dialog's size, where the maximum
-- over every member was a scan of all of them (100,000 for a large dialog,
-- at every GetMessages).
CREATE INDEX dialog_members_read ON dialog_members (dialog_id, last_read_message_id DESC);
