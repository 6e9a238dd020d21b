"""Import what is configured and nothing else: the bot lives beside the services it manages."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from bot import cli
from bot.config import Settings, load_settings
from bot.transports.router import OutboxRouter

if TYPE_CHECKING:
    from bot.app import App

PROBE = """
import json, sys
from bot.app import build_app
from bot.config import load_settings
app = build_app(load_settings(), demo=True, console_admin=True)
app.close()
print(json.dumps(sorted(m.split(".")[0] for m in sys.modules)))
"""


def _modules_after_start(state: Path) -> set[str]:
    env = {**os.environ, "STEWARD_STATE_DIR": str(state)}
    result = subprocess.run(
        [sys.executable, "-c", PROBE],
        capture_output=True,
        text=True,
        env=env,
        cwd=state,
        timeout=60,
        check=True,
    )
    return set(json.loads(result.stdout.strip().splitlines()[-1]))


def test_alembic_never_enters_the_bot_on_a_first_start_or_a_restart(tmp_path: Path) -> None:
    # The first start migrates an empty database, in a child process (about 10 MB of Alembic
    # that would otherwise stay resident until the next restart).
    first = _modules_after_start(tmp_path)
    second = _modules_after_start(tmp_path)
    assert "alembic" not in first
    assert "alembic" not in second
    assert (tmp_path / "steward.db").is_file()


def test_the_demo_loads_no_sdk_and_no_chat_library(tmp_path: Path) -> None:
    modules = _modules_after_start(tmp_path)
    unexpected = {"telegram", "nio", "hcloud", "b2sdk", "cloudflare", "apscheduler", "psutil"}
    unexpected |= {"pydo", "azure"}  # DigitalOcean's SDK and the azure-core under it
    unexpected |= {"scaleway", "scaleway_core", "yaml", "dateutil"}  # Scaleway's
    unexpected |= {"ovh"}
    assert not modules & unexpected


TRANSPORTS_PROBE = """
import json, sys
from bot.app import build_app
from bot.cli import _matrix, _telegram
from bot.config import load_settings
settings = load_settings()
app = build_app(settings, demo=True)
built = (_telegram(settings, app.router), _matrix(settings, app))
names = [type(t).__name__ for t in built if t is not None]
app.close()
print(json.dumps([names, sorted(sys.modules)]))
"""


def _built_transports(state: Path, **env: str) -> tuple[list[str], set[str]]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("STEWARD_")}
    variables = {**clean, "STEWARD_STATE_DIR": str(state), **env}
    result = subprocess.run(
        [sys.executable, "-c", TRANSPORTS_PROBE],
        capture_output=True, text=True, env=variables, cwd=state, timeout=60, check=True,
    )  # fmt: skip
    names, modules = json.loads(result.stdout.strip().splitlines()[-1])
    return names, set(modules)


def test_telegram_alone_loads_no_matrix_library_and_no_heavy_stack(tmp_path: Path) -> None:
    names, modules = _built_transports(tmp_path, STEWARD_TELEGRAM_TOKEN="1:" + "x" * 35)
    assert names == ["TelegramTransport"]
    assert "nio" not in modules
    assert "bot.transports.matrix_login" not in modules
    assert "telegram" in modules
    # Measured costs that bought nothing here: the ORM (6 MB) and pydantic (9 MB).
    assert "sqlalchemy.orm" not in modules
    assert "pydantic" not in modules


def test_matrix_alone_loads_no_telegram_library(tmp_path: Path) -> None:
    names, modules = _built_transports(
        tmp_path,
        STEWARD_MATRIX_HOMESERVER="http://127.0.0.1:9",
        STEWARD_MATRIX_USER="@steward:localhost",
        STEWARD_MATRIX_PASSWORD="x",
    )
    assert names == ["MatrixTransport"]
    assert "nio" in modules
    assert "telegram" not in modules


RUN_PROBE = """
import json, sys
from bot.cli import main
status = main(sys.argv[1:])
print(json.dumps([status, sorted(sys.modules)]))
"""


def _main(state: Path, *argv: str) -> tuple[int, set[str], str]:
    # STEWARD_ADMINS that is not a list of ids: the command stops at its settings, before any
    # transport or database, so what it loaded is the command line's own doing.
    clean = {k: v for k, v in os.environ.items() if not k.startswith("STEWARD_")}
    variables = {**clean, "STEWARD_STATE_DIR": str(state), "STEWARD_ADMINS": "everyone"}
    result = subprocess.run(
        [sys.executable, "-c", RUN_PROBE, *argv],
        capture_output=True, text=True, env=variables, cwd=state, timeout=60, check=True,
    )  # fmt: skip
    status, modules = json.loads(result.stdout.strip().splitlines()[-1])
    return status, set(modules), result.stderr


def test_steward_run_loads_no_argument_parser(tmp_path: Path) -> None:
    # argparse and gettext would stay for the bot's life (0.26 MB); `run` takes no options.
    status, modules, stderr = _main(tmp_path, "run")
    assert status == 2
    assert "STEWARD_ADMINS" in stderr  # the bad setting, named, in one line
    assert not modules & {"argparse", "gettext"}
    # Any other command line is parsed.
    status, modules, _ = _main(tmp_path, "db", "current")
    assert status == 2
    assert "argparse" in modules


HARDWARE_PROBES = {
    "providers.hardware.disks",
    "providers.hardware.arrays",
    "providers.hardware.ups",
    "providers.hardware.memory",
    "providers.demo.home",
}


def test_a_cloud_server_loads_no_hardware_probe(tmp_path: Path) -> None:
    """SMART disks, RAID arrays and a UPS belong to one's own hardware; a VM has none to see."""
    _, modules = _built_transports(tmp_path)  # the demo's cloud server
    assert not modules & HARDWARE_PROBES
    (tmp_path / "home").mkdir()
    _, modules = _built_transports(tmp_path / "home", STEWARD_DEMO="home")
    assert {"providers.hardware.memory", "providers.demo.home"} <= modules


