"""A loopback fake of the Telegram Bot API, for end-to-end tests.

The fake serves ``http://127.0.0.1:PORT/bot<token>/<method>`` from its own thread and its own
asyncio loop, so a test that blocks its loop never stalls it. Every public method is
thread-safe and synchronous from the test's point of view (``wait_for_async`` is the one
coroutine, for tests whose bot runs on the test's own loop).

It follows the public Bot API documentation (https://core.telegram.org/bots/api) and the error
texts of the real server (tdlib's HTML parser), with two deliberate choices:

- ``strict_ampersand`` (on by default): the documentation says every ``&`` that does not start
  an entity must be written ``&amp;``. The real server is lenient and keeps a bare ``&`` as
  text; the fake refuses it so that escaping bugs show up in tests. Pass
  ``strict_ampersand=False`` to behave like the server.
- Only ``parse_mode=HTML`` is implemented; MarkdownV2 and Markdown are refused with a
  400 that says so, never silently accepted.

Message text length is counted in Unicode code points after entity parsing and trimming, as
the server does (tdlib compares ``utf8_length`` with ``message_text_length_max``).
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import itertools
import json
import re
import ssl
import struct
import threading
import time
from collections.abc import Callable, Coroutine, Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime
from types import TracebackType
from typing import Any, NamedTuple, Protocol, TypeVar

from aiohttp import web

JSON = dict[str, Any]
_T = TypeVar("_T")

MAX_TEXT_LENGTH = 4096
MAX_CAPTION_LENGTH = 1024
MAX_CALLBACK_DATA_BYTES = 64
MAX_LONG_POLL_SECONDS = 50.0

NOT_MODIFIED = (
    "Bad Request: message is not modified: specified new message content and reply markup are "
    "exactly the same as a current content and reply markup of the message"
)
QUERY_TOO_OLD = "Bad Request: query is too old and response timeout expired or query ID is invalid"
CONFLICT = (
    "Conflict: terminated by other getUpdates request; make sure that only one bot instance is "
    "running"
)

_DEFAULT_DESCRIPTIONS = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden: bot was blocked by the user",
    404: "Not Found",
    409: CONFLICT,
    500: "Internal Server Error",
}
_NGINX_STATUSES = {
    502: "Bad Gateway",
    503: "Service Temporarily Unavailable",
    504: "Gateway Time-out",
}
_JSON_PARAMS = frozenset(
    {
        "reply_markup",
        "commands",
        "scope",
        "reply_parameters",
        "link_preview_options",
        "allowed_updates",
        "entities",
        "caption_entities",
    }
)
_CHAT_ACTIONS = frozenset(
    {
        "typing",
        "upload_photo",
        "record_video",
        "upload_video",
        "record_voice",
        "upload_voice",
        "upload_document",
        "choose_sticker",
        "find_location",
        "record_video_note",
        "upload_video_note",
    }
)
# By default getUpdates delivers every update type except these (Bot API, getUpdates).
_OPT_IN_UPDATES = frozenset({"chat_member", "message_reaction", "message_reaction_count"})
_INLINE_BUTTON_ACTIONS = (
    "url",
    "callback_data",
    "web_app",
    "login_url",
    "switch_inline_query",
    "switch_inline_query_current_chat",
    "switch_inline_query_chosen_chat",
    "copy_text",
    "callback_game",
    "pay",
)


# ---------------------------------------------------------------------------------------------
# Telegram's HTML dialect
# ---------------------------------------------------------------------------------------------


class EntityParseError(ValueError):
    """The text does not parse under the Bot API's HTML rules; str() is the server's reason."""


_ALLOWED_TAGS = frozenset(
    {
        "a",
        "b",
        "strong",
        "i",
        "em",
        "u",
        "ins",
        "s",
        "strike",
        "del",
        "span",
        "tg-spoiler",
        "tg-emoji",
        "code",
        "pre",
        "blockquote",
    }
)
_SIMPLE_TAGS = {
    "b": "bold",
    "strong": "bold",
    "i": "italic",
    "em": "italic",
    "u": "underline",
    "ins": "underline",
    "s": "strikethrough",
    "strike": "strikethrough",
    "del": "strikethrough",
    "tg-spoiler": "spoiler",
    "span": "spoiler",
}
_NAMED_ENTITIES = {"lt": "<", "gt": ">", "amp": "&", "quot": '"'}
_SPACES = frozenset(" \t\r\n\v\f\0")
_TRIMMED = " \t\r\n\v\f"
_ASCII_ALNUM = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")
_HEX = frozenset("0123456789abcdefABCDEF")
_DIGITS = frozenset("0123456789")
_ASCII_ALPHA = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
_TYPE_PRIORITY = {
    "blockquote": 0,
    "expandable_blockquote": 0,
    "pre": 11,
    "code": 20,
    "text_link": 49,
    "text_mention": 49,
    "bold": 90,
    "italic": 91,
    "underline": 92,
    "strikethrough": 93,
    "spoiler": 94,
    "custom_emoji": 99,
}


def utf16_length(text: str) -> int:
    """Length in UTF-16 code units, the unit of MessageEntity offsets and lengths."""
    return len(text.encode("utf-16-le", "surrogatepass")) // 2


def _byte_offset(text: str, index: int) -> int:
    return len(text[:index].encode("utf-8", "surrogatepass"))


def _decode_entity(text: str, pos: int) -> tuple[str, int] | None:
    """tdlib's decode_html_entity: the character and the index after it, or None."""
    n = len(text)
    end = pos + 1
    if end < n and text[end] == "#":
        end += 1
        value = 0
        if end < n and text[end] == "x":
            end += 1
            while end < n and text[end] in _HEX:
                value = value * 16 + int(text[end], 16)
                end += 1
        else:
            while end < n and text[end] in _DIGITS:
                value = value * 10 + int(text[end])
                end += 1
        if value == 0 or value >= 0x10FFFF or end - pos >= 10:
            return None
        char = chr(value)
    else:
        while end < n and text[end] in _ASCII_ALPHA:
            end += 1
        named = _NAMED_ENTITIES.get(text[pos + 1 : end])
        if named is None:
            return None
        char = named
    if end < n and text[end] == ";":
        end += 1
    return char, end


@dataclass
class _OpenTag:
    tag: str
    argument: str
    utf16_offset: int
    text_index: int
    expandable: bool


def parse_html(source: str, *, strict_ampersand: bool = True) -> tuple[str, list[JSON]]:
    """Parse Bot API HTML into (plain text, MessageEntity dicts), or raise EntityParseError.

    A port of the server's parser (tdlib ``parse_html``): the same tags, attributes, entity
    decoding and error messages, with byte offsets into the UTF-8 source.
    """
    return _HtmlParser(source, strict_ampersand=strict_ampersand).run()


