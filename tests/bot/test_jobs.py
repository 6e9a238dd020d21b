"""Jobs: persisted progress, failures, re-attaching after a restart, and the throttled message."""

from __future__ import annotations

import asyncio
import contextlib
import time

import pytest
from sqlalchemy import select

from bot.storage import models
from bot.storage.database import Database
from bot.storage.stores import SqlAuditLog, SqlJobStore
from handlers.core.messages import Actor, Attachment, ChatRef, MessageRef, Reply
from handlers.core.progress import ThrottledMessage
from handlers.core.records import AuditEntry, AuditEvent, Job, JobState
from providers.host.base import UnitStatus
from tests.conftest import ADMIN, CHAT, OPERATOR, STRANGER, Harness, make_harness
from tests.support.chat import RecordingOutbox


async def _jobs(db: Database) -> list[Job]:
    with db.transaction() as conn:
        ids = list(conn.scalars(select(models.jobs.c.id).order_by(models.jobs.c.id)))
    store = SqlJobStore(db)
    found = [await store.get(job_id) for job_id in ids]
    return [job for job in found if job is not None]


async def _outcomes(db: Database) -> list[AuditEntry]:
    return [e for e in await SqlAuditLog(db).recent(100) if e.event is AuditEvent.OUTCOME]


async def _running_job_with_a_message(db: Database, seconds: float = 2.0) -> Job:
    store = SqlJobStore(db)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        jobs = await store.unfinished()
        if jobs and jobs[0].message_id is not None:
            return jobs[0]
        await asyncio.sleep(0.01)
    raise AssertionError("no running job sent its progress message in time")


async def _crash_mid_restart(first: Harness) -> Job:
    """Confirm /restart nextcloud, then stop the bot while the first unit restarts."""
    await first.say("/restart nextcloud", OPERATOR)
    press = asyncio.create_task(first.press(1, OPERATOR))
    job = await _running_job_with_a_message(first.db)
    press.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await press
    assert press.cancelled(), "the press should still have been running when the bot stopped"
    return job


def _after_restart(first: Harness) -> Harness:
    """The bot after a restart: a new engine on the same database, talking to the same chat.

    The demo server is new too: systemd finished the restart while the bot was away."""
    second = make_harness(first.db)
    second.engine.outbox = second.outbox = first.outbox
    return second


# -- running and failing ----------------------------------------------------------------------


async def test_a_confirmed_restart_keeps_its_progress_in_the_job_row(db: Database) -> None:
    h = make_harness(db)
    await h.say("/restart nextcloud", OPERATOR)

    assert await h.press(1, OPERATOR) == "Confirmed."

    (job,) = await _jobs(db)
    assert job.state is JobState.SUCCEEDED
    assert (job.kind, job.args, job.requester) == ("restart", ("nextcloud",), OPERATOR)
    assert job.progress == "Restarting Nextcloud: <code>redis-nextcloud.service</code> (2/2)"
    assert job.message_id is not None
    assert job.finished_at == h.clock()
    assert "Nextcloud restarted and active" in h.outbox.by_id(job.message_id).current.text
    assert [e.result for e in await _outcomes(db)] == ["succeeded"]
    assert h.server.services.calls.count(("restart", "redis-nextcloud.service")) == 1
    assert ("restart", "nginx.service") not in h.server.services.calls  # shared, left alone


async def test_the_progress_message_shows_each_step_then_the_outcome(db: Database) -> None:
    h = make_harness(db)
    await h.say("/restart nextcloud", OPERATOR)
    await h.press(1, OPERATOR)

    (job,) = await _jobs(db)
    assert job.message_id is not None
    progress = h.outbox.by_id(job.message_id)
    shown = [progress.reply.text, *(edit.text for edit in progress.edits)]
    assert shown[0].endswith("phpfpm-nextcloud.service</code> (1/2)")
    assert progress.reply.silent
    assert "Nextcloud restarted and active" in shown[-1]
    assert progress.reply_to == h.last_prompt().message_id


