"""The blob store the settings name (``--media-store``): local disk under
``--data-dir``, or an S3 bucket shared by every node (storage/blobs_s3.py).
The server and the admin commands build it here, so both read the same
bytes; neither prints its credentials (docs/operations.md)."""

from __future__ import annotations

from storage.blobs import BlobStore, LocalBlobs
from storage.blobs_s3 import S3Blobs

from .config import Config

#: The settings ``--media-store s3`` cannot do without.
S3_REQUIRED = ("s3_endpoint", "s3_bucket", "s3_access_key", "s3_secret_key")


def make_blob_store(config: Config) -> BlobStore:
    """The configured store (nothing contacted yet); a ValueError naming what
    is missing or malformed when ``--media-store s3`` lacks a setting."""
    if config.media_store != "s3":
        return LocalBlobs(config.media_dir)
    endpoint, bucket = config.s3_endpoint, config.s3_bucket
    access_key, secret_key = config.s3_access_key, config.s3_secret_key
    if not (endpoint and bucket and access_key and secret_key):
        missing = ["--" + name.replace("_", "-") for name in S3_REQUIRED if not getattr(config, name)]
        raise ValueError(f"--media-store s3 needs {', '.join(missing)} (flags, SESSIA_* or the --config file)")
    if not endpoint.startswith(("http://", "https://")):
        raise ValueError(f"--s3-endpoint {endpoint!r}: expected http://host[:port] or https://host[:port]")
    return S3Blobs(
        endpoint=endpoint, bucket=bucket, region=config.s3_region, access_key=access_key, secret_key=secret_key
    )
