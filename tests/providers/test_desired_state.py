"""The desired-state file: schema, atomic writes, the kept previous version, corrupt files, and
a writer killed at any moment."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from providers.nixos.base import (
    DesiredState,
    DesiredStateError,
    ServiceState,
    SystemState,
    diff,
    digest_of,
)
from providers.nixos.desired import DesiredStateFile
from providers.nixos.memory import MemoryDesiredState
from providers.nixos.validation import schema, validate

ROOT = Path(__file__).resolve().parents[2]
KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl alice@phone"


def sample() -> DesiredState:
    return DesiredState(
        {"nextcloud": ServiceState(True, "cloud"), "forgejo": ServiceState(False)},
        SystemState(timezone="Europe/Berlin", auto_upgrade=True, allow_reboot=False,
                    ssh_password_auth=False, root_keys=(KEY,)),
    )  # fmt: skip


def test_a_state_survives_the_round_trip_through_json() -> None:
    state = sample()
    assert DesiredState.from_json(json.loads(state.render())) == state
    assert validate(state.to_json()) == []
    assert validate(DesiredState().to_json()) == []


@pytest.mark.parametrize(
    ("document", "complaint"),
    [
        ({"version": 2, "services": {}, "system": {}}, "version: must be one of 1"),
        ({"version": 1, "services": {}}, "system is missing"),
        ({"version": 1, "services": {"Next Cloud": {"enable": True}}, "system": {}}, "the name"),
        ({"version": 1, "services": {"a": {"enable": "yes"}}, "system": {}}, "must be a boolean"),
        ({"version": 1, "services": {"a": {"enable": True, "subdomain": "-x"}}, "system": {}},
         "not allowed"),
        ({"version": 1, "services": {}, "system": {"timezone": "../../etc"}}, "not allowed"),
        ({"version": 1, "services": {}, "system": {"ssh": {"rootKeys": ["rm -rf /"]}}},
         "not allowed"),
        ({"version": 1, "services": {}, "system": {"ssh": {"rootKeys": [KEY, KEY]}}}, "twice"),
        ({"version": 1, "services": {}, "system": {"shell": "bash"}}, "unknown key 'shell'"),
        ([], "must be an object"),
    ],
)  # fmt: skip
def test_the_schema_names_what_is_wrong(document: object, complaint: str) -> None:
    problems = validate(document)
    assert problems
    assert complaint in problems[0]
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(document, schema())


_leaf = st.one_of(
    st.booleans(), st.integers(-2, 2), st.none(),
    st.sampled_from(["cloud", "-bad", "UTC", "Europe/Berlin", "/var/lib", "x y", KEY, ""]),
)  # fmt: skip
_names = st.sampled_from(["nextcloud", "forgejo", "Bad Name", "enable", "subdomain", "location"])
_service = st.dictionaries(st.sampled_from(["enable", "subdomain", "location", "port"]), _leaf)
_system = st.fixed_dictionaries(
    {},
    optional={
        "timezone": _leaf,
        "autoUpgrade": st.dictionaries(st.sampled_from(["enable", "allowReboot", "x"]), _leaf),
        "ssh": st.dictionaries(
            st.sampled_from(["passwordAuthentication", "rootKeys"]),
            st.one_of(_leaf, st.lists(st.sampled_from([KEY, "nope", KEY + "x"]), max_size=3)),
        ),
    },
)
_document = st.fixed_dictionaries(
    {},
    optional={
        "version": st.sampled_from([1, 2, True, "1"]),
        "services": st.dictionaries(_names, st.one_of(_service, _leaf), max_size=3),
        "system": st.one_of(_system, _leaf),
        "extra": _leaf,
    },
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_document)
def test_our_validator_agrees_with_the_jsonschema_library(document: dict[str, Any]) -> None:
    ours = validate(document) == []
    theirs = jsonschema.Draft202012Validator(schema()).is_valid(document)
    assert ours == theirs


def test_diff_lists_each_changed_leaf() -> None:
    before = sample()
    after = before.with_service("forgejo", enable=True).with_system(timezone="UTC")
    changes = {c.path: (c.before, c.after) for c in diff(before, after)}
    assert changes == {
        "services.forgejo.enable": (False, True),
        "system.timezone": ("Europe/Berlin", "UTC"),
    }
    assert diff(before, before) == []


async def test_an_update_writes_atomically_and_keeps_the_previous_version(tmp_path: Path) -> None:
    store = DesiredStateFile(tmp_path / "desired-state.json")
    assert await store.read() == DesiredState()  # no file yet: nothing chosen
    first = await store.update(lambda s: s.with_service("nextcloud", enable=True))
    assert first.before == DesiredState()
    assert (await store.read()).enabled("nextcloud")
    assert not store.previous_path.exists()  # nothing was there to keep
    second = await store.update(lambda s: s.with_service("forgejo", enable=True))
    on_disk = store.path.read_bytes()
    assert digest_of(on_disk) == second.digest
    assert DesiredState.from_json(json.loads(store.previous_path.read_bytes())) == first.after
    assert oct(store.path.stat().st_mode & 0o777) == "0o640"
    # Nothing left behind in the folder but the file, its previous version and the lock.
    names = sorted(os.listdir(tmp_path))
    assert names == [
        ".desired-state.json.lock",
        "desired-state.json",
        "desired-state.json.previous",
    ]


async def test_an_update_that_changes_nothing_does_not_write(tmp_path: Path) -> None:
    store = DesiredStateFile(tmp_path / "desired-state.json")
    await store.update(lambda s: s.with_service("nextcloud", enable=True))
    inode = store.path.stat().st_ino
    written = await store.update(lambda s: s.with_service("nextcloud", enable=True))
    assert written.changes == []
    assert store.path.stat().st_ino == inode


@pytest.mark.parametrize(
    ("content", "says"),
    [
        (b'{"version": 1, "services": {', "is not valid JSON"),
        (b'{"version": 1, "services": {"x": {"enable": 1}}, "system": {}}', "does not fit"),
        (b"\xff\xfe garbage", "is not valid JSON"),
    ],
)
async def test_a_corrupt_file_is_reported_and_never_overwritten(
    tmp_path: Path, content: bytes, says: str
) -> None:
    path = tmp_path / "desired-state.json"
    path.write_bytes(content)
    store = DesiredStateFile(path)
    with pytest.raises(DesiredStateError, match=says) as caught:
        await store.read()
    assert "will not overwrite" in str(caught.value)
    with pytest.raises(DesiredStateError, match=says):
        await store.update(lambda s: s.with_service("nextcloud", enable=True))
    assert path.read_bytes() == content
    assert not store.previous_path.exists()


async def test_a_change_that_breaks_the_schema_is_not_written(tmp_path: Path) -> None:
    store = DesiredStateFile(tmp_path / "desired-state.json")
    await store.update(lambda s: s.with_service("nextcloud", enable=True))
    before = store.path.read_bytes()
    with pytest.raises(DesiredStateError, match="not written"):
        await store.update(lambda s: s.with_system(root_keys=("ssh-ed25519 $(reboot)",)))
    assert store.path.read_bytes() == before


async def test_restore_puts_the_previous_version_back_only_if_nobody_changed_it(
    tmp_path: Path,
) -> None:
    store = DesiredStateFile(tmp_path / "desired-state.json")
    await store.update(lambda s: s.with_service("nextcloud", enable=True))
    written = await store.update(lambda s: s.with_service("forgejo", enable=True))
    assert await store.restore(written.digest)
    assert not (await store.read()).enabled("forgejo")
    assert (await store.read()).enabled("nextcloud")
    # The restored-over version is the previous one now: the restore can itself be undone.
    assert DesiredState.from_json(json.loads(store.previous_path.read_bytes())) == written.after
    # A second restore with the same digest finds the file changed and leaves it alone.
    assert not await store.restore(written.digest)
    assert not (await store.read()).enabled("forgejo")


async def test_restore_of_the_first_write_brings_back_the_empty_state(tmp_path: Path) -> None:
    store = DesiredStateFile(tmp_path / "desired-state.json")
    written = await store.update(lambda s: s.with_service("nextcloud", enable=True))
    assert await store.restore(written.digest)
    assert await store.read() == DesiredState()


async def test_the_memory_store_follows_the_same_rules() -> None:
    store = MemoryDesiredState()
    written = await store.update(lambda s: s.with_service("nextcloud", enable=True))
    assert store.writes == 1
    assert await store.restore(written.digest)
    assert await store.read() == DesiredState()
    store.corrupt = True
    with pytest.raises(DesiredStateError, match="will not overwrite"):
        await store.read()


WRITER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from providers.nixos.desired import DesiredStateFile
    pause = sys.argv[2] == "pause"
    def hook():
        if pause:
            print("ready", flush=True)
            time.sleep(60)
    store = DesiredStateFile(Path(sys.argv[1]), before_rename=hook)
    flip = True
    while True:
        store.update_sync(lambda s: s.with_service("nextcloud", enable=flip))
        flip = not flip
        if pause:
            break
    """
)


