"""Root's side of the desired state: what the rebuild units run before anything is evaluated.

The bot writes ``desired-state.json`` in its own state folder, so anything running as the
``steward`` user can write it. Root therefore checks it again, with the bot's own rules
(:func:`providers.nixos.desired.check`: the schema, key blobs, the zone database, the
catalogue's ids), and writes what passed into the configuration, root-owned
(``/etc/nixos/steward/desired-state.json`` by default). ``desired-state.nix`` reads that copy,
purely, never the bot's file: what was checked is what is applied, a file the bot changes
between the check and the evaluation changes nothing, and a plain ``nixos-rebuild switch``
applies what root last admitted. The folder it goes into must be writable by root alone, or
the bot could swap the copy after the check; it is refused otherwise. In a git flake the copy
is added with ``--intent-to-add`` (content unstaged), or the flake would not see it.

Root ssh keys need more than a valid line. With ``allowRootKeysFromChat`` off (the default)
a file that names any is refused. With it on, a key root has not applied before must carry a
TOTP code (``ssh.rootKeyCodes``) that matches a secret only the rebuild units can read, the
unit's own credential. Each code is good once, and a few wrong ones lock this path until an
admin clears the ledger from a root shell.
"""

from __future__ import annotations

import contextlib
import hmac
import json
import os
import stat
import subprocess
import tempfile
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pyotp

from providers.nixos.base import DesiredState, DesiredStateError
from providers.nixos.sshkeys import fingerprint
from providers.nixos.validation import check
from values import value

APPLIED = "desired-state.json"
LEDGER = "root-key-codes.json"
STEP = 30
CODE_MAX_AGE = 20 * 60  # a rebuild may wait for the one before it
MAX_FAILURES = 5
FAILURE_WINDOW = 24 * 3600
SOURCE_LIMIT = 1 << 20


class RefusedError(DesiredStateError):
    """The file is not applied; the message is the journal line the bot shows."""


@value
class Admitted:
    state: DesiredState
    approved: tuple[str, ...]  # fingerprints of root keys a code let in on this run


@dataclass
class _Ledger:
    last_step: int = 0
    failures: list[float] = field(default_factory=list)


@value
class Admission:
    state_dir: Path  # root's own folder: the ledger of codes
    services: Collection[str]
    totp_secret: str | None  # None: root keys from chat are off
    clock: Callable[[], float] = time.time
    # The admitted copy, which the configuration reads (desiredStateDir); by default in
    # state_dir, for a configuration that reads it from there.
    admitted: Path | None = None

    @property
    def target(self) -> Path:
        return self.admitted if self.admitted is not None else self.state_dir / APPLIED

    def admit(self, source: Path) -> Admitted:
        data = read_source(source)
        problems = check(data, self.services)
        if problems:
            raise RefusedError(problems[0])
        state = DesiredState.from_json(data)
        root_only(self.target.parent)
        keys, approved = self._root_keys(state)
        applied = replace(state, system=replace(state.system, root_keys=keys, root_key_codes=()))
        write_atomic(self.target, applied.render(), folder_mode=0o755)
        return Admitted(applied, approved)

    def _root_keys(self, state: DesiredState) -> tuple[tuple[str, ...], tuple[str, ...]]:
        keys = state.system.root_keys
        if keys and self.totp_secret is None:
            raise RefusedError(
                "system.ssh.rootKeys: root keys from chat are off "
                "(services.steward.allowRootKeysFromChat); remove them with /sshkey remove"
            )
        before = {fingerprint(key) for key in self._applied().system.root_keys}
        new = [fingerprint(key) for key in keys if fingerprint(key) not in before]
        if not new:
            return keys, ()
        codes = {print_: (code, at) for print_, code, at in state.system.root_key_codes}
        ledger = self._ledger()
        try:
            for print_ in new:
                self._prove(print_, codes.get(print_), ledger)
        finally:
            write_atomic(self.state_dir / LEDGER, json.dumps(ledger.__dict__).encode())
        return keys, tuple(new)

    def _prove(self, print_: str, proof: tuple[str, int] | None, ledger: _Ledger) -> None:
        now = self.clock()
        ledger.failures = [t for t in ledger.failures if now - t < FAILURE_WINDOW]
        if len(ledger.failures) >= MAX_FAILURES:
            raise RefusedError(
                f"root key {print_}: {MAX_FAILURES} wrong codes within a day; root keys from "
                f"chat are locked until root removes {self.state_dir / LEDGER}"
            )
        if proof is None:
            raise RefusedError(f"root key {print_} carries no TOTP code")
        code, at = proof
        if not -STEP <= now - at <= CODE_MAX_AGE:
            raise RefusedError(f"root key {print_}: its code was given too long ago; add it again")
        step = _matching_step(str(self.totp_secret), code, at)
        if step is None:
            ledger.failures.append(now)
            raise RefusedError(f"root key {print_}: wrong TOTP code")
        if step <= ledger.last_step:
            raise RefusedError(f"root key {print_}: that code was used before")
        ledger.last_step = step

    def _applied(self) -> DesiredState:
        path = self.target
        try:
            return DesiredState.from_json(json.loads(path.read_bytes()))
        except FileNotFoundError:
            return DesiredState()
        except (ValueError, DesiredStateError):
            return DesiredState()  # root's own copy, unreadable: every key proves itself again

    def _ledger(self) -> _Ledger:
        try:
            raw: Any = json.loads((self.state_dir / LEDGER).read_bytes())
            return _Ledger(int(raw["last_step"]), [float(t) for t in raw["failures"]])
        except FileNotFoundError:
            return _Ledger()
        except (ValueError, KeyError, TypeError):
            # Damaged: refuse codes until root looks, rather than forget which were used.
            return _Ledger(2**62, [])


