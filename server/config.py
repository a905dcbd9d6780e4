"""Server configuration: command-line flags, each with a ``SESSIA_*`` environment
variable of the same name (``--database-url`` = ``SESSIA_DATABASE_URL``), and an
optional TOML file (``--config FILE`` or ``SESSIA_CONFIG``) whose keys are the
flag names, with dashes or underscores (``max-frame-size = 2097152``).

Precedence: a flag wins over the environment, the environment over the file,
the file over the built-in default.  A key the file does not know is an error
at start, so a typo never silently leaves a setting at its default.
"""

from __future__ import annotations

import argparse
import os
import textwrap
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, NoReturn

from protocol.codecs import Codec
from protocol.frames import largest_payload
from protocol.requests.media import MAX_RANGE

from .ratelimit import Rate, rate_arg

MiB = 1 << 20


@dataclass(frozen=True)
class Config:
    host: str = "127.0.0.1"
    port: int = 7788
    data_dir: Path = Path("var")
    database_url: str | None = None
    allow_any_client: bool = False
    clients: Path | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None
    log_level: str = "INFO"
    # written once the server listens (host:port), removed on a clean stop
    ready_file: Path | None = None
    # server processes sharing the port (server/workers.py); 1: this process serves
    workers: int = 1
    # where media bytes live (docs/operations.md, "Media storage")
    media_store: str = "local"
    s3_endpoint: str | None = None
    s3_bucket: str | None = None
    s3_region: str = "us-east-1"
    s3_access_key: str | None = None
    s3_secret_key: str | None = None
    # admin media gc: how old an unused key or an unrecorded blob must be to go
    media_grace: float = 24 * 3600.0
    # limits
    max_frame_size: int = 1 * MiB
    # media (docs/api/media.md): a whole file, a file in one frame, a part, a user's bytes
    max_media_size: int = 2048 * MiB
    max_inline_media: int = 20 * MiB
    upload_part_size: int = 1 * MiB
    upload_ttl: float = 86400.0
    media_quota: int = 10 * 1024 * MiB
    max_open_uploads: int = 16
    max_inflight: int = 64
    max_connection_buffer: int = 4 * MiB
    idle_timeout: float = 600.0
    read_timeout: float = 30.0
    write_timeout: float = 60.0
    shutdown_timeout: float = 10.0
    db_pool_size: int = 20
    min_password_length: int = 8
    # argon2id: OWASP's minimum profile (19 MiB, 2 passes, 1 lane).
    argon2_time_cost: int = 2
    argon2_memory_kib: int = 19456
    argon2_parallelism: int = 1
    # argon2 threads: one core is left to the event loop, so a login storm
    # queues in the hash pool instead of slowing every other request.
    hash_threads: int = field(default_factory=lambda: max(1, (os.cpu_count() or 2) - 1))
    # thumbnail workers (docs/api/media.md): processes, one core is left to the event loop
    thumb_workers: int = field(default_factory=lambda: max(1, (os.cpu_count() or 2) - 1))
    thumb_timeout: float = 10.0
    thumb_memory_mib: int = 1024
    session_cache_size: int = 200_000
    history_cache_mib: float = 64.0
    large_dialog_members: int = 200
    durable: bool = True
    # mail: without smtp_url, messages are written to <data_dir>/outbox/*.eml
    smtp_url: str | None = None
    smtp_starttls: bool = False
    smtp_username: str | None = None
    smtp_password: str | None = None
    smtp_timeout: float = 10.0
    mail_from: str = "sessia <no-reply@localhost>"
    # push and the event log
    broker: str | None = None
    push_buffer_limit: int = 1 * MiB
    socket_send_buffer: int = 0
    event_keep_days: float = 30.0
    event_keep_per_user: int = 100_000
    event_keep_per_dialog: int = 100_000
    event_trim_interval: float = 3600.0
    # email confirmation codes (docs/api/profiles.md)
    email_code_ttl: float = 900.0
    email_code_resend_interval: float = 60.0
    email_code_max_attempts: int = 5
    # operations (docs/operations.md)
    config_file: Path | None = None
    metrics_port: int | None = None
    metrics_host: str = "127.0.0.1"
    client_refresh_interval: float = 30.0
    # abuse limits (docs/security.md); rates are COUNT/SECONDS token buckets, 0 = off
    max_connections_per_ip: int = 256
    rate_auth_account: Rate = Rate(10, 300.0)
    rate_auth_ip: Rate = Rate(100, 60.0)
    rate_registration_account: Rate = Rate(5, 600.0)
    rate_registration_ip: Rate = Rate(30, 600.0)
    rate_email_account: Rate = Rate(20, 600.0)
    rate_email_ip: Rate = Rate(100, 600.0)
    rate_reset_account: Rate = Rate(10, 600.0)
    rate_reset_ip: Rate = Rate(30, 600.0)
    # password reset mails waiting to be sent (docs/api/devices.md)
    max_pending_resets: int = 256
    rate_send_message: Rate = Rate(100, 10.0)
    rate_media: Rate = Rate(30, 60.0)
    rate_search: Rate = Rate(30, 10.0)

    @property
    def media_dir(self) -> Path:
        return self.data_dir / "media"

    def media_problem(self) -> str | None:
        """What is wrong with the media limits, if anything (refused at start)."""
        if not 64 * 1024 <= self.upload_part_size <= 16 * MiB:
            return f"--upload-part-size must be from 65536 (64 KiB) to 16777216 (16 MiB), not {self.upload_part_size}"
        if self.max_media_size < 1 or self.max_inline_media < 1:
            return "--max-media-size and --max-inline-media must be at least 1 byte"
        if self.upload_ttl <= 0 or self.media_quota < 0 or self.max_open_uploads < 1:
            return "--upload-ttl must be positive, --media-quota at least 0, --max-open-uploads at least 1"
        return None

    @property
    def uploads_dir(self) -> Path:
        return self.data_dir / "uploads"

    @property
    def inline_media_limit(self) -> int:
        """The largest file ``Media`` takes and ``GetMedia`` sends whole: the
        inline limit, or the whole-file limit if that is smaller."""
        return min(self.max_inline_media, self.max_media_size)

    @property
    def max_media_frame(self) -> int:
        """A Media frame holds the bytes base64-encoded (JSON) plus the sessia."""
        return largest_payload(self.inline_media_limit, Codec.JSON)

    @property
    def max_part_frame(self) -> int:
        """An UploadPart frame: one part, base64-encoded (JSON), plus the sessia."""
        return largest_payload(self.upload_part_size, Codec.JSON)

    def max_answer_frame(self, codec: int) -> int:
        """The largest frame payload this server sends in ``codec`` (a
        ``GetMedia`` answer of the largest file it sends whole, or of a range
        if that is larger): what docs/protocol.md tells a client to accept."""
        return largest_payload(max(self.inline_media_limit, MAX_RANGE), codec)

    def summary(self) -> list[str]:
        """The start-up log's account of the settings: what an operator checks
        first (where it listens, which database, mail, broker), then only the
        settings that differ from their defaults; secrets masked."""
        default = Config()
        shown = self.redacted()
        database = shown["database_url"] or f"embedded PostgreSQL in {self.data_dir / 'postgres'}"
        lines = [
            f"listening address {self.host}:{self.port}, data dir {self.data_dir},"
            f" TLS {'on' if self.tls_cert else 'off'}",
            f"database: {database}",
            f"mail: {shown['smtp_url'] or 'outbox ' + str(self.data_dir / 'outbox')};"
            f" broker: {shown['broker'] or 'postgres (LISTEN/NOTIFY)'}",
            f"media: {self.media_description()}",
        ]
        ignored = {"host", "port", "data_dir", "database_url", "smtp_url", "broker", "config_file", "tls_cert",
                   "media_store", "s3_endpoint", "s3_bucket", "s3_region", "s3_access_key", "s3_secret_key"}
        changed = [
            f"{f.name}={shown[f.name]}"
            for f in fields(self)
            if f.name not in ignored and getattr(self, f.name) != getattr(default, f.name)
        ]
        lines.append("settings not at their default: " + (", ".join(changed) if changed else "none"))
        return ["configuration: " + line for line in lines]

    def media_description(self) -> str:
        """Where media bytes live, in words for the log (no credentials)."""
        if self.media_store == "s3":
            return f"S3 bucket {self.s3_bucket!r} at {_redact_url(self.s3_endpoint or '?')} (region {self.s3_region})"
        return f"local disk in {self.media_dir}"

    def redacted(self) -> dict[str, Any]:
        """The effective settings for the start-up log, with secrets hidden."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in ("database_url", "smtp_url", "broker", "s3_endpoint") and value:
                value = _redact_url(value)
            elif f.name in _SECRETS and value:
                value = "***"
            out[f.name] = str(value) if isinstance(value, Path | Rate) else value
        return out


#: Settings never shown: passwords, and both halves of the object store's
#: credentials (an access key id alone still names whose account it is).
_SECRETS = frozenset(("smtp_password", "s3_access_key", "s3_secret_key"))


def _redact_url(url: str) -> str:
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        creds, host = rest.rsplit("@", 1)
        if ":" in creds:
            return f"{scheme}://{creds.split(':', 1)[0]}:***@{host}"
    return url


def _env(name: str) -> str | None:
    return os.environ.get("SESSIA_" + name.upper().replace("-", "_"))


_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


def apply_environment(parser: argparse.ArgumentParser) -> None:
    """``SESSIA_<FLAG>`` becomes the flag's default (flag > environment > file >
    default).  Values stay strings, so argparse converts and checks them with
    the flag's own type when it parses: a bad value is a usage error naming
    the flag, like a bad flag value."""
    for action in parser._actions:
        for opt in action.option_strings:
            value = _env(opt[2:]) if opt.startswith("--") and action.dest not in ("help", "config_file") else None
            if value is None:
                continue
            if action.nargs == 0:  # a switch: SESSIA_ALLOW_ANY_CLIENT=1
                word = value.strip().lower()
                if word not in _TRUE + _FALSE:
                    parser.error(
                        f"SESSIA_{opt[2:].upper().replace('-', '_')}={value!r}: expected one of"
                        f" {', '.join(_TRUE)} (on) or {', '.join(_FALSE)} (off)"
                    )
                action.default = action.const if word in _TRUE else not action.const
            else:
                action.default = value


class Parser(argparse.ArgumentParser):
    """argparse, but a usage error is the one line that matters (and where to
    read more), not the whole usage before it."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


