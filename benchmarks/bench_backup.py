"""A 200 MB backup through Steward's restic adapter, against the same `restic backup` by hand.

The data is FIELD-NOTES' mix: 150 files of 1 MB random bytes and 500 files of 100 KB text.
Each round makes two fresh local repositories (not timed), then times Steward's
``ResticBackupEngine.backup`` (which reads restic's ``--json`` progress as it streams) and the
same restic command run by hand with its output captured, in alternating order. Prints a table
and exits 1 when Steward's median is above 1.05x restic's.
"""

from __future__ import annotations

import asyncio
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from providers.backup.base import BackupProgress, BackupReason  # noqa: E402
from providers.backup.restic import ResticBackupEngine, ResticSettings  # noqa: E402

ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
TARGET = 1.05


def make_data(folder: Path) -> int:
    rng = random.Random(200)
    total = 0
    for index in range(150):
        blob = rng.randbytes(1_000_000)
        (folder / f"random-{index:03d}.bin").write_bytes(blob)
        total += len(blob)
    words = ["steward", "backup", "restic", "nixos", "server", "chat", "keep", "daily"]
    for index in range(500):
        text = " ".join(rng.choice(words) for _ in range(20_000))[:100_000].encode()
        (folder / f"text-{index:03d}.txt").write_bytes(text)
        total += len(text)
    return total


def init(repo: Path, password: Path) -> None:
    subprocess.run(
        ["restic", "--password-file", str(password), "-r", str(repo), "init"],
        check=True, capture_output=True, timeout=120,
    )  # fmt: skip


def by_hand(repo: Path, password: Path, data: Path) -> float:
    started = time.perf_counter()
    subprocess.run(
        ["restic", "--password-file", str(password), "-r", str(repo), "backup", "--json",
         "--tag", "service:bench", "--tag", "reason:manual", "--", str(data)],
        check=True, capture_output=True, timeout=600,
    )  # fmt: skip
    return time.perf_counter() - started


async def through_steward(repo: Path, password: Path, data: Path) -> float:
    engine = ResticBackupEngine(ResticSettings(repository=str(repo), password_file=password))
    seen: list[float] = []

    async def progress(report: BackupProgress) -> None:
        seen.append(report.percent)

    started = time.perf_counter()
    await engine.backup("bench", [data], BackupReason.MANUAL, progress)
    elapsed = time.perf_counter() - started
    assert seen, "Steward saw no progress"
    return elapsed


async def main() -> int:
    with tempfile.TemporaryDirectory(prefix="steward-bench-backup-") as folder:
        work = Path(folder)
        data = work / "data"
        data.mkdir()
        size = make_data(data)
        password = work / "password"
        password.write_text("bench-password\n")
        password.chmod(0o600)
        steward, restic = [], []
        for index in range(ROUNDS):
            ours, theirs = work / f"steward-{index}", work / f"restic-{index}"
            init(ours, password)
            init(theirs, password)
            if index % 2:
                restic.append(by_hand(theirs, password, data))
                steward.append(await through_steward(ours, password, data))
            else:
                steward.append(await through_steward(ours, password, data))
                restic.append(by_hand(theirs, password, data))
    ours, theirs = statistics.median(steward), statistics.median(restic)
    ratio = ours / theirs
    ok = ratio <= TARGET
    print(f"Backup benchmark: {size / 1e6:.0f} MB, {ROUNDS} rounds each, a fresh local repository")
    print()
    print("| measure | Steward | restic by hand | ratio | target | |")
    print("|---|---|---|---|---|---|")
    print(f"| wall time, median | {ours:.2f} s | {theirs:.2f} s | {ratio:.3f}× | ≤ {TARGET}× | "
          f"{'ok' if ok else 'MISS'} |")  # fmt: skip
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
