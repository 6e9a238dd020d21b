"""What the transport benchmarks share before they time Steward."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def compile_steward() -> None:
    """Bytecode for Steward, as an installed package has it (Nix compiles it at build time) and
    as the baseline's libraries have it: with PYTHONDONTWRITEBYTECODE set, as on this machine,
    each start would otherwise compile Steward's changed modules from source."""
    subprocess.run(
        [sys.executable, "-m", "compileall", "-q", "bot", "handlers", "providers"],
        cwd=ROOT, check=True, stdout=subprocess.DEVNULL, timeout=300,
    )  # fmt: skip
