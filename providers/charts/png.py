"""Draw the weekly chart: JSON on stdin, a PNG on stdout. Run as ``python -m
providers.charts.png`` by ``providers.charts.week``, never imported by the bot: Pillow and the image
stay in this short-lived process, so the bot's own memory does not grow.

Input: ``{"title": str, "since": iso8601, "until": iso8601, "series": {name: [[iso8601,
value], ...]}}``, values in percent. Exit codes: 0 with the PNG on stdout; 2 when the input is
not such a document, with one sentence on stderr.
"""

from __future__ import annotations

import io
import itertools
import json
import math
import statistics
import sys
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from PIL import Image, ImageDraw, ImageFont

from values import value

WIDTH, HEIGHT = 800, 400
SCALE = 2  # drawn at twice the size and scaled down: Pillow's lines are not anti-aliased
MAX_SERIES = 12
MAX_POINTS = 200_000
WARN = 85.0
# Okabe-Ito colours: told apart with the common colour blindnesses; red is the warn line's.
COLOURS = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#000000", "#F0C000")
WARN_COLOUR = "#D55E00"
GRID, AXIS, TEXT, MUTED = "#E3E3E3", "#9A9A9A", "#222222", "#6A6A6A"
# Left, top, right, bottom margins of the plot area, before scaling.
MARGINS = (44, 34, 16, 62)

Point = tuple[datetime, float]
Font = ImageFont.FreeTypeFont | ImageFont.ImageFont


class InputError(Exception):
    """The input is not a chart document; the message is the one sentence for stderr."""


@value
class Chart:
    title: str
    since: datetime
    until: datetime
    series: dict[str, list[Point]]


def parse(raw: bytes) -> Chart:
    try:
        doc = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise InputError("The input is not a JSON document.") from None
    if not isinstance(doc, dict):
        raise InputError("The input is not a JSON object.")
    title = doc.get("title")
    if not isinstance(title, str):
        raise InputError('"title" must be a string.')
    since, until = _moment(doc.get("since"), "since"), _moment(doc.get("until"), "until")
    if until <= since:
        raise InputError('"until" must come after "since".')
    raw_series = doc.get("series")
    if not isinstance(raw_series, dict):
        raise InputError('"series" must be an object of name: [[time, value], ...].')
    if len(raw_series) > MAX_SERIES:
        raise InputError(f"At most {MAX_SERIES} series fit on the chart.")
    series = {str(name): _points(name, points) for name, points in raw_series.items()}
    if sum(len(points) for points in series.values()) > MAX_POINTS:
        raise InputError(f"At most {MAX_POINTS} points in all can be drawn.")
    return Chart(title, since, until, series)


def _moment(value: Any, what: str) -> datetime:
    try:
        moment = datetime.fromisoformat(value)
    except (TypeError, ValueError):
        raise InputError(f'"{what}" must be an ISO 8601 time with its offset.') from None
    if moment.tzinfo is None:
        raise InputError(f'"{what}" must be an ISO 8601 time with its offset.')
    return moment


def _points(name: str, points: Any) -> list[Point]:
    if not isinstance(points, list):
        raise InputError(f'Series "{name}" must be a list of [time, value] pairs.')
    parsed = []
    for point in points:
        if not (isinstance(point, list) and len(point) == 2):
            raise InputError(f'Series "{name}" must be a list of [time, value] pairs.')
        at, value = point
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
        ):
            raise InputError(f'Series "{name}" has a value that is not a finite number.')
        parsed.append((_moment(at, f"{name}' time"), float(value)))
    parsed.sort(key=lambda p: p[0])
    return parsed


# --- drawing ------------------------------------------------------------------------------------


@value
class Frame:
    """Where the plot area is, and how a moment and a percent map into it (scaled pixels)."""

    left: int
    top: int
    right: int
    bottom: int
    since: datetime
    until: datetime

    def x(self, at: datetime) -> float:
        share = (at - self.since) / (self.until - self.since)
        return self.left + min(max(share, 0.0), 1.0) * (self.right - self.left)

    def y(self, percent: float) -> float:
        share = min(max(percent, 0.0), 100.0) / 100.0
        return self.bottom - share * (self.bottom - self.top)


def render(chart: Chart) -> bytes:
    image = Image.new("RGB", (WIDTH * SCALE, HEIGHT * SCALE), "white")
    draw = ImageDraw.Draw(image)
    left, top, right, bottom = (m * SCALE for m in MARGINS)
    frame = Frame(left, top, WIDTH * SCALE - right, HEIGHT * SCALE - bottom,
                  chart.since, chart.until)  # fmt: skip
    font = ImageFont.load_default(size=12 * SCALE)
    title_font = ImageFont.load_default(size=15 * SCALE)
    draw.text((left, 9 * SCALE), chart.title, fill=TEXT, font=title_font)
    _grid(draw, frame, font)
    _days(draw, frame, font)
    for index, points in enumerate(chart.series.values()):
        _line(draw, frame, points, COLOURS[index % len(COLOURS)])
    _legend(draw, frame, chart.series, font)
    small = image.resize((WIDTH, HEIGHT), Image.Resampling.LANCZOS)
    # A palette image is a quarter of the size and looks the same: a few colours and their
    # anti-aliased edges.
    palette = small.quantize(colors=128, method=Image.Quantize.FASTOCTREE)
    out = io.BytesIO()
    palette.save(out, format="PNG", optimize=True)
    return out.getvalue()


