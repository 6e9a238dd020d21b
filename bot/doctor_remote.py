"""The doctor's checks that reach a service: Telegram getMe, Matrix whoami (or a password
login that is logged out again), the cloud and DNS providers' token checks, and the restic
repository. Each uses the credentials the bot would use, and says what to fix when it fails.

All HTTP goes through ``_request``: stdlib only, one try, a 10 s timeout. No retries: a
doctor reports what it sees now. A token never appears in a line, even when it sits in the URL
(Telegram's does).
"""

from __future__ import annotations

import json
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from typing import Any

from bot.config import Secret, Settings
from values import value

TIMEOUT = 10.0
HCLOUD_API = "https://api.hetzner.cloud/v1"
DIGITALOCEAN_API = "https://api.digitalocean.com"
CLOUDFLARE_API = "https://api.cloudflare.com/client/v4"


@value
class Check:
    name: str
    ok: bool
    detail: str
    fix: str = ""

    def line(self) -> str:
        if self.ok:
            return f"✔ {self.name}: {self.detail}"
        return f"✘ {self.name}: {self.detail}" + (f" Fix: {self.fix}" if self.fix else "")


@value
class Answer:
    status: int  # 0: no answer at all
    body: Any  # parsed JSON, or None
    reason: str = ""


def _request(url: str, headers: Mapping[str, str] | None = None,
             data: object = None, method: str | None = None) -> Answer:  # fmt: skip
    payload = None if data is None else json.dumps(data).encode()
    request = urllib.request.Request(url, payload, dict(headers or {}), method=method)  # noqa: S310
    if payload is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT) as answer:  # noqa: S310 - URL from settings
            return Answer(answer.status, _json(answer.read()))
    except urllib.error.HTTPError as exc:
        return Answer(exc.code, _json(exc.read()), f"{exc.code} {exc.reason}")
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", None) or type(exc).__name__
        return Answer(0, None, str(reason))


def _json(data: bytes) -> Any:
    try:
        return json.loads(data)
    except ValueError:
        return None


def _check(name: str, ok: bool, detail: str, fix: str = "") -> Check:
    return Check(name, ok, detail, fix)


def _refused(name: str, answer: Answer, fix: str) -> Check:
    if answer.status == 0:
        return _check(name, False, f"cannot reach the server ({answer.reason}).",
                      "check the address, the network and the firewall.")  # fmt: skip
    return _check(name, False, f"the credentials are refused ({answer.reason}).", fix)


def remote_checks(settings: Settings) -> Iterator[Check]:
    if settings.telegram_token is not None:
        yield telegram(settings.telegram_api_url, settings.telegram_token)
    if settings.matrix_homeserver is not None:
        yield matrix(settings)
    hcloud = settings.hcloud_api_url or HCLOUD_API
    digitalocean = settings.digitalocean_api_url or DIGITALOCEAN_API
    cloudflare = settings.cloudflare_api_url or CLOUDFLARE_API
    for name, token, url, fix in (
        ("Hetzner Cloud", settings.hcloud_token, f"{hcloud}/servers?per_page=1",
         "make a read and write API token in the project's Security page and put it in "
         "services.steward.hcloudTokenFile."),
        ("DigitalOcean", settings.digitalocean_token, f"{digitalocean}/v2/account",
         "make a personal access token (API, Tokens) and put it in "
         "services.steward.digitaloceanTokenFile."),
        ("Cloudflare", settings.cloudflare_token, f"{cloudflare}/user/tokens/verify",
         "make an API token with Zone.DNS edit rights and put it in "
         "services.steward.cloudflareTokenFile."),
    ):  # fmt: skip
        if token is not None:
            yield _token_check(name, url, token, fix)
    if settings.restic_repository is not None:
        yield restic(settings)


def telegram(api_url: str, token: Secret) -> Check:
    answer = _request(f"{api_url}{token.get_secret_value()}/getMe")
    if answer.status == 200 and isinstance(answer.body, dict):
        return _check(
            "Telegram",
            True,
            f"the token works: the bot is @{answer.body['result'].get('username')}",
        )
    return _refused(
        "Telegram",
        answer,
        "ask @BotFather for the bot's token (/token) and put "
        "it in services.steward.telegramTokenFile or STEWARD_TELEGRAM_TOKEN_FILE.",
    )


def matrix(settings: Settings) -> Check:
    base = (settings.matrix_homeserver or "").rstrip("/") + "/_matrix/client/v3"
    fix = ("check settings.matrix_user and the password or access token file "
           "(matrixPasswordFile, matrixAccessTokenFile).")  # fmt: skip
    token = settings.matrix_access_token
    if token is None and settings.matrix_password is not None:
        # A password is tried by logging in; the doctor's device is logged out at once.
        login = _request(f"{base}/login", data={
            "type": "m.login.password", "password": settings.matrix_password.get_secret_value(),
            "identifier": {"type": "m.id.user", "user": settings.matrix_user},
            "initial_device_display_name": "steward doctor"})  # fmt: skip
        if login.status != 200 or not isinstance(login.body, dict):
            return _refused("Matrix", login, fix)
        token = Secret(str(login.body.get("access_token")))
    if token is None:
        return _check("Matrix", False, "no password or access token is set.", fix)
    auth = {"Authorization": f"Bearer {token.get_secret_value()}"}
    who = _request(f"{base}/account/whoami", auth)
    if settings.matrix_access_token is None:
        _request(f"{base}/logout", auth, data={}, method="POST")
    if who.status != 200 or not isinstance(who.body, dict):
        return _refused("Matrix", who, fix)
    user = who.body.get("user_id")
    if user != settings.matrix_user:
        return _check("Matrix", False, f"the token belongs to {user}, not to "
                      f"{settings.matrix_user}.", fix)  # fmt: skip
    return _check("Matrix", True, f"logged in as {user}")


def _bearer(token: Secret) -> dict[str, str]:
    return {"Authorization": f"Bearer {token.get_secret_value()}"}


def _token_check(name: str, url: str, token: Secret, fix: str) -> Check:
    """A bearer token the provider's API accepts, or the fix."""
    answer = _request(url, _bearer(token))
    if answer.status == 200:
        return _check(name, True, "the API token works")
    return _refused(name, answer, fix)


def restic(settings: Settings) -> Check:
    repository = settings.restic_repository or ""
    command = ["restic", "--repo", repository, "--no-lock", "cat", "config"]
    if settings.restic_password_file is not None:
        command[1:1] = ["--password-file", str(settings.restic_password_file)]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=60,
                              check=False, stdin=subprocess.DEVNULL)  # fmt: skip
    except (OSError, subprocess.TimeoutExpired) as exc:
        return _check("restic", False, f"could not run restic ({type(exc).__name__}).",
                      "install restic (the NixOS module puts it on the bot's PATH).")  # fmt: skip
    if done.returncode == 0:
        return _check("restic", True, f"the repository {repository} opens with the password")
    said = (done.stderr.strip().splitlines() or ["no output"])[-1]
    return _check("restic", False, f"the repository {repository} does not open: {said}.",
                  "check STEWARD_RESTIC_REPOSITORY, the password file, and for S3 or B2 the "
                  "AWS_* keys; a new repository needs `restic init`.")  # fmt: skip
