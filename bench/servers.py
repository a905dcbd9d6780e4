"""The server a benchmark starts for itself: ``python -m server`` on a free
port with an embedded PostgreSQL in a temporary data directory, removed
afterwards (unless ``keep``), and the abuse limits off."""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


#: A load test is abuse by design: the own server runs with the abuse limits
#: off (environment variables, so a server without such a flag ignores them).
NO_ABUSE_LIMITS = {
    "SESSIA_MAX_CONNECTIONS_PER_IP": "0",
    **{f"SESSIA_RATE_{name}": "0/1" for name in (
        "AUTH_ACCOUNT", "AUTH_IP", "REGISTRATION_ACCOUNT", "REGISTRATION_IP", "EMAIL_ACCOUNT", "EMAIL_IP",
        "SEND_MESSAGE", "MEDIA", "SEARCH")},
}


class OwnServer:
    """``python -m server`` on a free port with an embedded PostgreSQL in a
    temporary data directory, removed afterwards (unless --keep)."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.dir = Path(tempfile.mkdtemp(prefix="sessia-load-"))
        self.proc: subprocess.Popen | None = None
        self.host = "127.0.0.1"
        self.port = 0
        self.log: list[str] = []
        self.database_url: str | None = None
        self.pg_pid: int | None = None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def start(self, timeout: float = 180.0) -> None:
        data = self.dir / "data"
        cmd = [sys.executable, "-m", "server", "--host", "127.0.0.1", "--port", "0", "--data-dir", str(data),
               "--allow-any-client", "--log-level", "WARNING"]
        if not self.args.durable:
            cmd.append("--no-durable")
        if getattr(self.args, "workers", 1) > 1:
            cmd += ["--workers", str(self.args.workers)]
        cmd += self.args.server_arg
        env = {k: v for k, v in os.environ.items() if not k.startswith("SESSIA_")}
        env.update(NO_ABUSE_LIMITS)
        self.proc = subprocess.Popen(cmd, cwd=ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, text=True, env=env)
        ready = threading.Event()

        def read() -> None:
            assert self.proc is not None and self.proc.stderr is not None
            for line in self.proc.stderr:
                self.log.append(line.rstrip("\n"))
                del self.log[:-200]
                match = re.search(r"listening on ([\d.]+):(\d+)", line)
                if match:
                    self.port = int(match.group(2))
                    ready.set()
            ready.set()

        threading.Thread(target=read, daemon=True).start()
        if not ready.wait(timeout) or self.proc.poll() is not None or not self.port:
            self.stop()
            raise RuntimeError("the server did not start:\n" + "\n".join(self.log[-40:]))
        from storage.embedded import EmbeddedPostgres

        self.database_url = EmbeddedPostgres(data, durable=self.args.durable).url
        try:
            self.pg_pid = int((data / "postgres" / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            self.pg_pid = None

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        if not self.args.keep:
            shutil.rmtree(self.dir, ignore_errors=True)
        else:
            print(f"kept {self.dir}", file=sys.stderr)
