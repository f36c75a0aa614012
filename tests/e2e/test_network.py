"""Outbound network through the public API (issue 14 item 1): a function on a real server reaches a "remote
host" (a namespace of the test's own, routed through the host) by a name the test's DNS server answers, and
the host's non-loopback address; never the host's loopback services, the nimbus API port or
169.254.169.254; the `nimbus:network` tags narrow it (`none`, deny CIDRs) and bad ones are refused; egress
is counted in /metrics."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import ROLE, RUNTIME, NimbusServer, make_zip
from tests.sandbox.network.remote import METADATA, NAME_SERVED, Remote

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or not all(shutil.which(t) for t in ("ip", "nft", "setpriv", "bwrap")),
    reason="needs root, bubblewrap and ip, nft (scripts/install-system-deps.sh)",
)

PROBE = r'''
import json, socket, urllib.request

def connect(host, port):
    try:
        socket.create_connection((host, port), timeout=3).close()
        return "connected"
    except OSError as exc:
        return "failed: %s" % exc

def handler(event, context):
    out = {}
    for key, (host, port) in event.get("connect", {}).items():
        out[key] = connect(host, port)
    if "resolve" in event:
        try:
            out["resolve"] = socket.gethostbyname(event["resolve"])
            out["http"] = urllib.request.urlopen("http://%s/" % event["resolve"], timeout=5).read().decode()
        except OSError as exc:
            out["resolve"] = "failed: %s" % exc
    if "send" in event:
        host, port, size = event["send"]
        s = socket.create_connection((host, port), timeout=5)
        s.sendall(b"x" * size)
        s.close()
    with open("/etc/resolv.conf") as f:
        out["resolv.conf"] = f.read()
    return out
'''


@pytest.fixture(scope="module")
def remote() -> Iterator[Remote]:
    r = Remote.start()
    yield r
    r.stop()


@pytest.fixture(scope="module")
def netserver(tmp_path_factory: pytest.TempPathFactory, remote: Remote) -> Iterator[NimbusServer]:
    srv = NimbusServer(tmp_path_factory.mktemp("nimbus-net") / "data",
                       env={"NIMBUS_NETWORK": "veth", "NIMBUS_NETWORK_DNS": remote.address}).start()
    yield srv
    srv.stop()


@pytest.fixture
def host_services(remote: Remote) -> Iterator[dict[str, int]]:
    """A TCP service on the host's loopback only, and one on the host's non-loopback (LAN) address."""
    socks = {"loopback": socket.create_server(("127.0.0.1", 0)), "lan": socket.create_server((remote.host_address, 0))}

    def accept(s: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while True:
                s.accept()[0].close()

    for s in socks.values():
        threading.Thread(target=accept, args=(s,), daemon=True).start()
    yield {k: s.getsockname()[1] for k, s in socks.items()}
    for s in socks.values():
        s.close()


def deploy(server: NimbusServer, tags: dict[str, str] | None = None) -> str:
    name = f"net-{uuid.uuid4().hex[:8]}"
    server.client("lambda").create_function(
        FunctionName=name, Runtime=RUNTIME, Role=ROLE, Handler="probe.handler", Timeout=30,
        Code={"ZipFile": make_zip({"probe.py": PROBE})}, Tags=tags or {})
    return name


def invoke(server: NimbusServer, name: str, event: dict[str, Any]) -> dict[str, Any]:
    resp = server.client("lambda").invoke(FunctionName=name, Payload=json.dumps(event))
    body = json.loads(resp["Payload"].read())
    assert "FunctionError" not in resp, body
    return body  # type: ignore[no-any-return]


def test_reaches_remote_by_name_and_host_lan_address(netserver: NimbusServer, remote: Remote,
                                                     host_services: dict[str, int]) -> None:
    name = deploy(netserver)
    out = invoke(netserver, name, {"resolve": NAME_SERVED, "connect": {
        "remote": [remote.address, 80], "lan": [remote.host_address, host_services["lan"]]}})
    assert out["resolve"] == remote.address and out["http"] == "remote"
    assert out["remote"] == "connected" and out["lan"] == "connected"
    assert out["resolv.conf"] == f"nameserver {remote.address}\n"
    assert "network: veth" in netserver.output()  # the start-up banner says which provider runs


def test_never_reaches_host_loopback_api_or_metadata(netserver: NimbusServer, remote: Remote,
                                                     host_services: dict[str, int]) -> None:
    name = deploy(netserver)
    # Controls: the host itself reaches all of these.
    socket.create_connection((METADATA, 80), timeout=3).close()
    out = invoke(netserver, name, {"connect": {
        "loopback": ["127.0.0.1", host_services["loopback"]],
        "api": ["127.0.0.1", netserver.port],
        "api_lan": [remote.host_address, netserver.port],
        "metadata": [METADATA, 80],
    }})
    for key in ("loopback", "api", "api_lan", "metadata"):
        assert out[key].startswith("failed"), (key, out[key])


def test_none_tag_blocks_everything_and_deny_tag_narrows(netserver: NimbusServer, remote: Remote,
                                                         host_services: dict[str, int]) -> None:
    none = deploy(netserver, {"nimbus:network": "none"})
    out = invoke(netserver, none, {"resolve": NAME_SERVED, "connect": {
        "remote": [remote.address, 80], "lan": [remote.host_address, host_services["lan"]]}})
    assert out["resolve"].startswith("failed") and out["remote"].startswith("failed")
    assert out["lan"].startswith("failed")
    denied = deploy(netserver, {"nimbus:network:deny": f"{remote.address}/32"})
    out = invoke(netserver, denied, {"connect": {
        "remote": [remote.address, 80], "lan": [remote.host_address, host_services["lan"]]}})
    assert out["remote"].startswith("failed") and out["lan"] == "connected"


def test_bad_network_tag_is_invalid_parameter_value(netserver: NimbusServer) -> None:
    lam = netserver.client("lambda")
    with pytest.raises(lam.exceptions.InvalidParameterValueException):
        deploy(netserver, {"nimbus:network:allow": "not-a-cidr"})
    name = deploy(netserver)
    arn = lam.get_function(FunctionName=name)["Configuration"]["FunctionArn"]
    with pytest.raises(lam.exceptions.InvalidParameterValueException):
        lam.tag_resource(Resource=arn, Tags={"nimbus:network": "vpc"})


def test_egress_bytes_in_metrics(netserver: NimbusServer, remote: Remote) -> None:
    name = deploy(netserver)
    invoke(netserver, name, {"send": [remote.address, 9, 300_000]})
    text = httpx.get(f"{netserver.endpoint}/metrics").text
    line = next(x for x in text.splitlines() if x.startswith("nimbus_network_egress_bytes") and f'"{name}"' in x)
    assert float(line.split()[-1]) >= 300_000


def test_namespaces_of_a_killed_server_are_removed_by_the_next(tmp_path_factory: pytest.TempPathFactory,
                                                               remote: Remote) -> None:
    env = {"NIMBUS_NETWORK": "veth", "NIMBUS_NETWORK_DNS": remote.address}
    data = tmp_path_factory.mktemp("nimbus-net-kill") / "data"
    first = NimbusServer(data, env=env).start()
    invoke(first, deploy(first), {})
    assert first.proc is not None
    pid = first.proc.pid
    left = [p for p in Path("/run/netns").iterdir() if p.name.startswith(f"nimbus-{pid}-")]
    assert left  # its spares and its environment's namespace
    first.stop(signal.SIGKILL)  # no clean-up of its own
    assert all(p.exists() for p in left)
    second = NimbusServer(data, env=env).start()
    try:
        assert not any(p.exists() for p in left)
        tables = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True).stdout
        assert f"nimbus_{pid}_" not in tables
    finally:
        second.stop()
