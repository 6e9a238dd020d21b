"""One way to change the system: start a rebuild unit, follow it, report, offer *Keep*.

Every rebuild (``/rebuild``, ``/upgrade``, ``/rollback``, ``/enable``, ``/set`` …) runs here:

1. Wait while another rebuild runs. A plain ``/rebuild`` joins a running one instead: two
   requests, one rebuild.
2. Write the desired state, if the command changes it.
3. Note the generation, the unit's invocation and its journal position under the job's id, then
   start the unit. The note is what lets a restarted bot (a switch may restart it) follow the
   same run and report in the same message.
4. Follow the journal: one message, edited in place, with the phase and the last lines.
5. On failure, put the previous desired state back and show the last 20 lines. On success, show
   the generations before and after, and offer *Keep*: unpressed, the switch is rolled back.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import Any

from handlers.core.context import CommandError, Context
from handlers.core.messages import Offer, Reply, esc
from handlers.core.text import duration
from providers.host.base import UnitError
from providers.nixos.base import (
    REBUILD_UNIT,
    DesiredState,
    DesiredStateError,
    RebuildRun,
    Written,
    diff,
    digest_of,
)

KEEP = "keep"
TAIL = 20
_PHASES = (
    ("unpacking channels", "📦 Updating the channel"),
    ("updating", "📦 Updating the flake inputs"),
    ("building the system configuration", "🔨 Building the system configuration"),
    ("these ", "🔨 Building"),
    ("building '", "🔨 Building"),
    ("copying path", "⬇️ Downloading"),
    ("switching profile", "↩️ Switching the generation"),
    ("activating the configuration", "⚙️ Activating"),
    ("setting up /etc", "⚙️ Activating"),
    ("restarting", "⚙️ Restarting changed services"),
    ("the following new units were started", "⚙️ Starting new services"),
)

Change = Callable[[], Awaitable[Written | None]]


@dataclass
class Record:
    """What a rebuild job follows, persisted under its job id."""

    title: str
    run: RebuildRun
    before: int | None
    digest: str | None = None  # the desired state this job wrote, restored on failure
    keep: bool = True
    tail: list[str] = field(default_factory=list)
    started: float = field(default_factory=time.time)
    prior: str | None = None  # the desired state before this job's change, as rendered JSON

    def dump(self) -> str:
        return json.dumps(
            {
                "title": self.title,
                "run": self.run.to_json(),
                "before": self.before,
                "digest": self.digest,
                "keep": self.keep,
                "tail": self.tail[-TAIL:],
                "started": self.started,
                "prior": self.prior,
            }
        )

    @classmethod
    def load(cls, text: str) -> Record:
        data: dict[str, Any] = json.loads(text)
        return cls(
            data["title"], RebuildRun.from_json(data["run"]), data["before"], data["digest"],
            data["keep"], list(data["tail"]), data["started"], data.get("prior"),
        )  # fmt: skip


def _key(ctx: Context) -> str:
    return f"rebuild:job:{ctx.job_id if ctx.job_id is not None else 'direct'}"


async def current_generation(ctx: Context) -> int | None:
    try:
        found = await ctx.deps.nixos.generations()
    except UnitError:
        return None
    return next((g.number for g in found if g.current), None)


async def switch(
    ctx: Context,
    *,
    unit: str,
    title: str,
    change: Change | None = None,
    join: bool = False,
    keep: bool = True,
) -> Reply:
    """Run ``unit`` and report; ``change`` writes the desired state once it is our turn."""
    rebuilds = ctx.deps.rebuilds
    digest: str | None = None
    prior: str | None = None
    try:
        while (busy := await rebuilds.busy()) is not None and not (join and busy == unit):
            await ctx.progress.update(
                f"⏳ <b>{esc(title)}</b>: waiting for the running <code>{esc(busy)}</code> "
                "to finish…"
            )
            await asyncio.sleep(ctx.deps.policy.poll_seconds)
        written = await change() if change is not None else None
        if written is not None:
            digest, prior = written.digest, written.before.render().decode()
        before = await current_generation(ctx)
        run = await rebuilds.prepare(unit)
        record = Record(title, run, before, digest, keep, prior=prior)
        await _save(ctx, record)
        record.run = await rebuilds.start(run)
        await _save(ctx, record)
    except UnitError as exc:
        text = f"{esc(title)} could not start: {esc(exc)}"
        if digest is not None and await _put_back(ctx, digest):
            text += " The desired state was put back as it was."
        raise CommandError(text) from None
    except DesiredStateError as exc:
        raise CommandError(esc(exc)) from None
    return await _follow(ctx, record)


async def _put_back(ctx: Context, digest: str) -> bool:
    try:
        return await ctx.deps.desired.restore(digest)
    except DesiredStateError:
        return False


async def resume(ctx: Context) -> Reply:
    """The bot restarted while this job ran: find the run it followed and report its outcome."""
    raw = await ctx.deps.notes.get(_key(ctx))
    if raw is None:
        raise CommandError(
            "The bot restarted before the rebuild began, so nothing was rebuilt. If the command "
            "changed a setting, it is saved: send /rebuild to apply it."
        )
    record = Record.load(raw)
    if not record.run.started:
        # Stopped between noting the run and starting it: whether the start got through,
        # the unit's invocation tells.
        poll = await ctx.deps.rebuilds.poll(record.run)
        record.run = replace(poll.run, started=bool(poll.run.run_id))
        if not record.run.started:
            record.run = await ctx.deps.rebuilds.start(record.run)
        await _save(ctx, record)
    return await _follow(ctx, record)


async def _save(ctx: Context, record: Record) -> None:
    await ctx.deps.notes.set(_key(ctx), record.dump(), ctx.now)


async def _follow(ctx: Context, record: Record) -> Reply:
    policy = ctx.deps.policy
    phase = "⏳ Starting"
    joined = " (it was already running; I followed it)" if record.run.joined else ""
    while True:
        try:
            poll = await ctx.deps.rebuilds.poll(record.run)
        except UnitError as exc:
            raise CommandError(f"I lost track of {esc(record.title)}: {esc(exc)}") from None
        if poll.lines or poll.run != record.run:
            record.run = poll.run
            record.tail = [*record.tail, *poll.lines][-TAIL:]
            await _save(ctx, record)
        phase = _phase(poll.lines, phase)
        elapsed = time.time() - record.started
        if poll.finished:
            break
        last = "\n".join(line[:200] for line in record.tail[-4:])
        shown = f"\n<pre>{esc(last)}</pre>" if last else ""
        await ctx.progress.update(
            f"🔄 <b>{esc(record.title)}</b>{joined}\n{phase} · {duration(elapsed)}{shown}"
        )
        if elapsed > policy.rebuild_timeout:
            raise CommandError(
                f"{esc(record.title)} still runs after {duration(elapsed)}; I stopped "
                "following it. /generations shows where the system is."
            )
        await asyncio.sleep(policy.poll_seconds)
    await ctx.deps.notes.delete(_key(ctx))
    if not poll.succeeded:
        raise CommandError(await _failed(ctx, record))
    return await _succeeded(ctx, record, elapsed, joined)


REFUSED = "steward: desired state refused:"  # bot/admit.py, root's line in the journal


async def _failed(ctx: Context, record: Record) -> str:
    text = f"<b>{esc(record.title)} failed.</b> /generations shows what runs now."
    refused = next((line for line in record.tail if REFUSED in line), None)
    if refused is not None:
        # Root checked the desired state before evaluating anything and said no: say why first.
        why = refused.split(REFUSED, 1)[1].strip()
        text += f"\n🛑 Root refused the desired state: <b>{esc(why[:300])}</b>"
    if record.digest is not None:
        try:
            restored = await ctx.deps.desired.restore(record.digest)
        except DesiredStateError as exc:
            text += f"\nThe desired state could not be put back: {esc(exc)}"
        else:
            text += (
                "\nThe desired state was put back as it was."
                if restored
                else "\nThe desired state was changed again since, so it was left as it is."
            )
    lines = "\n".join(line[:300] for line in record.tail[-TAIL:])
    if lines:
        text += f"\nThe last {min(TAIL, len(record.tail))} log lines:\n<pre>{esc(lines)}</pre>"
    return text


async def _succeeded(ctx: Context, record: Record, elapsed: float, joined: str) -> Reply:
    after = await current_generation(ctx)
    before = record.before
    head = f"✅ <b>{esc(record.title)}</b>: done in {duration(elapsed)}{joined}."
    if before is None or after is None:
        return Reply(f"{head}\nThe generations could not be read; /generations shows them.")
    if after == before:
        return Reply(f"{head}\nStill generation {after}: nothing in the system changed.")
    text = f"{head}\nGeneration {before} → <b>{after}</b>."
    minutes = ctx.deps.policy.keep_minutes
    if not record.keep or not minutes:
        return Reply(text)
    if record.digest is not None and record.prior is not None:
        await _note_kept_change(ctx, after, record.digest, record.prior)
    note = f"Press <b>Keep</b> within {minutes:g} min, or generation {before} comes back by itself."
    return Reply(text, offer=Offer(KEEP, (str(before), str(after)), minutes, note))


def _phase(lines: tuple[str, ...], phase: str) -> str:
    for line in lines:
        lowered = line.strip().lower()
        for start, label in _PHASES:
            if lowered.startswith(start):
                phase = label
    return phase


# --- the desired state: read, describe a change, write and switch ----------------------------


async def read_desired(ctx: Context) -> DesiredState:
    try:
        return await ctx.deps.desired.read()
    except DesiredStateError as exc:
        raise CommandError(esc(exc)) from None


def describe_change(before: DesiredState, after: DesiredState) -> str:
    changes = diff(before, after)
    if not changes:
        raise CommandError("That is already so; nothing would change.")
    lines = ["The desired state changes, then the system is rebuilt:"]
    for change in changes:
        old = "unset" if change.before is None else json.dumps(change.before)
        new = "unset" if change.after is None else json.dumps(change.after)
        if len(old) > 60:
            old = old[:57] + "…"
        if len(new) > 60:
            new = new[:57] + "…"
        lines.append(f"• <code>{esc(change.path)}</code>: {esc(old)} → <b>{esc(new)}</b>")
    return "\n".join(lines)


async def change_and_switch(
    ctx: Context, title: str, change: Callable[[DesiredState], DesiredState]
) -> Reply:
    async def write() -> Written | None:
        written = await ctx.deps.desired.update(change)
        return written if written.changes else None

    return await switch(ctx, unit=REBUILD_UNIT, title=title, change=write)


# --- a switch that is not kept takes its change to the desired state with it ---------------------


def _kept_key(generation: int) -> str:
    return f"rebuild:offer:{generation}"


async def _note_kept_change(ctx: Context, after: int, digest: str, prior: str) -> None:
    """What generation ``after`` changed in the desired state, until Keep or its lapse."""
    note = json.dumps({"digest": digest, "prior": prior})
    await ctx.deps.notes.set(_kept_key(after), note, ctx.now)


async def forget_change(ctx: Context, after: int) -> None:
    await ctx.deps.notes.delete(_kept_key(after))


class _ChangedSinceError(Exception):
    pass


async def take_back_change(ctx: Context, after: int) -> str:
    """Put back the desired state that the generation before ``after`` was built from, unless
    someone changed it since ``after`` was built: then their change stays, and we say so.

    Without this the next /rebuild, /set or /enable would build the rejected change again."""
    raw = await ctx.deps.notes.get(_kept_key(after))
    if raw is None:
        return ""
    note = json.loads(raw)
    prior = DesiredState.from_json(json.loads(note["prior"]))

    def back(state: DesiredState) -> DesiredState:
        # The same guard as a failed rebuild: only the very state this switch wrote is undone.
        if digest_of(state.render()) != note["digest"]:
            raise _ChangedSinceError
        return prior

    try:
        await ctx.deps.desired.update(back)
    except _ChangedSinceError:
        return (
            "The desired state was changed again since, so it was left as it is: the next "
            "/rebuild builds that."
        )
    except DesiredStateError as exc:
        return f"The desired state could not be put back: {esc(exc)}"
    finally:
        await forget_change(ctx, after)
    return "The desired state was put back as it was, so the next /rebuild does not bring it back."
