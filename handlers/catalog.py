"""Every command Steward knows, gathered from the handler modules."""

from __future__ import annotations

from handlers import (
    admin,
    audit,
    backups,
    dns,
    reports,
    restore,
    server,
    services,
    status,
    system,
)
from handlers.core.registry import Registry


def build_registry() -> Registry:
    registry = Registry()
    for module in (
        admin,
        audit,
        backups,
        dns,
        reports,
        restore,
        server,
        services,
        status,
        system,
    ):
        registry.include(module.commands)
    registry.check()
    return registry
