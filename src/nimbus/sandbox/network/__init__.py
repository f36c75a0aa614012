"""Outbound networking of execution environments (issue 14 item 1): what a function can reach, and the
network namespaces that give it that reach without a cold start paying for them.

A function outside a VPC on AWS reaches DNS, the internet and (here) the host's LAN, and never the host it
runs on. nimbus gives every environment a network namespace of its own, *prepared ahead* by a
`NetworkProvider`, which the environment joins when it starts:

    provider = choose_provider(settings)        # (chooser.py) once, in platform.py; provider.describe() says which runs
    await provider.start()                      # removes stale namespaces/rules of dead servers, primes pools
    policy = NetworkPolicy.from_tags(spec.tags, settings)   # per function (tags, docs/network.md)
    net = await provider.prepare(spec.function_name, policy)  # a ready namespace: a dict pop when warm
    ...  the launch path joins net.netns_path (see below), writes net.resolv_conf/net.hosts into the
         sandbox's /etc, and binds 127.0.0.1:9001 inside it exactly as it does today ...
    provider.release(net)                       # when the environment is gone (idempotent, never raises)
    await provider.stop()                       # on shutdown: every namespace, veth and rule it made

The contract for the launch paths (owned by `environment.py` / `zygote.py` / `backends/`):

- `PreparedNetwork.netns_path is None`: no network: the environment unshares its own loopback-only
  namespace, as it always did (`NIMBUS_NETWORK=none`, or a function whose policy is `none`).
- Otherwise it is a bind-mounted namespace file (`/run/netns/nimbus-...`). One namespace per environment,
  never shared, so every environment binds its own `127.0.0.1:9001` (the Runtime API / platform relay)
  inside it with no port juggling; the namespace's loopback is its own, the host's loopback is not
  reachable from it.
  * bubblewrap path: join it *before* the sandbox's user namespace is made (`join_netns(path)` in the
    launcher, or `nsenter --net=PATH` in front of bwrap) and drop `--unshare-net`. The namespace belongs to
    the host's initial user namespace, so nothing inside the sandbox has `CAP_NET_ADMIN` over it: the
    policy rules inside it cannot be changed by the function.
  * rootless (`pasta`, `enter_userns=True`): the namespace belongs to a user namespace of the server's
    user (`userns`); the launcher enters that user namespace first, then the network namespace, then
    bubblewrap nests the sandbox's user namespace below it (so the sandbox has no capabilities over it).
  * zygote forks (already inside the zygote's user namespace): ask with `userns="/proc/<zygote pid>/ns/user"`;
    the namespace is then owned by that user namespace, so the fork (which still holds its capabilities
    there) can `setns(fd, CLONE_NEWNET)` instead of `unshare(CLONE_NEWNET)` and then drop them. Pass the
    open fd (`open_netns(net)`) to the zygote over its control socket.
- `resolv_conf` / `hosts`: the content of the sandbox's /etc/resolv.conf and /etc/hosts.
- `address`: the environment's IPv4 address (for logs; the function sees it on `eth0`).

Pools: namespaces are made in the background, `settings.network_spares` per (policy, userns) ahead, so
`prepare` is a dict pop on the cold-start path; a miss makes one inline (~10-20 ms, logged) and refills.
Egress bytes per function: `egress_bytes()`, read at scrape time (host-side veth counters) for `/metrics`.
"""

from __future__ import annotations

import ctypes
import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal, Protocol

from nimbus.control.networktags import TAG_ALLOW, TAG_DENY, TAG_MODE, check_tags
from nimbus.control.networktags import Cidr as Cidr  # (re-exported for the providers)
from nimbus.control.networktags import parse_cidrs as parse_cidrs

if TYPE_CHECKING:
    from nimbus.config import Settings


# Never reachable, whatever a policy says: link-local (the instance metadata address 169.254.169.254 and
# its IPv6 counterparts) and the host's loopback (also unroutable from a namespace by the kernel itself).
ALWAYS_DENIED: tuple[Cidr, ...] = tuple(
    ipaddress.ip_network(c) for c in ("169.254.0.0/16", "127.0.0.0/8", "0.0.0.0/8", "fe80::/10", "::1/128")
)

# The tags that set a function's policy (docs/network.md); values are space- or comma-separated CIDRs.
class NetworkUnavailable(Exception):
    """The requested provider cannot run on this host (missing tool or privilege); the message says why."""


