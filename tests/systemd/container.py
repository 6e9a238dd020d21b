"""A Debian bookworm root (tests/systemd/build-root.sh) booted with ``systemd-nspawn -b``:
systemd 252 as PID 1, dbus, polkitd and logind, on this machine, in about half a second.

The flags are the ones that work here (FIELD-NOTES, "A real systemd here"): ``--keep-unit``
because the host has no system bus, no ``-U``, and a cgroup of our own, since nspawn puts
``payload/`` and ``supervisor/`` next to itself. ``--volatile=overlay`` keeps every write in a
tmpfs, so each boot starts from the clean root and the cached root is never changed. Files go
in through ``/proc/<pid>/root`` and commands through ``nsenter``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path

CGROUP_HIERARCHIES = (Path("/sys/fs/cgroup/systemd"), Path("/sys/fs/cgroup/unified"))
SRC = "/opt/steward/src"  # the checkout, bound read-only; the root's venv has it on its path
PYTHON = "/opt/steward/venv/bin/python"
INSIDE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


class BootError(RuntimeError):
    pass


def _cgroups(name: str) -> list[Path]:
    # Hybrid hosts have both hierarchies, pure cgroup v2 hosts mount the unified one at the top.
    found = [h / name for h in CGROUP_HIERARCHIES if (h / "cgroup.procs").exists()]
    return found or [Path("/sys/fs/cgroup") / name]


class Container:
    def __init__(self, root: Path, checkout: Path, log: Path) -> None:
        self.root = root
        self.checkout = checkout
        self.log = log
        self.name = f"steward-systemd-test-{os.getpid()}"
        self._nspawn: subprocess.Popen[bytes] | None = None
        self.pid = 0
        self.boot_seconds = 0.0

    def boot(self, timeout: float = 60.0) -> None:
        cgroups = _cgroups(self.name)

        def own_cgroup() -> None:
            # Runs in the child before exec: "0" moves the writing process itself.
            for cgroup in cgroups:
                cgroup.mkdir(exist_ok=True)
                (cgroup / "cgroup.procs").write_text("0")

        argv = [
            "systemd-nspawn", "-b", "-D", str(self.root), "--register=no", "--keep-unit",
            "--console=read-only", "--volatile=overlay", "--private-network",
            f"--bind-ro={self.checkout}:{SRC}", f"--machine={self.name}",
        ]  # fmt: skip
        if self.root.resolve().is_relative_to(self.checkout.resolve()):
            # The root lies in the checkout: hide it, or the container sees its own mounts.
            inner = self.root.resolve().relative_to(self.checkout.resolve()).parts[0]
            argv.append(f"--tmpfs={SRC}/{inner}:mode=0755")
        began = time.monotonic()
        with self.log.open("wb") as out:
            # preexec_fn: the cgroup move must happen between fork and exec (no threads here).
            self._nspawn = subprocess.Popen(
                argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                preexec_fn=own_cgroup,  # noqa: PLW1509
            )  # fmt: skip
        deadline = began + timeout
        state = ""
        while time.monotonic() < deadline:
            if self._nspawn.poll() is not None:
                raise BootError(f"systemd-nspawn exited {self._nspawn.returncode}: {self.tail()}")
            self.pid = self.pid or self._init_pid()
            if self.pid:
                state = self.run(["systemctl", "is-system-running"], check=False).stdout.strip()
                if state in {"running", "degraded"}:
                    self.boot_seconds = time.monotonic() - began
                    return
            time.sleep(0.1)
        raise BootError(f"not booted after {timeout} s (state {state!r}): {self.tail()}")

    def _init_pid(self) -> int:
        assert self._nspawn is not None
        children = Path(f"/proc/{self._nspawn.pid}/task/{self._nspawn.pid}/children")
        with contextlib.suppress(OSError):
            for pid in children.read_text().split():
                if Path(f"/proc/{pid}/comm").read_text().strip() == "systemd":
                    return int(pid)
        return 0

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:]

    def run(
        self,
        argv: list[str],
        *,
        user: str | None = None,
        env: dict[str, str] | None = None,
        timeout: float = 60.0,
        check: bool = True,
    ) -> subprocess.CompletedProcess[str]:
        """``argv`` inside the container, as root or as ``user`` (runuser: its groups too)."""
        inner = ["env", "-i", f"PATH={INSIDE_PATH}", "LANG=C.UTF-8",
                 *(f"{k}={v}" for k, v in (env or {}).items()), *argv]  # fmt: skip
        if user is not None:
            inner = ["runuser", "-u", user, "--", *inner]
        done = subprocess.run(
            ["nsenter", "-t", str(self.pid), "-a", "--", *inner],
            capture_output=True, text=True, timeout=timeout, check=False,
        )  # fmt: skip
        if check and done.returncode != 0:
            raise AssertionError(f"{argv} exited {done.returncode}:\n{done.stdout}\n{done.stderr}")
        return done

    def path(self, inside: str) -> Path:
        """A path in the container's file system (its overlay), as seen from the host."""
        return Path(f"/proc/{self.pid}/root") / inside.lstrip("/")

    def write(self, inside: str, text: str, mode: int = 0o644) -> None:
        target = self.path(inside)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
        target.chmod(mode)

    def stop(self, timeout: float = 30.0) -> None:
        if self._nspawn is not None and self._nspawn.poll() is None:
            self._nspawn.send_signal(signal.SIGTERM)  # nspawn shuts the container down cleanly
            try:
                self._nspawn.wait(timeout)
            except subprocess.TimeoutExpired:
                self._nspawn.kill()
                self._nspawn.wait(10)
        # nspawn leaves its cgroups behind (and the container's own inside payload/); they are
        # empty once it is gone, and removed deepest first.
        for cgroup in _cgroups(self.name):
            remove_cgroup(cgroup)


def remove_cgroup(cgroup: Path) -> None:
    if not cgroup.is_dir():
        return
    for child in sorted(cgroup.rglob("*"), key=lambda p: len(p.parts), reverse=True):
        if child.is_dir():
            with contextlib.suppress(OSError):
                child.rmdir()
    with contextlib.suppress(OSError):
        cgroup.rmdir()
