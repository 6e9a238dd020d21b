"""Confirmed actions run as persisted jobs, so a restart of the bot never loses an outcome."""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Coroutine
from dataclasses import replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from handlers.core.context import CommandError, Context
from handlers.core.messages import CANCEL, CONFIRM, Button, Command, MessageRef, Reply, esc
from handlers.core.progress import ThrottledMessage
from handlers.core.records import AuditEvent, Confirmation, Job, JobState
from handlers.core.spec import UsageError

if TYPE_CHECKING:
    from handlers.core.job_host import JobHost
    from handlers.core.records import JobStore

log = logging.getLogger(__name__)


class JobProgress:
    """Progress of one job: kept in its row, and shown by editing one message."""

    def __init__(self, store: JobStore, job_id: int, message: ThrottledMessage) -> None:
        self._store = store
        self._job_id = job_id
        self._message = message

    async def update(self, text: str) -> None:
        await self._store.update(self._job_id, progress=text[:2000])
        await self._message.update(text)


class JobRunner:
    def __init__(self, engine: JobHost, store: JobStore) -> None:
        self._engine = engine
        self.store = store
        self._tasks: set[asyncio.Task[None]] = set()
        # When the offers made by this process lapse, so that a script can wait for them.
        self.lapses: list[datetime] = []

    async def run_confirmed(self, conf: Confirmation, *, adopt: bool = False) -> None:
        """Run what ``conf`` confirmed as a job. An internal offer's outcome, and with ``adopt``
        any other's, edits the confirmation's own message, below its preview."""
        job = await self.store.start(
            kind=conf.command,
            args=conf.args,
            requester=conf.requester,
            chat=conf.chat,
            started_at=self._engine.clock(),
        )
        entry = self._engine.deps.registry.get(conf.command)
        head = ""
        adopted = entry is not None and (entry.spec.internal or adopt)
        if adopted and conf.prompt_message_id is not None:
            # An offer's outcome edits the offer's own message, below what it offered.
            await self.store.update(job.id, message_id=conf.prompt_message_id)
            job = replace(job, message_id=conf.prompt_message_id)
            head = conf.preview
        if entry is not None and entry.spec.background:
            self._spawn(self._execute(job, conf.prompt_message_id, resume=False, head=head))
        else:
            await self._execute(job, conf.prompt_message_id, resume=False, head=head)

    async def reattach(self) -> int:
        """Report the outcome of every job that was running when the bot last stopped."""
        unfinished = await self.store.unfinished()
        for job in unfinished:
            self._spawn(self._execute(job, None, resume=True))
        return len(unfinished)

    async def wait(self, seconds: float) -> bool:
        """Wait for background jobs; False when some still run after ``seconds``."""
        pending = {task for task in self._tasks if not task.done()}
        if not pending:
            return True
        _, still = await asyncio.wait(pending, timeout=seconds)
        return not still

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _execute(
        self, job: Job, reply_to: str | None, *, resume: bool, head: str = ""
    ) -> None:
        engine = self._engine
        started = time.monotonic()

        async def remember(ref: MessageRef) -> None:
            await self.store.update(job.id, message_id=ref.message_id)

        message = ThrottledMessage(
            engine.outbox,
            job.chat,
            interval=engine.settings.progress_interval,
            reply_to=reply_to,
            on_sent=remember,
        )
        if job.message_id is not None:
            message.adopt(MessageRef(job.chat, job.message_id))
        cmd = Command(job.kind, job.args, job.requester, job.chat, job.started_at)
        reply, state, result = await self._outcome(job, cmd, message, resume=resume)
        if head:
            reply = replace(reply, text=f"{head}\n\n{reply.text}")
        offer = await self._offer(job, reply) if reply.offer is not None else None
        if offer is not None:
            note = reply.offer.note if reply.offer is not None else ""
            text = f"{reply.text}\n{note}" if note else reply.text
            reply = replace(reply, text=text, buttons=(*reply.buttons, *offer[1]), offer=None)
        ref = await message.finish(reply)
        if offer is not None:
            await engine.confirmations.set_prompt_message(offer[0].id, ref.message_id)
        await self.store.finish(job.id, state=state, result=result, finished_at=engine.clock())
        event = AuditEvent.ERROR if state is JobState.FAILED and result == "error" else None
        await engine.audit(
            event or AuditEvent.OUTCOME, job.requester, job.chat, job.kind, job.args,
            result=f"{state.value}: {result}" if result else state.value,
            started=started,
        )  # fmt: skip

    async def _offer(self, job: Job, reply: Reply) -> tuple[Confirmation, tuple[Button, ...]]:
        """Turn a reply's offer into a confirmation row and its two buttons."""
        offer = reply.offer
        assert offer is not None  # noqa: S101 - the caller checked
        now = self._engine.clock()
        nonce = secrets.token_urlsafe(16)
        conf = await self._engine.confirmations.create(
            nonce=nonce,
            command=offer.command,
            args=offer.args,
            requester=job.requester,
            chat=job.chat,
            created_at=now,
            expires_at=now + timedelta(minutes=offer.minutes),
            two_person=False,
            preview=reply.text[:4000],
        )
        self.lapses.append(conf.expires_at)
        buttons = (Button(offer.confirm, f"{CONFIRM}:{nonce}"),
                   Button(offer.decline, f"{CANCEL}:{nonce}"))  # fmt: skip
        return conf, buttons

    async def _outcome(
        self, job: Job, cmd: Command, message: ThrottledMessage, *, resume: bool
    ) -> tuple[Reply, JobState, str]:
        engine = self._engine
        entry = engine.deps.registry.get(job.kind)
        role = engine.access.role_of(job.requester)
        run = None if entry is None else (entry.resume_fn if resume else entry.run)
        line = esc(" ".join([f"/{job.kind}", *job.args]))
        if entry is None or run is None or role is None:
            text = f"The bot restarted while <code>{line}</code> ran; its outcome is unknown."
            return Reply(text), JobState.INTERRUPTED, "outcome unknown after a restart"
        try:
            values = entry.spec.parse(job.args)
        except UsageError:
            return Reply(f"Cannot resume <code>{line}</code>."), JobState.FAILED, "bad args"
        progress = JobProgress(self.store, job.id, message)
        ctx = Context(cmd, role, engine.deps, progress, engine.clock(), job_id=job.id)
        try:
            reply = await run(ctx, **values)
        except CommandError as exc:
            return Reply(f"❌ {exc}"), JobState.FAILED, str(exc)
        except Exception as exc:  # noqa: BLE001 - turned into an incident, never lost
            return await engine.incident(cmd, exc), JobState.FAILED, "error"
        return reply, JobState.SUCCEEDED, ""
