"""The fake systemctl / journalctl / nixos-rebuild / nix, run as real subprocesses."""

from __future__ import annotations

import json
import re
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from providers.host.base import Health, UnitError, worst
from providers.host.systemd import SystemctlServiceManager
from tests.support.fake_system import FAKEBIN, TOOLS, FakeSystem
from tests.support.fakebin import _fakesys

SHORT_ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+0000 steward (\S+)\[(\d+)\]: (.*)$")
PHASES = [
    "building the system configuration...",
    "activating the configuration...",
    "setting up /etc...",
    "reloading user units for admin...",
    "restarting sysinit-reactivation.target",
]


@pytest.fixture
def fs(tmp_path: Path) -> FakeSystem:
    return FakeSystem(tmp_path)


def test_executables_are_mode_755() -> None:
    for tool in TOOLS:
        assert (FAKEBIN / tool).stat().st_mode & 0o777 == 0o755
        assert (FAKEBIN / tool).read_text().startswith("#!/usr/bin/env python3\n")


# --- systemctl -------------------------------------------------------------------------------


def test_show_many_units_in_one_call_like_systemd(fs: FakeSystem) -> None:
    fs.add_unit("nginx", description="Nginx Web Server", memory=1234)
    fs.add_unit("redis", active_state="failed")
    out = fs.run(
        "systemctl",
        "show",
        "--no-pager",
        "--property=Id,ActiveState",
        "-p",
        "SubState",
        "-p",
        "LoadState,MemoryCurrent,NoSuchProperty",
        "--",
        "nginx.service",
        "redis",
        "ghost.service",
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout == (
        "MemoryCurrent=1234\nId=nginx.service\nLoadState=loaded\nActiveState=active\n"
        "SubState=running\n"
        "\n"
        "MemoryCurrent=[not set]\nId=redis.service\nLoadState=loaded\nActiveState=failed\n"
        "SubState=failed\n"
        "\n"
        "MemoryCurrent=[not set]\nId=ghost.service\nLoadState=not-found\nActiveState=inactive\n"
        "SubState=dead\n"
    )
    assert fs.calls("systemctl") == [
        [
            "systemctl",
            "show",
            "--no-pager",
            "--property=Id,ActiveState",
            "-p",
            "SubState",
            "-p",
            "LoadState,MemoryCurrent,NoSuchProperty",
            "--",
            "nginx.service",
            "redis",
            "ghost.service",
        ]
    ]


def test_show_timestamps_and_value(fs: FakeSystem) -> None:
    fs.add_unit("nginx")
    out = fs.run("systemctl", "show", "-p", "ActiveEnterTimestamp", "nginx").stdout
    stamp = out.strip().split("=", 1)[1]
    assert re.fullmatch(r"[A-Z][a-z]{2} \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC", stamp)
    out = fs.run("systemctl", "show", "--value", "-p", "ActiveState", "nginx", "x").stdout
    assert out == "active\n\ninactive\n"


def test_is_active_exit_codes(fs: FakeSystem) -> None:
    fs.add_unit("nginx")
    fs.add_unit("redis", active_state="failed")
    ok = fs.run("systemctl", "is-active", "nginx")
    assert (ok.returncode, ok.stdout) == (0, "active\n")
    bad = fs.run("systemctl", "is-active", "redis", "ghost")
    assert (bad.returncode, bad.stdout) == (3, "failed\ninactive\n")
    assert fs.run("systemctl", "is-active", "--quiet", "redis").stdout == ""
    assert fs.run("systemctl", "is-failed", "redis").returncode == 0


def test_start_stop_restart(fs: FakeSystem) -> None:
    fs.add_unit("nginx", description="Nginx Web Server", active_state="inactive")
    assert fs.run("systemctl", "start", "--no-pager", "--", "nginx").returncode == 0
    first = fs.unit("nginx")
    assert (first["ActiveState"], first["SubState"]) == ("active", "running")
    assert fs.run("systemctl", "restart", "nginx.service").returncode == 0
    assert fs.unit("nginx")["MainPID"] not in {0, first["MainPID"]}
    assert fs.run("systemctl", "stop", "nginx").returncode == 0
    assert (fs.unit("nginx")["ActiveState"], fs.unit("nginx")["MainPID"]) == ("inactive", 0)
    assert fs.journal("nginx") == [
        "Starting Nginx Web Server...",
        "Started Nginx Web Server.",
        "Stopping Nginx Web Server...",
        "nginx.service: Deactivated successfully.",
        "Stopped Nginx Web Server.",
        "Starting Nginx Web Server...",
        "Started Nginx Web Server.",
        "Stopping Nginx Web Server...",
        "nginx.service: Deactivated successfully.",
        "Stopped Nginx Web Server.",
    ]


def test_unknown_unit_is_exit_5(fs: FakeSystem) -> None:
    for verb, why in (("start", "not found"), ("restart", "not found"), ("stop", "not loaded")):
        out = fs.run("systemctl", verb, "x")
        assert out.returncode == 5
        assert out.stderr == f"Failed to {verb} x.service: Unit x.service {why}.\n"


def test_injected_start_failure(fs: FakeSystem) -> None:
    fs.add_unit("nginx", description="Nginx Web Server")
    fs.fail_next_start("nginx", "bind() to 0.0.0.0:80 failed (98: Address already in use)")
    out = fs.run("systemctl", "restart", "nginx")
    assert out.returncode == 1
    assert out.stderr == (
        "Job for nginx.service failed because the control process exited with error code.\n"
        'See "systemctl status nginx.service" and "journalctl -xeu nginx.service" for details.\n'
    )
    unit = fs.unit("nginx")
    assert (unit["ActiveState"], unit["SubState"], unit["Result"], unit["failed"]) == (
        "failed",
        "failed",
        "exit-code",
        True,
    )
    assert fs.journal("nginx")[-4:] == [
        "bind() to 0.0.0.0:80 failed (98: Address already in use)",
        "nginx.service: Control process exited, code=exited, status=1/FAILURE",
        "nginx.service: Failed with result 'exit-code'.",
        "Failed to start Nginx Web Server.",
    ]
    assert fs.run("systemctl", "start", "nginx").returncode == 0  # only the next one fails


def test_list_units(fs: FakeSystem) -> None:
    fs.add_unit("nginx", description="Nginx")
    fs.add_unit("redis", active_state="failed", description="Redis")
    plain = fs.run(
        "systemctl", "list-units", "--state=failed", "--plain", "--no-legend", "--no-pager"
    )
    assert plain.stdout == "redis.service loaded failed failed Redis\n"
    listed = json.loads(fs.run("systemctl", "list-units", "--output=json", "nginx*").stdout)
    assert listed == [
        {
            "unit": "nginx.service",
            "load": "loaded",
            "active": "active",
            "sub": "running",
            "description": "Nginx",
        }
    ]
    table = fs.run("systemctl").stdout.splitlines()
    assert table[0].split() == ["UNIT", "LOAD", "ACTIVE", "SUB", "DESCRIPTION"]
    assert table[2].startswith("● redis.service ")
    assert table[2].split()[2:] == ["loaded", "failed", "failed", "Redis"]


def test_bad_option_and_verb(fs: FakeSystem) -> None:
    out = fs.run("systemctl", "--bogus", "status")
    assert (out.returncode, out.stderr) == (1, "systemctl: unrecognized option '--bogus'\n")
    out = fs.run("systemctl", "frobnicate")
    assert (out.returncode, out.stderr) == (1, "Unknown command verb 'frobnicate'.\n")


def test_concurrent_calls_keep_every_change(fs: FakeSystem) -> None:
    names = [fs.add_unit(f"svc{i}", active_state="inactive") for i in range(12)]
    with ThreadPoolExecutor(12) as pool:
        results = list(pool.map(lambda n: fs.run("systemctl", "start", n), names))
    assert [r.returncode for r in results] == [0] * 12
    units = [fs.unit(n) for n in names]
    assert all(u["ActiveState"] == "active" for u in units)
    assert len({u["MainPID"] for u in units}) == 12
    assert len(fs.calls("systemctl")) == 12


# --- the steward oneshot units ---------------------------------------------------------------


def test_no_block_rebuild_runs_in_background(fs: FakeSystem) -> None:
    fs.rebuild_delay(0.3)
    fs.stage_next(packages={"nginx": ["1.27.3", 1_700_000]}, new_units=["nextcloud-setup"])
    began = time.monotonic()
    out = fs.run("systemctl", "start", "--no-block", "steward-rebuild.service")
    assert out.returncode == 0
    assert time.monotonic() - began < 0.8
    assert fs.unit("steward-rebuild")["ActiveState"] == "activating"
    # A second start joins the running job instead of starting another rebuild.
    assert fs.run("systemctl", "start", "--no-block", "steward-rebuild").returncode == 0
    unit = fs.wait_for_unit("steward-rebuild")
    assert (unit["ActiveState"], unit["SubState"], unit["Result"]) == (
        "inactive",
        "dead",
        "success",
    )
    gens = fs.generations()
    assert [g["generation"] for g in gens] == [1, 2]
    assert [g["current"] for g in gens] == [False, True]
    journal = fs.journal("steward-rebuild")
    assert journal.count("Starting Steward: nixos-rebuild switch...") == 1
    assert [line for line in journal if line in PHASES] == PHASES
    assert "the following new units were started: nextcloud-setup.service" in journal
    assert journal[-1] == "Finished Steward: nixos-rebuild switch."
    assert fs.unit("nextcloud-setup")["ActiveState"] == "active"
    diff = fs.run(
        "nix",
        "store",
        "diff-closures",
        "/nix/var/nix/profiles/system-1-link",
        "/run/current-system",
    )
    assert diff.stdout == "nginx: 1.26.2 → 1.27.3, \x1b[31;1m+112.2 KiB\x1b[0m\n"


def test_blocking_rebuild_failure(fs: FakeSystem) -> None:
    fs.fail_rebuild("error: attribute 'nextclud' missing")
    out = fs.run("systemctl", "start", "steward-upgrade")
    assert out.returncode == 1
    assert out.stderr.startswith("Job for steward-upgrade.service failed because")
    unit = fs.unit("steward-upgrade")
    assert (unit["ActiveState"], unit["Result"]) == ("failed", "exit-code")
    journal = fs.journal("steward-upgrade")
    error = next(line for line in journal if line.startswith("error: builder for"))
    assert re.fullmatch(
        r"error: builder for '/nix/store/[0-9a-z]{32}-nixos-system-steward-[^']+\.drv' "
        r"failed with exit code 1;",
        error,
    )
    assert "       > error: attribute 'nextclud' missing" in journal
    assert journal[-1] == "Failed to start Steward: upgrade and nixos-rebuild switch."
    assert len(fs.generations()) == 1
    # Injected once: the next one succeeds, upgrading nixpkgs.
    assert fs.run("systemctl", "start", "steward-upgrade").returncode == 0
    assert fs.generations()[-1]["nixosVersion"] != fs.generations()[0]["nixosVersion"]


def test_rollback_unit(fs: FakeSystem) -> None:
    fs.add_generation()
    assert fs.run("systemctl", "start", "steward-rollback").returncode == 0
    assert fs.current_generation() == 1
    assert "switching profile from version 2 to 1" in fs.journal("steward-rollback")


# --- journalctl ------------------------------------------------------------------------------


def test_journal_short_iso_lines_units_and_json(fs: FakeSystem) -> None:
    fs.add_unit("nginx", active_state="inactive")
    fs.run("systemctl", "start", "nginx")
    fs.add_journal("nginx", "GET / 200")
    out = fs.run("journalctl", "-u", "nginx", "-o", "short-iso", "--no-pager", "-n", "2")
    lines = out.stdout.splitlines()
    assert len(lines) == 2
    parsed = [SHORT_ISO.match(line) for line in lines]
    assert all(parsed)
    assert [(m.group(1), m.group(3)) for m in parsed if m] == [
        ("systemd", "Started nginx."),
        ("nginx", "GET / 200"),
    ]
    fs.add_unit("redis")
    fs.add_journal("redis", "ready")
    both = fs.run("journalctl", "-u", "nginx", "-u", "redis.service", "-o", "cat").stdout
    assert both.splitlines()[-2:] == ["GET / 200", "ready"]
    records = [
        json.loads(line)
        for line in fs.run("journalctl", "-u", "nginx", "-o", "json").stdout.splitlines()
    ]
    assert records[-1]["MESSAGE"] == "GET / 200"
    assert records[-1]["_SYSTEMD_UNIT"] == "nginx.service"
    assert records[0]["_SYSTEMD_UNIT"] == "init.scope"
    assert records[0]["UNIT"] == "nginx.service"
    assert abs(int(records[-1]["__REALTIME_TIMESTAMP"]) / 1e6 - time.time()) < 60
    empty = fs.run("journalctl", "-u", "ghost")
    assert (empty.returncode, empty.stdout) == (0, "-- No entries --\n")


def test_journal_since(fs: FakeSystem) -> None:
    fs.add_unit("nginx")
    old = datetime(2026, 11, 27, 10, 0, tzinfo=UTC)
    fs.add_journal("nginx", "yesterday's line", at=old)
    fs.add_journal("nginx", "recent", at=datetime.now(UTC) - timedelta(minutes=1))
    out = fs.run("journalctl", "-u", "nginx", "--since", "2026-11-28 00:00:00", "-o", "cat")
    assert "yesterday's line" not in out.stdout
    assert "recent" in out.stdout
    out = fs.run("journalctl", "-u", "nginx", "-S", "-10min", "-o", "cat", "-n", "1")
    assert out.stdout == "recent\n"
    iso = fs.run("journalctl", "-u", "nginx", "-o", "short-iso", "-n", "all").stdout
    assert iso.splitlines()[0] == "2026-11-27T10:00:00+0000 steward nginx[1001]: yesterday's line"


def test_journal_follow_streams_a_rebuild(fs: FakeSystem) -> None:
    fs.rebuild_delay(0.15)
    follower = subprocess.Popen(
        ["journalctl", "-f", "-u", "steward-rebuild", "-o", "short-iso", "--no-pager"],
        env=fs.env(),
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        time.sleep(0.3)
        assert fs.run("systemctl", "start", "--no-block", "steward-rebuild").returncode == 0
        assert follower.stdout is not None
        seen: list[str] = []
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            match = SHORT_ISO.match(follower.stdout.readline().rstrip("\n"))
            assert match
            seen.append(match.group(3))
            if seen[-1].startswith("Finished "):
                break
        assert [line for line in seen if line in PHASES] == PHASES
        assert follower.poll() is None  # still following
    finally:
        follower.terminate()
        follower.wait(5)
        assert follower.stdout is not None
        follower.stdout.close()


# --- nixos-rebuild and nix -------------------------------------------------------------------


def test_nixos_rebuild_switch_and_generations(fs: FakeSystem) -> None:
    out = fs.run("nixos-rebuild", "switch", "--flake", "/etc/nixos#steward")
    assert out.returncode == 0
    lines = out.stderr.splitlines()
    assert [line for line in lines if line in PHASES] == PHASES
    assert out.stdout == ""
    listed = json.loads(fs.run("nixos-rebuild", "list-generations", "--json").stdout)
    assert [g["generation"] for g in listed] == [2, 1]
    assert set(listed[0]) == {
        "generation",
        "date",
        "nixosVersion",
        "kernelVersion",
        "configurationRevision",
        "specialisations",
        "current",
    }
    assert listed[0]["current"] is True
    table = fs.run("nixos-rebuild", "list-generations").stdout.splitlines()
    assert table[0].split()[:3] == ["Generation", "Build-date", "NixOS"]
    assert table[1].startswith("2 current ")
    out = fs.run("nixos-rebuild", "switch", "--rollback")
    assert out.returncode == 0
    assert "switching profile from version 2 to 1" in out.stderr
    assert fs.current_generation() == 1


def test_nixos_rebuild_failure_build_and_boot(fs: FakeSystem) -> None:
    fs.fail_rebuild("builder said no", times=1)
    out = fs.run("nixos-rebuild", "switch")
    assert out.returncode == 1
    assert "failed with exit code 1;" in out.stderr
    assert "       > builder said no" in out.stderr
    assert "activating the configuration..." not in out.stderr
    assert fs.run("nixos-rebuild", "build").returncode == 0
    assert len(fs.generations()) == 1
    fs.stage_next(kernel="6.12.5")
    assert not fs.reboot_needed()
    out = fs.run("nixos-rebuild", "boot")
    assert out.returncode == 0
    assert "activating the configuration..." not in out.stderr
    assert fs.current_generation() == 2
    assert fs.state()["current_system"]["generation"] == 1
    fs.run("nixos-rebuild", "switch")
    assert fs.reboot_needed()
    booted = (fs.root / "run/booted-system/kernel").readlink()
    current = (fs.root / "run/current-system/kernel").readlink()
    assert "linux-6.12.1" in str(booted)
    assert "linux-6.12.5" in str(current)
    fs.set_booted_kernel("6.12.5")
    assert not fs.reboot_needed()
    assert fs.run("nixos-rebuild", "--bogus").returncode == 1


def test_nix_diff_closures_and_flake_update(fs: FakeSystem) -> None:
    fs.add_generation(packages={"firefox": ["120.0", 250_000_000]}, current=False)
    fs.add_generation(packages={"firefox": ["121.0", 251_258_291]})
    out = fs.run(
        "nix",
        "store",
        "diff-closures",
        "/nix/var/nix/profiles/system-2-link",
        "/nix/var/nix/profiles/system-3-link",
    )
    assert out.stdout == "firefox: 120.0 → 121.0, \x1b[31;1m+1228.8 KiB\x1b[0m\n"
    out = fs.run("nix", "store", "diff-closures", "/run/booted-system", "/run/current-system")
    assert "firefox: ∅ → 121.0, \x1b[31;1m+245369.4 KiB\x1b[0m\n" in out.stdout
    bad = fs.run("nix", "store", "diff-closures", "/nix/var/nix/profiles/system-9-link", "/x")
    assert bad.returncode == 1
    assert bad.stderr.startswith("error: ")
    fs.stage_next(flake_inputs={"nixpkgs": {"rev": "9f8e7d6c", "date": "2026-11-28"}})
    out = fs.run("nix", "flake", "update", "--flake", "/etc/nixos")
    assert out.returncode == 0
    assert out.stderr.splitlines()[1:] == [
        "• Updated input 'nixpkgs':",
        "    'github:NixOS/nixpkgs/1a2b3c4d' (2026-11-20)",
        "  → 'github:NixOS/nixpkgs/9f8e7d6c' (2026-11-28)",
    ]
    assert fs.run("nix", "flake", "update").stderr == ""  # nothing new


# --- Steward's real adapter ------------------------------------------------------------------


async def test_real_systemctl_service_manager(
    fs: FakeSystem, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The adapter passes only LC_ALL and PATH: the state is found through PATH.
    monkeypatch.setenv("PATH", fs.path)
    monkeypatch.delenv("FAKE_SYSTEM_STATE", raising=False)
    services = {f"app{i}": [f"app{i}.service", f"app{i}-worker.service"] for i in range(40)}
    with fs.edit() as state:
        for i, units in enumerate(services.values()):
            if i == 2:
                _fakesys.add_unit(state, units[0])  # the worker is missing
                continue
            _fakesys.add_unit(state, units[0])
            worker_state = {1: "failed", 3: "activating", 4: "inactive"}.get(i, "active")
            _fakesys.add_unit(state, units[1], active_state=worker_state)
    manager = SystemctlServiceManager(timeout=10, restart_timeout=10)
    all_units = [u for units in services.values() for u in units]
    assert len(all_units) == 80
    statuses = await manager.status(all_units)
    assert len(fs.calls("systemctl")) == 1
    assert fs.calls("systemctl")[0][:2] == ["systemctl", "show"]
    health = {name: worst([statuses[u] for u in units]) for name, units in services.items()}
    assert health["app0"] == Health.ACTIVE
    assert health["app1"] == Health.FAILED
    assert health["app2"] == Health.OFF
    assert statuses["app2-worker.service"].load_state == "not-found"
    assert health["app3"] == Health.CHANGING
    assert health["app4"] == Health.OFF
    assert statuses["app0.service"].memory_bytes == 52_428_800
    assert statuses["app0.service"].since is not None
    assert abs((statuses["app0.service"].since - datetime.now(UTC)).total_seconds()) < 60
    assert await manager.failed_units() == ["app1-worker.service"]

    pid = fs.unit("app0")["MainPID"]
    await manager.restart("app0.service")
    assert fs.unit("app0")["MainPID"] != pid
    fs.fail_next_start("app0")
    # The reason line, not systemd's "See ... journalctl -xeu ..." hint after it.
    with pytest.raises(UnitError, match=r"^Job for app0\.service failed because"):
        await manager.restart("app0.service")
    assert (await manager.status(["app0.service"]))["app0.service"].health == Health.FAILED
    logs = await manager.logs(["app0.service", "app1.service"], 3)
    assert len(logs) == 3
    assert all(SHORT_ISO.match(line) for line in logs)
    assert logs[-1].endswith("systemd[1]: Failed to start app0.")
    with pytest.raises(UnitError, match=r"Unit ghost\.service not found"):
        await manager.restart("ghost.service")
