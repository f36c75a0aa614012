"""The rootful `veth` provider: one network namespace per environment, joined to the host by a veth pair,
NATed out of the host's own interfaces with nftables; made with the kernel's tools (`ip`, `nft`).

Per namespace (made ahead, in the background; see `VethNetwork.prepare`):
- `/run/netns/nimbus-<server pid>-<instance>-<n>`, its loopback up (the environment binds 127.0.0.1:9001 there);
- a veth pair: `eth0` inside with a /31 address out of `NIMBUS_NETWORK_SUBNET`, on the host
  `nb<pid36>.<instance36>-<n36>`;
- an nftables table *inside* the namespace with the function's policy (deny/allow CIDRs, DNS always
  allowed). It belongs to the host's user namespace, so nothing in the sandbox can change it.

Per server, on the host: table `inet nimbus_<pid>_<instance>`: masquerade the environments' traffic, reject
forwarding to link-local/the server's denied CIDRs and to other environments, reject the nimbus API port and loopback
addresses on the host's input. Names carry the server's pid, so `start()` removes what a dead server left
(namespaces, tables, address slots) and servers running side by side never touch each other's.

Address slots are claimed machine-wide with O_EXCL files under /run/nimbus-network/slots, so two servers
(tests run several) never hand out the same /31.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import ipaddress
import itertools
import logging
import os
import random
import subprocess
import sys
import time
from collections import defaultdict, deque
from pathlib import Path
from typing import TYPE_CHECKING

from nimbus.sandbox.network import (
    ALWAYS_DENIED,
    Cidr,
    NetworkPolicy,
    NetworkUnavailable,
    PreparedNetwork,
    parse_cidrs,
)
from nimbus.sandbox.network.dns import sandbox_resolvers

if TYPE_CHECKING:
    from nimbus.config import Settings

log = logging.getLogger(__name__)

NETNS_DIR = Path("/run/netns")
ETC_NETNS = Path("/etc/netns")  # `ip netns exec NAME` binds /etc/netns/NAME/* over /etc (debugging, tests)
STATE_DIR = Path("/run/nimbus-network")
NETNS_PREFIX = "nimbus-"
TABLE_PREFIX = "nimbus_"
REJECT = "reject with icmpx type admin-prohibited"  # fails at once (EHOSTUNREACH/ECONNREFUSED), no hang
# Loopback's MTU: traffic to the host's own addresses moves in 64 KiB frames (measured: bulk from a namespace
# 0.5x the host's with 1500, 0.9-1.1x with this). Internet peers are unaffected: their MSS bounds TCP segments,
# and the host's ICMP "fragmentation needed" reaches the sandbox through NAT for path MTU discovery.
VETH_MTU = 65520
CREATE_CONCURRENCY = 2  # namespaces made at once (each is ~3 short processes)
HOSTS = "127.0.0.1\tlocalhost\n::1\tlocalhost\n127.0.0.1\tsandbox.localdomain sandbox\n"
PoolKey = tuple[NetworkPolicy, str | None]
_instances = itertools.count()  # providers made in this process (tests make several): part of every name


def _b36(n: int) -> str:
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    out = ""
    while True:
        n, r = divmod(n, 36)
        out = digits[r] + out
        if n == 0:
            return out


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _run(argv: list[str], stdin: str | None = None) -> None:
    proc = subprocess.run(argv, input=stdin, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise NetworkUnavailable(f"{' '.join(argv[:3])} failed: {proc.stderr.strip() or proc.returncode}")


def _split(cidrs: tuple[Cidr, ...]) -> tuple[list[str], list[str]]:
    v4 = [str(c) for c in cidrs if c.version == 4]
    v6 = [str(c) for c in cidrs if c.version == 6]
    return v4, v6


def policy_ruleset(policy: NetworkPolicy, resolvers: list[str]) -> str:
    """The nftables table put inside an environment's namespace for `policy`."""
    lines = [
        "table inet nimbus {",
        "  chain output {",
        "    type filter hook output priority 0; policy accept;",
        '    oifname "lo" accept',
    ]
    dns4 = [r for r in resolvers if ipaddress.ip_address(r).version == 4]
    if dns4:
        lines.append(f"    ip daddr {{ {', '.join(dns4)} }} meta l4proto {{ tcp, udp }} th dport 53 accept")
    deny4, deny6 = _split(policy.deny)
    if deny4:
        lines.append(f"    ip daddr {{ {', '.join(deny4)} }} {REJECT}")
    if deny6:
        lines.append(f"    ip6 daddr {{ {', '.join(deny6)} }} {REJECT}")
    if policy.allow:
        allow4, allow6 = _split(policy.allow)
        if allow4:
            lines.append(f"    ip daddr {{ {', '.join(allow4)} }} accept")
        if allow6:
            lines.append(f"    ip6 daddr {{ {', '.join(allow6)} }} accept")
        lines.append(f"    {REJECT}")
    lines += ["  }", "}"]
    return "\n".join(lines) + "\n"


class VethNetwork:
    """See the module docstring. One per server; `prepare`/`release` are called from the event loop."""

    name = "veth"

    def __init__(self, settings: Settings, reason: str) -> None:
        self.reason = reason
        self.settings = settings
        self.pid = os.getpid()
        instance = next(_instances)
        self.tag = f"nb{_b36(self.pid)}.{_b36(instance)}-"  # host veths: nb<pid36>.<instance36>-<n36> (<= 15)
        self.table = f"{TABLE_PREFIX}{self.pid}_{instance}"
        self.prefix = f"{NETNS_PREFIX}{self.pid}-{instance}-"  # namespaces: nimbus-<pid>-<instance>-<n>
        self.subnet = ipaddress.ip_network(settings.network_subnet)
        if not isinstance(self.subnet, ipaddress.IPv4Network) or self.subnet.prefixlen > 30:
            raise NetworkUnavailable(f"NIMBUS_NETWORK_SUBNET={settings.network_subnet}: an IPv4 /30 or wider")
        self.server_deny = parse_cidrs(settings.network_deny, "NIMBUS_NETWORK_DENY")
        self.resolvers = sandbox_resolvers(settings.network_dns)
        self.resolv_conf = "".join(f"nameserver {r}\n" for r in self.resolvers)
        self._ids = itertools.count(1)  # next() is atomic: namespaces are made on worker threads
        self._pools: dict[PoolKey, deque[PreparedNetwork]] = defaultdict(deque)
        self._filling: dict[PoolKey, int] = defaultdict(int)  # namespaces being made per key, for spares
        self._live: dict[str, PreparedNetwork] = {}  # every namespace made and not removed (pooled or in use)
        self._egress: dict[str, int] = defaultdict(int)  # released environments' bytes, per function
        self._tasks: set[asyncio.Future[object]] = set()
        self._sem = asyncio.Semaphore(CREATE_CONCURRENCY)
        self._landed = asyncio.Condition()  # notified whenever a spare is made (or failed to be)
        self._waiting: dict[PoolKey, int] = defaultdict(int)  # prepare() calls waiting for a spare per key
        self._started = False
        self._stopped = False
        self.inline_creations = 0  # prepare() calls that found no spare (cold starts that paid)

    # --------------------------------------------------------------------------------- lifecycle

    def describe(self) -> str:
        resolvers = ", ".join(self.resolvers) or "none"
        deny = ", ".join(str(c) for c in self.server_deny) or "nothing else"
        return (f"network: veth ({self.reason}): outbound via NAT, DNS {resolvers}; never the host's loopback, "
                f"the API port or link-local; server denies {deny}")

    async def start(self) -> None:
        await asyncio.to_thread(self._start_sync)
        self._started = True
        self.prewarm(NetworkPolicy.from_tags({}, self.settings))

    def _start_sync(self) -> None:
        cleanup_stale()
        (STATE_DIR / "slots").mkdir(parents=True, exist_ok=True)
        NETNS_DIR.mkdir(parents=True, exist_ok=True)
        Path("/proc/sys/net/ipv4/ip_forward").write_text("1\n")
        _run(["nft", "-f", "-"], self._host_ruleset())

    def _host_ruleset(self) -> str:
        deny4, _ = _split(ALWAYS_DENIED + self.server_deny)
        iif = f'iifname "{self.tag}*"'
        return "\n".join([
            f"table inet {self.table} {{",
            "  chain input {",
            "    type filter hook input priority -10; policy accept;",
            f"    {iif} tcp dport {self.settings.port} {REJECT}",
            f"    {iif} ip daddr 127.0.0.0/8 {REJECT}",
            "  }",
            "  chain forward {",
            "    type filter hook forward priority -10; policy accept;",
            f'    {iif} oifname "nb*" {REJECT}',
            f"    {iif} ip daddr {{ {', '.join(deny4)} }} {REJECT}",
            "  }",
            "  chain postrouting {",
            "    type nat hook postrouting priority 100; policy accept;",
            f"    {iif} masquerade",
            "  }",
            "}",
        ]) + "\n"

    async def stop(self) -> None:
        self._stopped = True  # no more refills; namespaces being made now finish, then go with the rest
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=10)
        nets = list(self._live.values())
        self._live.clear()
        self._pools.clear()
        await asyncio.to_thread(self._stop_sync, nets)

    def _stop_sync(self, nets: list[PreparedNetwork]) -> None:
        for net in nets:
            if net.function:  # spares never used count for nobody
                self._egress[net.function] += self._bytes(net)
            self._remove(net)
        subprocess.run(["nft", "delete", "table", "inet", self.table], capture_output=True, check=False)

    # --------------------------------------------------------------------------------- hand-out

    async def prepare(self, function: str, policy: NetworkPolicy, *, userns: str | None = None) -> PreparedNetwork:
        """A ready namespace from the pool, or one made now (counted in `inline_creations`)."""
        if policy.mode == "none":
            from nimbus.sandbox.network import NO_NETWORK

            return NO_NETWORK
        key = (policy, userns)
        pool = self._pools[key]
        waited: float | None = None
        while True:
            while pool:
                net = pool.popleft()
                if net.name in self._live and (userns is None or os.path.exists(userns)):
                    self._refill(key)
                    if waited is not None:
                        log.info("network namespace: a cold start waited for a spare being made", extra={
                            "function": function, "ms": round((time.perf_counter() - waited) * 1000, 1)})
                    return self._assign(net, function)
            if self._filling[key] <= self._waiting[key]:
                break
            # A spare for this key is being made (e.g. asked for when a zygote started): wait for it rather
            # than make a second one, which would compete with it for the same CPU.
            self._waiting[key] += 1
            waited = time.perf_counter() if waited is None else waited
            try:
                async with self._landed:
                    await self._landed.wait()
            finally:
                self._waiting[key] -= 1
        self.inline_creations += 1
        started = time.perf_counter()
        async with self._sem:
            net = await asyncio.to_thread(self._create, policy, userns)
        log.info("network namespace made on a cold start (no spare)", extra={
            "function": function, "ms": round((time.perf_counter() - started) * 1000, 1)})
        self._refill(key)
        return self._assign(net, function)

    def _assign(self, net: PreparedNetwork, function: str) -> PreparedNetwork:
        assigned = dataclasses.replace(net, function=function)
        self._live[net.name] = assigned
        return assigned

    def prewarm(self, policy: NetworkPolicy, *, userns: str | None = None) -> None:
        if policy.mode != "none":
            self._refill((policy, userns))

    def _refill(self, key: PoolKey) -> None:
        if self._stopped:
            return
        self._prune()
        # A zygote's user namespace: one spare is enough (its own spare fork already holds one), and there
        # is a pool per zygote, so more would be made and thrown away with every zygote.
        spares = self.settings.network_spares if key[1] is None else min(1, self.settings.network_spares)
        missing = spares - len(self._pools[key]) - self._filling[key]
        for _ in range(max(0, missing)):
            self._filling[key] += 1
            self._spawn(self._fill_one(key))

    async def _fill_one(self, key: PoolKey) -> None:
        try:
            async with self._sem:
                net = await asyncio.to_thread(self._create, key[0], key[1])
            self._pools[key].append(net)
        except Exception as exc:  # a spare that could not be made: the next prepare() makes one inline
            log.warning("could not prepare a network namespace: %s", exc)
        finally:
            self._filling[key] -= 1
            async with self._landed:
                self._landed.notify_all()

    def _prune(self) -> None:
        """Drop spares made for user namespaces that are gone (a zygote that exited)."""
        for key in [k for k in self._pools if k[1] is not None and not os.path.exists(k[1])]:
            for net in self._pools.pop(key):
                self.release(net)

    def release(self, net: PreparedNetwork) -> None:
        if net.netns_path is None or self._live.pop(net.name, None) is None:
            return

        def remove() -> None:
            if net.function:  # spares never used count for nobody
                self._egress[net.function] += self._bytes(net)
            self._remove(net)

        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            remove()
            return
        self._spawn(loop.run_in_executor(None, remove))

    def egress_bytes(self) -> dict[str, int]:
        out = dict(self._egress)
        for net in list(self._live.values()):
            if net.function:
                out[net.function] = out.get(net.function, 0) + self._bytes(net)
        return out

    def _spawn(self, aw: asyncio.Future[object] | object) -> None:
        task: asyncio.Future[object] = asyncio.ensure_future(aw)  # type: ignore[arg-type]
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # --------------------------------------------------------------------------------- kernel work

    def _claim_slot(self) -> int:
        """A /31 of the subnet no other server (or this one) uses: an O_EXCL file names its owner pid."""
        slots = self.subnet.num_addresses // 2
        start = random.randrange(slots)
        for i in range(slots):
            index = (start + i) % slots
            try:
                fd = os.open(STATE_DIR / "slots" / str(index), os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                continue
            os.write(fd, str(self.pid).encode())
            os.close(fd)
            return index
        raise NetworkUnavailable(f"no free address left in NIMBUS_NETWORK_SUBNET={self.subnet}")

    def _create(self, policy: NetworkPolicy, userns: str | None) -> PreparedNetwork:
        n = next(self._ids)
        name = f"{self.prefix}{n}"
        host_if = f"{self.tag}{_b36(n)}"
        slot = self._claim_slot()
        host_ip = self.subnet.network_address + 2 * slot
        env_ip = host_ip + 1
        path = str(NETNS_DIR / name)
        net = PreparedNetwork(name=name, function="", netns_path=path, address=str(env_ip),
                              resolv_conf=self.resolv_conf, hosts=HOSTS, userns=userns, host_ifname=host_if,
                              extra={"slot": str(slot)})
        self._live[name] = net
        try:
            if userns is None:
                _run(["ip", "netns", "add", name])
            else:
                self._netns_in_userns(name, userns)
            _run(["ip", "-batch", "-"], "\n".join([
                f"link add {host_if} mtu {VETH_MTU} type veth peer name eth0 mtu {VETH_MTU} netns {name}",
                f"addr add {host_ip}/31 dev {host_if}",
                f"link set {host_if} up",
            ]) + "\n")
            _run(["ip", "-n", name, "-batch", "-"], "\n".join([
                "link set lo up",
                f"addr add {env_ip}/31 dev eth0",
                "link set eth0 up",
                f"route add default via {host_ip}",
            ]) + "\n")
            _run(["nsenter", f"--net={path}", "nft", "-f", "-"], policy_ruleset(policy, self.resolvers))
            etc = ETC_NETNS / name
            etc.mkdir(parents=True, exist_ok=True)
            (etc / "resolv.conf").write_text(self.resolv_conf)
            (etc / "hosts").write_text(HOSTS)
        except Exception:
            self._live.pop(name, None)
            self._remove(net)
            raise
        return net

    def _netns_in_userns(self, name: str, userns: str) -> None:
        """A namespace owned by `userns` (a zygote's): a helper joins that user namespace and unshares a
        network namespace in the same process (an exec in between would drop the capabilities setns gave it:
        host root is not uid 0 there), then waits; `ip netns attach` binds it to /run/netns/NAME."""
        helper = start_userns_holder(userns)
        try:
            _run(["ip", "netns", "attach", name, str(helper.pid)])
        finally:
            helper.kill()
            helper.communicate()  # reaps it and closes its pipes

    def _bytes(self, net: PreparedNetwork) -> int:
        try:
            return int(Path(f"/sys/class/net/{net.host_ifname}/statistics/rx_bytes").read_text())
        except (OSError, ValueError):
            return 0

    def _remove(self, net: PreparedNetwork) -> None:
        subprocess.run(["ip", "netns", "del", net.name], capture_output=True, check=False)
        subprocess.run(["ip", "link", "del", str(net.host_ifname)], capture_output=True, check=False)
        with contextlib.suppress(OSError):
            (STATE_DIR / "slots" / net.extra.get("slot", "-")).unlink()
        _remove_etc(net.name)


def _remove_etc(name: str) -> None:
    for leaf in ("resolv.conf", "hosts", ""):
        with contextlib.suppress(OSError):
            (ETC_NETNS / name / leaf).unlink() if leaf else (ETC_NETNS / name).rmdir()


# setns(userns) then unshare(CLONE_NEWNET) in one single-threaded process; "ready", then wait for stdin's EOF.
USERNS_HOLDER = r"""
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
fd = os.open(sys.argv[1], os.O_RDONLY)
if libc.setns(fd, 0x10000000) != 0 or libc.unshare(0x40000000) != 0:
    sys.stderr.write(os.strerror(ctypes.get_errno()) + "\n")
    sys.exit(1)
os.close(fd)
sys.stdout.write("ready\n")
sys.stdout.flush()
sys.stdin.read()
"""


def start_userns_holder(userns: str) -> subprocess.Popen[bytes]:
    """A process in a new network namespace owned by user namespace `userns`, alive until its stdin closes.
    Raises NetworkUnavailable (and reaps it) when it cannot."""
    helper = subprocess.Popen([sys.executable, "-I", "-S", "-c", USERNS_HOLDER, userns], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert helper.stdout is not None
    if helper.stdout.readline().strip() != b"ready":
        helper.kill()
        _, err = helper.communicate()
        raise NetworkUnavailable(f"could not make a network namespace in {userns}: {err.decode().strip()}")
    return helper


def cleanup_stale() -> list[str]:
    """Remove namespaces, host tables and address slots of nimbus servers that are no longer running
    (crashed or killed); returns what was removed. Safe while other servers run: only dead pids."""
    removed: list[str] = []
    if NETNS_DIR.is_dir():
        for entry in NETNS_DIR.iterdir():
            parts = entry.name.split("-")
            ours = entry.name.startswith(NETNS_PREFIX) and len(parts) >= 3 and parts[1].isdigit()
            if ours and not _pid_alive(int(parts[1])):
                subprocess.run(["ip", "netns", "del", entry.name], capture_output=True, check=False)
                _remove_etc(entry.name)
                removed.append(entry.name)
    tables = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True, check=False).stdout
    for line in tables.splitlines():
        words = line.split()
        pid = words[2][len(TABLE_PREFIX):].split("_")[0] if len(words) == 3 else ""
        ours = words[2].startswith(TABLE_PREFIX) and pid.isdigit() if len(words) == 3 else False
        if ours and not _pid_alive(int(pid)):
            subprocess.run(["nft", "delete", "table", words[1], words[2]], capture_output=True, check=False)
            removed.append(words[2])
    slots = STATE_DIR / "slots"
    if slots.is_dir():
        for slot in slots.iterdir():
            with contextlib.suppress(OSError, ValueError):
                if not _pid_alive(int(slot.read_text() or "0")):
                    slot.unlink()
    return removed
