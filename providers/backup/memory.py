"""An in-memory backup engine: demo mode and handler tests.

It behaves like the restic adapter where the contract says so (tags, retention per service
on scheduled snapshots only, restore under the target folder at absolute paths, drills) and
fails on demand. ``files`` is a virtual source tree for the demo; a path that exists on disk
is read from disk.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import random
import secrets
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from providers.backup.base import NO_REPOSITORY as BASE_NO_REPOSITORY
from providers.backup.base import (
    BackupError,
    BackupProgress,
    BackupReason,
    BackupResult,
    CheckResult,
    DrillResult,
    NoRepositoryError,
    ProgressCallback,
    RepoStats,
    RestoreResult,
    RetentionPolicy,
    RetentionResult,
    Snapshot,
    service_tag,
    tags_for,
)

logger = logging.getLogger(__name__)

NO_REPOSITORY = BASE_NO_REPOSITORY
LOCKED = "The backup repository is locked by another restic process."
WRONG_PASSWORD = "The backup repository password is wrong."  # noqa: S105 (a sentence)


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass
class _Stored:
    snapshot: Snapshot
    contents: dict[str, bytes]


@dataclass
class MemoryBackupEngine:
    """Failure injection: ``fail_next[operation] = sentence`` fails the next call of that
    operation; ``wrong_password`` and ``live_lock`` fail every call; ``stale_lock`` is removed
    once (``unlocks`` counts it) and the call goes on; ``damaged`` makes ``check`` fail;
    ``drill_hook`` sees a drill's restore folder before comparison, as with restic."""

    files: dict[str, bytes] = field(default_factory=dict)
    hostname: str = "demo"
    step_seconds: float = 0.0
    clock: Callable[[], datetime] = _now
    rng: random.Random = field(default_factory=random.Random)
    drill_hook: Callable[[Path], None] | None = None
    initialized: bool = False
    fail_next: dict[str, str] = field(default_factory=dict)
    wrong_password: bool = False
    live_lock: bool = False
    stale_lock: bool = False
    damaged: bool = False
    unlocks: int = 0
    calls: list[str] = field(default_factory=list)
    _stored: list[_Stored] = field(default_factory=list)

    @classmethod
    def demo(cls, step_seconds: float = 0.2) -> MemoryBackupEngine:
        """A ready repository and a few small files in each demo service's data folder."""
        folders = (
            "/var/lib/nextcloud", "/var/lib/forgejo", "/var/lib/bitwarden_rs", "/var/vmail",
            "/var/sieve", "/var/lib/jitsi-meet", "/var/lib/pleroma", "/var/lib/matrix-synapse",
        )  # fmt: skip
        rng = random.Random(7)  # noqa: S311 (demo content, no secret)
        files = {
            f"{folder}/{name}": rng.randbytes(rng.randrange(200, 6_000))
            for folder in folders
            for name in ("data.db", "config.json", "uploads/1.bin")
        }
        return cls(files=files, step_seconds=step_seconds, initialized=True, rng=rng)

    async def init(self) -> None:
        self._gate("init", needs_repository=False)
        self.initialized = True

    async def ready(self) -> bool:
        try:
            self._gate("ready")
        except NoRepositoryError:
            return False
        return True

    def location(self) -> str:
        return "memory:demo"

    def key_file(self) -> str | None:
        return None

    async def backup(
        self,
        service_id: str,
        paths: Sequence[Path],
        reason: BackupReason,
        on_progress: ProgressCallback | None = None,
    ) -> BackupResult:
        self._gate("backup")
        tags_for(service_id, reason)
        started = time.monotonic()
        sources, contents = await asyncio.to_thread(self._collect, paths)
        total = sum(len(data) for data in contents.values())
        done = 0
        for index, data in enumerate(contents.values(), 1):
            done += len(data)
            if self.step_seconds:
                await asyncio.sleep(self.step_seconds)
            if on_progress is not None:
                elapsed = time.monotonic() - started
                percent = 100.0 * done / total if total else 100.0
                report = BackupProgress(percent, index, len(contents), done, total, elapsed)
                try:
                    await on_progress(report)
                except Exception:
                    logger.exception("backup progress report failed")  # as restic's adapter
        previous = self._latest_contents(service_id)
        stored = self._store(service_id, reason, contents, sources)
        new = [path for path in contents if path not in previous]
        changed = [
            path for path in contents if path in previous and previous[path] != contents[path]
        ]
        return BackupResult(
            snapshot_id=stored.snapshot.short_id,
            files_new=len(new),
            files_changed=len(changed),
            files_unmodified=len(contents) - len(new) - len(changed),
            bytes_added=sum(len(contents[path]) for path in (*new, *changed)),
            bytes_processed=total,
            duration_seconds=time.monotonic() - started,
        )

    async def snapshots(self, service_id: str | None = None) -> list[Snapshot]:
        self._gate("snapshots")
        found = [s.snapshot for s in self._stored]
        if service_id is not None:
            service_tag(service_id)
            found = [snap for snap in found if snap.service_id == service_id]
        return sorted(found, key=lambda snap: snap.time)

    async def restore(
        self,
        snapshot_id: str,
        target_dir: Path,
        include_paths: Sequence[str] = (),
        *,
        verify: bool = True,
    ) -> RestoreResult:
        self._gate("restore")
        stored = self._find(snapshot_id)
        chosen = {
            path: data
            for path, data in stored.contents.items()
            if not include_paths or any(_under(path, inc) for inc in include_paths)
        }
        if include_paths and not chosen:
            raise BackupError("The snapshot holds none of the asked paths.")
        await asyncio.to_thread(_write_tree, target_dir, chosen, verify)
        size = sum(len(data) for data in chosen.values())
        return RestoreResult(stored.snapshot.id, target_dir, len(chosen), size, verify)

    async def forget(self, snapshot_id: str) -> None:
        self._gate("forget")
        self._stored.remove(self._find(snapshot_id))

    async def apply_retention(self, policy: RetentionPolicy) -> RetentionResult:
        self._gate("apply_retention")
        if policy.empty:
            raise BackupError("The retention policy keeps nothing; nothing was forgotten.")
        groups: dict[tuple[str, tuple[str, ...]], list[Snapshot]] = {}
        for stored in self._stored:
            snap = stored.snapshot
            if snap.reason is BackupReason.SCHEDULED:
                groups.setdefault((snap.hostname, tuple(sorted(snap.tags))), []).append(snap)
        kept: list[str] = []
        for group in groups.values():
            kept += keep_by_policy(group, policy)
        removed = [
            s.snapshot.id
            for s in self._stored
            if s.snapshot.reason is BackupReason.SCHEDULED and s.snapshot.id not in kept
        ]
        self._stored = [s for s in self._stored if s.snapshot.id not in removed]
        return RetentionResult(tuple(kept), tuple(removed))

    async def check(self, read_data_subset: str = "5%") -> CheckResult:
        self._gate("check")
        if self.damaged:
            return CheckResult(False, read_data_subset, ("pack 3f2a9c1e: not readable",))
        return CheckResult(True, read_data_subset)

    async def drill(
        self, sample_size: int, tmp_dir: Path, service_id: str | None = None
    ) -> DrillResult:
        self._gate("drill")
        started = time.monotonic()
        found = await self.snapshots(service_id)
        if not found:
            raise BackupError("There is no snapshot to test yet.")
        stored = self._find(found[-1].id)
        paths = sorted(stored.contents)
        sample = self.rng.sample(paths, min(max(sample_size, 1), len(paths)))
        folder = Path(await asyncio.to_thread(tempfile.mkdtemp, prefix="drill-", dir=tmp_dir))
        try:
            await self.restore(stored.snapshot.id, folder, sample, verify=False)
            if self.drill_hook is not None:
                self.drill_hook(folder)
            restored = await asyncio.to_thread(_digests, folder, sample)
        finally:
            await asyncio.to_thread(shutil.rmtree, folder, True)
        mismatches = tuple(path for path in sample if restored[path] != _sha(stored.contents[path]))
        return DrillResult(stored.snapshot.id, len(sample), mismatches, time.monotonic() - started)

    async def stats(self) -> RepoStats:
        self._gate("stats")
        blobs = {_sha(data): len(data) for s in self._stored for data in s.contents.values()}
        return RepoStats(sum(blobs.values()), len(self._stored), len(blobs))

    def _gate(self, operation: str, *, needs_repository: bool = True) -> None:
        self.calls.append(operation)
        if operation in self.fail_next:
            raise BackupError(self.fail_next.pop(operation))
        if needs_repository and not self.initialized:
            raise NoRepositoryError(NO_REPOSITORY)
        if self.wrong_password:
            raise BackupError(WRONG_PASSWORD)
        if self.live_lock:
            raise BackupError(LOCKED)
        if self.stale_lock:
            self.stale_lock = False
            self.unlocks += 1

    def _collect(self, paths: Sequence[Path]) -> tuple[list[str], dict[str, bytes]]:
        sources = [str(Path(path).absolute()) for path in paths]
        if not sources:
            raise BackupError("Nothing to back up at no path.")
        contents: dict[str, bytes] = {}
        for source in sources:
            found = {path: data for path, data in self.files.items() if _under(path, source)}
            found.update(_read_tree(Path(source)))
            if not found:
                raise BackupError(f"Nothing to back up at {source}.")
            contents.update(found)
        return sources, contents

    def _store(
        self, service_id: str, reason: BackupReason, contents: dict[str, bytes], paths: list[str]
    ) -> _Stored:
        when = self.clock()
        if self._stored and when <= self._stored[-1].snapshot.time:
            when = self._stored[-1].snapshot.time + timedelta(microseconds=1)
        full = secrets.token_hex(32)
        snap = Snapshot(
            full, full[:8], when, tags_for(service_id, reason), tuple(paths), self.hostname,
            sum(len(data) for data in contents.values()), _tree(contents),
        )  # fmt: skip
        stored = _Stored(snap, dict(contents))
        self._stored.append(stored)
        return stored

    def _latest_contents(self, service_id: str) -> dict[str, bytes]:
        mine = [s for s in self._stored if s.snapshot.service_id == service_id]
        return mine[-1].contents if mine else {}

    def _find(self, snapshot_id: str) -> _Stored:
        if snapshot_id == "latest" and self._stored:
            return max(self._stored, key=lambda s: s.snapshot.time)
        matches = [
            s
            for s in self._stored
            if len(snapshot_id) >= 8 and s.snapshot.id.startswith(snapshot_id)
        ]
        if len(matches) != 1:
            raise BackupError("No such snapshot.")
        return matches[0]


