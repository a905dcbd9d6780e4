"""Server configuration: command-line flags, each with a ``SESSIA_*`` environment
variable of the same name (``--database-url`` = ``SESSIA_DATABASE_URL``).
A flag wins over the environment, the environment over the default.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

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
    # limits
    max_frame_size: int = 1 * MiB
    max_media_size: int = 20 * MiB
    max_inflight: int = 64
    idle_timeout: float = 600.0
    read_timeout: float = 30.0
    shutdown_timeout: float = 10.0
    db_pool_size: int = 20
    min_password_length: int = 8
    # argon2id: OWASP's minimum profile (19 MiB, 2 passes, 1 lane).
    argon2_time_cost: int = 2
    argon2_memory_kib: int = 19456
    argon2_parallelism: int = 1
    hash_threads: int = field(default_factory=lambda: os.cpu_count() or 2)
    session_cache_size: int = 200_000
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
    event_keep_days: float = 30.0
    event_keep_per_user: int = 100_000
    event_trim_interval: float = 3600.0
    # email confirmation codes (docs/api/profiles.md)
    email_code_ttl: float = 900.0
    email_code_resend_interval: float = 60.0
    email_code_max_attempts: int = 5

    @property
    def media_dir(self) -> Path:
        return self.data_dir / "media"

    @property
    def max_media_frame(self) -> int:
        """A Media frame holds the bytes base64-encoded (JSON) plus the sessia."""
        return self.max_media_size * 4 // 3 + 64 * 1024

    def redacted(self) -> dict[str, Any]:
        """The effective settings for the start-up log, with secrets hidden."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in ("database_url", "smtp_url") and value:
                value = _redact_url(value)
            elif f.name == "smtp_password" and value:
                value = "***"
            out[f.name] = str(value) if isinstance(value, Path) else value
        return out


def _redact_url(url: str) -> str:
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        creds, host = rest.rsplit("@", 1)
        if ":" in creds:
            return f"{scheme}://{creds.split(':', 1)[0]}:***@{host}"
    return url


def _env(name: str) -> str | None:
    return os.environ.get("SESSIA_" + name.upper().replace("-", "_"))


def _bool_env(name: str) -> bool:
    value = _env(name)
    return value is not None and value.strip().lower() in ("1", "true", "yes", "on")


