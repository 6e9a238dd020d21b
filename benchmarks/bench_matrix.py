"""Steward on Matrix against a bare matrix-nio echo bot, side by side on one Synapse.

One Synapse on loopback (tests/support/synapse.py), a bench user and two bot users. Steward
(`steward run`, Matrix only, demo providers) and the echo bot (benchmarks/echo_matrix.py) run
as separate processes, each in its own room with the bench user, who invites them, and each in
a venv of its own (benchmarks/venvs.py): Steward with its `matrix` extra, the echo bot with
matrix-nio alone. A round trip is the reply's ``origin_server_ts`` minus the command's:
Synapse's clock, so the bench client's own sync latency does not count. Rounds alternate
between the bots: paced (a pause before each command) and back to back (the next command as
soon as the reply has been seen). Each ratio is the median over the rounds of the ratio within
a round, so a machine (or a Synapse) that slows down during the run moves both sides alike.

Idle RSS: Steward with both transports (Matrix on this Synapse and Telegram on the loopback
fake Bot API) against the bare nio bot, each read 3 s after it answered its first commands.
Prints a table and exits 1 when a target is missed.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nio import (
    AsyncClient,
    JoinedMembersResponse,
    RoomCreateResponse,
    RoomSendResponse,
    SyncResponse,
)

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks import venvs  # noqa: E402
from benchmarks.bench_telegram import Rounds  # noqa: E402
from tests.support.fake_telegram import FakeBotAPI  # noqa: E402
from tests.support.synapse import RegisteredUser, Synapse, unique  # noqa: E402

# A paced round is one trip, stamped in whole milliseconds: 80 of them, as 40 left the median
# a few hundredths from the target (about 0.3 s a round).
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "80"))
# Synapse stamps whole milliseconds, so one round's ratio moves in steps of 0.03 at 33 ms:
# enough rounds that their median does not hang on a few of them (about 0.4 s a series).
SERIES = int(os.environ.get("BENCH_SERIES", "20"))  # alternating back-to-back series per bot
SERIES_LENGTH = 10
PACE = 0.25  # seconds between a reply and the next command, at a human pace
IDLE = 3.0
REPLY_TIMEOUT = 60.0
TELEGRAM_ADMIN = 1
PING_TARGET, RSS_TARGET = 1.1, 1.8
JSON = dict[str, Any]


@dataclass
class Proc:
    """A bot process whose stderr goes to a file, for error messages."""

    name: str
    argv: list[str]
    env: dict[str, str]
    work: Path
    popen: subprocess.Popen[bytes] | None = None

    @property
    def stderr_path(self) -> Path:
        return self.work / f"{self.name}.stderr"

    def start(self) -> None:
        with self.stderr_path.open("ab") as err:
            self.popen = subprocess.Popen(
                self.argv, env=self.env, cwd=self.work,
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err,
            )  # fmt: skip

    def check(self) -> None:
        if self.popen is not None and self.popen.poll() is not None:
            raise RuntimeError(f"{self.name} exited with {self.popen.returncode}:\n{self.tail()}")

    def tail(self, lines: int = 30) -> str:
        if not self.stderr_path.exists():
            return "(no stderr)"
        return "\n".join(self.stderr_path.read_text(errors="replace").splitlines()[-lines:])

    def rss_mb(self) -> float:
        assert self.popen is not None
        status = Path(f"/proc/{self.popen.pid}/status").read_text()
        line = next(x for x in status.splitlines() if x.startswith("VmRSS:"))
        return int(line.split()[1]) / 1024

    def stop(self) -> None:
        popen, self.popen = self.popen, None
        if popen is None or popen.poll() is not None:
            return
        popen.send_signal(signal.SIGTERM)
        try:
            popen.wait(timeout=20)
        except subprocess.TimeoutExpired:
            popen.kill()
            popen.wait()


@dataclass
class Room:
    name: str
    room_id: str
    bot: RegisteredUser
    proc: Proc
    # Milliseconds, one list per round.
    trips: list[list[int]] = field(default_factory=list)  # back to back
    paced: list[list[int]] = field(default_factory=list)


class Bench:
    """The bench user: a nio client that sends commands and reads replies from its syncs."""

    def __init__(self, synapse: Synapse, user: RegisteredUser) -> None:
        self.user = user
        self.client = AsyncClient(synapse.url, user.user_id, device_id=user.device_id)
        self.client.restore_login(user.user_id, user.device_id, user.access_token)
        self.events: dict[str, JSON] = {}
        self.replies: dict[str, JSON] = {}  # command event id -> the reply event

    async def create_room(self, invite: str) -> str:
        response = await self.client.room_create(invite=[invite])
        assert isinstance(response, RoomCreateResponse), response
        return str(response.room_id)

    async def wait_joined(self, room: Room, within: float = 60.0) -> None:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            room.proc.check()
            response = await self.client.joined_members(room.room_id)
            if isinstance(response, JoinedMembersResponse) and any(
                member.user_id == room.bot.user_id for member in response.members
            ):
                return
            await asyncio.sleep(0.1)
        raise RuntimeError(f"{room.name} did not join its room:\n{room.proc.tail()}")

    async def sync(self) -> None:
        response = await self.client.sync(timeout=2000)
        assert isinstance(response, SyncResponse), response
        for info in response.rooms.join.values():
            for event in info.timeline.events:
                source = event.source
                self.events[source["event_id"]] = source
                relates = source.get("content", {}).get("m.relates_to", {})
                answered = relates.get("m.in_reply_to", {}).get("event_id")
                if answered and source.get("sender") != self.user.user_id:
                    self.replies[answered] = source

    async def round_trip(self, room: Room, text: str = "!ping") -> int:
        """Milliseconds on Synapse's clock from the command to the bot's reply."""
        content = {"msgtype": "m.text", "body": text}
        sent = await self.client.room_send(room.room_id, "m.room.message", content)
        assert isinstance(sent, RoomSendResponse), sent
        command_id = str(sent.event_id)
        deadline = time.monotonic() + REPLY_TIMEOUT
        while command_id not in self.replies or command_id not in self.events:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{room.name} did not answer {text}:\n{room.proc.tail()}")
            room.proc.check()
            await self.sync()
        reply = self.replies[command_id]
        assert reply["sender"] == room.bot.user_id, reply
        return int(reply["origin_server_ts"]) - int(self.events[command_id]["origin_server_ts"])


def base_env(work: Path, **extra: str) -> dict[str, str]:
    """A clean environment, as tests/e2e/matrix_harness.py gives Steward: no STEWARD_* leaks."""
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(work),
        "LANG": "C.UTF-8",
        "PYTHONPATH": str(ROOT),
        **extra,
    }


def steward_env(work: Path, synapse: Synapse, bot: RegisteredUser, admins: str) -> dict[str, str]:
    return base_env(
        work,
        STEWARD_MATRIX_HOMESERVER=synapse.url,
        STEWARD_MATRIX_USER=bot.user_id,
        STEWARD_MATRIX_PASSWORD=bot.password,
        STEWARD_DEMO="1",
        STEWARD_STATE_DIR=str(work / "state"),
        STEWARD_ADMINS=admins,
        STEWARD_LOG_LEVEL="WARNING",
    )


def telegram_ping(fake: FakeBotAPI, proc: Proc) -> None:
    """Wait for the bot's first getUpdates, send /ping, wait for the answer."""
    fake.wait_for(lambda f: f.calls_to("getUpdates"), timeout=60)
    before = len(fake.calls_to("sendMessage"))
    fake.send_text(fake.user(TELEGRAM_ADMIN, "Bench"), "/ping")
    try:
        fake.wait_for(lambda f: len(f.calls_to("sendMessage")) > before, timeout=REPLY_TIMEOUT)
    except AssertionError:
        raise RuntimeError(f"{proc.name} did not answer /ping:\n{proc.tail()}") from None