@dataclass(frozen=True, slots=True)
class NetworkPolicy:
    """What one function's environments may reach. Hashable: environments with equal policies share a pool.

    `allow` empty means everything not denied; the DNS resolvers are always reachable on port 53 unless the
    mode is `none`. `deny` already includes the server's `NIMBUS_NETWORK_DENY` and `ALWAYS_DENIED`."""

    mode: Literal["default", "none"] = "default"
    allow: tuple[Cidr, ...] = ()
    deny: tuple[Cidr, ...] = ALWAYS_DENIED

    @classmethod
    def from_tags(cls, tags: Mapping[str, str], settings: Settings) -> NetworkPolicy:
        """The policy a function's tags ask for, narrowed by the server's settings."""
        check_tags(tags)
        mode = tags.get(TAG_MODE, "default").strip() or "default"
        server_deny = parse_cidrs(settings.network_deny, "NIMBUS_NETWORK_DENY")
        deny = ALWAYS_DENIED + server_deny + parse_cidrs(tags.get(TAG_DENY, ""), TAG_DENY)
        if mode == "none" or settings.network == "none":
            return cls(mode="none", allow=(), deny=ALWAYS_DENIED)
        return cls(mode="default", allow=parse_cidrs(tags.get(TAG_ALLOW, ""), TAG_ALLOW), deny=deny)


@dataclass(frozen=True, slots=True)
class PreparedNetwork:
    """A network namespace ready for one environment (see the module docstring for how to join it)."""

    name: str  # unique: also the namespace's file name under /run/netns
    function: str  # who its egress is counted for
    netns_path: str | None  # None: no network (unshare a loopback-only namespace as before)
    address: str | None = None  # the environment's IPv4 address inside the namespace
    resolv_conf: str = ""  # content for the sandbox's /etc/resolv.conf
    # Content for the sandbox's /etc/hosts; sandbox.localdomain is where Telemetry API listeners bind (AWS's name).
    hosts: str = "127.0.0.1\tlocalhost\n::1\tlocalhost\n127.0.0.1\tsandbox.localdomain sandbox\n"
    userns: str | None = None  # owning user namespace asked for (None: the host's)
    host_ifname: str | None = None  # the host side of its veth (egress counters)
    # True (pasta, rootless): the launcher is not in `userns` yet and must enter it before joining the namespace
    # (`nsenter --user=USERNS --net=NETNS --preserve-credentials` in front of bwrap, which then nests its own).
    enter_userns: bool = False
    extra: dict[str, str] = field(default_factory=dict, compare=False)


NO_NETWORK = PreparedNetwork(name="none", function="", netns_path=None)


class NetworkProvider(Protocol):
    """Makes, hands out and removes environments' network namespaces."""

    name: str  # "veth" | "pasta" | "none"
    reason: str  # why this provider was chosen (printed at start-up)

    def describe(self) -> str:
        """One line for the start-up banner: provider, reason, what is reachable."""

    async def start(self) -> None:
        """Remove leftovers of dead servers, install host rules, prime the default policy's pool."""

    async def stop(self) -> None:
        """Remove every namespace, veth and rule this server made (idempotent)."""

    async def prepare(self, function: str, policy: NetworkPolicy, *, userns: str | None = None) -> PreparedNetwork:
        """A namespace for one new environment of `function` (from the pool when one is ready)."""

    def prewarm(self, policy: NetworkPolicy, *, userns: str | None = None) -> None:
        """Keep spares ready for `policy` (e.g. at CreateFunction/PublishVersion); returns at once."""

    def release(self, net: PreparedNetwork) -> None:
        """The environment using `net` is gone: count its egress and remove it (in the background)."""

    def egress_bytes(self) -> dict[str, int]:
        """Bytes sent out by each function's environments so far (live and released), for /metrics."""


CLONE_NEWNET = 0x40000000


def open_netns(net: PreparedNetwork) -> int:
    """An O_RDONLY fd of `net`'s namespace (to send to a zygote); -1 when it has none."""
    if net.netns_path is None:
        return -1
    return os.open(net.netns_path, os.O_RDONLY | os.O_CLOEXEC)


def join_netns(path_or_fd: str | int) -> None:
    """setns(2) the calling (single-threaded) process into a namespace; OSError on failure."""
    fd = os.open(path_or_fd, os.O_RDONLY | os.O_CLOEXEC) if isinstance(path_or_fd, str) else path_or_fd
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.setns(fd, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"setns: {os.strerror(err)}")
    finally:
        if isinstance(path_or_fd, str):
            os.close(fd)
