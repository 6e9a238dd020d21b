"""An S3 server on loopback for the restic tests: moto's ``moto_server``.

moto lives in its own venv (``make moto`` installs it into ``.moto/venv``), so its many
dependencies never mix with ours. It keeps objects in memory; restic's ``init`` creates the
bucket. When moto is not installed the fixture raises, so the S3 tests fail (never skip).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.ports import free_port

REPO = Path(__file__).resolve().parents[2]
INSTALL_HINT = "run `make moto` (it installs moto[server] into .moto/venv, about 60 s)"
START_TIMEOUT = 30.0


class MotoMissingError(RuntimeError):
    """moto is not installed: the S3 tests must fail, not skip."""


@dataclass(frozen=True)
class MotoS3:
    endpoint: str
    # moto accepts any keys; these only have to reach restic the way real ones would.
    access_key_id: str = "steward-test-key"
    secret_access_key: str = "steward-test-secret-3f9a"
    region: str = "us-east-1"

    def new_repository(self) -> str:
        """A restic repository URL in a bucket no other test uses."""
        return f"s3:{self.endpoint}/steward-{secrets.token_hex(6)}"


def moto_binary() -> Path:
    """``$STEWARD_MOTO_SERVER`` or ``.moto/venv/bin/moto_server``."""
    configured = os.environ.get("STEWARD_MOTO_SERVER")
    binary = Path(configured) if configured else REPO / ".moto" / "venv" / "bin" / "moto_server"
    if not binary.exists():
        raise MotoMissingError(f"moto_server is missing at {binary}: {INSTALL_HINT}")
    return binary


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as response:  # noqa: S310 (loopback)
            return int(response.status) == 200
    except (urllib.error.URLError, OSError):
        return False


@contextlib.contextmanager
def moto_server() -> Iterator[MotoS3]:
    binary = moto_binary()
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in {"VIRTUAL_ENV", "PYTHONPATH"}}
    with tempfile.TemporaryFile() as output:
        process = subprocess.Popen(
            [str(binary), "-H", "127.0.0.1", "-p", str(port)],
            stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT, env=env,
        )  # fmt: skip
        try:
            endpoint = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + START_TIMEOUT
            while not _answers(endpoint + "/"):
                if process.poll() is not None or time.monotonic() > deadline:
                    output.seek(0)
                    tail = output.read()[-2000:].decode(errors="replace")
                    raise RuntimeError(f"moto_server did not start on port {port}:\n{tail}")
                time.sleep(0.1)
            yield MotoS3(endpoint)
        finally:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)


@pytest.fixture(scope="session")
def moto_s3() -> Iterator[MotoS3]:
    """A running S3 server on 127.0.0.1 for the whole session."""
    with moto_server() as server:
        yield server
