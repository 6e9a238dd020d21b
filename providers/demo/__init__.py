"""The demo server: in-memory fakes of the NixOS host, with failure injection.

Used by ``STEWARD_DEMO=1``, ``steward console --demo`` and the tests.
"""

from providers.demo.server import (
    DEMO_DOMAIN,
    DemoHost,
    DemoServer,
    DemoServiceManager,
    demo_catalogue,
)

__all__ = ["DEMO_DOMAIN", "DemoHost", "DemoServer", "DemoServiceManager", "demo_catalogue"]
