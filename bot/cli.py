"""``steward``: run the bot, try it on the console, or migrate its database."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from collections.abc import Sequence

from pydantic import SecretStr

from bot.config import SECRETS, ConfigError, Settings, load_settings
from bot.storage.database import Database, DatabaseError

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
    handler = logging.StreamHandler(sys.stderr)
    secrets = [
        value.get_secret_value()
        for name in SECRETS
        if isinstance(value := getattr(settings, name), SecretStr)
    ]
    handler.setFormatter(_Redacting("%(asctime)s %(levelname)s %(name)s: %(message)s", secrets))
    logging.basicConfig(level=level, handlers=[handler])
    # Chatty libraries: their INFO lines say nothing an owner needs (and httpx's name URLs,
    # which for Telegram contain the bot token).
    for name in ("alembic", "httpx", "httpcore", "apscheduler"):
        logging.getLogger(name).setLevel(max(logging.WARNING, logging.getLogger().level))


class _Redacting(logging.Formatter):
    """No secret reaches the log: python-telegram-bot logs its API URLs, which contain the
    bot token, at DEBUG."""

    def __init__(self, fmt: str, secrets: Sequence[str]) -> None:
        super().__init__(fmt)
        self._secrets = [secret for secret in secrets if secret]

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        for secret in self._secrets:
            text = text.replace(secret, "[secret]")
        return text


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
    if settings.telegram_token is None and settings.matrix_homeserver is not None:
        raise ConfigError(
            "STEWARD_MATRIX_HOMESERVER: the Matrix transport is not in this version yet; "
            "use Telegram or `steward console`"
        )
    if settings.telegram_token is not None and settings.matrix_homeserver is not None:
        log.warning("STEWARD_MATRIX_HOMESERVER is set, but Matrix is not in this version yet")
    if not settings.has_transport:
        print("No transport is configured: starting the console on the demo server.",
              file=sys.stderr)  # fmt: skip
        return asyncio.run(_console(settings, demo=True))
    return asyncio.run(_serve(settings))


async def _serve(settings: Settings) -> int:
    from bot.app import build_app  # noqa: PLC0415
    from bot.transports.telegram import TelegramTransport  # noqa: PLC0415

    assert settings.telegram_token is not None  # noqa: S101 - _run checked it
    app = build_app(settings)
    telegram = TelegramTransport(
        app.engine,
        settings.telegram_token.get_secret_value(),
        settings.telegram_api_url,
        rate_limit=settings.telegram_rate_limit,
    )
    app.router.add("telegram", telegram.outbox)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    sweeper = asyncio.create_task(app.sweep_forever())
    try:
        await telegram.start()
        log.info("Telegram transport is polling")
        await app.start()
        await stop.wait()
        log.info("stopping")
    finally:
        sweeper.cancel()
        await telegram.stop()
        app.close()
    return 0