async def test_a_failed_restart_ends_failed_with_the_error_in_the_message(db: Database) -> None:
    h = make_harness(db)
    h.server.services.fail_restart.add("phpfpm-nextcloud.service")
    await h.say("/restart nextcloud", OPERATOR)

    await h.press(1, OPERATOR)

    (job,) = await _jobs(db)
    assert job.state is JobState.FAILED
    assert "phpfpm-nextcloud.service" in job.result
    assert "failed because the control process exited" in job.result
    assert job.progress.endswith("<code>phpfpm-nextcloud.service</code> (1/2)")
    assert job.message_id is not None
    text = h.outbox.by_id(job.message_id).current.text
    assert text.startswith("❌ Restarting <code>phpfpm-nextcloud.service</code> failed")
    assert "failed because the control process exited" in text
    # The unit after the failing one was never touched.
    assert ("restart", "redis-nextcloud.service") not in h.server.services.calls
    (outcome,) = await _outcomes(db)
    assert outcome.result.startswith(
        "failed: Restarting <code>phpfpm-nextcloud.service</code> failed"
    )
    assert await SqlJobStore(db).unfinished() == []


# -- after a restart of the bot ---------------------------------------------------------------


async def test_a_job_cut_short_by_a_restart_is_checked_and_reported_afterwards(
    db: Database,
) -> None:
    first = make_harness(db, step_seconds=30)
    crashed = await _crash_mid_restart(first)
    assert crashed.state is JobState.RUNNING
    assert crashed.progress.endswith("phpfpm-nextcloud.service</code> (1/2)")
    assert await _outcomes(db) == []

    second = _after_restart(first)
    assert await second.engine.jobs.reattach() == 1
    assert await second.engine.wait_for_jobs(5)

    assert crashed.message_id is not None
    message = first.outbox.by_id(crashed.message_id)
    assert "checked after the bot restarted" in message.current.text
    assert "active" in message.current.text
    job = await SqlJobStore(db).get(crashed.id)
    assert job is not None
    assert job.state is JobState.SUCCEEDED
    assert job.finished_at is not None
    (outcome,) = await _outcomes(db)
    assert (outcome.command, outcome.args, outcome.actor) == ("restart", ("nextcloud",), OPERATOR)
    assert outcome.result == "succeeded"
    # Resuming only checks: nothing was restarted a second time.
    assert not [call for call in second.server.services.calls if call[0] == "restart"]


async def test_a_reported_job_is_not_reported_again_after_the_next_restart(db: Database) -> None:
    first = make_harness(db, step_seconds=30)
    await _crash_mid_restart(first)
    second = _after_restart(first)
    await second.engine.jobs.reattach()
    await second.engine.wait_for_jobs(5)
    sent, edits = len(first.outbox.messages), sum(len(m.edits) for m in first.outbox.messages)

    third = _after_restart(second)

    assert await third.engine.jobs.reattach() == 0
    assert await third.engine.wait_for_jobs(1)
    assert len(first.outbox.messages) == sent
    assert sum(len(m.edits) for m in first.outbox.messages) == edits
    assert len(await _outcomes(db)) == 1


async def test_a_resumed_job_whose_service_is_still_down_ends_failed(db: Database) -> None:
    first = make_harness(db, step_seconds=30)
    crashed = await _crash_mid_restart(first)
    second = _after_restart(first)
    second.server.services.units["redis-nextcloud.service"] = UnitStatus(
        "redis-nextcloud.service", "loaded", "failed", "failed"
    )

    await second.engine.jobs.reattach()
    await second.engine.wait_for_jobs(5)

    job = await SqlJobStore(db).get(crashed.id)
    assert job is not None
    assert job.state is JobState.FAILED
    assert "checked after the bot restarted" in job.result
    assert crashed.message_id is not None
    text = first.outbox.by_id(crashed.message_id).current.text
    assert text == "❌ Nextcloud is failed (checked after the bot restarted)."
    (outcome,) = await _outcomes(db)
    assert outcome.result.startswith("failed: ")


