"""A repository that is ready, with real restic: telling "none yet" from other failures, where
it is without the credentials, and ``steward backup init`` on the shell, with the repository URL
and the backend keys read from files (the NixOS module's credentials)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from bot.cli import backup_init
from bot.config import ConfigError, Settings, load_settings, restic_environment
from providers.backup.base import BackupError, NoRepositoryError
from providers.backup.restic import ResticBackupEngine, ResticSettings, redacted
from tests.support.moto import MotoS3
from tests.support.restic_fixtures import local_settings, s3_settings

pytest_plugins = ["tests.support.restic_fixtures"]
pytestmark = pytest.mark.timeout(60)


def test_a_missing_repository_is_told_apart_and_init_makes_it_ready(
    restic_local: ResticSettings,
) -> None:
    engine = ResticBackupEngine(restic_local)
    assert asyncio.run(engine.ready()) is False
    with pytest.raises(NoRepositoryError):
        asyncio.run(engine.snapshots())
    asyncio.run(engine.init())
    assert asyncio.run(engine.ready()) is True
    assert asyncio.run(engine.snapshots()) == []


def test_a_wrong_password_is_not_taken_for_a_missing_repository(
    empty_repo: ResticSettings, tmp_path: Path
) -> None:
    wrong = tmp_path / "wrong"
    wrong.write_text("not the password\n")
    engine = ResticBackupEngine(local_settings(tmp_path, wrong, repository=empty_repo.repository))
    with pytest.raises(BackupError, match="password is wrong") as raised:
        asyncio.run(engine.ready())
    assert not isinstance(raised.value, NoRepositoryError)


def test_the_location_never_shows_the_credentials_of_a_url() -> None:
    assert redacted("rest:https://alice:s3cret@backup.example.org:8000/steward") == (
        "rest:https://backup.example.org:8000/steward"
    )
    assert redacted("s3:https://s3.eu-central-003.backblazeb2.com/bucket") == (
        "s3:https://s3.eu-central-003.backblazeb2.com/bucket"
    )


def test_backup_init_on_the_shell_asks_once_then_creates_it(
    tmp_path: Path, password_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    repository_file = tmp_path / "repository"
    repository_file.write_text(f"{tmp_path / 'repo'}\n")
    settings = load_settings(
        state_dir=tmp_path / "state",
        restic_repository_file=repository_file,
        restic_password_file=password_file,
    )
    assert settings.restic_repository == str(tmp_path / "repo")
    assert backup_init(settings, yes=False, answer=lambda _: "no") == 1
    assert not (tmp_path / "repo").exists()
    said = capsys.readouterr().out
    assert f"Creates a new, empty backup repository at {tmp_path / 'repo'}." in said
    assert f"The password in {password_file} is the only key to it" in said
    assert "Nothing was created." in said

    assert backup_init(settings, yes=False, answer=lambda _: "yes") == 0
    assert (tmp_path / "repo" / "config").is_file()
    assert backup_init(settings, yes=True) == 0
    assert "is ready; nothing to create" in capsys.readouterr().out


def test_the_backend_keys_come_from_the_environment_file_on_s3(
    moto_s3: MotoS3, tmp_path: Path, password_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    keys = tmp_path / "restic-environment"
    keys.write_text(
        f"AWS_ACCESS_KEY_ID={moto_s3.access_key_id}\n"
        f"AWS_SECRET_ACCESS_KEY={moto_s3.secret_access_key}\n"
        f"AWS_DEFAULT_REGION={moto_s3.region}\n"
    )
    repository = s3_settings(moto_s3, tmp_path, password_file).repository
    settings = load_settings(
        state_dir=tmp_path / "state",
        restic_repository=repository,
        restic_password_file=password_file,
        restic_environment_file=keys,
    )
    assert restic_environment(settings)["AWS_ACCESS_KEY_ID"] == moto_s3.access_key_id
    assert backup_init(settings, yes=True) == 0
    assert moto_s3.secret_access_key not in capsys.readouterr().out


def test_an_environment_file_may_set_the_backend_keys_only(tmp_path: Path) -> None:
    keys = tmp_path / "restic-environment"
    keys.write_text("AWS_ACCESS_KEY_ID=a\nRESTIC_PASSWORD=oops\n")
    settings = Settings(restic_environment_file=keys)
    with pytest.raises(ConfigError, match="sets RESTIC_PASSWORD; it may set AWS_ACCESS_KEY_ID"):
        restic_environment(settings)
