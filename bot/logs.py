"""Logging that never shows a secret.

python-telegram-bot logs its API URLs, which contain the bot token, at DEBUG; matrix-nio logs
whole responses, a login's access token among them. Every record passes through one
formatter that replaces each known secret, and a secret learnt at run time (the access token
of a fresh Matrix login) is added with ``hide``.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable

# Chatty libraries: their INFO and DEBUG lines say nothing an owner needs, and some of them
# carry secrets (httpx's URLs hold the Telegram token; nio dumps responses).
QUIET = ("alembic", "httpx", "httpcore", "apscheduler", "nio", "peewee", "aiohttp")
_secrets: set[str] = set()


def hide(secret: str | None) -> None:
    """From now on, ``secret`` shows as ``[secret]`` in every log line."""
    if secret:
        _secrets.add(secret)


class RedactingFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        for secret in _secrets:
            text = text.replace(secret, "[secret]")
        return text


def configure(level: str, secrets: Iterable[str]) -> None:
    for secret in secrets:
        hide(secret)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(RedactingFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=level, handlers=[handler])
    floor = max(logging.WARNING, logging.getLogger().level)
    for name in QUIET:
        logging.getLogger(name).setLevel(floor)
