"""nixos/module.nix evaluated with Debian's nix-instantiate through tests/nixos/eval.nix (the
stub lib): shared by tests/nixos, which checks the result, and tests/systemd, which installs
what it renders into a real systemd."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
EVAL_NIX = ROOT / "tests" / "nixos" / "eval.nix"
# Evaluate without a Nix daemon or a writable store: a dummy store that holds nothing.
NIX_FLAGS = ["--store", "dummy://", "--readonly-mode"]


class NixMissingError(RuntimeError):
    pass


def nix_env(home: Path) -> dict[str, str]:
    found = shutil.which("nix-instantiate")
    if found is None:
        raise NixMissingError("nix-instantiate is missing: `make tools` installs Debian's nix-bin")
    return {
        "PATH": f"{Path(found).parent}:/usr/bin:/bin",
        "HOME": str(home),
        "NIX_STATE_DIR": str(home / "state"),
        "NIX_CONF_DIR": str(home / "conf"),
        "XDG_CACHE_HOME": str(home / "cache"),
        "NIX_PATH": "",
    }


def nix(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["nix-instantiate", *NIX_FLAGS, *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def evaluate(env: dict[str, str], steward: str) -> dict[str, Any]:
    """The module's resolved config for ``services.steward = <steward>`` (a Nix expression)."""
    done = nix(env, "--eval", "--strict", "--json", str(EVAL_NIX), "--arg", "steward", steward)
    if done.returncode != 0:
        raise AssertionError(done.stderr)
    result: dict[str, Any] = json.loads(done.stdout)
    return result
