-- The whole data model of the API, so that later features add handlers, not
-- schema upheavals.  Every table that grows with traffic is keyed so that the
-- dialog (or the user, for per-user data) can become the distribution column
-- of a sharded PostgreSQL: messages and their satellites carry dialog_id in
-- their primary key.

CREATE TABLE users (
    id              bigserial PRIMARY KEY,
    login           text        NOT NULL,
    email           text        NOT NULL,
    email_confirmed boolean     NOT NULL DEFAULT false,
    nickname        text        NOT NULL,
    password_hash   text        NOT NULL,
    photo_key       text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX users_login_lower ON users (lower(login));
CREATE UNIQUE INDEX users_email_lower ON users (lower(email));

-- Known client builds (spec decision 11).
CREATE TABLE clients (
    id          bigserial PRIMARY KEY,
    nameclient  text        NOT NULL,
    hashcert    text        NOT NULL,
    min_version integer     NOT NULL DEFAULT 0,
    created_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (nameclient, hashcert)
);

-- One row per device login.  Only the SHA-256 of the token is kept.
CREATE TABLE sessions (
    id              bigserial PRIMARY KEY,
    user_id         bigint      NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    token_hash      bytea       NOT NULL UNIQUE,
    device_id       text        NOT NULL,
    device_os       text        NOT NULL DEFAULT '',
    device_mac      text        NOT NULL DEFAULT '',
    device_hostname text        NOT NULL DEFAULT '',
    client_name     text        NOT NULL DEFAULT '',
    client_hashcert text        NOT NULL DEFAULT '',
    client_version  text        NOT NULL DEFAULT '',
    created_at      timestamptz NOT NULL DEFAULT now(),
    last_seen_at    timestamptz NOT NULL DEFAULT now(),
    revoked_at      timestamptz
);
CREATE INDEX sessions_user ON sessions (user_id) WHERE revoked_at IS NULL;

-- Email confirmation and password reset codes; only a hash of the code.
CREATE TABLE email_codes (
    id          bigserial PRIMARY KEY,
    user_id     bigint      NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    purpose     text        NOT NULL CHECK (purpose IN ('confirm', 'reset')),
    email       text        NOT NULL,
    code_hash   bytea       NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL,
    attempts    integer     NOT NULL DEFAULT 0,
    consumed_at timestamptz
);
CREATE INDEX email_codes_user ON email_codes (user_id, purpose, created_at DESC);

-- Uploaded files.  Bytes live on disk, content-addressed by sha256; the same
-- bytes uploaded twice share one file but get one row (and key) per upload.
CREATE TABLE media (
    key         text        PRIMARY KEY,
    owner_id    bigint      NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    extension   text        NOT NULL,
    size        bigint      NOT NULL,
    sha256      bytea       NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX media_owner ON media (owner_id, created_at DESC);
CREATE INDEX media_sha256 ON media (sha256);

-- Friendship as directed rows: a request from A to B is (A, B, 'requested');
-- a friendship is two rows (A, B, 'friend') and (B, A, 'friend'), each with
-- its owner's private note.
CREATE TABLE contacts (
    owner_id   bigint      NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    peer_id    bigint      NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    state      text        NOT NULL CHECK (state IN ('requested', 'friend')),
    note       text        NOT NULL DEFAULT '',
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (owner_id, peer_id),
    CHECK (owner_id <> peer_id)
);
CREATE INDEX contacts_peer ON contacts (peer_id, state);

CREATE TABLE blocks (
    blocker_id bigint      NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    blocked_id bigint      NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (blocker_id, blocked_id),
    CHECK (blocker_id <> blocked_id)
);
CREATE INDEX blocks_blocked ON blocks (blocked_id);

CREATE TABLE dialogs (
    id              bigserial PRIMARY KEY,
    key             text        NOT NULL UNIQUE,
    name            text        NOT NULL DEFAULT '',
    private         boolean     NOT NULL DEFAULT true,
    photo_key       text,
    owner_id        bigint      REFERENCES users (id) ON DELETE SET NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    last_message_at timestamptz
);

CREATE TABLE dialog_members (
    dialog_id  bigint      NOT NULL REFERENCES dialogs (id) ON DELETE CASCADE,
    user_id    bigint      NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    role       text        NOT NULL DEFAULT 'member' CHECK (role IN ('owner', 'admin', 'member')),
    joined_at  timestamptz NOT NULL DEFAULT now(),
    last_read_message_id bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (dialog_id, user_id)
);
CREATE INDEX dialog_members_user ON dialog_members (user_id, dialog_id);

CREATE TABLE messages (
    dialog_id     bigint      NOT NULL REFERENCES dialogs (id) ON DELETE CASCADE,
    id            bigserial,
    key           text        NOT NULL,
    author_id     bigint      REFERENCES users (id) ON DELETE SET NULL,
    content       text        NOT NULL DEFAULT '',
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz,
    deleted_at    timestamptz,
    forwarded_key text,
    important     boolean     NOT NULL DEFAULT false,
    PRIMARY KEY (dialog_id, id),
    UNIQUE (dialog_id, key)
);

CREATE TABLE message_media (
    dialog_id  bigint  NOT NULL,
    message_id bigint  NOT NULL,
    media_key  text    NOT NULL REFERENCES media (key) ON DELETE CASCADE,
    position   integer NOT NULL,
    PRIMARY KEY (dialog_id, message_id, media_key),
    FOREIGN KEY (dialog_id, message_id) REFERENCES messages (dialog_id, id) ON DELETE CASCADE
);
CREATE INDEX message_media_key ON message_media (media_key);

-- deleteOnlyMe: a message hidden for one user.
CREATE TABLE message_hidden (
    dialog_id  bigint NOT NULL,
    message_id bigint NOT NULL,
    user_id    bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    PRIMARY KEY (dialog_id, user_id, message_id),
    FOREIGN KEY (dialog_id, message_id) REFERENCES messages (dialog_id, id) ON DELETE CASCADE
);

-- Per-user event log for push and catch-up: strictly increasing seq per user.
CREATE TABLE user_event_seq (
    user_id  bigint PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    last_seq bigint NOT NULL DEFAULT 0
);

CREATE TABLE events (
    user_id    bigint      NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    seq        bigint      NOT NULL,
    kind       text        NOT NULL,
    payload    jsonb       NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, seq)
);
CREATE INDEX events_created ON events (created_at);
