"""The SQLAlchemy implementations of the core's store Protocols.

The sessions are synchronous; every call runs in a worker thread so the event loop never waits
on the database.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import json
from collections.abc import Callable
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import Executable, Result, delete, insert, select, update

from bot.storage.database import Database
from bot.storage.models import AuditRow, ConfirmationRow, JobRow, KeyValueRow
from handlers.core.messages import Actor, ChatRef
from handlers.core.records import (
    AuditEntry,
    AuditEvent,
    Confirmation,
    ConfirmationState,
    Job,
    JobState,
)

T = TypeVar("T")


def nonce_hash(nonce: str) -> str:
    """Only the hash is stored: a copy of the database cannot press anybody's buttons."""
    return hashlib.sha256(nonce.encode()).hexdigest()


class _Store:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def _run(self, fn: Callable[[], T]) -> T:
        return await self.db.run(fn)


class SqlConfirmationStore(_Store):
    async def create(
        self,
        *,
        nonce: str,
        command: str,
        args: tuple[str, ...],
        requester: Actor,
        chat: ChatRef,
        created_at: datetime,
        expires_at: datetime,
        two_person: bool,
        preview: str,
    ) -> Confirmation:
        row = ConfirmationRow(
            nonce_hash=nonce_hash(nonce),
            command=command,
            args=json.dumps(list(args)),
            requester_transport=requester.transport,
            requester_id=requester.user_id,
            requester_name=requester.display_name,
            chat_transport=chat.transport,
            chat_id=chat.chat_id,
            preview=preview,
            two_person=two_person,
            state=ConfirmationState.PENDING.value,
            created_at=created_at,
            expires_at=expires_at,
        )

        def insert() -> Confirmation:
            with self.db.session() as session:
                session.add(row)
                session.flush()
                return _confirmation(row)

        return await self._run(insert)

    async def find(self, nonce: str) -> Confirmation | None:
        def load() -> Confirmation | None:
            with self.db.session() as session:
                query = select(ConfirmationRow).where(
                    ConfirmationRow.nonce_hash == nonce_hash(nonce)
                )
                row = session.scalars(query).first()
                return None if row is None else _confirmation(row)

        return await self._run(load)

    async def decide(
        self, nonce: str, *, state: ConfirmationState, by: Actor, now: datetime
    ) -> bool:
        # The single-use guarantee: one UPDATE that only matches a pending, unexpired row.
        statement = (
            update(ConfirmationRow)
            .where(
                ConfirmationRow.nonce_hash == nonce_hash(nonce),
                ConfirmationRow.state == ConfirmationState.PENDING.value,
                ConfirmationRow.expires_at > now,
            )
            .values(
                state=state.value,
                decided_at=now,
                approver_transport=by.transport,
                approver_id=by.user_id,
                approver_name=by.display_name,
            )
        )

        def apply() -> bool:
            with self.db.session() as session:
                return _rowcount(session.execute(statement)) == 1

        return await self._run(apply)

    async def set_prompt_message(self, confirmation_id: int, message_id: str) -> None:
        statement = (
            update(ConfirmationRow)
            .where(ConfirmationRow.id == confirmation_id)
            .values(prompt_message_id=message_id)
        )
        await self._run(lambda: _execute(self.db, statement))

    async def expire_due(self, now: datetime) -> list[Confirmation]:
        def expire() -> list[Confirmation]:
            expired = []
            with self.db.session() as session:
                due = select(ConfirmationRow.id).where(
                    ConfirmationRow.state == ConfirmationState.PENDING.value,
                    ConfirmationRow.expires_at <= now,
                )
                for row_id in session.scalars(due).all():
                    # Row by row, each guarded by its state, so a press racing us wins cleanly.
                    changed = session.execute(
                        update(ConfirmationRow)
                        .where(
                            ConfirmationRow.id == row_id,
                            ConfirmationRow.state == ConfirmationState.PENDING.value,
                        )
                        .values(state=ConfirmationState.EXPIRED.value, decided_at=now)
                    )
                    if _rowcount(changed) == 1:
                        row = session.get_one(ConfirmationRow, row_id)
                        expired.append(_confirmation(row))
            return expired

        return await self._run(expire)


def _confirmation(row: ConfirmationRow) -> Confirmation:
    approver = None
    if row.approver_transport is not None and row.approver_id is not None:
        approver = Actor(row.approver_transport, row.approver_id, row.approver_name or "")
    return Confirmation(
        id=row.id,
        command=row.command,
        args=tuple(json.loads(row.args)),
        requester=Actor(row.requester_transport, row.requester_id, row.requester_name),
        chat=ChatRef(row.chat_transport, row.chat_id),
        created_at=row.created_at,
        expires_at=row.expires_at,
        state=ConfirmationState(row.state),
        two_person=row.two_person,
        preview=row.preview,
        approver=approver,
        decided_at=row.decided_at,
        prompt_message_id=row.prompt_message_id,
    )