class _HtmlParser:
    def __init__(self, source: str, *, strict_ampersand: bool) -> None:
        self.source = source
        self.n = len(source)
        self.strict_ampersand = strict_ampersand
        self.out: list[str] = []
        self.utf16 = 0
        self.entities: list[JSON] = []
        self.stack: list[_OpenTag] = []
        self.i = 0

    def run(self) -> tuple[str, list[JSON]]:
        source = self.source
        while self.i < self.n:
            char = source[self.i]
            if char == "&" and self._entity():
                continue
            if char != "<":
                self.out.append(char)
                self.utf16 += 2 if ord(char) > 0xFFFF else 1
                self.i += 1
            elif self.i + 1 < self.n and source[self.i + 1] == "/":
                self._end_tag()
            else:
                self._start_tag()
        if self.stack:
            raise EntityParseError(
                f'Can\'t find end tag corresponding to start tag "{self.stack[-1].tag}"'
            )
        text = "".join(self.out)
        if any(0xD800 <= ord(c) <= 0xDFFF for c in text):
            raise EntityParseError(
                "Text contains invalid Unicode characters after decoding HTML entities, check "
                "for unmatched surrogate code units"
            )
        for entity in self.entities:
            entity.pop("_language", None)
        return text, _sorted(self.entities)

    def _at(self, index: int) -> int:
        return _byte_offset(self.source, index)

    def _unescaped_ampersand(self) -> EntityParseError:
        return EntityParseError(
            f'Character "&" must be escaped as "&amp;" at byte offset {self._at(self.i)}'
            " (the fake's strict_ampersand rule, from the Bot API documentation)"
        )

    def _entity(self) -> bool:
        """Decode an entity at i into the text; False when '&' is to be kept as it is."""
        decoded = _decode_entity(self.source, self.i)
        if decoded is None:
            if self.strict_ampersand:
                raise self._unescaped_ampersand()
            return False
        text, self.i = decoded
        self.out.append(text)
        self.utf16 += utf16_length(text)
        return True

    def _skip_spaces(self) -> None:
        while self.i < self.n and self.source[self.i] in _SPACES:
            self.i += 1

    def _start_tag(self) -> None:
        source, begin = self.source, self.i
        at = self._at(begin)
        self.i += 1
        while self.i < self.n and source[self.i] not in _SPACES and source[self.i] != ">":
            self.i += 1
        if self.i >= self.n:
            raise EntityParseError(f"Unclosed start tag at byte offset {at}")
        tag = source[begin + 1 : self.i].lower()
        if tag not in _ALLOWED_TAGS:
            raise EntityParseError(f'Unsupported start tag "{tag}" at byte offset {at}')
        argument, expandable = self._attributes(tag, at)
        if tag == "span" and argument != "spoiler":
            raise EntityParseError(f'Tag "span" must have class "tg-spoiler" at byte offset {at}')
        self.stack.append(_OpenTag(tag, argument, self.utf16, len(self.out), expandable))
        self.i += 1

    def _attributes(self, tag: str, at: int) -> tuple[str, bool]:
        """Read a start tag's attributes up to its '>': the tag's argument and expandability."""
        source = self.source
        argument = ""
        expandable = False
        while True:
            self._skip_spaces()
            if self.i >= self.n:
                raise EntityParseError(f"Unclosed start tag at byte offset {at}")
            if source[self.i] == ">":
                break
            name_begin = self.i
            while self.i < self.n and source[self.i] not in _SPACES and source[self.i] not in "=>":
                self.i += 1
            name = source[name_begin : self.i]
            if not name:
                raise EntityParseError(
                    f'Empty attribute name in the tag "{tag}" at byte offset {at}'
                )
            self._skip_spaces()
            if self.i >= self.n or source[self.i] != "=":
                if tag == "blockquote" and name == "expandable":
                    expandable = True
                    continue
                raise EntityParseError(
                    "Expected equal sign in declaration of an attribute of the tag "
                    f'"{tag}" at byte offset {at}'
                )
            self.i += 1
            self._skip_spaces()
            if self.i >= self.n:
                raise EntityParseError(f'Unclosed start tag "{tag}" at byte offset {at}')
            value = self._attribute_value()
            if self.i >= self.n:
                raise EntityParseError(f"Unclosed start tag at byte offset {at}")
            argument = _tag_argument(tag, name, value, argument)
        return argument, expandable

    def _attribute_value(self) -> str:
        source = self.source
        if source[self.i] not in "'\"":
            # a name token: letters, digits, periods and hyphens; not case sensitive
            token_begin = self.i
            while self.i < self.n and (source[self.i] in _ASCII_ALNUM or source[self.i] in ".-"):
                self.i += 1
            if self.i < self.n and source[self.i] not in _SPACES and source[self.i] != ">":
                raise EntityParseError(
                    f"Unexpected end of name token at byte offset {self._at(token_begin)}"
                )
            return source[token_begin : self.i].lower()
        quote = source[self.i]
        self.i += 1
        chars: list[str] = []
        while self.i < self.n and source[self.i] != quote:
            if source[self.i] == "&":
                decoded = _decode_entity(source, self.i)
                if decoded is not None:
                    chars.append(decoded[0])
                    self.i = decoded[1]
                    continue
                if self.strict_ampersand:
                    raise self._unescaped_ampersand()
            chars.append(source[self.i])
            self.i += 1
        if self.i < self.n:
            self.i += 1
        return "".join(chars)

    def _end_tag(self) -> None:
        source, begin = self.source, self.i
        at = self._at(begin)
        if not self.stack:
            raise EntityParseError(f"Unexpected end tag at byte offset {at}")
        j = begin + 2
        while j < self.n and source[j] not in _SPACES and source[j] != ">":
            j += 1
        end_name = source[begin + 2 : j].lower()
        while j < self.n and source[j] in _SPACES:
            j += 1
        if j >= self.n or source[j] != ">":
            raise EntityParseError(f"Unclosed end tag at byte offset {at}")
        opened = self.stack.pop()
        if end_name and end_name != opened.tag:
            raise EntityParseError(
                f'Unmatched end tag at byte offset {at}, expected "</{opened.tag}>", '
                f'found "</{end_name}>"'
            )
        if self.utf16 > opened.utf16_offset:
            inner = "".join(self.out[opened.text_index :])
            _close_entity(opened, self.utf16, inner, self.entities)
        self.i = j + 1


def _tag_argument(tag: str, name: str, value: str, current: str) -> str:
    if tag == "a" and name == "href":
        return value
    if tag == "code" and name == "class" and value.startswith("language-"):
        return value.removeprefix("language-")
    if tag == "span" and name == "class" and value.startswith("tg-"):
        return value.removeprefix("tg-")
    if tag == "tg-emoji" and name == "emoji-id":
        return value
    return current


def _close_entity(opened: _OpenTag, utf16_end: int, inner_text: str, out: list[JSON]) -> None:
    offset = opened.utf16_offset
    length = utf16_end - offset
    tag = opened.tag
    if tag in _SIMPLE_TAGS:
        out.append({"type": _SIMPLE_TAGS[tag], "offset": offset, "length": length})
    elif tag == "blockquote":
        kind = "expandable_blockquote" if opened.expandable else "blockquote"
        out.append({"type": kind, "offset": offset, "length": length})
    elif tag == "tg-emoji":
        if not opened.argument.isdigit() or int(opened.argument) == 0:
            raise EntityParseError("Invalid custom emoji identifier specified")
        emoji_id = opened.argument
        out.append(
            {
                "type": "custom_emoji",
                "offset": offset,
                "length": length,
                "custom_emoji_id": emoji_id,
            }
        )
    elif tag == "a":
        link = _link_entity(opened.argument or inner_text, offset, length)
        if link is not None:
            out.append(link)
    else:
        _close_code(opened, offset, length, out)


def _link_entity(url: str, offset: int, length: int) -> JSON | None:
    mention = re.fullmatch(r"tg://user\?id=(\d+)", url)
    if mention is not None:
        user = {"id": int(mention.group(1)), "is_bot": False, "first_name": ""}
        return {"type": "text_mention", "offset": offset, "length": length, "user": user}
    if not url or any(c in _SPACES for c in url):
        return None  # the server drops a link it cannot check
    if not re.match(r"[a-zA-Z][a-zA-Z0-9+.-]*:", url):
        url = "http://" + url
    return {"type": "text_link", "offset": offset, "length": length, "url": url}


def _close_code(opened: _OpenTag, offset: int, length: int, out: list[JSON]) -> None:
    """<pre><code class="language-x"> makes one pre entity with a language."""
    last = out[-1] if out else None
    same_span = last is not None and last["offset"] == offset and last["length"] == length
    if opened.tag == "pre":
        if last is not None and same_span and last["type"] == "code" and last.get("_language"):
            last["type"] = "pre"
            last["language"] = last.pop("_language")
        else:
            out.append({"type": "pre", "offset": offset, "length": length})
    elif last is not None and same_span and last["type"] == "pre" and opened.argument:
        last["language"] = opened.argument
    else:
        entity: JSON = {"type": "code", "offset": offset, "length": length}
        if opened.argument:
            entity["_language"] = opened.argument
        out.append(entity)


def _sorted(entities: Iterable[JSON]) -> list[JSON]:
    return sorted(
        entities,
        key=lambda e: (e["offset"], -e["length"], _TYPE_PRIORITY.get(e["type"], 50)),
    )


def _trim(text: str, entities: list[JSON]) -> tuple[str, list[JSON]]:
    """The server trims whitespace around a message; entities follow the text."""
    stripped = text.lstrip(_TRIMMED)
    cut = utf16_length(text) - utf16_length(stripped)
    stripped = stripped.rstrip(_TRIMMED)
    end = utf16_length(stripped)
    kept: list[JSON] = []
    for entity in entities:
        start = max(entity["offset"] - cut, 0)
        stop = min(entity["offset"] + entity["length"] - cut, end)
        if stop > start:
            kept.append({**entity, "offset": start, "length": stop - start})
    return stripped, kept


def _is_word(char: str) -> bool:
    return char.isalnum() or char == "_"


def _ascii_word(char: str) -> bool:
    return char in _ASCII_ALNUM or char == "_"


