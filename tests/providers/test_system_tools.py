"""The real adapters against the fake systemctl and journalctl (tests/support/fakebin), and
against the machine's real ``du``."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from providers.host.base import Health, UnitError
from providers.host.metrics import PsutilHost
from providers.host.systemd import SystemctlServiceManager
from tests.support.fake_system import FakeSystem
from tests.support.tls import self_signed


@pytest.fixture
def system(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeSystem:
    fake = FakeSystem(tmp_path)
    fake.install(monkeypatch)
    return fake


async def test_start_stop_and_restart_change_the_unit(system: FakeSystem) -> None:
    system.add_unit("forgejo.service", active_state="inactive")
    manager = SystemctlServiceManager()

    await manager.start("forgejo.service")
    assert (await manager.status(["forgejo.service"]))["forgejo.service"].health is Health.ACTIVE
    await manager.stop("forgejo.service")
    assert (await manager.status(["forgejo.service"]))["forgejo.service"].health is Health.OFF
    await manager.restart("forgejo.service")
    assert (await manager.status(["forgejo.service"]))["forgejo.service"].health is Health.ACTIVE
    verbs = [call[1] for call in system.calls("systemctl") if call[1] != "show"]
    assert verbs == ["start", "stop", "restart"]
    assert all("--" in call for call in system.calls("systemctl"))


async def test_a_failed_start_says_why_not_where_to_look(system: FakeSystem) -> None:
    system.add_unit("forgejo.service", active_state="inactive")
    system.fail_next_start("forgejo.service")
    with pytest.raises(UnitError) as caught:
        await SystemctlServiceManager().start("forgejo.service")
    # systemd adds 'See "systemctl status ..." for details.' after the reason; not shown.
    assert str(caught.value).startswith("Job for forgejo.service failed")


async def test_logs_read_the_newest_lines_of_several_units_in_one_call(
    system: FakeSystem,
) -> None:
    for unit in ("postfix.service", "dovecot2.service"):
        system.add_unit(unit)
    for number in range(5):
        system.add_journal("postfix.service", f"postfix line {number}")
    system.add_journal("dovecot2.service", "dovecot says <hi> & bye")
    system.add_journal("other.service", "not ours")

    lines = await SystemctlServiceManager().logs(["postfix.service", "dovecot2.service"], 3)

    assert len(lines) == 3
    assert lines[-1].endswith("dovecot says <hi> & bye")
    assert lines[0].endswith("postfix line 3")
    assert not any("not ours" in line for line in lines)
    (call,) = system.calls("journalctl")
    assert call[1:] == [
        "--unit", "postfix.service", "--unit", "dovecot2.service", "--lines", "3",
        "--output", "short-iso", "--no-pager", "--quiet",
    ]  # fmt: skip


async def test_folder_sizes_come_from_one_du_and_a_missing_folder_is_unknown(
    tmp_path: Path,
) -> None:
    small, big = tmp_path / "small", tmp_path / "big"
    small.mkdir()
    big.mkdir()
    (small / "a").write_bytes(b"x" * 1_000)
    (big / "b").write_bytes(b"x" * 3_000_000)
    (big / "sub").mkdir()
    (big / "sub" / "c").write_bytes(b"x" * 1_000_000)

    sizes = await PsutilHost().folder_sizes([str(small), str(big), str(tmp_path / "gone")])

    assert sizes[str(tmp_path / "gone")] is None
    small_size, big_size = sizes[str(small)], sizes[str(big)]
    assert small_size is not None
    assert big_size is not None
    # Apparent sizes: the files plus the folders' own entries.
    assert 1_000 <= small_size < 1_000 + 64 * 1024
    assert 4_000_000 <= big_size < 4_000_000 + 64 * 1024


async def test_no_folders_run_no_du(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no du here: it must not be needed
    assert await PsutilHost().folder_sizes([]) == {}


async def test_growing_a_filesystem_starts_the_growfs_unit_for_that_device(
    system: FakeSystem,
) -> None:
    device = "/dev/disk/by-id/scsi-0HC_Volume_1234"
    unit = system.add_unit(
        r"steward-growfs@dev-disk-by\x2did-scsi\x2d0HC_Volume_1234.service",
        active_state="inactive",
    )
    await PsutilHost().grow_filesystem(device)
    assert ["systemctl", "start", "--", unit] in system.calls("systemctl")
    system.set_unit(unit, active_state="inactive")  # a oneshot is done when it has run
    system.fail_next_start(unit, "resize2fs: Permission denied")
    with pytest.raises(OSError, match="failed"):
        await PsutilHost().grow_filesystem(device)


async def test_a_device_that_is_not_mounted_has_no_usage() -> None:
    assert await PsutilHost().device_usage("/dev/disk/by-id/scsi-0HC_Volume_404") is None


@pytest.fixture
def acme(tmp_path: Path) -> Path:
    """An ACME folder as NixOS keeps it, with one real certificate valid for 10 days."""
    site = tmp_path / "acme" / "example.org"
    site.mkdir(parents=True)
    self_signed(site, "example.org", days=10)
    return tmp_path / "acme"


async def test_certificates_are_read_with_openssl(acme: Path, tmp_path: Path) -> None:
    (tmp_path / "acme" / "broken.example").mkdir()
    (tmp_path / "acme" / "broken.example" / "cert.pem").write_text("not a certificate")
    (tmp_path / "acme" / ".lego").mkdir()
    found = await PsutilHost().certificates(str(tmp_path / "acme"))
    assert set(found) == {"example.org", "broken.example"}
    assert found["broken.example"] is None
    expires = found["example.org"]
    assert expires is not None
    left = expires - datetime.now(UTC)
    assert timedelta(days=9) < left <= timedelta(days=10)
    assert await PsutilHost().certificates(str(tmp_path / "nowhere")) == {}


async def test_reboot_asks_systemctl_once(system: FakeSystem) -> None:
    await SystemctlServiceManager().reboot()
    assert system.calls("systemctl") == [["systemctl", "reboot"]]
    assert system.state()["reboots"] == 1
