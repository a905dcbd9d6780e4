"""``--ready-file``: how a client's test suite learns that a server it started
with ``--port 0`` is ready, and on which port (docs/protocol.md, "Running a
server for your tests").  The real ``python -m server`` as a subprocess."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from protocol.frames import HEADER_SIZE, FrameKind, encode_ping

from .support import ROOT


def wait_for_file(path: Path, proc: subprocess.Popen[bytes], seconds: float = 60.0) -> str:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if path.exists():
            return path.read_text()
        assert proc.poll() is None, "the server exited before it was ready"
        time.sleep(0.02)
    raise AssertionError(f"{path} did not appear within {seconds}s")


def test_ready_file_names_the_chosen_port_and_goes_on_a_clean_stop(tmp_path: Path, new_database) -> None:
    ready = tmp_path / "run" / "sessia.ready"
    ready.parent.mkdir()
    ready.write_text("127.0.0.1:1\n")  # left by a run that was killed: must not be believed
    env = {k: v for k, v in os.environ.items() if not k.startswith("SESSIA_")}
    log = (tmp_path / "server.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "server", "--host", "127.0.0.1", "--port", "0", "--data-dir", str(tmp_path / "data"),
         "--database-url", new_database(), "--allow-any-client", "--broker", "none", "--ready-file", str(ready)],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=log,
    )
    try:
        # The stale file is removed before the server listens, then the new one appears.
        deadline = time.monotonic() + 60
        while ready.exists() and ready.read_text() == "127.0.0.1:1\n" and time.monotonic() < deadline:
            time.sleep(0.01)
        text = wait_for_file(ready, proc)
        assert text.endswith("\n") and text.count("\n") == 1
        host, port = text.strip().rsplit(":", 1)
        assert host == "127.0.0.1" and 0 < int(port) < 65536 and int(port) != 1
        assert [p.name for p in ready.parent.iterdir()] == ["sessia.ready"]  # no temporary file left
        # Ready means listening: a PING is answered at once.
        with socket.create_connection((host, int(port)), timeout=10) as s:
            s.sendall(encode_ping(9))
            pong = b""
            while len(pong) < HEADER_SIZE:
                chunk = s.recv(64)
                assert chunk
                pong += chunk
            assert pong[3] == FrameKind.PONG and int.from_bytes(pong[6:10], "big") == 9
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0, (tmp_path / "server.log").read_text()
        assert not ready.exists()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.close()
