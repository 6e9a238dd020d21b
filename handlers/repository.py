"""A backup repository that is ready: ``/backup init``, and the first ``/backup`` or scheduled
run on a new server, which finds none and offers to make one.

restic cannot back up into nothing, and making a repository is the one moment its password
matters most: whoever loses the password file loses every backup. So the repository is made
only after a confirmation that says where it goes and that the file is the only key.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from handlers.core.context import CommandError, Context
from handlers.core.messages import Button, Reply, esc
from handlers.core.registry import Registry
from handlers.core.spec import Role
from providers.backup.base import BackupError

if TYPE_CHECKING:
    from providers.backup.base import BackupEngine

commands = Registry()
INIT = "backup init"


def what_init_does(backups: BackupEngine) -> str:
    """The sentence a confirmation of ``restic init`` shows."""
    text = f"Creates a new, empty backup repository at <code>{esc(backups.location())}</code>."
    key = backups.key_file()
    if key is not None:
        text += (
            f" The password in <code>{esc(key)}</code> is the only key to it: without that file "
            "nobody, you included, can read these backups. Keep a copy away from this server."
        )
    return text


async def missing(backups: BackupEngine) -> bool:
    """Whether there is no repository yet; any other problem is said as it is."""
    try:
        return not await backups.ready()
    except BackupError as exc:
        raise CommandError(esc(exc)) from None


async def create(ctx: Context, backups: BackupEngine) -> str:
    await ctx.progress.update(f"🗄 Creating the backup repository at {esc(backups.location())}…")
    try:
        await backups.init()
    except BackupError as exc:
        raise CommandError(f"The backup repository could not be created: {esc(exc)}") from None
    return f"🗄 The backup repository at <code>{esc(backups.location())}</code> is ready."


def offer_init(backups: BackupEngine, what: str) -> Reply:
    """For the schedule: nobody asked, so the scheduled run only offers; one press asks."""
    return Reply(
        f"❌ {what}: there is no backup repository at <code>{esc(backups.location())}</code> "
        "yet. Create it with <code>/backup init</code>.",
        buttons=(Button.run("Create the repository", INIT),),
    )


def _engine(ctx: Context) -> BackupEngine:
    if ctx.deps.backups is None:
        raise CommandError("Backups are not set up: set <code>STEWARD_RESTIC_REPOSITORY</code>.")
    return ctx.deps.backups


@commands.command(INIT, "Create the backup repository", role=Role.ADMIN, changes=True,
                  background=True, button=True)  # fmt: skip
async def backup_init(ctx: Context) -> Reply:
    backups = _engine(ctx)
    if not await missing(backups):
        return Reply(f"The backup repository at <code>{esc(backups.location())}</code> is ready.")
    return Reply(await create(ctx, backups))


@backup_init.preview
async def _init_preview(ctx: Context) -> str:
    backups = _engine(ctx)
    if not await missing(backups):
        raise CommandError(
            f"The backup repository at <code>{esc(backups.location())}</code> is ready; "
            "there is nothing to create."
        )
    return what_init_does(backups)
