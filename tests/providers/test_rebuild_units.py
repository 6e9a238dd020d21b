"""The rebuild units through the real adapter, against the fake systemctl, journalctl and
nixos-rebuild: start without blocking, follow the journal by cursor, tell the end, join a
running run, pick up again from a persisted run."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from providers.host.base import UnitError
from providers.nixos.base import REBUILD_UNIT, RebuildPoll, RebuildRun, rollback_unit
from providers.nixos.rebuild import SystemdRebuilds, parse_journal_json, strip_ansi
from tests.support.fake_system import FakeSystem


@pytest.fixture
def system(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeSystem:
    fake = FakeSystem(tmp_path)
    fake.install(monkeypatch)
    return fake


async def follow(rebuilds: SystemdRebuilds, run: RebuildRun) -> tuple[RebuildPoll, list[str]]:
    lines: list[str] = []
    for _ in range(400):
        poll = await rebuilds.poll(run)
        lines.extend(poll.lines)
        run = poll.run
        if poll.finished:
            return poll, lines
        await asyncio.sleep(0.05)
    raise AssertionError("the rebuild did not finish")


async def test_a_rebuild_is_started_followed_and_ends_with_a_new_generation(
    system: FakeSystem,
) -> None:
    rebuilds = SystemdRebuilds()
    before = system.current_generation()
    run = await rebuilds.prepare(REBUILD_UNIT)
    assert not run.joined
    assert not run.started
    run = await rebuilds.start(run)
    assert ["systemctl", "start", "--no-block", "--", REBUILD_UNIT] in system.calls("systemctl")

    poll, lines = await follow(rebuilds, run)
    assert poll.succeeded
    assert poll.run.run_id
    assert "building the system configuration..." in lines
    assert "activating the configuration..." in lines
    assert lines[-1] == "Finished Steward: nixos-rebuild switch."
    assert lines.count("building the system configuration...") == 1  # no line read twice
    assert system.current_generation() == before + 1


async def test_a_failed_build_ends_failed_with_the_builder_log(system: FakeSystem) -> None:
    system.fail_rebuild("error: attribute 'nextclud' missing")
    rebuilds = SystemdRebuilds()
    run = await rebuilds.start(await rebuilds.prepare(REBUILD_UNIT))
    poll, lines = await follow(rebuilds, run)
    assert poll.finished
    assert not poll.succeeded
    assert any("attribute 'nextclud' missing" in line for line in lines)
    assert system.unit(REBUILD_UNIT)["ActiveState"] == "failed"


async def test_a_second_request_joins_the_running_rebuild(system: FakeSystem) -> None:
    system.rebuild_delay(0.3)
    rebuilds = SystemdRebuilds()
    first = await rebuilds.start(await rebuilds.prepare(REBUILD_UNIT))
    assert await rebuilds.busy() == REBUILD_UNIT
    second = await rebuilds.prepare(REBUILD_UNIT)
    assert second.joined
    assert await rebuilds.start(second) == second  # not started again
    one, two = await asyncio.gather(follow(rebuilds, first), follow(rebuilds, second))
    assert one[0].succeeded
    assert two[0].succeeded
    assert one[0].run.run_id == two[0].run.run_id
    starts = [c for c in system.calls("systemctl") if c[1] == "start"]
    assert len(starts) == 1
    assert await rebuilds.busy() is None


async def test_a_persisted_run_is_followed_on_by_a_new_adapter(system: FakeSystem) -> None:
    """After a restart of the bot: the run comes back from JSON and reads only new lines."""
    system.rebuild_delay(0.3)
    rebuilds = SystemdRebuilds()
    run = await rebuilds.start(await rebuilds.prepare(REBUILD_UNIT))
    poll = await rebuilds.poll(run)
    while not poll.lines:
        await asyncio.sleep(0.05)
        poll = await rebuilds.poll(poll.run)
    seen = list(poll.lines)
    stored = json.loads(json.dumps(poll.run.to_json()))

    later, rest = await follow(SystemdRebuilds(), RebuildRun.from_json(stored))
    assert later.succeeded
    assert not set(seen) & set(rest)  # nothing read twice
    assert "activating the configuration..." in seen + rest


async def test_a_run_noted_but_not_yet_started_is_not_finished(system: FakeSystem) -> None:
    rebuilds = SystemdRebuilds()
    run = await rebuilds.prepare(REBUILD_UNIT)
    poll = await rebuilds.poll(run)
    assert not poll.finished
    assert poll.run.run_id == ""


async def test_the_rollback_unit_switches_to_the_generation_it_names(system: FakeSystem) -> None:
    first = system.current_generation()
    system.add_generation()
    system.add_generation()
    rebuilds = SystemdRebuilds()
    run = await rebuilds.start(await rebuilds.prepare(rollback_unit(first)))
    poll, _ = await follow(rebuilds, run)
    assert poll.succeeded
    assert system.current_generation() == first


async def test_only_stewards_units_are_accepted(system: FakeSystem) -> None:
    with pytest.raises(UnitError, match="not one of Steward's rebuild units"):
        await SystemdRebuilds().prepare("sshd.service")
    assert system.calls() == []


def test_journal_json_lines_are_decoded_and_stripped_of_colour() -> None:
    text = "\n".join(
        [
            json.dumps({"__CURSOR": "s=a;i=1", "MESSAGE": "\x1b[31;1merror:\x1b[0m it broke"}),
            json.dumps({"__CURSOR": "s=a;i=2", "MESSAGE": list(b"caf\xe9 \xff")}),
            "not json",
            "",
        ]
    )
    lines, cursor = parse_journal_json(text)
    assert lines == ("error: it broke", "caf\ufffd \ufffd")
    assert cursor == "s=a;i=2"
    assert strip_ansi("\x1b]0;title\x07plain") == "plain"


async def test_a_running_rollback_counts_as_a_rebuild_in_progress(system: FakeSystem) -> None:
    first = system.current_generation()
    system.add_generation()
    system.rebuild_delay(0.3)
    rebuilds = SystemdRebuilds()
    assert await rebuilds.busy() is None
    run = await rebuilds.start(await rebuilds.prepare(rollback_unit(first)))
    assert await rebuilds.busy() == rollback_unit(first)
    await follow(rebuilds, run)
    assert await rebuilds.busy() is None
