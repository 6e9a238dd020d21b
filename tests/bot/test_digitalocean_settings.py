"""STEWARD_SERVER_PROVIDER=digitalocean: its settings, its secret's file twin, and the cloud
the composition root builds from them (on the loopback fake of the DigitalOcean API)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.app import _cloud
from bot.config import ConfigError, load_settings
from providers.server.digitalocean import DigitalOceanServerProvider
from tests.support.fake_digitalocean import TOKEN, FakeDigitalOcean

pytestmark = pytest.mark.timeout(30)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in list(os.environ):
        if name.startswith("STEWARD_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def fake() -> Iterator[FakeDigitalOcean]:
    with FakeDigitalOcean() as running:
        running.add_droplet("steward")
        yield running


async def test_the_token_file_and_droplet_build_a_digitalocean_cloud(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, fake: FakeDigitalOcean
) -> None:
    (tmp_path / "token").write_text(f"{TOKEN}\n", encoding="utf-8")
    monkeypatch.setenv("STEWARD_SERVER_PROVIDER", "digitalocean")
    monkeypatch.setenv("STEWARD_DIGITALOCEAN_TOKEN_FILE", str(tmp_path / "token"))
    monkeypatch.setenv("STEWARD_DIGITALOCEAN_API_URL", fake.api_url)
    monkeypatch.setenv("STEWARD_DIGITALOCEAN_DROPLET", "steward")
    settings = load_settings()
    assert settings.digitalocean_token is not None
    assert settings.digitalocean_token.get_secret_value() == TOKEN
    assert TOKEN not in repr(settings)
    cloud = _cloud(settings)
    assert isinstance(cloud, DigitalOceanServerProvider)
    assert (await cloud.this_server()).name == "steward"


def test_digitalocean_without_a_token_is_one_line_naming_the_variable() -> None:
    settings = load_settings(server_provider="digitalocean")
    with pytest.raises(ConfigError) as caught:
        _cloud(settings)
    assert str(caught.value) == (
        "STEWARD_SERVER_PROVIDER=digitalocean needs STEWARD_DIGITALOCEAN_TOKEN(_FILE)"
    )


def test_an_unknown_provider_names_the_choices(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STEWARD_SERVER_PROVIDER", "linode")
    with pytest.raises(ConfigError) as caught:
        load_settings()
    assert str(caught.value).startswith("STEWARD_SERVER_PROVIDER: ")
    assert "digitalocean" in str(caught.value)
    assert "\n" not in str(caught.value)


def test_an_empty_token_file_is_refused(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / "empty").write_text("\n", encoding="utf-8")
    monkeypatch.setenv("STEWARD_DIGITALOCEAN_TOKEN_FILE", str(tmp_path / "empty"))
    with pytest.raises(ConfigError, match=r"^STEWARD_DIGITALOCEAN_TOKEN_FILE: .* is empty$"):
        load_settings()
