"""Read-only looks into a wired engine: its audit rows, confirmations and the demo's calls."""

from __future__ import annotations

import dataclasses
from collections import Counter
from typing import TYPE_CHECKING

from sqlalchemy import func, select

from bot.storage.models import confirmations
from handlers.core.engine import Engine, Incident
from handlers.core.records import AuditEntry, AuditEvent, Confirmation
from handlers.core.registry import Registry

if TYPE_CHECKING:
    from handlers.core.records import Notes
    from tests.conftest import Harness
    from tests.support.chat import Sent


async def audit_rows(harness: Harness) -> list[AuditEntry]:
    """Every audit row, oldest first."""
    return list(reversed(await harness.engine.deps.audit.recent(10_000)))


async def audit_events(harness: Harness) -> list[AuditEvent]:
    return [row.event for row in await audit_rows(harness)]


def confirmation_count(harness: Harness) -> int:
    with harness.db.transaction() as conn:
        return conn.scalar(select(func.count()).select_from(confirmations)) or 0


def nonce_of(prompt: Sent) -> str:
    """The nonce behind a prompt's buttons (``cf:<nonce>``)."""
    return prompt.reply.buttons[0].action.partition(":")[2]


async def confirmation_of(harness: Harness, prompt: Sent) -> Confirmation:
    found = await harness.engine.confirmations.find(nonce_of(prompt))
    assert found is not None
    return found


def restarts(harness: Harness) -> Counter[str]:
    """How often the demo's systemd restarted each unit."""
    return Counter(call[1] for call in harness.server.services.calls if call[0] == "restart")


def prompts(harness: Harness) -> list[Sent]:
    return [sent for sent in harness.outbox.messages if sent.reply.buttons]


def engine_with(
    harness: Harness,
    registry: Registry | None = None,
    on_incident: Incident | None = None,
    *,
    notes: Notes | None = None,
) -> Engine:
    """A second engine on the harness's stores, chat and clock, but with other commands or
    other notes (the key-value table)."""
    old = harness.engine
    deps = dataclasses.replace(
        old.deps,
        registry=old.deps.registry if registry is None else registry,
        notes=old.deps.notes if notes is None else notes,
    )
    return Engine(
        deps=deps,
        access=old.access,
        confirmations=old.confirmations,
        jobs=old.jobs.store,
        outbox=harness.outbox,
        settings=old.settings,
        clock=harness.clock,
        on_incident=on_incident,
    )
