"""Disks, arrays and the UPS in /status, /report and the alert check: the real adapters on the
fake smartctl, zpool and upsc (tests/support/homebin) and recorded /proc/mdstat texts."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from handlers.alerts import check_alerts
from providers.hardware.arrays import HostArrays
from providers.hardware.disks import SmartctlDisks
from providers.hardware.ups import NutUps
from tests.conftest import Harness
from tests.support import mdstat
from tests.support.home_fakes import HomeFakes


async def _own_hardware(harness: Harness, tmp_path: Path) -> Path:
    """The demo's own alerts (a failed unit, services never backed up) are announced first,
    so that each check after this one says only what the hardware changed."""
    await check_alerts(harness.engine.deps, harness.clock())
    md = tmp_path / "mdstat"
    md.write_text(mdstat.HEALTHY)
    arrays = HostArrays(md, tmp_path / "no-mounts")
    deps = harness.engine.deps
    harness.engine.deps = replace(deps, disks=SmartctlDisks(), arrays=arrays, ups=NutUps("ups"))
    return md


async def _alerts(harness: Harness) -> list[str]:
    return [reply.text for reply in await check_alerts(harness.engine.deps, harness.clock())]


async def test_a_disk_that_starts_failing_alerts_once_and_recovers_once(
    harness: Harness, home: HomeFakes, tmp_path: Path
) -> None:
    await _own_hardware(harness, tmp_path)
    home.ups("ups", "ups.status: OL\nbattery.charge: 100\n")
    home.disks(sda="sata-healthy", sdb="sata-healthy")
    assert await _alerts(harness) == []

    home.disks(sda="sata-healthy", sdb="sata-pending")
    harness.clock.advance(minutes=5)
    (pending,) = await _alerts(harness)
    home.disks(sda="sata-healthy", sdb="sata-failing")
    harness.clock.advance(minutes=5)
    (failing,) = await _alerts(harness)
    harness.clock.advance(minutes=5)
    assert await _alerts(harness) == []  # no transition, no message
    home.disks(sda="sata-healthy", sdb="sata-healthy")  # replaced
    harness.clock.advance(hours=2)
    (recovered,) = await _alerts(harness)

    assert pending.startswith("⚠️ <b>Warning</b>: disk /dev/sdb (ST4000VN008-2DR166) has 8 pending")
    assert failing.startswith("🚨 <b>Critical</b>: disk /dev/sdb")
    assert "SMART says it is failing" in failing
    assert recovered.startswith("✅ Recovered: disk /dev/sdb")
    assert "2 h" in recovered


async def test_an_nvme_critical_warning_is_critical(
    harness: Harness, home: HomeFakes, tmp_path: Path
) -> None:
    await _own_hardware(harness, tmp_path)
    home.disks(nvme0="nvme-failing")
    home.ups("ups", "ups.status: OL\n")
    (failing,) = await _alerts(harness)
    assert failing.startswith("🚨 <b>Critical</b>: disk /dev/nvme0 (Samsung SSD 980 PRO 1TB)")
    assert "NVMe critical warning 0x05" in failing


async def test_reallocated_sectors_warn_when_they_rise_not_while_they_stay(
    harness: Harness, home: HomeFakes, tmp_path: Path
) -> None:
    await _own_hardware(harness, tmp_path)
    home.disks(sdb="sata-failing")  # 2712 reallocated, but failing anyway: use a copy
    doc = home.data / "smartctl" / "sdb.json"
    text = doc.read_text()
    calm = text.replace('"passed": false', '"passed": true')
    calm = calm.replace('"exit_status": 120', '"exit_status": 0')
    calm = calm.replace('"value": 48,', '"value": 0,').replace('"string": "48"', '"string": "0"')
    doc.write_text(calm)
    assert [t for t in await _alerts(harness) if "sdb" in t] == []  # an old count: no news

    doc.write_text(calm.replace('"value": 2712', '"value": 2720'))
    harness.clock.advance(minutes=5)
    (rose,) = [t for t in await _alerts(harness) if "sdb" in t]
    harness.clock.advance(days=1, minutes=5)
    (calmed,) = [t for t in await _alerts(harness) if "sdb" in t]

    assert "reallocated sectors rose from 2712 to 2720" in rose
    assert calmed.startswith("✅ Recovered: disk /dev/sdb")


async def test_a_degraded_mirror_is_critical_and_its_rebuild_ends_in_recovered(
    harness: Harness, home: HomeFakes, tmp_path: Path
) -> None:
    md = await _own_hardware(harness, tmp_path)
    home.ups("ups", "ups.status: OL\n")
    md.write_text(mdstat.DEGRADED)
    (degraded,) = await _alerts(harness)
    md.write_text(mdstat.DEGRADED_RECOVERING)
    harness.clock.advance(minutes=5)
    assert await _alerts(harness) == []  # critical → warning is not announced
    status = await harness.say("/status")
    md.write_text(mdstat.HEALTHY)
    harness.clock.advance(minutes=5)
    (recovered,) = await _alerts(harness)

    assert degraded.startswith("🚨 <b>Critical</b>: RAID md0 is degraded: raid1 [U_]")
    assert "⚠️ RAID md0 is rebuilding: raid1 [U_], recovery 8.5%, ~101 min left" in status
    assert recovered.startswith("✅ Recovered: RAID md0 is healthy")


async def test_a_pool_that_zpool_no_longer_lists_has_recovered(
    harness: Harness, home: HomeFakes, tmp_path: Path
) -> None:
    await _own_hardware(harness, tmp_path)
    home.ups("ups", "ups.status: OL\n")
    home.zpool(mdstat.ZPOOL_DEGRADED)
    (degraded,) = await _alerts(harness)
    home.zpool(mdstat.ZPOOL_HEALTHY)
    harness.clock.advance(minutes=5)
    (recovered,) = await _alerts(harness)

    assert "ZFS pool tank is degraded" in degraded
    assert recovered.startswith("✅ Recovered: zfs:tank is healthy again")


async def test_the_ups_on_battery_warns_low_battery_is_critical_and_mains_recovers(
    harness: Harness, home: HomeFakes, tmp_path: Path
) -> None:
    await _own_hardware(harness, tmp_path)
    home.ups("ups", "ups.status: OL\nbattery.charge: 100\nbattery.runtime: 2520\n")
    assert await _alerts(harness) == []
    assert "✅ UPS ups is on mains, battery 100%, ~42 min left" in await harness.say("/status")
    home.ups("ups", "ups.status: OB DISCHRG\nbattery.charge: 80\nbattery.runtime: 1800\n")
    (on_battery,) = await _alerts(harness)
    home.ups("ups", "ups.status: OB DISCHRG LB\nbattery.charge: 9\nbattery.runtime: 120\n")
    (low,) = await _alerts(harness)
    home.ups("ups", "ups.status: OL CHRG\nbattery.charge: 12\n")
    (back,) = await _alerts(harness)

    assert "UPS ups is on battery (power cut), battery 80%, ~30 min left" in on_battery
    assert low.startswith("🚨")
    assert "~2 min left" in low
    assert back.startswith("✅ Recovered: UPS ups is on mains")


async def test_status_and_report_show_the_disks_and_a_report_with_a_bad_disk_is_loud(
    harness: Harness, home: HomeFakes, tmp_path: Path
) -> None:
    await _own_hardware(harness, tmp_path)
    home.ups("ups", "ups.status: OL\n")
    home.disks(sda="sata-healthy", nvme0="nvme-healthy", sdc="sata-standby")

    status = await harness.say("/status")
    home.disks(sda="sata-healthy", sdb="sata-failing")
    await harness.say("/report")
    report = harness.outbox.last

    assert "✅ disk <code>/dev/sda</code> (WDC WD40EFRX-68N32N0): SMART passed, 34 °C" in status
    assert "SMART passed, 3% worn, 41 °C" in status
    assert "✅ disk <code>/dev/sdc</code> asleep (not woken up to be read)" in status
    assert "❌ disk <code>/dev/sdb</code> (ST4000VN008-2DR166): SMART says it is failing" in (
        report.current.text
    )
    assert report.current.silent is False
