"""Backups: the Protocol every backup engine follows, and the records it returns.

A snapshot belongs to one service and says why it was taken through two tags,
``service:<id>`` and ``reason:<scheduled|manual|pre-restore>``. Retention only ever
touches scheduled snapshots: a manual or pre-restore snapshot stays until someone forgets it.

A restore writes every file under ``target_dir`` at its original absolute path
(``/var/lib/app/db`` lands in ``<target_dir>/var/lib/app/db``), as restic does.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from values import value

if TYPE_CHECKING:
    from providers.host.catalogue import ServiceInfo

SERVICE_TAG = "service:"
REASON_TAG = "reason:"
# Steward's own snapshot (providers/backup/selfsnapshot.py) is tagged as this service; the NixOS
# module refuses it as a catalogue id.
SELF = "steward"


class BackupReason(enum.StrEnum):
    SCHEDULED = "scheduled"
    MANUAL = "manual"
    PRE_RESTORE = "pre-restore"
    PRE_UPGRADE = "pre-upgrade"  # Steward's own snapshot, before /upgrade


class BackupError(Exception):
    """A backup operation failed; the message is one short sentence, safe to show."""


class NoRepositoryError(BackupError):
    """There is no repository at the configured location: it can be made with ``init``."""


NO_REPOSITORY = "There is no backup repository at the configured location."


_SERVICE_ID = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")


def service_tag(service_id: str) -> str:
    """The tag of a service's snapshots. Ids come from the catalogue; anything else (a comma
    would split restic's tag list) is refused."""
    if not _SERVICE_ID.match(service_id):
        raise BackupError("That is not a service id.")
    return f"{SERVICE_TAG}{service_id}"


def tags_for(service_id: str, reason: BackupReason) -> tuple[str, str]:
    return (service_tag(service_id), f"{REASON_TAG}{reason.value}")


def service_of(tags: Sequence[str]) -> str | None:
    return next(
        (tag.removeprefix(SERVICE_TAG) for tag in tags if tag.startswith(SERVICE_TAG)), None
    )


def reason_of(tags: Sequence[str]) -> BackupReason | None:
    for tag in tags:
        if tag.startswith(REASON_TAG):
            try:
                return BackupReason(tag.removeprefix(REASON_TAG))
            except ValueError:
                return None
    return None


@value
class Snapshot:
    id: str
    short_id: str
    time: datetime
    tags: tuple[str, ...]
    paths: tuple[str, ...]
    hostname: str
    size_bytes: int | None = None
    # The hash of its root tree: with the id, what root records of the snapshots it took.
    tree: str | None = None

    @property
    def service_id(self) -> str | None:
        return service_of(self.tags)

    @property
    def reason(self) -> BackupReason | None:
        return reason_of(self.tags)


@value
class BackupProgress:
    percent: float
    files_done: int
    files_total: int
    bytes_done: int
    bytes_total: int
    seconds_elapsed: float
    seconds_remaining: float | None = None


ProgressCallback = Callable[[BackupProgress], Awaitable[None]]


@value
class BackupResult:
    snapshot_id: str
    files_new: int
    files_changed: int
    files_unmodified: int
    bytes_added: int
    bytes_processed: int
    duration_seconds: float
    # Files that could not be read: the snapshot exists but lacks them.
    unreadable: int = 0


@value
class RestoreResult:
    snapshot_id: str
    target_dir: Path
    files: int
    bytes: int
    verified: bool


@value
class RetentionPolicy:
    keep_last: int = 0
    keep_daily: int = 0
    keep_weekly: int = 0
    keep_monthly: int = 0
    keep_yearly: int = 0

    @property
    def empty(self) -> bool:
        return not any(
            (self.keep_last, self.keep_daily, self.keep_weekly, self.keep_monthly, self.keep_yearly)
        )


@value
class RetentionResult:
    kept: tuple[str, ...]
    removed: tuple[str, ...]


@value
class CheckResult:
    ok: bool
    read_data_subset: str
    problems: tuple[str, ...] = ()


@value
class DrillResult:
    """A restore drill: sampled files restored and their sha256 compared with the repository's
    own copy of the same files."""

    snapshot_id: str
    files_compared: int
    mismatches: tuple[str, ...]
    duration_seconds: float

    @property
    def ok(self) -> bool:
        return self.files_compared > 0 and not self.mismatches


