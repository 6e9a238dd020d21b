"""The baseline: a bare python-telegram-bot bot on the same fake Bot API.

It answers /ping and /status with a fixed text and echoes anything else, with the same
long-polling setup Steward uses and no rate limiter (the fake has no flood limits).
Usage: python benchmarks/echo_bot.py TOKEN BASE_URL
"""

from __future__ import annotations

import sys

from telegram import Update
from telegram.ext import Application, ContextTypes, MessageHandler, filters


async def echo(update: Update, _context: ContextTypes.DEFAULT_TYPE) -> None:
    if update.message is not None and update.message.text is not None:
        await update.message.reply_text(update.message.text, do_quote=True)


def main() -> None:
    token, base_url = sys.argv[1], sys.argv[2]
    app = Application.builder().token(token).base_url(base_url).build()
    app.add_handler(MessageHandler(filters.TEXT, echo))
    app.run_polling(timeout=10, allowed_updates=["message"])


if __name__ == "__main__":
    main()
