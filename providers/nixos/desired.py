"""The desired state: what the owners chose from chat, as a JSON file the NixOS module reads.

The file is checked against ``desired-state.schema.json`` before every write, and written the
way that survives a crash at any point: under a lock, to a temporary file in the same folder,
fsync, rename over the old one, fsync of the folder. The version it replaces is kept beside it
as ``<name>.previous``. A file that is corrupt on disk is reported and never overwritten: the
owner may have edited it by hand, and only they know what they meant.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from providers.host.base import fsync_dir
from providers.nixos.base import (
    DesiredState,
    DesiredStateError,
    ServiceState,
    Written,
    digest_of,
)
from providers.nixos.validation import check, validate


def first_start(already_running: Iterable[str]) -> DesiredState:
    """What the bot records on its first start: the services that already ran before it came
    (the catalogue's ``already_running``) as enabled, so the first deploy turns nothing off.
    nixos/desired-state.nix assumes the same while there is no file."""
    return DesiredState({sid: ServiceState(enable=True) for sid in sorted(already_running)})


# --- the file -----------------------------------------------------------------------------------


class DesiredStateFile:
    """The real store. ``before_rename`` is a test hook: it runs with the new file complete on
    disk, just before the rename makes it the current one."""

    def __init__(
        self, path: Path, *, before_rename: Callable[[], None] | None = None, mode: int = 0o640
    ) -> None:
        self.path = path
        self.previous_path = path.with_name(path.name + ".previous")
        self._lock_path = path.with_name(f".{path.name}.lock")
        self._before_rename = before_rename
        self._mode = mode

    async def read(self) -> DesiredState:
        return await asyncio.to_thread(self.read_sync)

    async def update(self, change: Callable[[DesiredState], DesiredState]) -> Written:
        return await asyncio.to_thread(self.update_sync, change)

    async def restore(self, digest: str) -> bool:
        return await asyncio.to_thread(self.restore_sync, digest)

    def read_sync(self) -> DesiredState:
        return self._parse(self._read_bytes(self.path), self.path)

    def update_sync(self, change: Callable[[DesiredState], DesiredState]) -> Written:
        with self._locked():
            before = self.read_sync()
            after = change(before)
            data = after.render()
            problems = check(json.loads(data))
            if problems:
                raise DesiredStateError(f"not written: {problems[0]}")
            if after == before:
                return Written(before, after, digest_of(before.render()))
            current = self._read_bytes(self.path)
            if current is not None:
                self._write_atomic(self.previous_path, current, hook=False)
            self._write_atomic(self.path, data, hook=True)
            return Written(before, after, digest_of(data))

    def create_sync(self, state: DesiredState) -> bool:
        """Write ``state`` when there is no file yet (the bot's first start); False, touching
        nothing, when there is one."""
        with self._locked():
            if self._read_bytes(self.path) is not None:
                return False
            data = state.render()
            if problems := validate(json.loads(data)):
                raise DesiredStateError(f"not written: {problems[0]}")
            self._write_atomic(self.path, data, hook=True)
            return True

    def restore_sync(self, digest: str) -> bool:
        with self._locked():
            current = self._read_bytes(self.path)
            if current is None or digest_of(current) != digest:
                return False
            previous = self._read_bytes(self.previous_path)
            if previous is None:
                # There was no file before the change: the empty state is what it was.
                previous = DesiredState().render()
            self._parse(previous, self.previous_path)
            self._write_atomic(self.previous_path, current, hook=False)
            self._write_atomic(self.path, previous, hook=True)
            return True

    # -- plumbing --

    def _read_bytes(self, path: Path) -> bytes | None:
        try:
            return path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise DesiredStateError(f"cannot read {path}: {exc.strerror}") from None

    @staticmethod
    def _parse(data: bytes | None, path: Path) -> DesiredState:
        if data is None:
            return DesiredState()
        try:
            loaded = json.loads(data)
        except ValueError as exc:
            raise DesiredStateError(
                f"{path} is not valid JSON ({exc}). Fix or remove it; Steward will not "
                "overwrite it."
            ) from None
        try:
            return DesiredState.from_json(loaded)
        except DesiredStateError as exc:
            raise DesiredStateError(
                f"{path} does not fit the schema ({exc}). Fix or remove it; Steward will not "
                "overwrite it."
            ) from None

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            self._remove_leftovers()
            yield
        finally:
            os.close(fd)

    def _remove_leftovers(self) -> None:
        """Temporary files of a writer that died before its rename: never the real file."""
        for stale in self.path.parent.glob(f".{self.path.name}.*.tmp"):
            with contextlib.suppress(OSError):
                stale.unlink()

    def _write_atomic(self, path: Path, data: bytes, *, hook: bool) -> None:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{self.path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.chmod(tmp, self._mode)
            if hook and self._before_rename is not None:
                self._before_rename()
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        fsync_dir(path.parent)
