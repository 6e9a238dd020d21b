"""The weekly report on the demo server and a real database, with the real chart process."""

from __future__ import annotations

import struct
from datetime import timedelta

import pytest

from handlers.core.messages import Reply
from handlers.reports import weekly_report
from providers.charts.week import PNG_SIGNATURE
from providers.host.base import UnitStatus
from tests.conftest import Harness

pytestmark = pytest.mark.timeout(60)


def heal_units(harness: Harness) -> None:
    units = harness.server.services.units
    units["jicofo.service"] = UnitStatus("jicofo.service", "loaded", "active", "running")


async def keep_a_week_of_samples(harness: Harness, filling: float = 1.0) -> None:
    """Hourly; /data fills ``filling`` percent a day up to its 71 % now."""
    samples, now = harness.engine.deps.samples, harness.clock()
    assert samples is not None
    start = now - timedelta(days=7)
    for hour in range(7 * 24):
        await samples.add(
            start + timedelta(hours=hour),
            {"disk:/": 63.0, "disk:/data": 71 - filling * (7 - hour / 24),
             "memory": 40.0 + hour % 24, "load": 25.0 + hour % 12},
        )  # fmt: skip


def the_chart(reply: Reply) -> bytes:
    (attachment,) = reply.attachments
    assert (attachment.name, attachment.mime) == ("week.png", "image/png")
    assert attachment.data.startswith(PNG_SIGNATURE)
    assert struct.unpack(">II", attachment.data[16:24]) == (800, 400)
    return attachment.data


async def test_the_weekly_report_has_a_heading_the_report_and_a_chart(harness: Harness) -> None:
    await keep_a_week_of_samples(harness)
    reply = await weekly_report(harness.engine.deps, harness.clock())
    heading, _, body = reply.text.partition("\n")
    assert heading == "📈 <b>Week of 21 Nov 2026</b>"  # the clock is Sat 28 Nov, 12:00
    assert "<b>Daily report</b>" not in reply.text
    assert "❌ failed units: jicofo.service" in body
    assert "<code>/data</code> 71% of 100 GiB, full in ~29 days" in body
    assert "All green" not in reply.text
    assert reply.silent  # a routine report; alerts are the loud part
    the_chart(reply)


async def test_an_all_green_week_says_so_and_still_comes(harness: Harness) -> None:
    heal_units(harness)
    await harness.say("/backup all")
    assert await harness.engine.wait_for_jobs(10)
    await keep_a_week_of_samples(harness, filling=0.0)
    reply = await weekly_report(harness.engine.deps, harness.clock())
    assert reply.text == "📈 <b>Week of 21 Nov 2026</b>\nAll green this week."
    assert reply.silent
    the_chart(reply)


async def test_the_chart_shows_the_samples(harness: Harness) -> None:
    empty_week = await weekly_report(harness.engine.deps, harness.clock())
    assert "No samples were kept this week, so there is no chart." in empty_week.text
    assert empty_week.attachments == ()
    deps = harness.engine.deps
    assert deps.samples is not None
    await deps.samples.add(harness.clock() - timedelta(days=2), {"memory": 50.0})
    one = the_chart(await weekly_report(deps, harness.clock()))
    await deps.samples.add(harness.clock() - timedelta(days=1), {"memory": 90.0})
    two = the_chart(await weekly_report(deps, harness.clock()))
    assert one != two
    # Older than the week: left off the chart, so it does not change it.
    await deps.samples.add(harness.clock() - timedelta(days=9), {"memory": 10.0})
    assert the_chart(await weekly_report(deps, harness.clock())) == two


async def test_a_chart_that_cannot_be_drawn_leaves_the_report(harness: Harness) -> None:
    await keep_a_week_of_samples(harness)
    reply = await weekly_report(harness.engine.deps, harness.clock(), chart_seconds=0.001)
    lines = reply.text.splitlines()
    assert lines[0] == "📈 <b>Week of 21 Nov 2026</b>"
    assert "❌ failed units: jicofo.service" in lines
    assert lines[-1] == (
        "⚠️ The chart could not be drawn: The chart took longer than 0.001 s and was stopped."
    )
    assert reply.attachments == ()
    assert reply.silent


async def test_unreadable_host_metrics_still_give_a_weekly_report(harness: Harness) -> None:
    await keep_a_week_of_samples(harness)
    harness.server.host.down = True
    reply = await weekly_report(harness.engine.deps, harness.clock())
    assert "the host metrics cannot be read" in reply.text
    the_chart(reply)  # memory and load still have their samples
