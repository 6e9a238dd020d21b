"""The alert state machine: readings in, at most one message per transition out.

Each alert (``disk:/``, ``memory``, ``unit:forgejo.service``, ``backup:nextcloud`` …) has a
level. A reading moves it up at once and down only past a margin (hysteresis), so a disk that
hovers at 85 % does not flap. What the owners hear follows the *announced* level:

- ok → warn: one warning; warn or ok → critical: one critical alert;
- critical → warn is not announced (still bad; the next message is the recovery);
- back to ok: one "recovered" message with how long it lasted.

So recovered always follows critical, and no transition is ever sent twice. Snoozed and muted
alerts change state as usual; only their messages are held back, and only at the level that was
snoozed: a snoozed warning that turns critical is announced, and the snooze ends there.
"""

from __future__ import annotations

import enum
from dataclasses import replace
from datetime import datetime, timedelta

from values import value


class Level(enum.IntEnum):
    OK = 0
    WARN = 1
    CRITICAL = 2

    @property
    def label(self) -> str:
        return {0: "ok", 1: "warning", 2: "critical"}[self.value]


@value
class Thresholds:
    """``value >= warn`` warns, ``value >= critical`` is critical; to come down a level the
    value must fall ``margin`` below that level's threshold."""

    warn: float
    critical: float
    margin: float = 0.0

    def level(self, value: float, current: Level) -> Level:
        rising = Level.CRITICAL if value >= self.critical else (
            Level.WARN if value >= self.warn else Level.OK
        )  # fmt: skip
        if rising >= current:
            return rising
        # Falling: each level holds until the value is ``margin`` below its threshold.
        if current is Level.CRITICAL and value >= self.critical - self.margin:
            return Level.CRITICAL
        if current >= Level.WARN and value >= self.warn - self.margin:
            return Level.WARN
        return rising


DISK = Thresholds(warn=85.0, critical=95.0, margin=3.0)
MEMORY = Thresholds(warn=90.0, critical=97.0, margin=3.0)


class Kind(enum.StrEnum):
    WARN = "warn"
    CRITICAL = "critical"
    RECOVERED = "recovered"


@value
class AlertState:
    key: str
    level: Level = Level.OK
    announced: Level = Level.OK
    opened_at: datetime | None = None  # when it left ok
    detail: str = ""
    snoozed_until: datetime | None = None
    snoozed_level: Level | None = None  # what was snoozed; None: the level announced then

    def quiet(self, now: datetime) -> bool:
        return self.snoozed_until is not None and now < self.snoozed_until

    def holds(self, level: Level, now: datetime) -> bool:
        """Whether the snooze holds back news at ``level``: never above the level snoozed."""
        snoozed = self.snoozed_level if self.snoozed_level is not None else self.announced
        return self.quiet(now) and level <= max(snoozed, Level.WARN)


@value
class Transition:
    key: str
    kind: Kind
    at: datetime
    detail: str
    lasted: timedelta | None = None  # for a recovery: since the alert opened
    delivered: bool = True  # False while snoozed or muted


def step(
    state: AlertState, level: Level, detail: str, now: datetime
) -> tuple[AlertState, Transition | None]:
    """Apply one reading (already turned into a level) and say what, if anything, to send."""
    opened = state.opened_at
    if level is not Level.OK and opened is None:
        opened = now
    new = replace(state, level=level, detail=detail, opened_at=opened)
    kind: Kind | None = None
    if level is Level.OK and state.announced is not Level.OK:
        kind = Kind.RECOVERED
        new = replace(new, announced=Level.OK, opened_at=None)
    elif level > state.announced:
        kind = Kind.CRITICAL if level is Level.CRITICAL else Kind.WARN
        new = replace(new, announced=level)
    elif level is Level.OK:
        new = replace(new, opened_at=None)
    if kind is None:
        return new, None
    lasted = now - opened if kind is Kind.RECOVERED and opened is not None else None
    held = state.holds(Level.WARN if kind is Kind.RECOVERED else level, now)
    if not held and kind is not Kind.RECOVERED and state.quiet(now):
        new = replace(new, snoozed_until=None, snoozed_level=None)  # it broke through
    return new, Transition(state.key, kind, now, detail, lasted, not held)
