"""steward: run the bot, try it on the console, check its setup, or migrate its database."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from bot import __version__, logs
from bot.config import SECRETS, ConfigError, Secret, Settings, check_extras, load_settings
from bot.errors import DatabaseError

if TYPE_CHECKING:
    import argparse

    from bot.app import App
    from bot.routine import Routine
    from bot.transports.matrix import MatrixTransport
    from bot.transports.matrix_login import MatrixLogin
    from bot.transports.router import OutboxRouter
    from bot.transports.telegram import TelegramTransport
    from providers.storage.base import BackupStorage

log = logging.getLogger("steward")
NO_ADMIN_WARNING = (
    "Warning: no admin is set (STEWARD_ADMINS, or services.steward.settings.admins on NixOS), "
    "so nobody can use the bot. Write to it: it answers with your id and the line to add."
)


def main(argv: Sequence[str] | None = None) -> int:
    words = list(sys.argv[1:] if argv is None else argv)
    if words == ["run"]:
        # The bot itself, as its unit starts it, takes no options: no parser. argparse and
        # the gettext under it would stay for the bot's life, 0.26 MB (docs/performance.md).
        return _with_settings(_run)
    args = _parser().parse_args(words)
    if args.command == "admit":
        # Root, before a rebuild: nothing of the bot's settings, only what the unit passes.
        from bot.admit import admit  # noqa: PLC0415

        return admit(
            args.source, args.state_dir, args.catalogue, args.root_key_totp,
            admitted=args.admitted, flake=args.flake,
        )  # fmt: skip
    if args.command == "doctor":
        # Its own imports, and it reports a bad setting as a failed check, not as an exit.
        from bot.doctor import doctor  # noqa: PLC0415

        return doctor()
    return _with_settings(
        lambda settings: _command(settings, args), quiet=args.command == "console"
    )


def _with_settings(command: Callable[[Settings], int], *, quiet: bool = False) -> int:
    """Load the settings, set up logging, and run ``command``; a bad setting or a database
    that cannot be used is one line on stderr and exit status 2."""
    try:
        settings = load_settings()
        _logging(settings, quiet=quiet)
        return command(settings)
    except (ConfigError, DatabaseError) as exc:
        print(f"steward: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def _command(settings: Settings, args: argparse.Namespace) -> int:
    if args.command == "db":
        return _db(settings, args.action)
    if args.command == "b2":
        return b2_setup(settings, args.bucket, args.keep_days)
    if args.command == "worker":
        from bot.worker import work  # noqa: PLC0415

        return work(settings, args.kind, args.instance, foreign=args.foreign)
    if args.command == "console":
        return _console_command(settings, args)
    if args.command in ("totp", "lockdown", "backup", "recover"):
        return _shell(settings, args)
    return _run(settings)


def _console_command(settings: Settings, args: argparse.Namespace) -> int:
    if args.fleet is not None:
        if not args.demo:
            raise ConfigError("--fleet needs --demo: it shows demo servers only.")
        return asyncio.run(_console_fleet(settings, args.fleet))
    if not (args.demo or settings.demo):
        check_extras(settings)
    return asyncio.run(_console(settings, demo=args.demo))


def _shell(settings: Settings, args: argparse.Namespace) -> int:
    from bot import security_cli  # noqa: PLC0415

    if args.command == "backup":
        return backup_init(settings, yes=args.yes)
    if args.command == "recover":
        from bot.recover import recover  # noqa: PLC0415 - only here: never in `steward run`

        return recover(settings, yes=args.yes, snapshot=args.snapshot, services_only=args.services)

    if args.command == "totp":
        return security_cli.totp(settings, args.action, args.user)
    return security_cli.lockdown(settings, args.action)


def _parser() -> argparse.ArgumentParser:
    import argparse  # noqa: PLC0415 - not in `steward run`, which takes no options

    parser = argparse.ArgumentParser(prog="steward", description=__doc__)
    parser.add_argument("--version", action="version", version=f"steward {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("run", help="run the bot on the configured transports")
    sub.add_parser(
        "doctor", help="check every setting and secret, and reach each configured service"
    )
    console = sub.add_parser("console", help="talk to the bot on this terminal or a pipe")
    console.add_argument("--demo", action="store_true", help="use the in-memory demo server")
    console.add_argument(
        "--fleet", type=int, metavar="N", help="N demo servers in one chat (with --demo)"
    )
    worker = sub.add_parser(
        "worker", help="back up or restore one service's data (the root units run this)"
    )
    worker.add_argument("kind", choices=["backup", "restore"])
    worker.add_argument("instance", help="SERVICE:REASON, SERVICE:SNAPSHOT or SERVICE:recover")
    worker.add_argument(
        "--foreign", action="store_true",
        help="restore a snapshot no backup unit of this server took (an admin, from a root shell)",
    )  # fmt: skip
    admit = sub.add_parser(
        "admit", help="check the desired state as root and copy it for evaluation (rebuild units)"
    )
    admit.add_argument("--source", type=Path, required=True, help="the bot's desired-state.json")
    admit.add_argument("--state-dir", type=Path, required=True, help="root's own folder")
    admit.add_argument("--catalogue", type=Path, required=True, help="the catalogue JSON")
    admit.add_argument("--root-key-totp", type=Path, help="TOTP secret for root keys from chat")
    admit.add_argument(
        "--admitted", type=Path,
        help="where the admitted copy goes, the file the configuration reads (default: in "
        "--state-dir)",
    )  # fmt: skip
    admit.add_argument(
        "--flake", type=Path,
        help="the git flake holding --admitted: the copy is added with --intent-to-add",
    )  # fmt: skip
    totp = sub.add_parser("totp", help="admins' second factor (TOTP codes), on this shell only")
    totp.add_argument("action", choices=["enroll", "remove", "unlock", "list"])
    totp.add_argument("user", nargs="?", help="a Telegram numeric id or a Matrix id")
    lockdown = sub.add_parser("lockdown", help="refuse every change to the server from chat")
    lockdown.add_argument("action", choices=["on", "off", "status"])
    backup = sub.add_parser("backup", help="the backup repository")
    backup.add_argument("action", choices=["init"])
    backup.add_argument("--yes", action="store_true", help="do not ask; for scripts")
    recover = sub.add_parser(
        "recover", help="on a new server: restore Steward's own snapshot, then its services' data"
    )
    recover.add_argument("--yes", action="store_true", help="restore the offered set unasked")
    recover.add_argument("--snapshot", help="Steward's own snapshot to start from (default newest)")
    recover.add_argument(
        "--services", action="store_true",
        help="only the services' set (Steward's own part is back already; after a rebuild)",
    )  # fmt: skip
    db = sub.add_parser("db", help="database maintenance")
    db.add_argument("action", choices=["upgrade", "current"])
    b2 = sub.add_parser("b2", help="Backblaze B2 administration")
    b2.add_argument("action", choices=["setup"])
    b2.add_argument("--bucket", required=True, help="name of the private bucket to create")
    b2.add_argument(
        "--keep-days", type=int, default=30,
        help="days B2 keeps a deleted or overwritten file before it is gone (default 30)",
    )  # fmt: skip
    return parser


def b2_setup(
    settings: Settings, bucket: str, keep_days: int, storage: BackupStorage | None = None
) -> int:
    """Create a private bucket with a lifecycle rule, and a key that may write to it but never
    delete. The account key comes from STEWARD_B2_KEY_ID / STEWARD_B2_KEY (or their _FILE
    twins); the new key is printed once, here, and nowhere else."""
    if storage is None:
        if settings.b2_key_id is None or settings.b2_key is None:
            raise ConfigError(
                "b2 setup needs an account key that may create buckets and keys, in "
                "STEWARD_B2_KEY_ID and STEWARD_B2_KEY (or their _FILE twins)"
            )
        check_extras(settings)
        from providers.storage.b2 import B2BackupStorage  # noqa: PLC0415

        storage = B2BackupStorage(
            settings.b2_key_id.get_secret_value(), settings.b2_key.get_secret_value(), bucket
        )
    from providers.storage.base import StorageError  # noqa: PLC0415

    try:
        made = asyncio.run(storage.setup_bucket(bucket, keep_days))
    except StorageError as exc:
        print(f"steward: {exc}", file=sys.stderr)
        return 1
    print(f"Created the private bucket {made.bucket_name}: deleted files are kept "
          f"{made.keep_days} days.")  # fmt: skip
    print(f"Created a key for it that cannot delete ({', '.join(made.capabilities)}).")
    print("It is shown this once; put it where the NixOS module reads it (b2KeyIdFile,")
    print("b2KeyFile), and use the bucket for restic:")
    print(f"STEWARD_B2_KEY_ID={made.key_id}")
    print(f"STEWARD_B2_KEY={made.key}")
    print(f"STEWARD_B2_BUCKET={made.bucket_name}")
    return 0


def backup_init(settings: Settings, *, yes: bool, answer: Callable[[str], str] = input) -> int:
    """``steward backup init``: what ``/backup init`` does, on the server's shell."""
    from bot.app import _backups  # noqa: PLC0415
    from bot.transports.render import to_plain  # noqa: PLC0415
    from handlers.repository import what_init_does  # noqa: PLC0415
    from providers.backup.base import BackupError  # noqa: PLC0415

    backups = _backups(settings)
    if backups is None:
        raise ConfigError("STEWARD_RESTIC_REPOSITORY (or its _FILE twin) is not set")
    try:
        if asyncio.run(backups.ready()):
            print(f"The backup repository at {backups.location()} is ready; nothing to create.")
            return 0
        print(to_plain(what_init_does(backups)))
        if not yes and answer("Create it? Type yes: ").strip().lower() != "yes":
            print("Nothing was created.")
            return 1
        asyncio.run(backups.init())
    except BackupError as exc:
        print(f"steward: {exc}", file=sys.stderr)
        return 1
    print(f"The backup repository at {backups.location()} is ready.")
    return 0


