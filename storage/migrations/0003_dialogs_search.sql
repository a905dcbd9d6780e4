-- Indexes for the hot queries of dialogs, messages and search.
--
-- Already covered by 0001: a history page by dialog (messages PK (dialog_id, id)),
-- a message by key (UNIQUE (dialog_id, key)), membership (dialog_members PK),
-- "my dialogs" (dialog_members_user), a dialog by key (dialogs.key UNIQUE),
-- a dialog's media (message_media PK).

-- Substring search, case-insensitive, any script: trigrams of lower(content).
-- The server's PostgreSQL uses a Unicode-aware collation (builtin C.UTF-8), so
-- lower() folds Cyrillic as well as Latin.  Deleted messages never match, so
-- they are left out of the index.
CREATE EXTENSION IF NOT EXISTS pg_trgm;

CREATE INDEX messages_content_trgm ON messages
    USING gin (lower(content) gin_trgm_ops) WHERE deleted_at IS NULL;

-- Public dialogs are findable by name.
CREATE INDEX dialogs_public_name_trgm ON dialogs
    USING gin (lower(name) gin_trgm_ops) WHERE NOT private;

-- Catch-up ("since" a date): new and edited messages of a dialog.
CREATE INDEX messages_dialog_created ON messages (dialog_id, created_at);
CREATE INDEX messages_dialog_updated ON messages (dialog_id, updated_at) WHERE updated_at IS NOT NULL;

-- Tombstones (GetDelMessages): few rows, listed per dialog.
CREATE INDEX messages_deleted ON messages (dialog_id, id) WHERE deleted_at IS NOT NULL;

-- "Is this media key already a public photo?" (a dialog or profile photo).
CREATE INDEX IF NOT EXISTS dialogs_photo_key ON dialogs (photo_key) WHERE photo_key IS NOT NULL;
CREATE INDEX IF NOT EXISTS users_photo_key ON users (photo_key) WHERE photo_key IS NOT NULL;

-- "Hidden by me" (deleteOnlyMe) checked across several dialogs at once
-- (search), and the cascade when an account goes.
CREATE INDEX message_hidden_user ON message_hidden (user_id, dialog_id, message_id);
