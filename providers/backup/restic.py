"""Backups with the ``restic`` binary from PATH (tested with Debian's restic 0.14).

Secrets stay out of argv. The password is only ever given as ``--password-file``. The
repository URL (a ``rest:`` URL may hold credentials) and the S3 keys go through the child's
environment, which is built from the settings alone: nothing else of the bot's environment
(such as a stray ``RESTIC_PASSWORD``) reaches restic.

Retry policy: one only. When a command fails because the repository is locked, ``restic unlock``
runs once (it removes stale locks only: older than 30 minutes, or left by a dead process on this
host) and the command is retried once. A live lock then still fails, with a clear sentence.
Backend errors are retried by restic itself.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import random
import re
import shutil
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import field
from datetime import datetime
from pathlib import Path
from typing import Any

from providers.backup.base import (
    NO_REPOSITORY,
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
from values import value

logger = logging.getLogger(__name__)

Sink = Callable[[bytes], Awaitable[None]]

_SNAPSHOT_ID = re.compile(r"^(latest|[0-9a-f]{8,64})$")
_SUBSET = re.compile(r"^(\d{1,3}(\.\d+)?%|\d+/\d+)$")
_FRACTION = re.compile(r"(\.\d{6})\d+")
_URL_CREDENTIALS = re.compile(r"://[^/@\s]+@")
_SFTP_URL = re.compile(r"^sftp://(?:(?P<user>[^@/:]+)@)?(?P<host>[^/:@]+)(?::(?P<port>\d{1,5}))?/")
_SFTP_SHORT = re.compile(r"^sftp:(?:(?P<user>[^@/:]+)@)?(?P<host>[^/:@]+):")
_PLAIN_WORD = re.compile(r"^[A-Za-z0-9_./@:=%+,-]+$")
_LOCKED = ("repository is already locked", "unable to create lock")
MAX_DRILL_SAMPLE = 200
# Every restic process derives the key anew (scrypt, 32 MiB, tuned when the repository is made
# to take about half a second): a few at a time.
DRILL_PARALLEL = 3

# The first marker found wins: S3 "connection refused" also says "unable to open config file".
_EXPLANATIONS = (
    (
        ("Host key verification failed", "REMOTE HOST IDENTIFICATION HAS CHANGED"),
        "The sftp server's key is not in the known-hosts file, so nothing was sent to it.",
    ),
    (("Permission denied (publickey",), "The sftp server refused the ssh key."),
    # restic may end before ssh has said why (its stderr is then lost): say both reasons.
    (
        ("unable to start the sftp session",),
        "ssh could not open the sftp session: is the server's key in the known-hosts file, and "
        "may the ssh key log in?",
    ),
    (_LOCKED, "The backup repository is locked by another restic process."),
    (("wrong password or no key found",), "The backup repository password is wrong."),
    (("Resolving password failed", "password file"), "The backup password file cannot be read."),
    (
        ("connection refused", "no such host", "i/o timeout", "network is unreachable",
         "connection reset", "TLS handshake timeout", "dial tcp"),
        "The backup repository cannot be reached; is the network down?",
    ),
    (
        ("Access Denied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "403 Forbidden",
         "401 Unauthorized"),
        "The backup storage refused the access keys.",
    ),
    (
        ("Is there a repository at the following location?", "bucket does not exist",
         "unable to open config file", "repository does not exist"),
        NO_REPOSITORY,
    ),
    (("no matching ID found", "no snapshot found", "invalid id"), "No such snapshot."),
    (("no space left on device",), "The disk is full."),
    (
        ("ciphertext verification failed", "Pack ID does not match"),
        "Some data in the backup repository is damaged.",
    ),
)  # fmt: skip


@value
class ResticSettings:
    """From the configuration: STEWARD_RESTIC_REPOSITORY (a path, ``s3:``, ``sftp:`` or
    ``rest:`` URL), STEWARD_RESTIC_PASSWORD_FILE, and the usual AWS_* variables for S3."""

    repository: str = field(repr=False)  # a rest: URL may hold a password
    password_file: Path
    aws_access_key_id: str | None = None
    aws_secret_access_key: str | None = field(default=None, repr=False)
    aws_default_region: str | None = None
    cache_dir: Path | None = None
    # sftp: only. With a known-hosts file, ssh trusts no other key for the server.
    known_hosts_file: Path | None = None
    ssh_key_file: Path | None = None
    timeout: float = 300.0
    long_timeout: float = 6 * 3600.0
    progress_interval: float = 2.0
    binary: str = "restic"


@value
class _Outcome:
    returncode: int
    stdout: str
    stderr: str


def explain(stderr: str, command: str) -> str:
    """restic's error output as one short sentence that names no secret."""
    for markers, sentence in _EXPLANATIONS:
        if any(marker in stderr for marker in markers):
            return sentence
    return f"restic {command} failed."


