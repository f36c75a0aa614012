"""The network policy a function asks for through its tags (docs/network.md): `nimbus:network` (`default` or
`none`), `nimbus:network:allow` and `nimbus:network:deny` (CIDR lists). Part of a function's configuration:
validated at CreateFunction/TagResource here, applied by the sandbox's network providers (sandbox/network)."""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping

from nimbus.errors import InvalidParameterValue

Cidr = ipaddress.IPv4Network | ipaddress.IPv6Network

TAG_MODE = "nimbus:network"  # "default" (outbound like AWS outside a VPC) | "none" (no network at all)
TAG_ALLOW = "nimbus:network:allow"  # only these destinations (plus the DNS resolvers) are reachable
TAG_DENY = "nimbus:network:deny"  # these destinations are not reachable (on top of the server's denies)
MODES = ("default", "none")


def parse_cidrs(text: str, what: str) -> tuple[Cidr, ...]:
    """'10.0.0.0/8, 192.168.1.7' -> networks; raises InvalidParameterValue naming `what` on a bad one."""
    out: list[Cidr] = []
    for item in text.replace(",", " ").split():
        try:
            out.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            raise InvalidParameterValue(f"{what}: '{item}' is not a CIDR block (e.g. 10.0.0.0/8).") from None
    return tuple(out)


def check_tags(tags: Mapping[str, str]) -> None:
    """Reject network tags with bad values at CreateFunction/TagResource (InvalidParameterValueException)."""
    mode = tags.get(TAG_MODE)
    if mode is not None and mode.strip() not in MODES and mode.strip() != "":
        raise InvalidParameterValue(f"Tag {TAG_MODE} must be one of: {', '.join(MODES)} (got '{mode}').")
    for key in (TAG_ALLOW, TAG_DENY):
        if key in tags:
            parse_cidrs(tags[key], f"Tag {key}")
