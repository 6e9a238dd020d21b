"""The SQL side of the second factor: encrypted secrets, used time steps, failures, lock-outs.

Kept apart from ``stores.py``: only ``bot.totp`` uses it, and only when TOTP is set up."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Executable, delete, func, insert, select, update

from bot.storage.database import Database
from bot.storage.models import totp_failures, totp_secrets
from values import value


@value
class TotpRow:
    user_key: str
    secret: str  # sealed: see bot.totp.SecretBox
    last_step: int
    enrolled_at: datetime
    locked_until: datetime | None


class SqlTotpStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def get(self, user_key: str) -> TotpRow | None:
        query = select(totp_secrets).where(totp_secrets.c.user_key == user_key)

        def load() -> TotpRow | None:
            with self.db.transaction() as conn:
                row = conn.execute(query).mappings().first()
            return None if row is None else TotpRow(**row)

        return await self.db.run(load)

    async def users(self) -> list[TotpRow]:
        query = select(totp_secrets).order_by(totp_secrets.c.user_key)

        def load() -> list[TotpRow]:
            with self.db.transaction() as conn:
                return [TotpRow(**row) for row in conn.execute(query).mappings()]

        return await self.db.run(load)

    async def count(self) -> int:
        query = select(func.count()).select_from(totp_secrets)

        def load() -> int:
            with self.db.transaction() as conn:
                return int(conn.scalar(query) or 0)

        return await self.db.run(load)

    async def put(self, user_key: str, sealed: str, now: datetime) -> None:
        """Enrol, or enrol again with a new secret: the old one stops working at once."""

        def store() -> None:
            with self.db.transaction() as conn:
                conn.execute(delete(totp_secrets).where(totp_secrets.c.user_key == user_key))
                conn.execute(insert(totp_secrets).values(
                    user_key=user_key, secret=sealed, last_step=0, enrolled_at=now,
                    locked_until=None,
                ))  # fmt: skip

        await self.db.run(store)

    async def remove(self, user_key: str) -> bool:
        return await self._rowcount(delete(totp_secrets).where(totp_secrets.c.user_key == user_key))

    async def accept_step(self, user_key: str, step: int) -> bool:
        """The replay guard: one UPDATE that matches only while ``step`` is newer than every
        step accepted before, so of two racing uses of one code exactly one wins."""
        statement = (
            update(totp_secrets)
            .where(totp_secrets.c.user_key == user_key, totp_secrets.c.last_step < step)
            .values(last_step=step)
        )
        return await self._rowcount(statement)

    async def add_failure(self, user_key: str, now: datetime, since: datetime) -> int:
        def store() -> int:
            with self.db.transaction() as conn:
                conn.execute(insert(totp_failures).values(user_key=user_key, at=now))
                # Old rows go as new ones come: the table never holds more than a window's.
                conn.execute(delete(totp_failures).where(totp_failures.c.at < since))
                counted = select(func.count()).where(
                    totp_failures.c.user_key == user_key, totp_failures.c.at >= since
                )
                return int(conn.scalar(counted) or 0)

        return await self.db.run(store)

    async def lock(self, user_key: str, until: datetime | None) -> bool:
        """Lock out until ``until``; None unlocks and forgets the failures."""

        def store() -> bool:
            with self.db.transaction() as conn:
                if until is None:
                    conn.execute(delete(totp_failures).where(totp_failures.c.user_key == user_key))
                changed = conn.execute(
                    update(totp_secrets)
                    .where(totp_secrets.c.user_key == user_key)
                    .values(locked_until=until)
                )
                return changed.rowcount == 1

        return await self.db.run(store)

    async def _rowcount(self, statement: Executable) -> bool:
        def run() -> bool:
            with self.db.transaction() as conn:
                return conn.execute(statement).rowcount == 1

        return await self.db.run(run)


def enrolled_count(db: Database) -> int:
    """Synchronous, for the composition root's start-up check."""
    with db.transaction() as conn:
        return int(conn.scalar(select(func.count()).select_from(totp_secrets)) or 0)
