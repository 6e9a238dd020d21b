"""The bot's first start on a server that already runs services: it records them as enabled
in the desired state, which nixos/desired-state.nix assumed while there was no file."""

from __future__ import annotations

import json
from pathlib import Path

from bot.app import build_app
from bot.config import load_settings

CATALOGUE = {"services": [
    {"id": "nextcloud", "units": ["phpfpm-nextcloud.service"], "already_running": True,
     "shared_units": ["nginx.service"]},
    {"id": "vaultwarden", "units": ["vaultwarden.service"]},
]}  # fmt: skip


def start(tmp_path: Path) -> Path:
    (tmp_path / "catalogue.json").write_text(json.dumps(CATALOGUE), encoding="utf-8")
    desired = tmp_path / "state" / "desired-state.json"  # the proposal, root admits it
    settings = load_settings(
        state_dir=tmp_path / "state", catalogue=tmp_path / "catalogue.json", desired_state=desired
    )
    (tmp_path / "state").mkdir(exist_ok=True)
    build_app(settings).close()
    return desired


def test_the_first_start_records_the_services_already_running(tmp_path: Path) -> None:
    desired = start(tmp_path)
    assert json.loads(desired.read_text(encoding="utf-8")) == {
        "version": 1, "services": {"nextcloud": {"enable": True}}, "system": {}}  # fmt: skip


def test_a_later_start_leaves_the_owners_choices_alone(tmp_path: Path) -> None:
    desired = start(tmp_path)
    chosen = '{"version": 1, "services": {"nextcloud": {"enable": false}}, "system": {}}\n'
    desired.write_text(chosen, encoding="utf-8")
    start(tmp_path)
    assert desired.read_text(encoding="utf-8") == chosen