def _bot_commands(text: str) -> Iterable[tuple[int, int]]:
    """tdlib's match_bot_commands: /command or /command@botname, with its word boundaries."""
    n = len(text)
    pos = 0
    while (start := text.find("/", pos)) != -1:
        pos = start + 1
        if start > 0 and (_is_word(text[start - 1]) or text[start - 1] in "/<>"):
            continue
        j = start + 1
        while j < n and _ascii_word(text[j]):
            j += 1
        if not 1 <= j - start - 1 <= 64:
            continue
        if j < n and text[j] == "@":
            mention = j + 1
            j = mention
            while j < n and _ascii_word(text[j]):
                j += 1
            if not 3 <= j - mention <= 32:
                continue
        if j < n and (_is_word(text[j]) or text[j] in "/<>"):
            continue
        yield start, j


_MENTION = re.compile(r"(?<![\w@])@[A-Za-z0-9_]{2,32}(?![\w@])")
_HASHTAG = re.compile(r"(?<![\w#])#\w{1,256}(?![\w#])")
_URL = re.compile(r"\bhttps?://[^\s<>\"]+", re.IGNORECASE)


def detect_entities(text: str) -> list[JSON]:
    """The entities Telegram finds by itself: commands, mentions, hashtags and http(s) URLs.

    A simplified version of the server's detection (bare domains and e-mail addresses are not
    recognised).
    """
    spans: list[tuple[str, int, int]] = [("bot_command", s, e) for s, e in _bot_commands(text)]
    spans += [("mention", m.start(), m.end()) for m in _MENTION.finditer(text)]
    spans += [
        ("hashtag", m.start(), m.end())
        for m in _HASHTAG.finditer(text)
        if any(c.isalpha() for c in m.group())
    ]
    for match in _URL.finditer(text):
        end = match.end()
        while end > match.start() and text[end - 1] in ".,;:!?)'\"":
            end -= 1
        spans.append(("url", match.start(), end))
    found = []
    for kind, start, end in spans:
        offset = utf16_length(text[:start])
        found.append({"type": kind, "offset": offset, "length": utf16_length(text[start:end])})
    return _sorted(found)


def _merge_detected(text: str, entities: list[JSON]) -> list[JSON]:
    opaque = [e for e in entities if e["type"] in {"code", "pre", "text_link", "text_mention"}]
    extra: list[JSON] = []
    for found in detect_entities(text):
        start, end = found["offset"], found["offset"] + found["length"]
        overlaps = any(
            start < e["offset"] + e["length"] and e["offset"] < end for e in opaque + extra
        )
        if not overlaps:
            extra.append(found)
    return _sorted(entities + extra)


# ---------------------------------------------------------------------------------------------
# Records the tests read
# ---------------------------------------------------------------------------------------------


class Call(NamedTuple):
    """One request that reached the fake. ``time`` is ``time.monotonic()`` at arrival;
    ``status`` is the HTTP status, 0 for a connection the fake dropped, 499 when the client
    had gone before the answer (an abandoned long poll, for one). Form values are the strings
    that were sent; the nested JSON parameters (reply_markup, commands, scope, ...) are
    decoded; an uploaded file appears as {"filename", "size", "content_type"}."""

    method: str
    params: JSON
    time: float
    status: int


@dataclass
class DocumentInfo:
    filename: str | None
    content: bytes
    mime_type: str | None
    file_id: str
    # "photo": sent with sendPhoto, shown inline; the size is read from the image itself.
    kind: str = "document"
    width: int = 0
    height: int = 0


@dataclass
class Edit:
    """The state of a message right after one edit."""

    method: str
    text: str | None
    parse_mode: str | None
    entities: list[JSON]
    reply_markup: JSON | None
    time: float


@dataclass
class BotMessage:
    """A message the bot sent, as the fake holds it now. ``text`` is the rendered plain text
    (for a document: None, see ``caption``); ``source`` is the text exactly as sent."""

    chat_id: int
    message_id: int
    date: int
    text: str | None
    source: str | None
    parse_mode: str | None
    entities: list[JSON]
    reply_markup: JSON | None
    disable_notification: bool = False
    protect_content: bool = False
    reply_to: int | None = None
    link_preview_options: JSON | None = None
    caption: str | None = None
    document: DocumentInfo | None = None
    edits: list[Edit] = field(default_factory=list)
    edit_date: int | None = None
    deleted: bool = False

    @property
    def buttons(self) -> list[JSON]:
        """The inline keyboard's buttons, row after row."""
        rows = (self.reply_markup or {}).get("inline_keyboard") or []
        return [button for row in rows for button in row]


@dataclass
class CallbackAnswer:
    callback_query_id: str
    text: str | None
    show_alert: bool
    url: str | None
    cache_time: int | None
    time: float


@dataclass
class _Fault:
    method: str
    kind: str
    times: int | None
    status: int = 0
    retry_after: int = 0
    description: str | None = None
    seconds: float = 0.0


@dataclass
class _Upload:
    filename: str | None
    content_type: str | None
    data: bytes


class _ApiError(Exception):
    def __init__(self, status: int, description: str, parameters: JSON | None = None) -> None:
        super().__init__(description)
        self.status = status
        self.description = description
        self.parameters = parameters


def _bad(description: str) -> _ApiError:
    return _ApiError(400, f"Bad Request: {description}")


# ---------------------------------------------------------------------------------------------
# Request parameters
# ---------------------------------------------------------------------------------------------


class _Params:
    def __init__(self, values: JSON) -> None:
        self.values = values

    def present(self, name: str) -> bool:
        return self.values.get(name) not in (None, "")

    def string(self, name: str) -> str | None:
        value = self.values.get(name)
        if value is None or isinstance(value, str):
            return value
        if isinstance(value, _Upload):
            raise _bad(f"can't use an uploaded file as {name}")
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, int | float):
            return str(value)
        return json.dumps(value)

    def integer(self, name: str) -> int | None:
        value = self.values.get(name)
        if value is None or value == "":
            return None
        if isinstance(value, bool):
            raise _bad(f"invalid {name} specified")
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        try:
            return int(str(value).strip())
        except ValueError:
            raise _bad(f"invalid {name} specified") from None

    def number(self, name: str) -> float | None:
        value = self.values.get(name)
        if value is None or value == "":
            return None
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        try:
            return float(str(value).strip())
        except ValueError:
            raise _bad(f"invalid {name} specified") from None

    def boolean(self, name: str) -> bool:
        value = self.values.get(name)
        if value is None or isinstance(value, bool):
            return bool(value)
        if isinstance(value, int):
            return value != 0
        lowered = str(value).strip().lower()
        if lowered in ("true", "1"):
            return True
        if lowered in ("false", "0", ""):
            return False
        raise _bad(f"invalid {name} specified")

    def json(self, name: str) -> Any:
        value = self.values.get(name)
        if value is None or value == "":
            return None
        if isinstance(value, str):
            try:
                return json.loads(value)
            except ValueError:
                raise _bad(f"can't parse {name} JSON object") from None
        return value

    def upload(self, name: str) -> _Upload | None:
        value = self.values.get(name)
        return value if isinstance(value, _Upload) else None


def _loggable(values: JSON) -> JSON:
    logged: JSON = {}
    for key, value in values.items():
        if isinstance(value, _Upload):
            logged[key] = {
                "filename": value.filename,
                "size": len(value.data),
                "content_type": value.content_type,
            }
        elif key in _JSON_PARAMS and isinstance(value, str):
            try:
                logged[key] = json.loads(value)
            except ValueError:
                logged[key] = value
        else:
            logged[key] = value
    return logged


def _unix(date: datetime | float | None) -> int:
    if date is None:
        return int(time.time())
    if isinstance(date, datetime):
        if date.tzinfo is None:
            raise ValueError("use an aware datetime for a message date")
        return int(date.timestamp())
    return int(date)


def _connected(request: web.Request) -> bool:
    transport = request.transport
    return transport is not None and not transport.is_closing()


def _chat_type_of(chat_id: int) -> str:
    if chat_id > 0:
        return "private"
    return "supergroup" if str(chat_id).startswith("-100") else "group"


# ---------------------------------------------------------------------------------------------
# The fake
# ---------------------------------------------------------------------------------------------


class SharedChat(Protocol):
    """A group that several fake bots are members of (``tests.support.fake_group``): it
    numbers the group's messages and passes what one bot posts to the others."""

    def next_message_id(self) -> int: ...

    def posted(self, sender: FakeBotAPI, message: JSON) -> None: ...

    def deleted(self, sender: FakeBotAPI, message_id: int) -> None: ...


