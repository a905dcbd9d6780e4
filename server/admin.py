"""Operator commands: ``python -m server admin <command> [--help]``.

They read the same settings as the server (flags, ``SESSIA_*`` variables,
``--config`` file) to find the database: ``--database-url``, or the embedded
PostgreSQL under ``--data-dir``, which is started for the command when it is
not running and stopped again afterwards unless something else (a server)
connected to it meanwhile.  A command never creates a database: a
``--data-dir`` with none is an error (a typo must not yield an empty one).

Changes reach running servers at once through the broker (``--broker``):
revoked sessions on the ``sessions`` channel, client builds on ``clients``.
Servers also re-read the client builds every ``--client-refresh-interval``.

Exit codes: 0 done, 1 failed (nothing found, conflict, database down), 2 usage.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import getpass
import json
import sys
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import asdict
from datetime import UTC, datetime

import asyncpg

from protocol.requests.accounts import MAX_PASSWORD_LENGTH, check_email, check_login, check_password
from protocol.status import SessiaError
from storage import clients as client_store
from storage import sessions as session_store
from storage import stats as stats_store
from storage import users as user_store
from storage.db import Database
from storage.embedded import EmbeddedPostgres
from storage.errors import StorageError
from storage.migrate import applied_versions, available, current_version, migrate, pending

from . import accounts, admin_media
from .broker import LocalBroker, NatsBroker, make_broker
from .config import Config, apply_config_file, build_parser, config_from_namespace, config_path, read_config_file
from .passwords import Passwords
from .sessions import Revocation, Session
from .storage_errors import status_for

PROG = "python -m server admin"
#: Server flags shown in the commands' --help; the others are accepted but not listed.
SHOWN_SETTINGS = frozenset((
    "--config", "--database-url", "--data-dir", "--broker", "--clients", "--min-password-length",
    "--argon2-time-cost", "--argon2-memory-kib", "--media-store", "--s3-endpoint", "--s3-bucket", "--s3-region",
    "--s3-access-key", "--s3-secret-key", "--media-grace",
))


class Failure(Exception):
    """A command could not do its job: message on stderr, exit code 1."""


class UsageError(Exception):
    """Bad input the parser could not catch: message on stderr, exit code 2."""


# -- the command line ---------------------------------------------------------------------


def _settings_parser(argv: Sequence[str], *, suppress_defaults: bool) -> argparse.ArgumentParser:
    """The server's flags as a parent parser.  On the command's own parser
    they carry no defaults, so that a flag given before the command is not
    overwritten by the default of the same flag after it."""
    parser = build_parser(add_help=False)
    path = config_path(argv)
    if path is not None and not suppress_defaults:
        try:
            apply_config_file(parser, read_config_file(path), path)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
    for action in parser._actions:
        if suppress_defaults:
            action.default = argparse.SUPPRESS  # and listed once, in `admin --help`
        if suppress_defaults or not set(action.option_strings) & SHOWN_SETTINGS:
            action.help = argparse.SUPPRESS
    return parser


def build_admin_parser(argv: Sequence[str] = ()) -> argparse.ArgumentParser:
    top = _settings_parser(argv, suppress_defaults=False)
    sub_settings = _settings_parser(argv, suppress_defaults=True)
    p = argparse.ArgumentParser(
        prog=PROG,
        parents=[top],
        allow_abbrev=False,
        description="Operator commands. They take the server's settings (flags before or after the command, "
        "SESSIA_* variables, --config FILE) to find the database; every server flag is accepted "
        "(see python -m server --help).",
        epilog="Exit codes: 0 done, 1 failed, 2 usage error. See docs/operations.md.",
    )
    commands = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(
        name: str,
        help: str,
        description: str,
        parent: argparse._SubParsersAction[argparse.ArgumentParser] = commands,
    ) -> argparse.ArgumentParser:
        return parent.add_parser(
            name, help=help, description=description, parents=[sub_settings], allow_abbrev=False,
            epilog=f"Server settings (--database-url, --data-dir, --config, ...) may also follow the command: "
            f"see {PROG} --help.",
        )

    c = command("create-user", "create an account", "Create an account. The password is read from stdin "
                "(--password-stdin) or asked on the terminal; never give it as an argument.")
    c.add_argument("login", metavar="LOGIN")
    c.add_argument("email", metavar="EMAIL")
    c.add_argument("--password-stdin", action="store_true", help="read the password from the first line of stdin")
    c.add_argument("--confirmed", action="store_true", help="mark the email address as already confirmed")

    c = command("reset-password", "set a new password and revoke every session",
                "Set a new password for an account (found by login or email) and log out all its devices.")
    c.add_argument("account", metavar="LOGIN_OR_EMAIL")
    c.add_argument("--password-stdin", action="store_true", help="read the password from the first line of stdin")

    c = command("revoke-sessions", "log an account out of every device",
                "Revoke every session of an account (found by login or email); running servers refuse "
                "its tokens at once and close its connections.")
    c.add_argument("account", metavar="LOGIN_OR_EMAIL")

    clients = command("clients", "known client builds (list, add, remove)",
                      "The client builds the server accepts (spec decision 11). Running servers pick up "
                      "changes at once through the broker, at the latest after --client-refresh-interval.")
    client_commands = clients.add_subparsers(dest="clients_command", required=True, metavar="ACTION")
    command("list", "show the known builds", "Show the known client builds.", client_commands)
    c = command("add", "accept a build (or change its minimum version)",
                "Accept a client build, or change the minimum version of a known one.", client_commands)
    c.add_argument("nameclient", metavar="NAMECLIENT")
    c.add_argument("hashcert", metavar="HASHCERT")
    c.add_argument("--min-version", type=int, default=0, help="refuse older versions of this build (default 0: any)")
    c = command("remove", "stop accepting a build",
                "Stop accepting a client build, or every build of NAMECLIENT without HASHCERT. Sessions "
                "opened with it are refused from then on.", client_commands)
    c.add_argument("nameclient", metavar="NAMECLIENT")
    c.add_argument("hashcert", metavar="HASHCERT", nargs="?")

    users = command("users", "accounts (list, show)", "Look accounts up: by a part of their login, email or "
                    "nickname, or one account with its live sessions.")
    user_commands = users.add_subparsers(dest="users_command", required=True, metavar="ACTION")
    c = command("list", "list accounts", "List accounts in id order with their number of live sessions.",
                user_commands)
    c.add_argument("--search", metavar="TEXT", help="only accounts whose login, email or nickname contains TEXT")
    c.add_argument("--limit", type=int, default=100, help="at most this many (default 100)")
    c = command("show", "one account and its live sessions",
                "Show one account (found by login or email) and its live sessions.", user_commands)
    c.add_argument("account", metavar="LOGIN_OR_EMAIL")

    sessions = command("sessions", "device sessions (list, revoke)",
                       "The live sessions of an account, and revoking one of them.")
    session_commands = sessions.add_subparsers(dest="sessions_command", required=True, metavar="ACTION")
    c = command("list", "an account's live sessions",
                "List the live sessions of an account (found by login or email), most recently seen first.",
                session_commands)
    c.add_argument("account", metavar="LOGIN_OR_EMAIL")
    c = command("revoke", "log one session out",
                "Revoke one session by its id (from `sessions list`); running servers refuse its token at once "
                "and close its connections.", session_commands)
    c.add_argument("session_id", metavar="ID", type=int)

    command("schema", "show the schema version and pending migrations",
            "Show the schema version of the database and the migrations this version of the server would apply.")
    command("migrate", "apply pending migrations",
            "Apply pending migrations (the server also does so at start), under the same advisory lock.")
    media = command("media", "media files (gc, delete)",
                    "The media lifecycle: remove what nobody uses any more (gc), or one file an operator must "
                    "take down (delete). See docs/operations.md, 'Media lifecycle'.")
    media_commands = media.add_subparsers(dest="media_command", required=True, metavar="ACTION")
    c = command("gc", "remove unused keys and the files no key names",
                "Remove keys no live message carries and that are no profile or dialog photo, uploaded more than "
                "--media-grace ago (default 24h), then the files no key names any more, written more than "
                "--media-grace ago. Prints each, then the counts and bytes.", media_commands)
    c.add_argument("--dry-run", action="store_true", help="change nothing; print what would be removed")
    c = command("delete", "take one file down (a quarantine)",
                "Remove the key KEY, and its file unless another key names the same content; remember the "
                "content as quarantined: an upload of the same bytes later gets a key nobody can download. "
                "Messages carrying KEY lose that attachment; a photo set to it is no longer served.",
                media_commands)
    c.add_argument("key", metavar="KEY")
    c.add_argument("--all-copies", action="store_true",
                   help="also remove every other key of the same content, and so the file")

    c = command("stats", "counts of users, dialogs, messages, media, sessions",
                "Exact counts of users, dialogs, messages (not deleted), media uploads and distinct files "
                "with their bytes, and live (not revoked) sessions.")
    c.add_argument("--json", action="store_true", help="print one JSON object")
    return p


# -- running ----------------------------------------------------------------------------


def main(argv: Sequence[str]) -> int:
    argv = list(argv)
    try:
        parser = build_admin_parser(argv)
    except UsageError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    args = parser.parse_args(argv)  # exits 2 on a usage error, 0 on --help
    config = config_from_namespace(args)
    try:
        return asyncio.run(run(args, config))
    except UsageError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    except Failure as exc:
        print(f"error: {exc}", file=sys.stderr)
    except SessiaError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
    except StorageError as exc:
        print(f"error: {status_for(exc).message}", file=sys.stderr)
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, RuntimeError) as exc:
        print(f"error: {type(exc).__name__}: {exc}", file=sys.stderr)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
    return 1


async def run(args: argparse.Namespace, config: Config) -> int:
    # The password is asked before anything starts, so that a wrong or empty
    # one costs nothing and the prompt is not mixed with start-up messages.
    password = None
    if args.command in ("create-user", "reset-password"):
        if args.command == "create-user":
            _check(check_login, args.login)
            args.email = _check(check_email, args.email)
        password = read_password(args.password_stdin, config.min_password_length)
    async with open_database(config) as db:
        if args.command not in ("schema", "migrate"):
            await require_current_schema(db)
        if args.command == "create-user":
            assert password is not None  # read above for this command
            return await create_user(db, config, args.login, args.email, password, args.confirmed)
        if args.command == "reset-password":
            assert password is not None  # read above for this command
            return await reset_password(db, config, args.account, password)
        if args.command == "revoke-sessions":
            return await revoke_sessions(db, config, args.account)
        if args.command == "users":
            if args.users_command == "list":
                return await users_list(db, args.search, args.limit)
            return await users_show(db, args.account)
        if args.command == "sessions":
            if args.sessions_command == "list":
                return await sessions_list(db, args.account)
            return await sessions_revoke(db, config, args.session_id)
        if args.command == "clients":
            if args.clients_command == "list":
                return await clients_list(db)
            if args.clients_command == "add":
                return await clients_add(db, config, args.nameclient, args.hashcert, args.min_version)
            return await clients_remove(db, config, args.nameclient, args.hashcert)
        if args.command == "schema":
            return await schema(db)
        if args.command == "migrate":
            return await apply_migrations(db)
        if args.command == "media":
            try:
                if args.media_command == "gc":
                    return await admin_media.gc(db, config, dry_run=args.dry_run)
                return await admin_media.delete(db, config, args.key, all_copies=args.all_copies)
            except admin_media.MediaCommandError as exc:
                raise Failure(str(exc)) from None
        return await stats(db, as_json=args.json)
    raise AssertionError(args.command)


def _check(check: Callable[[str, str], str], value: str) -> str:
    try:
        return check(value, "value")
    except SessiaError as exc:
        raise UsageError(f"{value!r}: {exc.message.removeprefix('value: ')}") from None


def read_password(from_stdin: bool, min_length: int) -> str:
    """From the first line of stdin, or asked twice on the terminal."""
    if from_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        if not sys.stdin.isatty():
            raise UsageError("no terminal to ask for the password: pipe it in with --password-stdin")
        password = getpass.getpass("New password: ")
        if getpass.getpass("Repeat it: ") != password:
            raise Failure("the two passwords differ")
    if not password:
        raise UsageError("empty password")
    if len(password) > MAX_PASSWORD_LENGTH:
        raise UsageError(f"password longer than {MAX_PASSWORD_LENGTH} characters")
    try:
        check_password(password, "password", min_length)
    except SessiaError as exc:
        raise UsageError(exc.message) from None
    return password


class AdminDatabase(Database):
    """The database plus its URL (a broker may need it)."""

    def __init__(self, pool: asyncpg.Pool, url: str) -> None:
        super().__init__(pool)
        self.url = url


@contextlib.asynccontextmanager
async def open_database(config: Config) -> AsyncIterator[AdminDatabase]:
    """The configured database; an embedded one is started for the command if
    needed and stopped afterwards, unless a server connected to it meanwhile."""
    embedded: EmbeddedPostgres | None = None
    url = config.database_url
    if url is None:
        embedded = EmbeddedPostgres(config.data_dir, durable=config.durable)
        if not (embedded.pgdata / "PG_VERSION").exists():
            # An admin command never creates a database: a mistyped --data-dir
            # would otherwise get a new, empty one and advice to migrate it.
            raise Failure(f"no database in {config.data_dir} (no {embedded.pgdata / 'PG_VERSION'}): give the "
                          f"server's --data-dir or --database-url; the server creates its database at first start")
        if not embedded.is_running():
            print(f"starting the embedded PostgreSQL in {embedded.pgdata} for this command", file=sys.stderr)
        url = await asyncio.to_thread(embedded.start)
    in_use = False
    try:
        # One connection: the command is sequential, and "is anyone else
        # connected?" is then simply "anyone but this connection".
        db = AdminDatabase((await Database.connect(url, min_size=1, max_size=1)).pool, url)
        try:
            yield db
        finally:
            if embedded is not None and embedded.started_here:
                in_use = await stats_store.other_connections(db) > 0
            await db.close()
    finally:
        if embedded is not None and embedded.started_here:
            if in_use:
                print("the embedded PostgreSQL is in use by another process: left running", file=sys.stderr)
            else:
                await asyncio.to_thread(embedded.stop)
                print("embedded PostgreSQL stopped", file=sys.stderr)


async def require_current_schema(db: Database) -> None:
    async with db.connection("admin.schema") as conn:
        missing = await pending(conn)
        version = await current_version(conn)
    if missing:
        raise Failure(
            f"the database schema is at version {version} and {len(missing)} migration(s) are pending: "
            f"run `{PROG} migrate` (or start the server) first"
        )


async def signal(db: AdminDatabase, config: Config, channel: str, payload: str) -> None:
    """Tell running servers (see server/broker.py); without a broker they
    learn of it when they re-read (clients) or restart."""
    broker = make_broker(config.broker, db.url, db.pool)
    if isinstance(broker, LocalBroker):
        print("--broker none: running servers are not told; they see client changes within "
              "--client-refresh-interval and revoked sessions only when not cached", file=sys.stderr)
        return
    if isinstance(broker, NatsBroker):
        await broker.start(lambda _channel, _payload: None, _nothing)
    try:
        await broker.publish(channel, payload)
    finally:
        if isinstance(broker, NatsBroker):
            await broker.close()


async def announce(db: AdminDatabase, config: Config, revoked: Revocation, token_digest: bytes | None = None) -> None:
    """Tell running servers that sessions ended, as a server tells its peers
    (one session needs its token's digest: that is what servers cache)."""
    message = accounts.announcement(revoked, token_digest)
    if message is not None:
        await signal(db, config, "sessions", message)


async def _nothing() -> None:
    return None


def _passwords(config: Config) -> Passwords:
    """The server's argon2 parameters, so that hashes made here need no rehash."""
    return Passwords(
        time_cost=config.argon2_time_cost,
        memory_kib=config.argon2_memory_kib,
        parallelism=config.argon2_parallelism,
        threads=1,
    )


async def _hash(config: Config, password: str) -> str:
    passwords = _passwords(config)
    try:
        return await passwords.hash(password)
    finally:
        passwords.close()


async def _find_account(db: Database, login_or_email: str) -> user_store.User:
    user = await user_store.find_for_login(db, login_or_email.strip())
    if user is None:
        raise Failure(f"no account with login or email {login_or_email!r}")
    return user


# -- commands -------------------------------------------------------------------------------


async def create_user(db: Database, config: Config, login: str, email: str, password: str, confirmed: bool) -> int:
    taken = await user_store.identity_taken(db, login, email)
    if taken is not None:
        raise Failure(f"{taken} is already in use")
    password_hash = await _hash(config, password)
    async with db.atomic("admin.create_user") as tx:
        user = await accounts.create_account(tx, login, email, password_hash, confirmed=confirmed)
    print(f"created user {user.login} <{user.email}> with id {user.id}")
    return 0


async def reset_password(db: AdminDatabase, config: Config, login_or_email: str, password: str) -> int:
    user = await _find_account(db, login_or_email)
    password_hash = await _hash(config, password)
    async with db.atomic("admin.reset_password") as tx:
        revoked, revocation = await accounts.replace_password(tx, user.id, password_hash)
    await announce(db, config, revocation)
    print(f"password changed for {user.login} (id {user.id}); {len(revoked)} session(s) revoked")
    return 0


async def revoke_sessions(db: AdminDatabase, config: Config, login_or_email: str) -> int:
    user = await _find_account(db, login_or_email)
    async with db.atomic("admin.revoke_sessions") as tx:
        revoked, revocation = await accounts.revoke_sessions(tx, user.id)
    await announce(db, config, revocation)
    print(f"{len(revoked)} session(s) of {user.login} (id {user.id}) revoked")
    return 0


def _when(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def _print_sessions(live: list[session_store.DeviceSession]) -> None:
    if not live:
        print("no live sessions")
        return
    print(f"{'ID':>8}  {'LAST SEEN':<20}  {'CREATED':<20}  {'CLIENT':<24}  DEVICE")
    for s in live:
        client = f"{s.client_name} {s.client_version}".strip()
        device = " ".join(part for part in (s.device_hostname, s.device_os, s.device_id) if part)
        print(f"{s.id:>8}  {_when(s.last_seen_at):<20}  {_when(s.created_at):<20}  {client:<24}  {device}")


async def users_list(db: Database, search: str | None, limit: int) -> int:
    if limit < 1:
        raise UsageError("--limit must be 1 or more")
    found = await user_store.list_users(db, search=search, take=limit)
    if not found:
        print("no accounts match" if search else "no accounts")
        return 0
    login_width = max(len("LOGIN"), *(len(u.login) for u in found))
    email_width = max(len("EMAIL"), *(len(u.email) + 2 for u in found))
    print(f"{'ID':>8}  {'LOGIN':<{login_width}}  {'EMAIL':<{email_width}}  {'CREATED':<20}  SESSIONS")
    for u in found:
        email = u.email if u.email_confirmed else f"{u.email} ?"  # ?: not confirmed
        print(f"{u.id:>8}  {u.login:<{login_width}}  {email:<{email_width}}  {_when(u.created_at):<20}  "
              f"{u.live_sessions}")
    if len(found) == limit:
        print(f"(the first {limit}: narrow with --search or raise --limit)", file=sys.stderr)
    return 0


async def users_show(db: Database, login_or_email: str) -> int:
    user = await _find_account(db, login_or_email)
    confirmed = "confirmed" if user.email_confirmed else "not confirmed"
    print(f"id:       {user.id}")
    print(f"login:    {user.login}")
    print(f"nickname: {user.nickname}")
    print(f"email:    {user.email} ({confirmed})")
    print(f"created:  {_when(user.created_at)}")
    live = await session_store.list_live_all(db, user.id)
    print(f"live sessions: {len(live)}")
    _print_sessions(live)
    return 0


async def sessions_list(db: Database, login_or_email: str) -> int:
    user = await _find_account(db, login_or_email)
    _print_sessions(await session_store.list_live_all(db, user.id))
    return 0


async def sessions_revoke(db: AdminDatabase, config: Config, session_id: int) -> int:
    """One session, revoked and announced as a logout on a server would be."""
    row = await session_store.find_live_by_id(db, session_id)
    if row is None:
        raise Failure(f"no live session with id {session_id}")
    session = Session(row.id, row.user_id, row.device_id, row.token_hash)
    async with db.atomic("admin.sessions_revoke") as tx:
        revocation = await accounts.revoke_session(tx, session)
    await announce(db, config, revocation, row.token_hash)
    user = await user_store.get_user(db, row.user_id)
    owner = user.login if user is not None else "a deleted account"
    print(f"session {row.id} of {owner} (id {row.user_id}) revoked")
    return 0


async def clients_list(db: Database) -> int:
    known = await client_store.list_clients(db)
    if not known:
        print("no client builds registered (servers accept none unless run with --allow-any-client)")
        return 0
    width = max(len("NAMECLIENT"), *(len(c.nameclient) for c in known))
    hash_width = max(len("HASHCERT"), *(len(c.hashcert) for c in known))
    print(f"{'NAMECLIENT':<{width}}  {'HASHCERT':<{hash_width}}  MIN_VERSION")
    for c in known:
        print(f"{c.nameclient:<{width}}  {c.hashcert:<{hash_width}}  {c.min_version}")
    return 0


async def clients_add(db: AdminDatabase, config: Config, nameclient: str, hashcert: str, min_version: int) -> int:
    if not nameclient.strip() or not hashcert.strip():
        raise UsageError("NAMECLIENT and HASHCERT must not be empty")
    if min_version < 0:
        raise UsageError("--min-version must be 0 or more")
    before = {(c.nameclient, c.hashcert) for c in await client_store.list_clients(db)}
    await client_store.register_client(db, client_store.KnownClient(nameclient, hashcert, min_version))
    await signal(db, config, "clients", "reload")
    verb = "updated" if (nameclient, hashcert) in before else "added"
    print(f"{verb} client {nameclient} {hashcert} (minimum version {min_version})")
    return 0


async def clients_remove(db: AdminDatabase, config: Config, nameclient: str, hashcert: str | None) -> int:
    removed = await client_store.remove_client(db, nameclient, hashcert)
    if not removed:
        what = f"{nameclient} {hashcert}" if hashcert else nameclient
        raise Failure(f"no registered client build {what}")
    await signal(db, config, "clients", "reload")
    print(f"removed {removed} build(s) of client {nameclient}")
    if config.clients is not None:
        print(f"note: servers started with --clients {config.clients} register its builds again at start",
              file=sys.stderr)
    return 0


async def schema(db: Database) -> int:
    async with db.connection("admin.schema") as conn:
        version = await current_version(conn)
        done = await applied_versions(conn)
        missing = await pending(conn)
    print(f"schema version: {version}")
    if missing:
        print("pending migrations:")
        for m in missing:
            print(f"  {m.version:04d}_{m.name}")
    else:
        print("no pending migrations")
    unknown = sorted(done - {m.version for m in available()})
    if unknown:
        print("applied but unknown to this version of the server (a newer version ran here): "
              + ", ".join(f"{v:04d}" for v in unknown))
    return 0


async def apply_migrations(db: Database) -> int:
    async with db.connection("admin.migrate") as conn:
        applied = await migrate(conn)
        version = await current_version(conn)
    if applied:
        print("applied: " + ", ".join(f"{v:04d}" for v in applied))
    else:
        print("nothing to apply")
    print(f"schema version: {version}")
    return 0


async def stats(db: Database, *, as_json: bool) -> int:
    totals = await stats_store.totals(db)
    if as_json:
        print(json.dumps(asdict(totals)))
        return 0
    rows = [
        ("users", totals.users),
        ("dialogs", totals.dialogs),
        ("messages", totals.messages),
        ("media uploads", totals.media_uploads),
        ("media files", totals.media_files),
        ("media bytes", totals.media_bytes),
        ("live sessions", totals.sessions_live),
    ]
    for label, value in rows:
        print(f"{label:<14} {value}")
    return 0
