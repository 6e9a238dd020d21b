"""The flake at the repository root: its lock pins nixpkgs, and `nix flake show` lists every
output offline when nixpkgs is replaced by tests/nixos/stub-nixpkgs (Debian's Nix 2.8; the
real nixpkgs cannot be fetched here). The store is a temporary one, not the machine's."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

from tests.support import nixos_eval

ROOT = Path(__file__).resolve().parents[2]


def test_the_lock_pins_nixpkgs_to_a_commit_and_its_hash() -> None:
    lock = json.loads((ROOT / "flake.lock").read_text(encoding="utf-8"))
    assert lock["version"] == 7
    locked = lock["nodes"]["nixpkgs"]["locked"]
    assert re.fullmatch(r"[0-9a-f]{40}", locked["rev"])
    assert locked["narHash"].startswith("sha256-")
    assert lock["nodes"]["nixpkgs"]["original"]["ref"] == "nixos-25.05"


def test_nix_flake_show_lists_the_modules_packages_and_checks(tmp_path: Path) -> None:
    env = nixos_eval.nix_env(tmp_path)
    done = subprocess.run(
        ["nix", "--extra-experimental-features", "nix-command flakes", "--store",
         str(tmp_path / "store"), "flake", "show", "--json", "--override-input", "nixpkgs",
         f"path:{ROOT / 'tests' / 'nixos' / 'stub-nixpkgs'}", f"git+file://{ROOT}"],
        env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    shown = json.loads(done.stdout)
    assert set(shown["nixosModules"]) == {"default", "steward"}
    for system in ("x86_64-linux", "aarch64-linux"):
        assert shown["packages"][system]["default"]["name"] == "steward-0.1.0"
        assert set(shown["checks"][system]) == {"package", "vm"}
