"""How long the daily report takes to build: 40 services, each backed up, and a year of host
samples (every 5 minutes, for two disks and memory: about 315,000 rows) in SQLite.

The providers are the demo's in-memory ones, so what is measured is Steward's own work: the
queries for the "full in ~N days" estimates, the backup ages and the text. Target: the median
of 20 builds at most 200 ms.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import insert

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bot.storage.database import Database  # noqa: E402
from bot.storage.models import samples  # noqa: E402
from bot.storage.stores import SqlAuditLog, SqlKeyValue, SqlSamples  # noqa: E402
from handlers.catalog import build_registry  # noqa: E402
from handlers.core.context import Deps  # noqa: E402
from handlers.reports import build_report  # noqa: E402
from providers.backup.base import BackupReason  # noqa: E402
from providers.demo import DemoServer  # noqa: E402
from providers.host.catalogue import ServiceCatalogue, ServiceInfo  # noqa: E402

BUILDS = int(os.environ.get("BENCH_ROUNDS", "20"))
TARGET_MS = 200.0
SERVICES = 40


async def main() -> int:
    now = datetime.now(UTC)
    with tempfile.TemporaryDirectory(prefix="steward-bench-report-") as folder:
        db = Database(f"sqlite:///{Path(folder) / 'steward.db'}")
        db.ensure_schema()
        rows = []
        start = now - timedelta(days=365)
        for step in range(365 * 24 * 12):
            at = start + timedelta(minutes=5 * step)
            fill = 40 + 30 * step / (365 * 24 * 12)
            rows += [
                {"at": at, "metric": "disk:/", "value": fill},
                {"at": at, "metric": "disk:/data", "value": fill + 10},
                {"at": at, "metric": "memory", "value": 55.0},
            ]
        with db.transaction() as conn:
            conn.execute(insert(samples), rows)
        server = DemoServer.create(step_seconds=0.0)
        services = [
            ServiceInfo(f"svc{i}", f"Service {i}", "", (f"svc{i}.service",), (f"/srv/svc{i}",))
            for i in range(SERVICES)
        ]
        engine = server.backups
        engine.files.update({f"/srv/svc{i}/data": b"x" * 100 for i in range(SERVICES)})
        for info in services:
            await engine.backup(info.id, [Path(info.folders[0])], BackupReason.SCHEDULED)
        deps = Deps(
            host=server.host, services=server.services, catalogue=ServiceCatalogue(services),
            audit=SqlAuditLog(db), registry=build_registry(), timezone=UTC, nixos=server.nixos,
            desired=server.desired, rebuilds=server.rebuilds, notes=SqlKeyValue(db),
            cloud=server.cloud, storage=server.storage, backups=engine,
            samples=SqlSamples(db),
        )  # fmt: skip
        report = await build_report(deps, now)  # warm: imports, the page cache
        assert report.text.count("last backup") == SERVICES
        times = []
        for _ in range(BUILDS):
            started = time.perf_counter()
            await build_report(deps, now)
            times.append((time.perf_counter() - started) * 1000)
        db.dispose()
    median = statistics.median(times)
    ok = median <= TARGET_MS
    print(f"Report benchmark: {SERVICES} services, {len(rows):,} samples, {BUILDS} builds")
    print()
    print("| measure | Steward | target | |")
    print("|---|---|---|---|")
    print(f"| daily report build, median | {median:.1f} ms | ≤ {TARGET_MS:.0f} ms | "
          f"{'ok' if ok else 'MISS'} |")  # fmt: skip
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
