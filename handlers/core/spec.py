"""Command specifications and typed argument parsing.

A spec knows its arguments, so it can parse them and print its own usage. Parsing never raises
anything but ``UsageError``: a bad argument always gets the usage as the answer.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import field
from datetime import timedelta
from typing import TYPE_CHECKING, Protocol

from values import value

DEFAULT_FRESHNESS = timedelta(minutes=5)
# A command, or a command and its subcommand: "sshkey add".
_NAME = re.compile(r"^[a-z][a-z0-9_]{0,31}( [a-z][a-z0-9_]{0,31})?$")


class Role(enum.IntEnum):
    """Each role may do everything the roles below it may do."""

    VIEWER = 1
    OPERATOR = 2
    ADMIN = 3

    @property
    def label(self) -> str:
        return self.name.lower()


def sentence(text: str) -> str:
    """``text`` starting with a capital letter, as every sentence a user reads does."""
    return text[:1].upper() + text[1:]


class AskFirst(str):
    """A preview that asks for a confirmation even for a command marked ``confirm=False``:
    this time it does more than add (the first /backup creates the repository)."""

    __slots__ = ()


class UsageError(Exception):
    """The arguments do not fit the command: ``reason`` says which one and why."""

    def __init__(self, reason: str, usage: str) -> None:
        super().__init__(f"{reason}; usage: {usage}")
        self.reason = reason
        self.usage = usage


if TYPE_CHECKING:
    # For the type checker only (docs/architecture.md, Contracts).

    class ArgType(Protocol):
        """Turns one token into a typed value, or raises ``ValueError`` with a short reason."""

        @property
        def metavar(self) -> str: ...

        def convert(self, token: str) -> object: ...


@value
class Word:
    """A name-like token: letters, digits, ``-``, ``_`` and ``.``; never free text."""

    metavar: str = "name"
    pattern: str = r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}"

    def convert(self, token: str) -> object:
        if not re.fullmatch(self.pattern, token):
            raise ValueError(f"Not a valid {self.metavar}: {token!r}")
        return token


@value
class Integer:
    metavar: str = "N"
    minimum: int | None = None
    maximum: int | None = None

    def convert(self, token: str) -> object:
        if not re.fullmatch(r"[+-]?\d{1,12}", token):
            raise ValueError(f"Not a whole number: {token!r}")
        value = int(token)
        if self.minimum is not None and value < self.minimum:
            raise ValueError(f"{sentence(self.metavar)} must be at least {self.minimum}")
        if self.maximum is not None and value > self.maximum:
            raise ValueError(f"{sentence(self.metavar)} must be at most {self.maximum}")
        return value


@value
class Choice:
    options: tuple[str, ...]

    @property
    def metavar(self) -> str:
        return "|".join(self.options)

    def convert(self, token: str) -> object:
        if token.lower() not in self.options:
            raise ValueError(f"Not one of {', '.join(self.options)}: {token!r}")
        return token.lower()


SERVICE = Word(metavar="service", pattern=r"[a-z0-9][a-z0-9_\-]{0,63}")


@value
class Arg:
    name: str
    type: ArgType = field(default_factory=Word)
    required: bool = True
    help: str = ""

    def render(self) -> str:
        shown = self.type.metavar if self.type.metavar != "name" else self.name
        return f"<{shown}>" if self.required else f"[{shown}]"


@value
class CommandSpec:
    """What a command is, who may run it, and whether it changes the server.

    A command that ``changes`` the server needs a confirmation and is refused when it is older
    than ``freshness`` (a backlog delivered after downtime). One that only adds (``/backup``)
    is marked ``confirm=False``: it runs at once, unless STEWARD_CONFIRM names it. A
    ``background`` command runs as a job the chat does not wait for (a rebuild); the others
    finish before the next message.
    """

    name: str
    summary: str
    args: tuple[Arg, ...] = ()
    role: Role = Role.VIEWER
    changes: bool = False
    freshness: timedelta = DEFAULT_FRESHNESS
    two_person: bool = False
    background: bool = False
    # Sent with no arguments, the command means this other one instead: a bare /start is
    # Telegram's first contact ("hello"), /start nextcloud starts a service.
    bare: str | None = None
    # Not a chat command: the bot creates it itself (the Keep offer after a switch). It is
    # not in help or menus and cannot be sent; ``lapse`` names what runs when it is declined
    # or nobody answers in time.
    internal: bool = False
    lapse: str | None = None
    # May be run from a button (``run:<command line>``, an alert's Snooze): pressing it is
    # the same as sending the command line, so only commands that are safe as one tap.
    button: bool = False
    # Destroys what cannot be rebuilt, or gives the server away (restore, forget, power, an
    # ssh key): with STEWARD_TOTP on, its confirmation needs a one-time code. A predicate
    # marks a command destructive for some arguments only (``/set sshpassword``).
    destructive: bool | Callable[[Mapping[str, object]], bool] = False
    # Needs a code whatever STEWARD_TOTP says: refused in chat where there is no second
    # factor, so that only the shell can do it (``/lockdown off``).
    code_required: bool = False
    # Still runs while lock-down refuses every other change (``/lockdown off`` itself).
    in_lockdown: bool = False
    # A change that destroys nothing (a backup) runs without asking first; STEWARD_CONFIRM
    # makes it ask again. A second admin or a TOTP code, when required, still asks.
    confirm: bool = True

    def __post_init__(self) -> None:
        if not _NAME.fullmatch(self.name):
            raise ValueError(f"bad command name {self.name!r}")
        if self.button and self.internal:
            raise ValueError(f"/{self.name}: an internal command cannot be run from a button")
        if (self.destructive or self.code_required) and not self.changes:
            raise ValueError(f"/{self.name}: only a command that changes the server is destructive")
        seen_optional = False
        for arg in self.args:
            if seen_optional and arg.required:
                raise ValueError(f"/{self.name}: a required argument follows an optional one")
            seen_optional = seen_optional or not arg.required

    def is_destructive(self, values: Mapping[str, object]) -> bool:
        if self.code_required:
            return True
        if callable(self.destructive):
            return self.destructive(values)
        return self.destructive

    @property
    def usage(self) -> str:
        return " ".join([f"/{self.name}", *(arg.render() for arg in self.args)])

    def parse(self, tokens: Sequence[str]) -> Mapping[str, object]:
        if len(tokens) > len(self.args):
            raise UsageError("Too many arguments", self.usage)
        values: dict[str, object] = {}
        for index, arg in enumerate(self.args):
            if index >= len(tokens):
                if arg.required:
                    raise UsageError(f"Missing {arg.render()}", self.usage)
                values[arg.name] = None
                continue
            try:
                values[arg.name] = arg.type.convert(tokens[index])
            except ValueError as exc:
                raise UsageError(sentence(str(exc)), self.usage) from None
        return values


def split_command_line(text: str) -> tuple[str, tuple[str, ...]] | None:
    """``"/restart@steward_bot nextcloud"`` → ``("restart", ("nextcloud",))``.

    Returns None when the text is not a command. ``!`` works like ``/`` (Matrix clients eat
    unknown ``/`` commands). The bot suffix of Telegram groups is dropped here; the transport
    checks that it names this bot.
    """
    stripped = text.strip()
    if len(stripped) < 2 or stripped[0] not in "/!" or stripped[1].isspace():
        return None
    head, *rest = stripped[1:].split()
    name = head.split("@", 1)[0].lower()
    if not name:
        return None
    return name, tuple(rest)
