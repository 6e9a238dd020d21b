"""Pytest plugin: a session-wide Synapse homeserver, started the first time a test asks for it.

Registered in tests/conftest.py through ``pytest_plugins``. When Synapse is not installed the
fixture raises, so the Matrix tests fail (never skip): run ``make synapse``.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.synapse import Synapse


@pytest.fixture(scope="session")
def synapse() -> Iterator[Synapse]:
    """A running homeserver on 127.0.0.1. A test that stops it must start it again."""
    with Synapse() as homeserver:
        homeserver.start()
        yield homeserver
