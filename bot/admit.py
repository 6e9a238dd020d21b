"""``steward admit``: root checks the bot's desired state before a rebuild evaluates it.

The rebuild units run it as root, first thing. Each line it prints goes to the unit's journal,
which the bot follows, so a refusal reaches the chat as the line that says why.
"""

from __future__ import annotations

import sys
from pathlib import Path

from providers.host.catalogue import CatalogueError, ServiceCatalogue
from providers.nixos.admission import Admission, RefusedError, track_in_git

REFUSED = "steward: desired state refused:"


def admit(
    source: Path,
    state_dir: Path,
    catalogue: Path,
    totp_file: Path | None,
    *,
    admitted: Path | None = None,
    flake: Path | None = None,
) -> int:
    try:
        services = frozenset(ServiceCatalogue.load(catalogue))
        secret = _secret(totp_file) if totp_file is not None else None
        admission = Admission(state_dir, services, secret, admitted=admitted)
        done = admission.admit(source)
        if flake is not None and track_in_git(flake, admission.target):
            print(f"steward: {admission.target} is known to git in {flake}", flush=True)
    except (RefusedError, CatalogueError) as exc:
        print(f"{REFUSED} {exc}", file=sys.stderr, flush=True)
        return 1
    for print_ in done.approved:
        print(f"steward: root key {print_} approved by its TOTP code", flush=True)
    system = done.state.system
    print(
        f"steward: desired state admitted: {sum(s.enable for s in done.state.services.values())}"
        f" services on, {len(system.root_keys)} root keys from chat",
        flush=True,
    )
    return 0


def _secret(path: Path) -> str:
    try:
        text = path.read_text(encoding="ascii").strip().replace(" ", "").upper()
    except (OSError, UnicodeDecodeError):
        raise RefusedError("the root-key TOTP credential cannot be read") from None
    if len(text) < 16 or set(text) - set("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567="):
        raise RefusedError("the root-key TOTP credential is not a base32 secret")
    return text