async def alternate(bench: Bench, rooms: list[Room], count: int, pause: float) -> None:
    """``count`` commands per room in one go, the rooms alternating from round to round."""
    for index in range(ROUNDS if pause else SERIES):
        for room in rooms if index % 2 == 0 else rooms[::-1]:
            trips = []
            for _ in range(count):
                await asyncio.sleep(pause)
                trips.append(await bench.round_trip(room))
            (room.paced if pause else room.trips).append(trips)


async def run(synapse: Synapse, work: Path) -> dict[str, Any]:
    steward_python = venvs.steward("matrix")
    echo_python = venvs.nio(steward_python)
    venvs.compile_steward(steward_python)
    bench_user = synapse.register(unique("bench"), "bench-password")
    steward_bot = synapse.register(unique("steward"), "steward-password")
    echo_bot = synapse.register(unique("echo"), "echo-password")
    for name in ("steward", "echo", "steward-both"):
        (work / name).mkdir()

    steward = Proc(
        "steward", [str(steward_python.with_name("steward")), "run"],
        steward_env(work / "steward", synapse, steward_bot, bench_user.user_id), work / "steward",
    )  # fmt: skip
    echo = Proc(
        "echo", [str(echo_python), str(ROOT / "benchmarks" / "echo_matrix.py"), synapse.url],
        base_env(work / "echo", ECHO_MATRIX_TOKEN=echo_bot.access_token), work / "echo",
    )  # fmt: skip
    bench = Bench(synapse, bench_user)
    fakes: list[FakeBotAPI] = []
    procs = [steward, echo]
    result: dict[str, Any] = {}
    try:
        rooms = [
            Room("steward", await bench.create_room(steward_bot.user_id), steward_bot, steward),
            Room("echo", await bench.create_room(echo_bot.user_id), echo_bot, echo),
        ]
        for room in rooms:
            room.proc.start()
        for room in rooms:
            await bench.wait_joined(room)
            await bench.round_trip(room)  # proof that it answers
        await asyncio.sleep(IDLE)
        result["matrix_rss"] = {room.name: room.proc.rss_mb() for room in rooms}

        await alternate(bench, rooms, 1, PACE)
        await alternate(bench, rooms, SERIES_LENGTH, 0.0)
        result["paced"] = {room.name: room.paced for room in rooms}
        result["trips"] = {room.name: room.trips for room in rooms}
        steward.stop()

        # Idle RSS with both transports. The same Matrix account and state folder: Steward
        # resumes its session, as after a restart.
        steward_fake = FakeBotAPI(token="222:STEWARD").start()
        fakes.append(steward_fake)
        both_env = {
            **steward_env(work / "steward", synapse, steward_bot,
                          f"{bench_user.user_id},{TELEGRAM_ADMIN}"),
            "STEWARD_TELEGRAM_TOKEN": steward_fake.token,
            "STEWARD_TELEGRAM_API_URL": steward_fake.base_url,
            "STEWARD_TELEGRAM_RATE_LIMIT": "0",
            "PTB_TIMEDELTA": "true",
        }  # fmt: skip
        both = Proc("steward-both", [str(steward_python.with_name("steward")), "run"], both_env,
                    work / "steward-both")  # fmt: skip
        procs.append(both)
        both.start()
        rooms[0].proc = both
        await bench.round_trip(rooms[0])
        telegram_ping(steward_fake, both)
        await asyncio.sleep(IDLE)
        both.check()
        result["both_rss"], result["nio_rss"] = both.rss_mb(), echo.rss_mb()
    finally:
        for proc in procs:
            proc.stop()
        for fake in fakes:
            fake.stop()
        await bench.client.close()
    return result


