"""Root's record of the snapshots its own backup units took, so that a restore puts back only
what this server wrote.

The bot holds the repository's password and may write to it; so may anyone who took that
password from it. A snapshot in the repository therefore proves nothing about who made it,
and its tags and paths are whatever its maker wrote. Each snapshot a root worker takes (a
backup, or the safety snapshot before a restore) is recorded here with its id and the hash of
its tree, in ``<worker dir>/snapshots/<service>.json``, a folder only root writes. The restore
worker refuses a snapshot that is not recorded with the same tree, unless an admin passes
``--foreign`` from a root shell.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path

from providers.host.base import fsync_dir

_ID = re.compile(r"[0-9a-f]{64}")


class SnapshotLedger:
    def __init__(self, folder: Path) -> None:
        self._folder = folder

    def record(self, service_id: str, snapshot_id: str, tree: str) -> None:
        if not (_ID.fullmatch(snapshot_id) and _ID.fullmatch(tree)):
            raise ValueError("a snapshot is recorded by its full id and tree hash")
        with self._locked(service_id):
            known = self._read(service_id)
            known[snapshot_id] = tree
            self._write(service_id, known)

    def knows(self, service_id: str, snapshot_id: str, tree: str | None) -> bool:
        return tree is not None and self._read(service_id).get(snapshot_id) == tree

    def _path(self, service_id: str) -> Path:
        return self._folder / f"{service_id}.json"

    def _read(self, service_id: str) -> dict[str, str]:
        try:
            data = json.loads(self._path(service_id).read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        if not isinstance(data, dict):
            return {}
        return {str(key): str(value) for key, value in data.items()}

    def _write(self, service_id: str, known: dict[str, str]) -> None:
        fd, temp = tempfile.mkstemp(dir=self._folder, prefix=f".{service_id}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                json.dump(known, handle, sort_keys=True)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temp, self._path(service_id))
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temp)
            raise
        fsync_dir(self._folder)

    @contextlib.contextmanager
    def _locked(self, service_id: str) -> Iterator[None]:
        self._folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(self._folder / f".{service_id}.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)
