"""Settings: flag > SESSIA_* environment > --config file > default; unknown or
mistyped file keys stop the start; the effective settings are logged, redacted."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from server.config import Config, parse_args

from .support import ServerProcess


@pytest.fixture(autouse=True)
def no_sessia_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("SESSIA_"):
            monkeypatch.delenv(name)


def toml(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "sessia.toml"
    path.write_text(text)
    return path


def test_precedence_flag_over_environment_over_file_over_default(tmp_path: Path, monkeypatch) -> None:
    path = toml(tmp_path, "port = 1001\nidle-timeout = 11\nmax_inflight = 7\nlog-level = 'DEBUG'\n")
    monkeypatch.setenv("SESSIA_PORT", "2002")
    monkeypatch.setenv("SESSIA_IDLE_TIMEOUT", "22")
    config = parse_args(["--config", str(path), "--port", "3003"])
    assert config.port == 3003  # flag
    assert config.idle_timeout == 22.0  # environment over file
    assert config.max_inflight == 7  # file over default
    assert config.log_level == "DEBUG"
    assert config.read_timeout == Config().read_timeout  # default
    assert config.config_file == path


def test_config_file_from_environment(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("SESSIA_CONFIG", str(toml(tmp_path, "max-frame-size = 4096\n")))
    assert parse_args([]).max_frame_size == 4096


def test_file_values_take_the_flags_types(tmp_path: Path) -> None:
    path = toml(
        tmp_path,
        "allow-any-client = true\nno_durable = true\nclients = 'known.toml'\nidle_timeout = 5\n"
        "smtp-url = 'smtp://127.0.0.1:2525'\nmetrics-port = 9100\nclient-refresh-interval = 0.5\n",
    )
    config = parse_args(["--config", str(path)])
    assert config.allow_any_client is True
    assert config.durable is False
    assert config.clients == Path("known.toml")
    assert config.idle_timeout == 5.0 and isinstance(config.idle_timeout, float)
    assert config.smtp_url == "smtp://127.0.0.1:2525"
    assert config.metrics_port == 9100
    assert config.client_refresh_interval == 0.5


@pytest.mark.parametrize(
    "text, message",
    [
        ("prot = 1\n", "unknown setting 'prot'"),
        ("config = 'other.toml'\n", "unknown setting 'config'"),
        ("port = 'eighty'\n", "port: expected an integer"),
        ("port = 80.5\n", "port: expected an integer"),
        ("idle-timeout = 'soon'\n", "idle-timeout: expected a number"),
        ("allow-any-client = 1\n", "allow-any-client: expected true or false"),
        ("max-inflight = true\n", "max-inflight: expected a value, not true/false"),
        ("log-level = 'LOUD'\n", "log-level: expected one of DEBUG, INFO, WARNING, ERROR"),
        ("smtp-url = 'http://x'\n", "smtp-url: expected smtp://host[:port]"),
        ("host = 127\n", "host: expected a string"),
        ("port = \n", "not valid TOML"),
    ],
)
def test_bad_file_is_a_usage_error(tmp_path: Path, text: str, message: str, capsys) -> None:
    path = toml(tmp_path, text)
    with pytest.raises(SystemExit) as exit_info:
        parse_args(["--config", str(path)])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert f"error: config file {path}: " in err
    assert message in err


def test_missing_file_is_a_usage_error(tmp_path: Path, capsys) -> None:
    with pytest.raises(SystemExit):
        parse_args(["--config", str(tmp_path / "absent.toml")])
    assert "absent.toml: No such file or directory" in capsys.readouterr().err


def test_redacted_hides_secrets() -> None:
    config = Config(
        database_url="postgresql://sessia:s3cret@db:5432/sessia",
        smtp_url="smtp://mailer:pw@mail:25",
        smtp_password="hunter2",
        broker="nats://user:natspw@nats:4222",
    )
    shown = config.redacted()
    assert "s3cret" not in str(shown) and "hunter2" not in str(shown)
    assert "natspw" not in str(shown) and ":pw@" not in str(shown)
    assert shown["database_url"] == "postgresql://sessia:***@db:5432/sessia"
    assert shown["smtp_password"] == "***"


def test_redacted_hides_the_object_store_credentials() -> None:
    config = Config(media_store="s3", s3_endpoint="http://k:endpointpw@127.0.0.1:8333", s3_bucket="b",
                    s3_access_key="AKIAEXAMPLE", s3_secret_key="wJalrXUtnFEMI")
    shown = config.redacted()
    assert shown["s3_access_key"] == shown["s3_secret_key"] == "***"
    text = "\n".join(config.summary()) + str(shown)
    assert "AKIAEXAMPLE" not in text and "wJalrXUtnFEMI" not in text and "endpointpw" not in text
    assert "configuration: media: S3 bucket 'b' at http://k:***@127.0.0.1:8333 (region us-east-1)" in text


@pytest.mark.parametrize(("value", "seconds"), [("90", 90.0), ("90s", 90.0), ("15m", 900.0), ("24h", 86400.0),
                                                 ("7d", 604800.0), ("0", 0.0), ("1.5h", 5400.0)])
def test_media_grace_takes_a_duration(value: str, seconds: float) -> None:
    assert parse_args(["--media-grace", value]).media_grace == seconds


@pytest.mark.parametrize("value", ["-1h", "soon", "h", ""])
def test_media_grace_refuses_what_is_not_a_duration(value: str, capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        parse_args(["--media-grace", value])
    assert exit_info.value.code == 2
    assert "argument --media-grace: " in capsys.readouterr().err


def test_media_grace_defaults_to_a_day() -> None:
    assert parse_args([]).media_grace == 24 * 3600


def test_server_logs_effective_settings_from_file(start_server, tmp_path: Path) -> None:
    path = toml(tmp_path, "idle-timeout = 77\nsmtp-password = 'hunter2'\nmax_inflight = 9\n")
    server: ServerProcess = start_server("--config", str(path))
    lines = [line for line in server.log if "configuration: " in line]
    assert len(lines) == 5 and all(len(line) < 400 for line in lines)
    assert any("database: postgresql://postgres@/sessia_test_" in line for line in lines)
    assert any(f"media: local disk in {server.data_dir / 'media'}" in line for line in lines)
    changed = next(line for line in lines if "settings not at their default: " in line)
    assert "idle_timeout=77.0" in changed and "max_inflight=9" in changed and "smtp_password=***" in changed
    assert "None" not in "\n".join(lines)
    assert "hunter2" not in "\n".join(server.log)
    assert any(f"settings read from {path}" in line for line in server.log)


def test_server_refuses_to_start_on_unknown_key(start_server, tmp_path: Path) -> None:
    path = toml(tmp_path, "max-frame-sise = 1\n")
    with pytest.raises(RuntimeError) as exc_info:
        start_server("--config", str(path))
    assert re.search(rf"error: config file {re.escape(str(path))}: unknown setting 'max-frame-sise'", str(exc_info.value))


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("SESSIA_PORT", "abc", "argument --port: invalid int value: 'abc'"),
        ("SESSIA_RATE_MEDIA", "lots", "argument --rate-media: expected COUNT/SECONDS"),
        ("SESSIA_SMTP_URL", "ftp://mail", "argument --smtp-url: expected smtp://host"),
    ],
)
def test_bad_environment_value_is_a_usage_error(monkeypatch, capsys, variable: str, value: str, message: str) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(SystemExit) as exit_info:
        parse_args([])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_environment_switches_and_typed_values(monkeypatch) -> None:
    monkeypatch.setenv("SESSIA_NO_DURABLE", "yes")
    monkeypatch.setenv("SESSIA_ALLOW_ANY_CLIENT", "0")
    monkeypatch.setenv("SESSIA_IDLE_TIMEOUT", "12.5")
    monkeypatch.setenv("SESSIA_DATA_DIR", "/srv/sessia")
    config = parse_args([])
    assert (config.durable, config.allow_any_client, config.idle_timeout, config.data_dir) == (
        False, False, 12.5, Path("/srv/sessia")
    )
    assert parse_args(["--idle-timeout", "3"]).idle_timeout == 3.0  # the flag still wins
