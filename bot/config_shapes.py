"""What a setting must look like beyond its type: URLs with a scheme, Matrix ids, tokens in
their provider's shape, and no ``STEWARD_*`` name that Steward does not know.

Each check raises ``ValueError`` with a short reason; ``bot.config`` adds the variable's name.
A wrong value caught here is one line at start instead of a retry loop or a traceback later.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

_URL = re.compile(r"^https?://[^\s/?#]+([/?#].*)?$")
_MATRIX_USER = re.compile(r"^@[^:\s]+:[A-Za-z0-9.\-\[\]:]+$")
# What people leave in a template: never a token.
_PLACEHOLDER = re.compile(
    r"^((replace|change|your|put|paste|insert|example|placeholder|todo|fixme|xxx|<).*"
    r"|token|secret|none|null|-)$",
    re.IGNORECASE,
)

# Provider shapes, as the providers issue them. ``lenient`` is the shape that still holds
# against a test server or a local API (a custom API URL): there a short token is fine.
_SHAPES: dict[str, tuple[str, re.Pattern[str], re.Pattern[str]]] = {
    # name: (what it looks like, strict, lenient)
    # Telegram issues 35 characters after the colon today; the check leaves it room to grow.
    "telegram_token": ("<bot id>:<35 letters, digits, - or _>, from @BotFather",
                       re.compile(r"^[0-9]{1,20}:[A-Za-z0-9_-]{20,}$"),
                       re.compile(r"^[0-9]{1,20}:[A-Za-z0-9_-]+$")),
    "hcloud_token": ("64 letters and digits, from the Hetzner Cloud console",
                     re.compile(r"^[A-Za-z0-9]{64}$"), re.compile(r"^\S+$")),
    "digitalocean_token": ("dop_v1_ and 64 hexadecimal digits",
                           re.compile(r"^dop_v1_[0-9a-f]{64}$"), re.compile(r"^dop_v1_\S+$")),
    "cloudflare_token": ("40 letters, digits, - or _, from the Cloudflare dashboard",
                         re.compile(r"^[A-Za-z0-9_-]{40}$"), re.compile(r"^\S+$")),
}  # fmt: skip
# The API URL setting that makes a token's shape lenient (a test or local server).
_API_URL = {
    "telegram_token": "telegram_api_url",
    "hcloud_token": "hcloud_api_url",
    "digitalocean_token": "digitalocean_api_url",
    "cloudflare_token": "cloudflare_api_url",
}
TELEGRAM_API_URL = "https://api.telegram.org/bot"

# STEWARD_* names that belong to the test harness, not to the bot (Makefile, tests/support).
HARNESS_NAMES = frozenset({"STEWARD_SYSTEMD_ROOT", "STEWARD_SYNAPSE_PYTHON", "STEWARD_MOTO_SERVER"})


def url(raw: str) -> str:
    if not _URL.fullmatch(raw.strip()):
        raise ValueError(f"{raw!r} is not a URL: it needs http:// or https:// and a host")
    return raw.strip()


def matrix_user(raw: str) -> str:
    if not _MATRIX_USER.fullmatch(raw.strip()):
        raise ValueError(f"{raw!r} is not a Matrix id: write it as @name:server")
    return raw.strip()


# Secrets that are tokens or keys a provider issues: never with spaces, never a template's
# placeholder. Passwords may hold anything; the TOTP key has a check of its own.
TOKENS = frozenset({*_SHAPES, "matrix_access_token", "b2_key_id", "b2_key", "scaleway_access_key",
                    "scaleway_secret_key", "ovh_application_key", "ovh_application_secret",
                    "ovh_consumer_key"})  # fmt: skip


def token_problem(name: str, value: str, api_url: str | None) -> str | None:
    """Why ``value`` cannot be the ``name`` token, without showing it; None when it can."""
    if name not in TOKENS:
        return None
    if _PLACEHOLDER.fullmatch(value) or any(c.isspace() for c in value):
        return "holds a placeholder or spaces, not a token"
    shape = _SHAPES.get(name)
    if shape is None:
        return None
    what, strict, lenient = shape
    default = TELEGRAM_API_URL if name == "telegram_token" else None
    pattern = strict if api_url in (None, default) else lenient
    return None if pattern.fullmatch(value) else f"does not look like a token ({what})"


def api_url_setting(name: str) -> str | None:
    return _API_URL.get(name)


def unknown_names(sources: Iterable[Mapping[str, str | None]], known: set[str]) -> str | None:
    """The first ``STEWARD_*`` name that is not a setting, as a one-line error; else None."""
    for source in sources:
        for name in sorted(source):
            if name.startswith("STEWARD_") and name not in known and name not in HARNESS_NAMES:
                import difflib  # noqa: PLC0415 - only on the way out, with a typo

                close = difflib.get_close_matches(name, sorted(known), n=1, cutoff=0.75)
                hint = f"; did you mean {close[0]}?" if close else "; see .env.example"
                return f"{name}: not a Steward setting{hint}"
    return None