def redacted(repository: str) -> str:
    """A repository URL without the user and password a ``rest:`` or ``sftp:`` URL may hold."""
    return _URL_CREDENTIALS.sub("://", repository)


def sftp_command(repository: str, known_hosts: Path | None, key_file: Path | None) -> list[str]:
    """The ssh command restic runs for an ``sftp:`` repository (restic 0.14 has no
    ``sftp.args``, only ``sftp.command``, which it splits on spaces as a shell would): the
    server's key must be in ``known_hosts`` and no other file; batch mode, so nothing waits for
    a password on a terminal nobody watches."""
    user, host, port = sftp_target(repository)
    command = ["ssh", "-o", "BatchMode=yes"]
    if known_hosts is not None:
        command += ["-o", f"UserKnownHostsFile={known_hosts}", "-o", "GlobalKnownHostsFile=none",
                    "-o", "StrictHostKeyChecking=yes"]  # fmt: skip
    if key_file is not None:
        command += ["-i", str(key_file), "-o", "IdentitiesOnly=yes"]
    if port is not None:
        command += ["-p", port]
    command += [f"{user}@{host}" if user else host, "-s", "sftp"]
    unsafe = [word for word in command if not _PLAIN_WORD.match(word)]
    if unsafe:
        raise BackupError("The sftp settings hold spaces or quotes, which restic cannot pass.")
    return command


def sftp_target(repository: str) -> tuple[str | None, str, str | None]:
    """(user, host, port) of ``sftp:user@host:/path`` or ``sftp://user@host:port//path``."""
    found = _SFTP_URL.match(repository) or _SFTP_SHORT.match(repository)
    if found is None or found.group("host").startswith("-"):
        raise BackupError("That is not an sftp: repository.")
    return found.group("user"), found.group("host"), found.groupdict().get("port")


def is_locked(stderr: str) -> bool:
    return any(marker in stderr for marker in _LOCKED)


