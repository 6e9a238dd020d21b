"""The SQL stores on SQLite and on a real PostgreSQL: confirmations, jobs, audit log, key-value."""

from __future__ import annotations

import asyncio
import hashlib
import secrets
import sqlite3
import threading
import time
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import event, select, text
from sqlalchemy.exc import StatementError

from bot.storage.database import CHECKPOINT_EVERY, Database
from bot.storage.models import confirmations
from bot.storage.stores import SqlAuditLog, SqlConfirmationStore, SqlJobStore, SqlKeyValue
from handlers.core.messages import Actor
from handlers.core.records import (
    AuditEntry,
    AuditEvent,
    Confirmation,
    ConfirmationState,
    JobState,
)
from tests.conftest import ADMIN, ADMIN2, CHAT, OPERATOR

NOW = datetime(2026, 11, 28, 12, 0, 0, 123456, tzinfo=UTC)
TTL = timedelta(minutes=5)
RACERS = 8


async def _ask(
    store: SqlConfirmationStore,
    nonce: str,
    *,
    created_at: datetime = NOW,
    ttl: timedelta = TTL,
    two_person: bool = False,
) -> Confirmation:
    return await store.create(
        nonce=nonce,
        command="restart",
        args=("nextcloud",),
        requester=OPERATOR,
        chat=CHAT,
        created_at=created_at,
        expires_at=created_at + ttl,
        two_person=two_person,
        preview="Restarts Nextcloud.",
    )


def _confirmation_cells(db: Database) -> list[str]:
    with db.engine.connect() as conn:
        rows = conn.execute(text("SELECT * FROM confirmations")).all()
    return [str(value) for row in rows for value in row]


# -- confirmations ----------------------------------------------------------------------------


async def test_a_created_confirmation_is_found_by_its_nonce(db: Database) -> None:
    store = SqlConfirmationStore(db)
    nonce = secrets.token_urlsafe(16)
    created = await _ask(store, nonce, two_person=True)

    found = await store.find(nonce)

    assert found == created
    assert found.command == "restart"
    assert found.args == ("nextcloud",)
    assert found.requester == OPERATOR
    assert found.chat == CHAT
    assert found.state is ConfirmationState.PENDING
    assert found.two_person is True
    assert found.created_at == NOW
    assert found.expires_at == NOW + TTL
    assert found.approver is None
    assert found.decided_at is None
    assert found.prompt_message_id is None


async def test_an_unknown_nonce_finds_nothing(db: Database) -> None:
    store = SqlConfirmationStore(db)
    await _ask(store, secrets.token_urlsafe(16))

    assert await store.find(secrets.token_urlsafe(16)) is None


async def test_only_a_hash_of_the_nonce_is_stored(db: Database) -> None:
    store = SqlConfirmationStore(db)
    nonce = secrets.token_urlsafe(16)
    await _ask(store, nonce)

    cells = _confirmation_cells(db)
    assert cells, "the confirmation row should exist"
    assert not [cell for cell in cells if nonce in cell]
    assert hashlib.sha256(nonce.encode()).hexdigest() in cells


async def test_second_press_of_the_same_button_changes_nothing(db: Database) -> None:
    store = SqlConfirmationStore(db)
    nonce = secrets.token_urlsafe(16)
    await _ask(store, nonce)

    first = await store.decide(
        nonce, state=ConfirmationState.CONFIRMED, by=OPERATOR, now=NOW + timedelta(seconds=10)
    )
    second = await store.decide(
        nonce, state=ConfirmationState.CANCELLED, by=ADMIN, now=NOW + timedelta(seconds=20)
    )

    assert (first, second) == (True, False)
    decided = await store.find(nonce)
    assert decided is not None
    assert decided.state is ConfirmationState.CONFIRMED
    assert decided.approver == OPERATOR
    assert decided.decided_at == NOW + timedelta(seconds=10)


