"""Command specifications: typed arguments, usage text, the command line splitter, the registry."""

from __future__ import annotations

import pytest

from handlers.core.context import Context
from handlers.core.messages import Reply
from handlers.core.registry import Registry
from handlers.core.spec import (
    SERVICE,
    Arg,
    Choice,
    CommandSpec,
    Integer,
    Role,
    UsageError,
    Word,
    split_command_line,
)

RESTART = CommandSpec("restart", "Restart a service", (Arg("service", SERVICE),))
AUDIT = CommandSpec(
    "audit", "Show the audit log", (Arg("count", Integer("N", 1, 100), required=False),)
)
POWER = CommandSpec(
    "power",
    "Switch something on or off",
    (Arg("target"), Arg("state", Choice(("on", "off"))), Arg("minutes", Integer(), False)),
)


async def _answer(ctx: Context, **values: object) -> Reply:
    return Reply("ok")


async def _preview(ctx: Context, **values: object) -> str:
    return "it changes things"


# -- usage ------------------------------------------------------------------------------------


def test_usage_shows_required_args_in_angle_brackets_and_optional_ones_in_square_brackets() -> None:
    assert RESTART.usage == "/restart <service>"
    assert AUDIT.usage == "/audit [N]"


def test_usage_names_a_plain_word_after_the_argument_and_lists_choices() -> None:
    assert POWER.usage == "/power <target> <on|off> [N]"


def test_a_command_without_arguments_has_its_name_as_usage() -> None:
    assert CommandSpec("status", "Status").usage == "/status"


# -- parsing ------------------------------------------------------------------------------------


def test_a_service_argument_is_parsed_by_name() -> None:
    assert RESTART.parse(["nextcloud"]) == {"service": "nextcloud"}


@pytest.mark.parametrize("token", ["Nextcloud", "../etc", "-rf", "next cloud", "", "a" * 65])
def test_a_service_argument_rejects_anything_that_is_not_a_lowercase_id(token: str) -> None:
    with pytest.raises(UsageError, match=r"usage: /restart <service>$"):
        RESTART.parse([token])


def test_a_word_accepts_dots_dashes_and_underscores_but_not_a_leading_symbol() -> None:
    word = Word()
    assert word.convert("web-01.example_org") == "web-01.example_org"
    for token in (".hidden", "-x", "a/b", "a;b", "é", "a" * 65):
        with pytest.raises(ValueError, match="Not a valid name"):
            word.convert(token)


def test_an_integer_is_converted_to_int_within_its_bounds() -> None:
    assert AUDIT.parse(["1"]) == {"count": 1}
    assert AUDIT.parse(["100"]) == {"count": 100}
    assert AUDIT.parse(["+7"]) == {"count": 7}


def test_an_integer_below_its_minimum_is_refused_with_the_bound_and_the_usage() -> None:
    with pytest.raises(UsageError) as caught:
        AUDIT.parse(["0"])
    assert str(caught.value) == "N must be at least 1; usage: /audit [N]"


def test_an_integer_above_its_maximum_is_refused_with_the_bound() -> None:
    with pytest.raises(UsageError, match=r"^N must be at most 100; usage: /audit \[N\]$"):
        AUDIT.parse(["101"])


def test_an_unbounded_integer_takes_negative_numbers() -> None:
    assert Integer().convert("-42") == -42


@pytest.mark.parametrize("token", ["ten", "1.5", "1e3", "0x10", "1_000", "1234567890123", "--1"])
def test_anything_but_a_short_whole_number_is_not_an_integer(token: str) -> None:
    with pytest.raises(UsageError, match=r"Not a whole number: .*; usage: /audit"):
        AUDIT.parse([token])


def test_a_choice_is_case_insensitive_and_returned_in_lowercase() -> None:
    values = POWER.parse(["lamp", "ON"])
    assert values == {"target": "lamp", "state": "on", "minutes": None}


def test_a_choice_outside_its_options_lists_them() -> None:
    with pytest.raises(UsageError, match=r"Not one of on, off: 'dim'; usage: /power"):
        POWER.parse(["lamp", "dim"])


def test_an_optional_argument_that_is_left_out_is_none() -> None:
    assert AUDIT.parse([]) == {"count": None}


def test_all_arguments_together_are_parsed_to_their_types() -> None:
    assert POWER.parse(["lamp", "off", "15"]) == {"target": "lamp", "state": "off", "minutes": 15}


def test_too_many_arguments_get_the_usage() -> None:
    with pytest.raises(UsageError) as caught:
        RESTART.parse(["nextcloud", "now"])
    assert str(caught.value) == "Too many arguments; usage: /restart <service>"


def test_arguments_to_a_command_that_takes_none_are_too_many() -> None:
    with pytest.raises(UsageError, match=r"Too many arguments; usage: /status$"):
        CommandSpec("status", "Status").parse(["now"])


def test_a_missing_required_argument_is_named_with_the_usage() -> None:
    with pytest.raises(UsageError) as caught:
        RESTART.parse([])
    assert str(caught.value) == "Missing <service>; usage: /restart <service>"
    assert caught.value.reason == "Missing <service>"
    assert caught.value.usage == "/restart <service>"