def keep_by_policy(group: Sequence[Snapshot], policy: RetentionPolicy) -> list[str]:
    """restic's rule: newest first, a snapshot is kept when it opens a new bucket (day, week,
    ...) for a rule that still has a count left."""
    rules: list[tuple[Callable[[Snapshot], str], int]] = [
        (lambda s: s.id, policy.keep_last),
        (lambda s: s.time.strftime("%Y-%m-%d"), policy.keep_daily),
        (lambda s: "{}-{}".format(*s.time.isocalendar()[:2]), policy.keep_weekly),
        (lambda s: s.time.strftime("%Y-%m"), policy.keep_monthly),
        (lambda s: s.time.strftime("%Y"), policy.keep_yearly),
    ]
    counts = [count for _, count in rules]
    last: list[str | None] = [None] * len(rules)
    kept = []
    for snap in sorted(group, key=lambda s: s.time, reverse=True):
        keep = False
        for index, (bucket_of, _) in enumerate(rules):
            bucket = bucket_of(snap)
            if counts[index] > 0 and bucket != last[index]:
                keep = True
                last[index] = bucket
                counts[index] -= 1
        if keep:
            kept.append(snap.id)
    return kept


def _under(path: str, prefix: str) -> bool:
    prefix = prefix.rstrip("/") or "/"
    return path == prefix or path.startswith(prefix if prefix == "/" else prefix + "/")