class FakeBotAPI:
    """A Telegram Bot API server on 127.0.0.1, holding chats, messages and updates in memory.

    ``strict_chats``: sending to a chat nobody has written from yet gives 400 "chat not found"
    (the server's answer), unless the chat was introduced with ``add_chat``.

    ``privacy_mode`` and ``bot_to_bot`` are the bot's settings in @BotFather (Group Privacy,
    on by default; Bot-to-Bot Communication Mode, off by default). They matter only in a
    group shared with other bots (``join``); getMe reports privacy mode as the Bot API does,
    as ``can_read_all_group_messages``.

    ``tls``: serve HTTPS with this context (its certificate chain loaded), as Telegram does.
    """

    def __init__(
        self,
        token: str = "123:ABC",  # noqa: S107 - the fake's own token
        *,
        username: str = "steward_test_bot",
        first_name: str = "Steward",
        strict_ampersand: bool = True,
        strict_chats: bool = False,
        first_update_id: int = 1000,
        privacy_mode: bool = True,
        bot_to_bot: bool = False,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        bot_id, _, _ = token.partition(":")
        self.tls = tls
        self.token = token
        self.bot_id = int(bot_id) if bot_id.isdigit() else 1
        self.username = username
        self.first_name = first_name
        self.strict_ampersand = strict_ampersand
        self.strict_chats = strict_chats
        self.privacy_mode = privacy_mode
        self.bot_to_bot = bot_to_bot
        self._lock = threading.RLock()
        self._started_at = time.monotonic()
        # state guarded by _lock
        self._calls: list[Call] = []
        self._updates: list[JSON] = []
        self._update_ids = itertools.count(first_update_id)
        self._allowed_updates: frozenset[str] | None = None
        self._chats: dict[int, JSON] = {}
        self._bot_messages: dict[int, dict[int, BotMessage]] = {}
        self._user_messages: dict[int, dict[int, JSON]] = {}
        self._shared_message_ids = itertools.count(1)
        self._channel_message_ids: dict[int, itertools.count[int]] = {}
        self._open_queries: set[str] = set()
        self._query_ids = itertools.count(4_200_000_000_000_000_001)
        self._file_ids = itertools.count(1)
        self._answers: list[CallbackAnswer] = []
        self._commands: dict[tuple[str, int | None, int | None, str], list[JSON]] = {}
        self._faults: list[_Fault] = []
        self._getupdates_count = 0
        self._poller: object | None = None
        self._shared: dict[int, SharedChat] = {}
        # What this bot did in a shared group, passed on once the fake's lock is released:
        # two bots posting at once would otherwise each wait for the other's lock.
        self._outgoing: list[Callable[[], None]] = []
        self._is_down = False
        self._closing = False
        # loop-side objects
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._site: web.TCPSite | None = None
        self._waiters: set[asyncio.Future[None]] = set()
        self._closed_event: asyncio.Event | None = None
        self.port = 0

    # -- lifecycle ------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        """What python-telegram-bot takes as base_url; it appends the token."""
        if not self.port:
            raise RuntimeError("the fake Bot API is not started")
        scheme = "https" if self.tls is not None else "http"
        return f"{scheme}://127.0.0.1:{self.port}/bot"

    @property
    def api_url(self) -> str:
        """The URL of this bot's methods: api_url + '/sendMessage'."""
        return f"{self.base_url}{self.token}"

    def start(self) -> FakeBotAPI:
        if self._thread is not None:
            raise RuntimeError("the fake Bot API is already started")
        loop = asyncio.new_event_loop()
        self._loop = loop
        self._thread = threading.Thread(target=self._run_loop, name="fake-telegram", daemon=True)
        self._thread.start()
        try:
            self._on_loop(self._async_start())
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        with contextlib.suppress(Exception):
            self._on_loop(self._async_stop())
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        self._loop = None
        self._thread = None

    def __enter__(self) -> FakeBotAPI:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def down(self) -> None:
        """Refuse every request (the port stops listening, open connections are cut) until
        up(). State is kept."""
        self._on_loop(self._async_down())

    def up(self) -> None:
        """Listen again, on the same port."""
        self._on_loop(self._async_up())

    def _run_loop(self) -> None:
        loop = self._loop
        assert loop is not None
        asyncio.set_event_loop(loop)
        try:
            loop.run_forever()
        finally:
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.run_until_complete(loop.shutdown_default_executor())
            loop.close()

    def _on_loop(self, coro: Coroutine[Any, Any, None], timeout: float = 20.0) -> None:
        loop = self._loop
        if loop is None:
            coro.close()
            raise RuntimeError("the fake Bot API is not started")
        asyncio.run_coroutine_threadsafe(coro, loop).result(timeout)

    async def _async_start(self) -> None:
        with self._lock:
            self._closing = False
            self._is_down = False
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=2.0)
        await runner.setup()
        self._runner = runner
        self._closed_event = asyncio.Event()
        site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=self.tls)
        await site.start()
        self._site = site
        self.port = int(runner.addresses[0][1])

    async def _async_stop(self) -> None:
        with self._lock:
            self._closing = True
        if self._closed_event is not None:
            self._closed_event.set()
        self._wake()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        self._site = None

    async def _async_down(self) -> None:
        with self._lock:
            self._is_down = True
        if self._site is not None:
            await self._site.stop()
            self._site = None
        server = self._runner.server if self._runner is not None else None
        if server is not None:
            for connection in server.connections:
                connection.force_close()
        self._wake()

    async def _async_up(self) -> None:
        if self._site is None and self._runner is not None:
            site = web.TCPSite(
                self._runner, "127.0.0.1", self.port, reuse_address=True, ssl_context=self.tls
            )
            await site.start()
            self._site = site
        with self._lock:
            self._is_down = False

    # -- long-poll wake-ups (loop thread only) --------------------------------------------

    def _wake(self) -> None:
        for waiter in list(self._waiters):
            if not waiter.done():
                waiter.set_result(None)
        self._waiters.clear()

    def _notify(self) -> None:
        loop = self._loop
        if loop is not None and loop.is_running():
            loop.call_soon_threadsafe(self._wake)

    # -- the test's side: users, messages, presses ---------------------------------------

    @staticmethod
    def user(
        id: int,
        first_name: str = "Tester",
        username: str | None = None,
        *,
        last_name: str | None = None,
        language_code: str | None = "en",
    ) -> JSON:
        """A Telegram User object for a person."""
        user: JSON = {"id": id, "is_bot": False, "first_name": first_name}
        if last_name is not None:
            user["last_name"] = last_name
        if username is not None:
            user["username"] = username
        if language_code is not None:
            user["language_code"] = language_code
        return user

    @property
    def bot_user(self) -> JSON:
        return {
            "id": self.bot_id,
            "is_bot": True,
            "first_name": self.first_name,
            "username": self.username,
        }

    def add_chat(
        self, chat_id: int, chat_type: str | None = None, title: str | None = None
    ) -> JSON:
        """Make a chat known (for strict_chats) and return its Chat object."""
        with self._lock:
            return copy.deepcopy(self._chat(chat_id, chat_type, title, register=True))

    def join(self, shared: SharedChat, chat: JSON) -> None:
        """Become a member of a group shared with other fake bots."""
        with self._lock:
            self._chats[int(chat["id"])] = copy.deepcopy(chat)
            self._shared[int(chat["id"])] = shared

    def receive(self, message: JSON, *, deliver: bool) -> None:
        """A message someone else posted in a shared group. The bot can reply to it whether or
        not it was delivered; ``deliver`` queues an Update with it."""
        chat_id = int(message["chat"]["id"])
        with self._lock:
            self._user_messages.setdefault(chat_id, {})[int(message["message_id"])] = copy.deepcopy(
                message
            )
            if deliver:
                self._enqueue("message", message)

    def forget(self, chat_id: int, message_id: int) -> None:
        """Someone else deleted their message in a shared group."""
        with self._lock:
            self._user_messages.get(chat_id, {}).pop(message_id, None)

    def send_text(
        self,
        user: JSON,
        text: str,
        chat_id: int | None = None,
        chat_type: str = "private",
        *,
        date: datetime | float | None = None,
        title: str | None = None,
        reply_to: int | None = None,
        entities: list[JSON] | None = None,
    ) -> JSON:
        """A person sends a text message; an Update with it is queued. Returns the message.

        Commands, mentions, hashtags and links carry the entities a Telegram client sends
        (a leading /command or /command@botname gets a bot_command entity at offset 0).
        ``date`` (an aware datetime or a Unix time) backdates the message."""
        if chat_id is None:
            if chat_type != "private":
                raise ValueError("a group message needs a chat_id")
            chat_id = int(user["id"])
        with self._lock:
            chat = self._chat(chat_id, chat_type, title, register=True, user=user)
            message: JSON = {
                "message_id": self._next_message_id(chat_id),
                "from": copy.deepcopy(user),
                "chat": copy.deepcopy(chat),
                "date": _unix(date),
                "text": text,
            }
            found = detect_entities(text) if entities is None else entities
            if found:
                message["entities"] = found
            if reply_to is not None:
                replied = self._message_dict_by_id(chat_id, reply_to)
                if replied is None:
                    raise LookupError(f"no message {reply_to} in chat {chat_id}")
                message["reply_to_message"] = replied
            self._user_messages.setdefault(chat_id, {})[message["message_id"]] = message
            self._enqueue("message", message)
            return copy.deepcopy(message)

    def press(
        self,
        user: JSON,
        message_id: int,
        data: str,
        chat_id: int | None = None,
        *,
        strict: bool = True,
    ) -> str:
        """A person presses an inline button of a bot message; a callback_query Update is
        queued. Returns the callback query id. With ``strict`` the data must belong to a
        button the message shows now (Telegram refuses anything else)."""
        if chat_id is None:
            chat_id = int(user["id"])
        with self._lock:
            stored = self._bot_messages.get(chat_id, {}).get(message_id)
            if stored is None or stored.deleted:
                raise LookupError(f"the bot has no message {message_id} in chat {chat_id}")
            datas = [b.get("callback_data") for b in stored.buttons]
            if strict and data not in datas:
                raise ValueError(f"message {message_id} has no button with data {data!r}: {datas}")
            query_id = str(next(self._query_ids))
            self._open_queries.add(query_id)
            query = {
                "id": query_id,
                "from": copy.deepcopy(user),
                "message": self._message_dict(stored),
                "chat_instance": str(abs(chat_id) * 7 + 1_000_000_000_000),
                "data": data,
            }
            self._enqueue("callback_query", query)
            return query_id

    def enqueue(self, update: JSON) -> int | None:
        """Queue a raw Update (without update_id); returns its update_id, or None when the
        bot's allowed_updates leave it out (the server does not create it then)."""
        kinds = [key for key in update if key != "update_id"]
        if len(kinds) != 1:
            raise ValueError(f"an Update has exactly one payload field, not {kinds}")
        with self._lock:
            queued = self._enqueue(kinds[0], copy.deepcopy(update[kinds[0]]))
            return None if queued is None else int(queued["update_id"])

    def _enqueue(self, kind: str, payload: JSON) -> JSON | None:
        with self._lock:
            allowed = self._allowed_updates
            if (allowed is not None and kind not in allowed) or (
                allowed is None and kind in _OPT_IN_UPDATES
            ):
                return None
            update = {"update_id": next(self._update_ids), kind: copy.deepcopy(payload)}
            self._updates.append(update)
        self._notify()
        return update

    # -- inspection -----------------------------------------------------------------------

    def messages(self, chat_id: int) -> list[BotMessage]:
        """The bot's messages in a chat, oldest first, deleted ones included (see .deleted)."""
        with self._lock:
            stored = self._bot_messages.get(chat_id, {})
            return [copy.deepcopy(stored[key]) for key in sorted(stored)]

    def message(self, chat_id: int, message_id: int) -> BotMessage:
        with self._lock:
            stored = self._bot_messages.get(chat_id, {}).get(message_id)
            if stored is None:
                raise LookupError(f"the bot has no message {message_id} in chat {chat_id}")
            return copy.deepcopy(stored)

    def texts(self, chat_id: int) -> list[str]:
        """The current text (or caption) of every message the bot has not deleted."""
        return [
            (m.text if m.document is None else m.caption) or ""
            for m in self.messages(chat_id)
            if not m.deleted
        ]

    @property
    def calls(self) -> list[Call]:
        with self._lock:
            return list(self._calls)

    def calls_to(self, method: str) -> list[Call]:
        return self.calls_since(0, method)

    @property
    def call_count(self) -> int:
        """How many calls have arrived: a cursor for ``calls_since``."""
        with self._lock:
            return len(self._calls)

    def calls_since(self, cursor: int, method: str | None = None) -> list[Call]:
        """The calls after the first ``cursor`` (all of them, or those to ``method``). A poll
        that keeps a cursor costs what arrived since, not the whole history: the benchmarks
        poll every half millisecond, on the thread that shares the GIL with this server."""
        with self._lock:
            recent = self._calls[cursor:]
        if method is None:
            return recent
        wanted = method.lower()
        return [call for call in recent if call.method.lower() == wanted]

    @property
    def callback_answers(self) -> list[CallbackAnswer]:
        with self._lock:
            return copy.deepcopy(self._answers)

    def commands(self, scope: JSON | None = None, language_code: str = "") -> list[JSON]:
        """The command menu set for exactly this scope (default scope when None)."""
        with self._lock:
            key = self._scope_key(scope, language_code)
            return copy.deepcopy(self._commands.get(key, []))

    @property
    def getupdates_count(self) -> int:
        """How many getUpdates requests reached the fake (failed ones included)."""
        with self._lock:
            return self._getupdates_count

    @property
    def pending_updates(self) -> list[JSON]:
        """Updates not yet confirmed by a getUpdates offset."""
        with self._lock:
            return copy.deepcopy(self._updates)

    def describe_calls(self, last: int = 25) -> str:
        calls = self.calls[-last:]
        if not calls:
            return "  (no Bot API calls)"
        lines = []
        for call in calls:
            params = json.dumps(call.params, ensure_ascii=False, default=str)
            if len(params) > 300:
                params = params[:297] + "..."
            lines.append(
                f"  +{call.time - self._started_at:8.3f}s {call.status:3d} {call.method} {params}"
            )
        return "\n".join(lines)

    def wait_for(
        self,
        predicate: Callable[[FakeBotAPI], _T | None],
        timeout: float = 10.0,
        interval: float = 0.01,
    ) -> _T:
        """Poll until predicate(fake) is truthy and return it; AssertionError with the recent
        calls otherwise. This blocks the calling thread: when the bot runs on the test's own
        event loop, use wait_for_async."""
        deadline = time.monotonic() + timeout
        while True:
            result = predicate(self)
            if result:
                return result
            if time.monotonic() >= deadline:
                raise AssertionError(self._timeout_report(timeout))
            time.sleep(interval)

    async def wait_for_async(
        self,
        predicate: Callable[[FakeBotAPI], _T | None],
        timeout: float = 10.0,  # noqa: ASYNC109 - the same signature as wait_for
        interval: float = 0.01,
    ) -> _T:
        """wait_for that yields to the caller's event loop while it polls."""
        deadline = time.monotonic() + timeout
        while True:
            result = predicate(self)
            if result:
                return result
            if time.monotonic() >= deadline:
                raise AssertionError(self._timeout_report(timeout))
            await asyncio.sleep(interval)

    def _timeout_report(self, timeout: float) -> str:
        return f"condition not met within {timeout} s; recent Bot API calls:\n" + (
            self.describe_calls()
        )

    # -- error injection ------------------------------------------------------------------

    def fail(
        self,
        method: str,
        status: int = 429,
        retry_after: int = 1,
        times: int | None = 1,
        description: str | None = None,
    ) -> None:
        """The next ``times`` calls of ``method`` ("*" for any; None times for ever) fail.

        429 answers "Too Many Requests: retry after N" with parameters.retry_after; 502, 503
        and 504 answer with nginx's HTML page; other statuses with the server's JSON error."""
        self._add_fault(
            _Fault(method.lower(), "fail", times, status, retry_after, description=description)
        )

    def drop(self, method: str, times: int | None = 1) -> None:
        """The next ``times`` calls of ``method`` get their connection closed, no answer."""
        self._add_fault(_Fault(method.lower(), "drop", times))

    def delay(self, method: str, seconds: float, times: int | None = 1) -> None:
        """The next ``times`` calls of ``method`` are answered ``seconds`` late."""
        self._add_fault(_Fault(method.lower(), "delay", times, seconds=seconds))

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def _add_fault(self, fault: _Fault) -> None:
        if fault.times is not None and fault.times < 1:
            raise ValueError("times must be at least 1, or None for ever")
        with self._lock:
            self._faults.append(fault)

    def _take_fault(self, method: str) -> _Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.method in ("*", method.lower()):
                    if fault.times is not None:
                        fault.times -= 1
                        if fault.times == 0:
                            self._faults.remove(fault)
                    return fault
        return None

    # -- HTTP -----------------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        if self._is_down:
            return self._cut(request)
        arrived = time.monotonic()
        match = re.fullmatch(r"/bot([^/]+)/([^/]*)", request.path)
        if match is None:
            return self._error_response(_ApiError(404, "Not Found"))
        token, name = match.groups()
        try:
            values = await self._read_params(request)
        except _ApiError as error:
            return self._refuse(name, {}, arrived, error)
        method = _METHODS.get(name.lower())
        if token != self.token:
            return self._refuse(method or name, values, arrived, _ApiError(401, "Unauthorized"))
        if method is None:
            return self._refuse(name, values, arrived, _ApiError(404, "Not Found"))
        return await self._serve(request, method, values, arrived)

    async def _serve(
        self, request: web.Request, method: str, values: JSON, arrived: float
    ) -> web.StreamResponse:
        if method == "getUpdates":
            with self._lock:
                self._getupdates_count += 1
        fault = self._take_fault(method)
        if fault is not None and fault.kind == "drop":
            self._record(method, values, arrived, 0)
            return self._cut(request)
        if fault is not None and fault.kind == "fail":
            self._record(method, values, arrived, fault.status)
            return self._fault_response(fault)
        if fault is not None:
            await self._sleep(fault.seconds)
        try:
            result = await self._dispatch(method, _Params(values))
        except _ApiError as error:
            status = error.status if _connected(request) else 499
            self._record(method, values, arrived, status)
            return self._error_response(error)
        if self._is_down:
            return self._cut(request)
        self._record(method, values, arrived, 200 if _connected(request) else 499)
        return web.json_response({"ok": True, "result": result})

    def _refuse(self, method: str, values: JSON, arrived: float, error: _ApiError) -> web.Response:
        self._record(method, values, arrived, error.status)
        return self._error_response(error)

    def _record(self, method: str, values: JSON, arrived: float, status: int) -> None:
        with self._lock:
            self._calls.append(Call(method, _loggable(values), arrived, status))

    @staticmethod
    def _cut(request: web.Request) -> web.Response:
        transport = request.transport
        if transport is not None:
            transport.abort()
        return web.Response(status=500)

    @staticmethod
    def _error_response(error: _ApiError) -> web.Response:
        body: JSON = {"ok": False, "error_code": error.status, "description": error.description}
        if error.parameters:
            body["parameters"] = error.parameters
        return web.json_response(body, status=error.status)

    def _fault_response(self, fault: _Fault) -> web.Response:
        status = fault.status
        if status in _NGINX_STATUSES and fault.description is None:
            reason = f"{status} {_NGINX_STATUSES[status]}"
            page = (
                f"<html>\r\n<head><title>{reason}</title></head>\r\n<body>\r\n"
                f"<center><h1>{reason}</h1></center>\r\n<hr><center>nginx/1.18.0</center>\r\n"
                "</body>\r\n</html>\r\n"
            )
            return web.Response(status=status, text=page, content_type="text/html")
        if status == 429:
            description = fault.description or f"Too Many Requests: retry after {fault.retry_after}"
            error = _ApiError(429, description, {"retry_after": fault.retry_after})
            return self._error_response(error)
        description = fault.description or _DEFAULT_DESCRIPTIONS.get(
            status, "Internal Server Error"
        )
        return self._error_response(_ApiError(status, description))

    async def _sleep(self, seconds: float) -> None:
        closed = self._closed_event
        if closed is None:
            await asyncio.sleep(seconds)
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(closed.wait(), seconds)

    @staticmethod
    async def _read_params(request: web.Request) -> JSON:
        values: JSON = dict(request.query)
        if not request.can_read_body:
            return values
        content_type = request.content_type
        if content_type == "application/json":
            body = await request.read()
            if body.strip():
                try:
                    data = json.loads(body)
                except ValueError:
                    raise _bad("can't parse JSON object") from None
                if not isinstance(data, dict):
                    raise _bad("JSON object expected")
                values.update(data)
        elif content_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
            form = await request.post()
            for key, value in form.items():
                if isinstance(value, web.FileField):
                    try:
                        data_bytes = value.file.read()
                    finally:
                        value.file.close()
                    values[key] = _Upload(value.filename, value.content_type, data_bytes)
                else:
                    values[key] = value
        else:
            await request.read()
        return values

    # -- methods --------------------------------------------------------------------------

    async def _dispatch(self, method: str, params: _Params) -> Any:
        if method == "getUpdates":
            return await self._get_updates(params)
        handler = getattr(self, "_m_" + method)
        with self._lock:
            result = handler(params)
            outgoing, self._outgoing = self._outgoing, []
        for deliver in outgoing:
            deliver()
        return result

    def _published(self, message: BotMessage) -> JSON:
        """The message as the Bot API returns it; in a shared group the others get it too."""
        shown = self._message_dict(message)
        shared = self._shared.get(message.chat_id)
        if shared is not None:
            self._outgoing.append(lambda: shared.posted(self, copy.deepcopy(shown)))
        return shown

    def _m_getMe(self, _params: _Params) -> JSON:  # noqa: N802 - Bot API method names
        return {
            **self.bot_user,
            "can_join_groups": True,
            "can_read_all_group_messages": not self.privacy_mode,
            "supports_inline_queries": False,
            "can_connect_to_business": False,
            "has_main_web_app": False,
        }

    def _m_deleteWebhook(self, params: _Params) -> bool:  # noqa: N802
        if params.boolean("drop_pending_updates"):
            self._updates.clear()
        return True

    def _m_getWebhookInfo(self, _params: _Params) -> JSON:  # noqa: N802
        return {
            "url": "",
            "has_custom_certificate": False,
            "pending_update_count": len(self._updates),
        }

    async def _get_updates(self, params: _Params) -> list[JSON]:
        offset = params.integer("offset")
        limit = params.integer("limit")
        limit = 100 if limit is None else min(max(limit, 1), 100)
        timeout = min(max(params.number("timeout") or 0.0, 0.0), MAX_LONG_POLL_SECONDS)
        allowed = params.json("allowed_updates")
        if allowed is not None and not (
            isinstance(allowed, list) and all(isinstance(a, str) for a in allowed)
        ):
            raise _bad("can't parse allowed_updates JSON object")
        loop = asyncio.get_running_loop()
        ticket = object()
        with self._lock:
            if allowed is not None:
                self._allowed_updates = frozenset(allowed) if allowed else None
            if offset is not None and offset > 0:
                self._updates = [u for u in self._updates if u["update_id"] >= offset]
            elif offset is not None and offset < 0:
                self._updates = self._updates[offset:]
            previous, self._poller = self._poller, ticket
        if previous is not None:
            self._wake()
        deadline = loop.time() + timeout
        while True:
            with self._lock:
                if self._poller is not ticket:
                    raise _ApiError(409, CONFLICT)
                batch = copy.deepcopy(self._updates[:limit])
                remaining = deadline - loop.time()
                if batch or remaining <= 0 or self._closing or self._is_down:
                    self._poller = None
                    return batch
            waiter: asyncio.Future[None] = loop.create_future()
            self._waiters.add(waiter)
            try:
                await asyncio.wait_for(waiter, remaining)
            except TimeoutError:
                pass
            finally:
                self._waiters.discard(waiter)

    def _m_sendMessage(self, params: _Params) -> JSON:  # noqa: N802
        chat_id = self._chat_id(params)
        parse_mode = self._parse_mode(params)
        text, entities = self._render(
            params.string("text"), parse_mode, params.json("entities"), MAX_TEXT_LENGTH, "message"
        )
        markup = self._markup(params)
        self._known_chat(chat_id)
        reply_to = self._reply_target(chat_id, params)
        message = BotMessage(
            chat_id=chat_id,
            message_id=self._next_message_id(chat_id),
            date=int(time.time()),
            text=text,
            source=params.string("text"),
            parse_mode=parse_mode,
            entities=entities,
            reply_markup=markup,
            disable_notification=params.boolean("disable_notification"),
            protect_content=params.boolean("protect_content"),
            reply_to=reply_to,
            link_preview_options=self._preview_options(params),
        )
        self._bot_messages.setdefault(chat_id, {})[message.message_id] = message
        return self._published(message)

    def _m_sendDocument(self, params: _Params) -> JSON:  # noqa: N802
        return self._send_file(params, "document")

    def _m_sendPhoto(self, params: _Params) -> JSON:  # noqa: N802
        return self._send_file(params, "photo")

    def _send_file(self, params: _Params, kind: str) -> JSON:
        chat_id = self._chat_id(params)
        parse_mode = self._parse_mode(params)
        caption_source = params.string("caption")
        caption: str | None = None
        entities: list[JSON] = []
        if caption_source:
            caption, entities = self._render(
                caption_source,
                parse_mode,
                params.json("caption_entities"),
                MAX_CAPTION_LENGTH,
                "caption",
            )
        markup = self._markup(params)
        upload = params.upload(kind)
        if upload is not None:
            if not upload.data:
                raise _bad("file must be non-empty")
            document = DocumentInfo(
                upload.filename, upload.data, upload.content_type, self._new_file_id()
            )
        elif params.present(kind):
            reference = params.string(kind) or ""
            if reference.startswith("attach://"):
                attached = params.upload(reference.removeprefix("attach://"))
                if attached is None:
                    raise _bad("wrong file identifier/HTTP URL specified")
                document = DocumentInfo(
                    attached.filename, attached.data, attached.content_type, self._new_file_id()
                )
            else:
                document = DocumentInfo(None, b"", None, reference)
        else:
            raise _bad(f"there is no {kind} in the request")
        if kind == "photo":
            document = _photo(document)
        self._known_chat(chat_id)
        reply_to = self._reply_target(chat_id, params)
        message = BotMessage(
            chat_id=chat_id,
            message_id=self._next_message_id(chat_id),
            date=int(time.time()),
            text=None,
            source=caption_source,
            parse_mode=parse_mode,
            entities=entities,
            reply_markup=markup,
            disable_notification=params.boolean("disable_notification"),
            protect_content=params.boolean("protect_content"),
            reply_to=reply_to,
            caption=caption,
            document=document,
        )
        self._bot_messages.setdefault(chat_id, {})[message.message_id] = message
        return self._published(message)

    def _m_editMessageText(self, params: _Params) -> JSON:  # noqa: N802
        parse_mode = self._parse_mode(params)
        text, entities = self._render(
            params.string("text"), parse_mode, params.json("entities"), MAX_TEXT_LENGTH, "message"
        )
        markup = self._markup(params)
        stored = self._message_to_edit(params)
        if stored.document is not None:
            raise _bad("there is no text in the message to edit")
        if text == stored.text and entities == stored.entities and markup == stored.reply_markup:
            raise _bad(NOT_MODIFIED.removeprefix("Bad Request: "))
        stored.text = text
        stored.source = params.string("text")
        stored.parse_mode = parse_mode
        stored.entities = entities
        stored.reply_markup = markup
        stored.link_preview_options = self._preview_options(params)
        return self._after_edit(stored, "editMessageText")

    def _m_editMessageReplyMarkup(self, params: _Params) -> JSON:  # noqa: N802
        markup = self._markup(params)
        stored = self._message_to_edit(params)
        if markup == stored.reply_markup:
            raise _bad(NOT_MODIFIED.removeprefix("Bad Request: "))
        stored.reply_markup = markup
        return self._after_edit(stored, "editMessageReplyMarkup")

    def _after_edit(self, stored: BotMessage, method: str) -> JSON:
        stored.edit_date = int(time.time())
        text = stored.text if stored.document is None else stored.caption
        stored.edits.append(
            Edit(
                method,
                text,
                stored.parse_mode,
                copy.deepcopy(stored.entities),
                copy.deepcopy(stored.reply_markup),
                time.monotonic(),
            )
        )
        return self._message_dict(stored)

    def _m_deleteMessage(self, params: _Params) -> bool:  # noqa: N802
        chat_id = self._chat_id(params)
        message_id = params.integer("message_id")
        if message_id is None:
            raise _bad("message identifier is not specified")
        stored = self._bot_messages.get(chat_id, {}).get(message_id)
        if stored is not None and not stored.deleted:
            stored.deleted = True
            shared = self._shared.get(chat_id)
            if shared is not None:
                self._outgoing.append(lambda: shared.deleted(self, message_id))
            return True
        if self._user_messages.get(chat_id, {}).pop(message_id, None) is not None:
            return True
        raise _bad("message to delete not found")

    def _m_answerCallbackQuery(self, params: _Params) -> bool:  # noqa: N802
        query_id = params.string("callback_query_id")
        if not query_id:
            raise _bad("query_id is empty")
        text = params.string("text")
        if text is not None and len(text) > 200:
            raise _bad("MESSAGE_TOO_LONG")
        if query_id not in self._open_queries:
            raise _ApiError(400, QUERY_TOO_OLD)
        self._open_queries.discard(query_id)
        self._answers.append(
            CallbackAnswer(
                query_id,
                text,
                params.boolean("show_alert"),
                params.string("url"),
                params.integer("cache_time"),
                time.monotonic(),
            )
        )
        return True

    def _m_setMyCommands(self, params: _Params) -> bool:  # noqa: N802
        commands = params.json("commands")
        if not isinstance(commands, list):
            raise _bad("can't parse commands JSON object")
        if len(commands) > 100:
            raise _bad("BOT_COMMANDS_TOO_MUCH")
        menu = []
        for command in commands:
            if not isinstance(command, dict):
                raise _bad("can't parse BotCommand JSON object")
            name, description = command.get("command"), command.get("description")
            if not isinstance(name, str) or not re.fullmatch(r"[a-z0-9_]{1,32}", name):
                raise _bad("BOT_COMMAND_INVALID")
            if not isinstance(description, str) or not 1 <= len(description.strip()) <= 256:
                raise _bad("BOT_COMMAND_DESCRIPTION_INVALID")
            menu.append({"command": name, "description": description})
        key = self._scope_key(params.json("scope"), params.string("language_code") or "")
        self._commands[key] = menu
        return True

    def _m_getMyCommands(self, params: _Params) -> list[JSON]:  # noqa: N802
        key = self._scope_key(params.json("scope"), params.string("language_code") or "")
        return copy.deepcopy(self._commands.get(key, []))

    def _m_deleteMyCommands(self, params: _Params) -> bool:  # noqa: N802
        key = self._scope_key(params.json("scope"), params.string("language_code") or "")
        self._commands.pop(key, None)
        return True

    def _m_sendChatAction(self, params: _Params) -> bool:  # noqa: N802
        chat_id = self._chat_id(params)
        if params.string("action") not in _CHAT_ACTIONS:
            raise _bad("wrong parameter action in request")
        self._known_chat(chat_id)
        return True

    # -- helpers (called with the lock held) ----------------------------------------------

    def _chat_id(self, params: _Params) -> int:
        raw = params.string("chat_id")
        if raw is None or not raw.strip():
            raise _bad("chat_id is empty")
        try:
            return int(raw.strip())
        except ValueError:
            raise _bad("chat not found") from None

    def _known_chat(self, chat_id: int) -> None:
        if self.strict_chats and chat_id not in self._chats:
            raise _bad("chat not found")

    def _chat(
        self,
        chat_id: int,
        chat_type: str | None,
        title: str | None,
        *,
        register: bool,
        user: JSON | None = None,
    ) -> JSON:
        chat = self._chats.get(chat_id)
        if chat is not None:
            return chat
        kind = chat_type or _chat_type_of(chat_id)
        chat = {"id": chat_id, "type": kind}
        if kind == "private":
            source = user or {}
            chat["first_name"] = source.get("first_name", "Tester")
            for key in ("last_name", "username"):
                if key in source:
                    chat[key] = source[key]
        else:
            chat["title"] = title or "Test group"
        if register:
            self._chats[chat_id] = chat
        return chat

    def _next_message_id(self, chat_id: int) -> int:
        # Private chats and basic groups share the account's message ids; supergroups and
        # channels count their own, for every member alike.
        shared = self._shared.get(chat_id)
        if shared is not None:
            return shared.next_message_id()
        if _chat_type_of(chat_id) != "supergroup":
            return next(self._shared_message_ids)
        counter = self._channel_message_ids.setdefault(chat_id, itertools.count(1))
        return next(counter)

    def _new_file_id(self) -> str:
        return f"BQACAgIAAxkBAAI{next(self._file_ids):08d}"

    @staticmethod
    def _parse_mode(params: _Params) -> str | None:
        mode = params.string("parse_mode")
        if not mode:
            return None
        if mode.lower() == "html":
            return mode
        if mode.lower() in ("markdown", "markdownv2"):
            raise _bad(f"can't parse entities: the fake Bot API does not implement {mode}")
        raise _bad("unsupported parse_mode")

    def _render(
        self,
        source: str | None,
        parse_mode: str | None,
        explicit: Any,
        limit: int,
        what: str,
    ) -> tuple[str, list[JSON]]:
        if source is None or not source.strip():
            if what == "caption":
                return "", []
            raise _bad("message text is empty")
        if explicit is not None and explicit != []:
            # explicit entities win over parse_mode, as on the server
            if not isinstance(explicit, list) or not all(
                isinstance(e, dict) and {"type", "offset", "length"} <= e.keys() for e in explicit
            ):
                raise _bad("can't parse entities JSON object")
            text, entities = source, copy.deepcopy(explicit)
        elif parse_mode is not None:
            try:
                text, entities = parse_html(source, strict_ampersand=self.strict_ampersand)
            except EntityParseError as error:
                raise _bad(f"can't parse entities: {error}") from None
        else:
            text, entities = source, []
        text, entities = _trim(text, entities)
        if not text:
            raise _bad("message text is empty")
        if len(text) > limit:
            raise _bad(
                "message is too long" if what == "message" else "message caption is too long"
            )
        return text, _merge_detected(text, entities)

    @staticmethod
    def _markup(params: _Params) -> JSON | None:
        markup = params.json("reply_markup")
        if markup is None:
            return None
        if not isinstance(markup, dict):
            raise _bad("can't parse reply keyboard markup JSON object")
        if "inline_keyboard" not in markup:
            if {"keyboard", "remove_keyboard", "force_reply"} & markup.keys():
                return markup
            raise _bad("can't parse reply keyboard markup JSON object")
        rows = markup["inline_keyboard"]
        if not isinstance(rows, list) or not all(isinstance(row, list) for row in rows):
            raise _bad("can't parse inline keyboard button: InlineKeyboardButton must be an Object")
        for row in rows:
            for button in row:
                _check_button(button)
        if sum(len(row) for row in rows) > 100:
            raise _bad("reply markup is too long")
        return {"inline_keyboard": [[dict(button) for button in row] for row in rows]}

    @staticmethod
    def _preview_options(params: _Params) -> JSON | None:
        options = params.json("link_preview_options")
        if options is not None and not isinstance(options, dict):
            raise _bad("can't parse link_preview_options JSON object")
        if options is None and params.boolean("disable_web_page_preview"):
            return {"is_disabled": True}
        return options

    def _reply_target(self, chat_id: int, params: _Params) -> int | None:
        reply = params.json("reply_parameters")
        allow = params.boolean("allow_sending_without_reply")
        if reply is not None:
            if not isinstance(reply, dict) or "message_id" not in reply:
                raise _bad("can't parse reply parameters JSON object")
            target = int(reply["message_id"])
            allow = bool(reply.get("allow_sending_without_reply", allow))
        else:
            found = params.integer("reply_to_message_id")
            if found is None:
                return None
            target = found
        if self._message_dict_by_id(chat_id, target) is not None:
            return target
        if allow:
            return None
        raise _bad("message to be replied not found")

    def _message_to_edit(self, params: _Params) -> BotMessage:
        if params.present("inline_message_id"):
            raise _bad("MESSAGE_ID_INVALID")
        chat_id = self._chat_id(params)
        message_id = params.integer("message_id")
        if message_id is None:
            raise _bad("message identifier is not specified")
        stored = self._bot_messages.get(chat_id, {}).get(message_id)
        if stored is None or stored.deleted:
            if message_id in self._user_messages.get(chat_id, {}):
                raise _bad("message can't be edited")
            raise _bad("message to edit not found")
        return stored

    def _message_dict_by_id(self, chat_id: int, message_id: int) -> JSON | None:
        stored = self._bot_messages.get(chat_id, {}).get(message_id)
        if stored is not None and not stored.deleted:
            return self._message_dict(stored, with_reply=False)
        user_message = self._user_messages.get(chat_id, {}).get(message_id)
        if user_message is None:
            return None
        flat = copy.deepcopy(user_message)
        flat.pop("reply_to_message", None)
        return flat

    def _message_dict(self, stored: BotMessage, *, with_reply: bool = True) -> JSON:
        chat = self._chat(stored.chat_id, None, None, register=False)
        message: JSON = {
            "message_id": stored.message_id,
            "from": self.bot_user,
            "chat": copy.deepcopy(chat),
            "date": stored.date,
        }
        if stored.edit_date is not None:
            message["edit_date"] = stored.edit_date
        if stored.document is not None:
            message.update(_file_fields(stored, stored.document))
        else:
            message["text"] = stored.text
            if stored.entities:
                message["entities"] = copy.deepcopy(stored.entities)
        if stored.reply_markup is not None and stored.reply_markup.get("inline_keyboard"):
            message["reply_markup"] = copy.deepcopy(stored.reply_markup)
        if stored.protect_content:
            message["has_protected_content"] = True
        if with_reply and stored.reply_to is not None:
            replied = self._message_dict_by_id(stored.chat_id, stored.reply_to)
            if replied is not None:
                message["reply_to_message"] = replied
        return message

    def _scope_key(self, scope: Any, language_code: str) -> tuple[str, int | None, int | None, str]:
        if scope is None:
            return ("default", None, None, language_code)
        if not isinstance(scope, dict):
            raise _bad("can't parse BotCommandScope JSON object")
        kind = scope.get("type")
        if kind in ("default", "all_private_chats", "all_group_chats", "all_chat_administrators"):
            return (kind, None, None, language_code)
        if kind in ("chat", "chat_administrators", "chat_member"):
            scoped = _Params(scope)
            chat_id = self._chat_id(scoped)
            user_id = scoped.integer("user_id") if kind == "chat_member" else None
            if kind == "chat_member" and user_id is None:
                raise _bad("user_id is empty")
            return (kind, chat_id, user_id, language_code)
        raise _bad("unsupported bot command scope type")