THIS_MACHINE = {
    "providers.host.metrics",
    "providers.host.systemd",
    "providers.nixos.desired",
    "providers.nixos.rebuild",
    "providers.nixos.system",
}


REAL_PROBE = """
import json, sys
from bot.app import build_app
from bot.config import load_settings
build_app(load_settings()).close()
print(json.dumps(sorted(sys.modules)))
"""


def test_the_demo_does_not_hold_this_machines_providers_beside_its_fakes(tmp_path: Path) -> None:
    _, modules = _built_transports(tmp_path)
    assert "providers.demo" in modules
    assert not modules & THIS_MACHINE
    # A bot on this machine loads every one of them: the names above are the real modules.
    (tmp_path / "real").mkdir()
    clean = {k: v for k, v in os.environ.items() if not k.startswith("STEWARD_")}
    result = subprocess.run(
        [sys.executable, "-c", REAL_PROBE],
        capture_output=True, text=True, cwd=tmp_path / "real", timeout=60, check=True,
        env={**clean, "STEWARD_STATE_DIR": str(tmp_path / "real")},
    )  # fmt: skip
    real = set(json.loads(result.stdout.strip().splitlines()[-1]))
    assert "providers.demo" not in real
    assert real >= THIS_MACHINE


CLASSES_PROBE = """
import gc, json, sys
import bot.cli, bot.routine
from bot.app import build_app
from bot.config import load_settings
app = build_app(load_settings(), demo=True)
own = {"bot", "handlers", "providers", "values"}
classes = [c for c in gc.get_objects() if isinstance(c, type)
           and str(c.__dict__.get("__module__")).split(".")[0] in own]
protocols = sorted(c.__qualname__ for c in classes if getattr(c, "_is_protocol", False))
app.close()
print(json.dumps([len(classes), protocols, sorted(sys.modules)]))
"""


def test_the_contracts_are_for_the_type_checker_and_cost_the_bot_nothing(tmp_path: Path) -> None:
    # A Protocol holds a class, and a function and its code for every method: about 0.2 MB
    # for Steward's thirty, which nothing needs at run time (mypy checks them).
    result = subprocess.run(
        [sys.executable, "-c", CLASSES_PROBE],
        capture_output=True, text=True, cwd=tmp_path, timeout=60, check=True,
        env={**os.environ, "STEWARD_STATE_DIR": str(tmp_path)},
    )  # fmt: skip
    count, protocols, modules = json.loads(result.stdout.strip().splitlines()[-1])
    assert count > 100  # Steward's own classes are counted
    assert {"providers.host.base", "handlers.core.records", "handlers.core.progress"} <= set(
        modules
    )
    assert protocols == []


def _recorded_builds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> tuple[Settings, list[tuple[threading.Thread, App]]]:
    """Demo settings, and a list that each build adds its thread and its app to."""
    for name in [n for n in os.environ if n.startswith("STEWARD_")]:
        monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    builds: list[tuple[threading.Thread, App]] = []
    build = cli._build_app

    def recorded(settings: Settings, router: OutboxRouter) -> App:
        app = build(settings, router)
        builds.append((threading.current_thread(), app))
        return app

    monkeypatch.setattr(cli, "_build_app", recorded)
    return load_settings(state_dir=tmp_path, demo=True), builds


async def test_the_build_runs_in_a_thread_of_its_own_that_ends_with_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The imports of a build run deep: a thread kept for the bot's life (the loop's default
    # executor) would keep the stack pages they touched, and its allocator cache.
    settings, builds = _recorded_builds(tmp_path, monkeypatch)
    app = await cli._build_after(None, settings, OutboxRouter())
    try:
        ((builder, built),) = builds
        assert built is app
        assert builder is not threading.current_thread()  # the loop ran on meanwhile
        builder.join(timeout=10)
        assert not builder.is_alive()
    finally:
        app.close()


async def test_a_stop_while_building_waits_for_the_build_and_closes_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings, builds = _recorded_builds(tmp_path, monkeypatch)
    building = asyncio.ensure_future(cli._build_after(None, settings, OutboxRouter()))
    await asyncio.sleep(0)  # the build has begun in its thread
    building.cancel()
    with pytest.raises(asyncio.CancelledError):
        await building
    ((_, app),) = builds  # it ran to its end before the stop went through
    assert not app.db.inline  # and its database is closed
