"""Small pieces of reply text that several handlers share."""

from __future__ import annotations


def duration(seconds: float) -> str:
    """How long, as a phone screen wants it: "45 s", "25 min", "3 h 5 min", "12 d 3 h"."""
    whole = max(0, int(seconds))
    if whole < 120:
        return f"{whole} s"
    minutes = whole // 60
    if minutes < 120:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {minutes} min"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h"


def mark(ok: bool) -> str:
    return "✅" if ok else "⚠️"
