-- Per-user event log support: every user has a sequence row from the start,
-- and the log remembers how far it has been trimmed so that a client asking
-- for events older than that is told to resync instead of silently missing them.

ALTER TABLE user_event_seq ADD COLUMN trimmed_through bigint NOT NULL DEFAULT 0;

INSERT INTO user_event_seq (user_id) SELECT id FROM users ON CONFLICT DO NOTHING;

CREATE FUNCTION sessia_user_event_seq() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO user_event_seq (user_id) VALUES (NEW.id) ON CONFLICT DO NOTHING;
    RETURN NEW;
END;
$$;

CREATE TRIGGER users_event_seq AFTER INSERT ON users
    FOR EACH ROW EXECUTE FUNCTION sessia_user_event_seq();
