"""What a job runner needs from the engine that owns it, so that ``jobs`` never imports
``engine``: the engine builds a ``JobRunner`` and hands itself over as a ``JobHost``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Protocol

from handlers.core.access import AccessPolicy
from handlers.core.context import Deps
from handlers.core.messages import Actor, ChatRef, Command, Reply
from handlers.core.records import AuditEvent
from values import value

if TYPE_CHECKING:
    from handlers.core.progress import Outbox
    from handlers.core.records import ConfirmationStore


@value
class EngineSettings:
    confirm_ttl: timedelta = timedelta(minutes=5)
    two_person: frozenset[str] = field(default_factory=frozenset)
    # Commands that ask for a confirmation though their spec says they need not (STEWARD_CONFIRM).
    confirm: frozenset[str] = field(default_factory=frozenset)
    progress_interval: float = 2.0


if TYPE_CHECKING:
    # For the type checker only (docs/architecture.md, Contracts).

    class JobHost(Protocol):
        deps: Deps
        access: AccessPolicy
        confirmations: ConfirmationStore
        outbox: Outbox
        settings: EngineSettings
        clock: Callable[[], datetime]

        async def incident(self, cmd: Command, exc: BaseException) -> Reply:
            """Log a failure under a new incident id and return the short answer the user sees."""
            ...

        async def audit(
            self,
            event: AuditEvent,
            actor: Actor,
            chat: ChatRef | None,
            command: str = "",
            args: tuple[str, ...] = (),
            *,
            result: str = "",
            approver: Actor | None = None,
            started: float | None = None,
        ) -> None: ...
