"""`steward console --demo --fleet 3`: three demo servers answer in one console."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.bot.test_console import _env


def _fleet(tmp_path: Path, script: str, *flags: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bot", "console", *flags],
        input=script,
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=_env(tmp_path, "0.05"),
        timeout=60,
        check=False,
    )


def test_status_is_answered_as_three_servers_would_in_name_order(tmp_path: Path) -> None:
    done = _fleet(tmp_path, "/status\n", "--demo", "--fleet", "3")

    assert done.returncode == 0, done.stderr
    lines = [line for line in done.stdout.splitlines() if line.strip()]
    assert [line.split()[0] for line in lines] == ["[alpha]", "[bravo]", "[charlie]"]
    for line, name in zip(lines, ("alpha", "bravo", "charlie"), strict=True):
        assert f"{name} up " in line
        assert "failed units" in line


def test_an_addressed_command_runs_on_that_server_only(tmp_path: Path) -> None:
    done = _fleet(tmp_path, "!bravo restart nextcloud\npress 1\n/fleet @charlie\n",
                  "--demo", "--fleet", "3")  # fmt: skip

    assert done.returncode == 0, done.stderr
    speakers = {
        line.split()[0]
        for line in done.stdout.splitlines()
        if line.startswith("[") and not line.startswith("[1]")
    }
    assert speakers == {"[bravo]", "[charlie]"}
    assert "[bravo] (edited) 🟢 Nextcloud restarted" in done.stdout
    assert "[charlie] ✅ charlie" in done.stdout
    assert "this one" in done.stdout
    assert (tmp_path / "state" / "alpha" / "steward.db").exists()  # a database each


def test_fleet_without_demo_or_out_of_range_is_refused_in_one_line(tmp_path: Path) -> None:
    without_demo = _fleet(tmp_path, "", "--fleet", "3")
    too_many = _fleet(tmp_path, "", "--demo", "--fleet", "12")

    assert without_demo.returncode == too_many.returncode == 2
    assert without_demo.stderr == "steward: --fleet needs --demo: it shows demo servers only.\n"
    assert too_many.stderr == "steward: --fleet takes 2 to 9 servers, not 12.\n"


def test_a_change_nobody_kept_on_one_server_is_rolled_back_before_the_fleet_stops(
    tmp_path: Path,
) -> None:
    """As on one server (`settle`): the end of input waits for the Keep offer to lapse."""
    done = subprocess.run(
        [sys.executable, "-m", "bot", "console", "--demo", "--fleet", "3"],
        input="!bravo enable pleroma\npress 1\n",
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**_env(tmp_path, "0.05"), "STEWARD_KEEP_MINUTES": "0.02"},
        timeout=60,
        check=False,
    )

    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert out.index("Generation 44 → 45.") < out.index("Generation 45 → 44.")
    assert "The desired state was put back as it was" in out
