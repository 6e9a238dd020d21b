"""Loopback ports for the real servers the suite starts (PostgreSQL, Synapse, sshd, …)."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import time


def free_port() -> int:
    """A port nothing listens on now; the server that takes it is started right after."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until_listening(
    port: int, name: str, proc: subprocess.Popen[bytes] | None = None, timeout: float = 15.0
) -> None:
    """Return once ``port`` accepts a connection; fail at once if ``proc`` has exited."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{name} exited with {proc.returncode}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
            return
        time.sleep(0.05)
    raise RuntimeError(f"{name} did not listen on port {port}")
