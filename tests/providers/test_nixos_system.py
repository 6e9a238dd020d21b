"""Generations and reboot-needed, against the fake nixos-rebuild and a fake /run tree."""

from __future__ import annotations

from pathlib import Path

import pytest

from providers.host.base import UnitError
from providers.nixos.system import NixosRebuildSystem, parse_generations
from tests.support.fake_system import FakeSystem


@pytest.fixture
def system(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeSystem:
    fake = FakeSystem(tmp_path)
    fake.install(monkeypatch)
    return fake


async def test_generations_are_listed_newest_first_with_the_current_one_marked(
    system: FakeSystem,
) -> None:
    newest = system.add_generation(nixos_version="25.11.1", kernel="6.12.60")
    found = await NixosRebuildSystem(system.root).generations()

    assert [g.number for g in found] == sorted((g.number for g in found), reverse=True)
    assert found[0].number == newest
    assert found[0].current
    assert found[0].kernel == "6.12.60"
    assert found[0].nixos_version == "25.11.1"
    assert sum(g.current for g in found) == 1
    assert system.calls("nixos-rebuild") == [["nixos-rebuild", "list-generations", "--json"]]


async def test_a_new_kernel_not_yet_booted_means_a_reboot_is_needed(system: FakeSystem) -> None:
    nixos = NixosRebuildSystem(system.root)
    assert await nixos.reboot_needed() is False
    system.add_generation(kernel="6.12.99")  # switched to, not booted
    assert system.reboot_needed()
    assert await nixos.reboot_needed() is True


async def test_without_the_run_links_it_cannot_tell(tmp_path: Path) -> None:
    assert await NixosRebuildSystem(tmp_path / "nowhere").reboot_needed() is None


async def test_garbage_from_nixos_rebuild_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tool = tmp_path / "nixos-rebuild"
    tool.write_text("#!/bin/sh\necho 'not json'\n", encoding="utf-8")
    tool.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(UnitError, match="unexpected output"):
        await NixosRebuildSystem(tmp_path).generations()


def test_parse_generations_sorts_and_fills_in() -> None:
    text = '[{"generation": 3, "current": false}, {"generation": 7, "current": true}]'
    found = parse_generations(text)
    assert [g.number for g in found] == [7, 3]
    assert found[0].current
    assert found[1].kernel == ""


async def test_the_upgrade_preview_builds_and_lists_the_closure_diff(system: FakeSystem) -> None:
    generations = len(system.generations())
    inputs = system.state()["flake_inputs"]
    system.stage_next(packages={"nginx": ["1.27.3", 1_700_000], "openssh": ["10.0p1", 3_145_728]})

    lines = await NixosRebuildSystem(system.root).preview_upgrade("/etc/nixos")

    assert "nginx: 1.26.2 → 1.27.3, +112.2 KiB" in lines  # (1_700_000 - 1_585_152) bytes
    assert "openssh: 9.9p1 → 10.0p1" in lines
    assert all("\x1b" not in line for line in lines)  # nix's colours are gone
    # It built and compared; it did not switch, add a generation or write the lock file.
    assert len(system.generations()) == generations
    assert system.state()["flake_inputs"] == inputs
    (build,) = system.calls("nixos-rebuild")
    assert build[1:] == ["build", "--flake", "/etc/nixos", "--recreate-lock-file",
                         "--no-write-lock-file"]  # fmt: skip


async def test_a_failing_preview_build_says_why(system: FakeSystem) -> None:
    system.fail_rebuild("error: hash mismatch in fixed-output derivation")
    with pytest.raises(UnitError, match="error"):
        await NixosRebuildSystem(system.root).preview_upgrade("/etc/nixos")
