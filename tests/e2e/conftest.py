"""Fixtures of the end-to-end Telegram suite: a fresh fake Bot API and bot processes per test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.harness import TOKEN, Steward
from tests.support.fake_telegram import FakeBotAPI


@pytest.fixture
def fake() -> Iterator[FakeBotAPI]:
    with FakeBotAPI(TOKEN) as api:
        yield api


@pytest.fixture
def steward(fake: FakeBotAPI, tmp_path: Path) -> Iterator[Steward]:
    """Starts bots on demand (``steward.start()``); stops and checks them all afterwards."""
    runner = Steward(fake, tmp_path)
    try:
        yield runner
    finally:
        runner.close()
