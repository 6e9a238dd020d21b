"""How the Matrix transport logs in; apart from ``matrix.py`` so that checking the config
does not import matrix-nio."""

from __future__ import annotations

from dataclasses import field
from pathlib import Path

from values import value


@value
class MatrixLogin:
    homeserver: str
    user: str
    password: str | None = field(default=None, repr=False)
    access_token: str | None = field(default=None, repr=False)
    e2ee: bool = False
    store_dir: Path | None = None