def _check_button(button: Any) -> None:
    if not isinstance(button, dict):
        raise _bad("can't parse inline keyboard button: InlineKeyboardButton must be an Object")
    if not isinstance(button.get("text"), str):
        raise _bad('can\'t parse inline keyboard button: Field "text" must be of type String')
    if not any(key in button for key in _INLINE_BUTTON_ACTIONS):
        raise _bad(
            "can't parse inline keyboard button: Text buttons are unallowed in the inline keyboard"
        )
    if "callback_data" in button:
        data = button["callback_data"]
        if not isinstance(data, str) or not 1 <= len(data.encode()) <= MAX_CALLBACK_DATA_BYTES:
            raise _bad("BUTTON_DATA_INVALID")
    if "url" in button and not (isinstance(button["url"], str) and button["url"]):
        raise _bad("BUTTON_URL_INVALID")


_METHODS = {
    name.lower(): name
    for name in (
        "getMe",
        "deleteWebhook",
        "getWebhookInfo",
        "getUpdates",
        "sendMessage",
        "sendDocument",
        "sendPhoto",
        "editMessageText",
        "editMessageReplyMarkup",
        "deleteMessage",
        "answerCallbackQuery",
        "setMyCommands",
        "getMyCommands",
        "deleteMyCommands",
        "sendChatAction",
    )
}