@value
class RepoStats:
    stored_bytes: int
    snapshot_count: int
    blob_count: int | None = None


if TYPE_CHECKING:
    # For the type checker only (docs/architecture.md, Contracts).

    class BackupEngine(Protocol):
        async def init(self) -> None:
            """Create the repository; a repository that already exists is fine (its password is
            checked)."""
            ...

        async def ready(self) -> bool:
            """True when the repository opens; False when there is none at its location yet.
            Anything else (a wrong password, no network) raises ``BackupError``."""
            ...

        def location(self) -> str:
            """Where the repository is, for people: never with the credentials a URL may hold."""
            ...

        def key_file(self) -> str | None:
            """The password file: the only key to the repository."""
            ...

        async def backup(
            self,
            service_id: str,
            paths: Sequence[Path],
            reason: BackupReason,
            on_progress: ProgressCallback | None = None,
        ) -> BackupResult: ...

        async def snapshots(self, service_id: str | None = None) -> list[Snapshot]:
            """Oldest first."""
            ...

        async def restore(
            self,
            snapshot_id: str,
            target_dir: Path,
            include_paths: Sequence[str] = (),
            *,
            verify: bool = True,
        ) -> RestoreResult:
            """Restore into ``target_dir``, a new staging folder (what it already holds is
            overwritten, and counted). ``include_paths`` are absolute paths in the snapshot."""
            ...

        async def forget(self, snapshot_id: str) -> None:
            """Remove one snapshot from the list; its data goes at the next pruning retention."""
            ...

        async def apply_retention(self, policy: RetentionPolicy) -> RetentionResult:
            """Forget and prune scheduled snapshots beyond the policy, per service."""
            ...

        async def check(self, read_data_subset: str = "5%") -> CheckResult: ...

        async def drill(
            self, sample_size: int, tmp_dir: Path, service_id: str | None = None
        ) -> DrillResult: ...

        async def stats(self) -> RepoStats: ...

    class SelfSnapshot(Protocol):
        """Steward's own snapshot (tag ``service:steward``): its database, the desired state,
        /etc/nixos, the DKIM keys and the catalogue (providers/backup/selfsnapshot.py)."""

        async def take(
            self, reason: BackupReason, on_progress: ProgressCallback | None = None
        ) -> BackupResult: ...

    class Units(Protocol):
        """What the restore needs of systemd (``ServiceManager`` has it)."""

        async def start(self, unit: str) -> None: ...

        async def stop(self, unit: str) -> None: ...

    class DatabaseDumps(Protocol):
        """Database dumps that travel in a service's snapshot, in ``folder(service)``."""

        def folder(self, service_id: str) -> Path: ...

        async def dump(self, service_id: str, databases: Sequence[str]) -> Path:
            """Dump each database into ``folder(service_id)``; returns that folder."""
            ...

        async def load(self, dumps: Path, databases: Sequence[str]) -> None:
            """Load each database from ``<dumps>/<name>.pgdump``, each in one transaction."""
            ...

        async def clean(self, service_id: str) -> None: ...

    class DataJobs(Protocol):
        async def backup(
            self, info: ServiceInfo, reason: BackupReason, on_progress: ProgressCallback
        ) -> BackupResult:
            """Dump the service's databases, back up its folders and the dumps, remove them."""
            ...

        async def restore(self, plan: RestorePlan, step: Step) -> RestoreReport: ...

        async def recover(self, service_id: str, step: Step) -> tuple[bool, str]: ...


# What a restore puts back and what it reports, and what it needs of the system.
Step = Callable[[str], Awaitable[None]]


@value
class RestorePlan:
    service_id: str
    snapshot_id: str
    folders: tuple[str, ...]  # the service's real paths, all present in the snapshot
    units: tuple[str, ...]
    databases: tuple[str, ...] = ()


@value
class RestoreReport:
    snapshot_id: str
    safety_snapshot: str | None
    folders: tuple[str, ...]
    files: int
    bytes: int
    databases: tuple[str, ...]


class RestoreError(BackupError):
    """The restore stopped; ``kept_old`` says whether the old data is back in place."""

    def __init__(self, message: str, *, kept_old: bool, safety_snapshot: str | None) -> None:
        super().__init__(message)
        self.kept_old = kept_old
        self.safety_snapshot = safety_snapshot
