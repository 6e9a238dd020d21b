"""Every command Steward knows, gathered from the handler modules."""

from __future__ import annotations

from handlers import (
    admin,
    alerts,
    audit,
    backups,
    dns,
    fleet,
    reports,
    repository,
    restore,
    security,
    server,
    services,
    status,
    system,
)
from handlers.core.registry import Registry

MODULES = (
    admin,
    alerts,
    audit,
    backups,
    dns,
    fleet,
    reports,
    repository,
    restore,
    security,
    server,
    services,
    status,
    system,
)


def build_registry() -> Registry:
    registry = Registry()
    for module in MODULES:
        registry.include(module.commands)
    registry.check()
    return registry
