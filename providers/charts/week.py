"""The weekly chart, drawn in a child process (``providers.charts.png``) when it is asked for.

Pillow is imported only there: the bot never loads it, so the chart adds nothing to the bot's
resident memory between reports. The child gets the chart as JSON on stdin, an argument list
(no shell), a timeout after which it is killed, and an environment of its own: the bot's
secrets are not handed down. It finds its modules through the bot's own ``sys.path``, which
also holds when a wrapper (a Nix-built program) set the path up rather than the interpreter.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
from collections.abc import Mapping, Sequence
from datetime import datetime

from values import value

log = logging.getLogger(__name__)
RENDERER = (sys.executable, "-m", "providers.charts.png")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
BAD_INPUT = 2  # charts.png's exit code for a document it cannot draw


class ChartError(Exception):
    """The chart could not be drawn; the message is one short sentence, safe to show."""


@value
class ChartData:
    """Percent values over a period; every time is timezone-aware. Day labels follow the
    offset of ``since``."""

    title: str
    since: datetime
    until: datetime
    series: Mapping[str, Sequence[tuple[datetime, float]]]

    def __post_init__(self) -> None:
        if self.since.tzinfo is None or self.until.tzinfo is None:
            raise ValueError("ChartData.since and .until must be timezone-aware")

    def to_json(self) -> bytes:
        return json.dumps(
            {
                "title": self.title,
                "since": self.since.isoformat(),
                "until": self.until.isoformat(),
                "series": {
                    name: [[at.isoformat(), value] for at, value in points]
                    for name, points in self.series.items()
                },
            }
        ).encode()


async def render_week_chart(payload: ChartData, timeout: float = 30) -> bytes:  # noqa: ASYNC109
    """The chart as a PNG (800 x 400). At ``timeout`` seconds the child is killed and the
    answer is a ChartError, a sentence to show, rather than a bare TimeoutError."""
    return await run_renderer(payload.to_json(), time_limit=timeout)


async def run_renderer(
    document: bytes, *, time_limit: float, command: Sequence[str] = RENDERER
) -> bytes:
    """Run ``command`` with ``document`` on stdin; its stdout must be a PNG."""
    try:
        proc = await asyncio.create_subprocess_exec(
            *command,
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE, env=_child_env(),
        )  # fmt: skip
    except OSError as exc:
        raise ChartError(f"The chart renderer cannot be started: {exc.strerror}.") from None
    try:
        out, err = await asyncio.wait_for(proc.communicate(document), time_limit)
    except TimeoutError:
        raise ChartError(f"The chart took longer than {time_limit:g} s and was stopped.") from None
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    if proc.returncode != 0:
        raise ChartError(_explain(proc.returncode, err.decode(errors="replace")))
    if not out.startswith(PNG_SIGNATURE):
        raise ChartError("The chart renderer did not return a PNG image.")
    return out


def _child_env() -> dict[str, str]:
    path = [entry for entry in sys.path if entry]
    return {
        "PATH": os.environ.get("PATH", "/run/current-system/sw/bin"),
        "PYTHONPATH": os.pathsep.join(path),
        "LC_ALL": "C.UTF-8",
        "PYTHONDONTWRITEBYTECODE": "1",
    }


def _explain(code: int | None, stderr: str) -> str:
    lines = [line for line in stderr.strip().splitlines() if line.strip()]
    if code == BAD_INPUT and len(lines) == 1 and len(lines[0]) <= 200:
        return f"The chart data was refused: {lines[0]}"
    if "No module named 'PIL'" in stderr:
        return "Pillow is not installed, so no chart can be drawn."
    log.warning("chart renderer exited with %s: %s", code, lines[-1][:300] if lines else "")
    if code is not None and code < 0:
        return f"The chart renderer was killed by signal {-code}."
    return f"The chart renderer failed (exit code {code})."
