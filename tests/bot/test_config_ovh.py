"""STEWARD_SERVER_PROVIDER=ovh: its settings, their *_FILE twins, and the adapter it builds."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from bot.app import _cloud
from bot.config import SECRETS, ConfigError, load_settings
from providers.server.base import ServerError
from providers.server.ovh import OvhServerProvider
from tests.support.fake_ovh import APP_KEY, APP_SECRET, CONSUMER_KEY, PROJECT, FakeOvh

pytestmark = pytest.mark.timeout(20)
OVH_SECRETS = ("ovh_application_key", "ovh_application_secret", "ovh_consumer_key")


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in list(os.environ):
        if name.startswith("STEWARD_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


def test_the_three_ovh_keys_are_secrets_read_from_their_files(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    assert set(OVH_SECRETS) <= set(SECRETS)
    for name, value in zip(OVH_SECRETS, (APP_KEY, APP_SECRET, CONSUMER_KEY), strict=True):
        (tmp_path / name).write_text(value + "\n", encoding="utf-8")
        monkeypatch.setenv(f"STEWARD_{name.upper()}_FILE", str(tmp_path / name))
    monkeypatch.setenv("STEWARD_SERVER_PROVIDER", "ovh")
    settings = load_settings()
    assert settings.ovh_consumer_key is not None
    assert settings.ovh_consumer_key.get_secret_value() == CONSUMER_KEY
    assert (settings.server_provider, settings.ovh_endpoint) == ("ovh", "ovh-eu")
    for shown in (repr(settings), str(settings)):
        assert APP_SECRET not in shown
        assert CONSUMER_KEY not in shown


def test_missing_keys_are_one_line_naming_what_to_set() -> None:
    settings = load_settings(server_provider="ovh", ovh_application_key="k")
    with pytest.raises(ConfigError) as caught:
        _cloud(settings)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith("STEWARD_SERVER_PROVIDER=ovh needs STEWARD_OVH_APPLICATION_KEY")
    assert "STEWARD_OVH_PROJECT_ID" in message


def test_an_unknown_provider_or_endpoint_name_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"^STEWARD_SERVER_PROVIDER: 'ovhcloud' is not one of"):
        load_settings(server_provider="ovhcloud")
    with pytest.raises(ConfigError, match=r"^STEWARD_OVH_ENDPOINT: 'ovh-fr' is not ovh-eu"):
        load_settings(ovh_endpoint="ovh-fr")
    assert load_settings(ovh_endpoint="ovh-ca").ovh_endpoint == "ovh-ca"


async def test_the_settings_build_an_adapter_that_talks_to_the_api() -> None:
    with FakeOvh() as fake:
        fake.add_instance("steward")
        settings = load_settings(
            server_provider="ovh", ovh_endpoint=fake.api_url, ovh_application_key=APP_KEY,
            ovh_application_secret=APP_SECRET, ovh_consumer_key=CONSUMER_KEY,
            ovh_project_id=PROJECT, ovh_instance="steward",
        )  # fmt: skip
        cloud = _cloud(settings)
        assert isinstance(cloud, OvhServerProvider)
        assert (await cloud.this_server()).city == "Gravelines"
        wrong = _cloud(load_settings(**{**_overrides(settings), "ovh_project_id": "other"}))
        assert wrong is not None
        with pytest.raises(ServerError, match="does not know that resource"):
            await wrong.this_server()


def _overrides(settings: object) -> dict[str, object]:
    names = ("server_provider", "ovh_endpoint", "ovh_instance", *OVH_SECRETS)
    return {name: getattr(settings, name) for name in names}
