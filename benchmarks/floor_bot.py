"""The design's floor: the baseline bot plus the components DESIGN.md names for state and
schedules, and nothing of Steward.

It is echo_bot.py with what a plain python-telegram-bot user adds for the same needs: a table
in SQLite through SQLAlchemy Core, written before each reply (Steward audits each command), and
a scheduled job through PTB's JobQueue, which is APScheduler 3 (Steward's reports). Its idle
memory is the least any bot built on these parts holds; the benchmark reports Steward against it
beside the bare bot, so that what the parts cost and what Steward costs are told apart.
Usage: STATE_DIR=folder python benchmarks/floor_bot.py TOKEN BASE_URL
"""

from __future__ import annotations

import os
import sys
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import Column, DateTime, Integer, MetaData, String, Table, create_engine, insert
from telegram import Update
from telegram.ext import Application, ContextTypes, MessageHandler, filters

metadata = MetaData()
log = Table(
    "log",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("chat", Integer, nullable=False),
    Column("text", String, nullable=False),
)
engine = create_engine(f"sqlite:///{Path(os.environ['STATE_DIR']) / 'floor.db'}")


async def echo(update: Update, _context: ContextTypes.DEFAULT_TYPE) -> None:
    message = update.message
    if message is not None and message.text is not None:
        with engine.begin() as conn:
            conn.execute(insert(log).values(at=datetime.now(UTC), chat=message.chat_id,
                                            text=message.text))  # fmt: skip
        await message.reply_text(message.text, do_quote=True)


async def hourly(_context: ContextTypes.DEFAULT_TYPE) -> None:
    """A report's place in the schedule; it never comes during a benchmark."""


def main() -> None:
    token, base_url = sys.argv[1], sys.argv[2]
    metadata.create_all(engine)
    app = Application.builder().token(token).base_url(base_url).build()
    app.add_handler(MessageHandler(filters.TEXT, echo))
    if app.job_queue is None:
        raise SystemExit("floor_bot.py needs APScheduler beside python-telegram-bot")
    app.job_queue.run_repeating(hourly, interval=3600)
    app.run_polling(timeout=10, allowed_updates=["message"])


if __name__ == "__main__":
    main()