def _grid(draw: ImageDraw.ImageDraw, frame: Frame, font: Font) -> None:
    for percent in (0, 25, 50, 75, 100):
        y = frame.y(percent)
        colour = AXIS if percent == 0 else GRID
        draw.line([(frame.left, y), (frame.right, y)], fill=colour, width=SCALE)
        draw.text((frame.left - 6 * SCALE, y), f"{percent}%", fill=MUTED, font=font, anchor="rm")
    y = frame.y(WARN)
    _dashed(draw, frame.left, frame.right, y, WARN_COLOUR)
    draw.text((frame.right - 2 * SCALE, y - 3 * SCALE), f"warn {WARN:.0f}%", fill=WARN_COLOUR,
              font=font, anchor="rb")  # fmt: skip


def _dashed(draw: ImageDraw.ImageDraw, x0: float, x1: float, y: float, colour: str) -> None:
    dash, gap = 8 * SCALE, 5 * SCALE
    x = x0
    while x < x1:
        draw.line([(x, y), (min(x + dash, x1), y)], fill=colour, width=SCALE)
        x += dash + gap


def _days(draw: ImageDraw.ImageDraw, frame: Frame, font: Font) -> None:
    """A line at each midnight (in the offset of ``since``), the day's name under its middle."""
    start = frame.since.replace(hour=0, minute=0, second=0, microsecond=0)
    day = start
    label_y = frame.bottom + 6 * SCALE
    while day < frame.until:
        following = day + timedelta(days=1)
        if day > frame.since:
            x = round(frame.x(day) / SCALE) * SCALE  # on a pixel once scaled down: crisp
            draw.line([(x, frame.top), (x, frame.bottom)], fill=GRID, width=SCALE)
        shown_from, shown_to = max(day, frame.since), min(following, frame.until)
        if (shown_to - shown_from) >= timedelta(hours=8):  # room for the label
            middle = (frame.x(shown_from) + frame.x(shown_to)) / 2
            draw.text((middle, label_y), f"{day:%a %d}", fill=MUTED, font=font, anchor="mt")
        day = following
    draw.line([(frame.left, frame.top), (frame.left, frame.bottom)], fill=AXIS, width=SCALE)


def _line(draw: ImageDraw.ImageDraw, frame: Frame, points: Sequence[Point], colour: str) -> None:
    """One series; a pause in the samples (the bot was down) is a gap, not a straight line."""
    for run in _runs(points):
        xy = [(frame.x(at), frame.y(value)) for at, value in run]
        if len(xy) == 1:
            x, y = xy[0]
            r = 2.5 * SCALE
            draw.ellipse([(x - r, y - r), (x + r, y + r)], fill=colour)
        else:
            draw.line(xy, fill=colour, width=2 * SCALE, joint="curve")


def _runs(points: Sequence[Point]) -> list[list[Point]]:
    if len(points) < 2:
        return [list(points)] if points else []
    steps = [b[0] - a[0] for a, b in itertools.pairwise(points)]
    usual = statistics.median(step.total_seconds() for step in steps)
    gap = max(timedelta(hours=1), timedelta(seconds=3 * usual))
    runs: list[list[Point]] = [[points[0]]]
    for step, point in zip(steps, points[1:], strict=True):
        if step > gap:
            runs.append([])
        runs[-1].append(point)
    return runs


def _legend(
    draw: ImageDraw.ImageDraw,
    frame: Frame,
    series: dict[str, list[Point]],
    font: Font,
) -> None:
    x, y = frame.left, HEIGHT * SCALE - 20 * SCALE
    if not any(series.values()):
        middle = ((frame.left + frame.right) / 2, (frame.top + frame.bottom) / 2)
        draw.text(middle, "no samples in this period", fill=MUTED, font=font, anchor="mm")
    for index, (name, points) in enumerate(series.items()):
        colour = COLOURS[index % len(COLOURS)]
        label = name
        if not points:
            label += " (no data)"
        elif (peak := max(value for _, value in points)) > 100:
            label += f" (max {peak:.0f}%)"  # drawn at the top edge
        draw.line([(x, y), (x + 18 * SCALE, y)], fill=colour, width=3 * SCALE)
        x += 24 * SCALE
        draw.text((x, y), label, fill=TEXT, font=font, anchor="lm")
        x += int(draw.textlength(label, font=font)) + 18 * SCALE


def main() -> int:
    try:
        chart = parse(sys.stdin.buffer.read())
    except InputError as exc:
        print(exc, file=sys.stderr)
        return 2
    sys.stdout.buffer.write(render(chart))
    sys.stdout.buffer.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