def _logging(settings: Settings, *, quiet: bool) -> None:
    level = "WARNING" if quiet and settings.log_level == "INFO" else settings.log_level
    secrets = [
        value.get_secret_value()
        for name in SECRETS
        if isinstance(value := getattr(settings, name), Secret)
    ]
    logs.configure(level, secrets)


def _db(settings: Settings, action: str) -> int:
    from bot.storage.database import Database  # noqa: PLC0415

    db = Database(settings.database)
    try:
        if action == "upgrade":
            db.upgrade()
        print(db.revision() or "empty")
    finally:
        db.dispose()
    return 0


CONSOLE_SWEEP_SECONDS = 1.0


async def _console(settings: Settings, *, demo: bool) -> int:
    from bot.app import build_app  # noqa: PLC0415
    from bot.transports.console import TRANSPORT, ConsoleTransport  # noqa: PLC0415

    app = build_app(settings, demo=demo, console_admin=True)
    console = ConsoleTransport()
    app.router.add(TRANSPORT, console)
    # Someone watches the console: a short Keep (STEWARD_KEEP_MINUTES) lapses when it says.
    sweeper = asyncio.create_task(app.sweep_forever(CONSOLE_SWEEP_SECONDS))
    try:
        await app.start()
        return await console.run(app.engine)
    finally:
        sweeper.cancel()
        await app.flush()
        app.close()


