"""``steward totp …`` and ``steward lockdown …``: the second factor and lock-down, on the
server's shell only. Enrolment never happens in chat: the secret must not pass through the
chat provider. It is printed here once, as a QR code and an ``otpauth://`` URI."""

from __future__ import annotations

import asyncio
import getpass
import io
import re
import sys
from datetime import UTC, datetime
from typing import TextIO

from bot.config import ConfigError, Settings
from bot.storage.database import Database
from bot.storage.stores import SqlAuditLog, SqlKeyValue
from handlers.core.access import actor_key
from handlers.core.guard import Guard
from handlers.core.messages import Actor
from handlers.core.records import AuditEntry, AuditEvent

_USER = re.compile(r"^([1-9]\d{0,19}|@[^:\s]+:[A-Za-z0-9.\-\[\]:]+)$")


def shell_actor() -> Actor:
    name = getpass.getuser()
    return Actor("console", name, f"{name} (shell)")


def totp(settings: Settings, action: str, user: str | None, out: TextIO = sys.stdout) -> int:
    if action == "list":
        return asyncio.run(_list(settings, out))
    if user is None or not _USER.fullmatch(user):
        raise ConfigError(f"totp {action}: give a Telegram numeric id or a Matrix id (@id:server)")
    if action == "enroll":
        if user not in settings.admins:
            raise ConfigError(f"totp enroll: {user} is not in STEWARD_ADMINS")
        return asyncio.run(_enroll(settings, user, out))
    return asyncio.run(_change(settings, action, user, out))


def lockdown(settings: Settings, action: str, out: TextIO = sys.stdout) -> int:
    return asyncio.run(_lockdown(settings, action, out))


async def _enroll(settings: Settings, user: str, out: TextIO) -> int:
    if settings.totp_key is None:
        raise ConfigError("STEWARD_TOTP_KEY_FILE: needed to enrol (openssl rand -base64 32)")
    from bot.storage.totp_store import SqlTotpStore  # noqa: PLC0415
    from bot.totp import SecretBox, TotpFactor, provisioning_uri  # noqa: PLC0415

    box = SecretBox.from_text(settings.totp_key.get_secret_value())
    with _database(settings) as db:
        factor = TotpFactor(SqlTotpStore(db), box)
        again = await factor.enrolled(actor_key(user))
        secret = await factor.enroll(actor_key(user), datetime.now(UTC))
        await _audit(db, "totp enroll", user, "enrolled again" if again else "enrolled")
    uri = provisioning_uri(secret, f"{user}@{settings.domain or 'steward'}")
    out.write(_qr(uri))
    out.write(f"\nScan this with an authenticator app, or enter this URI:\n{uri}\n\n")
    if again:
        out.write("The previous secret of this user no longer works.\n")
    out.write("Codes are asked for destructive commands (STEWARD_TOTP, default destructive).\n")
    return 0


async def _change(settings: Settings, action: str, user: str, out: TextIO) -> int:
    from bot.storage.totp_store import SqlTotpStore  # noqa: PLC0415

    with _database(settings) as db:
        store = SqlTotpStore(db)
        key = actor_key(user)
        done = await store.remove(key) if action == "remove" else await store.lock(key, None)
        if not done:
            out.write(f"{user} has no second factor.\n")
            return 1
        await _audit(db, f"totp {action}", user, "removed" if action == "remove" else "unlocked")
    out.write(f"{user}: {'second factor removed' if action == 'remove' else 'unlocked'}.\n")
    return 0


async def _list(settings: Settings, out: TextIO) -> int:
    from bot.storage.totp_store import SqlTotpStore  # noqa: PLC0415

    with _database(settings) as db:
        rows = await SqlTotpStore(db).users()
    now = datetime.now(UTC)
    for row in rows:
        locked = row.locked_until is not None and row.locked_until > now
        state = f"locked until {row.locked_until:%Y-%m-%d %H:%M} UTC" if locked else "ok"
        out.write(f"{row.user_key}  enrolled {row.enrolled_at:%Y-%m-%d}  {state}\n")
    if not rows:
        out.write("Nobody has enrolled.\n")
    return 0


async def _lockdown(settings: Settings, action: str, out: TextIO) -> int:
    now = datetime.now(UTC)
    with _database(settings) as db:
        guard = Guard(SqlKeyValue(db))
        current = await guard.lockdown()
        if action == "status":
            out.write("Lock-down is off.\n" if current is None else
                      f"Lock-down is on (by {current.by}, {current.at}).\n")  # fmt: skip
            return 0
        if action == "on":
            await guard.set_lockdown(shell_actor().label, now)
        else:
            await guard.lift_lockdown()
        await _audit(db, f"lockdown {action}", None, "from the shell")
    out.write(f"Lock-down is {action}.\n")
    return 0


class _database:  # noqa: N801 - used as a context manager, like open()
    def __init__(self, settings: Settings) -> None:
        self.db = Database(settings.database)

    def __enter__(self) -> Database:
        self.db.ensure_schema()
        return self.db

    def __exit__(self, *_exc: object) -> None:
        self.db.dispose()


async def _audit(db: Database, command: str, user: str | None, result: str) -> None:
    audit = SqlAuditLog(db)
    entry = AuditEntry(datetime.now(UTC), AuditEvent.SECURITY, shell_actor(), None, command,
                       (user,) if user else (), result=result)  # fmt: skip
    await audit.record(entry)
    await audit.flush()


def _qr(uri: str) -> str:
    import segno  # noqa: PLC0415 - only when enrolling

    buffer = io.StringIO()
    segno.make(uri, error="m").terminal(out=buffer, compact=True)
    return buffer.getvalue()
