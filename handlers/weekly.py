"""The weekly report: the health report with a chart of the week's disk, memory and load.

Unlike the daily report it always comes (silent, as a routine report), even when all is green.
The chart is drawn in a child process (``providers.charts.week``) from the samples the alert check
keeps; when it cannot be drawn, the report still goes out and says so.
"""

from __future__ import annotations

import logging
import math
from dataclasses import replace
from datetime import datetime, timedelta

from handlers.alerts import LOAD
from handlers.core.context import Context, Deps
from handlers.core.messages import Attachment, Reply, esc
from handlers.core.registry import Registry
from handlers.reports import build_report
from providers.charts.week import ChartData, ChartError, render_week_chart

log = logging.getLogger(__name__)
WEEK = timedelta(days=7)
DAILY_HEADING = "<b>Daily report</b>"
commands = Registry()


@commands.command("report week", "The weekly report with its chart, now")
async def report_week(ctx: Context) -> Reply:
    return replace(await weekly_report(ctx.deps, ctx.now), silent=False)


async def weekly_report(deps: Deps, now: datetime, *, chart_seconds: float = 30) -> Reply:
    since = now - WEEK
    lines = [f"📈 <b>Week of {since.astimezone(deps.timezone):%d %b %Y}</b>"]
    daily = await build_report(deps, now)
    lines.append("All green this week." if daily.silent else _body(daily.text))
    series = await _series(deps, since)
    attachments: tuple[Attachment, ...] = ()
    if not any(series.values()):
        lines.append("📉 No samples were kept this week, so there is no chart.")
    else:
        title = f"Disk, memory and load, {_span(deps, since, now)}"
        local = {
            name: [(at.astimezone(deps.timezone), value) for at, value in points]
            for name, points in series.items()
            if points
        }
        data = ChartData(title, since.astimezone(deps.timezone), now.astimezone(deps.timezone),
                         local)  # fmt: skip
        try:
            png = await render_week_chart(data, chart_seconds)
            attachments = (Attachment("week.png", png, "image/png"),)
        except ChartError as exc:
            log.warning("weekly chart: %s", exc)
            lines.append(f"⚠️ The chart could not be drawn: {esc(exc)}")
    return Reply("\n".join(lines), attachments=attachments, silent=True)


def _body(text: str) -> str:
    """The daily report without its own heading line."""
    first, _, rest = text.partition("\n")
    return rest if first.startswith(DAILY_HEADING) and rest else text


async def _series(deps: Deps, since: datetime) -> dict[str, list[tuple[datetime, float]]]:
    """Chart name -> samples, oldest first; the disks are those the host has now."""
    if deps.samples is None:
        return {}
    try:
        mounts = [disk.mount for disk in (await deps.host.metrics()).disks]
    except OSError:
        mounts = []
    wanted = [(f"disk {mount}", f"disk:{mount}") for mount in mounts]
    wanted += [("memory", "memory"), ("load", LOAD)]
    found: dict[str, list[tuple[datetime, float]]] = {}
    for name, metric in wanted:
        try:
            points = await deps.samples.series(metric, since)
        except Exception:  # noqa: BLE001 - whatever the database raises, the report still goes
            log.warning("weekly chart: the samples of %s cannot be read", metric)
            points = []
        found[name] = [(at, value) for at, value in points if math.isfinite(value)]
    return found


def _span(deps: Deps, since: datetime, until: datetime) -> str:
    start, end = since.astimezone(deps.timezone), until.astimezone(deps.timezone)
    return f"{start:%a %d %b} to {end:%a %d %b %Y}"
