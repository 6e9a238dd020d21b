"""The engine, its transactions, and schema migrations.

Alembic costs memory (about 10 MB that stays for the life of a process), so the bot never
imports it: ``ensure_schema_apart`` runs ``steward db upgrade`` in a child process when the
schema is behind ``SCHEMA_HEAD``. On NixOS the unit runs that command before the bot starts.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar, cast

from sqlalchemy import Connection, Engine, create_engine, event, inspect, text
from sqlalchemy.exc import DBAPIError, IntegrityError

from bot.errors import DatabaseError

log = logging.getLogger(__name__)
T = TypeVar("T")

SCHEMA_HEAD = "0003"
CHECKPOINT_EVERY = 200  # inline commits between two checkpoints of the WAL by the worker
MIGRATIONS = Path(__file__).with_name("migrations")


class Database:
    """The engine, plus the worker threads queries run in, so the event loop never waits on
    the database. SQLite gets one worker: it has one writer anyway, and fewer threads mean less
    memory and no lock contention; PostgreSQL gets a few. The one exception is ``write``: on
    SQLite a short write is made on the loop's thread when it cannot wait (see write_inline)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = _engine(url)
        workers = 1 if self.engine.dialect.name == "sqlite" else 4
        self._executor = ThreadPoolExecutor(workers, thread_name_prefix="steward-db")
        self._held: Connection | None = None
        self._inline: Connection | None = None  # write_inline's, on the event loop's thread
        self._inline_commits = 0
        # SQLite in a file: an in-memory database is a different one on each thread.
        where = self.engine.url
        self._inline_capable = where.get_backend_name() == "sqlite" and where.database not in {
            None,
            "",
            ":memory:",
        }
        self._disposed = False

    @property
    def inline(self) -> bool:
        """Whether write_inline may write (asked for every audit row: no work here)."""
        return self._inline_capable and not self._disposed

    async def run(self, fn: Callable[[], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn)

    def submit(self, fn: Callable[[], T]) -> Future[T]:
        """``fn`` in a worker thread, for callers that wait with a callback, not a task."""
        return self._executor.submit(fn)

    @contextmanager
    def held_transaction(self) -> Iterator[Connection]:
        """A transaction on one connection kept open between calls, for a writer that commits
        often (the audit log): no pool checkout and reset each time. One caller at a time; a
        failure closes the connection and the next call opens a new one."""
        conn = self._held
        if conn is None:
            conn = self._held = self.engine.connect()
        try:
            with conn.begin():
                yield conn
        except BaseException:
            self._held = None
            conn.close()
            raise

    def write_inline(self, fn: Callable[[Connection], object]) -> bool:
        """SQLite only: a short write on the calling thread (the event loop's), when it cannot
        wait. Its connection never waits for a lock (busy timeout 0) and never checkpoints the
        WAL, which writes and syncs the database file. The worker thread does, every
        CHECKPOINT_EVERY of these commits, in TRUNCATE mode: it holds the write lock meanwhile
        (writes here then go to the worker, behind it), and it empties the WAL file even under
        a steady stream of rows, which a PASSIVE checkpoint never catches up with. (RESTART
        leaves the starting over to the next writer, which now and then appended instead: the
        WAL grew to two intervals' commits in about one test run in twenty.) Returns False,
        having written nothing, when the write cannot be made at once: another transaction
        holds the write lock, PostgreSQL, or any error. The caller then goes to the worker
        thread, which waits and reports as usual. A commit here is as durable as one there:
        both are WAL commits with synchronous=NORMAL."""
        return self._inline_write(fn)[0]

    async def write(self, fn: Callable[[Connection], T]) -> T:
        """A short write transaction: on the event loop's thread when SQLite's write lock is
        free (see write_inline), in the worker thread otherwise, where errors are raised."""
        done, result = self._inline_write(fn)
        if done:
            # Still a turn of the loop, as the worker's round trip was: other tasks run, and a
            # caller that writes in a loop cannot hold the loop.
            await asyncio.sleep(0)
            return cast("T", result)

        def in_worker() -> T:
            with self.transaction() as conn:
                return fn(conn)

        return await self.run(in_worker)

    def _inline_write(self, fn: Callable[[Connection], T]) -> tuple[bool, T | None]:
        if not self.inline:
            return False, None
        try:
            conn = self._inline
            if conn is None:
                conn = self._inline = self.engine.connect()  # dropped, not pooled, on failure
                raw = conn.connection.dbapi_connection
                assert raw is not None  # noqa: S101 - a live connection has one
                raw.execute("PRAGMA busy_timeout=0")
                raw.execute("PRAGMA wal_autocheckpoint=0")
            with conn.begin():
                result = fn(conn)
        except DBAPIError as exc:
            # Busy, or a constraint (a key that exists): the connection is fit for the next
            # write, and the worker repeats this one to wait or to raise.
            if not (_busy(exc) or isinstance(exc, IntegrityError)):
                self._drop_inline()
            return False, None
        except Exception:  # noqa: BLE001 - anything else: the worker thread's turn
            self._drop_inline()
            return False, None
        self._inline_commits += 1
        if self._inline_commits % CHECKPOINT_EVERY == 0:
            with contextlib.suppress(RuntimeError):  # shut down: the next start checkpoints
                self._executor.submit(self._checkpoint)
        return True, result

    def _checkpoint(self) -> None:
        with contextlib.suppress(DBAPIError), self.engine.connect() as conn:
            conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")

    def _drop_inline(self) -> None:
        """Close the inline connection for good: with its busy timeout of 0, it must never go
        back to the pool for others to use."""
        conn, self._inline = self._inline, None
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.invalidate()
                conn.close()

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        """A connection in a transaction: committed on leaving, rolled back on an error."""
        with self.engine.begin() as conn:
            yield conn

    def revision(self) -> str | None:
        with _reported(), self.engine.connect() as conn:
            if not inspect(conn).has_table("alembic_version"):
                return None
            return conn.execute(text("SELECT version_num FROM alembic_version")).scalar()

    def ensure_schema(self) -> bool:
        """Migrate to the newest schema if needed; returns True when it migrated."""
        if self.revision() == SCHEMA_HEAD:
            return False
        self.upgrade()
        return True

    def ensure_schema_apart(self, timeout: float = 600.0) -> bool:
        """Like ``ensure_schema``, but the migration runs in a child process, so Alembic never
        enters this one. The URL goes to the child in its environment, never in its argv: a
        PostgreSQL URL may carry a password."""
        if self.revision() == SCHEMA_HEAD:
            return False
        log.info("migrating the database schema to %s", SCHEMA_HEAD)
        try:
            child = subprocess.run(
                [sys.executable, "-m", "bot", "db", "upgrade"],
                env=os.environ | {"STEWARD_DATABASE_URL": self.url},
                capture_output=True, text=True, timeout=timeout, check=False,
            )  # fmt: skip
        except subprocess.TimeoutExpired:
            raise DatabaseError(f"the schema migration took over {timeout:.0f} s") from None
        if child.returncode != 0:
            lines = child.stderr.strip().splitlines() or [f"exit status {child.returncode}"]
            raise DatabaseError(lines[-1].removeprefix("steward: "))
        return True

    def upgrade(self, target: str = "head") -> None:
        # Connect before importing Alembic, so an unreachable database fails in one line.
        with _reported(), self.engine.begin() as conn:
            from alembic import command  # noqa: PLC0415 - only when the schema is behind

            command.upgrade(alembic_config(conn), target)
        log.info("database schema is at %s", self.revision())

    def dispose(self) -> None:
        self._disposed = True
        self._drop_inline()
        self._executor.shutdown(wait=True)
        if self._held is not None:
            self._held.close()
            self._held = None
        self.engine.dispose()


def _busy(exc: DBAPIError) -> bool:
    """SQLITE_BUSY or SQLITE_LOCKED, extended codes included: another writer has the lock."""
    code = getattr(exc.orig, "sqlite_errorcode", None)
    return isinstance(code, int) and code & 0xFF in (5, 6)


@contextmanager
def _reported() -> Iterator[None]:
    """Driver errors (refused, no permission, disk full) become one line."""
    try:
        yield
    except DBAPIError as exc:
        lines = str(exc.orig).strip().splitlines()
        reason = lines[0] if lines else type(exc.orig).__name__
        raise DatabaseError(f"cannot use the database: {reason}") from None


def alembic_config(connection: Any = None) -> Any:
    from alembic.config import Config  # noqa: PLC0415

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


def _engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        return _sqlite_engine(url)
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
    try:
        return create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=5)
    except Exception as exc:  # noqa: BLE001 - any driver error becomes one line
        raise DatabaseError(f"cannot use STEWARD_DATABASE_URL: {exc}") from None


def _sqlite_engine(url: str) -> Engine:
    path = url.split("///", 1)[1] if "///" in url else ""
    if path and path != ":memory:":
        folder = Path(path).parent
        try:
            folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        except OSError as exc:
            reason = exc.strerror or type(exc).__name__
            raise DatabaseError(f"cannot create the state folder {folder}: {reason}") from None
        if not os.access(folder, os.W_OK):
            raise DatabaseError(f"the state folder {folder} is not writable")
    engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})

    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    return engine
