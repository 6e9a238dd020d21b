"""The hardware adapters against recorded output: smartctl documents served by a fake
``smartctl`` on PATH (exit status bits as smartctl sets them), recorded /proc/mdstat texts,
fake ``zpool``, ``btrfs`` and ``upsc``, and a loopback server for the public address."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest

from providers.hardware.arrays import HostArrays, parse_mdstat
from providers.hardware.base import BIT_DISK_FAILING
from providers.hardware.disks import SmartctlDisks
from providers.hardware.ups import NutUps
from providers.host.public_ip import HttpPublicAddress
from tests.support import mdstat
from tests.support.home_fakes import AddressServer, HomeFakes


async def test_smartctl_scans_then_reads_each_disk_with_an_argument_list(home: HomeFakes) -> None:
    home.disks(sda="sata-healthy", sdb="sata-pending", nvme0="nvme-healthy")

    sda, sdb, nvme = await SmartctlDisks().disks()

    assert (sda.device, sda.model, sda.passed, sda.temperature) == (
        "/dev/sda", "WDC WD40EFRX-68N32N0", True, 34)  # fmt: skip
    assert (sda.reallocated, sda.pending, sda.uncorrectable, sda.failing) == (0, 0, 0, False)
    assert (sdb.pending, sdb.uncorrectable, sdb.failing) == (8, 8, False)
    assert (nvme.protocol, nvme.percentage_used, nvme.critical_warning, nvme.temperature) == (
        "NVMe", 3, 0, 41)  # fmt: skip
    calls = home.calls("smartctl")
    assert calls[0] == ["--json", "--scan"]
    assert ["--json", "-a", "-n", "standby", "-d", "nvme", "/dev/nvme0"] in calls


async def test_failing_disks_are_failing_by_status_bits_and_by_content(home: HomeFakes) -> None:
    home.disks(sdb="sata-failing", nvme0="nvme-failing")

    sata, nvme = await SmartctlDisks().disks()

    assert sata.failing
    assert sata.passed is False
    assert sata.exit_status & BIT_DISK_FAILING
    assert (sata.reallocated, sata.pending) == (2712, 48)
    assert nvme.failing
    assert nvme.critical_warning == 5
    assert nvme.percentage_used == 97


async def test_a_sleeping_disk_is_not_woken_and_a_missing_one_says_why(home: HomeFakes) -> None:
    home.disks(sdc="sata-standby", sdd="sata-healthy")
    (home.data / "smartctl" / "sdd.json").unlink()

    asleep, missing = await SmartctlDisks().disks()

    assert asleep.asleep
    assert not asleep.problem
    assert not asleep.failing
    assert "Unable to detect device type" in missing.problem


async def test_without_smartctl_the_probe_raises_oserror(
    home: HomeFakes, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", home.without("smartctl"))
    with pytest.raises(OSError, match="smartctl"):
        await SmartctlDisks().disks()


async def test_recorded_documents_read_the_same_and_say_when_they_are_stale(
    home: HomeFakes, tmp_path: Path
) -> None:
    home.disks(sda="sata-healthy", nvme0="nvme-failing")
    recorded = tmp_path / "steward-health"
    shutil.copytree(home.data / "smartctl", recorded)

    fresh = await SmartctlDisks(recorded=recorded).disks()
    old = time.time() - 5 * 3600
    os.utime(recorded / "scan.json", (old, old))
    stale = await SmartctlDisks(recorded=recorded).disks()

    assert [d.failing for d in fresh] == [False, True]
    assert fresh[0].stale_seconds is None
    assert all(d.stale_seconds and d.stale_seconds > 4 * 3600 for d in stale)
    assert home.calls("smartctl") == []  # the bot itself never ran smartctl


def test_mdstat_names_degraded_rebuilding_resyncing_and_inactive_arrays() -> None:
    md0, md1 = parse_mdstat(mdstat.DEGRADED_RECOVERING)
    (degraded,) = parse_mdstat(mdstat.DEGRADED)
    healthy = parse_mdstat(mdstat.HEALTHY)
    (inactive,) = parse_mdstat(mdstat.INACTIVE)

    assert (md0.state, md0.detail) == ("rebuilding", "raid1 [U_], recovery 8.5%, ~101 min left")
    assert (md1.state, md1.detail) == ("ok", "raid1 [UU], resync 27.5%, ~30 min left")
    assert (degraded.name, degraded.state, degraded.detail) == ("md0", "degraded", "raid1 [U_]")
    assert [(a.name, a.state, a.detail) for a in healthy] == [
        ("md0", "ok", "raid1 [UU]"), ("md2", "ok", "raid5 [UUU]")]  # fmt: skip
    assert (inactive.name, inactive.state) == ("md127", "failed")


async def test_zpool_and_btrfs_are_asked_only_where_present(
    home: HomeFakes, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    md = tmp_path / "mdstat"
    md.write_text(mdstat.HEALTHY)
    mounts = tmp_path / "mounts"
    mounts.write_text("/dev/sda1 / btrfs rw,relatime 0 0\n/dev/sda1 /home btrfs rw 0 0\n")
    home.zpool(mdstat.ZPOOL_DEGRADED)
    home.btrfs("/", mdstat.BTRFS_ERRORS)

    found, answered = await HostArrays(md, mounts).arrays()
    monkeypatch.setenv("PATH", home.without("zpool"))
    _, without_zfs = await HostArrays(md, mounts).arrays()

    by_name = {a.name: a for a in found}
    assert answered == {"mdadm", "zfs", "btrfs"}
    assert without_zfs == {"mdadm", "btrfs"}
    assert by_name["tank"].state == "degraded"
    assert "scrub repaired" in by_name["tank"].detail
    assert by_name["/"].state == "degraded"
    assert by_name["/"].detail == "device errors: /dev/sdb1 read_io 3, /dev/sdb1 write_io 12"
    assert ["device", "stats", "--", "/"] in home.calls("btrfs")  # one call per filesystem
    assert len(home.calls("btrfs")) == 2  # two runs, each once: /home is the same filesystem


async def test_a_missing_mdstat_means_no_md_driver_not_an_error(tmp_path: Path) -> None:
    found, answered = await HostArrays(tmp_path / "none", tmp_path / "none").arrays()
    assert found == []
    assert "mdadm" not in answered


async def test_upsc_reads_status_charge_and_runtime(home: HomeFakes) -> None:
    home.ups("ups", "battery.charge: 64\nbattery.runtime: 1260\nups.status: OB DISCHRG LB\n")

    status = await NutUps("ups").status()

    assert status.on_battery
    assert status.low_battery
    assert status.runtime_minutes == 21
    assert status.charge == 64
    home.ups("ups", None)
    with pytest.raises(OSError, match="Driver not connected"):
        await NutUps("ups").status()


async def test_the_public_address_comes_from_the_url_and_garbage_is_refused(
    address_server: AddressServer,
) -> None:
    probe = HttpPublicAddress(address_server.url, timeout=5)
    address_server.answer = "2001:db8:0:0::7\n"
    assert await probe.address() == "2001:db8::7"
    address_server.answer = "<html>captive portal</html>"
    with pytest.raises(OSError, match="not an IP address"):
        await probe.address()
    address_server.status = 503
    with pytest.raises(OSError, match="did not answer"):
        await probe.address()
    with pytest.raises(ValueError, match="http"):
        HttpPublicAddress("file:///etc/passwd")
