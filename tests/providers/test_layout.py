"""providers/ is one package per domain: a new provider has exactly one place to go, and the
import-linter contract that keeps domains apart knows every domain."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PROVIDERS = ROOT / "providers"
# Not a domain: it composes the domains' fakes into the demo server.
COMPOSITION = {"demo"}
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
    with_protocols = {p.parent.name for p in PROVIDERS.glob("*/base.py")}
    assert {"backup", "server", "storage", "dns", "host"} <= with_protocols
