"""The transport-neutral contracts: who said what, where, and what we answer."""

from __future__ import annotations

import html
from dataclasses import field
from datetime import datetime

from values import value


@value
class Actor:
    """A person on one transport. ``user_id`` is the numeric Telegram id or the Matrix id."""

    transport: str
    user_id: str
    display_name: str = ""

    @property
    def key(self) -> str:
        return f"{self.transport}:{self.user_id}"

    @property
    def label(self) -> str:
        return self.display_name or self.user_id


@value
class ChatRef:
    transport: str
    chat_id: str


@value
class MessageRef:
    chat: ChatRef
    message_id: str


@value
class Command:
    """One chat message that asks for a command: ``/restart nextcloud``."""

    name: str
    args: tuple[str, ...]
    actor: Actor
    chat: ChatRef
    received_at: datetime
    message_id: str | None = None

    def __post_init__(self) -> None:
        if self.received_at.tzinfo is None:
            raise ValueError("Command.received_at must be timezone-aware")


@value
class Press:
    """A press of an inline button (or a reaction or ``!confirm CODE`` on Matrix)."""

    action: str
    actor: Actor
    chat: ChatRef
    received_at: datetime
    message_id: str | None = None
    # The one-time code given with a confirmation (a reply to the prompt on Telegram,
    # ``!confirm CODE 123456`` on Matrix); None for a plain press.
    code: str | None = None


CONFIRM, CANCEL, RUN = "cf", "cx", "run"
MAX_ACTION_BYTES = 64  # Telegram's limit for callback_data


@value
class Button:
    """``action`` is opaque to transports: ``cf:<nonce>`` confirms, ``cx:<nonce>`` cancels,
    ``run:<command line>`` runs a command marked ``button`` as if the presser had sent it."""

    label: str
    action: str

    def __post_init__(self) -> None:
        if len(self.action.encode()) > MAX_ACTION_BYTES:
            raise ValueError(f"button action over {MAX_ACTION_BYTES} bytes: {self.action!r}")

    @classmethod
    def run(cls, label: str, command_line: str) -> Button:
        return cls(label, f"{RUN}:{command_line}")

    @property
    def command_line(self) -> str | None:
        kind, _, rest = self.action.partition(":")
        return rest if kind == RUN else None


@value
class Attachment:
    name: str
    data: bytes
    mime: str = "text/plain"


@value
class Offer:
    """Buttons on a job's final message that decide what happens next, with a deadline.

    *Keep* after a switch is one: pressing ``confirm`` runs ``command``; pressing ``decline``,
    or nobody pressing anything within ``minutes``, runs the command's lapse instead (the
    rollback). The engine keeps it as a confirmation row, so it survives a restart."""

    command: str
    args: tuple[str, ...]
    minutes: float
    note: str = ""  # shown while the offer is open: "Press Keep within 10 min, or …"
    confirm: str = "Keep"
    decline: str = "Roll back now"


@value
class Reply:
    """An answer in a small HTML subset (b, i, code, pre, a) that every transport renders.

    ``silent`` sends without a notification. ``sensitive`` asks the transport to protect the
    content from forwarding; secrets are never sent at all, sensitive or not.
    """

    text: str
    buttons: tuple[Button, ...] = ()
    attachments: tuple[Attachment, ...] = field(default=())
    silent: bool = False
    sensitive: bool = False
    offer: Offer | None = None
    # A confirmation prompt that takes a one-time code: each transport says how to give it.
    code_prompt: bool = False


def esc(value: object) -> str:
    """Escape anything that came from the server or a user before it goes into a Reply."""
    return html.escape(str(value), quote=True)