async def _console_fleet(settings: Settings, size: int) -> int:
    from bot.console_fleet import fleet_apps, run_fleet  # noqa: PLC0415

    apps = fleet_apps(settings, size)
    try:
        for app, _console in apps:
            await app.start()
        return await run_fleet(apps)
    finally:
        for app, _console in apps:
            await app.flush()
            app.close()


def _run(settings: Settings) -> int:
    if not settings.has_transport:
        print("No transport is configured: starting the console on the demo server.",
              file=sys.stderr)  # fmt: skip
        return asyncio.run(_console(settings, demo=True))
    if not settings.demo:
        check_extras(settings)  # a config error shows before anything starts
    if not settings.admins:
        print(NO_ADMIN_WARNING, file=sys.stderr)
    if settings.matrix_homeserver is not None:
        _matrix_login(settings)
    return asyncio.run(_serve(settings))


async def _serve(settings: Settings) -> int:
    from bot.transports.router import OutboxRouter  # noqa: PLC0415

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    router = OutboxRouter()
    transports: list[_Transport] = []
    telegram = _telegram(settings, router)
    if telegram is not None:
        transports.append(telegram)
    app: App | None = None
    routine: Routine | None = None
    sweeper: asyncio.Task[None] | None = None
    try:
        # The database opens in a worker thread while Telegram connects: on a real network
        # the round trips to Telegram and the local start overlap. Updates that arrive first
        # wait for the engine. A stop request is heard throughout.
        dialed = telegram.dialed if telegram is not None else None
        building = asyncio.ensure_future(_build_after(dialed, settings, router))
        starting = [building, *(t.start() for t in transports)]
        # The build (imports, mostly) holds the GIL for long stretches: hand it over sooner,
        # so that each answer from the network wakes the connecting thread within 0.5 ms,
        # not within the default 5 ms.
        interval = sys.getswitchinterval()
        sys.setswitchinterval(min(interval, 0.0005))
        try:
            if not await _until_stopped(asyncio.gather(*starting), stop):
                return 0
        finally:
            sys.setswitchinterval(interval)
        app = building.result()
        if telegram is not None:
            telegram.attach(app.engine)
        sweeper = asyncio.create_task(app.sweep_forever())
        matrix = _matrix(settings, app)
        if matrix is not None:
            transports.append(matrix)
            # Telegram serves meanwhile, even while the homeserver is down.
            if not await _until_stopped(matrix.start(), stop):
                return 0
        log.info("listening on %s", ", ".join(type(t).__name__ for t in transports))
        await app.start()
        # Only now: the scheduler's imports (SQLAlchemy's job store) would delay the
        # connection to Telegram; by now the database has loaded SQLAlchemy anyway.
        from bot.routine import Routine  # noqa: PLC0415

        routine = Routine(app)
        await routine.start()
        await stop.wait()
        log.info("stopping")
    finally:
        if routine is not None:
            routine.stop()
        if sweeper is not None:
            sweeper.cancel()
        for transport in reversed(transports):
            await transport.stop()
        if app is not None:
            await app.flush()
            app.close()
    return 0


