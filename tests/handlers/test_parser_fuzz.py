"""Fuzz the command line splitter and every argument parser, then the whole engine.

Whatever a chat sends, parsing ends in a value of the declared type or in ``UsageError``; and
the engine answers every command line exactly once, never with a traceback.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TYPE_CHECKING

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.storage.database import Database
from handlers.catalog import build_registry
from handlers.core.messages import Command
from handlers.core.spec import Choice, CommandSpec, Integer, UsageError, Word
from handlers.core.spec import split_command_line as split
from providers.demo.server import demo_catalogue
from tests.conftest import ADMIN, CHAT, make_harness

if TYPE_CHECKING:
    from handlers.core.spec import ArgType

REGISTRY = build_registry()
SPECS: list[CommandSpec] = [entry.spec for entry in REGISTRY]
NAMES = [spec.name for spec in SPECS]
SERVICES = list(demo_catalogue())

_names = st.one_of(
    st.sampled_from(NAMES),
    st.sampled_from(NAMES).map(str.upper),
    st.from_regex(r"[a-z][a-z0-9_-]{0,12}", fullmatch=True),
    st.text(min_size=1, max_size=12),
)
_tokens = st.one_of(
    st.sampled_from(SERVICES),
    st.integers(-(10**14), 10**14).map(str),
    st.sampled_from(
        ["0", "+1", "-0", "100", "101", "\u0663", "\uff11", "\u00b2", "1e3", "on", "OFF"]
    ),
    st.from_regex(r"[A-Za-z0-9_.\-/!@]{1,70}", fullmatch=True),
    st.text(min_size=1, max_size=20),
)
_spaces = st.sampled_from([" ", "  ", "\t", "\u00a0", "\u3000", "\n", " \r\n "])


@st.composite
def command_lines(draw: st.DrawFn) -> str:
    prefix = draw(st.sampled_from(["/", "!", " /", "/ ", "", "//"]))
    name = draw(_names)
    suffix = draw(st.sampled_from(["", "@steward_bot", "@", "@@x"]))
    args = draw(st.lists(_tokens, max_size=5))
    separators = draw(st.lists(_spaces, min_size=len(args), max_size=len(args)))
    line = prefix + name + suffix
    for separator, token in zip(separators, args, strict=True):
        line += separator + token
    return line + draw(st.sampled_from(["", " ", "\n"]))


def _token_for(arg_type: ArgType) -> st.SearchStrategy[str]:
    if isinstance(arg_type, Integer):
        low = -1000 if arg_type.minimum is None else arg_type.minimum - 2
        high = 1000 if arg_type.maximum is None else arg_type.maximum + 2
        return st.integers(low, high).map(str)
    if isinstance(arg_type, Choice):
        return st.sampled_from(arg_type.options)
    if arg_type.metavar == "service":
        return st.one_of(st.sampled_from(SERVICES), st.sampled_from(SERVICES).map(str.upper))
    return st.one_of(st.sampled_from(NAMES), _tokens)


@st.composite
def well_formed_lines(draw: st.DrawFn) -> str:
    """A known command with arguments that mostly fit: this reaches the handlers."""
    spec = draw(st.sampled_from(SPECS))
    tokens = []
    for arg in spec.args:
        if not arg.required and draw(st.booleans()):
            break
        tokens.append(draw(_token_for(arg.type)))
    return " ".join([draw(st.sampled_from(["/", "!"])) + spec.name, *tokens])


LINES = st.one_of(st.text(max_size=80), command_lines(), well_formed_lines())


def _check_value(arg_type: ArgType, value: object) -> None:
    if isinstance(arg_type, Integer):
        assert type(value) is int
        assert arg_type.minimum is None or value >= arg_type.minimum
        assert arg_type.maximum is None or value <= arg_type.maximum
    elif isinstance(arg_type, Choice):
        assert value in arg_type.options
    elif isinstance(arg_type, Word):
        assert isinstance(value, str)
        assert value.isascii()
        assert not any(char.isspace() for char in value)
    else:  # pragma: no cover - a new ArgType needs a rule here
        raise TypeError(f"no rule for {arg_type!r}")


def test_the_registry_uses_only_argument_types_the_fuzz_knows() -> None:
    for spec in SPECS:
        for arg in spec.args:
            _check_value(arg.type, _example(arg.type))


def _example(arg_type: ArgType) -> object:
    if isinstance(arg_type, Integer):
        return arg_type.minimum or 0
    if isinstance(arg_type, Choice):
        return arg_type.options[0]
    return "x"


@settings(max_examples=2000, deadline=None)
@given(LINES)
def test_no_line_makes_a_parser_raise_anything_but_a_usage_error(line: str) -> None:
    parsed = split(line)
    if parsed is None:
        return
    name, tokens = parsed
    assert name
    assert name == name.lower()
    assert all(token and not any(char.isspace() for char in token) for token in tokens)
    for spec in SPECS:
        refusal: UsageError | None = None
        try:
            values = spec.parse(tokens)
        except UsageError as exc:
            refusal = exc
        if refusal is not None:
            assert refusal.usage == spec.usage
            assert refusal.reason
            continue
        assert list(values) == [arg.name for arg in spec.args]
        assert len(tokens) <= len(spec.args)
        for arg in spec.args:
            value = values[arg.name]
            if value is None:
                assert not arg.required
            else:
                _check_value(arg.type, value)


def test_the_engine_answers_every_fuzzed_command_line_exactly_once(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'fuzz.db'}")
    db.ensure_schema()
    harness = make_harness(db)
    runner = asyncio.Runner()
    seen: list[str] = []

    @settings(
        max_examples=300,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow],
    )
    @given(LINES)
    def run(line: str) -> None:
        parsed = split(line)
        if parsed is None:
            return
        name, args = parsed
        before = len(harness.outbox.messages)
        command = Command(name, args, ADMIN, CHAT, harness.clock(), "m1")
        runner.run(harness.engine.handle_command(command))
        replies = harness.outbox.texts()[before:]
        assert len(replies) == 1, (line, replies)
        assert "Traceback" not in replies[0]
        assert "Something went wrong" not in replies[0], (line, replies[0])
        seen.append(name)

    try:
        with runner:
            run()
    finally:
        db.dispose()
    assert len(seen) > 30, "the fuzz should mostly produce command lines"
