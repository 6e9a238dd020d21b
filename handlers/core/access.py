"""Who may do what. Deny by default: an id that is not listed has no role at all."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import field

from handlers.core.messages import Actor
from handlers.core.spec import Role
from values import value


def actor_key(user_id: str) -> str:
    """Config lists Telegram numeric ids and Matrix ids together; each binds to its transport."""
    return f"matrix:{user_id}" if user_id.startswith("@") else f"telegram:{user_id}"


@value
class AccessPolicy:
    roles: dict[str, Role] = field(default_factory=dict)
    console_role: Role | None = None
    # Account key -> person, for accounts linked in config; any other account is its own.
    people: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_lists(
        cls,
        admins: Iterable[str] = (),
        operators: Iterable[str] = (),
        viewers: Iterable[str] = (),
        console_role: Role | None = None,
        people: Iterable[tuple[str, str]] = (),
    ) -> AccessPolicy:
        roles: dict[str, Role] = {}
        # Lowest first, so someone listed twice keeps the higher role.
        for role, ids in ((Role.VIEWER, viewers), (Role.OPERATOR, operators), (Role.ADMIN, admins)):
            roles.update((actor_key(uid), role) for uid in ids)
        return cls(roles, console_role, dict(people))

    def person_of(self, actor: Actor) -> str:
        return self.people.get(actor.key, f"account:{actor.key}")

    def same_person(self, one: Actor, other: Actor) -> bool:
        """Two people approve only as two people: one person's accounts on two transports
        are one approver."""
        return self.person_of(one) == self.person_of(other)

    def role_of(self, actor: Actor) -> Role | None:
        if actor.transport == "console":
            return self.console_role
        return self.roles.get(actor.key)

    @property
    def has_admin(self) -> bool:
        """Whether anyone may administer from chat (the console's role does not count)."""
        return Role.ADMIN in self.roles.values()

    def members(self, transport: str) -> list[tuple[str, Role]]:
        """The user ids given a role on ``transport``, with their roles, in id order."""
        prefix = f"{transport}:"
        return sorted(
            (key.removeprefix(prefix), role)
            for key, role in self.roles.items()
            if key.startswith(prefix)
        )


class StrangerLimiter:
    """A stranger gets one neutral refusal a minute; everything else they send is dropped."""

    def __init__(self, window: float = 60.0, clock: Callable[[], float] = time.monotonic) -> None:
        self._window = window
        self._clock = clock
        self._last: dict[str, float] = {}

    def should_answer(self, actor: Actor) -> bool:
        now = self._clock()
        if len(self._last) > 10_000:
            self._last = {k: t for k, t in self._last.items() if now - t < self._window}
        last = self._last.get(actor.key)
        if last is not None and now - last < self._window:
            return False
        self._last[actor.key] = now
        return True