async def _build_after(
    dialed: asyncio.Event | None, settings: Settings, router: OutboxRouter
) -> App:
    """Build the app in a worker thread once Telegram's first request has left. The build is
    mostly imports, which hold the GIL: begun sooner, it slows the work on the way to that
    request threefold (21 ms alone, 70 ms beside the build, on the loopback Bot API). Begun
    then, it still overlaps every round trip to Telegram.

    The thread is the build's own and ends with it: the pages its deep import stack touched
    and its allocator cache go back (0.15-0.2 MB of the idle bot). The loop's default executor
    would keep the thread for the bot's life."""
    if dialed is not None:
        await dialed.wait()
    builder = ThreadPoolExecutor(1, thread_name_prefix="steward-build")
    building = asyncio.get_running_loop().run_in_executor(builder, _build_app, settings, router)
    builder.shutdown(wait=False)  # the thread ends once the build is done
    try:
        return await asyncio.shield(building)
    except asyncio.CancelledError:
        # Stopped while building (a signal, or Telegram refused the token): the build runs
        # on to its end, a migration included, and its database is closed, before the bot
        # exits and says why.
        with contextlib.suppress(Exception):
            (await building).close()
        raise


def _build_app(settings: Settings, router: OutboxRouter) -> App:
    from bot.app import build_app  # noqa: PLC0415

    return build_app(settings, router=router)


async def _until_stopped(work: Awaitable[object], stop: asyncio.Event) -> bool:
    """Run ``work`` unless ``stop`` is set first; True when it finished."""
    task = asyncio.ensure_future(work)
    stopping = asyncio.create_task(stop.wait())
    await asyncio.wait({task, stopping}, return_when=asyncio.FIRST_COMPLETED)
    stopping.cancel()
    if task.done():
        task.result()  # a ConfigError from a transport ends the program with exit 2
        return True
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    return False


if TYPE_CHECKING:
    # For the type checker only (docs/architecture.md, Contracts).

    class _Transport(Protocol):
        async def start(self) -> None: ...

        async def stop(self) -> None: ...


# Each transport is imported only when configured: each library costs memory.


def _telegram(settings: Settings, router: OutboxRouter) -> TelegramTransport | None:
    if settings.telegram_token is None:
        return None
    from bot.transports.telegram import TelegramTransport  # noqa: PLC0415

    telegram = TelegramTransport(
        None,
        settings.telegram_token.get_secret_value(),
        settings.telegram_api_url,
        rate_limit=settings.telegram_rate_limit,
        # One watch is enough: it reads the fleet that both transports fill. Matrix keeps it
        # when both are configured.
        watch=settings.watch if settings.matrix_homeserver is None else None,
        # A Steward named on purpose is meant to meet others; one on its host name alone is
        # not, and says nothing in its groups.
        introduce=settings.name is not None or settings.watch is not None,
    )
    router.add("telegram", telegram.outbox)
    return telegram


def _matrix(settings: Settings, app: App) -> MatrixTransport | None:
    if settings.matrix_homeserver is None:
        return None
    from bot.transports.matrix import MatrixTransport  # noqa: PLC0415
    from bot.transports.matrix_state import MatrixState  # noqa: PLC0415

    matrix = MatrixTransport(
        app.engine, _matrix_login(settings), MatrixState(app.kv), watch=settings.watch
    )
    app.router.add("matrix", matrix.outbox)
    app.notifier.add_source(matrix.admin_rooms)
    return matrix


def _matrix_login(settings: Settings) -> MatrixLogin:
    homeserver = settings.matrix_homeserver
    if settings.matrix_user is None:
        raise ConfigError("STEWARD_MATRIX_USER: needed with STEWARD_MATRIX_HOMESERVER")
    if settings.matrix_password is None and settings.matrix_access_token is None:
        raise ConfigError(
            "STEWARD_MATRIX_PASSWORD: needed with STEWARD_MATRIX_HOMESERVER, "
            "or STEWARD_MATRIX_ACCESS_TOKEN"
        )
    assert homeserver is not None  # noqa: S101 - the caller checked it
    from bot.transports.matrix_login import MatrixLogin  # noqa: PLC0415 - Matrix only

    return MatrixLogin(
        homeserver=homeserver.rstrip("/"),
        user=settings.matrix_user,
        password=_reveal(settings.matrix_password),
        access_token=_reveal(settings.matrix_access_token),
        e2ee=settings.matrix_e2ee,
        store_dir=settings.state_dir / "matrix-store",
    )


def _reveal(secret: Secret | None) -> str | None:
    return None if secret is None else secret.get_secret_value()
