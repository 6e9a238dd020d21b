"""Pytest plugin for the backup tests: restic settings for a local and an S3 (moto)
repository, a small source tree, a recorder that wraps a program on PATH, and a real stale
lock.

Test modules load it with ``pytest_plugins``; the moto server is shared by the session.
They also import its helpers, so it is imported before pytest could rewrite its asserts
(it has none): PYTEST_DONT_REWRITE.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest

from providers.backup.restic import ResticBackupEngine, ResticSettings
from tests.support.moto import MotoS3, moto_s3

__all__ = [
    "CallRecorder",
    "empty_repo",
    "held_lock",
    "moto_s3",
    "password_file",
    "record_calls",
    "restic_local",
    "restic_s3",
    "source_tree",
    "tree_digests",
]

RESTIC_HINT = "restic is missing: apt-get install restic (Debian 12 has 0.14)"


def restic_binary() -> str:
    found = shutil.which("restic")
    if found is None:
        raise RuntimeError(RESTIC_HINT)
    return found


@pytest.fixture
def password_file(tmp_path: Path) -> Path:
    path = tmp_path / "restic-password"
    path.write_text(f"pw-{secrets.token_hex(12)}\n")
    path.chmod(0o600)
    return path


def local_settings(root: Path, password: Path, **overrides: Any) -> ResticSettings:
    restic_binary()
    values: dict[str, Any] = {
        "repository": str(root / "repo"),
        "password_file": password,
        "cache_dir": root / "cache",
        "progress_interval": 0.0,
        "timeout": 60.0,
        "long_timeout": 60.0,
    }
    return ResticSettings(**{**values, **overrides})


def copy_of(settings: ResticSettings, root: Path) -> ResticSettings:
    """The same local repository (same key) in another folder, with its own cache."""
    shutil.copytree(settings.repository, root / "repo")
    return replace(settings, repository=str(root / "repo"), cache_dir=root / "cache")


@pytest.fixture(scope="session")
def empty_repo(tmp_path_factory: pytest.TempPathFactory) -> ResticSettings:
    """An initialised, empty local repository made once; tests use copies of it. restic
    tunes its key derivation to take about half a second when a repository is made, so a
    new repository costs seconds, a copy milliseconds."""
    root = tmp_path_factory.mktemp("restic-template")
    password = root / "password"
    password.write_text("a password nobody types\n")
    password.chmod(0o600)
    settings = local_settings(root, password)
    asyncio.run(ResticBackupEngine(settings).init())
    return settings


def s3_settings(moto: MotoS3, root: Path, password: Path, **overrides: Any) -> ResticSettings:
    values: dict[str, Any] = {
        "repository": moto.new_repository(),
        "aws_access_key_id": moto.access_key_id,
        "aws_secret_access_key": moto.secret_access_key,
        "aws_default_region": moto.region,
    }
    return local_settings(root, password, **{**values, **overrides})


@pytest.fixture
def restic_local(tmp_path: Path, password_file: Path) -> ResticSettings:
    return local_settings(tmp_path, password_file)


@pytest.fixture
def restic_s3(moto_s3: MotoS3, tmp_path: Path, password_file: Path) -> ResticSettings:
    return s3_settings(moto_s3, tmp_path, password_file)


def make_source_tree(root: Path) -> Path:
    """A service's data folder: binary and text files, a subfolder, an empty file, and names
    that glob patterns would misread."""
    source = root / "srv" / "app"
    (source / "db").mkdir(parents=True)
    (source / "uploads" / "2026").mkdir(parents=True)
    (source / "db" / "main.sqlite").write_bytes(os.urandom(300_000))
    (source / "config.json").write_text(json.dumps({"name": "app", "port": 8080}))
    (source / "empty").write_bytes(b"")
    for index in range(6):
        (source / "uploads" / "2026" / f"photo {index}.jpg").write_bytes(os.urandom(40_000))
    (source / "uploads" / "odd [1]*.txt").write_text("a name with glob characters\n")
    return source


@pytest.fixture
def source_tree(tmp_path: Path) -> Path:
    return make_source_tree(tmp_path)


def tree_digests(root: Path) -> dict[str, str]:
    """Relative path to sha256 for every file under ``root``."""
    return {
        str(path.relative_to(root)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


_WRAPPER = """#!{python}
import json, os, sys
record = {{"argv": sys.argv[1:], "env": dict(os.environ)}}
passfile = os.environ.get("PGPASSFILE")
if passfile and os.path.exists(passfile):
    with open(passfile) as handle:
        record["pgpass"] = handle.read()
