-- Thumbnails of images (GetMedia with thumb).  They belong to the content,
-- not to a key: two keys of one file (one sha256) share them.  One row per
-- source blob and size tag, either a thumbnail (a blob of its own in the blob
-- store, named by ``sha256``) or, in ``refused``, why the source cannot be
-- thumbnailed: remembered, so a hostile image costs one decoding attempt, not
-- one per request.
--
-- A thumbnail's blob is referenced by this row alone: whatever removes
-- unreferenced blobs counts ``media_thumbs.sha256`` as a reference, and drops
-- the rows of a source no ``media`` row names any more together with it.
CREATE TABLE media_thumbs (
    source_sha256 bytea       NOT NULL,
    tag           text        NOT NULL,
    sha256        bytea,
    extension     text,
    width         integer,
    height        integer,
    size          bigint,
    refused       text,
    created_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (source_sha256, tag),
    CHECK (
        (refused IS NULL AND sha256 IS NOT NULL AND extension IS NOT NULL
         AND width > 0 AND height > 0 AND size > 0)
        OR (refused IS NOT NULL AND sha256 IS NULL)
    )
);
CREATE INDEX media_thumbs_by_blob ON media_thumbs (sha256) WHERE sha256 IS NOT NULL;
