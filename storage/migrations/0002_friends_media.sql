-- Indexes for the friends lists and the media access check.

-- getFriend / getOutcoming: my rows of one state, oldest first.
CREATE INDEX contacts_owner_list ON contacts (owner_id, state, created_at, peer_id);
-- getIncoming: rows pointing at me, oldest first.  Supersedes contacts_peer.
CREATE INDEX contacts_peer_list ON contacts (peer_id, state, created_at, owner_id);
DROP INDEX contacts_peer;
-- listBlocks: my blocks, oldest first.
CREATE INDEX blocks_blocker_list ON blocks (blocker_id, created_at, blocked_id);

-- GetMedia: profile and dialog photos are public; finding out whether a key is
-- one must not scan every user or dialog.
CREATE INDEX IF NOT EXISTS users_photo_key ON users (photo_key) WHERE photo_key IS NOT NULL;
CREATE INDEX IF NOT EXISTS dialogs_photo_key ON dialogs (photo_key) WHERE photo_key IS NOT NULL;
