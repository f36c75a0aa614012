"""The rootful veth provider against the kernel: a namespace per environment reaches a "remote host" (a
namespace of the test's own, routed through the host), the host's non-loopback address and a DNS server the
test runs; never the host's loopback, the API port, 169.254.169.254, denied CIDRs; `none` has no network."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import subprocess
import sys
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from nimbus.config import Settings
from nimbus.sandbox.network import NO_NETWORK, NetworkPolicy, PreparedNetwork
from nimbus.sandbox.network.veth import NETNS_DIR, VethNetwork, cleanup_stale
from tests.sandbox.network.remote import METADATA, NAME_SERVED, Remote, connect_code, in_netns, wait_gone

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or not all(shutil.which(t) for t in ("ip", "nft", "setpriv", "nsenter")),
    reason="needs root and ip, nft (scripts/install-system-deps.sh), setpriv, nsenter",
)


@pytest.fixture(scope="module")
def remote() -> Iterator[Remote]:
    r = Remote.start()
    yield r
    r.stop()


@pytest.fixture
def api_listener() -> Iterator[socket.socket]:
    """A stand-in for the nimbus API: listening on every host address, its port given to the provider."""
    s = socket.socket()
    s.bind(("0.0.0.0", 0))
    s.listen()
    yield s
    s.close()


@pytest.fixture
async def provider(remote: Remote, api_listener: socket.socket) -> AsyncIterator[VethNetwork]:
    settings = Settings(port=api_listener.getsockname()[1], network_dns=remote.address, network_spares=1)
    p = VethNetwork(settings, "test")
    await p.start()
    yield p
    await p.stop()


def policy(p: VethNetwork, **tags: str) -> NetworkPolicy:
    return NetworkPolicy.from_tags({k.replace("_", ":"): v for k, v in tags.items()}, p.settings)


def reach(net: PreparedNetwork, host: str, port: int) -> str:
    return in_netns(net.name, connect_code(host, port)).stdout.strip()


def serve_on_host(address: str) -> tuple[socket.socket, int]:
    s = socket.socket()
    s.bind((address, 0))
    s.listen(8)

    def accept() -> None:
        with contextlib.suppress(OSError):  # closed by the test
            for _ in range(8):
                s.accept()[0].close()

    threading.Thread(target=accept, daemon=True).start()
    return s, s.getsockname()[1]


async def test_reaches_remote_and_host_address_and_resolves_names(provider: VethNetwork, remote: Remote) -> None:
    net = await provider.prepare("fn", policy(provider))
    assert net.netns_path and Path(net.netns_path).exists() and net.resolv_conf == f"nameserver {remote.address}\n"
    assert reach(net, remote.address, 80) == "connected"  # through NAT: the "internet"
    lan, port = serve_on_host(remote.host_address)  # a host address that is not loopback
    assert reach(net, remote.host_address, port) == "connected"
    lan.close()
    code = (f"import socket, urllib.request; ip = socket.gethostbyname({NAME_SERVED!r}); print(ip); "
            f"print(urllib.request.urlopen(f'http://{NAME_SERVED}/', timeout=5).read().decode())")
    out = in_netns(net.name, code)
    assert out.stdout.split() == [remote.address, "remote"], out.stderr
    provider.release(net)


async def test_never_reaches_host_loopback_api_port_or_metadata(
    provider: VethNetwork, remote: Remote, api_listener: socket.socket
) -> None:
    net = await provider.prepare("fn", policy(provider))
    loop_srv, loop_port = serve_on_host("127.0.0.1")
    assert reach(net, "127.0.0.1", loop_port).startswith("failed")  # its own loopback: nobody listens
    gateway = str(__import__("ipaddress").ip_address(net.address) - 1)
    assert reach(net, gateway, loop_port).startswith("failed")  # the host's loopback-only service
    assert reach(net, gateway, api_listener.getsockname()[1]).startswith("failed")  # the API, any address
    assert reach(net, remote.host_address, api_listener.getsockname()[1]).startswith("failed")
    # 169.254.169.254 answers on the remote host (the host can reach it), but never from an environment.
    host_probe = socket.create_connection((METADATA, 80), timeout=3)
    host_probe.close()
    assert reach(net, METADATA, 80).startswith("failed")
    loop_srv.close()
    provider.release(net)


async def test_deny_and_allow_cidrs(provider: VethNetwork, remote: Remote) -> None:
    denied = await provider.prepare("fn", policy(provider, nimbus_network_deny=f"{remote.address}/32"))
    assert reach(denied, remote.address, 80).startswith("failed")
    allowed = await provider.prepare("fn", policy(provider, nimbus_network_allow=f"{remote.address}/32"))
    assert reach(allowed, remote.address, 80) == "connected"
    lan, port = serve_on_host(remote.host_address)
    assert reach(allowed, remote.host_address, port).startswith("failed")  # not in the allow list
    lan.close()
    provider.release(denied)
    provider.release(allowed)


async def test_server_deny_applies_to_every_function(remote: Remote, api_listener: socket.socket) -> None:
    settings = Settings(port=api_listener.getsockname()[1], network_dns=remote.address, network_spares=0,
                        network_deny=f"{remote.address}/32")
    p = VethNetwork(settings, "test")
    await p.start()
    try:
        net = await p.prepare("fn", NetworkPolicy.from_tags({}, settings))
        assert reach(net, remote.address, 80).startswith("failed")
    finally:
        await p.stop()


async def test_none_policy_has_no_network(provider: VethNetwork, remote: Remote) -> None:
    net = await provider.prepare("fn", policy(provider, nimbus_network="none"))
    assert net is NO_NETWORK and net.netns_path is None  # the environment unshares a loopback-only one
    assert in_netns(None, connect_code(remote.address, 80)).stdout.startswith("failed")


async def test_egress_is_counted_per_function(provider: VethNetwork, remote: Remote) -> None:
    net = await provider.prepare("counted", policy(provider))
    code = (f"import socket; s = socket.create_connection(({remote.address!r}, 9)); s.sendall(b'a' * 200000); "
            "s.shutdown(socket.SHUT_WR); s.recv(1)")
    in_netns(net.name, code)
    assert provider.egress_bytes()["counted"] >= 200000
    provider.release(net)
    await asyncio.sleep(0.2)
    assert provider.egress_bytes()["counted"] >= 200000  # kept after the environment is gone


async def test_pool_hands_out_prepared_namespaces(provider: VethNetwork) -> None:
    pol = policy(provider)
    for _ in range(100):  # the default policy's spare, made at start()
        if provider._pools[(pol, None)]:
            break
        await asyncio.sleep(0.05)
    net = await provider.prepare("fn", pol)
    assert provider.inline_creations == 0
    other = await provider.prepare("fn", pol)  # distinct namespace, its own 127.0.0.1:9001
    assert other.name != net.name and other.address != net.address
    provider.release(net)
    provider.release(other)
    await asyncio.sleep(0.3)
    assert wait_gone(Path(str(net.netns_path)))


async def test_zygote_user_namespace_can_join(provider: VethNetwork) -> None:
    # As a real zygote's: the host's root is not mapped to uid 0 in it (no mapping at all here).
    owner = subprocess.Popen(["unshare", "--user", "sleep", "60"])
    try:
        for _ in range(100):
            if os.readlink(f"/proc/{owner.pid}/ns/user") != os.readlink("/proc/self/ns/user"):
                break
            await asyncio.sleep(0.02)
        userns = f"/proc/{owner.pid}/ns/user"
        net = await provider.prepare("fn", policy(provider), userns=userns)
        joined = subprocess.run(["nsenter", "--preserve-credentials", f"--user={userns}", f"--net={net.netns_path}",
                                 "true"],
                                capture_output=True)
        assert joined.returncode == 0, joined.stderr  # capabilities in the owner: may setns
        stranger = subprocess.run(["unshare", "--user", "--map-root-user", "nsenter", f"--net={net.netns_path}",
                                   "true"], capture_output=True)
        assert stranger.returncode != 0  # anyone else may not
        provider.release(net)
    finally:
        owner.kill()
        owner.wait()


async def test_stop_and_stale_cleanup_remove_everything(remote: Remote, api_listener: socket.socket) -> None:
    settings = Settings(port=api_listener.getsockname()[1], network_dns=remote.address, network_spares=0)
    p = VethNetwork(settings, "test")
    await p.start()
    net = await p.prepare("fn", NetworkPolicy.from_tags({}, settings))
    await p.stop()
    assert wait_gone(Path(str(net.netns_path)))
    assert not Path(f"/sys/class/net/{net.host_ifname}").exists()
    assert p.table not in subprocess.run(["nft", "list", "tables"], capture_output=True, text=True).stdout
    # A server killed with -9 leaves its namespaces and table behind: the next start removes them.
    dead = subprocess.Popen(["true"])
    dead.wait()
    stale = f"nimbus-{dead.pid}-1"
    subprocess.run(["ip", "netns", "add", stale], check=True)
    subprocess.run(["nft", "add", "table", "inet", f"nimbus_{dead.pid}"], check=True)
    removed = cleanup_stale()
    assert stale in removed and f"nimbus_{dead.pid}" in removed
    assert not (NETNS_DIR / stale).exists()


@pytest.mark.skipif(shutil.which("bwrap") is None, reason="needs bubblewrap")
async def test_sandbox_in_the_namespace_cannot_change_its_rules(provider: VethNetwork) -> None:
    """Joined before bubblewrap makes the sandbox's user namespace (how the launch paths use it), even full
    capabilities inside that user namespace give no power over the namespace's rules or links."""
    net = await provider.prepare("fn", policy(provider))
    script = ("nft flush ruleset; echo nft=$?; ip link set eth0 down; echo ip=$?; "
              f"{sys.executable} -c \"import socket; socket.socket().bind(('127.0.0.1', 9001)); print('bound')\"")
    out = subprocess.run(["nsenter", f"--net={net.netns_path}", "bwrap", "--unshare-user", "--uid", "0",
                          "--cap-add", "ALL", "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc",
                          "sh", "-c", script], capture_output=True, text=True)
    assert out.stdout.split() == ["nft=1", "ip=2", "bound"], out.stderr
    provider.release(net)


async def test_prepare_waits_for_a_spare_in_flight_instead_of_making_another(provider: VethNetwork) -> None:
    pol = policy(provider, nimbus_network_deny="203.0.113.0/24")  # a policy of its own: an empty pool
    provider.prewarm(pol)  # what a zygote's start does for its user namespace
    net = await provider.prepare("fn", pol)  # right away: the spare is still being made
    assert provider.inline_creations == 0 and net.netns_path is not None
    provider.release(net)
