"""Which DNS resolvers a sandbox uses: NIMBUS_NETWORK_DNS, else the host's (/etc/resolv.conf, or
systemd-resolved's upstream list when the host points at a loopback stub that a sandbox cannot reach)."""

from __future__ import annotations

import ipaddress
from pathlib import Path

from nimbus.sandbox.network import NetworkUnavailable

HOST_RESOLV = (Path("/etc/resolv.conf"), Path("/run/systemd/resolve/resolv.conf"))


def nameservers(text: str) -> list[str]:
    """The `nameserver` addresses of a resolv.conf."""
    out = []
    for line in text.splitlines():
        words = line.split()
        if len(words) >= 2 and words[0] == "nameserver":
            out.append(words[1].split("%")[0])
    return out


def sandbox_resolvers(configured: str, files: tuple[Path, ...] = HOST_RESOLV) -> list[str]:
    """IPv4 resolvers reachable from a sandbox (never loopback: the sandbox's loopback is its own)."""
    if configured.strip():
        servers = configured.replace(",", " ").split()
        for s in servers:
            try:
                ipaddress.ip_address(s)
            except ValueError:
                raise NetworkUnavailable(f"NIMBUS_NETWORK_DNS: '{s}' is not an IP address") from None
        return servers
    for path in files:
        try:
            found = nameservers(path.read_text())
        except OSError:
            continue
        usable = [s for s in found if ipaddress.ip_address(s).version == 4 and not ipaddress.ip_address(s).is_loopback]
        if usable:
            return usable
    return []