def build_parser() -> argparse.ArgumentParser:
    d = Config()
    p = argparse.ArgumentParser(
        prog="python -m server",
        description="sessia messaging server. Every flag can also be set by a SESSIA_* environment variable.",
    )
    p.add_argument("--host", default=_env("host") or d.host, help="address to listen on (default %(default)s)")
    p.add_argument("--port", type=int, default=int(_env("port") or d.port), help="TCP port; 0 picks a free one")
    p.add_argument("--data-dir", type=Path, default=Path(_env("data-dir") or d.data_dir),
                   help="directory for media, outbox and the embedded PostgreSQL (default %(default)s)")
    p.add_argument("--database-url", default=_env("database-url"),
                   help="external PostgreSQL URL; without it an embedded PostgreSQL runs under --data-dir")
    p.add_argument("--allow-any-client", action="store_true", default=_bool_env("allow-any-client"),
                   help="development only: accept client builds that are not registered")
    p.add_argument("--clients", type=Path, default=_env("clients"),
                   help="TOML file of known client builds, registered at start")
    p.add_argument("--tls-cert", type=Path, default=_env("tls-cert"),
                   help="PEM certificate chain: serve TLS (without it, passwords and tokens travel in clear)")
    p.add_argument("--tls-key", type=Path, default=_env("tls-key"), help="PEM private key of --tls-cert")
    p.add_argument("--log-level", default=_env("log-level") or d.log_level,
                   choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    p.add_argument("--max-frame-size", type=int, default=int(_env("max-frame-size") or d.max_frame_size),
                   help="largest frame payload in bytes for every request but Media")
    p.add_argument("--max-media-size", type=int, default=int(_env("max-media-size") or d.max_media_size),
                   help="largest uploaded file in bytes")
    p.add_argument("--max-inflight", type=int, default=int(_env("max-inflight") or d.max_inflight),
                   help="requests one connection may have in progress before the server stops reading it")
    p.add_argument("--idle-timeout", type=float, default=float(_env("idle-timeout") or d.idle_timeout),
                   help="seconds without a frame before a connection is closed")
    p.add_argument("--read-timeout", type=float, default=float(_env("read-timeout") or d.read_timeout),
                   help="seconds a started frame may take to arrive completely")
    p.add_argument("--db-pool-size", type=int, default=int(_env("db-pool-size") or d.db_pool_size))
    p.add_argument("--min-password-length", type=int,
                   default=int(_env("min-password-length") or d.min_password_length))
    p.add_argument("--argon2-time-cost", type=int, default=int(_env("argon2-time-cost") or d.argon2_time_cost))
    p.add_argument("--argon2-memory-kib", type=int, default=int(_env("argon2-memory-kib") or d.argon2_memory_kib))
    p.add_argument("--no-durable", dest="durable", action="store_false", default=not _bool_env("no-durable"),
                   help="tests only: run the embedded PostgreSQL without fsync")
    p.add_argument("--smtp-url", type=_smtp_url, default=_env("smtp-url"),
                   help="smtp://host:port (or smtps://) for outgoing mail; without it mail goes to DATA_DIR/outbox")
    p.add_argument("--smtp-starttls", action="store_true", default=_bool_env("smtp-starttls"),
                   help="upgrade the SMTP connection with STARTTLS")
    p.add_argument("--smtp-username", default=_env("smtp-username"))
    p.add_argument("--smtp-password", default=_env("smtp-password"),
                   help="prefer the SESSIA_SMTP_PASSWORD environment variable: flags show in ps")
    p.add_argument("--smtp-timeout", type=float, default=float(_env("smtp-timeout") or d.smtp_timeout),
                   help="seconds the whole exchange with the SMTP server may take (default %(default)s)")
    p.add_argument("--mail-from", default=_env("mail-from") or d.mail_from, help="sender address of outgoing mail")
    p.add_argument("--broker", default=_env("broker"),
                   help="cross-node signals: postgres (LISTEN/NOTIFY, default), nats://host:port, or none")
    p.add_argument("--push-buffer-limit", type=int, default=int(_env("push-buffer-limit") or d.push_buffer_limit),
                   help="unsent bytes a connection may hold before its subscriber is told to resync")
    p.add_argument("--event-keep-days", type=float, default=float(_env("event-keep-days") or d.event_keep_days),
                   help="days events stay in the catch-up log (default %(default)s)")
    p.add_argument("--event-keep-per-user", type=int,
                   default=int(_env("event-keep-per-user") or d.event_keep_per_user),
                   help="newest events kept per user in the catch-up log (default %(default)s)")
    p.add_argument("--event-trim-interval", type=float,
                   default=float(_env("event-trim-interval") or d.event_trim_interval),
                   help="seconds between passes that trim the event log (default %(default)s)")
    p.add_argument("--email-code-ttl", type=float, default=float(_env("email-code-ttl") or d.email_code_ttl),
                   help="seconds an email confirmation code stays valid (default %(default)s)")
    p.add_argument("--email-code-resend-interval", type=float,
                   default=float(_env("email-code-resend-interval") or d.email_code_resend_interval),
                   help="seconds before another code may be sent to the same account (default %(default)s)")
    p.add_argument("--email-code-max-attempts", type=int,
                   default=int(_env("email-code-max-attempts") or d.email_code_max_attempts),
                   help="wrong guesses a code survives before a new one must be requested (default %(default)s)")
    return p


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
    ns = build_parser().parse_args(argv)
    return Config(
        host=ns.host,
        port=ns.port,
        data_dir=ns.data_dir,
        database_url=ns.database_url,
        allow_any_client=ns.allow_any_client,
        clients=ns.clients,
        tls_cert=ns.tls_cert,
        tls_key=ns.tls_key,
        log_level=ns.log_level,
        max_frame_size=ns.max_frame_size,
        max_media_size=ns.max_media_size,
        max_inflight=ns.max_inflight,
        idle_timeout=ns.idle_timeout,
        read_timeout=ns.read_timeout,
        db_pool_size=ns.db_pool_size,
        min_password_length=ns.min_password_length,
        argon2_time_cost=ns.argon2_time_cost,
        argon2_memory_kib=ns.argon2_memory_kib,
        durable=ns.durable,
        smtp_url=ns.smtp_url,
        smtp_starttls=ns.smtp_starttls,
        smtp_username=ns.smtp_username,
        smtp_password=ns.smtp_password,
        smtp_timeout=ns.smtp_timeout,
        mail_from=ns.mail_from,
        broker=ns.broker,
        push_buffer_limit=ns.push_buffer_limit,
        event_keep_days=ns.event_keep_days,
        event_keep_per_user=ns.event_keep_per_user,
        event_trim_interval=ns.event_trim_interval,
        email_code_ttl=ns.email_code_ttl,
        email_code_resend_interval=ns.email_code_resend_interval,
        email_code_max_attempts=ns.email_code_max_attempts,
    )
