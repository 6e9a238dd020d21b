"""restic's rest-server on loopback for the rest: repository tests: Debian trixie's
``restic-rest-server`` binary, which ``make rest-server`` (.ci/rest-server.sh) unpacks into
``.tools/`` (Debian 12 does not package it), or one found on PATH.

It runs with an htpasswd file of its own, so a repository URL carries a user and password,
which is what must never reach argv, a log or the Nix store.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import secrets
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from tests.support.ports import free_port, wait_until_listening

ROOT = Path(__file__).resolve().parents[2]
HINT = "rest-server is missing: `make rest-server` unpacks Debian trixie's into .tools/"


def rest_server_binary() -> str | None:
    local = ROOT / ".tools" / "rest-server"
    if local.is_file():
        return str(local)
    return shutil.which("rest-server") or shutil.which("restic-rest-server")


@dataclass(frozen=True)
class RestServer:
    port: int
    user: str
    password: str
    data: Path  # where the repositories are on disk

    def repository(self, name: str, password: str | None = None) -> str:
        secret = quote(self.password if password is None else password, safe="")
        return f"rest:http://{self.user}:{secret}@127.0.0.1:{self.port}/{name}/"


@contextlib.contextmanager
def rest_server(root: Path, user: str = "steward") -> Iterator[RestServer]:
    password = f"p@ss word/{secrets.token_hex(4)}"  # one a URL must quote
    binary = rest_server_binary()
    if binary is None:
        raise RuntimeError(HINT)
    data = root / "data"
    data.mkdir(parents=True)
    digest = base64.b64encode(hashlib.sha1(password.encode()).digest()).decode()  # noqa: S324 - htpasswd's {SHA}
    (root / "htpasswd").write_text(f"{user}:{{SHA}}{digest}\n")
    port = free_port()
    argv = [binary, "--listen", f"127.0.0.1:{port}", "--path", str(data),
            "--htpasswd-file", str(root / "htpasswd")]  # fmt: skip
    with open(root / "rest-server.log", "wb") as log:
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
        try:
            wait_until_listening(port, "rest-server", proc)
            yield RestServer(port, user, password, data)
        finally:
            proc.terminate()
            proc.wait(timeout=10)
