-- Uploads in parts (docs/api/media.md, "Uploads in parts").  The bytes are
-- staged in a file on the disk of the node that opened the upload (``node``);
-- these rows say which parts that file holds, whose upload it is and until
-- when it is kept.  A finished upload keeps its row until it expires, with the
-- key it became, so a client that lost the answer to UploadFinish asks again
-- and gets the same key.
CREATE TABLE uploads (
    id          text        PRIMARY KEY,
    owner_id    bigint      NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    node        text        NOT NULL,
    extension   text        NOT NULL,
    size        bigint      NOT NULL CHECK (size > 0),
    part_size   integer     NOT NULL CHECK (part_size > 0),
    sha256      bytea,
    media_key   text,
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL
);
-- The owner's unfinished uploads: the quota and the count at UploadStart,
-- and the one to resume by content.
CREATE INDEX uploads_owner ON uploads (owner_id, sha256) WHERE media_key IS NULL;
-- The expiry pass of each node.
CREATE INDEX uploads_expiry ON uploads (node, expires_at);

-- One row per part received (written to the staged file first).
CREATE TABLE upload_parts (
    upload_id   text        NOT NULL REFERENCES uploads (id) ON DELETE CASCADE,
    part        integer     NOT NULL CHECK (part >= 0),
    PRIMARY KEY (upload_id, part)
);
