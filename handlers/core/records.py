"""Persisted records the core works with, and the store Protocols that ``bot`` implements."""

from __future__ import annotations

import enum
from collections.abc import Awaitable, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Protocol

from handlers.core.messages import Actor, ChatRef
from values import value


class ConfirmationState(enum.StrEnum):
    PENDING = "pending"
    CONFIRMED = "confirmed"
    CANCELLED = "cancelled"
    EXPIRED = "expired"


@value
class Confirmation:
    id: int
    command: str
    args: tuple[str, ...]
    requester: Actor
    chat: ChatRef
    created_at: datetime
    expires_at: datetime
    state: ConfirmationState
    two_person: bool
    preview: str
    approver: Actor | None = None
    decided_at: datetime | None = None
    prompt_message_id: str | None = None


if TYPE_CHECKING:
    # For the type checker only (docs/architecture.md, Contracts).

    class ConfirmationStore(Protocol):
        """Confirmations are looked up by nonce; the store keeps only a hash of it."""

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
        ) -> Confirmation: ...

        async def find(self, nonce: str) -> Confirmation | None: ...

        async def decide(
            self, nonce: str, *, state: ConfirmationState, by: Actor, now: datetime
        ) -> bool:
            """Move a pending, unexpired confirmation to ``state`` in one atomic UPDATE.

            Returns False when another press won, or it was already decided or expired."""
            ...

        async def set_prompt_message(self, confirmation_id: int, message_id: str) -> None: ...

        async def expire_due(self, now: datetime) -> list[Confirmation]:
            """Mark every pending confirmation past its expiry as expired, and return them."""
            ...

    class JobStore(Protocol):
        async def start(
            self,
            *,
            kind: str,
            args: tuple[str, ...],
            requester: Actor,
            chat: ChatRef,
            started_at: datetime,
        ) -> Job: ...

        async def update(
            self,
            job_id: int,
            *,
            progress: str | None = None,
            log_tail: str | None = None,
            message_id: str | None = None,
        ) -> None: ...

        async def finish(
            self, job_id: int, *, state: JobState, result: str, finished_at: datetime
        ) -> None: ...

        async def get(self, job_id: int) -> Job | None: ...

        async def unfinished(self) -> list[Job]: ...

    class Notes(Protocol):
        """Small persisted values (the bot's key-value table): what a rebuild follows, a reboot
        that was asked for. They outlive a restart of the bot."""

        async def get(self, key: str) -> str | None: ...

        async def set(self, key: str, value: str, now: datetime) -> None: ...

        async def delete(self, key: str) -> None: ...

    class Schedules(Protocol):
        """What runs when (the bot's scheduler): shown by /schedule, changed from chat."""

        def planned(self) -> list[tuple[str, str, datetime | None]]:
            """(task, when, next run) for each planned task."""
            ...

        def tasks(self) -> set[str]:
            """The tasks this bot can run (``backup`` only when backups are set up)."""
            ...

        async def plan(self, name: str, when: str) -> None:
            """Run ``name`` ``when`` ("daily 03:30"), from now on and after restarts."""
            ...

    class Samples(Protocol):
        """Host readings over time (disk and memory percent), one row per metric and moment."""

        async def add(self, at: datetime, values: Mapping[str, float]) -> None: ...

        async def series(self, metric: str, since: datetime) -> list[tuple[datetime, float]]:
            """Oldest first."""
            ...

        async def purge(self, before: datetime) -> int: ...

    class DemoControls(Protocol):
        """What `/demo` may change on the demo server; absent on a real one."""

        def fill_disk(self, percent: float) -> str:
            """Make the first disk ``percent`` full; returns its mount."""
            ...

    class AuditLog(Protocol):
        async def record(self, entry: AuditEntry) -> None:
            """Returns once the row has committed."""
            ...

        def submit(self, entry: AuditEntry) -> Awaitable[None]:
            """Queues the row for the next commit now; the awaitable completes once it has
            committed. The work between the two (sending a reply) overlaps the commit."""
            ...

        async def recent(self, limit: int) -> list[AuditEntry]: ...


class JobState(enum.StrEnum):
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    INTERRUPTED = "interrupted"


@value
class Job:
    id: int
    kind: str
    args: tuple[str, ...]
    requester: Actor
    chat: ChatRef
    state: JobState
    started_at: datetime
    progress: str = ""
    log_tail: str = ""
    message_id: str | None = None
    finished_at: datetime | None = None
    result: str = ""


class AuditEvent(enum.StrEnum):
    COMMAND = "command"
    REFUSED = "refused"
    CONFIRM_REQUESTED = "confirm_requested"
    CONFIRMED = "confirmed"
    CANCELLED = "cancelled"
    EXPIRED = "expired"
    OUTCOME = "outcome"
    ERROR = "error"
    # Lock-outs, lock-down, enrolments, a new device on an admin's account.
    SECURITY = "security"


@value
class AuditEntry:
    at: datetime
    event: AuditEvent
    actor: Actor
    chat: ChatRef | None
    command: str = ""
    args: tuple[str, ...] = ()
    approver: Actor | None = None
    result: str = ""
    duration_ms: int | None = None
    id: int | None = None