class HelpFormatter(argparse.HelpFormatter):
    """Every flag with a default shows it, whether or not its help says so."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        if (
            "%(default)" not in text
            and action.nargs != 0
            and action.default not in (None, argparse.SUPPRESS)
            and action.option_strings
        ):
            text += " (default %(default)s)"
        return text


EPILOG = """operator commands:
  python -m server admin COMMAND   create-user, reset-password, revoke-sessions,
                                   clients list|add|remove, schema, migrate, stats,
                                   media gc|delete
                                   (python -m server admin --help)
  python -m server --check         check settings, database and SMTP, then exit

docs/operations.md describes every setting."""


def build_parser(*, add_help: bool = True) -> argparse.ArgumentParser:
    d = Config()
    p = Parser(
        prog="python -m server",
        description="sessia messaging server. Every flag can also be set by a SESSIA_* environment variable"
        " or a key of the --config file (flag > environment > file > default).",
        add_help=add_help,
        allow_abbrev=False,
        formatter_class=HelpFormatter,
    )
    p.add_argument("--config", dest="config_file", type=Path, default=_env("config"),
                   help="TOML file of settings: keys are flag names (see docs/operations.md)")
    p.add_argument("--host", default=d.host, help="address to listen on (default %(default)s)")
    p.add_argument("--port", type=int, default=d.port, help="TCP port; 0 picks a free one")
    p.add_argument("--data-dir", type=Path, default=d.data_dir,
                   help="directory for media, outbox and the embedded PostgreSQL (default %(default)s)")
    p.add_argument("--database-url", default=None,
                   help="external PostgreSQL URL; without it an embedded PostgreSQL runs under --data-dir")
    p.add_argument("--allow-any-client", action="store_true", default=False,
                   help="development only: accept client builds that are not registered")
    p.add_argument("--clients", type=Path, default=None,
                   help="TOML file of known client builds, registered at start")
    p.add_argument("--tls-cert", type=Path, default=None,
                   help="PEM certificate chain: serve TLS (without it, passwords and tokens travel in clear)")
    p.add_argument("--tls-key", type=Path, default=None, help="PEM private key of --tls-cert")
    p.add_argument("--ready-file", type=Path, default=None,
                   help="once listening, write HOST:PORT and a newline to this file (atomically: a temporary"
                   " file renamed), so a test learns the port --port 0 chose and that the server is ready;"
                   " removed on a clean stop")
    p.add_argument("--workers", type=_positive, default=d.workers,
                   help="server processes that share the port (SO_REUSEPORT), the database and the broker, started"
                   " and restarted by this one; 1: this process serves (default %(default)s)")
    p.add_argument("--log-level", default=d.log_level,
                   choices=["DEBUG", "INFO", "WARNING", "ERROR"], help="log threshold (default %(default)s)")
    p.add_argument("--media-store", default=d.media_store, choices=["local", "s3"],
                   help="where media bytes live: local (DATA_DIR/media, one node) or s3 (a bucket every node"
                   " shares; needs the --s3-* settings)")
    p.add_argument("--s3-endpoint", default=None,
                   help="URL of the S3 API, e.g. https://s3.eu-west-1.amazonaws.com or http://127.0.0.1:8333")
    p.add_argument("--s3-bucket", default=None, help="bucket for media bytes; it must exist")
    p.add_argument("--s3-region", default=d.s3_region, help="region the requests are signed for")
    p.add_argument("--s3-access-key", default=None, help="access key id (never logged)")
    p.add_argument("--s3-secret-key", default=None,
                   help="secret access key (never logged); prefer the SESSIA_S3_SECRET_KEY environment variable"
                   " or the --config file: flags show in ps")
    p.add_argument("--media-grace", type=duration_arg, default="24h", metavar="DURATION",
                   help="admin media gc: a key never attached, and bytes no key names, are kept this long after"
                   " the upload (seconds, or with a unit: 90m, 24h, 7d)")
    p.add_argument("--max-frame-size", type=int, default=d.max_frame_size,
                   help="largest frame payload in bytes for every request but Media and UploadPart")
    p.add_argument("--max-media-size", type=int, default=d.max_media_size,
                   help="largest file in bytes, uploaded in parts (default %(default)s: 2 GiB)")
    p.add_argument("--max-inline-media", type=int, default=d.max_inline_media,
                   help="largest file in bytes uploaded in one Media frame or sent whole by GetMedia;"
                   " larger files go in parts and ranges (default %(default)s: 20 MiB)")
    p.add_argument("--upload-part-size", type=int, default=d.upload_part_size,
                   help="bytes per part of an upload in parts, 64 KiB to 16 MiB (default %(default)s)")
    p.add_argument("--upload-ttl", type=float, default=d.upload_ttl,
                   help="seconds an upload in parts may take from UploadStart; then it and its staged"
                   " bytes are removed (default %(default)s)")
    p.add_argument("--media-quota", type=int, default=d.media_quota,
                   help="bytes of files one account may hold, unfinished uploads included; 0 = no quota"
                   " (default %(default)s: 10 GiB)")
    p.add_argument("--max-open-uploads", type=int, default=d.max_open_uploads,
                   help="unfinished uploads one account may have at once (default %(default)s)")
    p.add_argument("--max-inflight", type=int, default=d.max_inflight,
                   help="requests one connection may have in progress before the server stops reading it")
    p.add_argument("--max-connection-buffer", type=int, default=d.max_connection_buffer,
                   help="bytes of requests in progress and answers not yet sent one connection may hold before"
                   " the server stops reading and starting its requests (default %(default)s)")
    p.add_argument("--thumb-workers", type=int, default=d.thumb_workers,
                   help="processes that make thumbnails, so at most this many cores decode images at once"
                   " (default: cores - 1, at least 1)")
    p.add_argument("--thumb-timeout", type=float, default=d.thumb_timeout,
                   help="seconds one image may take to thumbnail before its worker is killed and the image"
                   " refused (default %(default)s)")
    p.add_argument("--thumb-memory-mib", type=int, default=d.thumb_memory_mib,
                   help="address space of each thumbnail worker in MiB; an image that needs more is refused"
                   " (default %(default)s)")
    p.add_argument("--idle-timeout", type=float, default=d.idle_timeout,
                   help="seconds without a frame before a connection is closed")
    p.add_argument("--read-timeout", type=float, default=d.read_timeout,
                   help="seconds a started frame may take to arrive completely")
    p.add_argument("--write-timeout", type=float, default=d.write_timeout,
                   help="seconds a connection may leave its unsent answers and pushes unread before it is closed"
                   " (default %(default)s)")
    p.add_argument("--db-pool-size", type=int, default=d.db_pool_size,
                   help="most PostgreSQL connections this process opens (default %(default)s)")
    p.add_argument("--session-cache-size", type=int,
                   default=d.session_cache_size,
                   help="sessions kept in memory; beyond it the oldest are re-read when used (default %(default)s)")
    p.add_argument("--large-dialog-members", type=int, default=d.large_dialog_members,
                   help="members above which a dialog keeps its own event log, numbered by Pts, instead of a row in"
                        " every member's log per event (default %(default)s)")
    p.add_argument("--history-cache-mib", type=float, default=d.history_cache_mib,
                   help="MiB of memory for the newest pages of recently read dialogs; 0: none (default %(default)s)")
    p.add_argument("--shutdown-timeout", type=float,
                   default=d.shutdown_timeout,
                   help="seconds in-flight requests get to finish at shutdown (default %(default)s)")
    p.add_argument("--min-password-length", type=int,
                   default=d.min_password_length,
                   help="shortest password accepted at registration and change (default %(default)s)")
    p.add_argument("--argon2-time-cost", type=int, default=d.argon2_time_cost,
                   help="argon2id passes per password hash (default %(default)s)")
    p.add_argument("--argon2-memory-kib", type=int, default=d.argon2_memory_kib,
                   help="argon2id memory per password hash in KiB (default %(default)s)")
    p.add_argument("--no-durable", dest="durable", action="store_false", default=True,
                   help="tests only: run the embedded PostgreSQL without fsync")
    p.add_argument("--smtp-url", type=_smtp_url, default=None,
                   help="smtp://host:port (or smtps://) for outgoing mail; without it mail goes to DATA_DIR/outbox")
    p.add_argument("--smtp-starttls", action="store_true", default=False,
                   help="upgrade the SMTP connection with STARTTLS")
    p.add_argument("--smtp-username", default=None, help="SMTP login, if the server wants one")
    p.add_argument("--smtp-password", default=None,
                   help="prefer the SESSIA_SMTP_PASSWORD environment variable: flags show in ps")
    p.add_argument("--smtp-timeout", type=float, default=d.smtp_timeout,
                   help="seconds the whole exchange with the SMTP server may take (default %(default)s)")
    p.add_argument("--mail-from", default=d.mail_from, help="sender address of outgoing mail")
    p.add_argument("--broker", default=None,
                   help="cross-node signals: postgres (LISTEN/NOTIFY, default), nats://host:port, or none")
    p.add_argument("--push-buffer-limit", type=int, default=d.push_buffer_limit,
                   help="unsent bytes a connection may hold before its subscriber is told to resync")
    p.add_argument("--socket-send-buffer", type=int,
                   default=d.socket_send_buffer,
                   help="kernel send buffer per connection in bytes (0: the OS default, which grows to megabytes)")
    p.add_argument("--event-keep-days", type=float, default=d.event_keep_days,
                   help="days events stay in the catch-up log (default %(default)s)")
    p.add_argument("--event-keep-per-user", type=int,
                   default=d.event_keep_per_user,
                   help="newest events kept per user in the catch-up log (default %(default)s)")
    p.add_argument("--event-keep-per-dialog", type=int,
                   default=d.event_keep_per_dialog,
                   help="newest events kept in each large dialog's own log (default %(default)s)")
    p.add_argument("--event-trim-interval", type=float,
                   default=d.event_trim_interval,
                   help="seconds between passes that trim the event log (default %(default)s)")
    p.add_argument("--email-code-ttl", type=float, default=d.email_code_ttl,
                   help="seconds an email confirmation code stays valid (default %(default)s)")
    p.add_argument("--email-code-resend-interval", type=float,
                   default=d.email_code_resend_interval,
                   help="seconds before another code may be sent to the same account (default %(default)s)")
    p.add_argument("--email-code-max-attempts", type=int,
                   default=d.email_code_max_attempts,
                   help="wrong guesses a code survives before a new one must be requested (default %(default)s)")
    p.add_argument("--max-connections-per-ip", type=int,
                   default=d.max_connections_per_ip,
                   help="open connections one client address may hold; more are refused with 429 (0 = no limit)")
    p.add_argument("--rate-auth-account", type=rate_arg, default=d.rate_auth_account,
                   help="password attempts per account, Auth by password and ChangeUser oldPass together:"
                   " COUNT/SECONDS, 0 = no limit (default %(default)s)")
    p.add_argument("--rate-auth-ip", type=rate_arg, default=d.rate_auth_ip,
                   help="Auth by password per client address: COUNT/SECONDS, 0 = no limit (default %(default)s)")
    p.add_argument("--rate-registration-account", type=rate_arg, default=d.rate_registration_account,
                   help="Registration per email address: COUNT/SECONDS, 0 = no limit (default %(default)s)")
    p.add_argument("--rate-registration-ip", type=rate_arg, default=d.rate_registration_ip,
                   help="Registration per client address: COUNT/SECONDS, 0 = no limit (default %(default)s)")
    p.add_argument("--rate-email-account", type=rate_arg, default=d.rate_email_account,
                   help="Email (send or confirm a code) and ChangeUser email per account:"
                   " COUNT/SECONDS, 0 = no limit (default %(default)s)")
    p.add_argument("--rate-email-ip", type=rate_arg, default=d.rate_email_ip,
                   help="Email per client address: COUNT/SECONDS, 0 = no limit (default %(default)s)")
    p.add_argument("--rate-reset-account", type=rate_arg, default=d.rate_reset_account,
                   help="ResetPassword (ask for a code or use one) per email address: COUNT/SECONDS,"
                   " 0 = no limit (default %(default)s)")
    p.add_argument("--rate-reset-ip", type=rate_arg, default=d.rate_reset_ip,
                   help="ResetPassword per client address: COUNT/SECONDS, 0 = no limit (default %(default)s)")
    p.add_argument("--max-pending-resets", type=int, default=d.max_pending_resets,
                   help="reset code mails waiting to be sent; beyond it ResetPassword answers 503 (default %(default)s)")
    p.add_argument("--rate-send-message", type=rate_arg, default=d.rate_send_message,
                   help="SendMessage (MarkRead and Typing too) per account: COUNT/SECONDS, 0 = no limit (default %(default)s)")
    p.add_argument("--rate-media", type=rate_arg, default=d.rate_media,
                   help="Media uploads and UploadStart per account: COUNT/SECONDS, 0 = no limit (default %(default)s)")
    p.add_argument("--rate-search", type=rate_arg, default=d.rate_search,
                   help="Search per account: COUNT/SECONDS, 0 = no limit (default %(default)s)")
    p.add_argument("--metrics-port", type=int, default=None,
                   help="serve Prometheus metrics over HTTP on this port (default off; 0 picks a free one)")
    p.add_argument("--metrics-host", default=d.metrics_host,
                   help="address of the metrics listener (default %(default)s)")
    p.add_argument("--client-refresh-interval", type=float,
                   default=d.client_refresh_interval,
                   help="seconds between reloads of the known client builds from the database (default %(default)s)")
    apply_environment(p)
    return p


#: Flags that cannot be set from the file itself.
_NOT_IN_FILE = frozenset(("config", "help"))


def read_config_file(path: Path) -> dict[str, Any]:
    """The file's settings, or a ValueError naming the file and what is wrong."""
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except OSError as exc:
        raise ValueError(f"config file {path}: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"config file {path}: not valid TOML: {exc}") from None


def apply_config_file(parser: argparse.ArgumentParser, values: dict[str, Any], path: Path) -> None:
    """Make the file's values the parser's defaults, except where the
    environment already set one (flag > environment > file > default)."""
    by_flag = {
        opt[2:]: action
        for action in parser._actions
        for opt in action.option_strings
        if opt.startswith("--") and opt[2:] not in _NOT_IN_FILE
    }
    for key, value in values.items():
        flag = key.replace("_", "-")
        action = by_flag.get(flag)
        if action is None:
            raise ValueError(f"config file {path}: unknown setting {key!r}")
        if _env(flag) is not None:
            continue
        action.default = _file_value(action, value, f"config file {path}: {key}")


def _file_value(action: argparse.Action, value: Any, where: str) -> Any:
    """Check and convert one file value as the flag would have been."""
    if action.nargs == 0:  # --some-switch: true or false
        if not isinstance(value, bool):
            raise ValueError(f"{where}: expected true or false")
        return action.const if value else not action.const
    if isinstance(value, bool):
        raise ValueError(f"{where}: expected a value, not true/false")
    if action.type is int:
        if not isinstance(value, int):
            raise ValueError(f"{where}: expected an integer")
    elif action.type is _positive:
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"{where}: expected a whole number, 1 or more")
    elif action.type is float:
        if not isinstance(value, int | float):
            raise ValueError(f"{where}: expected a number")
        value = float(value)
    elif not isinstance(value, str):
        raise ValueError(f"{where}: expected a string")
    elif callable(action.type):  # every option of this parser converts with a function
        try:
            value = action.type(value)
        except (argparse.ArgumentTypeError, ValueError) as exc:
            raise ValueError(f"{where}: {exc}") from None
    if action.choices is not None and value not in action.choices:
        raise ValueError(f"{where}: expected one of {', '.join(map(str, action.choices))}")
    return value


