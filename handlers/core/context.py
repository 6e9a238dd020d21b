"""What a handler gets: the command, the caller's role, and the providers it may use."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, tzinfo
from typing import TYPE_CHECKING

from handlers.core.messages import Command
from handlers.core.progress import Progress
from handlers.core.records import AuditLog
from handlers.core.spec import Role
from providers.catalogue import ServiceCatalogue
from providers.host import HostProbe
from providers.nixos.system import NixosSystem
from providers.systemd import ServiceManager

if TYPE_CHECKING:
    from handlers.core.registry import Registry


class CommandError(Exception):
    """A domain failure with a short, safe answer (already escaped HTML)."""


@dataclass(frozen=True, slots=True)
class Deps:
    """The providers and stores handlers may use. Only ``bot`` builds one."""

    host: HostProbe
    services: ServiceManager
    catalogue: ServiceCatalogue
    audit: AuditLog
    registry: Registry
    timezone: tzinfo
    nixos: NixosSystem


@dataclass(frozen=True, slots=True)
class Context:
    command: Command
    role: Role
    deps: Deps
    progress: Progress
    now: datetime
    # The persisted job this run belongs to; None for read-only commands and previews.
    job_id: int | None = None

    def local(self, moment: datetime) -> datetime:
        return moment.astimezone(self.deps.timezone)
