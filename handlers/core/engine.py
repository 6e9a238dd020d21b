"""The one path every message takes: gate, parse, freshness, confirmation, run, audit.

Transports turn their updates into ``Command`` and ``Press`` values and hand them here; all
answers go back through the transport's ``Outbox``.
"""

from __future__ import annotations

import logging
import re
import secrets
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from handlers.core.access import AccessPolicy, StrangerLimiter
from handlers.core.context import CommandError, Context, Deps
from handlers.core.fleet import addressee
from handlers.core.guard import Guard, Verdict
from handlers.core.job_host import EngineSettings
from handlers.core.jobs import JobRunner
from handlers.core.messages import (
    CANCEL,
    CONFIRM,
    MAX_ACTION_BYTES,
    RUN,
    Actor,
    Button,
    ChatRef,
    Command,
    MessageRef,
    Press,
    Reply,
    esc,
)
from handlers.core.progress import NoProgress
from handlers.core.records import AuditEntry, AuditEvent, Confirmation, ConfirmationState
from handlers.core.registry import Entry
from handlers.core.spec import AskFirst, Role, UsageError

if TYPE_CHECKING:
    from handlers.core.progress import Outbox
    from handlers.core.records import ConfirmationStore, JobStore

log = logging.getLogger(__name__)

STRANGER_REPLY = "Sorry, this is a private bot."
INVALID_BUTTON = "This button is not valid (anymore)."
# Words the transports handle themselves (Matrix's ``!confirm CODE``), addressable too.
TRANSPORT_WORDS = frozenset({"confirm", "cancel"})


def onboarding_reply(actor: Actor) -> str:
    """The first message's answer while no admin is configured: the id and the line to add."""
    uid = esc(actor.user_id)
    where = "Matrix" if actor.transport == "matrix" else "Telegram"
    return (
        "No admin is configured yet, so this bot serves nobody.\n"
        f"Your {where} id is <code>{uid}</code>. If this is your server, make yourself its "
        "admin: add this line to its NixOS configuration and rebuild,\n"
        f'<code>services.steward.settings.admins = [ "{uid}" ];</code>\n'
        f"or, without NixOS, set <code>STEWARD_ADMINS={uid}</code> and restart Steward."
    )


def utcnow() -> datetime:
    return datetime.now(UTC)


Incident = Callable[[str, str], Awaitable[None]]
Toast = Callable[[str], Awaitable[None]]
Alert = Callable[[Reply], Awaitable[None]]


