"""Steward on Telegram against a bare python-telegram-bot echo bot, side by side in one run.

Both bots run as separate processes, each against its own instance of the same loopback fake
Bot API (tests/support/fake_telegram.py); rounds alternate between them so that machine noise
hits both alike. Times come from the fake's arrival timestamps (time.monotonic), not from
polling. Prints a table of ratios against the baseline and exits 1 when a target is missed.
"""

from __future__ import annotations

import logging
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.steward_build import compile_steward  # noqa: E402
from tests.support.fake_telegram import FakeBotAPI  # noqa: E402

ROUNDS = int(os.environ.get("BENCH_ROUNDS", "60"))
STARTS = int(os.environ.get("BENCH_STARTS", "5"))
BURSTS = int(os.environ.get("BENCH_BURSTS", "7"))
SETTLE = 0.05
BURST_CHATS, BURST_EACH = 50, 20
FIRST_USER = 500_000


@dataclass
class Bot:
    name: str
    fake: FakeBotAPI
    argv: list[str]
    env: dict[str, str]
    cwd: Path
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> float:
        """Start the process; return seconds from exec to its first getUpdates."""
        seen = len(self.fake.calls_to("getUpdates"))
        began = time.monotonic()
        self.process = subprocess.Popen(
            self.argv, env=self.env, cwd=self.cwd,
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )  # fmt: skip
        self.fake.wait_for(lambda f: len(f.calls_to("getUpdates")) > seen, timeout=30)
        return self.fake.calls_to("getUpdates")[seen].time - began

    def first_answer(self, user: int) -> float:
        """Seconds from exec to the answer to a /ping that was waiting before the start."""
        before = len(self.fake.calls_to("sendMessage"))
        self.fake.send_text(self.fake.user(user, "Bench"), "/ping")
        began = time.monotonic()
        self.process = subprocess.Popen(
            self.argv, env=self.env, cwd=self.cwd,
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )  # fmt: skip

        def answered(fake: FakeBotAPI) -> float | None:
            calls = [c for c in fake.calls_to("sendMessage")[before:] if c.status == 200]
            return calls[0].time if calls else None

        return self.fake.wait_for(answered, timeout=30, interval=0.001) - began

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None

    def rss_mb(self) -> float:
        assert self.process is not None
        status = Path(f"/proc/{self.process.pid}/status").read_text()
        line = next(x for x in status.splitlines() if x.startswith("VmRSS:"))
        return int(line.split()[1]) / 1024

    def round_trip(self, user: int, text: str) -> float:
        """Seconds from the update being queued to the bot's reply arriving at the fake."""
        before = len(self.fake.calls_to("sendMessage"))
        queued = time.monotonic()
        self.fake.send_text(self.fake.user(user, "Bench"), text)

        def replied(fake: FakeBotAPI) -> float | None:
            for call in fake.calls_to("sendMessage")[before:]:
                if str(call.params.get("chat_id")) == str(user) and call.status == 200:
                    return call.time
            return None

        return self.fake.wait_for(replied, timeout=30, interval=0.0005) - queued

    def burst(self, text: str) -> tuple[float, bool, bool]:
        """1,000 commands from 50 chats at once: (commands/s, each answered once, in order)."""
        before = len(self.fake.calls_to("sendMessage"))
        sent: dict[int, list[int]] = {}
        queued = time.monotonic()
        for index in range(BURST_CHATS * BURST_EACH):
            user = FIRST_USER + index % BURST_CHATS
            message = self.fake.send_text(self.fake.user(user, "Bench"), text)
            sent.setdefault(user, []).append(int(message["message_id"]))
        total = BURST_CHATS * BURST_EACH
        self.fake.wait_for(
            lambda f: len(f.calls_to("sendMessage")) - before >= total, timeout=120, interval=0.01
        )
        time.sleep(0.5)  # anything beyond one answer each would arrive now
        calls = [c for c in self.fake.calls_to("sendMessage")[before:] if c.status == 200]
        answered: dict[int, list[int]] = {}
        for call in calls:
            reply = call.params.get("reply_parameters") or {}
            answered.setdefault(int(call.params["chat_id"]), []).append(int(reply["message_id"]))
        once = len(calls) == total and all(
            sorted(answered.get(u, [])) == ids for u, ids in sent.items()
        )
        ordered = all(answered.get(u, []) == ids for u, ids in sent.items())
        return total / (max(c.time for c in calls) - queued), once, ordered


def _env(extra: dict[str, str]) -> dict[str, str]:
    keep = {k: v for k, v in os.environ.items() if not k.startswith("STEWARD_")}
    return {**keep, "PTB_TIMEDELTA": "true", **extra}


def make_bots(work: Path) -> tuple[Bot, Bot]:
    base_fake = FakeBotAPI(token="111:BASELINE").start()
    steward_fake = FakeBotAPI(token="222:STEWARD").start()
    python = sys.executable
    baseline = Bot(
        "baseline", base_fake,
        [python, str(ROOT / "benchmarks" / "echo_bot.py"), base_fake.token, base_fake.base_url],
        _env({}), work,
    )  # fmt: skip
    viewers = ",".join(str(FIRST_USER + i) for i in range(BURST_CHATS))
    steward = Bot(
        "steward", steward_fake, [python, "-m", "bot", "run"],
        _env({
            "STEWARD_TELEGRAM_TOKEN": steward_fake.token,
            "STEWARD_TELEGRAM_API_URL": steward_fake.base_url,
            "STEWARD_DEMO": "1",
            "STEWARD_TELEGRAM_RATE_LIMIT": "0",
            "STEWARD_STATE_DIR": str(work / "state"),
            "STEWARD_ADMINS": "1",
            "STEWARD_VIEWERS": viewers,
            "PYTHONPATH": str(ROOT),
        }),
        work,
    )  # fmt: skip
    return baseline, steward


