"""systemd: parsing `systemctl show`, service health, and the adapter against a fake systemctl."""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

import pytest

from providers.host.base import Health, UnitError, UnitStatus, missing, worst
from providers.host.systemd import SHOW_PROPERTIES, SystemctlServiceManager, parse_show

# What `systemctl show --property=Id,LoadState,ActiveState,SubState,StateChangeTimestamp,
# MemoryCurrent -- ...` prints: properties in systemd's own order (not the asked one), a blank
# line between units, "[not set]" or 2^64-1 where there is no memory accounting.
SHOW_OUTPUT = """\
Id=nginx.service
LoadState=loaded
ActiveState=active
SubState=running
StateChangeTimestamp=Sat 2026-11-28 14:03:11 UTC
MemoryCurrent=18874368

MemoryCurrent=[not set]
Id=redis-nextcloud.service
LoadState=loaded
ActiveState=failed
SubState=failed
StateChangeTimestamp=Fri 2026-11-27 23:59:59 UTC

Id=phpfpm-nextcloud.service
LoadState=loaded
ActiveState=activating
SubState=start
StateChangeTimestamp=Sat 2026-11-28 14:05:00 UTC
MemoryCurrent=18446744073709551615

Id=nosuch.service
LoadState=not-found
ActiveState=inactive
SubState=dead
StateChangeTimestamp=
MemoryCurrent=[not set]
"""


def _status(active: str, load: str = "loaded", sub: str = "running") -> UnitStatus:
    return UnitStatus("x.service", load, active, sub)


# -- parse_show -------------------------------------------------------------------------------


def test_parse_show_reads_every_block_in_order() -> None:
    statuses = parse_show(SHOW_OUTPUT)
    assert [s.name for s in statuses] == [
        "nginx.service",
        "redis-nextcloud.service",
        "phpfpm-nextcloud.service",
        "nosuch.service",
    ]


def test_parse_show_reads_states_times_and_memory() -> None:
    nginx = parse_show(SHOW_OUTPUT)[0]
    assert nginx == UnitStatus(
        name="nginx.service",
        load_state="loaded",
        active_state="active",
        sub_state="running",
        since=datetime(2026, 11, 28, 14, 3, 11, tzinfo=UTC),
        memory_bytes=18874368,
    )


def test_memory_not_set_and_the_unset_sentinel_become_none() -> None:
    statuses = {s.name: s for s in parse_show(SHOW_OUTPUT)}
    assert statuses["redis-nextcloud.service"].memory_bytes is None
    assert statuses["phpfpm-nextcloud.service"].memory_bytes is None


def test_a_unit_systemd_does_not_know_is_parsed_as_not_found_and_off() -> None:
    nosuch = parse_show(SHOW_OUTPUT)[-1]
    assert (nosuch.load_state, nosuch.active_state, nosuch.sub_state) == (
        "not-found",
        "inactive",
        "dead",
    )
    assert nosuch.since is None
    assert nosuch.health is Health.OFF


def test_parse_show_skips_blocks_without_an_id_and_tolerates_extra_blank_lines() -> None:
    text = "LoadState=loaded\n\n\n\nId=a.service\nActiveState=active\nLoadState=loaded\n\n"
    statuses = parse_show(text)
    assert [s.name for s in statuses] == ["a.service"]
    assert statuses[0].health is Health.ACTIVE


def test_parse_show_keeps_equals_signs_inside_values() -> None:
    status = parse_show("Id=a=b.service\nActiveState=active\n")[0]
    assert status.name == "a=b.service"


def test_parse_show_of_nothing_is_empty() -> None:
    assert parse_show("") == []


def test_a_timestamp_in_another_zone_is_still_timezone_aware() -> None:
    status = parse_show("Id=a.service\nStateChangeTimestamp=Sat 2026-11-28 15:03:11 CET\n")[0]
    assert status.since is not None
    assert status.since.tzinfo is not None