def test_the_second_missing_argument_is_the_one_named() -> None:
    with pytest.raises(UsageError, match=r"^Missing <on\|off>; usage: /power <target>"):
        POWER.parse(["lamp"])


# -- spec validation ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["", "Restart", "1up", "re start now", "/restart", "rés", "a" * 33, "dns-set"]
)
def test_a_spec_with_a_bad_name_is_rejected(name: str) -> None:
    with pytest.raises(ValueError, match="bad command name"):
        CommandSpec(name, "summary")


def test_a_spec_name_may_have_digits_underscores_and_a_subcommand() -> None:
    # Telegram's command menu takes letters, digits and underscores only.
    assert CommandSpec("dns_set_v2", "summary").name == "dns_set_v2"
    assert CommandSpec("sshkey add", "summary").usage == "/sshkey add"


def test_a_required_argument_after_an_optional_one_is_rejected() -> None:
    with pytest.raises(ValueError, match="a required argument follows an optional one"):
        CommandSpec("odd", "summary", (Arg("first", required=False), Arg("second")))


# -- split_command_line -------------------------------------------------------------------------


def test_a_slash_command_is_split_into_name_and_arguments() -> None:
    assert split_command_line("/restart nextcloud") == ("restart", ("nextcloud",))


def test_the_bot_suffix_of_telegram_groups_is_dropped() -> None:
    assert split_command_line("/restart@steward_bot nextcloud now") == (
        "restart",
        ("nextcloud", "now"),
    )


def test_a_bang_works_like_a_slash() -> None:
    assert split_command_line("!status") == ("status", ())


def test_whitespace_around_and_between_arguments_is_ignored() -> None:
    assert split_command_line("  \t/audit   5 \n") == ("audit", ("5",))


def test_the_command_name_is_lowercased_but_the_arguments_are_kept() -> None:
    assert split_command_line("/RESTART NextCloud") == ("restart", ("NextCloud",))


@pytest.mark.parametrize(
    "text", ["/", "!", "/ restart", "! x", "", "   ", "hello", "restart nextcloud", "/@bot x"]
)
def test_text_that_is_not_a_command_gives_none(text: str) -> None:
    assert split_command_line(text) is None


# -- registry -----------------------------------------------------------------------------------


def _registry_with(*specs: tuple[str, Role]) -> Registry:
    registry = Registry()
    for name, role in specs:
        registry.command(name, f"{name} summary", role=role)(_answer)
    return registry


def test_a_name_registered_twice_is_rejected() -> None:
    registry = _registry_with(("status", Role.VIEWER))
    with pytest.raises(ValueError, match="/status is registered twice"):
        registry.command("status", "again")(_answer)


def test_include_adds_the_commands_of_another_registry() -> None:
    registry = _registry_with(("status", Role.VIEWER))
    registry.include(_registry_with(("restart", Role.OPERATOR)))
    assert "restart" in registry
    assert "status" in registry
    entry = registry.get("restart")
    assert entry is not None
    assert entry.spec.role is Role.OPERATOR


def test_include_rejects_a_name_that_is_already_registered() -> None:
    registry = _registry_with(("status", Role.VIEWER))
    with pytest.raises(ValueError, match="/status is registered twice"):
        registry.include(_registry_with(("status", Role.ADMIN)))


def test_an_unknown_name_is_not_in_the_registry() -> None:
    registry = _registry_with(("status", Role.VIEWER))
    assert registry.get("nosuch") is None
    assert "nosuch" not in registry


def test_each_role_sees_what_it_may_run_in_name_order() -> None:
    registry = _registry_with(
        ("status", Role.VIEWER),
        ("reboot", Role.ADMIN),
        ("restart", Role.OPERATOR),
        ("audit", Role.ADMIN),
        ("help", Role.VIEWER),
    )
    assert [s.name for s in registry.visible_to(Role.VIEWER)] == ["help", "status"]
    assert [s.name for s in registry.visible_to(Role.OPERATOR)] == ["help", "restart", "status"]
    assert [s.name for s in registry.visible_to(Role.ADMIN)] == [
        "audit",
        "help",
        "reboot",
        "restart",
        "status",
    ]


def test_check_rejects_a_changing_command_without_a_preview() -> None:
    registry = Registry()
    registry.command("reboot", "Reboot", role=Role.ADMIN, changes=True)(_answer)
    with pytest.raises(ValueError, match="/reboot changes the server but has no preview"):
        registry.check()


def test_check_accepts_a_changing_command_once_it_has_a_preview() -> None:
    registry = Registry()
    entry = registry.command("reboot", "Reboot", role=Role.ADMIN, changes=True)(_answer)
    entry.preview(_preview)
    registry.check()
    assert entry.preview_fn is _preview


def test_the_registry_passes_its_options_to_the_spec() -> None:
    registry = Registry()
    entry = registry.command(
        "restore",
        "Restore a backup",
        args=(Arg("service", SERVICE),),
        role=Role.ADMIN,
        changes=True,
        two_person=True,
        background=True,
    )(_answer)
    spec = entry.spec
    assert (spec.role, spec.changes, spec.two_person, spec.background) == (
        Role.ADMIN,
        True,
        True,
        True,
    )
    assert spec.usage == "/restore <service>"
