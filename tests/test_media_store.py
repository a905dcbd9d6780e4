"""The media stores.  S3 against a real S3 server (SeaweedFS): two nodes on
one bucket, one object per content, a start-up that fails in one line naming
endpoint and bucket, and credentials that never reach a log.  Local disk:
ranges read from the page cache and from the disk alike."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import time

import obstore
import pytest

from storage.blobs import LocalBlobs
from storage.errors import BlobMissing

from .seaweedfs import ACCESS_KEY, BUCKETS, REGION, SECRET_KEY
from .support import ROOT, ServerProcess, free_port

PNG = b"\x89PNG\r\n\x1a\n"


def objects_named(s3, data: bytes) -> list[str]:
    digest = hashlib.sha256(data).hexdigest()
    listed = obstore.list(s3.client(), prefix=f"blobs/{digest[:2]}/{digest[2:4]}/")
    return [m["path"] for batch in listed for m in batch if digest in m["path"]]


async def test_a_file_uploaded_on_one_node_downloads_on_the_other(start_server, new_database, s3, user):
    url = new_database()
    node_a = start_server(*s3.args(), database_url=url)
    node_b = start_server(*s3.args(), database_url=url)
    try:
        await _across(node_a, node_b, s3, user)
    finally:
        node_a.stop()
        node_b.stop()


async def _across(node_a, node_b, s3, user) -> None:
    alice = await user(target=node_a)
    bob = await user(target=node_b)
    data = PNG + os.urandom(300_000)
    key = await alice.upload_media(data, "png")
    dialog = await alice.create_dialog("across", members=[bob.user_id])
    await alice.send_message(dialog, "from node A", media=[key])
    assert (await bob.get_media(key)).data == data
    # The same bytes uploaded through node B: a key of its own, the same object.
    again = await bob.upload_media(data, "png")
    assert again != key and (await bob.get_media(again)).data == data
    digest = hashlib.sha256(data).hexdigest()
    assert objects_named(s3, data) == [f"blobs/{digest[:2]}/{digest[2:4]}/{digest}"]
    for node in (node_a, node_b):
        log = "\n".join(node.log)
        assert SECRET_KEY not in log and ACCESS_KEY not in log
        assert f"configuration: media: S3 bucket '{BUCKETS[0]}' at {s3.endpoint} (region {REGION})" in log
        assert not node.alarms()


def _refusal(start_server, *args: str) -> str:
    with pytest.raises(RuntimeError) as failed:
        start_server(*args)
    text = str(failed.value)
    assert SECRET_KEY not in text and "wrong-secret" not in text and ACCESS_KEY not in text
    (line,) = [line for line in text.splitlines() if "cannot start:" in line]
    return line.split("cannot start: ", 1)[1]


def _with(s3, **changes: str) -> list[str]:
    args = s3.args()
    for flag, value in changes.items():
        args[args.index("--" + flag.replace("_", "-")) + 1] = value
    return args


def test_a_store_that_refuses_the_credentials_fails_the_start_in_one_line(start_server, s3):
    assert _refusal(start_server, *_with(s3, s3_secret_key="wrong-secret")) == (
        f"cannot use the media store, S3 bucket '{BUCKETS[0]}' at {s3.endpoint} (region {REGION}):"
        " access denied: check --s3-access-key and --s3-secret-key"
    )


def test_a_missing_bucket_fails_the_start_in_one_line(start_server, s3):
    assert _refusal(start_server, *_with(s3, s3_bucket="no-such-bucket")) == (
        f"cannot use the media store, S3 bucket 'no-such-bucket' at {s3.endpoint} (region {REGION}):"
        " no bucket named 'no-such-bucket': create it, or name another in --s3-bucket"
    )


def test_an_unreachable_store_fails_the_start_in_one_line(start_server, s3):
    endpoint = f"http://127.0.0.1:{free_port()}"
    assert _refusal(start_server, *_with(s3, s3_endpoint=endpoint)) == (
        f"cannot use the media store, S3 bucket '{BUCKETS[0]}' at {endpoint} (region {REGION}):"
        " not reachable: is it running? (check --s3-endpoint)"
    )


def test_s3_without_its_settings_fails_the_start_naming_them(start_server):
    assert _refusal(start_server, "--media-store", "s3", "--s3-bucket", "b") == (
        "--media-store s3 needs --s3-endpoint, --s3-access-key, --s3-secret-key (flags, SESSIA_* or the --config file)"
    )


def test_credentials_from_the_environment_and_the_file_stay_out_of_logs_and_checks(new_database, s3, tmp_path):
    conf = tmp_path / "sessia.toml"
    conf.write_text(f'media-store = "s3"\ns3-endpoint = "{s3.endpoint}"\ns3-bucket = "{BUCKETS[0]}"\n'
                    f's3-access-key = "{ACCESS_KEY}"\n')
    env = {"SESSIA_S3_SECRET_KEY": SECRET_KEY}
    url = new_database()
    checked = subprocess.run(
        [sys.executable, "-m", "server", "--check", "--config", str(conf), "--database-url", url],
        capture_output=True, text=True, cwd=ROOT, timeout=120, env={**os.environ, **env}, stdin=subprocess.DEVNULL,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"ok   media store: S3 bucket '{BUCKETS[0]}' at {s3.endpoint} (region {REGION}) is usable" in checked.stdout
    assert SECRET_KEY not in checked.stdout + checked.stderr and ACCESS_KEY not in checked.stdout + checked.stderr

    server = ServerProcess(tmp_path / "data", ["--config", str(conf), "--database-url", url, "--log-level", "DEBUG",
                                               "--allow-any-client"], env=env)
    try:
        server.start()
    finally:
        server.stop()
    log = "\n".join(server.log)
    assert f"configuration: media: S3 bucket '{BUCKETS[0]}' at {s3.endpoint}" in log
    assert SECRET_KEY not in log and ACCESS_KEY not in log


#: Run in a process of its own, so its peak memory is the put's alone.
_PUT_SCRIPT = """
import asyncio, os, resource, sys
from pathlib import Path
from storage.blobs_s3 import S3Blobs
endpoint, bucket, region, access, secret, path, size = sys.argv[1:]
async def main():
    blobs = S3Blobs(endpoint=endpoint, bucket=bucket, region=region, access_key=access, secret_key=secret)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    sha256 = os.urandom(32)
    await blobs.put_file(Path(path), sha256, int(size))
    grew = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    print(grew // 1024, await blobs.size(sha256))
    await blobs.delete(sha256)
    await blobs.close()
asyncio.run(main())
"""


def test_a_large_put_streams_the_file_in_bounded_memory(s3, tmp_path):
    """512 MiB (a sparse file: no disk used) put as a multipart upload: the
    process's peak memory grows by far less than the file."""
    size = 512 << 20
    path = tmp_path / "large"
    with open(path, "wb") as f:
        f.truncate(size)
    result = subprocess.run(
        [sys.executable, "-c", _PUT_SCRIPT, s3.endpoint, BUCKETS[0], REGION, ACCESS_KEY, SECRET_KEY, str(path), str(size)],
        capture_output=True, text=True, cwd=ROOT, timeout=300,
    )
    assert result.returncode == 0, result.stderr
    grew_mib, stored = map(int, result.stdout.split())
    assert stored == size
    assert grew_mib < 128, f"peak memory grew {grew_mib} MiB for a {size >> 20} MiB put"


def test_the_test_s3_server_dies_with_the_process_that_started_it():
    """kill -9 of a test run leaves no SeaweedFS behind (PR_SET_PDEATHSIG)."""
    script = ("import time; from tests.seaweedfs import SeaweedFS; s = SeaweedFS().start();"
              " print(s.proc.pid, s.root, flush=True); time.sleep(120)")
    runner = subprocess.Popen([sys.executable, "-c", script], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert runner.stdout is not None
        pid, root = runner.stdout.readline().split()
        assert os.path.exists(f"/proc/{pid}")
    finally:
        runner.kill()
        runner.wait()
    deadline = time.monotonic() + 10
    while _alive(int(pid)) and time.monotonic() < deadline:
        time.sleep(0.05)
    shutil.rmtree(root, ignore_errors=True)  # what the killed run could not remove
    assert not _alive(int(pid))


def _alive(pid: int) -> bool:
    """Running (a zombie waiting for init to reap it is not)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


async def test_local_ranges_read_the_same_bytes_from_the_page_cache_and_from_the_disk(tmp_path):
    """A range is read without a thread when its bytes are cached and in a
    thread when they must come from the disk: the same bytes either way, and
    a range at or past the end reads what is there."""
    blobs = LocalBlobs(tmp_path)
    data = os.urandom(3 << 20)
    sha256 = await blobs.put_bytes(data)
    path = blobs.path_for(sha256)

    async def read(offset: int, length: int) -> bytes:
        into = bytearray(length)
        got = await blobs.read_range_into(sha256, offset, memoryview(into))
        return bytes(into[:got])

    assert await read(5, 1 << 20) == data[5 : 5 + (1 << 20)]  # cached: just written
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)  # written and synced: clean pages, dropped
    finally:
        os.close(fd)
    assert await read(len(data) - 100, 1 << 20) == data[-100:]  # from the disk, short at the end
    assert await read(1 << 20, 2 << 20) == data[1 << 20 :]
    assert await read(len(data), 10) == b""
    with pytest.raises(BlobMissing):
        await read_missing(blobs)


async def read_missing(blobs: LocalBlobs) -> int:
    return await blobs.read_range_into(hashlib.sha256(b"never stored").digest(), 0, memoryview(bytearray(1)))
