"""The machine in memory, for the demo and the tests. (The demo's service manager, host and
NixOS system are scenes of the demo server: they live in ``providers.demo``.)"""

from __future__ import annotations

from dataclasses import dataclass

from providers.host.public_ip import parse_address


@dataclass
class MemoryPublicAddress:
    value: str
    down: bool = False

    async def address(self) -> str:
        if self.down:
            raise OSError("the public IP service did not answer")
        return parse_address(self.value)
