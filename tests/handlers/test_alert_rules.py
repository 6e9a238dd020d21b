"""The alert state machine: one message per transition, recovered after critical, hysteresis."""

from __future__ import annotations

import itertools
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from handlers.alert_rules import DISK, AlertState, Kind, Level, Thresholds, Transition, step

START = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


def run(values: list[float], thresholds: Thresholds = DISK) -> tuple[list[Transition], AlertState]:
    state = AlertState("disk:/")
    sent: list[Transition] = []
    for minute, value in enumerate(values):
        level = thresholds.level(value, state.level)
        state, transition = step(state, level, f"{value:.0f}%", START + timedelta(minutes=minute))
        if transition is not None:
            sent.append(transition)
    return sent, state


readings = st.lists(st.floats(min_value=0, max_value=100, allow_nan=False), max_size=60)


@settings(max_examples=500, deadline=None)
@given(readings)
def test_no_transition_is_sent_twice_and_recovered_follows_critical(values: list[float]) -> None:
    sent, state = run(values)
    kinds = [t.kind for t in sent]
    for before, after in itertools.pairwise(kinds):
        assert before != after, kinds
        if before is Kind.CRITICAL:
            assert after is Kind.RECOVERED, kinds
    if kinds:
        assert kinds[0] is not Kind.RECOVERED
    # What was announced last is where the state says it stands.
    announced = {Kind.WARN: Level.WARN, Kind.CRITICAL: Level.CRITICAL, Kind.RECOVERED: Level.OK}
    assert state.announced == (announced[kinds[-1]] if kinds else Level.OK)
    assert all(t.lasted is not None and t.lasted >= timedelta(0) for t in sent
               if t.kind is Kind.RECOVERED)  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(readings)
def test_a_message_goes_out_exactly_when_the_announced_level_changes(values: list[float]) -> None:
    state = AlertState("disk:/")
    for value in values:
        before = state.announced
        level = DISK.level(value, state.level)
        state, transition = step(state, level, "", START)
        assert (transition is not None) == (state.announced != before)


def test_a_disk_hovering_at_the_threshold_warns_once() -> None:
    sent, state = run([84.0, 85.2, 84.8, 85.1, 83.5, 85.4, 84.9])
    assert [t.kind for t in sent] == [Kind.WARN]
    assert state.level is Level.WARN


def test_critical_then_down_to_warn_is_not_announced_and_recovery_says_how_long() -> None:
    sent, _ = run([50, 96, 91, 90, 40])
    assert [t.kind for t in sent] == [Kind.CRITICAL, Kind.RECOVERED]
    assert sent[1].lasted == timedelta(minutes=3)
    assert sent[1].detail == "40%"


def test_a_snoozed_alert_changes_state_but_holds_its_message_back() -> None:
    state = AlertState("memory", snoozed_until=START + timedelta(hours=1))
    state, transition = step(state, Level.WARN, "91%", START)
    assert transition is not None
    assert not transition.delivered
    assert state.announced is Level.WARN
    state, transition = step(state, Level.OK, "50%", START + timedelta(hours=2))
    assert transition is not None
    assert transition.kind is Kind.RECOVERED
    assert transition.delivered


def test_a_snooze_holds_only_the_level_it_was_given_at() -> None:
    state = AlertState("disk:/")
    state, _ = step(state, Level.WARN, "91%", START)
    state = replace(state, snoozed_until=START + timedelta(hours=1), snoozed_level=Level.WARN)
    state, held = step(state, Level.WARN, "93%", START + timedelta(minutes=1))
    assert held is None  # no news at the snoozed level
    state, critical = step(state, Level.CRITICAL, "97%", START + timedelta(minutes=2))
    assert critical is not None
    assert critical.kind is Kind.CRITICAL
    assert critical.delivered
    assert not state.quiet(START + timedelta(minutes=3))
    _, recovered = step(state, Level.OK, "40%", START + timedelta(minutes=4))
    assert recovered is not None
    assert recovered.delivered


def test_a_snoozed_critical_holds_its_recovery_and_a_new_warning_back() -> None:
    state = AlertState("memory", Level.CRITICAL, Level.CRITICAL, START, "98%",
                       START + timedelta(hours=1), Level.CRITICAL)  # fmt: skip
    state, recovered = step(state, Level.OK, "40%", START + timedelta(minutes=1))
    assert recovered is not None
    assert not recovered.delivered
    _, warned = step(state, Level.WARN, "92%", START + timedelta(minutes=2))
    assert warned is not None
    assert not warned.delivered
