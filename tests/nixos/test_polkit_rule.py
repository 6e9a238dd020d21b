"""The module's polkit rule, run by node as polkitd runs it (JavaScript, its own RegExp):
newline and option-like instances of the data units are not granted, nor anything the bot
was not given. tests/systemd runs the same rule in a real polkitd."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.nixos.test_module import evaluate, nix_env

__all__ = ["nix_env"]
HERE = Path(__file__).resolve().parent
MANAGE = "org.freedesktop.systemd1.manage-units"
SNAPSHOT = "0123456789abcdef" * 4


@pytest.fixture(scope="module")
def rule(nix_env: dict[str, str]) -> str:
    system = evaluate(
        nix_env,
        """{ enable = true;
             services.app = { units = [ "app.service" ]; folders = [ "/srv/app" ]; };
             services.web.units = [ "nginx.service" ]; }""",
    )
    text: str = system["security"]["polkit"]["extraConfig"]
    return text


def answers(rule: str, cases: list[dict[str, str]]) -> list[str]:
    node = shutil.which("node")
    if node is None:
        pytest.fail("node is missing: make tools installs it")
    done = subprocess.run([node, str(HERE / "polkit-eval.js")], capture_output=True, text=True,
                          input=json.dumps({"rule": rule, "cases": cases}), timeout=30,
                          check=True)  # fmt: skip
    result: list[str] = json.loads(done.stdout)
    return result


def start(unit: str, user: str = "steward", verb: str = "start") -> dict[str, Any]:
    return {"user": user, "action": MANAGE, "unit": unit, "verb": verb}


GRANTED = [
    "steward-backup@app:manual.service",
    "steward-backup@app:scheduled.service",
    "steward-restore@app:recover.service",
    f"steward-restore@app:{SNAPSHOT}.service",
    "steward-restore@app:0123abcd.service",
    "steward-rebuild.service",
]
REFUSED = [
    "steward-backup@app:manual\n.service",
    "steward-backup@app:manual.service\n",
    "steward-restore@app:recover.service\n",
    "steward-backup@app:--foo.service",
    "steward-restore@app:--foreign.service",
    "steward-restore@app:-h.service",
    "steward-backup@app:recover.service",
    "steward-backup@app:pre-restore.service",
    "steward-restore@app:manual.service",
    "steward-restore@app:0123ABCD.service",
    f"steward-restore@app:{SNAPSHOT}0.service",  # 65 digits
    f"steward-restore-foreign@app:{SNAPSHOT}.service",  # root's shell only
    "steward-backup@web:manual.service",  # no folders
    "steward-backup@app:manual.service.d",
]


def test_the_rule_grants_the_data_units_only_their_reasons_and_snapshot_ids(rule: str) -> None:
    got = answers(rule, [start(unit) for unit in GRANTED + REFUSED])
    assert got[: len(GRANTED)] == ["yes"] * len(GRANTED)
    assert dict(zip(REFUSED, got[len(GRANTED) :], strict=True)) == dict.fromkeys(
        REFUSED, "not_handled"
    )


def test_the_rule_grants_nothing_to_another_user_or_verb(rule: str) -> None:
    cases = [
        start("steward-backup@app:manual.service", user="nobody"),
        start("steward-backup@app:manual.service", verb="stop"),
        start("app.service", verb="restart"),
        start("app.service", verb="enable"),
        start("sshd.service"),
    ]
    assert answers(rule, cases) == ["not_handled", "not_handled", "yes", "not_handled",
                                    "not_handled"]  # fmt: skip
