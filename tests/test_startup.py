"""Starting and stopping, as an operator does it: the real ``python -m server``
as a subprocess.  A failed start says in one line what failed and undoes what
it started; an embedded PostgreSQL never outlives its server (not even a
``kill -9``); a bad setting is one line; ``--check`` checks and starts nothing
that stays running."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from storage.embedded import EmbeddedPostgres

from .support import ROOT, ServerProcess, free_port

EMBEDDED = ["--allow-any-client", "--no-durable", "--broker", "none"]


@pytest.fixture(autouse=True)
def no_sessia_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("SESSIA_"):
            monkeypatch.delenv(name)


def run_server(*args: str, env: dict[str, str] | None = None, timeout: float = 90) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "server", *args],
        cwd=ROOT, capture_output=True, text=True, timeout=timeout, env={**os.environ, **(env or {})},
    )


def postgres_of(data_dir: Path) -> list[int]:
    """Live (not zombie) postgres processes whose command line names ``data_dir``."""
    needle = str((data_dir / "postgres").resolve())
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if "postgres" in cmdline and needle in cmdline and state != "Z":
            found.append(int(entry.name))
    return found


def wait_until_gone(data_dir: Path, seconds: float = 5.0) -> None:
    deadline = time.monotonic() + seconds
    while postgres_of(data_dir) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert postgres_of(data_dir) == [], f"postgres of {data_dir} still running"
    assert not (data_dir / "postgres" / "postmaster.pid").exists()


def errors(stderr: str) -> list[str]:
    assert "Traceback" not in stderr, stderr
    return [line for line in stderr.splitlines() if "ERROR" in line or "error:" in line]


def one_error(result: subprocess.CompletedProcess[str], code: int = 1) -> str:
    assert result.returncode == code, result.stderr
    lines = errors(result.stderr)
    assert len(lines) == 1, result.stderr
    return lines[0]


# -- 1. a failed start undoes what it started ---------------------------------------------


def test_port_in_use_fails_before_the_database_starts(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_server("--host", "127.0.0.1", "--port", str(port), "--data-dir", str(data), *EMBEDDED)
    line = one_error(result)
    assert f"cannot listen on 127.0.0.1:{port}: Address already in use" in line
    assert result.stderr.strip() == line  # nothing else was started, nothing else said
    assert not (data / "postgres").exists()
    assert postgres_of(data) == []


def test_failure_after_the_database_started_stops_it(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        metrics_port = taken.getsockname()[1]
        result = run_server("--port", "0", "--data-dir", str(data), "--metrics-port", str(metrics_port), *EMBEDDED)
    line = one_error(result)
    assert f"cannot listen for metrics on 127.0.0.1:{metrics_port}" in line
    assert "embedded PostgreSQL started" in result.stderr and "embedded PostgreSQL stopped" in result.stderr
    wait_until_gone(data, 0)


# -- 2. an embedded PostgreSQL does not outlive its server ----------------------------------


def test_kill_9_of_the_server_takes_its_postgres_down(tmp_path: Path) -> None:
    data = tmp_path / "data"
    server = ServerProcess(data, EMBEDDED).start()
    try:
        assert postgres_of(data)
        server.kill()
        wait_until_gone(data)
    finally:
        server.stop()


def start_by_hand(data: Path) -> None:
    """``pg_ctl start``, as an older server (or an operator) left it: a daemon nobody owns."""
    pg = EmbeddedPostgres(data)
    pg._prepare_user()
    pg._prepare_socket_dir()
    pg._run([str(pg.bin / "pg_ctl"), "-D", str(pg.pgdata), "-l", str(pg.pgdata / "server.log"),
             "-o", f"-c listen_addresses='' -c unix_socket_directories='{pg.socket_dir}' -c fsync=off",
             "-w", "start"])
    assert postgres_of(data)


@pytest.mark.parametrize("how", [signal.SIGTERM, signal.SIGKILL], ids=["stop", "kill-9"])
def test_a_server_that_finds_its_postgres_running_owns_it(tmp_path: Path, how: signal.Signals) -> None:
    data = tmp_path / "data"
    first = ServerProcess(data, EMBEDDED).start()  # creates the cluster
    assert first.stop() == 0
    wait_until_gone(data, 0)
    start_by_hand(data)
    server = ServerProcess(data, EMBEDDED).start()
    try:
        assert any("left running by a process that is gone" in line for line in server.log)
        server.stop(how)
        wait_until_gone(data)
    finally:
        server.stop()


def test_second_server_on_the_same_data_dir_is_refused(tmp_path: Path) -> None:
    data = tmp_path / "data"
    server = ServerProcess(data, EMBEDDED).start()
    try:
        result = run_server("--port", "0", "--data-dir", str(data), *EMBEDDED)
        line = one_error(result)
        assert f"data dir {data.resolve()} is in use" in line and f"process {server.proc.pid}" in line
        assert postgres_of(data)  # the first server's database is untouched
    finally:
        assert server.stop() == 0
    wait_until_gone(data, 0)


# -- 3, 4. a failure names what failed -------------------------------------------------------


def test_unreachable_database_names_host_and_port(tmp_path: Path) -> None:
    port = free_port()
    result = run_server("--port", "0", "--data-dir", str(tmp_path), "--database-url",
                        f"postgresql://sessia:secret@127.0.0.1:{port}/sessia")
    line = one_error(result)
    assert f"cannot reach PostgreSQL at 127.0.0.1:{port}: Connection refused: is it running?" in line
    assert "secret" not in result.stderr


def test_missing_database_and_missing_role(tmp_path: Path, pg: EmbeddedPostgres) -> None:
    missing_db = pg.url.replace("/postgres?", "/no_such_db?")
    line = one_error(run_server("--port", "0", "--data-dir", str(tmp_path), "--database-url", missing_db))
    assert "database 'no_such_db' does not exist" in line and str(pg.socket_dir) in line
    assert "createdb no_such_db" in line
    missing_role = pg.url.replace("postgres@", "nobody_here@")
    line = one_error(run_server("--port", "0", "--data-dir", str(tmp_path), "--database-url", missing_role))
    assert "refused role 'nobody_here'" in line and "does not exist" in line


def test_data_dir_that_is_a_file(tmp_path: Path) -> None:
    path = tmp_path / "data"
    path.write_text("not a directory")
    line = one_error(run_server("--port", "0", "--data-dir", str(path), *EMBEDDED))
    assert f"data dir {path} is a file, not a directory" in line


# -- 5, 7. settings and help ------------------------------------------------------------------


def test_bad_setting_is_one_line(tmp_path: Path) -> None:
    result = run_server("--port", "eighty")
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "python -m server: error: argument --port: invalid int value: 'eighty' (see python -m server --help)"
    ]
    result = run_server(env={"SESSIA_NO_DURABLE": "maybe"})
    assert result.returncode == 2
    assert len(result.stderr.splitlines()) == 1
    assert "SESSIA_NO_DURABLE='maybe': expected one of 1, true, yes, on (on) or 0, false, no, off (off)" in result.stderr


def test_help_names_the_admin_commands_and_the_defaults() -> None:
    result = run_server("--help")
    assert result.returncode == 0
    text = " ".join(result.stdout.split())
    assert "python -m server admin COMMAND" in text and "create-user" in text and "--check" in text
    assert "--port PORT TCP port; 0 picks a free one (default 7788)" in text
    assert "--idle-timeout IDLE_TIMEOUT seconds without a frame before a connection is closed (default 600.0)" in text


# -- 8. --check ---------------------------------------------------------------------------------


def test_check_reports_each_part_and_exits(tmp_path: Path, new_database, smtp) -> None:
    result = run_server("--check", "--data-dir", str(tmp_path), "--database-url", new_database(),
                        "--smtp-url", f"smtp://127.0.0.1:{smtp.port}")
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert [line.split(":")[0] for line in lines] == [
        "ok   settings", "ok   tls", "ok   clients", "ok   data dir", "ok   database", "ok   smtp", "ok   media store"
    ]
    database = next(line for line in lines if line.startswith("ok   database"))
    assert "schema version 0 of" in database and "migrations pending (applied at start)" in database
    assert f"127.0.0.1:{smtp.port} answered" in lines[-2]
    assert lines[-1] == f"ok   media store: local disk in {tmp_path / 'media'} is usable"


def test_check_fails_on_an_unreachable_database(tmp_path: Path) -> None:
    port = free_port()
    result = run_server("--check", "--data-dir", str(tmp_path), "--database-url", f"postgresql://x@127.0.0.1:{port}/x",
                        "--smtp-url", f"smtp://127.0.0.1:{free_port()}")
    assert result.returncode == 1
    assert f"FAIL database: cannot reach PostgreSQL at 127.0.0.1:{port}" in result.stdout
    assert "FAIL smtp: cannot reach the SMTP server 127.0.0.1:" in result.stdout
    assert "Traceback" not in result.stdout + result.stderr


def test_check_on_the_embedded_postgres_leaves_nothing_running(tmp_path: Path) -> None:
    data = tmp_path / "data"
    result = run_server("--check", "--data-dir", str(data), "--no-durable")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "ok   database: PostgreSQL" in result.stdout and f"embedded in {data.resolve()}" in result.stdout
    wait_until_gone(data, 0)