class ResticBackupEngine:
    """The real adapter. ``drill_hook`` sees the drill's restore folder before it is compared
    (tests use it to spoil a restored file)."""

    def __init__(
        self,
        settings: ResticSettings,
        *,
        rng: random.Random | None = None,
        drill_hook: Callable[[Path], None] | None = None,
    ) -> None:
        self._settings = settings
        self._rng = rng or random.SystemRandom()
        self._drill_hook = drill_hook

    async def init(self) -> None:
        outcome = await self._exec(["init"], self._settings.timeout)
        if outcome.returncode == 0:
            return
        if "already exists" not in outcome.stderr and "already initialized" not in outcome.stderr:
            raise self._failure("init", outcome)
        await self._restic(["cat", "config"], self._settings.timeout)

    async def ready(self) -> bool:
        try:
            await self._restic(["cat", "config"], self._settings.timeout)
        except NoRepositoryError:
            return False
        return True

    def location(self) -> str:
        return redacted(self._settings.repository)

    def key_file(self) -> str | None:
        return str(self._settings.password_file)

    async def backup(
        self,
        service_id: str,
        paths: Sequence[Path],
        reason: BackupReason,
        on_progress: ProgressCallback | None = None,
    ) -> BackupResult:
        sources, missing = await asyncio.to_thread(_sources, paths)
        if not sources or missing:
            raise BackupError(f"Nothing to back up at {', '.join(missing) or 'no path'}.")
        tag_args = [arg for tag in tags_for(service_id, reason) for arg in ("--tag", tag)]
        reader = _BackupStream(on_progress, self._settings.progress_interval)
        await self._restic(
            ["backup", "--json", *tag_args, "--", *sources],
            self._settings.long_timeout,
            sink=_lines(reader.line),
            ok_codes=(0, 3),  # 3: the snapshot was made, but some files could not be read
        )
        return await reader.result()

    async def snapshots(self, service_id: str | None = None) -> list[Snapshot]:
        # Without a lock, the list can be read while a prune holds the exclusive one.
        args = ["snapshots", "--json", "--no-lock"]
        if service_id is not None:
            args += ["--tag", service_tag(service_id)]
        outcome = await self._restic(args, self._settings.timeout)
        found = [parse_snapshot(row) for row in json.loads(outcome.stdout or "[]") or []]
        return sorted(found, key=lambda snap: snap.time)

    async def restore(
        self,
        snapshot_id: str,
        target_dir: Path,
        include_paths: Sequence[str] = (),
        *,
        verify: bool = True,
    ) -> RestoreResult:
        snapshot_id = _checked_id(snapshot_id)
        args = ["restore", snapshot_id, "--target", str(target_dir)]
        args += [arg for path in include_paths for arg in ("--include", _pattern(path))]
        await self._restic([*args, *(["--verify"] if verify else [])], self._settings.long_timeout)
        files, size = await asyncio.to_thread(_tree_size, target_dir)
        if include_paths and files == 0:
            raise BackupError("The snapshot holds none of the asked paths.")
        return RestoreResult(snapshot_id, target_dir, files, size, verify)

    async def forget(self, snapshot_id: str) -> None:
        snapshot_id = _checked_id(snapshot_id)
        if snapshot_id == "latest":
            raise BackupError("Name the snapshot to forget by its id.")
        # No prune here: the space comes back at the next retention run, which prunes.
        outcome = await self._restic(["forget", snapshot_id], self._settings.timeout)
        if "Ignoring" in outcome.stderr or "no matching ID" in outcome.stderr:
            raise BackupError("No such snapshot.")

    async def apply_retention(self, policy: RetentionPolicy) -> RetentionResult:
        if policy.empty:
            raise BackupError("The retention policy keeps nothing; nothing was forgotten.")
        # Grouped by host and tags: one group per service, whatever its paths became.
        args = ["forget", "--json", "--prune", "--tag", f"reason:{BackupReason.SCHEDULED}"]
        args += ["--group-by", "host,tags", *_keep_args(policy)]
        outcome = await self._restic(args, self._settings.long_timeout)
        groups: list[dict[str, Any]] = next(
            (json.loads(line) for line in outcome.stdout.splitlines() if line.startswith("[")), []
        )
        kept = [snap["id"] for group in groups or [] for snap in group.get("keep") or []]
        removed = [snap["id"] for group in groups or [] for snap in group.get("remove") or []]
        return RetentionResult(tuple(kept), tuple(removed))

    async def check(self, read_data_subset: str = "5%") -> CheckResult:
        if not _SUBSET.match(read_data_subset):
            raise BackupError("The data subset to read must look like 5% or 1/10.")
        args = ["check", f"--read-data-subset={read_data_subset}"]
        outcome = await self._restic(args, self._settings.long_timeout, ok_codes=None)
        if outcome.returncode == 0:
            return CheckResult(True, read_data_subset)
        text = f"{outcome.stdout}\n{outcome.stderr}"
        if "repository contains errors" not in text:
            raise self._failure("check", outcome)
        # restic names each damaged pack or tree on stderr, then ends with the Fatal line.
        lines = [line.strip() for line in outcome.stderr.splitlines()]
        problems = [line for line in lines if line and not line.startswith("Fatal:")]
        return CheckResult(False, read_data_subset, tuple(problems[:10]))

    async def drill(
        self, sample_size: int, tmp_dir: Path, service_id: str | None = None
    ) -> DrillResult:
        """Restore a random sample of files of the newest snapshot, then compare each restored
        file's sha256 and size with the repository's copy read by ``restic dump`` (another
        code path than restore) and the size ``restic ls`` records."""
        started = time.monotonic()
        selector = (
            ["latest"] if service_id is None else ["latest", "--tag", service_tag(service_id)]
        )
        snapshot_id, sample = await self._sample_files(
            selector, min(max(sample_size, 1), MAX_DRILL_SAMPLE)
        )
        if snapshot_id is None:
            raise BackupError("There is no snapshot to test yet.")
        if not sample:
            return DrillResult(snapshot_id, 0, (), time.monotonic() - started)
        folder = Path(await asyncio.to_thread(tempfile.mkdtemp, prefix="drill-", dir=tmp_dir))
        try:
            await self._restore_sample(snapshot_id, folder, [path for path, _ in sample])
            if self._drill_hook is not None:
                self._drill_hook(folder)
            gate = asyncio.Semaphore(DRILL_PARALLEL)

            async def compare(path: str, size: int) -> bool:
                async with gate:
                    return await self._same(snapshot_id, path, size, folder / path.lstrip("/"))

            same = await asyncio.gather(*(compare(path, size) for path, size in sample))
            mismatches = [path for (path, _), ok in zip(sample, same, strict=True) if not ok]
        finally:
            await asyncio.to_thread(shutil.rmtree, folder, True)
        elapsed = time.monotonic() - started
        return DrillResult(snapshot_id, len(sample), tuple(mismatches), elapsed)

    async def stats(self) -> RepoStats:
        outcome = await self._restic(
            ["stats", "--json", "--mode", "raw-data"], self._settings.timeout
        )
        data = json.loads(outcome.stdout)
        return RepoStats(
            stored_bytes=int(data.get("total_size", 0)),
            snapshot_count=int(data.get("snapshots_count", 0)),
            blob_count=data.get("total_blob_count"),
        )

    async def _sample_files(
        self, selector: list[str], size: int
    ) -> tuple[str | None, list[tuple[str, int]]]:
        """The newest matching snapshot's id (``ls`` prints it first; None when nothing
        matches) and a reservoir sample of its files, so a huge snapshot is never held in
        memory."""
        sample: list[tuple[str, int]] = []
        snapshot_id: str | None = None
        seen = 0

        async def node(line: str) -> None:
            nonlocal seen, snapshot_id
            row = json.loads(line)
            if row.get("struct_type") == "snapshot":
                snapshot_id = str(row["id"])
            if row.get("struct_type") != "node" or row.get("type") != "file":
                return
            seen += 1
            slot = seen - 1 if seen <= size else self._rng.randrange(seen)
            if slot < size:
                entry = (str(row["path"]), int(row.get("size", 0)))
                sample[slot:slot + 1] = [entry]  # fmt: skip

        await self._restic(["ls", "--json", *selector], self._settings.timeout, sink=_lines(node))
        return snapshot_id, sample

    async def _restore_sample(self, snapshot_id: str, folder: Path, paths: list[str]) -> None:
        """A file that cannot be restored is a finding of the drill, not a failure of it."""
        args = ["restore", snapshot_id, "--target", str(folder)]
        args += [arg for path in paths for arg in ("--include", _pattern(path))]
        outcome = await self._restic(args, self._settings.long_timeout, ok_codes=None)
        if outcome.returncode != 0 and "ignoring error for" not in outcome.stderr:
            raise self._failure("restore", outcome)

    async def _same(self, snapshot_id: str, path: str, size: int, restored: Path) -> bool:
        digest = hashlib.sha256()
        fed = 0

        async def feed(chunk: bytes) -> None:
            nonlocal fed
            digest.update(chunk)
            fed += len(chunk)

        try:
            await self._restic(["dump", snapshot_id, path], self._settings.long_timeout, sink=feed)
        except BackupError:
            return False  # restic could not read its own copy: damaged data
        local = await asyncio.to_thread(_file_digest, restored)
        return fed == size and local == (size, digest.hexdigest())

    async def _restic(
        self,
        args: list[str],
        limit: float,
        *,
        sink: Sink | None = None,
        ok_codes: tuple[int, ...] | None = (0,),
    ) -> _Outcome:
        """Run a restic command; unlock stale locks and retry once. ``ok_codes=None`` hands
        every outcome back."""
        counted = _Counted(sink)
        outcome = await self._exec(args, limit, counted.sink)
        if outcome.returncode != 0 and is_locked(outcome.stderr) and not counted.seen:
            logger.warning("restic %s: repository locked; removing stale locks, retrying", args[0])
            await self._exec(["unlock"], self._settings.timeout)
            outcome = await self._exec(args, limit, counted.sink)
        if ok_codes is not None and outcome.returncode not in ok_codes:
            raise self._failure(args[0], outcome)
        return outcome

    async def _exec(self, args: list[str], limit: float, sink: Sink | None = None) -> _Outcome:
        """The one I/O seam: start restic, stream or collect stdout, enforce the time limit."""
        command = [*self._global_args(), *args]
        try:
            proc = await asyncio.create_subprocess_exec(
                self._settings.binary,
                *command,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env=self._env(),
            )
        except OSError as exc:
            raise BackupError(f"restic cannot be started: {exc.strerror}.") from None
        collected = bytearray()
        into: Sink = sink or _appender(collected)
        try:
            _, err, _ = await asyncio.wait_for(
                asyncio.gather(_pump(proc.stdout, into), _read(proc.stderr), proc.wait()), limit
            )
        except TimeoutError:
            raise BackupError(f"restic {args[0]} timed out after {limit:g} s.") from None
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        code = proc.returncode if proc.returncode is not None else -1
        return _Outcome(code, collected.decode(errors="replace"), err.decode(errors="replace"))

    def _global_args(self) -> list[str]:
        s = self._settings
        args = ["--password-file", str(s.password_file)]
        if s.cache_dir is not None:
            args += ["--cache-dir", str(s.cache_dir)]
        if s.repository.startswith("sftp:") and (s.known_hosts_file or s.ssh_key_file):
            command = sftp_command(s.repository, s.known_hosts_file, s.ssh_key_file)
            args += ["-o", f"sftp.command={' '.join(command)}"]
        return args

    def _env(self) -> dict[str, str]:
        s = self._settings
        env = {"LC_ALL": "C", "RESTIC_REPOSITORY": s.repository}
        env.update(
            {
                k: v
                for k, v in os.environ.items()
                if k in {"PATH", "HOME", "TMPDIR", "XDG_CACHE_HOME"}
            }
        )
        keys = {
            "AWS_ACCESS_KEY_ID": s.aws_access_key_id,
            "AWS_SECRET_ACCESS_KEY": s.aws_secret_access_key,
            "AWS_DEFAULT_REGION": s.aws_default_region,
        }
        env.update({k: v for k, v in keys.items() if v})
        return env

    def _failure(self, command: str, outcome: _Outcome) -> BackupError:
        tail = outcome.stderr.strip().replace(self._settings.repository, "<repository>")
        tail = _URL_CREDENTIALS.sub("://<credentials>@", tail)[-2000:]
        logger.warning("restic %s exited %s: %s", command, outcome.returncode, tail)
        sentence = explain(outcome.stderr, command)
        return NoRepositoryError(sentence) if sentence == NO_REPOSITORY else BackupError(sentence)


