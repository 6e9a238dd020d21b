"""An alert's buttons in the console: printed like any button, and ``press N`` runs the command
as if typed; the alert stays the message whose buttons ``press`` means."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.timeout(60)


def console(tmp_path: Path, script: str) -> str:
    env = {name: value for name, value in os.environ.items() if not name.startswith("STEWARD_")}
    env["STEWARD_STATE_DIR"] = str(tmp_path / "state")
    done = subprocess.run(
        [sys.executable, "-m", "bot", "console", "--demo"],
        input=script,
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_mute_then_details_from_the_same_alert(tmp_path: Path) -> None:
    out = console(tmp_path, "/demo disk 94\npress 2\npress 3\npress 4\n")
    assert re.search(r"^\[1\] Snooze 1h  \[2\] Mute 24h  \[3\] Details$", out, re.MULTILINE)
    muted = out.index("🔕 disk / is 94% full: no messages about it until")
    level = out.index("Level: ⚠️ warning")
    quiet = out.index("Quiet until ")
    none = out.index("There is no button 4; choose 1 to 3.")
    assert muted < level < quiet < none  # the Details press sees the mute
    assert "not valid" not in out
