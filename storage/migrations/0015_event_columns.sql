-- What a read of the event log needs to know about an event, in columns of
-- their own instead of paths into the payload (the payload is the wire's and
-- storage no longer looks inside it): the dialog it is about (members only
-- read it), the message it carries a copy of (read back as it is now), and
-- the user it is about (who reads it even after leaving the dialog: their own
-- removal).
--
-- Events written before this migration are converted once from the payload
-- shape they were written in: ``PkDialog``, ``Msg.infoMessage.msgKey``, and
-- the removed member's ``Id`` of a ``MemberKicked``.  Adding nullable columns
-- without a default rewrites nothing; the backfill touches only events about
-- a dialog.
ALTER TABLE events
    ADD COLUMN dialog_key text,
    ADD COLUMN message_key text,
    ADD COLUMN subject_id bigint;

UPDATE events SET
    dialog_key = payload->>'PkDialog',
    message_key = payload #>> '{Msg,infoMessage,msgKey}',
    subject_id = CASE WHEN kind = 'MemberKicked' THEN (payload->>'Id')::bigint END
WHERE payload ? 'PkDialog';
