"""`steward b2 setup`: a private bucket, its lifecycle rule and a key that cannot delete,
printed once; on b2sdk's RawSimulator."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from b2sdk.v2 import (  # type: ignore[import-untyped]
    B2Api,
    B2HttpApiConfig,
    InMemoryAccountInfo,
    InMemoryCache,
    RawSimulator,
)

from bot.cli import b2_setup
from bot.config import ConfigError, Settings
from providers.storage.b2 import B2BackupStorage


def _api(raw: object) -> Any:
    config = B2HttpApiConfig(_raw_api_class=lambda _http: raw)
    return B2Api(InMemoryAccountInfo(), cache=InMemoryCache(), api_config=config)


def test_setup_makes_a_private_bucket_and_prints_a_key_that_works_once(
    capsys: pytest.CaptureFixture[str],
) -> None:
    simulator = RawSimulator()
    key_id, key = simulator.create_account()
    storage = B2BackupStorage(key_id, key, "steward-backups", raw_api=simulator)

    assert b2_setup(Settings(), "steward-backups", 30, storage=storage) == 0

    out = capsys.readouterr().out
    printed = dict(line.split("=", 1) for line in out.splitlines() if line.startswith("STEWARD_"))
    assert printed["STEWARD_B2_BUCKET"] == "steward-backups"
    assert "deleted files are kept 30 days" in out
    admin = _api(simulator)
    admin.authorize_account("production", key_id, key)
    (bucket,) = admin.list_buckets(bucket_name="steward-backups")
    assert bucket.type_ == "allPrivate"
    # The printed key is a real key, restricted to the bucket, without deleteFiles.
    check = B2BackupStorage(
        printed["STEWARD_B2_KEY_ID"], printed["STEWARD_B2_KEY"], "steward-backups",
        raw_api=simulator,
    )  # fmt: skip
    result = asyncio.run(check.check_key())
    assert "deleteFiles" not in result.capabilities
    assert result.bucket_name == "steward-backups"
    assert result.warnings == ()


def test_setup_twice_says_why_and_prints_no_key(capsys: pytest.CaptureFixture[str]) -> None:
    simulator = RawSimulator()
    key_id, key = simulator.create_account()
    storage = B2BackupStorage(key_id, key, "steward-backups", raw_api=simulator)
    assert b2_setup(Settings(), "steward-backups", 30, storage=storage) == 0
    capsys.readouterr()
    assert b2_setup(Settings(), "steward-backups", 30, storage=storage) == 1
    captured = capsys.readouterr()
    assert "STEWARD_B2_KEY=" not in captured.out
    assert captured.err.startswith("steward: ")


def test_setup_without_an_account_key_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="STEWARD_B2_KEY_ID and STEWARD_B2_KEY"):
        b2_setup(Settings(), "steward-backups", 30)


def test_the_command_line_refuses_without_a_key(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STEWARD_")}
    done = subprocess.run(
        [sys.executable, "-m", "bot", "b2", "setup", "--bucket", "steward-backups"],
        env=env, cwd=tmp_path, capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert done.returncode == 2
    assert "b2 setup needs an account key" in done.stderr
