"""The benchmarks' own virtual environments, each holding what its users install.

- Steward: this checkout's dependencies with only the extras its configuration needs
  (pyproject.toml), as the NixOS module builds it. Steward's own code runs from the checkout
  (PYTHONPATH), compiled to bytecode first, as an installed package has it.
- The design's floor: python-telegram-bot, SQLAlchemy and APScheduler, nothing else.
- The baselines: python-telegram-bot alone, and matrix-nio alone, at the versions Steward's
  venv resolved. Not the developer venv: there PTB finds APScheduler and builds a JobQueue, and
  finds cryptography and loads it, which a plain PTB user's bot does not carry.

Each venv is made once and kept under .bench/ with a stamp of what it was made from.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Resolved: a venv writes its own path into its scripts' first line, so one made through a
# symlink (a git worktree sharing this .bench) would break when the worktree goes.
BENCH = (ROOT / ".bench").resolve()
PIP_TIMEOUT = 900


def _python(venv: Path) -> Path:
    return venv / "bin" / "python"


def _ensure(name: str, requirements: list[str], key: str) -> Path:
    """A venv holding ``requirements``, remade when ``key``, the interpreter or the venv's path
    changes (the benchmarks may be run with another Python: each venv is made with the one
    running them; and its scripts name the path it was made at)."""
    venv = BENCH / name
    stamp = venv / ".stamp"
    key = f"{sys.version} {venv} {key}"
    if stamp.is_file() and stamp.read_text() == key:
        return _python(venv)
    print(f"(making the {name} venv: {' '.join(requirements)})", file=sys.stderr)
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True, timeout=120)
    subprocess.run(
        [str(_python(venv)), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
         *requirements],
        check=True, timeout=PIP_TIMEOUT, stdout=subprocess.DEVNULL,
    )  # fmt: skip
    stamp.write_text(key)
    return _python(venv)


def steward(extras: str = "") -> Path:
    """The interpreter of a venv with Steward's dependencies (and ``extras``, comma-separated)."""
    pyproject = (ROOT / "pyproject.toml").read_bytes()
    key = hashlib.sha256(pyproject + extras.encode()).hexdigest()
    name = "steward" + (f"-{extras.replace(',', '-')}" if extras else "")
    spec = f"{ROOT}[{extras}]" if extras else str(ROOT)
    return _ensure(name, [spec], key)


def version_in(python: Path, module: str) -> str:
    done = subprocess.run(
        [str(python), "-c", f"import importlib.metadata as m; print(m.version({module!r}))"],
        capture_output=True, text=True, check=True, timeout=60,
    )  # fmt: skip
    return done.stdout.strip()


def ptb(like: Path) -> Path:
    """python-telegram-bot alone, at the version ``like`` (Steward's venv) has."""
    version = version_in(like, "python-telegram-bot")
    return _ensure("ptb", [f"python-telegram-bot=={version}"], version)


def floor(like: Path) -> Path:
    """python-telegram-bot, SQLAlchemy and APScheduler alone, at the versions ``like`` has: the
    parts the design names for chat, state and schedules, without Steward (floor_bot.py)."""
    pins = [
        f"{name}=={version_in(like, name)}"
        for name in ("python-telegram-bot", "SQLAlchemy", "APScheduler")
    ]
    return _ensure("floor", pins, " ".join(pins))


def nio(like: Path) -> Path:
    """matrix-nio alone (no E2EE extra), at the version ``like`` has."""
    version = version_in(like, "matrix-nio")
    return _ensure("nio", [f"matrix-nio=={version}"], version)


def compile_steward(python: Path) -> None:
    """Bytecode for Steward, as an installed package has it (Nix compiles it at build time) and
    as the baselines' libraries have it: with PYTHONDONTWRITEBYTECODE set, as on this machine,
    each start would otherwise compile Steward's changed modules from source."""
    subprocess.run(
        [str(python), "-m", "compileall", "-q", "bot", "handlers", "providers", "values"],
        cwd=ROOT, check=True, stdout=subprocess.DEVNULL, timeout=300,
    )  # fmt: skip
