"""Render the Reply HTML subset (b, i, code, pre, a) for each transport.

Telegram takes it as it is. The console and Matrix's ``body`` get plain text. Matrix's
``formatted_body`` is HTML proper, where a newline is just a space: line breaks become ``<br>``
outside ``<pre>`` blocks.
"""

from __future__ import annotations

import html
import re

_LINK = re.compile(r'<a\s+href="([^"]*)"\s*>(.*?)</a>', re.DOTALL)
_TAG = re.compile(r"</?(?:b|i|code|pre|a)(?:\s[^>]*)?>")
_PRE = re.compile(r"(<pre>.*?</pre>)", re.DOTALL)


def to_plain(text: str) -> str:
    text = _LINK.sub(lambda m: f"{m.group(2)} ({m.group(1)})", text)
    return html.unescape(_TAG.sub("", text))


def to_matrix_html(text: str) -> str:
    parts = _PRE.split(text)
    # split() with one group: the odd parts are the <pre> blocks, kept as they are.
    return "".join(
        part if index % 2 else part.replace("\n", "<br>\n") for index, part in enumerate(parts)
    )
