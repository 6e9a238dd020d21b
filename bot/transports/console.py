"""The console transport: one message per line on stdin, replies on stdout.

Buttons print as ``[1] Confirm  [2] Cancel``; ``press N`` presses button N of the newest
message that has buttons; ``wait`` waits for running jobs. At end of input it waits for running
jobs, and for the *Keep* offers that lapse within the wait (at most 60 s), then ends.
It works on a pipe as well as on a terminal. The console user is whoever runs it on the server.
"""

from __future__ import annotations

import asyncio
import getpass
import re
import sys
import threading
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import TextIO

from bot.transports.render import to_plain
from handlers.core.engine import Engine
from handlers.core.messages import Actor, Button, ChatRef, Command, MessageRef, Press, Reply
from handlers.core.spec import split_command_line

TRANSPORT = "console"
CHAT = ChatRef(TRANSPORT, "console")
_PRESS = re.compile(r"^press\s+(\S+)$", re.IGNORECASE)


class ConsoleTransport:
    def __init__(
        self, out: TextIO | None = None, user: str | None = None, server: str = ""
    ) -> None:
        self.out = out or sys.stdout
        self.server = f"[{server}] " if server else ""  # which server answers, in a fleet
        name = user or getpass.getuser()
        self.actor = Actor(TRANSPORT, name, name)
        self._next_id = 0
        self._buttons: dict[str, tuple[Button, ...]] = {}

    # -- Outbox ---------------------------------------------------------------------------

    async def send(self, chat: ChatRef, reply: Reply, reply_to: str | None = None) -> MessageRef:
        self._next_id += 1
        message_id = str(self._next_id)
        self._print(reply, prefix="")
        self._remember(message_id, reply.buttons)
        return MessageRef(chat, message_id)

    async def edit(self, ref: MessageRef, reply: Reply) -> None:
        self._print(reply, prefix="(edited) ")
        self._remember(ref.message_id, reply.buttons)

    @property
    def newest_buttons(self) -> int:
        """The id of the newest message showing buttons; 0 when none does."""
        return max((int(key) for key in self._buttons), default=0)

    def _remember(self, message_id: str, buttons: tuple[Button, ...]) -> None:
        if buttons:
            self._buttons[message_id] = buttons
        else:
            self._buttons.pop(message_id, None)

    def _print(self, reply: Reply, prefix: str) -> None:
        lines = [self.server + prefix + to_plain(reply.text)]
        if reply.buttons:
            lines.append("  ".join(f"[{i}] {b.label}" for i, b in enumerate(reply.buttons, 1)))
        lines += [f"[attachment {a.name}, {len(a.data)} bytes]" for a in reply.attachments]
        self.out.write("\n".join(lines) + "\n\n")
        self.out.flush()

    def say(self, text: str) -> None:
        self.out.write(text + "\n\n")
        self.out.flush()

    # -- input ----------------------------------------------------------------------------

    async def handle_line(self, engine: Engine, line: str) -> None:
        now = datetime.now(UTC)
        text = line.strip()
        if not text:
            return
        pressed = _PRESS.match(text)
        if pressed:
            await self._press(engine, pressed.group(1), now)
            return
        if text.lower() == "wait":
            # For scripts: let the running jobs (a rebuild) finish before the next line.
            if not await engine.wait_for_jobs(600):
                self.say("Jobs still run after 600 s.")
            return
        parsed = split_command_line(text)
        if parsed is None:
            self.say(
                "Commands start with / (see /help); press N presses a button; wait waits for jobs."
            )
            return
        name, args = parsed
        await engine.handle_command(Command(name, args, self.actor, CHAT, now, None))

    async def _press(self, engine: Engine, which: str, now: datetime) -> None:
        if not self._buttons:
            self.say("There is no button to press.")
            return
        message_id = max(self._buttons, key=int)
        buttons = self._buttons[message_id]
        if not which.isdigit() or not 1 <= int(which) <= len(buttons):
            self.say(f"There is no button {which}; choose 1 to {len(buttons)}.")
            return
        press = Press(buttons[int(which) - 1].action, self.actor, CHAT, now, message_id)

        async def answer(toast: str) -> None:
            self.say(f"» {toast}")

        await engine.handle_press(press, answer)

    async def run(self, engine: Engine, stdin: TextIO | None = None, wait: float = 60.0) -> int:
        async for line in stdin_lines(stdin or sys.stdin):
            await self.handle_line(engine, line)
        if not await settle(engine, wait):
            self.say(f"Some jobs are still running after {wait:g} s; they go on next start.")
        return 0


async def stdin_lines(source: TextIO) -> AsyncIterator[str]:
    """The lines of ``source`` as they come, read in a thread, not with add_reader: that works
    the same on a terminal, a pipe and a file."""
    queue: asyncio.Queue[str | None] = asyncio.Queue()
    loop = asyncio.get_running_loop()

    def pump() -> None:
        for line in source:
            loop.call_soon_threadsafe(queue.put_nowait, line)
        loop.call_soon_threadsafe(queue.put_nowait, None)

    threading.Thread(target=pump, name="console-stdin", daemon=True).start()
    while (line := await queue.get()) is not None:
        yield line


async def settle(engine: Engine, wait: float) -> bool:
    """Wait for running jobs and for the offers that lapse within ``wait`` seconds, with what
    their lapse runs: a script that leaves *Keep* unpressed sees the rollback it asked for."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait
    while True:
        if not await engine.wait_for_jobs(max(0.0, deadline - loop.time())):
            return False
        now = engine.clock()
        lapses = engine.jobs.lapses
        lapses[:] = [due for due in lapses if due > now]
        due = min(lapses, default=None)
        if due is None or (due - now).total_seconds() > deadline - loop.time():
            return True
        await asyncio.sleep((due - now).total_seconds() + 0.05)
        await engine.expire_confirmations()
