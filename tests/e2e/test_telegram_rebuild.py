"""End to end on Telegram with the real NixOS adapters: `steward run` (no demo) with fake
systemctl, journalctl and nixos-rebuild first on its PATH, killed in the middle of a rebuild."""

from __future__ import annotations

import json
from pathlib import Path

from tests.e2e.harness import (
    ALICE,
    BotProcess,
    Steward,
    button_data,
    uid,
    wait_message,
    wait_prompt,
)
from tests.support.fake_system import FakeSystem
from tests.support.fake_telegram import FakeBotAPI
from tests.support.fakebin import _fakesys


def real_system(tmp_path: Path) -> tuple[FakeSystem, dict[str, str], Path]:
    system = FakeSystem(tmp_path / "system")
    system.add_unit("forgejo.service", active_state="inactive")
    catalogue = tmp_path / "catalogue.json"
    catalogue.write_text(json.dumps({"services": [
        {"id": "forgejo", "name": "Forgejo", "units": ["forgejo.service"]},
    ]}))  # fmt: skip
    extra = {"PATH": system.path, _fakesys.STATE_ENV: str(system.state_path)}
    return system, extra, catalogue


def start(steward: Steward, extra: dict[str, str], catalogue: Path) -> BotProcess:
    return steward.start(
        extra=extra,
        demo="0",
        catalogue=str(catalogue),
        desired_state=str(catalogue.with_name("desired-state.json")),
        rebuild_poll_seconds="0.1",
    )


def test_a_bot_killed_mid_rebuild_reports_the_switch_in_the_same_message(
    fake: FakeBotAPI, steward: Steward, tmp_path: Path
) -> None:
    system, extra, catalogue = real_system(tmp_path)
    before = system.current_generation()
    system.hold_rebuild()  # in its build phase until the bot was killed, however slow the machine
    first = start(steward, extra, catalogue)
    fake.send_text(ALICE, "/enable forgejo")
    prompt = wait_prompt(fake, uid(ALICE))
    assert "services.forgejo.enable" in (prompt.text or "")
    fake.press(ALICE, prompt.message_id, button_data(prompt, "Confirm"))
    progress = wait_message(fake, uid(ALICE), "Building", timeout=20)
    fake.wait_for(lambda _: steward.count("jobs", "message_id IS NOT NULL") == 1)
    fake.wait_for(lambda f: not f.pending_updates)
    steward.kill(first)
    assert system.unit("steward-rebuild.service")["ActiveState"] == "activating"
    system.release_rebuild()

    start(steward, extra, catalogue)
    outcome = wait_message(fake, uid(ALICE), "Generation", timeout=30)

    assert outcome.message_id == progress.message_id
    assert f"Generation {before} → {before + 1}" in (outcome.text or "")
    assert [b["text"] for b in outcome.buttons] == ["Keep", "Roll back now"]
    starts = [call for call in system.calls("systemctl") if call[1] == "start"]
    assert len(starts) == 1
    desired = json.loads((tmp_path / "desired-state.json").read_text())
    assert desired["services"]["forgejo"]["enable"] is True
    fake.wait_for(lambda _: steward.query("SELECT state FROM jobs") == [("succeeded",)])
