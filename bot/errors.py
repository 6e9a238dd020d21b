"""Errors that end ``steward`` with one line and exit status 2, importable without the heavy
libraries behind them."""

from __future__ import annotations


class DatabaseError(Exception):
    """The database cannot be used: one line, saying why."""
