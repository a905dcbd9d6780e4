-- The event log takes the most inserts of all: a row per recipient of every
-- message.  Its foreign key to users cost a trigger call per row (about an
-- eighth of a batch of sends).  Every append takes the recipient's
-- user_event_seq row FOR UPDATE and numbers the event from it, so an event
-- can only be written for a user whose counter row exists; the key's other
-- duty, removing a user's events with the user, moves to that counter row
-- (itself removed with the user by its own foreign key).
ALTER TABLE events DROP CONSTRAINT IF EXISTS events_user_id_fkey;

CREATE FUNCTION sessia_drop_user_events() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM events WHERE user_id = OLD.user_id;
    RETURN OLD;
END;
$$;

CREATE TRIGGER user_event_seq_drop_events AFTER DELETE ON user_event_seq
    FOR EACH ROW EXECUTE FUNCTION sessia_drop_user_events();