@pytest.mark.parametrize(
    ("kind", "args", "requester"),
    [
        ("ping", (), ADMIN),  # known, but has no way to check its outcome
        ("frobnicate", ("x",), ADMIN),  # a command this version no longer has
        ("restart", ("nextcloud",), STRANGER),  # the requester lost their role meanwhile
    ],
    ids=["no-resume", "unknown-kind", "requester-without-role"],
)
async def test_a_job_that_cannot_be_checked_is_reported_as_interrupted(
    db: Database, kind: str, args: tuple[str, ...], requester: Actor
) -> None:
    store = SqlJobStore(db)
    first = make_harness(db)
    orphan = await store.start(
        kind=kind, args=args, requester=requester, chat=CHAT, started_at=first.clock()
    )

    assert await first.engine.jobs.reattach() == 1
    assert await first.engine.wait_for_jobs(5)

    line = " ".join([f"/{kind}", *args])
    texts = [sent.current.text for sent in first.outbox.messages if sent.chat == CHAT]
    assert texts == [f"The bot restarted while <code>{line}</code> ran; its outcome is unknown."]
    job = await store.get(orphan.id)
    assert job is not None
    assert job.state is JobState.INTERRUPTED
    assert job.result == "outcome unknown after a restart"
    assert job.finished_at is not None
    (outcome,) = await _outcomes(db)
    assert outcome.result == "interrupted: outcome unknown after a restart"
    assert not [call for call in first.server.services.calls if call[0] == "restart"]


async def test_an_interrupted_job_edits_its_progress_message(db: Database) -> None:
    first = make_harness(db)
    store = SqlJobStore(db)
    ref = await first.outbox.send(CHAT, Reply("Pinging…", silent=True))
    orphan = await store.start(
        kind="ping", args=(), requester=ADMIN, chat=CHAT, started_at=first.clock()
    )
    await store.update(orphan.id, message_id=ref.message_id, progress="Pinging…")

    await first.engine.jobs.reattach()
    await first.engine.wait_for_jobs(5)

    assert len(first.outbox.messages) == 1
    assert "outcome is unknown" in first.outbox.by_id(ref.message_id).current.text


async def test_jobs_in_another_chat_are_reported_in_that_chat(db: Database) -> None:
    other = ChatRef("telegram", "-100777")
    first = make_harness(db)
    await SqlJobStore(db).start(
        kind="ping", args=(), requester=ADMIN, chat=other, started_at=first.clock()
    )

    await first.engine.jobs.reattach()
    await first.engine.wait_for_jobs(5)

    assert [sent.chat for sent in first.outbox.messages] == [other]


# -- the throttled progress message -----------------------------------------------------------

INTERVAL = 0.2
SLACK = 0.01  # the event loop may wake a hair early; never a whole interval


class TimedOutbox(RecordingOutbox):
    """Records when each send and edit happened (monotonic seconds)."""

    def __init__(self) -> None:
        super().__init__()
        self.times: list[float] = []

    async def send(self, chat: ChatRef, reply: Reply, reply_to: str | None = None) -> MessageRef:
        self.times.append(time.monotonic())
        return await super().send(chat, reply, reply_to)

    async def edit(self, ref: MessageRef, reply: Reply) -> None:
        self.times.append(time.monotonic())
        await super().edit(ref, reply)