class Engine:
    def __init__(
        self,
        *,
        deps: Deps,
        access: AccessPolicy,
        confirmations: ConfirmationStore,
        jobs: JobStore,
        outbox: Outbox,
        settings: EngineSettings | None = None,
        clock: Callable[[], datetime] = utcnow,
        limiter: StrangerLimiter | None = None,
        on_incident: Incident | None = None,
        guard: Guard | None = None,
        on_alert: Alert | None = None,
    ) -> None:
        self.deps = deps
        self.access = access
        self.confirmations = confirmations
        self.outbox = outbox
        self.settings = settings or EngineSettings()
        self.clock = clock
        self.limiter = limiter or StrangerLimiter()
        self.on_incident = on_incident
        self.guard = guard or Guard(deps.notes)
        self.on_alert = on_alert  # tells the admins, as a scheduled alert does
        self.jobs = JobRunner(self, jobs)
        deps.registry.check()
        # Heads of command lines, to tell ``!vps restart x`` (an address) from a command.
        self._heads = {entry.spec.name.split()[0] for entry in deps.registry} | TRANSPORT_WORDS

    # -- commands -------------------------------------------------------------------------

    def for_me(self, cmd: Command) -> Command | None:
        """The command without its address; None when it names another Steward, which then
        answers alone: not even a refusal comes from the others."""
        fleet = self.deps.fleet
        if fleet is None:
            return cmd
        target, name, args = addressee(cmd.name, cmd.args, self._heads.__contains__)
        if target is None:
            return cmd
        return replace(cmd, name=name, args=args) if target == fleet.name else None

    async def handle_command(self, cmd: Command) -> None:
        mine = self.for_me(cmd)
        if mine is None:
            return
        cmd = mine
        role = self.access.role_of(cmd.actor)
        if role is None:
            await self.refuse_stranger(cmd.actor, cmd.chat, cmd.name, cmd.args, cmd.message_id)
            return
        resolved = self.deps.registry.resolve(cmd.name, cmd.args)
        if resolved is None:
            await self.refuse(cmd, f"Unknown command /{esc(cmd.name)}, see /help.")
            return
        entry, args = resolved
        spec = entry.spec
        if role < spec.role:
            await self.refuse(
                cmd, f"/{spec.name} needs the {spec.role.label} role; you are {role.label}."
            )
            return
        try:
            values = spec.parse(args)
        except UsageError as exc:
            await self.refuse(cmd, f"{esc(exc.reason)}.\nUsage: <code>{esc(exc.usage)}</code>")
            return
        if spec.changes:
            await self._ask_confirmation(cmd, entry, args, role, values)
            return
        await self._run_read_only(cmd, entry, role, values)

    async def _run_read_only(
        self, cmd: Command, entry: Entry, role: Role, values: Mapping[str, object]
    ) -> None:
        started = time.monotonic()
        ctx = Context(cmd, role, self.deps, NoProgress(), self.clock())
        reply, event, result = await self.invoke(entry, ctx, values)
        # Queued before the reply is sent, so its commit runs while the reply is on its way;
        # awaited after, so the chat's next message waits for it (and a clean stop flushes it).
        written = self._audit_soon(
            event, cmd.actor, cmd.chat, cmd.name, cmd.args, result=result, started=started
        )
        try:
            await self.outbox.send(cmd.chat, reply, cmd.message_id)
        except Exception as exc:
            # The command ran and its row says so; that it could not answer is a row too.
            await self.audit(AuditEvent.ERROR, cmd.actor, cmd.chat, cmd.name, cmd.args,
                             result=f"reply not delivered: {type(exc).__name__}")  # fmt: skip
            raise
        finally:
            await written

    async def invoke(
        self, entry: Entry, ctx: Context, values: Mapping[str, object]
    ) -> tuple[Reply, AuditEvent, str]:
        """Run a handler; domain errors become replies here and nowhere else."""
        try:
            reply = await entry.run(ctx, **values)
        except CommandError as exc:
            return Reply(f"❌ {exc}"), AuditEvent.OUTCOME, f"failed: {exc}"
        except Exception as exc:  # noqa: BLE001 - the one place that turns bugs into incidents
            return await self.incident(ctx.command, exc), AuditEvent.ERROR, type(exc).__name__
        return reply, AuditEvent.OUTCOME, "ok"

    async def incident(self, cmd: Command, exc: BaseException) -> Reply:
        incident = secrets.token_hex(4)
        log.error("incident %s in /%s", incident, cmd.name, exc_info=exc)
        await self.report_incident(incident, f"/{cmd.name} failed: {type(exc).__name__}")
        return Reply(f"Something went wrong (incident <code>{incident}</code>). It is logged.")

    async def report_incident(self, incident: str, summary: str) -> None:
        """Tell the admins, briefly; the traceback stays in the log."""
        if self.on_incident is None:
            return
        try:
            await self.on_incident(incident, summary)
        except Exception:
            log.exception("could not report incident %s", incident)

    async def refuse(self, cmd: Command, text: str) -> None:
        await self.outbox.send(cmd.chat, Reply(text), cmd.message_id)
        await self.audit(
            AuditEvent.REFUSED, cmd.actor, cmd.chat, cmd.name, cmd.args, result=_plain(text)
        )

    async def refuse_stranger(
        self,
        actor: Actor,
        chat: ChatRef,
        name: str,
        args: tuple[str, ...],
        message_id: str | None,
    ) -> bool:
        answered = self.limiter.should_answer(actor)
        # Before anyone is admin the bot serves nobody: the first person to write is most likely
        # its owner, who needs their numeric id (Telegram shows it nowhere).
        onboarding = not self.access.has_admin
        if answered:
            text = onboarding_reply(actor) if onboarding else STRANGER_REPLY
            await self.outbox.send(chat, Reply(text), message_id)
        result = "stranger" if answered else "stranger (not answered: rate limit)"
        if onboarding and answered:
            result += ", told their id: no admin is configured"
        await self.audit(AuditEvent.REFUSED, actor, chat, name, args, result=result)
        return answered

    # -- confirmations --------------------------------------------------------------------

    async def _ask_confirmation(
        self,
        cmd: Command,
        entry: Entry,
        args: tuple[str, ...],
        role: Role,
        values: Mapping[str, object],
    ) -> None:
        spec = entry.spec
        now = self.clock()
        age = now - cmd.received_at
        if age > spec.freshness:
            await self.refuse(
                cmd,
                f"/{spec.name} was sent {_ago(age)} ago, before I could read it. Commands that "
                f"change the server expire after {_ago(spec.freshness)}; send it again if you "
                "still want it.",
            )
            return
        problem = await self.guard.on_request(spec, values, cmd.actor, now)
        if problem:
            await self.refuse(cmd, problem)
            return
        assert entry.preview_fn is not None  # noqa: S101 - Registry.check guarantees it
        ctx = Context(cmd, role, self.deps, NoProgress(), now)
        try:
            preview = await entry.preview_fn(ctx, **values)
        except CommandError as exc:
            await self.refuse(cmd, f"❌ {exc}")
            return
        two_person = spec.two_person or spec.name in self.settings.two_person
        code = await self.guard.needs_code(spec, values, cmd.actor)
        asks = (spec.confirm or spec.name in self.settings.confirm or two_person or code
                or isinstance(preview, AskFirst))  # fmt: skip
        nonce = secrets.token_urlsafe(16)  # 128 random bits; "cf:" + 22 chars < 64 bytes
        conf = await self.confirmations.create(
            nonce=nonce,
            command=spec.name,
            args=args,
            requester=cmd.actor,
            chat=cmd.chat,
            created_at=now,
            expires_at=now + self.settings.confirm_ttl,
            two_person=two_person,
            preview=preview,
        )
        if not asks:
            await self._run_unasked(cmd, conf, nonce, now)
            return
        prompt = Reply(
            _prompt_text(conf) + ("\n🔐 <i>It needs the current 6-digit code.</i>" if code else ""),
            buttons=(
                Button("Confirm", f"{CONFIRM}:{nonce}"),
                Button("Cancel", f"{CANCEL}:{nonce}"),
            ),
            code_prompt=code,
        )
        ref = await self.outbox.send(cmd.chat, prompt, cmd.message_id)
        await self.confirmations.set_prompt_message(conf.id, ref.message_id)
        await self.audit(
            AuditEvent.CONFIRM_REQUESTED, cmd.actor, cmd.chat, spec.name, cmd.args,
            result="two-person" if two_person else "",
        )  # fmt: skip

    async def _run_unasked(
        self, cmd: Command, conf: Confirmation, nonce: str, now: datetime
    ) -> None:
        """A change that does not ask: its preview is the answer at once, its confirmation row
        is decided by the requester, and it runs and is audited as a confirmed one, its
        progress and outcome edited into that answer."""
        if not await self.confirmations.decide(
            nonce, state=ConfirmationState.CONFIRMED, by=cmd.actor, now=now
        ):
            return
        ref = await self.outbox.send(cmd.chat, Reply(f"⏳ {conf.preview}"), cmd.message_id)
        await self.confirmations.set_prompt_message(conf.id, ref.message_id)
        await self.audit(AuditEvent.CONFIRMED, cmd.actor, cmd.chat, conf.command, conf.args,
                         result="without asking")  # fmt: skip
        confirmed = replace(conf, state=ConfirmationState.CONFIRMED, approver=cmd.actor,
                            decided_at=now, prompt_message_id=ref.message_id)  # fmt: skip
        await self.jobs.run_confirmed(confirmed, adopt=True)

    async def handle_press(self, press: Press, answer: Toast | None = None) -> str:
        """Handle a button press and return the short toast for the presser.

        ``answer`` gets the toast as soon as the press is decided, before a confirmed action
        runs: Telegram wants every callback query answered within seconds."""
        if press.action.startswith(f"{RUN}:"):
            return await self._run_button(press, answer)
        toast, confirmed = await self._decide_press(press)
        if answer is not None:
            await answer(toast)
        if confirmed is not None:
            await self.jobs.run_confirmed(confirmed)
        return toast

    async def _run_button(self, press: Press, answer: Toast | None) -> str:
        """A press of ``run:<command line>``: the presser sends that command, if it may be
        run from a button; the command's answer goes to the chat as usual.

        What a button carries comes from the client and may be forged: only a command marked
        ``button``, with arguments it takes, is run; anything else is refused with a toast and
        an audit row naming what was pressed, and nothing is said in the chat."""
        role = self.access.role_of(press.actor)
        name, *args = press.action.removeprefix(f"{RUN}:").split() or [""]
        if role is None:
            toast, result = STRANGER_REPLY, "stranger"
        else:
            toast = result = self._button_problem(name, tuple(args), role)
        if toast:
            await self.audit(AuditEvent.REFUSED, press.actor, press.chat, "press",
                             (press.action[:MAX_ACTION_BYTES],), result=result)  # fmt: skip
            if answer is not None:
                await answer(toast)
            return toast
        if answer is not None:
            await answer("OK")
        cmd = Command(name, tuple(args), press.actor, press.chat, press.received_at,
                      press.message_id)  # fmt: skip
        await self.handle_command(cmd)
        return "OK"

    def _button_problem(self, name: str, args: tuple[str, ...], role: Role) -> str:
        """Why ``name args`` may not run from a button pressed by ``role``; "" when it may."""
        resolved = self.deps.registry.resolve(name, args)
        if resolved is None or not resolved[0].spec.button:
            return INVALID_BUTTON
        spec = resolved[0].spec
        if role < spec.role:
            return f"/{spec.name} needs the {spec.role.label} role; you are {role.label}."
        try:
            spec.parse(resolved[1])
        except UsageError:
            return INVALID_BUTTON  # we never build such a button: forged or from an old version
        return ""

    async def _decide_press(self, press: Press) -> tuple[str, Confirmation | None]:
        kind, _, nonce = press.action.partition(":")
        role = self.access.role_of(press.actor)
        if role is None:
            await self.audit(AuditEvent.REFUSED, press.actor, press.chat, "press", (),
                             result="stranger")  # fmt: skip
            return STRANGER_REPLY, None
        conf = await self.confirmations.find(nonce) if kind in (CONFIRM, CANCEL) else None
        if conf is None or conf.chat != press.chat:
            await self.audit(AuditEvent.REFUSED, press.actor, press.chat, "press", (),
                             result="unknown button")  # fmt: skip
            return INVALID_BUTTON, None
        problem = self._may_decide(conf, kind, press.actor, role)
        if problem:
            await self.audit(AuditEvent.REFUSED, press.actor, press.chat, conf.command,
                             conf.args, result=problem)  # fmt: skip
            return problem, None
        problem = await self._before_confirm(conf, press) if kind == CONFIRM else ""
        if problem:
            return problem, None
        state = ConfirmationState.CONFIRMED if kind == CONFIRM else ConfirmationState.CANCELLED
        if not await self.confirmations.decide(
            nonce, state=state, by=press.actor, now=self.clock()
        ):
            return await self._lost_race(nonce, press), None
        return await self._decided(conf, state, press)

    async def _before_confirm(self, conf: Confirmation, press: Press) -> str:
        """Lock-down and the second factor; "" when the confirmation may go ahead."""
        if conf.state is not ConfirmationState.PENDING or conf.expires_at <= self.clock():
            # Decided or expired already: say so, and leave any code given unused.
            return await self._lost_race(conf_nonce(press), press)
        verdict = await self._second_factor(conf, press)
        return "" if verdict.ok else await self._refuse_code(conf, press, verdict)

    async def _second_factor(self, conf: Confirmation, press: Press) -> Verdict:
        entry = self.deps.registry.get(conf.command)
        if entry is None or entry.spec.internal:
            return Verdict()
        try:
            values = entry.spec.parse(conf.args)
        except UsageError:
            return Verdict(INVALID_BUTTON, "bad arguments")
        return await self.guard.on_confirm(
            entry.spec, values, press.actor, press.code, self.clock()
        )

    async def _refuse_code(self, conf: Confirmation, press: Press, verdict: Verdict) -> str:
        await self.audit(AuditEvent.REFUSED, press.actor, press.chat, conf.command, conf.args,
                         result=verdict.result)  # fmt: skip
        if verdict.locked is not None:
            until = f"{verdict.locked:%H:%M} UTC"
            await self.audit(AuditEvent.SECURITY, press.actor, press.chat, "lockout",
                             result=f"5 wrong codes; locked until {until}")  # fmt: skip
            await self.alert(
                f"🚨 {esc(press.actor.label)} ({press.actor.transport}) gave 5 wrong codes and is "
                f"locked out of destructive commands until {verdict.locked:%H:%M} UTC. If that "
                "was not them, their chat account may be stolen: consider /lockdown."
            )
        return verdict.toast

    async def alert(self, text: str) -> None:
        if self.on_alert is None:
            return
        try:
            await self.on_alert(Reply(text))
        except Exception:
            log.exception("could not alert the admins")

    def _may_decide(self, conf: Confirmation, kind: str, actor: Actor, role: Role) -> str:
        entry = self.deps.registry.get(conf.command)
        needed = entry.spec.role if entry else Role.ADMIN
        is_requester = actor.key == conf.requester.key
        if kind == CANCEL:
            ok = is_requester or role is Role.ADMIN
            return "" if ok else "Only the requester or an admin can cancel this."
        if conf.two_person:
            if is_requester or self.access.same_person(actor, conf.requester):
                return "This needs a second admin to confirm."
            return "" if role is Role.ADMIN else "Only an admin can approve this."
        if not is_requester:
            return f"Only {conf.requester.label} can confirm this."
        return "" if role >= needed else "Your role no longer allows this."

    async def _lost_race(self, nonce: str, press: Press) -> str:
        current = await self.confirmations.find(nonce)
        if current is None:
            return "This button is not valid (anymore)."
        if current.state is ConfirmationState.PENDING:
            # Still pending but the update matched nothing: it has expired just now.
            await self.expire_confirmations()
            current = await self.confirmations.find(nonce) or current
        if current.state is ConfirmationState.EXPIRED:
            await self._close_prompt(current, "⌛ Expired; nothing was done.")
            await self.audit(AuditEvent.REFUSED, press.actor, press.chat, current.command,
                             current.args, result="expired")  # fmt: skip
            return "This confirmation has expired. Send the command again."
        await self.audit(AuditEvent.REFUSED, press.actor, press.chat, current.command,
                         current.args, result=f"already {current.state.value}")  # fmt: skip
        return f"Already {current.state.value}."

    async def _decided(
        self, conf: Confirmation, state: ConfirmationState, press: Press
    ) -> tuple[str, Confirmation | None]:
        by = esc(press.actor.label)
        entry = self.deps.registry.get(conf.command)
        if entry is not None and entry.spec.internal:
            # An offer (Keep): its own job edits the message, whichever way it went.
            event = AuditEvent.CONFIRMED if state is ConfirmationState.CONFIRMED else None
            await self.audit(event or AuditEvent.CANCELLED, conf.requester, conf.chat,
                             conf.command, conf.args, approver=press.actor)  # fmt: skip
            if state is ConfirmationState.CONFIRMED:
                return "Done.", conf
            lapse = entry.spec.lapse
            if lapse is None:
                return "Cancelled.", None
            return "Done.", replace(conf, command=lapse)
        if state is ConfirmationState.CANCELLED:
            await self._close_prompt(conf, f"✖ Cancelled by {by}; nothing was done.")
            await self.audit(AuditEvent.CANCELLED, conf.requester, conf.chat, conf.command,
                             conf.args, approver=press.actor)  # fmt: skip
            return "Cancelled.", None
        await self._close_prompt(conf, f"✅ Confirmed by {by}.")
        await self.audit(AuditEvent.CONFIRMED, conf.requester, conf.chat, conf.command,
                         conf.args, approver=press.actor)  # fmt: skip
        return "Confirmed.", conf

    async def _close_prompt(self, conf: Confirmation, outcome: str) -> None:
        if conf.prompt_message_id is None:
            return
        ref = MessageRef(conf.chat, conf.prompt_message_id)
        await self.outbox.edit(ref, Reply(f"{_prompt_head(conf)}\n\n{outcome}"))

    async def expire_confirmations(self) -> int:
        """Close the prompts of confirmations nobody answered in time."""
        expired = await self.confirmations.expire_due(self.clock())
        for conf in expired:
            entry = self.deps.registry.get(conf.command)
            if entry is not None and entry.spec.internal:
                await self.audit(AuditEvent.EXPIRED, conf.requester, conf.chat, conf.command,
                                 conf.args)  # fmt: skip
                if entry.spec.lapse is not None:
                    await self.jobs.run_confirmed(replace(conf, command=entry.spec.lapse))
                continue
            await self._close_prompt(conf, "⌛ Expired; nothing was done.")
            await self.audit(AuditEvent.EXPIRED, conf.requester, conf.chat, conf.command,
                             conf.args)  # fmt: skip
        return len(expired)

    # -- audit ----------------------------------------------------------------------------

    async def audit(
        self,
        event: AuditEvent,
        actor: Actor,
        chat: ChatRef | None,
        command: str = "",
        args: tuple[str, ...] = (),
        *,
        result: str = "",
        approver: Actor | None = None,
        started: float | None = None,
    ) -> None:
        await self._audit_soon(event, actor, chat, command, args, result=result,
                               approver=approver, started=started)  # fmt: skip

    def _audit_soon(
        self,
        event: AuditEvent,
        actor: Actor,
        chat: ChatRef | None,
        command: str = "",
        args: tuple[str, ...] = (),
        *,
        result: str = "",
        approver: Actor | None = None,
        started: float | None = None,
    ) -> Awaitable[None]:
        """Queues the row now and returns what completes once it has committed. That never
        raises: losing an audit row is bad; losing the answer to the user as well is worse."""
        duration = None if started is None else int((time.monotonic() - started) * 1000)
        entry = AuditEntry(self.clock(), event, actor, chat, command, args[:20], approver,
                           result[:500], duration)  # fmt: skip
        try:
            return _logged(self.deps.audit.submit(entry), command)
        except Exception:
            log.exception("could not write the audit row for /%s", command)
            return _logged(None, command)

    async def wait_for_jobs(self, seconds: float) -> bool:
        return await self.jobs.wait(seconds)


async def _logged(written: Awaitable[None] | None, command: str) -> None:
    if written is None:
        return
    try:
        await written
    except Exception:
        log.exception("could not write the audit row for /%s", command)


def conf_nonce(press: Press) -> str:
    return press.action.partition(":")[2]


def _prompt_head(conf: Confirmation) -> str:
    line = " ".join([f"/{conf.command}", *conf.args])
    return f"<b>Confirm <code>{esc(line)}</code></b>\n{conf.preview}"


def _prompt_text(conf: Confirmation) -> str:
    minutes = max(1, round((conf.expires_at - conf.created_at).total_seconds() / 60))
    who = "a second admin" if conf.two_person else esc(conf.requester.label)
    return f"{_prompt_head(conf)}\n\n<i>Waiting for {who} to confirm; expires in {minutes} min.</i>"


def _ago(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    return f"{seconds // 3600} h"


def _plain(text: str) -> str:
    return re.sub(r"<[^>]+>", "", text)
