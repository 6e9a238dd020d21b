"""A real OpenSSH server on loopback for the sftp: repository tests (Debian's
``openssh-server``; ``make tools`` installs it).

It runs as root (the suite runs as root here) with a config, host key and authorized_keys of
its own in a temporary folder, in the foreground (``-D -e``), and serves ``internal-sftp``. The
client gets a key of its own and a known-hosts file that names the server's key.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.support.ports import free_port, wait_until_listening

SSHD = "/usr/sbin/sshd"
HINT = "sshd is missing: apt-get install openssh-server (make tools)"


@dataclass(frozen=True)
class Sshd:
    port: int
    user: str
    known_hosts: Path  # names this server's key
    stranger_known_hosts: Path  # names another key only
    client_key: Path

    def repository(self, path: Path) -> str:
        return f"sftp://{self.user}@127.0.0.1:{self.port}/{path}"


def _keygen(path: Path) -> str:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)],
                   check=True, capture_output=True, timeout=30)  # fmt: skip
    return Path(f"{path}.pub").read_text().strip()


@contextlib.contextmanager
def sshd_server(root: Path) -> Iterator[Sshd]:
    if not os.access(SSHD, os.X_OK):
        raise RuntimeError(HINT)
    root.mkdir(mode=0o700, parents=True, exist_ok=True)
    host_key, client_key, other_key = root / "host.key", root / "client.key", root / "other.key"
    host_pub = _keygen(host_key)
    (root / "authorized_keys").write_text(_keygen(client_key) + "\n")
    other_pub = _keygen(other_key)
    port = free_port()
    (root / "sshd_config").write_text(
        f"ListenAddress 127.0.0.1\nHostKey {host_key}\nAuthorizedKeysFile {root}/authorized_keys\n"
        "PidFile none\nStrictModes no\nUsePAM no\nPasswordAuthentication no\n"
        "KbdInteractiveAuthentication no\nPermitRootLogin prohibit-password\n"
        "Subsystem sftp internal-sftp\n"
    )
    known, stranger = root / "known_hosts", root / "stranger_known_hosts"
    known.write_text(f"[127.0.0.1]:{port} {host_pub}\n")
    stranger.write_text(f"[127.0.0.1]:{port} {other_pub}\n")
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # privilege separation needs it
    with open(root / "sshd.log", "wb") as log:
        proc = subprocess.Popen(
            [SSHD, "-D", "-e", "-f", str(root / "sshd_config"), "-p", str(port)],
            stdout=subprocess.DEVNULL, stderr=log,
        )  # fmt: skip
        try:
            wait_until_listening(port, "sshd", proc)
            yield Sshd(port, "root", known, stranger, client_key)
        finally:
            proc.terminate()
            proc.wait(timeout=10)
