"""Render the Reply HTML subset as plain text (console, logs, notification previews)."""

from __future__ import annotations

import html
import re

_LINK = re.compile(r'<a\s+href="([^"]*)"\s*>(.*?)</a>', re.DOTALL)
_TAG = re.compile(r"</?(?:b|i|code|pre|a)(?:\s[^>]*)?>")


def to_plain(text: str) -> str:
    text = _LINK.sub(lambda m: f"{m.group(2)} ({m.group(1)})", text)
    return html.unescape(_TAG.sub("", text))
