"""Import what is configured and nothing else: the bot lives beside the services it manages."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

PROBE = """
import json, sys
from bot.app import build_app
from bot.config import load_settings
app = build_app(load_settings(), demo=True, console_admin=True)
app.close()
print(json.dumps(sorted(m.split(".")[0] for m in sys.modules)))
"""


def _modules_after_start(state: Path) -> set[str]:
    env = {**os.environ, "STEWARD_STATE_DIR": str(state)}
    result = subprocess.run(
        [sys.executable, "-c", PROBE],
        capture_output=True,
        text=True,
        env=env,
        cwd=state,
        timeout=60,
        check=True,
    )
    return set(json.loads(result.stdout.strip().splitlines()[-1]))


def test_alembic_is_imported_only_while_the_schema_is_behind(tmp_path: Path) -> None:
    first = _modules_after_start(tmp_path)
    second = _modules_after_start(tmp_path)
    assert "alembic" in first
    assert "alembic" not in second


def test_the_demo_loads_no_sdk_and_no_chat_library(tmp_path: Path) -> None:
    modules = _modules_after_start(tmp_path)
    unexpected = {"telegram", "nio", "hcloud", "b2sdk", "cloudflare", "apscheduler", "psutil"}
    assert not modules & unexpected
