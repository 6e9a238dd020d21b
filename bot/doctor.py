"""``steward doctor``: every setting and secret file, then each configured service reached
with the configured credentials; one line a check, ✔ or ✘, and for ✘ the fix.

It reads the settings as ``steward run`` does, but a bad one is a failed check, not the end:
the variable is left out and the rest is still checked. Only this command imports this
module, so the running bot carries none of it.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

from bot import config, doctor_remote
from bot.config import ConfigError, Settings
from bot.doctor_remote import Check

# Settings that name a file the bot reads (besides the secrets' *_FILE twins).
_FILE_SETTINGS = ("restic_password_file", "rfc2136_tsig_file", "postgres_password_file",
                  "dkim_file")  # fmt: skip
_NIXOS_OPTION = {
    "telegram_token": "telegramTokenFile", "matrix_password": "matrixPasswordFile",
    "matrix_access_token": "matrixAccessTokenFile", "hcloud_token": "hcloudTokenFile",
    "digitalocean_token": "digitaloceanTokenFile", "cloudflare_token": "cloudflareTokenFile",
    "b2_key_id": "b2KeyIdFile", "b2_key": "b2KeyFile", "totp_key": "totpKeyFile",
    "restic_password": "resticPasswordFile", "rfc2136_tsig": "rfc2136TsigFile",
}  # fmt: skip


def doctor(out: Callable[[str], object] = print) -> int:
    """Print every check; 0 when all pass, 1 otherwise."""
    failed = 0
    for check in run_checks():
        out(check.line())
        failed += not check.ok
    out("All checks passed." if not failed else f"{failed} check(s) failed.")
    return 1 if failed else 0


def run_checks() -> Iterator[Check]:
    try:
        variables = {**config.read_dotenv(config.DOTENV), **os.environ}
    except ConfigError as exc:
        yield Check(".env", False, str(exc), "make it readable UTF-8 text, or remove it")
        return
    variables = {k: v for k, v in variables.items() if k.startswith(config.PREFIX) and v}
    bad_files = list(_file_checks(variables))
    yield from bad_files
    skipped = {check.name for check in bad_files if not check.ok}
    settings = None
    while settings is None:
        try:
            settings = config.settings_from(
                ({k: v for k, v in variables.items() if k not in skipped},)
            )
        except ConfigError as exc:
            variable = str(exc).split(":", 1)[0].split("=", 1)[0]
            if variable in skipped or not variable.startswith(config.PREFIX):
                yield Check("settings", False, str(exc))
                return
            skipped.add(variable)
            yield Check(variable, False, str(exc).split(": ", 1)[-1] + ".", _fix(variable))
    yield Check("settings", True, f"{len(variables)} STEWARD_* variable(s) read")
    yield from _local_checks(settings)
    yield from doctor_remote.remote_checks(settings)


def _file_checks(variables: Mapping[str, str]) -> Iterator[Check]:
    for name in sorted(variables):
        field = name.removeprefix(config.PREFIX).lower()
        if not (name.endswith("_FILE") or field in _FILE_SETTINGS):
            continue
        path = Path(variables[name])
        try:
            empty = not path.read_bytes().strip()
        except OSError as exc:
            yield Check(name, False, f"cannot read {path}: {exc.strerror}.", _fix(name))
            continue
        if empty:
            yield Check(name, False, f"{path} is empty.", _fix(name))
        else:
            yield Check(name, True, f"{path} is readable and not empty")


def _fix(variable: str) -> str:
    field = variable.removeprefix(config.PREFIX).lower()
    option = _NIXOS_OPTION.get(field.removesuffix("_file"))
    if option is not None:
        return (f"put the secret in the file services.steward.{option} names (root-only, "
                f"outside the Nix store), or correct {variable}.")  # fmt: skip
    if variable in config.VARIABLES:
        return f"correct services.steward.settings.{field}, or {variable} (see .env.example)."
    return "remove it, or correct its name (see .env.example)."


def _local_checks(settings: Settings) -> Iterator[Check]:
    if settings.admins:
        yield Check("admins", True, f"{len(settings.admins)} admin(s)")
    else:
        yield Check("admins", False, "no admin is set, so nobody can use the bot.",
                    "write to the bot: it answers with your id and the line to add "
                    "(services.steward.settings.admins or STEWARD_ADMINS).")  # fmt: skip
    if not settings.has_transport:
        yield Check("transport", False, "neither Telegram nor Matrix is configured.",
                    "set telegramTokenFile, or settings.matrix_homeserver.")  # fmt: skip
    try:
        config.check_extras(settings)
    except ConfigError as exc:
        yield Check("extras", False, str(exc))
    yield _state_dir(settings.state_dir)
    if settings.catalogue is not None:
        yield _catalogue(settings.catalogue)
    if settings.desired_state is not None:
        yield _desired(settings.desired_state)


def _state_dir(path: Path) -> Check:
    if path.is_dir() and os.access(path, os.W_OK | os.X_OK):
        return Check("state folder", True, f"{path} is writable")
    return Check(
        "state folder", False, f"{path} is missing or not writable by {_user()}.",
        "run steward as its own user (the steward wrapper does), or create it.",
    )  # fmt: skip


def _catalogue(path: Path) -> Check:
    from providers.host.catalogue import CatalogueError, ServiceCatalogue  # noqa: PLC0415

    try:
        found = ServiceCatalogue.load(path)
    except CatalogueError as exc:
        return Check("catalogue", False, f"{exc}.", "check services.steward.services.")
    return Check("catalogue", True, f"{len(found)} service(s) in {path}")


def _desired(path: Path) -> Check:
    from providers.nixos.base import DesiredStateError  # noqa: PLC0415
    from providers.nixos.desired import DesiredStateFile  # noqa: PLC0415

    try:
        state = DesiredStateFile(path).read_sync()
    except DesiredStateError as exc:
        return Check("desired state", False, str(exc))
    enabled = sum(1 for sid in state.services if state.enabled(sid))
    there = "" if path.exists() else " (not written yet)"
    return Check("desired state", True, f"{path}{there}: {enabled} service(s) enabled")


def _user() -> str:
    import getpass  # noqa: PLC0415

    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return f"uid {os.getuid()}"
