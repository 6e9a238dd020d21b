"""The command registry, filled by decorators; help and menus are generated from it."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from handlers.core.spec import DEFAULT_FRESHNESS, Arg, CommandSpec, Role

if TYPE_CHECKING:
    from handlers.core.messages import Reply

Run = Callable[..., Awaitable["Reply"]]
Preview = Callable[..., Awaitable[str]]


@dataclass(slots=True)
class Entry:
    """A registered command. ``preview`` says what a changing command will do before it runs;
    ``resume`` reports the outcome of a run that the bot lost track of when it restarted."""

    spec: CommandSpec
    run: Run
    preview_fn: Preview | None = None
    resume_fn: Run | None = None

    def preview(self, fn: Preview) -> Preview:
        self.preview_fn = fn
        return fn

    def resume(self, fn: Run) -> Run:
        self.resume_fn = fn
        return fn

    async def __call__(self, ctx: object, **values: Any) -> Reply:
        # ``ctx`` is a handlers.core.context.Context; the registry only passes it on, and
        # naming it here would make context (whose Deps holds the registry) and registry
        # import each other.
        return await self.run(ctx, **values)


class Registry:
    def __init__(self) -> None:
        self._entries: dict[str, Entry] = {}

    def command(
        self,
        name: str,
        summary: str,
        *,
        args: tuple[Arg, ...] = (),
        role: Role = Role.VIEWER,
        changes: bool = False,
        freshness: timedelta = DEFAULT_FRESHNESS,
        two_person: bool = False,
        background: bool = False,
        bare: str | None = None,
        internal: bool = False,
        lapse: str | None = None,
        button: bool = False,
        destructive: bool | Callable[[Mapping[str, object]], bool] = False,
        code_required: bool = False,
        in_lockdown: bool = False,
        confirm: bool = True,
    ) -> Callable[[Run], Entry]:
        spec = CommandSpec(
            name, summary, args, role, changes, freshness, two_person, background, bare,
            internal, lapse, button, destructive, code_required, in_lockdown, confirm,
        )  # fmt: skip

        def register(fn: Run) -> Entry:
            if name in self._entries:
                raise ValueError(f"/{name} is registered twice")
            entry = Entry(spec, fn)
            self._entries[name] = entry
            return entry

        return register

    def include(self, other: Registry) -> None:
        for entry in other:
            if entry.spec.name in self._entries:
                raise ValueError(f"/{entry.spec.name} is registered twice")
            self._entries[entry.spec.name] = entry

    def get(self, name: str) -> Entry | None:
        return self._entries.get(name)

    def resolve(self, name: str, args: tuple[str, ...]) -> tuple[Entry, tuple[str, ...]] | None:
        """The command a message means, and its arguments.

        ``/sshkey add KEY`` is the subcommand ``sshkey add`` with ``KEY``; a command sent bare
        may name a stand-in (a bare ``/start`` says hello). Internal commands are never meant."""
        if args:
            sub = self._entries.get(f"{name} {args[0].lower()}")
            if sub is not None and not sub.spec.internal:
                return sub, args[1:]
        entry = self._entries.get(name)
        if entry is not None and not args and entry.spec.bare is not None:
            entry = self._entries.get(entry.spec.bare)
        if entry is None or entry.spec.internal:
            return None
        return entry, args

    def __iter__(self) -> Iterator[Entry]:
        return iter(sorted(self._entries.values(), key=lambda e: e.spec.name))

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def visible_to(self, role: Role) -> list[CommandSpec]:
        """What ``role`` may run, in name order: help and the Telegram menu show only this."""
        return [entry.spec for entry in self if entry.spec.role <= role and not entry.spec.internal]

    def check(self) -> None:
        """Every changing command must say what it will change before it asks to run."""
        for entry in self:
            if entry.spec.changes and entry.preview_fn is None:
                raise ValueError(f"/{entry.spec.name} changes the server but has no preview")
            lapse = self._entries.get(entry.spec.lapse or "")
            if entry.spec.lapse is not None and (lapse is None or not lapse.spec.internal):
                raise ValueError(f"/{entry.spec.name}: its lapse must be an internal command")
            bare = self._entries.get(entry.spec.bare or "")
            if entry.spec.bare is not None and (
                bare is None or any(arg.required for arg in bare.spec.args)
            ):
                raise ValueError(f"/{entry.spec.name}: its bare stand-in must take no arguments")
