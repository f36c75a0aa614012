"""How the launch paths use the prepared network namespaces of sandbox/network: a function version's policy,
and what a launch (fresh sandbox) or a fork request (zygote) carries of a prepared namespace."""

from __future__ import annotations

import dataclasses

from nimbus.config import Settings
from nimbus.control.specs import VersionSpec
from nimbus.sandbox.backends import Launch
from nimbus.sandbox.network import NetworkPolicy, PreparedNetwork


def network_policy(spec: VersionSpec, settings: Settings) -> NetworkPolicy:
    """What `spec`'s environments may reach (its tags, narrowed by the server's settings)."""
    return NetworkPolicy.from_tags(spec.tags, settings)


def with_network(launch: Launch, net: PreparedNetwork | None) -> Launch:
    """`launch` joining `net` (unchanged without a namespace to join: a loopback-only one of its own)."""
    if net is None or net.netns_path is None:
        return launch
    return dataclasses.replace(
        launch, netns=net.netns_path, netns_userns=net.userns if net.enter_userns else None,
        resolv_conf=net.resolv_conf, hosts=net.hosts,
    )


def fork_request_network(net: PreparedNetwork | None) -> dict[str, str]:
    """The fork request's fields for a zygote's fork joining `net` (the namespace's fd travels with it)."""
    if net is None or net.netns_path is None:
        return {}
    return {"resolv_conf": net.resolv_conf, "hosts": net.hosts}
