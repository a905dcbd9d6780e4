-- Forwarding looks a message up by its key across the forwarder's dialogs.
CREATE INDEX messages_key ON messages (key);