def alternate(bots: tuple[Bot, Bot], measure: Callable[[Bot], float], rounds: int) -> list[float]:
    """Median of each bot's measurements, taken in alternating order."""
    results: dict[str, list[float]] = {bot.name: [] for bot in bots}
    for index in range(rounds):
        order = bots if index % 2 == 0 else bots[::-1]
        for bot in order:
            # A pause first, so that trailing work of the round before (Steward's audit
            # commit after its reply) is not counted as latency of this one. Back-to-back load
            # is what the burst measures.
            time.sleep(SETTLE)
            results[bot.name].append(measure(bot))
    return [statistics.median(results[bot.name]) for bot in bots]


def _summary(runs: list[tuple[float, bool, bool]]) -> tuple[float, bool, bool]:
    """Median throughput; correctness must hold in every run."""
    rate = statistics.median(run[0] for run in runs)
    return rate, all(run[1] for run in runs), all(run[2] for run in runs)


def main() -> int:
    # A bot stopped mid long-poll drops its connection; that is expected, not news.
    logging.getLogger("aiohttp.server").setLevel(logging.CRITICAL)
    compile_steward()
    with tempfile.TemporaryDirectory(prefix="steward-bench-") as tmp:
        work = Path(tmp)
        bots = make_bots(work)
        rows: list[tuple[str, str, str, float, float, bool]] = []
        try:
            for bot in bots:  # warm-up: Steward creates its schema on the very first start
                bot.start()
                bot.stop()

            def start_and_stop(bot: Bot) -> float:
                seconds = bot.start()
                bot.stop()
                return seconds

            base_start, stew_start = alternate(bots, start_and_stop, STARTS)

            def answer_and_stop(bot: Bot) -> float:
                seconds = bot.first_answer(FIRST_USER)
                bot.stop()
                return seconds

            base_first, stew_first = alternate(bots, answer_and_stop, STARTS)
            for bot in bots:
                bot.start()
            time.sleep(3)
            base_rss, stew_rss = bots[0].rss_mb(), bots[1].rss_mb()
            user = FIRST_USER
            base_ping, stew_ping = alternate(bots, lambda b: b.round_trip(user, "/ping"), ROUNDS)
            base_status, stew_status = alternate(
                bots, lambda b: b.round_trip(user, "/status"), ROUNDS
            )
            bursts: dict[str, list[tuple[float, bool, bool]]] = {bot.name: [] for bot in bots}
            for index in range(BURSTS):
                for bot in bots if index % 2 == 0 else bots[::-1]:
                    bursts[bot.name].append(bot.burst("/ping"))
            base_burst, base_once, base_order = _summary(bursts["baseline"])
            stew_burst, stew_once, stew_order = _summary(bursts["steward"])
        finally:
            for bot in bots:
                bot.stop()
                bot.fake.stop()
        ms = 1000
        rows = [
            ("/ping round trip, median", f"{base_ping * ms:.1f} ms", f"{stew_ping * ms:.1f} ms",
             stew_ping / base_ping, 1.25, stew_ping / base_ping <= 1.25),
            ("/status round trip, median", f"{base_status * ms:.1f} ms",
             f"{stew_status * ms:.1f} ms", stew_status / base_status, 2.0,
             stew_status / base_status <= 2.0),
            ("idle RSS", f"{base_rss:.1f} MB", f"{stew_rss:.1f} MB", stew_rss / base_rss, 1.5,
             stew_rss / base_rss <= 1.5),
            ("start to first getUpdates", f"{base_start * ms:.0f} ms", f"{stew_start * ms:.0f} ms",
             stew_start / base_start, 1.5, stew_start / base_start <= 1.5),
            ("start to first answer (info)", f"{base_first * ms:.0f} ms",
             f"{stew_first * ms:.0f} ms", stew_first / base_first, 0.0, True),
            ("burst: 1,000 commands, 50 chats", f"{base_burst:.0f}/s", f"{stew_burst:.0f}/s",
             stew_burst / base_burst, 1.0,
             stew_burst >= base_burst and stew_once and stew_order),
        ]  # fmt: skip
    print_table(rows, stew_once, stew_order, base_once, base_order)
    return 0 if all(row[5] for row in rows) else 1


def print_table(
    rows: list[tuple[str, str, str, float, float, bool]],
    once: bool,
    ordered: bool,
    base_once: bool,
    base_ordered: bool,
) -> None:
    cpu = next(
        (line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
         if line.startswith("model name")), "unknown CPU",
    )  # fmt: skip
    print(f"Telegram benchmark: {os.cpu_count()} cores, {cpu}, Python {sys.version.split()[0]}")
    print(
        f"medians of {ROUNDS} alternating rounds per round trip, {STARTS} starts and "
        f"{BURSTS} bursts per bot"
    )
    print()
    print("| measure | baseline (bare PTB) | Steward | ratio | target | |")
    print("|---|---|---|---|---|---|")
    for name, base, stew, ratio, target, ok in rows:
        bound = f"≥ {target:g}×" if name.startswith("burst") else f"≤ {target:g}×"
        bound = "—" if not target else bound
        print(f"| {name} | {base} | {stew} | {ratio:.2f}× | {bound} | {'ok' if ok else 'MISS'} |")
    print()
    print(f"burst: Steward answered each command once: {once}, in order per chat: {ordered}; "
          f"baseline: {base_once}, {base_ordered}")  # fmt: skip


if __name__ == "__main__":
    raise SystemExit(main())
