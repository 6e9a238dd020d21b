"""Every command's usage errors, as an admin gets them through the engine: each one is a
sentence that starts with a capital letter and ends with the usage."""

from __future__ import annotations

import re

import pytest

from handlers.catalog import build_registry
from handlers.core.spec import CommandSpec, Integer
from tests.conftest import ADMIN, Harness

SPECS = sorted(
    (entry.spec for entry in build_registry() if not entry.spec.internal), key=lambda s: s.name
)


def bad_lines(spec: CommandSpec) -> list[str]:
    """Command lines that cannot parse: an argument too many, each required one missing, and a
    token no argument type takes (a path for a word, text for a number)."""
    good = ["x" if not isinstance(arg.type, Integer) else "1" for arg in spec.args]
    lines = [" ".join([f"/{spec.name}", *good, "extra", "extra"])]
    for index, arg in enumerate(spec.args):
        if arg.required:
            lines.append(" ".join([f"/{spec.name}", *good[:index]]))
        lines.append(" ".join([f"/{spec.name}", *good[:index], "../etc!"]))
    return lines


def first_letter(text: str) -> str:
    plain = re.sub(r"<[^>]+>", "", text)
    return next((char for char in plain if char.isalpha()), "")


def test_every_command_is_walked() -> None:
    assert len(SPECS) > 40


@pytest.mark.parametrize("spec", SPECS, ids=lambda spec: spec.name)
async def test_usage_errors_start_with_a_capital_letter(
    harness: Harness, spec: CommandSpec
) -> None:
    for line in bad_lines(spec):
        reply = await harness.say(line, ADMIN)
        if "Usage:" not in reply:
            continue  # the line parsed after all (a word that takes any token)
        assert first_letter(reply).isupper(), f"{line!r} -> {reply!r}"
        assert reply.startswith(first_letter(reply)), f"{line!r} -> {reply!r}"
