"""Work that runs while a reply is on its way.

Once a request to the chat service has been written, the event loop waits for the answer,
often for longer than the work that follows it. A read-only command's audit row commits in that
wait: ``SqlAuditLog.submit`` registers the commit here, and the Telegram transport runs it when
httpcore reports the request's body written. Where nothing runs it (Matrix, or a request that
fails before it is written), the row commits when it is awaited, as it always did."""

from __future__ import annotations

from collections.abc import Callable
from contextvars import ContextVar

# Per task: each update is handled in a task of its own, which copies the context.
_pending: ContextVar[Callable[[], None] | None] = ContextVar("steward_once_written", default=None)


def once_written(work: Callable[[], None]) -> None:
    """Run ``work`` once this task's next request has been written."""
    _pending.set(work)


def take() -> Callable[[], None] | None:
    """What waits for this task's next request to be written, if anything; it is removed."""
    work = _pending.get()
    if work is not None:
        _pending.set(None)
    return work