@pytest.mark.parametrize("late", [timedelta(), timedelta(seconds=1), timedelta(days=1)])
async def test_an_expired_confirmation_cannot_be_decided(db: Database, late: timedelta) -> None:
    store = SqlConfirmationStore(db)
    nonce = secrets.token_urlsafe(16)
    await _ask(store, nonce)

    decided = await store.decide(
        nonce, state=ConfirmationState.CONFIRMED, by=OPERATOR, now=NOW + TTL + late
    )

    assert decided is False
    still = await store.find(nonce)
    assert still is not None
    assert still.state is ConfirmationState.PENDING
    assert still.approver is None


async def test_deciding_an_unknown_nonce_changes_nothing(db: Database) -> None:
    store = SqlConfirmationStore(db)
    nonce = secrets.token_urlsafe(16)
    await _ask(store, nonce)

    other = secrets.token_urlsafe(16)
    assert not await store.decide(other, state=ConfirmationState.CONFIRMED, by=ADMIN, now=NOW)
    found = await store.find(nonce)
    assert found is not None
    assert found.state is ConfirmationState.PENDING


async def test_racing_presses_in_one_event_loop_confirm_exactly_once(db: Database) -> None:
    store = SqlConfirmationStore(db)
    nonce = secrets.token_urlsafe(16)
    await _ask(store, nonce)
    people = [Actor("telegram", str(5000 + i), f"Racer {i}") for i in range(RACERS)]

    results = await asyncio.gather(
        *(
            store.decide(nonce, state=ConfirmationState.CONFIRMED, by=person, now=NOW)
            for person in people
        )
    )

    assert results.count(True) == 1
    winner = people[results.index(True)]
    decided = await store.find(nonce)
    assert decided is not None
    assert decided.state is ConfirmationState.CONFIRMED
    assert decided.approver == winner


