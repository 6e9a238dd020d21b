"""``steward``: run the bot, try it on the console, or migrate its database."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import Awaitable, Sequence
from typing import TYPE_CHECKING, Protocol

from bot import logs
from bot.config import SECRETS, ConfigError, Secret, Settings, load_settings
from bot.storage.database import Database, DatabaseError
from bot.transports.matrix_login import MatrixLogin

if TYPE_CHECKING:
    from bot.app import App

log = logging.getLogger("steward")


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = load_settings()
        _logging(settings, quiet=args.command == "console")
        if args.command == "db":
            return _db(settings, args.action)
        if args.command == "console":
            return asyncio.run(_console(settings, demo=args.demo))
        return _run(settings)
    except (ConfigError, DatabaseError) as exc:
        print(f"steward: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="steward", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("run", help="run the bot on the configured transports")
    console = sub.add_parser("console", help="talk to the bot on this terminal or a pipe")
    console.add_argument("--demo", action="store_true", help="use the in-memory demo server")
    db = sub.add_parser("db", help="database maintenance")
    db.add_argument("action", choices=["upgrade", "current"])
    return parser


def _logging(settings: Settings, *, quiet: bool) -> None:
    level = "WARNING" if quiet and settings.log_level == "INFO" else settings.log_level
    secrets = [
        value.get_secret_value()
        for name in SECRETS
        if isinstance(value := getattr(settings, name), Secret)
    ]
    logs.configure(level, secrets)


def _db(settings: Settings, action: str) -> int:
    db = Database(settings.database)
    try:
        if action == "upgrade":
            db.upgrade()
        print(db.revision() or "empty")
    finally:
        db.dispose()
    return 0


async def _console(settings: Settings, *, demo: bool) -> int:
    from bot.app import build_app  # noqa: PLC0415
    from bot.transports.console import TRANSPORT, ConsoleTransport  # noqa: PLC0415

    app = build_app(settings, demo=demo, console_admin=True)
    console = ConsoleTransport()
    app.router.add(TRANSPORT, console)
    sweeper = asyncio.create_task(app.sweep_forever())
    try:
        await app.start()
        return await console.run(app.engine)
    finally:
        sweeper.cancel()
        app.close()


def _run(settings: Settings) -> int:
    if not settings.has_transport:
        print("No transport is configured: starting the console on the demo server.",
              file=sys.stderr)  # fmt: skip
        return asyncio.run(_console(settings, demo=True))
    if settings.matrix_homeserver is not None:
        _matrix_login(settings)  # a config error shows before anything starts
    return asyncio.run(_serve(settings))


async def _serve(settings: Settings) -> int:
    from bot.app import build_app  # noqa: PLC0415

    app = build_app(settings)
    transports = _transports(settings, app)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    sweeper = asyncio.create_task(app.sweep_forever())
    try:
        # Concurrently: a homeserver that is down must not keep Telegram waiting. A stop
        # request is heard while a transport still waits for its server.
        if await _until_stopped(asyncio.gather(*(t.start() for t in transports)), stop):
            log.info("listening on %s", ", ".join(type(t).__name__ for t in transports))
            await app.start()
            await stop.wait()
        log.info("stopping")
    finally:
        sweeper.cancel()
        for transport in reversed(transports):
            await transport.stop()
        app.close()
    return 0


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


class _Transport(Protocol):
    async def start(self) -> None: ...

    async def stop(self) -> None: ...


def _transports(settings: Settings, app: App) -> list[_Transport]:
    """Import and build only the configured transports: each library costs memory."""
    transports: list[_Transport] = []
    if settings.telegram_token is not None:
        from bot.transports.telegram import TelegramTransport  # noqa: PLC0415

        telegram = TelegramTransport(
            app.engine,
            settings.telegram_token.get_secret_value(),
            settings.telegram_api_url,
            rate_limit=settings.telegram_rate_limit,
        )
        app.router.add("telegram", telegram.outbox)
        transports.append(telegram)
    if settings.matrix_homeserver is not None:
        from bot.transports.matrix import MatrixTransport  # noqa: PLC0415
        from bot.transports.matrix_state import MatrixState  # noqa: PLC0415

        matrix = MatrixTransport(app.engine, _matrix_login(settings), MatrixState(app.kv))
        app.router.add("matrix", matrix.outbox)
        app.notifier.add_source(matrix.admin_rooms)
        transports.append(matrix)
    return transports


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
