"""Enrolment as an admin does it, on the server's shell, for the end-to-end abuse tests."""

from __future__ import annotations

import base64
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pyotp


def key_file(folder: Path) -> Path:
    path = folder / "totp.key"
    path.write_text(base64.b64encode(os.urandom(32)).decode() + "\n")
    path.chmod(0o600)
    return path


def steward_cli(env: dict[str, str], cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bot", *args], env=env, cwd=cwd, capture_output=True, text=True,
        timeout=60, check=False,
    )  # fmt: skip


def enroll(env: dict[str, str], cwd: Path, user: str) -> pyotp.TOTP:
    """``steward totp enroll USER``: the QR code and the otpauth URI, as an app scans them."""
    done = steward_cli(env, cwd, "totp", "enroll", user)
    assert done.returncode == 0, done.stderr
    assert "█" in done.stdout  # the QR code, drawn in the terminal
    found = re.search(r"^otpauth://\S+$", done.stdout, re.MULTILINE)
    assert found is not None, done.stdout
    uri = urlparse(found.group(0))
    assert parse_qs(uri.query)["issuer"] == ["Steward"]
    return pyotp.TOTP(parse_qs(uri.query)["secret"][0])


def wrong_code(totp: pyotp.TOTP) -> str:
    """A code that is none of the three a check accepts now."""
    now = time.time()
    window = {totp.at(now + 30 * offset) for offset in (-2, -1, 0, 1, 2)}
    return next(code for code in ("000000", "111111", "222222", "333333") if code not in window)