def _ratio_row(
    name: str, stew: float, base: float, unit: str, target: float, *,
    rounds: Rounds | None = None,
) -> tuple[Any, ...]:  # fmt: skip
    """``rounds``: each bot's median in each round; the row's ratio is then the median of the
    within-round ratios. Without them, the ratio of the two values."""
    spread = "—"
    if rounds is None:
        ratio = stew / base if base else float("inf")
    else:
        ratio = rounds.ratio("steward", "echo")
        spread = rounds.spread("steward", "echo")
    return (name, f"{stew:.1f} {unit}", f"{base:.1f} {unit} (bare nio)", f"{ratio:.2f}×",
            spread, f"≤ {target:g}×" if target else "—",
            ratio <= target if target else None)  # fmt: skip


def main() -> int:
    # A bot stopped mid long-poll drops its connection; that is expected, not news.
    logging.getLogger("aiohttp.server").setLevel(logging.CRITICAL)
    began = time.monotonic()
    with Synapse() as synapse, tempfile.TemporaryDirectory(prefix="steward-bench-") as tmp:
        synapse.start()
        version = synapse_version(synapse)
        result = asyncio.run(run(synapse, Path(tmp)))
    elapsed = time.monotonic() - began

    def median(key: str, name: str) -> float:
        return float(statistics.median(trip for trips in result[key][name] for trip in trips))

    def paired(key: str) -> Rounds:
        """Each bot's median in each round."""
        return Rounds({name: [statistics.median(trips) for trips in result[key][name]]
                       for name in ("steward", "echo")})  # fmt: skip

    matrix = result["matrix_rss"]
    rows = [
        _ratio_row("`!ping` back to back, median", median("trips", "steward"),
                   median("trips", "echo"), "ms", PING_TARGET, rounds=paired("trips")),
        _ratio_row("`!ping` at a human pace, median", median("paced", "steward"),
                   median("paced", "echo"), "ms", PING_TARGET, rounds=paired("paced")),
        _ratio_row("idle RSS, Matrix + Telegram", result["both_rss"], result["nio_rss"], "MB",
                   RSS_TARGET),
        _ratio_row("idle RSS, Matrix only", matrix["steward"], matrix["echo"], "MB", 0.0),
    ]  # fmt: skip
    cpu = next(
        (line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
         if line.startswith("model name")), "unknown CPU",
    )  # fmt: skip
    print(
        f"Matrix benchmark: {os.cpu_count()} cores, {cpu}, Python {sys.version.split()[0]}, "
        f"Synapse {version}"
    )
    print(
        f"baseline: matrix-nio alone in its own venv; medians, and ratios within a round, of "
        f"{ROUNDS} paced rounds and {SERIES}x{SERIES_LENGTH} back to back per bot, on Synapse's "
        f"clock; "
        f"{elapsed:.0f} s in all"
    )
    print()
    print("| measure | Steward | baseline | ratio | rounds' middle half | target | |")
    print("|---|---|---|---|---|---|---|")
    for name, stew, base, ratio, spread, target, ok in rows:
        verdict = "info" if ok is None else "ok" if ok else "MISS"
        print(f"| {name} | {stew} | {base} | {ratio} | {spread} | {target} | {verdict} |")
    print()
    for name, rounds in result["trips"].items():
        trips = [trip for round_trips in rounds for trip in round_trips]
        quartiles = statistics.quantiles(trips, n=4) if len(trips) > 1 else trips * 3
        print(
            f"{name}, back to back: min {min(trips)} / p25 {quartiles[0]:g} / "
            f"p75 {quartiles[2]:g} / max {max(trips)} ms"
        )
    return 0 if all(row[6] is not False for row in rows) else 1


def synapse_version(synapse: Synapse) -> str:
    try:
        answer = synapse.api("GET", "/_synapse/admin/v1/server_version")
        return str(answer["server_version"]).split()[0]
    except (RuntimeError, OSError, KeyError):
        return "unknown"


if __name__ == "__main__":
    raise SystemExit(main())