def config_path(argv: Sequence[str] | None) -> Path | None:
    """``--config`` from ``argv`` (wherever it stands) or ``SESSIA_CONFIG``."""
    pre = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    pre.add_argument("--config", type=Path, default=_env("config"))
    ns, _ = pre.parse_known_args(argv)
    path: Path | None = ns.config
    return path


def prepare_parser(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> None:
    """Load ``--config`` (if any) into ``parser``'s defaults; a bad file is a usage error."""
    path = config_path(argv)
    if path is not None:
        try:
            apply_config_file(parser, read_config_file(path), path)
        except ValueError as exc:
            parser.error(str(exc))


def config_from_namespace(ns: argparse.Namespace) -> Config:
    """Every parsed flag whose destination is a Config field."""
    return Config(**{f.name: getattr(ns, f.name) for f in fields(Config) if hasattr(ns, f.name)})


def _positive(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {value!r}") from None
    if number < 1:
        raise argparse.ArgumentTypeError(f"expected 1 or more, got {number}")
    return number


_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def duration_arg(value: str) -> float:
    """Seconds from ``90``, ``90s``, ``15m``, ``24h`` or ``7d``; never negative."""
    text = value.strip().lower()
    scale = _UNITS.get(text[-1:], None)
    number = text[:-1] if scale is not None else text
    try:
        seconds = float(number) * (scale or 1.0)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a duration (like 3600, 90m, 24h or 7d)") from None
    if seconds < 0 or seconds != seconds:
        raise argparse.ArgumentTypeError(f"{value!r}: a duration cannot be negative")
    return seconds


def _smtp_url(value: str) -> str:
    """``smtp://host[:port]`` or ``smtps://host[:port]``, refused at start when malformed."""
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018  (raises ValueError for a bad port)
    except ValueError:
        raise argparse.ArgumentTypeError("not a valid SMTP URL (expected smtp://host[:port])") from None
    if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
        raise argparse.ArgumentTypeError("expected smtp://host[:port] or smtps://host[:port]")
    return value


def parse_args(argv: Sequence[str] | None = None) -> Config:
    return parse_command_line(argv)[0]


def parse_command_line(argv: Sequence[str] | None = None) -> tuple[Config, bool]:
    """The server's settings, and whether ``--check`` asks only to check them."""
    parser = build_parser()
    parser.epilog = EPILOG
    parser.description = textwrap.fill(parser.description or "", 79)
    parser.formatter_class = _EpilogFormatter
    parser.add_argument("--check", action="store_true",
                        help="check the settings, the database and the SMTP server, print one line per check,"
                        " exit 0 if all passed and 1 otherwise; starts nothing that stays running")
    prepare_parser(parser, argv)
    ns = parser.parse_args(argv)
    return config_from_namespace(ns), bool(ns.check)


class _EpilogFormatter(HelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Keeps the epilog's lines as written."""