class SqlJobStore(_Store):
    async def start(
        self,
        *,
        kind: str,
        args: tuple[str, ...],
        requester: Actor,
        chat: ChatRef,
        started_at: datetime,
    ) -> Job:
        row = JobRow(
            kind=kind,
            args=json.dumps(list(args)),
            state=JobState.RUNNING.value,
            progress="",
            log_tail="",
            requester_transport=requester.transport,
            requester_id=requester.user_id,
            requester_name=requester.display_name,
            chat_transport=chat.transport,
            chat_id=chat.chat_id,
            started_at=started_at,
            result="",
        )

        def insert() -> Job:
            with self.db.session() as session:
                session.add(row)
                session.flush()
                return _job(row)

        return await self._run(insert)

    async def update(
        self,
        job_id: int,
        *,
        progress: str | None = None,
        log_tail: str | None = None,
        message_id: str | None = None,
    ) -> None:
        values = {
            key: value
            for key, value in (
                ("progress", progress),
                ("log_tail", log_tail),
                ("message_id", message_id),
            )
            if value is not None
        }
        if not values:
            return
        statement = update(JobRow).where(JobRow.id == job_id).values(**values)
        await self._run(lambda: _execute(self.db, statement))

    async def finish(
        self, job_id: int, *, state: JobState, result: str, finished_at: datetime
    ) -> None:
        statement = (
            update(JobRow)
            .where(JobRow.id == job_id)
            .values(state=state.value, result=result, finished_at=finished_at)
        )
        await self._run(lambda: _execute(self.db, statement))

    async def get(self, job_id: int) -> Job | None:
        def load() -> Job | None:
            with self.db.session() as session:
                row = session.get(JobRow, job_id)
                return None if row is None else _job(row)

        return await self._run(load)

    async def unfinished(self) -> list[Job]:
        def load() -> list[Job]:
            with self.db.session() as session:
                query = (
                    select(JobRow).where(JobRow.state == JobState.RUNNING.value).order_by(JobRow.id)
                )
                return [_job(row) for row in session.scalars(query)]

        return await self._run(load)


def _execute(db: Database, statement: Executable) -> None:
    with db.session() as session:
        session.execute(statement)


def _rowcount(result: Result[Any]) -> int:
    # UPDATE results are CursorResults; the rowcount is what makes a decision single-use.
    return int(getattr(result, "rowcount", 0))


def _job(row: JobRow) -> Job:
    return Job(
        id=row.id,
        kind=row.kind,
        args=tuple(json.loads(row.args)),
        requester=Actor(row.requester_transport, row.requester_id, row.requester_name),
        chat=ChatRef(row.chat_transport, row.chat_id),
        state=JobState(row.state),
        started_at=row.started_at,
        progress=row.progress,
        log_tail=row.log_tail,
        message_id=row.message_id,
        finished_at=row.finished_at,
        result=row.result,
    )


class SqlAuditLog(_Store):
    """Audit rows are written with group commit: a row is recorded once its transaction has
    committed, and rows that arrive while one commits share the next transaction. Under a
    burst that is one INSERT of many rows instead of a transaction per command."""

    def __init__(self, db: Database) -> None:
        super().__init__(db)
        self._queue: list[tuple[dict[str, object], asyncio.Future[None]]] = []
        self._writer: asyncio.Task[None] | None = None

    async def record(self, entry: AuditEntry) -> None:
        done = asyncio.get_running_loop().create_future()
        self._queue.append((_audit_values(entry), done))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write())
        await done

    async def _write(self) -> None:
        table = AuditRow.__table__
        while self._queue:
            batch, self._queue = self._queue, []
            rows = [values for values, _ in batch]
            try:
                await self._run(functools.partial(_insert_many, self.db, table, rows))
            except Exception as exc:  # noqa: BLE001 - handed to every waiting caller
                for _, done in batch:
                    if not done.done():
                        done.set_exception(exc)
            else:
                for _, done in batch:
                    if not done.done():
                        done.set_result(None)

    async def recent(self, limit: int) -> list[AuditEntry]:
        def load() -> list[AuditEntry]:
            with self.db.session() as session:
                query = select(AuditRow).order_by(AuditRow.id.desc()).limit(limit)
                return [_audit(row) for row in session.scalars(query)]

        return await self._run(load)


def _audit_values(entry: AuditEntry) -> dict[str, object]:
    approver = entry.approver
    return {
        "at": entry.at,
        "event": entry.event.value,
        "transport": entry.actor.transport,
        "actor_id": entry.actor.user_id,
        "actor_name": entry.actor.display_name,
        "chat_id": None if entry.chat is None else entry.chat.chat_id,
        "command": entry.command[:64],
        "args": json.dumps(list(entry.args)),
        "approver_transport": None if approver is None else approver.transport,
        "approver_id": None if approver is None else approver.user_id,
        "approver_name": None if approver is None else approver.display_name,
        "result": entry.result,
        "duration_ms": entry.duration_ms,
    }


def _insert_many(db: Database, table: Any, rows: list[dict[str, object]]) -> None:
    with db.engine.begin() as conn:
        conn.execute(insert(table), rows)


def _audit(row: AuditRow) -> AuditEntry:
    approver = None
    if row.approver_transport is not None and row.approver_id is not None:
        approver = Actor(row.approver_transport, row.approver_id, row.approver_name or "")
    return AuditEntry(
        at=row.at,
        event=AuditEvent(row.event),
        actor=Actor(row.transport, row.actor_id, row.actor_name),
        chat=None if row.chat_id is None else ChatRef(row.transport, row.chat_id),
        command=row.command,
        args=tuple(json.loads(row.args)),
        approver=approver,
        result=row.result,
        duration_ms=row.duration_ms,
        id=row.id,
    )


class SqlKeyValue(_Store):
    async def get(self, key: str) -> str | None:
        def load() -> str | None:
            with self.db.session() as session:
                row = session.get(KeyValueRow, key)
                return None if row is None else row.value

        return await self._run(load)

    async def set(self, key: str, value: str, now: datetime) -> None:
        def store() -> None:
            with self.db.session() as session:
                session.merge(KeyValueRow(key=key, value=value, updated_at=now))

        await self._run(store)

    async def delete(self, key: str) -> None:
        statement = delete(KeyValueRow).where(KeyValueRow.key == key)
        await self._run(lambda: _execute(self.db, statement))
