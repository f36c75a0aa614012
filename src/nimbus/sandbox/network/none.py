"""The `none` provider: no outbound network. Every environment unshares its own loopback-only namespace,
as nimbus always did (NIMBUS_NETWORK=none, or no tool/privilege for a real network on this host)."""

from __future__ import annotations

from nimbus.sandbox.network import NO_NETWORK, NetworkPolicy, PreparedNetwork


class NoNetwork:
    """Hands out `NO_NETWORK` (join nothing); keeps no state."""

    name = "none"

    def __init__(self, reason: str) -> None:
        self.reason = reason

    def describe(self) -> str:
        return f"network: none ({self.reason}): functions reach only their own loopback"

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    async def prepare(self, function: str, policy: NetworkPolicy, *, userns: str | None = None) -> PreparedNetwork:
        return NO_NETWORK

    def prewarm(self, policy: NetworkPolicy, *, userns: str | None = None) -> None:
        return None

    def release(self, net: PreparedNetwork) -> None:
        return None

    def egress_bytes(self) -> dict[str, int]:
        return {}