class _BackupStream:
    """Reads ``restic backup --json`` line by line: status messages become progress reports
    (at most one per ``interval`` seconds), the summary becomes the result."""

    def __init__(self, on_progress: ProgressCallback | None, interval: float) -> None:
        self._on_progress = on_progress
        self._interval = interval
        self._last_report: float | None = None
        self._summary: dict[str, Any] | None = None
        self._unreadable = 0

    async def line(self, text: str) -> None:
        try:
            message = json.loads(text)
        except ValueError:
            return
        kind = message.get("message_type")
        if kind == "status":
            await self._report(_progress(message), final=False)
        elif kind == "error":
            self._unreadable += 1
        elif kind == "summary":
            self._summary = message

    async def _report(self, progress: BackupProgress, *, final: bool) -> None:
        now = time.monotonic()
        if self._on_progress is None:
            return
        if final or self._last_report is None or now - self._last_report >= self._interval:
            self._last_report = now
            try:
                await self._on_progress(progress)
            except Exception:
                # A progress message that cannot be shown must not stop the backup.
                logger.exception("backup progress report failed")

    async def result(self) -> BackupResult:
        summary = self._summary
        if summary is None:
            raise BackupError("restic backup ended without a summary.")
        files = int(summary.get("total_files_processed", 0))
        size = int(summary.get("total_bytes_processed", 0))
        duration = float(summary.get("total_duration", 0.0))
        await self._report(
            BackupProgress(100.0, files, files, size, size, duration, 0.0), final=True
        )
        return BackupResult(
            snapshot_id=str(summary.get("snapshot_id", "")),
            files_new=int(summary.get("files_new", 0)),
            files_changed=int(summary.get("files_changed", 0)),
            files_unmodified=int(summary.get("files_unmodified", 0)),
            bytes_added=int(summary.get("data_added", 0)),
            bytes_processed=size,
            duration_seconds=duration,
            unreadable=self._unreadable,
        )


