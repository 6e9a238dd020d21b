"""Root's check of the bot's desired state (providers.nixos.admission): the bot's own rules
again, and root keys only with a TOTP code of a secret the bot does not have."""

from __future__ import annotations

import json
from pathlib import Path

import pyotp
import pytest

from providers.nixos.admission import LEDGER, MAX_FAILURES, Admission, RefusedError
from providers.nixos.base import DesiredState, SystemState
from providers.nixos.desired import DesiredStateFile
from providers.nixos.sshkeys import fingerprint

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIA9NcAVSWVPiChpEzN4D6yCslK/Z5WnR8ZfMZgqlB+oF alice"
PRINT = "SHA256:4V6Me0geGbV4rC8dmpfNWrD3aX5MKtBJlNQ+Je/AZUc"
OTHER = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAABAgMEBQYHCAkKCwwNDg8QERITFBUWFxgZGhscHR4f eve"
SECRET = pyotp.random_base32()
NOW = 1_800_000_000


class Clock:
    def __init__(self) -> None:
        self.now = float(NOW)

    def __call__(self) -> float:
        return self.now


def code_at(at: int) -> str:
    return pyotp.TOTP(SECRET).at(at)


@pytest.fixture
def bot_file(tmp_path: Path) -> DesiredStateFile:
    return DesiredStateFile(tmp_path / "bot" / "desired-state.json")


def root(tmp_path: Path, clock: Clock, secret: str | None = SECRET) -> Admission:
    return Admission(tmp_path / "root", frozenset({"nextcloud"}), secret, clock)


def with_key(key: str, code: str, at: int) -> DesiredState:
    proof = ((fingerprint(key), code, at),)
    return DesiredState(system=SystemState(root_keys=(key,), root_key_codes=proof))


def test_a_key_with_its_code_is_admitted_once_and_the_code_never_again(
    tmp_path: Path, bot_file: DesiredStateFile
) -> None:
    clock = Clock()
    bot_file.update_sync(lambda _: with_key(KEY, code_at(NOW), NOW))
    done = root(tmp_path, clock).admit(bot_file.path)
    assert done.approved == (PRINT,)
    applied = json.loads((tmp_path / "root" / "desired-state.json").read_text())
    assert applied["system"]["ssh"] == {"rootKeys": [KEY]}  # the code stays behind
    # Admitted before: later rebuilds need no code for it, however old the one it came with.
    clock.now += 7 * 86400
    assert root(tmp_path, clock).admit(bot_file.path).approved == ()
    # The same code, for another key, is refused: each code is good once.
    bot_file.update_sync(lambda _: with_key(OTHER, code_at(NOW), int(clock.now - 60)))
    with pytest.raises(RefusedError, match=r"wrong TOTP code|used before"):
        root(tmp_path, clock).admit(bot_file.path)


def test_a_reused_code_within_its_window_is_refused(
    tmp_path: Path, bot_file: DesiredStateFile
) -> None:
    clock = Clock()
    bot_file.update_sync(lambda _: with_key(KEY, code_at(NOW), NOW))
    root(tmp_path, clock).admit(bot_file.path)
    bot_file.update_sync(lambda _: with_key(OTHER, code_at(NOW), NOW))
    with pytest.raises(RefusedError, match="used before"):
        root(tmp_path, clock).admit(bot_file.path)
    assert json.loads((tmp_path / "root" / "desired-state.json").read_text())["system"][
        "ssh"]["rootKeys"] == [KEY]  # fmt: skip


def test_old_codes_and_guessing_are_refused_and_guessing_locks_the_path(
    tmp_path: Path, bot_file: DesiredStateFile
) -> None:
    clock = Clock()
    bot_file.update_sync(lambda _: with_key(KEY, code_at(NOW - 3600), NOW - 3600))
    with pytest.raises(RefusedError, match="too long ago"):
        root(tmp_path, clock).admit(bot_file.path)
    right = code_at(NOW)
    wrong = f"{(int(right) + 1) % 1_000_000:06d}"
    for _ in range(MAX_FAILURES):
        bot_file.update_sync(lambda _: with_key(KEY, wrong, NOW))
        with pytest.raises(RefusedError, match="wrong TOTP code"):
            root(tmp_path, clock).admit(bot_file.path)
    bot_file.update_sync(lambda _: with_key(KEY, right, NOW))
    with pytest.raises(RefusedError, match="locked until root removes"):
        root(tmp_path, clock).admit(bot_file.path)
    (tmp_path / "root" / LEDGER).unlink()  # an admin on a root shell
    assert root(tmp_path, clock).admit(bot_file.path).approved == (PRINT,)


def test_without_the_credential_no_root_key_passes_even_with_a_right_code(
    tmp_path: Path, bot_file: DesiredStateFile
) -> None:
    bot_file.update_sync(lambda _: with_key(KEY, code_at(NOW), NOW))
    with pytest.raises(RefusedError, match="root keys from chat are off"):
        root(tmp_path, Clock(), secret=None).admit(bot_file.path)
    assert not (tmp_path / "root" / "desired-state.json").exists()


@pytest.mark.parametrize(
    ("system", "services", "complaint"),
    [
        ({"timezone": "Mars/Olympus"}, {}, "not in the time zone database"),
        ({}, {"sshd": {"enable": True}}, "sshd is not in the catalogue"),
        ({"ssh": {"rootKeys": ["ssh-rsa " + KEY.split()[1]]}}, {}, "not an ssh-rsa key"),
        ({"ssh": {"rootKeys": [KEY + "\n"]}}, {}, "is not allowed here"),
        ({"ssh": {"rootKeys": [KEY + "\nssh-ed25519 AAAA"]}}, {}, "is not allowed here"),
        ({"shell": "/bin/sh"}, {}, "unknown key 'shell'"),
    ],
)
def test_root_refuses_what_the_bot_would_never_write(
    tmp_path: Path, system: dict[str, object], services: dict[str, object], complaint: str
) -> None:
    source = tmp_path / "desired-state.json"
    source.write_text(json.dumps({"version": 1, "services": services, "system": system}))
    with pytest.raises(RefusedError, match=complaint):
        root(tmp_path, Clock()).admit(source)
    assert not (tmp_path / "root" / "desired-state.json").exists()
