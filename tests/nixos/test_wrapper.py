"""The `steward` the module installs: root's call runs the bot's program as the bot's user,
with the bot's environment and its secrets as credentials of a transient unit (systemd-run);
anyone but root and steward is refused politely. The script is rendered by the module and run
here with a recording systemd-run in place of the real one."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import pytest

from tests.nixos.test_module import HERE, evaluate, nix, nix_env

__all__ = ["nix_env"]

STEWARD_SETTINGS = """{
  enable = true;
  settings = { admins = [ "123" ]; domain = "it's.example.org"; };
  telegramTokenFile = "/run/keys/telegram-token";
  services.app.units = [ "app.service" ];
}"""


@pytest.fixture(scope="module")
def script(nix_env: dict[str, str]) -> str:
    system: dict[str, Any] = evaluate(nix_env, STEWARD_SETTINGS)
    # The wrapper is the only program installed: not the package too (two bin/steward).
    (wrapper,) = system["environment"]["systemPackages"]
    assert wrapper.endswith("-steward")
    # --json shows a derivation as its path: its text is asked for by name.
    expression = (f"(builtins.head (import {HERE / 'eval.nix'} {{ steward = {STEWARD_SETTINGS}; }})"
                  ".environment.systemPackages).text")  # fmt: skip
    done = nix(nix_env, "--eval", "--strict", "--json", "-E", expression)
    assert done.returncode == 0, done.stderr
    text: str = json.loads(done.stdout)
    return text


def runnable(script: str, tmp_path: Path) -> Path:
    """The script with the recording systemd-run and a stand-in program."""
    record = tmp_path / "systemd-run"
    record.write_text(f'#!/bin/sh\nprintf "%s\\n" "$@" > {tmp_path}/argv\n', encoding="utf-8")
    record.chmod(0o755)
    text = re.sub(r"/nix/store/[a-z0-9]{32}-systemd/bin/systemd-run", str(record), script)
    path = tmp_path / "steward"
    path.write_text("#!/bin/sh\n" + text, encoding="utf-8")
    path.chmod(0o755)
    return path


@pytest.mark.skipif(os.getuid() != 0, reason="runs the wrapper as root")
def test_root_runs_the_program_as_the_bot_with_its_environment_and_credentials(
    script: str, tmp_path: Path
) -> None:
    done = subprocess.run([runnable(script, tmp_path), "doctor", "--x", "a b"],
                          capture_output=True, text=True, timeout=10, check=False,
                          stdin=subprocess.DEVNULL)  # fmt: skip
    assert done.returncode == 0, done.stderr
    argv = (tmp_path / "argv").read_text(encoding="utf-8").splitlines()
    unit = next(a for a in argv if a.startswith("--unit=")).removeprefix("--unit=")
    assert re.fullmatch(r"steward-cli-[0-9]+", unit)
    assert {"--pipe", "--wait", "--collect", "--uid=steward", "--gid=steward",
            "--working-directory=/var/lib/steward"} <= set(argv)  # fmt: skip
    assert "--property=LoadCredential=telegram-token:/run/keys/telegram-token" in argv
    assert (f"--setenv=STEWARD_TELEGRAM_TOKEN_FILE=/run/credentials/{unit}.service/"
            "telegram-token") in argv  # fmt: skip
    assert "--setenv=STEWARD_DESIRED_STATE=/var/lib/steward/desired-state.json" in argv
    assert "--setenv=STEWARD_CATALOGUE=/etc/steward/catalogue.json" in argv
    assert "--setenv=STEWARD_DOMAIN=it's.example.org" in argv  # quoted, not split
    assert argv[-4:] == ["/nix/store/00000000000000000000000000000000-steward-0.1.0/bin/steward",
                         "doctor", "--x", "a b"]  # fmt: skip
    assert argv[argv.index("--") + 1].endswith("/bin/steward")


@pytest.mark.skipif(os.getuid() != 0, reason="runs the wrapper as root")
def test_recover_stays_root_with_the_bots_environment_and_credentials(
    script: str, tmp_path: Path
) -> None:
    """It writes /etc/nixos and starts steward-restore-foreign@, which the bot may not."""
    done = subprocess.run([runnable(script, tmp_path), "recover", "--yes"], capture_output=True,
                          text=True, timeout=10, check=False, stdin=subprocess.DEVNULL)  # fmt: skip
    assert done.returncode == 0, done.stderr
    argv = (tmp_path / "argv").read_text(encoding="utf-8").splitlines()
    assert {"--uid=root", "--gid=root", "--working-directory=/var/lib/steward"} <= set(argv)
    assert "--uid=steward" not in argv
    assert "--property=LoadCredential=telegram-token:/run/keys/telegram-token" in argv
    assert "--setenv=STEWARD_BACKUP_UNITS=1" in argv
    assert argv[-2:] == ["recover", "--yes"]
    # Only the first word decides: an argument named recover does not make root of the rest.
    (tmp_path / "argv").unlink()
    subprocess.run([runnable(script, tmp_path), "console", "recover"], capture_output=True,
                   timeout=10, check=True, stdin=subprocess.DEVNULL)  # fmt: skip
    assert "--uid=steward" in (tmp_path / "argv").read_text(encoding="utf-8").splitlines()


@pytest.mark.skipif(shutil.which("setpriv") is None, reason="needs setpriv")
def test_anyone_else_is_refused_politely_and_nothing_runs(script: str, tmp_path: Path) -> None:
    # Where nobody can read it: pytest's folders are root's own.
    public = Path(tempfile.mkdtemp(prefix="steward-wrapper-"))
    try:
        public.chmod(0o755)
        path = shutil.copy(runnable(script, tmp_path), public / "steward")
        done = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                               path, "console"], capture_output=True, text=True, timeout=10,
                              check=False)  # fmt: skip
    finally:
        shutil.rmtree(public)
    assert done.returncode == 1
    assert done.stderr.strip() == (
        "steward: this acts as the bot on the server's real state, so only root "
        "(sudo steward ...) or the steward user may run it."
    )
    assert not (tmp_path / "argv").exists()