class _Counted:
    """Remembers whether a sink got any output: a command is retried only if it had none."""

    def __init__(self, sink: Sink | None) -> None:
        self.seen = False
        self.sink: Sink | None = None
        if sink is not None:
            inner = sink

            async def feed(chunk: bytes) -> None:
                self.seen = True
                await inner(chunk)

            self.sink = feed


def _lines(handle: Callable[[str], Awaitable[None]]) -> Sink:
    """A sink that hands on complete lines (restic ends every JSON message with a newline)."""
    pending = bytearray()

    async def feed(chunk: bytes) -> None:
        pending.extend(chunk)
        *complete, rest = pending.split(b"\n")
        pending[:] = rest
        for line in complete:
            if line.strip():
                await handle(line.decode(errors="replace"))

    return feed


def _appender(buffer: bytearray) -> Sink:
    async def append(chunk: bytes) -> None:
        buffer.extend(chunk)

    return append


async def _pump(stream: asyncio.StreamReader | None, sink: Sink) -> None:
    while stream is not None and (chunk := await stream.read(65536)):
        await sink(chunk)


async def _read(stream: asyncio.StreamReader | None) -> bytes:
    return await stream.read() if stream is not None else b""


def _progress(message: dict[str, Any]) -> BackupProgress:
    remaining = message.get("seconds_remaining")
    return BackupProgress(
        percent=round(float(message.get("percent_done", 0.0)) * 100, 2),
        files_done=int(message.get("files_done", 0)),
        files_total=int(message.get("total_files", 0)),
        bytes_done=int(message.get("bytes_done", 0)),
        bytes_total=int(message.get("total_bytes", 0)),
        seconds_elapsed=float(message.get("seconds_elapsed", 0)),
        seconds_remaining=float(remaining) if remaining is not None else None,
    )


