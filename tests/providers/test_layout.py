"""providers/ is one package per domain: a new provider has exactly one place to go, and the
import-linter contract that keeps domains apart knows every domain."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PROVIDERS = ROOT / "providers"
# Not a domain: it composes the domains' fakes into the demo server.
COMPOSITION = {"demo"}
# Domains with no outside world to put behind a Protocol, so nothing to fake: charts only draws
# (a pure function of the readings, in a child process of our own).
PURE = {"charts"}
DOMAIN_CONTRACT = "Provider domains import each other's base, never their adapters"


def _contract_domains() -> set[str]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    contracts = config["tool"]["importlinter"]["contracts"]
    (contract,) = [c for c in contracts if c["name"] == DOMAIN_CONTRACT]
    return {module.removeprefix("providers.") for module in contract["modules"]}


def _packages() -> set[str]:
    return {p.name for p in PROVIDERS.iterdir() if p.is_dir() and p.name != "__pycache__"}


def test_no_module_sits_at_the_root_of_providers() -> None:
    loose = sorted(p.name for p in PROVIDERS.glob("*.py") if p.name != "__init__.py")
    assert loose == [], f"move these into a domain package under providers/: {loose}"


def test_every_package_under_providers_is_a_domain_the_contract_keeps_apart() -> None:
    assert _packages() - COMPOSITION == _contract_domains()


def test_every_folder_under_providers_is_a_package() -> None:
    folders = [p for p in PROVIDERS.rglob("*") if p.is_dir() and p.name != "__pycache__"]
    assert [str(p) for p in folders if not (p / "__init__.py").is_file()] == []


def test_fakes_are_named_memory_and_protocols_base() -> None:
    stray = [
        str(p.relative_to(ROOT))
        for p in PROVIDERS.rglob("*.py")
        if p.stem.endswith(("_memory", "_base")) or p.parent.name == "base"
    ]
    assert stray == []


def _shape(domain: str) -> list[str]:
    return [name for name in ("base.py", "memory.py") if (PROVIDERS / domain / name).is_file()]


def test_every_domain_has_the_same_shape_base_adapters_memory() -> None:
    """#18: a domain's protocols and shared types are in base.py, its fakes in memory.py."""
    domains = _packages() - COMPOSITION - PURE
    assert {d: _shape(d) for d in domains} == {d: ["base.py", "memory.py"] for d in domains}


def test_only_charts_is_pure_and_has_neither() -> None:
    """The one stated exception: a domain that gains base.py or memory.py leaves PURE."""
    assert {d: _shape(d) for d in PURE} == {"charts": []}


def test_fakes_live_in_memory_and_nowhere_else() -> None:
    """A fake (a class named Memory*) is defined in its domain's memory.py only."""
    stray = [
        f"{p.relative_to(ROOT)}: {line.split('(')[0].split(':')[0]}"
        for p in PROVIDERS.glob("*/*.py")
        if p.parent.name not in COMPOSITION and p.name != "memory.py"
        for line in p.read_text(encoding="utf-8").splitlines()
        if line.startswith("class Memory")
    ]
    assert stray == []


def test_protocols_live_in_base_and_nowhere_else() -> None:
    """A domain's protocols (what handlers and other domains may rely on) are in its base.py."""
    stray = [
        f"{p.relative_to(ROOT)}: {line.split('(')[0]}"
        for p in PROVIDERS.glob("*/*.py")
        if p.name != "base.py"
        for line in p.read_text(encoding="utf-8").splitlines()
        if line.startswith("class ") and line.rstrip().endswith("(Protocol):")
    ]
    assert stray == []
