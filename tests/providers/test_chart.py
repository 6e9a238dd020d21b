"""The weekly chart, drawn by the real ``python -m providers.charts.png`` child process."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta, timezone

import pytest

from providers.charts.week import (
    PNG_SIGNATURE,
    ChartData,
    ChartError,
    render_week_chart,
    run_renderer,
)

pytestmark = pytest.mark.timeout(60)

BERLIN = timezone(timedelta(hours=1))
UNTIL = datetime(2026, 11, 30, 8, 0, tzinfo=BERLIN)
SINCE = UNTIL - timedelta(days=7)


def png_size(png: bytes) -> tuple[int, int]:
    """Width and height from the IHDR chunk, which a PNG must start with."""
    assert png[:8] == PNG_SIGNATURE
    length, kind = struct.unpack(">I4s", png[8:16])
    assert (length, kind) == (13, b"IHDR")
    width, height = struct.unpack(">II", png[16:24])
    return width, height


def week(value: float, every: timedelta = timedelta(minutes=5)) -> list[tuple[datetime, float]]:
    count = int(timedelta(days=7) / every)
    return [(SINCE + i * every, value + i / count) for i in range(count)]


async def test_a_week_of_samples_becomes_an_800_by_400_png() -> None:
    data = ChartData(
        "Disk, memory and load",
        SINCE,
        UNTIL,
        {"disk /": week(63), "disk /srv": week(88), "memory": week(55), "load": week(140)},
    )
    png = await render_week_chart(data)
    assert png_size(png) == (800, 400)
    assert png.endswith(b"IEND\xaeB`\x82")  # complete, not cut short
    assert len(png) > 5_000  # lines and text, not a blank image


async def test_empty_series_and_single_points_are_drawn() -> None:
    empty = ChartData("Nothing yet", SINCE, UNTIL, {"memory": [], "load": []})
    assert png_size(await render_week_chart(empty)) == (800, 400)
    nothing = ChartData("No series", SINCE, UNTIL, {})
    assert png_size(await render_week_chart(nothing)) == (800, 400)
    single = ChartData("One", SINCE, UNTIL, {"memory": [(UNTIL, 40.0)], "disk /": [(SINCE, 0.0)]})
    assert png_size(await render_week_chart(single)) == (800, 400)


async def test_different_data_draws_a_different_chart() -> None:
    low = await render_week_chart(ChartData("t", SINCE, UNTIL, {"memory": week(10)}))
    high = await render_week_chart(ChartData("t", SINCE, UNTIL, {"memory": week(90)}))
    assert low != high


def run_module(stdin: bytes) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "providers.charts.png"],
        input=stdin,
        capture_output=True,
        timeout=30,
        check=False,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)},
    )


@pytest.mark.parametrize(
    ("document", "sentence"),
    [
        (b"{not json", "The input is not a JSON document."),
        (b"[]", "The input is not a JSON object."),
        (b'{"title": 1, "since": "", "until": "", "series": {}}', '"title" must be a string.'),
        (
            b'{"title": "t", "since": "2026-11-23T08:00:00", "until": "2026-11-30T08:00:00+01:00",'
            b' "series": {}}',
            '"since" must be an ISO 8601 time with its offset.',
        ),
        (
            b'{"title": "t", "since": "2026-11-30T08:00:00+01:00",'
            b' "until": "2026-11-23T08:00:00+01:00", "series": {}}',
            '"until" must come after "since".',
        ),
        (
            b'{"title": "t", "since": "2026-11-23T08:00:00+01:00",'
            b' "until": "2026-11-30T08:00:00+01:00",'
            b' "series": {"memory": [["2026-11-24T08:00:00+01:00", "high"]]}}',
            'Series "memory" has a value that is not a finite number.',
        ),
        (
            b'{"title": "t", "since": "2026-11-23T08:00:00+01:00",'
            b' "until": "2026-11-30T08:00:00+01:00",'
            b' "series": {"memory": [["2026-11-24T08:00:00+01:00", NaN]]}}',
            'Series "memory" has a value that is not a finite number.',
        ),
    ],
)
def test_bad_input_exits_2_with_one_sentence(document: bytes, sentence: str) -> None:
    done = run_module(document)
    assert done.returncode == 2
    assert done.stdout == b""
    assert done.stderr.decode() == sentence + "\n"


async def test_bad_input_becomes_a_chart_error() -> None:
    with pytest.raises(ChartError, match=r'^The chart data was refused: "until" must come after'):
        await run_renderer(
            json.dumps(
                {"title": "t", "since": UNTIL.isoformat(), "until": SINCE.isoformat(), "series": {}}
            ).encode(),
            time_limit=30,
        )


def test_naive_times_are_refused_before_any_process_starts() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        ChartData("t", SINCE.replace(tzinfo=None), UNTIL, {})


async def test_a_renderer_that_hangs_is_killed_at_the_timeout() -> None:
    hang = (sys.executable, "-c", "import time; time.sleep(60)")
    started = time.monotonic()
    with pytest.raises(ChartError, match=r"^The chart took longer than 0.5 s and was stopped\.$"):
        await run_renderer(b"{}", time_limit=0.5, command=hang)
    assert time.monotonic() - started < 10


async def test_the_real_renderer_times_out_too() -> None:
    data = ChartData("t", SINCE, UNTIL, {"memory": week(50)})
    with pytest.raises(ChartError, match="took longer than"):
        await render_week_chart(data, timeout=0.001)


async def test_output_that_is_not_a_png_is_refused() -> None:
    text = (sys.executable, "-c", "print('hello')")
    with pytest.raises(ChartError, match=r"^The chart renderer did not return a PNG image\.$"):
        await run_renderer(b"{}", time_limit=30, command=text)


async def test_a_crashing_renderer_gives_a_sentence_not_a_traceback() -> None:
    crash = (sys.executable, "-c", "raise SystemExit(3)")
    with pytest.raises(ChartError, match=r"^The chart renderer failed \(exit code 3\)\.$"):
        await run_renderer(b"{}", time_limit=30, command=crash)
    missing = ("/nonexistent/python",)
    with pytest.raises(ChartError, match=r"^The chart renderer cannot be started"):
        await run_renderer(b"{}", time_limit=30, command=missing)


async def test_the_child_gets_none_of_the_bots_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STEWARD_TELEGRAM_TOKEN", "123:secret")
    # The child writes its environment's names as a PNG-looking answer.
    show = (
        sys.executable,
        "-c",
        "import os, sys; sys.stdout.buffer.write(b'\\x89PNG\\r\\n\\x1a\\n' + "
        "' '.join(sorted(os.environ)).encode())",
    )
    out = await run_renderer(b"{}", time_limit=30, command=show)
    names = out[8:].decode().split()
    assert "STEWARD_TELEGRAM_TOKEN" not in names
    assert "PYTHONPATH" in names


def test_the_bot_process_never_imports_pillow() -> None:
    """In a fresh interpreter, so that no other test's imports count."""
    script = """
import asyncio, sys
from datetime import datetime, timedelta, timezone
from providers.charts.week import ChartData, render_week_chart
until = datetime(2026, 11, 30, 8, 0, tzinfo=timezone.utc)
data = ChartData("t", until - timedelta(days=7), until, {"memory": [(until, 50.0)]})
png = asyncio.run(render_week_chart(data))
assert png.startswith(b"\\x89PNG"), png[:20]
print("PIL" in sys.modules, any(name.startswith("PIL.") for name in sys.modules))
"""
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        timeout=60,
        check=False,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)},
    )
    assert done.returncode == 0, done.stderr.decode()
    assert done.stdout.decode().split() == ["False", "False"]


def test_times_in_other_offsets_are_placed_by_their_moment() -> None:
    """A sample in UTC and the same moment in Berlin's offset are the same point."""
    data = ChartData("t", SINCE, UNTIL, {"memory": [(SINCE.astimezone(UTC), 1.0)]})
    document = json.loads(data.to_json())
    assert datetime.fromisoformat(document["series"]["memory"][0][0]) == SINCE