def test_a_garbled_timestamp_is_none() -> None:
    status = parse_show("Id=a.service\nStateChangeTimestamp=Sat 2026-13-45 99:00:00 UTC\n")[0]
    assert status.since is None


# -- health -----------------------------------------------------------------------------------


def test_health_is_ordered_failed_over_off_over_changing_over_active() -> None:
    assert Health.FAILED > Health.OFF > Health.CHANGING > Health.ACTIVE
    assert [h.label for h in sorted(Health)] == ["active", "changing", "off", "failed"]


@pytest.mark.parametrize(
    ("status", "health"),
    [
        (_status("active"), Health.ACTIVE),
        (_status("reloading"), Health.CHANGING),
        (_status("activating", sub="start"), Health.CHANGING),
        (_status("deactivating", sub="stop"), Health.CHANGING),
        (_status("inactive", sub="dead"), Health.OFF),
        (_status("inactive", load="masked", sub="dead"), Health.OFF),
        (_status("failed", sub="failed"), Health.FAILED),
        (missing("gone.service"), Health.OFF),
    ],
)
def test_each_unit_state_has_its_health(status: UnitStatus, health: Health) -> None:
    assert status.health is health


def test_the_worst_unit_decides_the_health_of_a_service() -> None:
    active, changing = _status("active"), _status("activating")
    off, failed = _status("inactive"), _status("failed")
    assert worst([active, active]) is Health.ACTIVE
    assert worst([active, changing]) is Health.CHANGING
    assert worst([changing, off, active]) is Health.OFF
    assert worst([off, failed, changing, active]) is Health.FAILED


def test_a_missing_unit_makes_an_otherwise_active_service_off() -> None:
    assert worst([_status("active"), missing("redis-nextcloud.service")]) is Health.OFF


def test_a_service_without_units_is_off() -> None:
    assert worst([]) is Health.OFF


# -- the real adapter against a fake systemctl on PATH ----------------------------------------

FAKE = """\
#!{python}
import json, os, sys, time
with open({log!r}, "a", encoding="utf-8") as log:
    log.write(json.dumps({{"argv": sys.argv[1:], "lc_all": os.environ.get("LC_ALL")}}) + "\\n")
time.sleep({sleep!r})
sys.stdout.write({stdout!r})
sys.stderr.write({stderr!r})
sys.exit({code!r})
"""


@dataclass
class FakeSystemctl:
    log: Path

    def calls(self) -> list[list[str]]:
        if not self.log.exists():
            return []
        lines = self.log.read_text(encoding="utf-8").splitlines()
        return [json.loads(line)["argv"] for line in lines]

    def environments(self) -> list[str | None]:
        lines = self.log.read_text(encoding="utf-8").splitlines()
        return [json.loads(line)["lc_all"] for line in lines]


class Install(Protocol):
    def __call__(
        self, stdout: str = "", stderr: str = "", code: int = 0, sleep: float = 0.0
    ) -> FakeSystemctl: ...


