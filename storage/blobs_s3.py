"""Blobs in an object store speaking the S3 API (AWS S3, SeaweedFS, MinIO,
Ceph RGW, R2, ...), shared by every node that names the same bucket.

The client is obstore (Python bindings of the Rust ``object_store`` crate):
natively async, so a transfer never occupies a Python thread; it streams a
file from disk into a multipart upload with a bounded number of parts in
flight; ranged GETs, listing and conditional requests are first-class; and it
has no dependency tree of its own to keep up (botocore's and aiobotocore's
pinning of each other is the usual pain of the alternatives).

An object is named ``blobs/ab/cd/<sha256 hex>``: the content's digest, so the
same bytes are one object however many keys name them.  Publishing is atomic
in S3 itself: a single PUT, or a multipart upload, becomes visible only when
it completes, whole; a crash before that leaves nothing under the name (an
abandoned multipart upload is invisible, and the bucket's lifecycle rule for
incomplete uploads removes its parts: docs/operations.md).

Every failure of the store other than "no such object" becomes
``BlobStoreUnavailable`` with a reason in plain words: obstore's own messages
name URLs, never credentials, but what reaches a log here is ours.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
from collections.abc import AsyncIterator, Awaitable
from datetime import timedelta
from pathlib import Path
from typing import TypeVar

import obstore
from obstore.exceptions import BaseError, PermissionDeniedError, UnauthenticatedError
from obstore.store import S3Store

from .blobs import StoredBlob
from .errors import BlobMissing, BlobStoreUnavailable

T = TypeVar("T")

PREFIX = "blobs/"
#: Size of one part of a multipart upload, and how many are sent at once: a
#: put holds at most PART_SIZE * PARTS_IN_FLIGHT bytes of the file in memory,
#: whatever its size (S3 allows at most 10,000 parts: 80 GiB per blob).
PART_SIZE = 8 * 1024 * 1024
PARTS_IN_FLIGHT = 4
#: Seconds ``close`` waits for obstore's threads to finish with the last call.
SETTLE = 0.1
_DIGEST = re.compile(r"^blobs/[0-9a-f]{2}/[0-9a-f]{2}/([0-9a-f]{64})$")


def object_name(sha256: bytes) -> str:
    digest = sha256.hex()
    return f"{PREFIX}{digest[:2]}/{digest[2:4]}/{digest}"


class S3Blobs:
    """The ``BlobStore`` of storage/blobs.py on an S3 bucket."""

    kind = "s3"

    def __init__(self, *, endpoint: str, bucket: str, region: str, access_key: str, secret_key: str) -> None:
        self.endpoint = endpoint
        self.bucket = bucket
        self._secret = secret_key
        self.store = self._store(endpoint, bucket, region, access_key, secret_key, quick=False)
        #: the start-up check's store: two tries within seconds, not obstore's
        #: default of ten within three minutes, so a wrong endpoint fails fast
        self._probe = self._store(endpoint, bucket, region, access_key, secret_key, quick=True)

    @staticmethod
    def _store(endpoint: str, bucket: str, region: str, access_key: str, secret_key: str, *, quick: bool) -> S3Store:
        return S3Store(
            bucket,
            endpoint=endpoint,
            region=region,
            access_key_id=access_key,
            secret_access_key=secret_key,
            virtual_hosted_style_request=False,
            client_options={
                "allow_http": endpoint.startswith("http://"),
                "connect_timeout": timedelta(seconds=5),
                "timeout": timedelta(seconds=10 if quick else 300),
            },
            retry_config={
                "max_retries": 1 if quick else 5,
                "retry_timeout": timedelta(seconds=10 if quick else 60),
                "backoff": {"init_backoff": timedelta(milliseconds=100), "max_backoff": timedelta(seconds=5), "base": 2},
            },
        )

    def describe(self) -> str:
        """Where the blobs are, for messages (no credentials)."""
        return f"S3 bucket {self.bucket!r} at {self.endpoint}"

    async def _call(self, operation: str, step: Awaitable[T]) -> T:
        try:
            return await step
        except FileNotFoundError:
            raise
        except (BaseError, OSError, ValueError) as exc:
            raise BlobStoreUnavailable(operation, self.reason(exc)) from None

    def reason(self, exc: BaseException) -> str:
        """What went wrong, in words for an operator; never a credential."""
        text = str(exc)
        denied = ("403 Forbidden", "AccessDenied", "SignatureDoesNotMatch", "InvalidAccessKeyId")
        if isinstance(exc, PermissionDeniedError | UnauthenticatedError) or any(w in text for w in denied):
            return "access denied: check --s3-access-key and --s3-secret-key"
        if "NoSuchBucket" in text:
            return f"no bucket named {self.bucket!r}: create it, or name another in --s3-bucket"
        if "error sending request" in text or "Connection refused" in text or "dns error" in text:
            return "not reachable: is it running? (check --s3-endpoint)"
        first = text.splitlines()[0] if text else type(exc).__name__
        return first.replace(self._secret, "***")[:300]

    async def put_bytes(self, data: bytes) -> bytes:
        sha256 = await asyncio.to_thread(lambda: hashlib.sha256(data).digest())
        if await self.size(sha256) != len(data):
            await self._call("put", obstore.put_async(self.store, object_name(sha256), data))
        return sha256

    async def put_file(self, path: Path, sha256: bytes, size: int) -> None:
        if await self.size(sha256) == size:
            return
        await self._call("put", obstore.put_async(
            self.store, object_name(sha256), path, chunk_size=PART_SIZE, max_concurrency=PARTS_IN_FLIGHT,
        ))

    async def size(self, sha256: bytes) -> int | None:
        try:
            meta = await self._call("head", obstore.head_async(self.store, object_name(sha256)))
        except FileNotFoundError:
            return None
        return meta["size"]

    async def read(self, sha256: bytes) -> bytes:
        try:
            got = await self._call("get", obstore.get_async(self.store, object_name(sha256)))
            return bytes(await self._call("get", got.bytes_async()))
        except FileNotFoundError:
            raise BlobMissing(sha256) from None

    async def read_range_into(self, sha256: bytes, offset: int, into: memoryview) -> int:
        data = await self._read_range(sha256, offset, len(into))
        into[: len(data)] = data
        return len(data)

    async def _read_range(self, sha256: bytes, offset: int, length: int) -> bytes | memoryview:
        if length <= 0:
            return b""
        try:
            # One ranged GET: the store answers the bytes that exist (fewer at
            # the end).  A range that starts at or past the end is an error
            # (S3 answers 416): then the size says whether the blob is there.
            got = await self._call("get", obstore.get_range_async(
                self.store, object_name(sha256), start=offset, length=length
            ))
            return memoryview(got)  # copied once, into the caller's buffer
        except FileNotFoundError:
            raise BlobMissing(sha256) from None
        except BlobStoreUnavailable:
            size = await self.size(sha256)
            if size is None:
                raise BlobMissing(sha256) from None
            if offset >= size:
                return b""
            raise

    async def delete(self, sha256: bytes) -> bool:
        # S3 answers a DELETE of a missing object as a success: ask first.
        if await self.size(sha256) is None:
            return False
        await self._call("delete", obstore.delete_async(self.store, object_name(sha256)))
        return True

    async def walk(self) -> AsyncIterator[StoredBlob]:
        stream = obstore.list(self.store, prefix=PREFIX, chunk_size=1000)
        while True:
            try:
                batch = await self._call("list", anext(stream))
            except StopAsyncIteration:
                return
            for meta in batch:
                match = _DIGEST.match(meta["path"])
                if match:
                    yield StoredBlob(bytes.fromhex(match.group(1)), meta["size"], meta["last_modified"])

    async def check(self) -> str:
        stream = obstore.list(self._probe, prefix=PREFIX, chunk_size=1)
        try:
            await anext(stream)
        except StopAsyncIteration:
            pass
        except (BaseError, OSError, ValueError) as exc:
            raise BlobStoreUnavailable("check", self.reason(exc)) from None
        return self.describe()

    async def close(self) -> None:
        # obstore's runtime threads let go of the Python objects of a call a
        # moment after it returns; a process that exits within that moment is
        # aborted (SIGABRT) by the interpreter's finalisation.  Closing waits
        # that moment out, so an exit never follows a transfer that closely.
        await asyncio.sleep(SETTLE)