with open({log!r}, "a") as log:
    log.write(json.dumps(record) + "\\n")
os.execv({real!r}, [{real!r}, *sys.argv[1:]])
"""


@dataclass
class CallRecorder:
    """Reads what the wrapper recorded: one entry per run of the wrapped program."""

    log: Path

    def calls(self) -> list[dict[str, Any]]:
        if not self.log.exists():
            return []
        return [json.loads(line) for line in self.log.read_text().splitlines()]

    def commands(self) -> list[str]:
        """The first non-option argument of each call: the restic command."""
        return [_command(call["argv"]) for call in self.calls()]


def _command(argv: list[str]) -> str:
    skip_next = False
    for arg in argv:
        if skip_next:
            skip_next = False
        elif arg in {"--password-file", "--cache-dir", "--repo", "-r"}:
            skip_next = True
        elif not arg.startswith("-"):
            return arg
    return ""


def record_calls(tool: str, folder: Path, monkeypatch: pytest.MonkeyPatch) -> CallRecorder:
    """Put a wrapper named ``tool`` first on PATH. It records its argv, its environment and
    the PGPASSFILE it was given, then execs the real program (same pid)."""
    real = shutil.which(tool)
    if real is None:
        raise RuntimeError(f"{tool} is not installed")
    bin_dir = folder / "recording-bin"
    bin_dir.mkdir(exist_ok=True)
    log = folder / f"{tool}-calls.jsonl"
    wrapper = bin_dir / tool
    wrapper.write_text(_WRAPPER.format(python=sys.executable, log=str(log), real=real))
    wrapper.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")
    return CallRecorder(log)


@dataclass
class HeldLock:
    process: subprocess.Popen[bytes]
    lock_file: Path

    def kill(self) -> None:
        """SIGKILL: restic gets no chance to remove its lock, which goes stale at once (its
        pid is dead on this host)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)
        if self.process.stdin is not None:
            self.process.stdin.close()


def _listing(folder: Path) -> set[Path]:
    return set(folder.iterdir()) if folder.exists() else set()


@pytest.fixture
def held_lock() -> Iterator[Any]:
    """``held_lock(settings)`` starts a real ``restic backup --stdin`` on a local repository
    and returns once its lock file exists. It never gets input, so it holds the lock until
    killed. Every process started here is killed at the end."""
    started: list[HeldLock] = []

    def hold(settings: ResticSettings) -> HeldLock:
        locks = Path(settings.repository) / "locks"
        before = _listing(locks)
        env = {"PATH": os.environ["PATH"], "RESTIC_REPOSITORY": settings.repository}
        process = subprocess.Popen(
            [restic_binary(), "--password-file", str(settings.password_file), "--no-cache",
             "backup", "--stdin", "--stdin-filename", "held"],
            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env,
        )  # fmt: skip
        held = HeldLock(process, locks)
        started.append(held)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            # The local backend writes "<id>-tmp-<n>" and renames it: wait for the real one.
            new = {p for p in _listing(locks) - before if "-tmp-" not in p.name}
            if new:
                held.lock_file = new.pop()
                return held
            time.sleep(0.05)
        raise RuntimeError("restic did not take a lock")

    yield hold
    for held in started:
        held.kill()