@pytest.fixture
def fake_systemctl(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Install:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")

    def install(
        stdout: str = "", stderr: str = "", code: int = 0, sleep: float = 0.0
    ) -> FakeSystemctl:
        log = tmp_path / "systemctl-calls.jsonl"
        script = bin_dir / "systemctl"
        script.write_text(
            FAKE.format(
                python=sys.executable,
                log=str(log),
                sleep=sleep,
                stdout=stdout,
                stderr=stderr,
                code=code,
            ),
            encoding="utf-8",
        )
        script.chmod(0o755)
        return FakeSystemctl(log)

    return install


UNITS = ["nginx.service", "redis-nextcloud.service", "phpfpm-nextcloud.service", "nosuch.service"]


async def test_status_of_all_units_is_one_systemctl_show_call(
    fake_systemctl: Install,
) -> None:
    fake = fake_systemctl(stdout=SHOW_OUTPUT)
    statuses = await SystemctlServiceManager().status(UNITS)
    assert fake.calls() == [["show", f"--property={','.join(SHOW_PROPERTIES)}", "--", *UNITS]]
    assert fake.environments() == ["C"]
    assert list(statuses) == UNITS
    assert statuses["nginx.service"].health is Health.ACTIVE
    assert statuses["redis-nextcloud.service"].health is Health.FAILED
    assert statuses["phpfpm-nextcloud.service"].health is Health.CHANGING
    assert statuses["nosuch.service"].health is Health.OFF


async def test_a_unit_missing_from_the_answer_is_reported_as_missing(
    fake_systemctl: Install,
) -> None:
    fake_systemctl(stdout="Id=nginx.service\nLoadState=loaded\nActiveState=active\n")
    statuses = await SystemctlServiceManager().status(["nginx.service", "gone.service"])
    assert statuses["gone.service"] == missing("gone.service")
    assert statuses["nginx.service"].health is Health.ACTIVE


async def test_status_of_no_units_does_not_call_systemctl(
    fake_systemctl: Install,
) -> None:
    fake = fake_systemctl(stdout=SHOW_OUTPUT)
    assert await SystemctlServiceManager().status([]) == {}
    assert fake.calls() == []


async def test_a_failing_systemctl_becomes_a_unit_error_with_its_last_stderr_line(
    fake_systemctl: Install,
) -> None:
    fake = fake_systemctl(
        stderr="Warning: something odd.\nFailed to restart nosuch.service: Unit not found.\n",
        code=5,
    )
    with pytest.raises(UnitError) as caught:
        await SystemctlServiceManager().restart("nosuch.service")
    assert str(caught.value) == "Failed to restart nosuch.service: Unit not found."
    assert fake.calls() == [["restart", "--", "nosuch.service"]]


async def test_a_failing_systemctl_without_stderr_names_its_exit_status(
    fake_systemctl: Install,
) -> None:
    fake_systemctl(code=3)
    with pytest.raises(UnitError, match=r"^systemctl exited 3$"):
        await SystemctlServiceManager().status(["nginx.service"])


async def test_a_hanging_systemctl_times_out_as_a_unit_error(
    fake_systemctl: Install,
) -> None:
    fake = fake_systemctl(stdout=SHOW_OUTPUT, sleep=30)
    started = time.monotonic()
    with pytest.raises(UnitError, match=r"^systemctl show timed out after "):
        await SystemctlServiceManager(timeout=0.5).status(UNITS)
    assert time.monotonic() - started < 10
    assert len(fake.calls()) == 1


async def test_restart_has_its_own_timeout(
    fake_systemctl: Install,
) -> None:
    fake_systemctl(sleep=30)
    with pytest.raises(UnitError, match=r"^systemctl restart timed out"):
        await SystemctlServiceManager(timeout=60, restart_timeout=0.5).restart("nginx.service")


async def test_a_successful_restart_passes_the_unit_after_a_double_dash(
    fake_systemctl: Install,
) -> None:
    fake = fake_systemctl()
    await SystemctlServiceManager().restart("-evil.service")
    assert fake.calls() == [["restart", "--", "-evil.service"]]


async def test_failed_units_are_the_first_column_of_list_units(
    fake_systemctl: Install,
) -> None:
    fake = fake_systemctl(
        stdout=(
            "jicofo.service          loaded failed failed Jitsi Conference Focus\n"
            "restic-backups-b2.service loaded failed failed restic backup b2\n"
        )
    )
    assert await SystemctlServiceManager().failed_units() == [
        "jicofo.service",
        "restic-backups-b2.service",
    ]
    assert fake.calls() == [
        ["list-units", "--state=failed", "--plain", "--no-legend", "--no-pager"]
    ]


async def test_no_failed_units_is_an_empty_list(
    fake_systemctl: Install,
) -> None:
    fake_systemctl(stdout="")
    assert await SystemctlServiceManager().failed_units() == []


async def test_without_systemctl_on_path_the_error_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    with pytest.raises(UnitError, match=r"^cannot run systemctl: "):
        await SystemctlServiceManager().status(["nginx.service"])
