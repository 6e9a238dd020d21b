"""The NixOS system in memory, for the demo and the tests. (The demo's rebuilds and
generations are scenes of the demo server: they live in ``providers.demo``.)"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from providers.nixos.base import DesiredState, DesiredStateError, Written, digest_of
from providers.nixos.validation import check


@dataclass
class MemoryDesiredState:
    """The demo's and the handler tests' store: same rules, no disk. ``corrupt`` makes every
    call fail as a corrupt file would."""

    state: DesiredState = field(default_factory=DesiredState)
    previous: DesiredState | None = None
    corrupt: bool = False
    writes: int = 0

    def _check(self) -> None:
        if self.corrupt:
            raise DesiredStateError(
                "desired-state.json is not valid JSON (line 1). Fix or remove it; Steward will "
                "not overwrite it."
            )

    async def read(self) -> DesiredState:
        self._check()
        return self.state

    async def update(self, change: Callable[[DesiredState], DesiredState]) -> Written:
        self._check()
        before = self.state
        after = change(before)
        problems = check(after.to_json())
        if problems:
            raise DesiredStateError(f"not written: {problems[0]}")
        if after != before:
            self.previous, self.state = before, after
            self.writes += 1
        return Written(before, after, digest_of(after.render()))

    async def restore(self, digest: str) -> bool:
        self._check()
        if digest_of(self.state.render()) != digest:
            return False
        self.state, self.previous = self.previous or DesiredState(), self.state
        self.writes += 1
        return True