def _matching_step(secret: str, code: str, at: int) -> int | None:
    totp = pyotp.TOTP(secret)
    for step in (at // STEP, at // STEP - 1, at // STEP + 1):
        if hmac.compare_digest(totp.at(step * STEP), code):
            return step
    return None


def read_source(path: Path) -> object:
    """The bot's file, read once: a regular file with one link, never through a symlink (it
    could point root at a file the journal would then quote). Missing is the empty state."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        return DesiredState().to_json()
    except OSError as exc:
        raise RefusedError(f"{path} cannot be opened ({exc.strerror}); is it a link?") from None
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(handle.fileno())
        if not stat.S_ISREG(info.st_mode) or info.st_nlink != 1:
            raise RefusedError(f"{path} is not a plain file with a single link")
        if info.st_size > SOURCE_LIMIT:
            raise RefusedError(f"{path} is larger than {SOURCE_LIMIT} bytes")
        data = handle.read(SOURCE_LIMIT + 1)
    try:
        return json.loads(data)
    except ValueError as exc:
        raise RefusedError(f"{path} is not valid JSON ({exc})") from None


def root_only(folder: Path) -> None:
    """Refuse a folder for the admitted copy that anyone but this user (root) could change:
    a writable folder, or a writable parent that could swap it, would let the bot replace the
    copy between the check and the evaluation. It is made (0755) when missing."""
    folder.mkdir(mode=0o755, parents=True, exist_ok=True)
    real = folder.resolve()  # a link is fine if where it leads is root's
    for path in (real, real.parent):
        info = os.stat(path)
        if not stat.S_ISDIR(info.st_mode):
            raise RefusedError(f"{path} is not a folder; fix it as root")
        if info.st_uid not in {0, os.geteuid()} or info.st_mode & 0o022:
            raise RefusedError(
                f"{path} may be written by others than root (owner {info.st_uid}, mode "
                f"{stat.S_IMODE(info.st_mode):o}): chown root and chmod go-w it"
            )


def track_in_git(flake: Path, path: Path) -> bool:
    """``git add --intent-to-add`` the admitted copy in a git flake, which sees only the
    files git knows; the content stays unstaged. False when the flake is not a git work tree.
    Run every time: for a file git knows already it changes nothing."""
    if not (flake / ".git").exists():
        return False
    if not path.is_relative_to(flake):
        raise RefusedError(f"{path} is not in the flake {flake}, which could not see it")
    relative = path.relative_to(flake)
    done = subprocess.run(
        ["git", "-C", str(flake), "add", "--intent-to-add", "--", str(relative)],  # noqa: S607
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if done.returncode != 0:
        # Untracked, a pure evaluation would not see the file and would apply the first-start
        # state instead: stop here rather than switch to that.
        why = (done.stderr.strip().splitlines() or ["no message"])[-1]
        raise RefusedError(f"git add --intent-to-add {relative} in {flake} failed: {why}")
    return True


def write_atomic(path: Path, data: bytes, *, folder_mode: int = 0o700) -> None:
    path.parent.mkdir(mode=folder_mode, parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temp, 0o644)  # the applied state and used steps; no secret in either
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise
