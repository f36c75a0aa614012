"""The rootless `pasta` provider: for a server that is not root, each environment's network namespace is
connected to the outside by pasta (Debian's `passt` package), a user-mode network stack that turns the
namespace's traffic into ordinary sockets of the server's user on the host.

Per namespace (made ahead, from the same pool as the veth provider's, see `VethNetwork`):
- a holder process (`unshare --user --map-root-user --net`, or inside a zygote's user namespace) that keeps
  the user + network namespace alive; it waits on a pipe from the server, so when the server dies the holder
  exits and the namespace goes with it (crash clean-up needs nothing else);
- `pasta --config-net --no-map-gw` attached to it, with no port forwarded: the namespace gets the host's
  address and routes, its DNS goes to the host's resolvers; `--no-map-gw` keeps the host's loopback out of
  reach (the namespace's 127.0.0.1 is its own);
- the same nftables policy table as the veth provider's, loaded inside (the server has capabilities in the
  holder's user namespace; the sandbox, in a user namespace nested below it, has none there), plus a reject of
  the nimbus API port on every address of the host.

The launch path enters the holder's user namespace and then the network namespace (`PreparedNetwork.
enter_userns`), then makes the sandbox's own user namespace below it as usual.
Differences from veth: the host's LAN address is the namespace's own address (pasta copies it), so services
on the host are not reachable at all; egress is read from the namespace's `eth0` counters.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from nimbus.sandbox.network import NetworkPolicy, NetworkUnavailable, PreparedNetwork
from nimbus.sandbox.network.veth import HOSTS, REJECT, VethNetwork, _run, policy_ruleset, start_userns_holder

if TYPE_CHECKING:
    from nimbus.config import Settings

HOLDER = "echo ready; read _"  # exits when the server's end of stdin closes (the server stopped or died)


class PastaNetwork(VethNetwork):
    """See the module docstring. Reuses the veth provider's pools; only the kernel work differs."""

    name = "pasta"

    def __init__(self, settings: Settings, reason: str) -> None:
        super().__init__(settings, reason)
        self._holders: dict[str, subprocess.Popen[bytes]] = {}
        self._pasta: dict[str, int] = {}
        self._dir = Path(tempfile.mkdtemp(prefix="nimbus-pasta-"))
        self._host_addresses: list[str] = []

    def describe(self) -> str:
        resolvers = ", ".join(self.resolvers) or "none"
        return (f"network: pasta ({self.reason}): outbound through pasta (user mode), DNS {resolvers}; never the "
                "host's loopback or services, the API port or link-local")

    def _start_sync(self) -> None:
        out = subprocess.run(["ip", "-j", "addr"], capture_output=True, text=True, check=False).stdout or "[]"
        self._host_addresses = [a["local"] for link in json.loads(out) for a in link.get("addr_info", [])
                                if a.get("family") == "inet" and not a["local"].startswith("127.")]

    def _stop_sync(self, nets: list[PreparedNetwork]) -> None:
        for net in nets:
            if net.function:  # spares never used count for nobody
                self._egress[net.function] += self._bytes(net)
            self._remove(net)
        with contextlib.suppress(OSError):
            os.rmdir(self._dir)

    def _create(self, policy: NetworkPolicy, userns: str | None) -> PreparedNetwork:
        n = next(self._ids)
        name = f"{self.prefix}{n}"
        if userns:  # a zygote's user namespace: join it and unshare in one process (see start_userns_holder)
            holder = start_userns_holder(userns)
        else:
            holder = subprocess.Popen(["unshare", "--user", "--map-root-user", "--net", "sh", "-c", HOLDER],
                                      stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        self._holders[name] = holder
        owner = userns or f"/proc/{holder.pid}/ns/user"
        netns = f"/proc/{holder.pid}/ns/net"
        net = PreparedNetwork(name=name, function="", netns_path=netns, address=None, resolv_conf=self.resolv_conf,
                              hosts=HOSTS, userns=owner, enter_userns=userns is None)
        self._live[name] = net
        try:
            assert holder.stdout is not None
            if not userns and holder.stdout.readline().strip() != b"ready":
                raise NetworkUnavailable("could not make a user + network namespace (unprivileged user "
                                         "namespaces disabled?)")
            pidfile = self._dir / f"{name}.pid"
            _run(["pasta", "-q", "--config-net", "--no-map-gw", "-t", "none", "-u", "none", "-T", "none", "-U",
                  "none", "--userns", owner, "--netns", netns, "-P", str(pidfile)])
            self._pasta[name] = int(pidfile.read_text().strip() or "0")
            rules = policy_ruleset(policy, self.resolvers)
            if self._host_addresses:
                # The nimbus API on any address of the host (pasta would connect to it from the host's side).
                rules += "\n".join([
                    "table inet nimbus_api {",
                    "  chain output {",
                    "    type filter hook output priority -1; policy accept;",
                    f"    ip daddr {{ {', '.join(self._host_addresses)} }} tcp dport {self.settings.port} {REJECT}",
                    "  }",
                    "}",
                ]) + "\n"
            _run(["nsenter", "--preserve-credentials", f"--user={owner}", f"--net={netns}", "nft", "-f", "-"],
                 rules)
        except Exception:
            self._live.pop(name, None)
            self._remove(net)
            raise
        return net

    def _bytes(self, net: PreparedNetwork) -> int:
        holder = self._holders.get(net.name)
        if holder is None:
            return 0
        try:
            for line in Path(f"/proc/{holder.pid}/net/dev").read_text().splitlines():
                name, _, counters = line.partition(":")
                if name.strip() == "eth0":
                    return int(counters.split()[8])  # transmitted bytes
        except (OSError, ValueError, IndexError):
            pass
        return 0

    def _remove(self, net: PreparedNetwork) -> None:
        pid = self._pasta.pop(net.name, 0)
        if pid > 0:
            with contextlib.suppress(OSError):
                os.kill(pid, 15)
        with contextlib.suppress(OSError):
            (self._dir / f"{net.name}.pid").unlink()
        holder = self._holders.pop(net.name, None)
        if holder is not None:
            holder.kill()
            holder.communicate()