def _photo(upload: DocumentInfo) -> DocumentInfo:
    """Telegram takes a photo up to 10 MB whose width and height add up to at most 10,000 and
    differ by a ratio of at most 20; anything it cannot decode fails with IMAGE_PROCESS_FAILED.
    The fake decodes PNG headers only."""
    data = upload.content
    if upload.file_id and not data:
        return replace(upload, kind="photo")  # a file_id sent before
    if len(data) > 10 * 1024 * 1024:
        raise _bad("PHOTO_TOO_BIG")  # not documented word for word
    if data[:8] != b"\x89PNG\r\n\x1a\n" or data[12:16] != b"IHDR":
        raise _bad("IMAGE_PROCESS_FAILED")
    width, height = struct.unpack(">II", data[16:24])
    if (
        not width
        or not height
        or width + height > 10_000
        or max(width, height) > 20 * min(width, height)
    ):
        raise _bad("PHOTO_INVALID_DIMENSIONS")
    return replace(upload, kind="photo", width=width, height=height)


def _file_fields(stored: BotMessage, file: DocumentInfo) -> JSON:
    """A sent file as Telegram shows it: a document, or a photo as a list of sizes (one here)."""
    fields: JSON = {}
    if file.kind == "photo":
        fields["photo"] = [{
            "file_id": file.file_id, "file_unique_id": "AQAD" + file.file_id[-8:],
            "width": file.width, "height": file.height, "file_size": len(file.content),
        }]  # fmt: skip
    else:
        info: JSON = {"file_id": file.file_id, "file_unique_id": "AgAD" + file.file_id[-8:]}
        if file.filename is not None:
            info["file_name"] = file.filename
        if file.mime_type is not None:
            info["mime_type"] = file.mime_type
        info["file_size"] = len(file.content)
        fields["document"] = info
    if stored.caption:
        fields["caption"] = stored.caption
        if stored.entities:
            fields["caption_entities"] = copy.deepcopy(stored.entities)
    return fields