async def test_a_burst_of_updates_sends_once_and_then_edits_once_with_the_newest_text() -> None:
    outbox = TimedOutbox()
    sent: list[MessageRef] = []

    async def remember(ref: MessageRef) -> None:
        sent.append(ref)

    message = ThrottledMessage(outbox, CHAT, interval=INTERVAL, reply_to="m1", on_sent=remember)

    for step in range(50):
        await message.update(f"step {step}")

    assert [m.reply.text for m in outbox.messages] == ["step 0"]
    assert outbox.messages[0].edits == []
    assert outbox.messages[0].reply_to == "m1"
    assert sent == [MessageRef(CHAT, "1")]
    await asyncio.sleep(INTERVAL * 1.5)
    assert [edit.text for edit in outbox.messages[0].edits] == ["step 49"]
    assert message.edits == 1


async def test_edits_are_never_closer_than_the_interval() -> None:
    outbox = TimedOutbox()
    message = ThrottledMessage(outbox, CHAT, interval=INTERVAL)
    started = time.monotonic()

    step = 0
    while time.monotonic() - started < 3 * INTERVAL:
        await message.update(f"step {step}")
        step += 1
        await asyncio.sleep(0.01)
    final = await message.finish(Reply("done"))

    elapsed = time.monotonic() - started
    (progress,) = outbox.messages
    assert final == MessageRef(CHAT, "1")
    assert progress.current.text == "done"
    gaps = [later - earlier for earlier, later in zip(outbox.times, outbox.times[1:], strict=False)]
    assert gaps, "there should have been edits"
    assert min(gaps) >= INTERVAL - SLACK
    # At most one edit per interval (the first message is a send, not an edit).
    assert len(progress.edits) <= elapsed / INTERVAL + 1
    assert len(progress.edits) >= 3
    # Each progress edit shows a newer step than the one before.
    numbers = [int(edit.text.split()[1]) for edit in progress.edits[:-1]]
    assert numbers == sorted(set(numbers))


async def test_finish_replaces_pending_progress_with_the_final_text_after_the_interval() -> None:
    outbox = TimedOutbox()
    message = ThrottledMessage(outbox, CHAT, interval=INTERVAL)
    await message.update("step 1")
    await message.update("step 2")  # pending: coalesced, then overtaken by the outcome

    await message.finish(Reply("✅ done"))

    (progress,) = outbox.messages
    assert [edit.text for edit in progress.edits] == ["✅ done"]
    assert not progress.edits[-1].silent
    assert outbox.times[1] - outbox.times[0] >= INTERVAL - SLACK
    await asyncio.sleep(INTERVAL * 1.2)
    assert [edit.text for edit in progress.edits] == ["✅ done"], "no late progress edit"


async def test_finish_without_progress_sends_the_outcome_as_a_new_message() -> None:
    outbox = TimedOutbox()
    message = ThrottledMessage(outbox, CHAT, interval=INTERVAL, reply_to="m7")

    ref = await message.finish(Reply("pong"))

    assert [(m.reply.text, m.reply_to) for m in outbox.messages] == [("pong", "m7")]
    assert ref == MessageRef(CHAT, "1")


async def test_an_outcome_with_a_file_is_sent_as_a_new_message() -> None:
    outbox = TimedOutbox()
    message = ThrottledMessage(outbox, CHAT, interval=0.0)
    await message.update("collecting logs")
    report = Reply("logs", attachments=(Attachment("journal.txt", b"..."),))

    ref = await message.finish(report)

    assert [m.current.text for m in outbox.messages] == ["collecting logs", "logs"]
    assert outbox.messages[1].reply.attachments == report.attachments
    assert ref == MessageRef(CHAT, "2")


async def test_an_adopted_message_is_edited_instead_of_sending_a_new_one() -> None:
    outbox = TimedOutbox()
    earlier = await outbox.send(CHAT, Reply("step 1 of 3"))
    message = ThrottledMessage(outbox, CHAT, interval=0.0)
    message.adopt(earlier)

    await message.update("step 2 of 3")
    await message.finish(Reply("done"))

    assert len(outbox.messages) == 1
    assert outbox.messages[0].current.text == "done"
    assert message.ref == earlier
