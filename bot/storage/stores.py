"""The SQLAlchemy Core implementations of the core's store Protocols.

Queries are synchronous, each in a transaction on one connection; every call runs in a worker
thread so the event loop never waits on the database. The exceptions are short writes on
SQLite (the audit log's rows, the key-value store), made on the loop's thread only when they
cannot wait (see Database.write_inline).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import json
from collections.abc import Awaitable, Callable, Generator, Mapping
from concurrent.futures import Future
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import (
    Connection,
    Executable,
    Insert,
    Select,
    Table,
    bindparam,
    delete,
    insert,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError

from bot import wire
from bot.storage.database import Database
from bot.storage.models import audit_log, confirmations, jobs, kv, samples
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

# A row's values by column name: a RowMapping from a SELECT, or the values just inserted.
_Row = Mapping[Any, Any]

# The writes made on every command or sync, built once: SQLAlchemy then finds their compiled
# form by a cache key kept on the statement, instead of building a statement and computing its
# key each time. Measured as the bot's CPU time in a burst of 1,000 commands: 0.05 ms less
# per command, a quarter of what the audit row cost (docs/performance.md).
AUDIT_INSERT = insert(audit_log)
KV_UPDATE = (
    update(kv)
    .where(kv.c.key == bindparam("the_key"))
    .values(value=bindparam("new_value"), updated_at=bindparam("new_at"))
)
KV_INSERT = insert(kv)


def nonce_hash(nonce: str) -> str:
    """Only the hash is stored: a copy of the database cannot press anybody's buttons."""
    return hashlib.sha256(nonce.encode()).hexdigest()


class _Store:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def _run(self, fn: Callable[[], T]) -> T:
        return await self.db.run(fn)


def _insert(db: Database, table: Table, values: dict[str, Any]) -> _Row:
    """Inserts one row; returns its values with the generated ``id``."""
    with db.transaction() as conn:
        key = conn.execute(insert(table).values(values)).inserted_primary_key
    assert key is not None  # noqa: S101 - a single-row INSERT always has one
    return {**values, "id": key[0]}


def _execute(db: Database, statement: Executable) -> int:
    """Runs an UPDATE or DELETE; returns how many rows it matched."""
    with db.transaction() as conn:
        return conn.execute(statement).rowcount


def _first(db: Database, query: Select[Any]) -> _Row | None:
    with db.transaction() as conn:
        return conn.execute(query).mappings().first()


def _all(db: Database, query: Select[Any]) -> list[_Row]:
    with db.transaction() as conn:
        return list(conn.execute(query).mappings())


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
        values = {
            "nonce_hash": nonce_hash(nonce),
            "command": command,
            "args": json.dumps(list(args)),
            "requester_transport": requester.transport,
            "requester_id": requester.user_id,
            "requester_name": requester.display_name,
            "chat_transport": chat.transport,
            "chat_id": chat.chat_id,
            "prompt_message_id": None,
            "preview": preview,
            "two_person": two_person,
            "state": ConfirmationState.PENDING.value,
            "created_at": created_at,
            "expires_at": expires_at,
            "decided_at": None,
            "approver_transport": None,
            "approver_id": None,
            "approver_name": None,
        }
        return await self._run(lambda: _confirmation(_insert(self.db, confirmations, values)))

    async def find(self, nonce: str) -> Confirmation | None:
        query = select(confirmations).where(confirmations.c.nonce_hash == nonce_hash(nonce))

        def load() -> Confirmation | None:
            row = _first(self.db, query)
            return None if row is None else _confirmation(row)

        return await self._run(load)

    async def decide(
        self, nonce: str, *, state: ConfirmationState, by: Actor, now: datetime
    ) -> bool:
        # The single-use guarantee: one UPDATE that only matches a pending, unexpired row.
        statement = (
            update(confirmations)
            .where(
                confirmations.c.nonce_hash == nonce_hash(nonce),
                confirmations.c.state == ConfirmationState.PENDING.value,
                confirmations.c.expires_at > now,
            )
            .values(
                state=state.value,
                decided_at=now,
                approver_transport=by.transport,
                approver_id=by.user_id,
                approver_name=by.display_name,
            )
        )
        return await self._run(lambda: _execute(self.db, statement) == 1)

    async def set_prompt_message(self, confirmation_id: int, message_id: str) -> None:
        statement = (
            update(confirmations)
            .where(confirmations.c.id == confirmation_id)
            .values(prompt_message_id=message_id)
        )
        await self._run(lambda: _execute(self.db, statement))

    async def expire_due(self, now: datetime) -> list[Confirmation]:
        table = confirmations
        pending = table.c.state == ConfirmationState.PENDING.value

        def expire() -> list[Confirmation]:
            expired = []
            with self.db.transaction() as conn:
                due = select(table.c.id).where(pending, table.c.expires_at <= now)
                for row_id in conn.scalars(due).all():
                    # Row by row, each guarded by its state, so a press racing us wins cleanly.
                    changed = conn.execute(
                        update(table)
                        .where(table.c.id == row_id, pending)
                        .values(state=ConfirmationState.EXPIRED.value, decided_at=now)
                    )
                    if changed.rowcount == 1:
                        row = conn.execute(select(table).where(table.c.id == row_id))
                        expired.append(_confirmation(row.mappings().one()))
            return expired

        return await self._run(expire)