def _writer(path: Path, mode: str) -> subprocess.Popen[str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.Popen(
        [sys.executable, "-c", WRITER, str(path), mode],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )


def test_a_writer_killed_between_write_and_rename_leaves_the_old_file(tmp_path: Path) -> None:
    path = tmp_path / "desired-state.json"
    store = DesiredStateFile(path)
    store.update_sync(lambda s: s.with_service("forgejo", enable=True))
    old = path.read_bytes()
    proc = _writer(path, "pause")
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "ready"
    # The new version is complete on disk under a temporary name at this moment.
    assert list(tmp_path.glob(".desired-state.json.*.tmp"))
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    proc.stdout.close()
    assert path.read_bytes() == old
    # The next writer cleans up what the dead one left and works normally.
    store.update_sync(lambda s: s.with_service("vaultwarden", enable=True))
    assert not list(tmp_path.glob(".desired-state.json.*.tmp"))
    assert store.read_sync().enabled("vaultwarden")


def test_a_writer_killed_at_random_moments_never_leaves_a_torn_file(tmp_path: Path) -> None:
    path = tmp_path / "desired-state.json"
    store = DesiredStateFile(path)
    base = DesiredState()
    versions = {
        base.with_service("nextcloud", enable=True).render(),
        base.with_service("nextcloud", enable=False).render(),
    }
    store.update_sync(lambda s: s.with_service("nextcloud", enable=False))
    rng = random.Random(5)
    for _ in range(12):
        proc = _writer(path, "loop")
        time.sleep(0.15 + rng.random() * 0.2)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        assert proc.stdout is not None
        proc.stdout.close()
        assert path.read_bytes() in versions
        assert store.read_sync() is not None
        if store.previous_path.exists():
            assert store.previous_path.read_bytes() in versions