def _read_tree(root: Path) -> dict[str, bytes]:
    if root.is_file():
        return {str(root): root.read_bytes()}
    return {
        str(Path(folder) / name): (Path(folder) / name).read_bytes()
        for folder, _, names in os.walk(root)
        for name in names
        if (Path(folder) / name).is_file()
    }


def _write_tree(target: Path, contents: dict[str, bytes], verify: bool) -> None:
    for path, data in contents.items():
        destination = target / path.lstrip("/")
        destination.parent.mkdir(parents=True, exist_ok=True)
        destination.write_bytes(data)
        if verify and destination.read_bytes() != data:
            raise BackupError(f"The restored file {path} differs from the snapshot.")


def _digests(folder: Path, paths: Sequence[str]) -> dict[str, str | None]:
    found: dict[str, str | None] = {}
    for path in paths:
        try:
            found[path] = _sha((folder / path.lstrip("/")).read_bytes())
        except OSError:
            found[path] = None
    return found


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _tree(contents: dict[str, bytes]) -> str:
    """What restic's tree hash is to a snapshot: a digest of its paths and their bytes."""
    digest = hashlib.sha256()
    for path in sorted(contents):
        digest.update(hashlib.sha256(path.encode()).digest())
        digest.update(hashlib.sha256(contents[path]).digest())
    return digest.hexdigest()
