"""/services with 40 services and 80 units, against one ``systemctl is-active`` call per unit.

Both sides use the same fake systemctl (tests/support/fakebin): Steward's /services goes
through the engine, its real SystemctlServiceManager (one ``systemctl show`` for every unit)
and its real database for the audit row; the baseline asks ``systemctl is-active UNIT`` for
each of the 80 units in turn, the way a naive status page would. Rounds alternate. Prints a
table and exits 1 when the target is missed: Steward's median at most 1/10 of the baseline's.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bot.storage.database import Database  # noqa: E402
from bot.storage.stores import (  # noqa: E402
    SqlAuditLog,
    SqlConfirmationStore,
    SqlJobStore,
    SqlKeyValue,
)
from handlers.catalog import build_registry  # noqa: E402
from handlers.core.access import AccessPolicy  # noqa: E402
from handlers.core.context import Deps  # noqa: E402
from handlers.core.engine import Engine  # noqa: E402
from handlers.core.messages import Actor, ChatRef, Command  # noqa: E402
from handlers.core.spec import Role  # noqa: E402
from providers.host.catalogue import ServiceCatalogue, ServiceInfo  # noqa: E402
from providers.host.metrics import PsutilHost  # noqa: E402
from providers.host.systemd import SystemctlServiceManager  # noqa: E402
from providers.nixos.desired import DesiredStateFile  # noqa: E402
from providers.nixos.rebuild import SystemdRebuilds  # noqa: E402
from providers.nixos.system import NixosRebuildSystem  # noqa: E402
from tests.support.chat import RecordingOutbox  # noqa: E402
from tests.support.fake_system import FakeSystem  # noqa: E402

ROUNDS = int(os.environ.get("BENCH_ROUNDS", "5"))
SERVICES = 40
TARGET = 0.1
ADMIN = Actor("console", "bench", "bench")
CHAT = ChatRef("console", "bench")


def build(work: Path, fake: FakeSystem) -> tuple[Engine, RecordingOutbox, list[str]]:
    services, units = [], []
    for index in range(SERVICES):
        pair = (f"svc{index}.service", f"svc{index}-worker.service")
        for unit in pair:
            fake.add_unit(unit)
        units.extend(pair)
        services.append(ServiceInfo(f"svc{index}", f"Service {index}", "", pair))
    db = Database(f"sqlite:///{work / 'steward.db'}")
    db.ensure_schema()
    deps = Deps(
        host=PsutilHost(),
        services=SystemctlServiceManager(),
        catalogue=ServiceCatalogue(services),
        audit=SqlAuditLog(db),
        registry=build_registry(),
        timezone=UTC,
        nixos=NixosRebuildSystem(fake.root),
        desired=DesiredStateFile(work / "desired-state.json"),
        rebuilds=SystemdRebuilds(),
        notes=SqlKeyValue(db),
    )
    outbox = RecordingOutbox()
    engine = Engine(
        deps=deps,
        access=AccessPolicy.from_lists([], [], [], console_role=Role.ADMIN),
        confirmations=SqlConfirmationStore(db),
        jobs=SqlJobStore(db),
        outbox=outbox,
    )
    return engine, outbox, units


async def steward_round(engine: Engine, outbox: RecordingOutbox) -> float:
    started = time.perf_counter()
    await engine.handle_command(Command("services", (), ADMIN, CHAT, datetime.now(UTC)))
    elapsed = time.perf_counter() - started
    assert outbox.last.current.text.count("active") == SERVICES, outbox.last.current.text
    return elapsed


def baseline_round(units: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    for unit in units:
        done = subprocess.run(
            ["systemctl", "is-active", unit], env=env, capture_output=True, timeout=30, check=False
        )
        assert done.stdout.strip() == b"active"
    return time.perf_counter() - started


async def main() -> int:
    with tempfile.TemporaryDirectory(prefix="steward-bench-") as folder:
        work = Path(folder)
        fake = FakeSystem(work)
        os.environ.update(fake.env())
        engine, outbox, units = build(work, fake)
        env = fake.env()
        await steward_round(engine, outbox)  # warm: imports, the database, the page cache
        baseline_round(units[:4], env)
        steward, baseline = [], []
        for _ in range(ROUNDS):
            steward.append(await steward_round(engine, outbox))
            baseline.append(baseline_round(units, env))
        shows = [call for call in fake.calls("systemctl") if call[1] == "show"]
        assert len(shows) == ROUNDS + 1, "one systemctl show per /services"
    ours, theirs = statistics.median(steward), statistics.median(baseline)
    ratio = ours / theirs
    ok = ratio <= TARGET
    print(f"/services benchmark: {SERVICES} services, {len(units)} units, {ROUNDS} rounds each")
    print()
    print("| measure | Steward /services | one is-active per unit | ratio | target | |")
    print("|---|---|---|---|---|---|")
    print(
        f"| median | {ours * 1000:.1f} ms | {theirs * 1000:.1f} ms | {ratio:.3f}× | "
        f"≤ {TARGET}× | {'ok' if ok else 'MISS'} |"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
