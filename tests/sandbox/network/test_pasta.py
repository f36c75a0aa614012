"""The rootless pasta provider, run as an unprivileged user (nobody) as a rootless server would: its namespace
reaches a "remote host" by a name the test's DNS server answers; never the metadata address (routed and
answering on the host), the API port, or its own rules."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.sandbox.network.remote import METADATA, NAME_SERVED, Remote

SRC = Path(__file__).resolve().parents[3] / "src"
SYSTEM_PYTHON = "/usr/bin/python3"


def _why_not() -> str | None:
    if os.geteuid() != 0:
        return "needs root to set up the remote host and switch to nobody"
    if not all(shutil.which(t) for t in ("pasta", "nft", "ip", "setpriv", "unshare", "nsenter")):
        return "needs pasta (passt), nft, ip, setpriv"
    # nobody cannot read root's interpreter (often under /root): use the system one with this venv's packages.
    site = [p for p in sys.path if p.endswith("site-packages") and Path(p).is_dir()]
    probe = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", SYSTEM_PYTHON, "-c",
                            "import sys, nimbus.config; print(sys.version_info[:2])"],
                           env={"PYTHONPATH": ":".join([str(SRC), *site]), "PATH": os.environ["PATH"]},
                           capture_output=True, text=True, check=False)
    if probe.returncode != 0:
        return f"nobody cannot run nimbus with {SYSTEM_PYTHON}: {probe.stderr.strip()[-200:]}"
    if subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "unshare", "--user",
                       "--map-root-user", "--net", "true"], capture_output=True, check=False).returncode != 0:
        return "unprivileged user namespaces are disabled"
    return None


WHY_NOT = _why_not()
pytestmark = pytest.mark.skipif(WHY_NOT is not None, reason=str(WHY_NOT))

SCRIPT = r"""
import asyncio, json, subprocess, sys
from nimbus.config import Settings
from nimbus.sandbox.network import NetworkPolicy
from nimbus.sandbox.network.chooser import choose_provider
remote, metadata, name, api_port = sys.argv[1:5]
PROBE = '''
import json, socket, sys
def connect(host, port):
    try:
        socket.create_connection((host, port), timeout=3).close(); return "connected"
    except OSError as e:
        return "failed"
out = {"remote": connect(sys.argv[1], 80), "metadata": connect(sys.argv[2], 80)}
try:
    out["resolve"] = socket.gethostbyname(sys.argv[3])
except OSError:
    out["resolve"] = "failed"
print(json.dumps(out))
'''
async def main():
    s = Settings(port=int(api_port), network_dns=remote, network_spares=1, data_dir="/tmp")
    p = choose_provider(s)
    await p.start()
    try:
        net = await p.prepare("fn", NetworkPolicy.from_tags({}, s))
        enter = ["nsenter", "--preserve-credentials", f"--user={net.userns}", f"--net={net.netns_path}"]
        # resolv.conf as the sandbox gets it: bound over /etc/resolv.conf in a mount namespace of the owner's.
        with open("/tmp/nimbus-pasta-test-resolv.conf", "w") as f:
            f.write(net.resolv_conf)
        shell = ("mount --bind /tmp/nimbus-pasta-test-resolv.conf /etc/resolv.conf && exec " + sys.executable
                 + " -c \"$0\" \"$@\"")
        out = subprocess.run([*enter, "unshare", "--mount", "sh", "-c", shell, PROBE, remote, metadata, name],
                             capture_output=True, text=True)
        result = json.loads(out.stdout or "{}") if out.returncode == 0 else {"error": out.stderr}
        flush = subprocess.run([*enter, "unshare", "--user", "nft", "flush", "ruleset"], capture_output=True)
        result["nested_flush"] = flush.returncode
        result["provider"] = p.name
        result["egress"] = p.egress_bytes().get("fn", 0)
        p.release(net)
    finally:
        await p.stop()
    print(json.dumps(result))
asyncio.run(main())
"""


@pytest.fixture(scope="module")
def remote() -> Iterator[Remote]:
    r = Remote.start()
    yield r
    r.stop()


def test_pasta_namespace_as_an_unprivileged_server(remote: Remote) -> None:
    site = [p for p in sys.path if p.endswith("site-packages") and Path(p).is_dir()]
    out = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", SYSTEM_PYTHON, "-c", SCRIPT,
                          remote.address, METADATA, NAME_SERVED, "9"],
                         env={"PYTHONPATH": ":".join([str(SRC), *site]), "PATH": os.environ["PATH"], "HOME": "/tmp"},
                         capture_output=True, text=True, timeout=60, cwd="/tmp")
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["provider"] == "pasta"
    assert result["remote"] == "connected" and result["resolve"] == remote.address, result
    assert result["metadata"] == "failed", result  # the host reaches it; the namespace never does
    assert result["nested_flush"] != 0  # a user namespace below the owner's (the sandbox's) cannot
    assert result["egress"] > 0