def _confirmation(row: _Row) -> Confirmation:
    approver = None
    if row["approver_transport"] is not None and row["approver_id"] is not None:
        approver = Actor(row["approver_transport"], row["approver_id"], row["approver_name"] or "")
    return Confirmation(
        id=row["id"],
        command=row["command"],
        args=tuple(json.loads(row["args"])),
        requester=Actor(row["requester_transport"], row["requester_id"], row["requester_name"]),
        chat=ChatRef(row["chat_transport"], row["chat_id"]),
        created_at=row["created_at"],
        expires_at=row["expires_at"],
        state=ConfirmationState(row["state"]),
        two_person=row["two_person"],
        preview=row["preview"],
        approver=approver,
        decided_at=row["decided_at"],
        prompt_message_id=row["prompt_message_id"],
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
        values = {
            "kind": kind,
            "args": json.dumps(list(args)),
            "state": JobState.RUNNING.value,
            "progress": "",
            "log_tail": "",
            "requester_transport": requester.transport,
            "requester_id": requester.user_id,
            "requester_name": requester.display_name,
            "chat_transport": chat.transport,
            "chat_id": chat.chat_id,
            "message_id": None,
            "started_at": started_at,
            "finished_at": None,
            "result": "",
        }
        return await self._run(lambda: _job(_insert(self.db, jobs, values)))

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
        statement = update(jobs).where(jobs.c.id == job_id).values(values)
        await self._run(lambda: _execute(self.db, statement))

    async def finish(
        self, job_id: int, *, state: JobState, result: str, finished_at: datetime
    ) -> None:
        statement = (
            update(jobs)
            .where(jobs.c.id == job_id)
            .values(state=state.value, result=result, finished_at=finished_at)
        )
        await self._run(lambda: _execute(self.db, statement))

    async def get(self, job_id: int) -> Job | None:
        query = select(jobs).where(jobs.c.id == job_id)

        def load() -> Job | None:
            row = _first(self.db, query)
            return None if row is None else _job(row)

        return await self._run(load)

    async def unfinished(self) -> list[Job]:
        query = select(jobs).where(jobs.c.state == JobState.RUNNING.value).order_by(jobs.c.id)
        return await self._run(lambda: [_job(row) for row in _all(self.db, query)])


def _job(row: _Row) -> Job:
    return Job(
        id=row["id"],
        kind=row["kind"],
        args=tuple(json.loads(row["args"])),
        requester=Actor(row["requester_transport"], row["requester_id"], row["requester_name"]),
        chat=ChatRef(row["chat_transport"], row["chat_id"]),
        state=JobState(row["state"]),
        started_at=row["started_at"],
        progress=row["progress"],
        log_tail=row["log_tail"],
        message_id=row["message_id"],
        finished_at=row["finished_at"],
        result=row["result"],
    )


class SqlAuditLog(_Store):
    """Audit rows are written with group commit, and nothing waits for a timer.

    A row that finds the writer idle is committed at once: at the loop's next turn (rows
    queued in this turn join it), or, a lone row on SQLite, when it is awaited. Rows that
    arrive while a commit is in flight wait for it to end and then share the next
    transaction, so under a burst one INSERT carries many rows, and a lone command never
    waits for another's interval. On SQLite the commit is made on the loop's
    own thread when the write lock is free (``Database.write_inline``: it never waits for
    the lock, nor checkpoints); otherwise, and on PostgreSQL, in the database's worker thread
    on a connection kept open for it, and the loop hears of it with one callback.

    ``record`` returns once the row has committed: the engine awaits it before an action runs,
    and before a chat's next message is handled. ``submit`` queues the row at once and returns
    what to await, so that a read-only command's reply does not wait for its row: on
    PostgreSQL the commit runs in the worker thread while the reply is on its way; on SQLite
    a lone row commits on the loop's thread once the reply's request has been written, while
    the answer is awaited (or when the row is awaited, where the transport does not say when
    its request was written), and rows queued together commit at the loop's next turn.
    ``flush`` commits and waits for every queued row; a clean stop calls it."""

    def __init__(self, db: Database) -> None:
        super().__init__(db)
        self._queue: list[tuple[dict[str, object], asyncio.Future[None]]] = []
        self._drained: asyncio.Future[None] | None = None  # set while a commit is in flight

    async def record(self, entry: AuditEntry) -> None:
        await self.submit(entry)

    def submit(self, entry: AuditEntry) -> Awaitable[None]:
        loop = asyncio.get_running_loop()
        done = loop.create_future()
        self._queue.append((_audit_values(entry), done))
        if self.db.inline and len(self._queue) == 1:
            # A lone row on SQLite: the commit runs on this thread, so it starts once the reply
            # has been written to the socket (bot.wire), while Telegram answers it; or when
            # the row is awaited, if that comes first. Not at the loop's next turn, which may
            # come before the reply has been written. A commit in flight, the next row's, or a
            # flush takes it along before that.
            wire.once_written(functools.partial(self._kick, loop))
            return _Deferred(self, done)
        # Rows from several chats at once (a burst), or PostgreSQL: commit at the next turn,
        # while the replies are on their way; in the worker thread on PostgreSQL.
        self._kick(loop)
        return done

    def _kick(self, loop: asyncio.AbstractEventLoop) -> None:
        """Start a commit if rows wait and none is in flight."""
        if self._queue and self._drained is None:
            self._drained = loop.create_future()
            loop.call_soon(self._commit_next, loop)

    async def flush(self) -> None:
        """Wait until every row queued so far has been written (or has failed)."""
        self._kick(asyncio.get_running_loop())
        while self._drained is not None:
            await asyncio.shield(self._drained)

    def _commit_next(self, loop: asyncio.AbstractEventLoop) -> None:
        batch, self._queue = self._queue, []
        rows = [values for values, _ in batch]
        # SQLite: on this thread when the write lock is free (no hand-over to the worker and
        # back, which cost more than the INSERT); the worker thread when it is not.
        if self.db.write_inline(functools.partial(_insert_rows, AUDIT_INSERT, rows)):
            self._committed(loop, batch, None)
            return
        try:
            work = self.db.submit(functools.partial(_insert_held, self.db, AUDIT_INSERT, rows))
        except Exception as exc:  # noqa: BLE001 - the executor is shut down: the rows fail
            self._committed(loop, batch, exc)
            return

        def heard(finished: Future[None]) -> None:
            with contextlib.suppress(RuntimeError):  # the loop has closed: nobody is waiting
                loop.call_soon_threadsafe(self._committed, loop, batch, finished.exception())

        work.add_done_callback(heard)

    def _committed(
        self,
        loop: asyncio.AbstractEventLoop,
        batch: list[tuple[dict[str, object], asyncio.Future[None]]],
        failure: BaseException | None,
    ) -> None:
        for _, done in batch:
            if done.done():
                continue
            if failure is None:
                done.set_result(None)
            else:
                done.set_exception(failure)
        if self._queue:
            self._commit_next(loop)
            return
        drained, self._drained = self._drained, None
        if drained is not None and not drained.done():
            drained.set_result(None)

    async def recent(self, limit: int) -> list[AuditEntry]:
        query = select(audit_log).order_by(audit_log.c.id.desc()).limit(limit)
        return await self._run(lambda: [_audit(row) for row in _all(self.db, query)])


class _Deferred:
    """A queued row whose commit starts when it is awaited."""

    __slots__ = ("_done", "_log")

    def __init__(self, log: SqlAuditLog, done: asyncio.Future[None]) -> None:
        self._log, self._done = log, done

    def __await__(self) -> Generator[Any, None, None]:
        self._log._kick(asyncio.get_running_loop())
        return self._done.__await__()


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


def _insert_rows(statement: Insert, rows: list[dict[str, object]], conn: Connection) -> None:
    # A list of parameter sets makes one executemany: a single INSERT for the whole batch.
    conn.execute(statement, rows)


def _kv_row(key: str, value: str, now: datetime) -> dict[str, object]:
    return {"key": key, "value": value, "updated_at": now}


def _insert_held(db: Database, statement: Insert, rows: list[dict[str, object]]) -> None:
    with db.held_transaction() as conn:
        _insert_rows(statement, rows, conn)


def _audit(row: _Row) -> AuditEntry:
    approver = None
    if row["approver_transport"] is not None and row["approver_id"] is not None:
        approver = Actor(row["approver_transport"], row["approver_id"], row["approver_name"] or "")
    return AuditEntry(
        at=row["at"],
        event=AuditEvent(row["event"]),
        actor=Actor(row["transport"], row["actor_id"], row["actor_name"]),
        chat=None if row["chat_id"] is None else ChatRef(row["transport"], row["chat_id"]),
        command=row["command"],
        args=tuple(json.loads(row["args"])),
        approver=approver,
        result=row["result"],
        duration_ms=row["duration_ms"],
        id=row["id"],
    )


class SqlKeyValue(_Store):
    async def get(self, key: str) -> str | None:
        query = select(kv.c.value).where(kv.c.key == key)

        def load() -> str | None:
            with self.db.transaction() as conn:
                value: str | None = conn.scalar(query)
            return value

        return await self._run(load)

    async def set(self, key: str, value: str, now: datetime) -> None:
        row = {"the_key": key, "new_value": value, "new_at": now}

        def store(conn: Connection) -> None:
            # Update, or insert when there is no row yet: what the ORM's merge() did, minus
            # its SELECT.
            if conn.execute(KV_UPDATE, row).rowcount == 0:
                conn.execute(KV_INSERT, _kv_row(key, value, now))

        await self.db.write(store)

    async def add(self, key: str, value: str, now: datetime) -> bool:
        """Insert unless the key exists; True when this call inserted it. Atomic: of two
        callers racing for one key, exactly one gets True."""

        def store(conn: Connection) -> None:
            conn.execute(KV_INSERT, _kv_row(key, value, now))

        try:
            await self.db.write(store)
        except IntegrityError:
            return False
        return True

    async def delete(self, key: str) -> None:
        statement = delete(kv).where(kv.c.key == key)
        await self.db.write(lambda conn: conn.execute(statement))

    async def purge(self, prefix: str, before: datetime) -> int:
        """Delete the keys under ``prefix`` last written before ``before``."""
        statement = delete(kv).where(
            kv.c.key.startswith(prefix, autoescape=True), kv.c.updated_at < before
        )
        return await self._run(lambda: _execute(self.db, statement))


class SqlSamples(_Store):
    """Host readings over time."""

    async def add(self, at: datetime, values: Mapping[str, float]) -> None:
        rows = [{"at": at, "metric": metric, "value": value} for metric, value in values.items()]
        if not rows:
            return

        def store() -> None:
            with self.db.transaction() as conn:
                conn.execute(insert(samples), rows)

        await self._run(store)

    async def series(self, metric: str, since: datetime) -> list[tuple[datetime, float]]:
        query = (
            select(samples.c.at, samples.c.value)
            .where(samples.c.metric == metric, samples.c.at >= since)
            .order_by(samples.c.at)
        )

        def load() -> list[tuple[datetime, float]]:
            with self.db.transaction() as conn:
                return [(row.at, row.value) for row in conn.execute(query)]

        return await self._run(load)

    async def purge(self, before: datetime) -> int:
        statement = delete(samples).where(samples.c.at < before)
        return await self._run(lambda: _execute(self.db, statement))