def test_racing_presses_from_separate_threads_and_connections_confirm_exactly_once(
    db: Database,
) -> None:
    nonce = secrets.token_urlsafe(16)
    asyncio.run(_ask(SqlConfirmationStore(db), nonce))
    start = threading.Barrier(RACERS)
    results: dict[int, bool] = {}
    errors: list[BaseException] = []

    def press(index: int) -> None:
        # Every thread has its own engine: separate connections, as separate processes would.
        own = Database(db.url)
        try:
            store = SqlConfirmationStore(own)
            person = Actor("telegram", str(7000 + index), f"Thread {index}")
            state = ConfirmationState.CONFIRMED if index % 2 else ConfirmationState.CANCELLED
            start.wait(timeout=10)
            results[index] = asyncio.run(store.decide(nonce, state=state, by=person, now=NOW))
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)
        finally:
            own.dispose()

    threads = [threading.Thread(target=press, args=(i,)) for i in range(RACERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert not errors
    assert len(results) == RACERS
    assert list(results.values()).count(True) == 1
    winner = next(index for index, won in results.items() if won)
    decided = asyncio.run(SqlConfirmationStore(db).find(nonce))
    assert decided is not None
    assert decided.approver is not None
    assert decided.approver.user_id == str(7000 + winner)
    expected = ConfirmationState.CONFIRMED if winner % 2 else ConfirmationState.CANCELLED
    assert decided.state is expected


async def test_expire_due_closes_only_pending_confirmations_past_their_expiry(
    db: Database,
) -> None:
    store = SqlConfirmationStore(db)
    due, fresh, confirmed, cancelled = (secrets.token_urlsafe(16) for _ in range(4))
    due_row = await _ask(store, due, created_at=NOW - timedelta(minutes=10))
    await _ask(store, fresh, created_at=NOW - timedelta(minutes=1))
    await _ask(store, confirmed, created_at=NOW - timedelta(minutes=10))
    await _ask(store, cancelled, created_at=NOW - timedelta(minutes=10))
    early = NOW - timedelta(minutes=8)
    assert await store.decide(confirmed, state=ConfirmationState.CONFIRMED, by=ADMIN, now=early)
    assert await store.decide(cancelled, state=ConfirmationState.CANCELLED, by=ADMIN, now=early)

    expired = await store.expire_due(NOW)

    assert [conf.id for conf in expired] == [due_row.id]
    assert expired[0].state is ConfirmationState.EXPIRED
    assert expired[0].decided_at == NOW
    states = {nonce: await store.find(nonce) for nonce in (due, fresh, confirmed, cancelled)}
    assert {nonce: conf.state if conf else None for nonce, conf in states.items()} == {
        due: ConfirmationState.EXPIRED,
        fresh: ConfirmationState.PENDING,
        confirmed: ConfirmationState.CONFIRMED,
        cancelled: ConfirmationState.CANCELLED,
    }
    assert await store.expire_due(NOW) == []


async def test_a_confirmation_expiring_exactly_now_is_due(db: Database) -> None:
    store = SqlConfirmationStore(db)
    nonce = secrets.token_urlsafe(16)
    await _ask(store, nonce)

    assert await store.expire_due(NOW + TTL - timedelta(microseconds=1)) == []
    expired = await store.expire_due(NOW + TTL)

    assert [conf.state for conf in expired] == [ConfirmationState.EXPIRED]


async def test_an_expired_confirmation_can_no_longer_be_confirmed(db: Database) -> None:
    store = SqlConfirmationStore(db)
    nonce = secrets.token_urlsafe(16)
    await _ask(store, nonce, created_at=NOW - timedelta(minutes=10))
    await store.expire_due(NOW)

    # Even a press stamped before the expiry loses: the row is no longer pending.
    earlier = NOW - timedelta(minutes=9)
    assert not await store.decide(
        nonce, state=ConfirmationState.CONFIRMED, by=OPERATOR, now=earlier
    )


async def test_the_prompt_message_is_remembered(db: Database) -> None:
    store = SqlConfirmationStore(db)
    nonce, other = secrets.token_urlsafe(16), secrets.token_urlsafe(16)
    conf = await _ask(store, nonce)
    await _ask(store, other)

    await store.set_prompt_message(conf.id, "prompt-77")

    found = await store.find(nonce)
    assert found is not None
    assert found.prompt_message_id == "prompt-77"
    untouched = await store.find(other)
    assert untouched is not None
    assert untouched.prompt_message_id is None


async def test_a_naive_datetime_is_refused(db: Database) -> None:
    store = SqlConfirmationStore(db)

    with pytest.raises(StatementError, match="naive datetimes are not stored"):
        await _ask(store, secrets.token_urlsafe(16), created_at=NOW.replace(tzinfo=None))
    with db.transaction() as conn:
        assert conn.execute(select(confirmations)).all() == []


# -- jobs -------------------------------------------------------------------------------------


async def test_a_started_job_is_running_and_listed_as_unfinished(db: Database) -> None:
    store = SqlJobStore(db)

    job = await store.start(
        kind="restart", args=("nextcloud",), requester=OPERATOR, chat=CHAT, started_at=NOW
    )

    assert job.state is JobState.RUNNING
    assert job.kind == "restart"
    assert job.args == ("nextcloud",)
    assert job.requester == OPERATOR
    assert job.chat == CHAT
    assert job.started_at == NOW
    assert (job.progress, job.log_tail, job.message_id, job.finished_at, job.result) == (
        "",
        "",
        None,
        None,
        "",
    )
    assert await store.get(job.id) == job
    assert await store.unfinished() == [job]


async def test_job_updates_change_only_the_given_fields(db: Database) -> None:
    store = SqlJobStore(db)
    job = await store.start(kind="rebuild", args=(), requester=ADMIN, chat=CHAT, started_at=NOW)

    await store.update(job.id, progress="building 3/10", message_id="m9")
    await store.update(job.id, log_tail="copying path /nix/store/abc")
    await store.update(job.id)

    loaded = await store.get(job.id)
    assert loaded is not None
    assert loaded.progress == "building 3/10"
    assert loaded.log_tail == "copying path /nix/store/abc"
    assert loaded.message_id == "m9"
    assert loaded.state is JobState.RUNNING


async def test_a_finished_job_keeps_its_result_and_is_no_longer_unfinished(db: Database) -> None:
    store = SqlJobStore(db)
    done = await store.start(
        kind="restart", args=("a",), requester=ADMIN, chat=CHAT, started_at=NOW
    )
    running = await store.start(
        kind="restart", args=("b",), requester=ADMIN, chat=CHAT, started_at=NOW
    )
    later = await store.start(
        kind="backup", args=(), requester=ADMIN2, chat=CHAT, started_at=NOW + timedelta(seconds=1)
    )
    finished_at = NOW + timedelta(minutes=2)

    await store.finish(
        done.id, state=JobState.FAILED, result="unit failed", finished_at=finished_at
    )

    loaded = await store.get(done.id)
    assert loaded is not None
    assert loaded.state is JobState.FAILED
    assert loaded.result == "unit failed"
    assert loaded.finished_at == finished_at
    assert [job.id for job in await store.unfinished()] == [running.id, later.id]


async def test_an_unknown_job_is_none(db: Database) -> None:
    assert await SqlJobStore(db).get(424242) is None


# -- audit log --------------------------------------------------------------------------------


def _entry(at: datetime, command: str) -> AuditEntry:
    return AuditEntry(at, AuditEvent.COMMAND, ADMIN, CHAT, command, ("x",))


async def test_recent_audit_rows_come_newest_first_and_are_limited(db: Database) -> None:
    log = SqlAuditLog(db)
    for minute in range(5):
        await log.record(_entry(NOW + timedelta(minutes=minute), f"cmd{minute}"))

    recent = await log.recent(3)

    assert [entry.command for entry in recent] == ["cmd4", "cmd3", "cmd2"]
    assert [entry.at for entry in recent] == [NOW + timedelta(minutes=m) for m in (4, 3, 2)]
    assert all(entry.id is not None for entry in recent)
    assert len(await log.recent(100)) == 5
    assert await log.recent(0) == []


async def test_an_audit_row_keeps_every_field(db: Database) -> None:
    log = SqlAuditLog(db)
    entry = AuditEntry(
        at=NOW,
        event=AuditEvent.CONFIRMED,
        actor=OPERATOR,
        chat=CHAT,
        command="restart",
        args=("nextcloud", "now"),
        approver=ADMIN2,
        result="ok",
        duration_ms=1234,
    )
    await log.record(entry)
    await log.record(AuditEntry(NOW, AuditEvent.REFUSED, ADMIN, None, result="stranger"))

    refused, confirmed = await log.recent(2)

    assert confirmed.id is not None
    assert confirmed == AuditEntry(
        NOW, AuditEvent.CONFIRMED, OPERATOR, CHAT, "restart", ("nextcloud", "now"), ADMIN2,
        "ok", 1234, id=confirmed.id,
    )  # fmt: skip
    assert refused.chat is None
    assert refused.approver is None
    assert refused.duration_ms is None
    assert refused.event is AuditEvent.REFUSED


@pytest.mark.parametrize(
    "at",
    [
        NOW,
        datetime(2026, 7, 1, 23, 30, 5, 999999, tzinfo=timezone(timedelta(hours=2))),
        datetime(2026, 1, 1, 0, 0, tzinfo=timezone(timedelta(hours=-9, minutes=-30))),
    ],
    ids=["utc", "plus-2h", "minus-9h30"],
)
async def test_datetimes_come_back_as_the_same_instant_in_utc(db: Database, at: datetime) -> None:
    log = SqlAuditLog(db)
    await log.record(_entry(at, "status"))

    (entry,) = await log.recent(1)

    assert entry.at == at
    assert entry.at.tzinfo is UTC
    assert entry.at.utcoffset() == timedelta(0)
    assert entry.at.replace(tzinfo=None) == at.astimezone(UTC).replace(tzinfo=None)


async def test_datetimes_sort_by_instant_not_by_local_clock_reading(db: Database) -> None:
    store = SqlConfirmationStore(db)
    nonce = secrets.token_urlsafe(16)
    # 13:00 at +02:00 is 11:00 UTC: already past NOW (12:00 UTC) although it reads later.
    tz = timezone(timedelta(hours=2))
    created = datetime(2026, 11, 28, 12, 55, tzinfo=tz)
    await _ask(store, nonce, created_at=created, ttl=timedelta(minutes=5))

    expired = await store.expire_due(NOW)

    assert [conf.expires_at for conf in expired] == [datetime(2026, 11, 28, 11, 0, tzinfo=UTC)]


# -- key-value --------------------------------------------------------------------------------


async def test_a_missing_key_reads_as_none(db: Database) -> None:
    assert await SqlKeyValue(db).get("matrix.since") is None


async def test_a_value_is_stored_overwritten_and_deleted(db: Database) -> None:
    kv = SqlKeyValue(db)

    await kv.set("matrix.since", "s1", NOW)
    await kv.set("other", "keep me", NOW)
    assert await kv.get("matrix.since") == "s1"

    await kv.set("matrix.since", "s2_long_token" * 100, NOW + timedelta(seconds=1))
    assert await kv.get("matrix.since") == "s2_long_token" * 100

    await kv.delete("matrix.since")
    assert await kv.get("matrix.since") is None
    assert await kv.get("other") == "keep me"

    await kv.delete("matrix.since")  # deleting twice is harmless
    assert await kv.get("other") == "keep me"


async def test_an_overwrite_moves_the_time_of_the_key_and_touches_no_other(db: Database) -> None:
    kv = SqlKeyValue(db)
    await kv.set("matrix:seen:a", "1", NOW - timedelta(days=3))
    await kv.set("matrix:seen:b", "1", NOW - timedelta(days=3))
    await kv.set("matrix:seen:a", "2", NOW)  # written again: young now

    assert await kv.purge("matrix:seen:", NOW - timedelta(days=2)) == 1
    assert await kv.get("matrix:seen:a") == "2"
    assert await kv.get("matrix:seen:b") is None


async def test_rows_that_arrive_during_a_commit_share_the_next_one(db: Database) -> None:
    """Group commit: the first row commits at once; the rows that arrive while its commit is
    in flight (held here for 0.2 s) wait for it and then go together in one transaction."""
    commits: list[int] = []
    in_commit = threading.Event()

    def slow_first_commit(_conn: object) -> None:
        commits.append(1)
        if len(commits) == 1:
            in_commit.set()
            time.sleep(0.2)

    event.listen(db.engine, "commit", slow_first_commit)
    log = SqlAuditLog(db)

    first = asyncio.create_task(log.record(_entry(NOW, "first")))
    await asyncio.to_thread(in_commit.wait, 5)
    rest = [asyncio.create_task(log.record(_entry(NOW, f"cmd{i}"))) for i in range(10)]
    await asyncio.gather(first, *rest)

    assert len(commits) == 2
    assert [entry.command for entry in await log.recent(20)][-1] == "first"
    assert len(await log.recent(20)) == 11


async def test_a_lone_row_commits_in_its_own_transaction_with_no_wait(db: Database) -> None:
    """Back to back, each row finds the writer idle: one commit each, none held back for a
    neighbour (a commit interval would gather these into fewer transactions)."""
    commits: list[int] = []
    event.listen(db.engine, "commit", lambda _conn: commits.append(1))
    log = SqlAuditLog(db)

    for index in range(5):
        await log.record(_entry(NOW, f"cmd{index}"))
        assert len(commits) == index + 1


async def test_flush_waits_for_rows_whose_callers_stopped_waiting(db: Database) -> None:
    """A clean stop cancels handlers that still wait for their rows; flush still writes them."""
    log = SqlAuditLog(db)
    waiting = [asyncio.create_task(log.record(_entry(NOW, f"cmd{i}"))) for i in range(20)]
    await asyncio.sleep(0)
    for task in waiting:
        task.cancel()

    await log.flush()

    assert len(await log.recent(50)) == 20


# -- the audit log's commit on the loop's thread (SQLite) -------------------------------------


def _wal_bytes(db: Database) -> int:
    path = db.engine.url.database
    assert path is not None
    wal = Path(path + "-wal")
    return wal.stat().st_size if wal.exists() else 0


async def test_a_locked_database_never_stalls_the_loop_and_the_row_still_commits(
    sqlite_db: Database,
) -> None:
    """Another writer holds SQLite's write lock. The commit on the loop's thread gives up at
    once (it must not wait out the busy timeout there), the worker thread waits for the lock,
    and the row lands when the lock is released, in order with the rows before and after."""
    log = SqlAuditLog(sqlite_db)
    await log.record(_entry(NOW, "before"))
    path = sqlite_db.engine.url.database
    assert path is not None
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # the write lock, as a long write of the worker holds it

    loop = asyncio.get_running_loop()
    started = loop.time()
    blocked = asyncio.create_task(log.record(_entry(NOW, "during")))
    for _ in range(5):
        await asyncio.sleep(0)  # the loop turns: the commit was tried on it
    # The busy timeout is 30 s: a loop that waited for the lock would take that long here.
    assert loop.time() - started < 5
    assert not blocked.done()

    holder.execute("COMMIT")
    holder.close()
    await blocked
    await log.record(_entry(NOW, "after"))

    assert [e.command for e in reversed(await log.recent(10))] == ["before", "during", "after"]


async def test_commits_on_the_loop_leave_the_wal_checkpointed_by_the_worker(
    sqlite_db: Database,
) -> None:
    """The loop's connection never checkpoints (a checkpoint writes the database file and may
    sync it); the worker does, every CHECKPOINT_EVERY commits, so the WAL does not grow
    without bound under a steady stream of rows."""
    log = SqlAuditLog(sqlite_db)
    await log.record(_entry(NOW, "first"))
    start = _wal_bytes(sqlite_db)
    for index in range(10):
        await log.record(_entry(NOW, f"warm{index}"))
    per_commit = (_wal_bytes(sqlite_db) - start) / 10
    rounds = CHECKPOINT_EVERY * 5
    for index in range(rounds):
        await log.record(_entry(NOW, f"cmd{index}"))
    await sqlite_db.run(lambda: None)  # the worker has run every checkpoint asked of it

    assert len(await log.recent(rounds + 20)) == rounds + 11
    # Without the checkpoints the WAL would hold every one of the rounds' commits.
    assert per_commit > 0
    assert _wal_bytes(sqlite_db) < start + per_commit * CHECKPOINT_EVERY * 2


async def test_on_sqlite_a_submitted_row_commits_once_awaited_or_flushed(
    sqlite_db: Database,
) -> None:
    """The commit runs on the loop's thread: not before the caller has sent its reply and
    awaits the row, or a flush (a clean stop) asks for it."""
    log = SqlAuditLog(sqlite_db)
    pending = log.submit(_entry(NOW, "awaited"))
    for _ in range(5):
        await asyncio.sleep(0)
    assert await log.recent(5) == []

    await pending
    assert [e.command for e in await log.recent(5)] == ["awaited"]

    log.submit(_entry(NOW, "flushed"))  # never awaited: the caller was cancelled
    await log.flush()
    assert [e.command for e in await log.recent(5)] == ["flushed", "awaited"]

    # Rows from several chats at once (a burst) commit together at the loop's next turn.
    together = [log.submit(_entry(NOW, f"burst{i}")) for i in range(3)]
    for _ in range(5):
        await asyncio.sleep(0)
    assert len(await log.recent(10)) == 5
    await asyncio.gather(*together)


async def test_a_key_value_write_goes_to_the_worker_while_the_database_is_locked(
    sqlite_db: Database,
) -> None:
    """Short writes are made on the loop's thread when SQLite's write lock is free; while
    another writer holds it, they wait in the worker thread instead, and the loop runs on."""
    kv = SqlKeyValue(sqlite_db)
    await kv.set("matrix.since", "s1", NOW)  # on the loop's thread
    path = sqlite_db.engine.url.database
    assert path is not None
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")

    loop = asyncio.get_running_loop()
    started = loop.time()
    waiting = asyncio.create_task(kv.set("matrix.since", "s2", NOW))
    for _ in range(5):
        await asyncio.sleep(0)
    assert loop.time() - started < 5  # the busy timeout is 30 s: the loop did not wait it out
    assert not waiting.done()

    holder.execute("COMMIT")
    holder.close()
    await waiting
    assert await kv.get("matrix.since") == "s2"
    assert await kv.add("matrix.since", "s3", NOW) is False  # exists: refused, not lost
    assert await kv.add("seen:$event", "", NOW) is True
    assert await kv.get("matrix.since") == "s2"
