-- Media lifecycle: admin media delete (quarantine) and admin media gc.

-- Contents an operator removed (admin media delete): an upload of the same
-- bytes later is recorded quarantined, as Synapse does, so the content stays
-- unreachable whoever uploads it again.  ``key``: the key the operator named.
CREATE TABLE media_quarantine (
    sha256         bytea       PRIMARY KEY,
    key            text        NOT NULL,
    quarantined_at timestamptz NOT NULL DEFAULT now()
);

-- An upload of quarantined content: the uploader has its key, but nobody can
-- download it, and its row holds no bytes (gc removes the blob).
ALTER TABLE media ADD COLUMN quarantined_at timestamptz;

-- gc's scan: keys older than the grace period, oldest first.
CREATE INDEX media_created ON media (created_at);
