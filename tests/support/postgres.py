"""A throwaway PostgreSQL server from the machine's initdb and pg_ctl, on loopback.

initdb refuses to run as root, so as root the server runs as the ``postgres`` user (or
``nobody``) in a folder that user owns.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

from tests.support.ports import free_port, wait_until_listening

_SEARCH = ["/usr/lib/postgresql/17/bin", "/usr/lib/postgresql/16/bin", "/usr/lib/postgresql/15/bin"]


def find_binary(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    for folder in _SEARCH:
        candidate = Path(folder) / name
        if candidate.exists():
            return str(candidate)
    return None


def _as_user() -> list[str]:
    if os.geteuid() != 0:
        return []
    for name in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            pwd.getpwnam(name)
            return ["runuser", "-u", name, "--"]
    raise RuntimeError("no unprivileged user to run PostgreSQL as")


@contextlib.contextmanager
def postgres_server(hba: Sequence[str] = ()) -> Iterator[str]:
    """Yield a SQLAlchemy URL of a fresh, empty database; stop and delete it afterwards.
    ``hba``: pg_hba.conf lines put before initdb's (which trust everyone), e.g. to make a
    role log in with its password."""
    initdb, pg_ctl = find_binary("initdb"), find_binary("pg_ctl")
    if initdb is None or pg_ctl is None:
        raise RuntimeError("initdb and pg_ctl are needed for the PostgreSQL tests")
    root = Path(tempfile.mkdtemp(prefix="steward-pg-"))
    data, sockets = root / "data", root / "run"
    sockets.mkdir()
    prefix = _as_user()
    if prefix:
        owner = pwd.getpwnam(prefix[2])
        root.chmod(0o755)
        for path in (root, sockets):
            os.chown(path, owner.pw_uid, owner.pw_gid)
    port = free_port()
    env = {**os.environ, "LC_ALL": "C"}
    subprocess.run(
        [*prefix, initdb, "-D", str(data), "-U", "steward", "--auth=trust", "-E", "UTF8"],
        check=True, capture_output=True, env=env, timeout=120,
    )  # fmt: skip
    if hba:
        conf = data / "pg_hba.conf"
        conf.write_text("".join(f"{line}\n" for line in hba) + conf.read_text())
    options = f"-p {port} -k {sockets} -c listen_addresses=127.0.0.1 -c fsync=off"
    subprocess.run(
        [*prefix, pg_ctl, "-D", str(data), "-o", options, "-l", str(root / "log"), "-w", "start"],
        check=True, capture_output=True, env=env, timeout=120,
    )  # fmt: skip
    try:
        wait_until_listening(port, "PostgreSQL", timeout=30)
        yield f"postgresql+psycopg://steward@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run(
            [*prefix, pg_ctl, "-D", str(data), "-m", "immediate", "stop"],
            check=False, capture_output=True, env=env, timeout=60,
        )  # fmt: skip
        shutil.rmtree(root, ignore_errors=True)


def create_database(admin_url: str, name: str) -> str:
    """A fresh database per test, so tests never see each other's rows."""
    from sqlalchemy import create_engine, text  # noqa: PLC0415

    engine = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    engine.dispose()
    return admin_url.rsplit("/", 1)[0] + f"/{name}"
