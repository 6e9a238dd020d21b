from __future__ import annotations

from tests.conftest import OPERATOR, Harness


async def test_an_operator_restarts_a_service_after_confirming(harness: Harness) -> None:
    prompt = await harness.say("/restart nextcloud", OPERATOR)
    assert "Confirm" in prompt
    toast = await harness.press(1, OPERATOR)
    assert toast == "Confirmed."
    assert "Nextcloud restarted and active" in harness.outbox.last.current.text