def parse_snapshot(row: dict[str, Any]) -> Snapshot:
    summary = row.get("summary") or {}  # restic 0.17 and later add it; 0.14 does not
    size = summary.get("total_bytes_processed")
    return Snapshot(
        id=str(row["id"]),
        short_id=str(row.get("short_id") or row["id"][:8]),
        time=parse_time(str(row["time"])),
        tags=tuple(row.get("tags") or ()),
        paths=tuple(row.get("paths") or ()),
        hostname=str(row.get("hostname", "")),
        size_bytes=int(size) if size is not None else None,
        tree=str(row["tree"]) if row.get("tree") else None,
    )


def parse_time(text: str) -> datetime:
    """restic writes RFC 3339 with nanoseconds; Python reads at most microseconds."""
    return datetime.fromisoformat(_FRACTION.sub(r"\1", text.replace("Z", "+00:00")))


def _keep_args(policy: RetentionPolicy) -> list[str]:
    pairs = (
        ("--keep-last", policy.keep_last),
        ("--keep-daily", policy.keep_daily),
        ("--keep-weekly", policy.keep_weekly),
        ("--keep-monthly", policy.keep_monthly),
        ("--keep-yearly", policy.keep_yearly),
    )
    return [arg for flag, count in pairs if count > 0 for arg in (flag, str(count))]


def _checked_id(snapshot_id: str) -> str:
    if not _SNAPSHOT_ID.match(snapshot_id):
        raise BackupError("No such snapshot.")
    return snapshot_id


def _pattern(path: str) -> str:
    """restic's --include takes glob patterns: escape a literal path's special characters."""
    return re.sub(r"([*?\[\]\\])", r"\\\1", path)


def _sources(paths: Sequence[Path]) -> tuple[list[str], list[str]]:
    sources = [str(Path(path).absolute()) for path in paths]
    return sources, [path for path in sources if not os.path.lexists(path)]


def _tree_size(root: Path) -> tuple[int, int]:
    files = [Path(folder) / name for folder, _, names in os.walk(root) for name in names]
    return len(files), sum(path.lstat().st_size for path in files)


def _file_digest(path: Path) -> tuple[int, str] | None:
    digest = hashlib.sha256()
    size = 0
    try:
        with path.open("rb") as handle:
            while chunk := handle.read(1 << 20):
                digest.update(chunk)
                size += len(chunk)
    except OSError:
        return None
    return size, digest.hexdigest()
