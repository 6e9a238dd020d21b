"""What a stolen chat account may not do: the second factor and lock-down.

The engine asks the guard twice: before it asks for a confirmation (``on_request``) and before
a confirmation is accepted (``on_confirm``). The console user is the server's own shell user:
it needs no code and lock-down does not apply to it, as ``steward lockdown off`` would lift it.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Protocol

from handlers.core.messages import Actor, esc
from handlers.core.spec import CommandSpec
from values import value

if TYPE_CHECKING:
    from handlers.core.records import Notes

LOCKDOWN_KEY = "security:lockdown"
CONSOLE = "console"
MAX_FAILURES = 5
FAILURE_WINDOW = timedelta(minutes=15)
LOCKOUT = timedelta(hours=1)


class TotpMode(enum.StrEnum):
    OFF = "off"
    DESTRUCTIVE = "destructive"
    ALL = "all"


class CodeCheck(enum.StrEnum):
    OK = "ok"
    WRONG = "wrong code"
    REPLAYED = "code used before"
    NOT_ENROLLED = "not enrolled"


if TYPE_CHECKING:
    # For the type checker only (docs/architecture.md, Contracts).

    class SecondFactor(Protocol):
        """TOTP secrets (kept encrypted by ``bot``), the used time steps, failures and lock-outs.
        Users are ``Actor.key`` values: ``telegram:1001``, ``matrix:@alice:example.org``."""

        async def enrolled(self, user: str) -> bool: ...

        async def anyone_enrolled(self) -> bool: ...

        async def verify(self, user: str, code: str, now: datetime) -> CodeCheck:
            """Accept a code of the current time step or one either side, once: a code whose step
            is not newer than the last accepted one is ``REPLAYED``."""
            ...

        async def add_failure(self, user: str, now: datetime) -> int:
            """Record a failed code; returns the failures within ``FAILURE_WINDOW`` of ``now``."""
            ...

        async def locked_until(self, user: str) -> datetime | None: ...

        async def lock(self, user: str, until: datetime) -> None: ...


@value
class Verdict:
    """``toast`` is the short answer ("" when the code was good); ``result`` goes in the audit
    row; ``locked`` is set when this failure locked the user out."""

    toast: str = ""
    result: str = ""
    locked: datetime | None = None

    @property
    def ok(self) -> bool:
        return not self.toast


@value
class Lockdown:
    by: str
    at: str


class Guard:
    def __init__(
        self, notes: Notes, factor: SecondFactor | None = None, mode: TotpMode | None = None
    ) -> None:
        self.notes = notes
        self.factor = factor
        self._mode = mode  # None: destructive once anyone has enrolled, else off

    async def mode(self) -> TotpMode:
        if self.factor is None:
            return TotpMode.OFF
        if self._mode is not None:
            return self._mode
        return TotpMode.DESTRUCTIVE if await self.factor.anyone_enrolled() else TotpMode.OFF

    async def lockdown(self) -> Lockdown | None:
        raw = await self.notes.get(LOCKDOWN_KEY)
        if raw is None:
            return None
        try:
            data = json.loads(raw)
            return Lockdown(str(data["by"]), str(data["at"]))
        except (ValueError, KeyError, TypeError):
            return Lockdown("unknown", "")  # unreadable still means on: deny by default

    async def set_lockdown(self, by: str, now: datetime) -> None:
        value = json.dumps({"by": by, "at": now.isoformat(timespec="seconds")})
        await self.notes.set(LOCKDOWN_KEY, value, now)

    async def lift_lockdown(self) -> None:
        await self.notes.delete(LOCKDOWN_KEY)

    async def needs_code(
        self, spec: CommandSpec, values: Mapping[str, object], actor: Actor
    ) -> bool:
        if actor.transport == CONSOLE or not spec.changes or spec.internal:
            return False
        if spec.code_required:
            return True
        mode = await self.mode()
        if mode is TotpMode.ALL:
            return True
        return mode is TotpMode.DESTRUCTIVE and spec.is_destructive(values)

    async def on_request(
        self, spec: CommandSpec, values: Mapping[str, object], actor: Actor, now: datetime
    ) -> str:
        """Why ``actor`` may not ask for ``spec`` now; "" when they may."""
        if actor.transport == CONSOLE:
            return ""
        locked = await self.lockdown()
        if locked is not None and not spec.in_lockdown:
            return (
                f"🔒 Lock-down is on (by {esc(locked.by)}): nothing that changes the server runs."
            )
        if not await self.needs_code(spec, values, actor):
            return ""
        return await self._code_problem(spec, actor, now, approver=not spec.two_person)

    async def _code_problem(
        self, spec: CommandSpec, actor: Actor, now: datetime, *, approver: bool
    ) -> str:
        factor = self.factor
        if factor is None or (spec.code_required and self._mode is TotpMode.OFF):
            return f"/{spec.name} needs a one-time code, and none is set up: do it on the server."
        until = await factor.locked_until(actor.key)
        if until is not None and until > now:
            return f"You are locked out of /{spec.name} after wrong codes, until {_hm(until)} UTC."
        if approver and not await factor.enrolled(actor.key):
            return (
                f"/{spec.name} needs a one-time code, and you have none. Enrol on the server "
                "with <code>steward totp enroll</code>."
            )
        return ""

    async def on_confirm(
        self, spec: CommandSpec, values: Mapping[str, object], actor: Actor, code: str | None,
        now: datetime,
    ) -> Verdict:  # fmt: skip
        """Whether ``actor`` may confirm ``spec`` now, with ``code``."""
        if actor.transport == CONSOLE:
            return Verdict()
        if not spec.in_lockdown and await self.lockdown() is not None:
            return Verdict("Lock-down is on: nothing that changes the server runs.", "lockdown")
        if not await self.needs_code(spec, values, actor):
            return Verdict()
        return await self._check_code(spec, actor, code, now)

    async def _check_code(
        self, spec: CommandSpec, actor: Actor, code: str | None, now: datetime
    ) -> Verdict:
        problem = await self._code_problem(spec, actor, now, approver=True)
        if problem:
            return Verdict(_plain(problem), "no second factor")
        if code is None:
            return Verdict("This needs your current 6-digit code.", "no code")
        assert self.factor is not None  # noqa: S101 - _code_problem checked it
        check = await self.factor.verify(actor.key, code, now)
        if check is CodeCheck.OK:
            return Verdict()
        return await self._failed(actor, check, now)

    async def _failed(self, actor: Actor, check: CodeCheck, now: datetime) -> Verdict:
        assert self.factor is not None  # noqa: S101 - only after a verify
        count = await self.factor.add_failure(actor.key, now)
        if count < MAX_FAILURES:
            left = MAX_FAILURES - count
            return Verdict(f"That code is wrong or used already; {left} tries left.", check.value)
        until = now + LOCKOUT
        await self.factor.lock(actor.key, until)
        toast = f"Too many wrong codes: destructive commands are locked until {_hm(until)} UTC."
        return Verdict(toast, f"{check.value}; locked out until {_hm(until)}", until)


def _hm(moment: datetime) -> str:
    return moment.strftime("%H:%M")


def _plain(text: str) -> str:
    return text.replace("<code>", "").replace("</code>", "")
