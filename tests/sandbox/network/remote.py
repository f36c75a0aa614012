"""A "remote host" for network tests: a network namespace of the test's own, routed from the host, serving
TCP (HTTP) and DNS on its address, plus 169.254.169.254 (to prove the metadata address is blocked by policy,
not merely unrouted). Used by the unit tests here and by tests/e2e/test_network.py."""

from __future__ import annotations

import ipaddress
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

METADATA = "169.254.169.254"
NAME_SERVED = "remote.nimbus.test"

# Runs inside the remote namespace: an HTTP server on :80 (and METADATA:80) answering "remote", and a DNS
# server on :53 answering NAME_SERVED with the remote's address (A records only; others NXDOMAIN).
SERVER = r"""
import socket, struct, sys, threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
ip, name = sys.argv[1], sys.argv[2]
class H(BaseHTTPRequestHandler):
    def do_GET(self):
        size = int(self.path.strip("/") or 6) if self.path.strip("/").isdigit() else 6
        self.send_response(200); self.send_header("Content-Length", str(size)); self.end_headers()
        chunk = b"remote" * 10000
        while size > 0:
            n = min(size, len(chunk)); self.wfile.write(chunk[:n]); size -= n
    def log_message(self, *a): pass
ThreadingHTTPServer.allow_reuse_address = True
http = ThreadingHTTPServer(("0.0.0.0", 80), H)
threading.Thread(target=http.serve_forever, daemon=True).start()
def drain(c):
    while c.recv(1 << 16):
        pass
    c.close()
def discard():  # port 9: reads and drops whatever is sent (egress counting, bulk upload)
    sink = socket.create_server(("0.0.0.0", 9))
    while True:
        c = sink.accept()[0]
        threading.Thread(target=drain, args=(c,), daemon=True).start()
threading.Thread(target=discard, daemon=True).start()
dns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); dns.bind(("0.0.0.0", 53))
print("ready", flush=True)
while True:
    q, addr = dns.recvfrom(512)
    tid, flags, qd = struct.unpack("!HHH", q[:6])
    i, labels = 12, []
    while q[i]:
        labels.append(q[i + 1:i + 1 + q[i]].decode()); i += 1 + q[i]
    qtype = struct.unpack("!H", q[i + 1:i + 3])[0]
    question = q[12:i + 5]
    hit = ".".join(labels).lower() == name and qtype == 1
    head = struct.pack("!HHHHHH", tid, 0x8180 if hit else 0x8183, 1, 1 if hit else 0, 0, 0)
    answer = struct.pack("!HHHLH", 0xC00C, 1, 1, 60, 4) + socket.inet_aton(ip) if hit else b""
    dns.sendto(head + question + answer, addr)
"""


def _b36(n: int) -> str:
    out = ""
    while True:
        n, r = divmod(n, 36)
        out = "0123456789abcdefghijklmnopqrstuvwxyz"[r] + out
        if n == 0:
            return out


def _ip(*args: str, check: bool = True) -> None:
    subprocess.run(["ip", *args], check=check, capture_output=True)


@dataclass
class Remote:
    name: str
    ifname: str
    address: str  # where its HTTP (:80) and DNS (:53) servers answer
    host_address: str  # the host's end of the link: a host address that is not loopback
    server: subprocess.Popen[bytes]

    @classmethod
    def start(cls) -> Remote:
        tag = _b36(os.getpid())
        name, ifname = f"nbtest-remote-{os.getpid()}", f"rt{tag}"
        for stale in Path("/run/netns").glob("nbtest-remote-*") if Path("/run/netns").is_dir() else ():
            pid = stale.name.rsplit("-", 1)[1]  # left by a test run that was killed
            if pid.isdigit() and not Path(f"/proc/{pid}").exists():
                _ip("netns", "del", stale.name, check=False)
        first = ipaddress.ip_address("198.18.0.0") + 2 * (os.getpid() % 32768)  # benchmarking range, a /31
        host_address, address = str(first), str(first + 1)
        _ip("netns", "add", name)
        _ip("link", "add", ifname, "type", "veth", "peer", "name", "eth0", "netns", name)
        _ip("addr", "add", f"{host_address}/31", "dev", ifname)
        _ip("link", "set", ifname, "up")
        _ip("-n", name, "addr", "add", f"{address}/31", "dev", "eth0")
        _ip("-n", name, "addr", "add", f"{METADATA}/32", "dev", "lo")
        _ip("-n", name, "link", "set", "eth0", "up")
        _ip("-n", name, "link", "set", "lo", "up")
        _ip("-n", name, "route", "add", "default", "via", host_address)
        _ip("route", "replace", f"{METADATA}/32", "via", address)  # reachable from the host: blocks are policy
        server = subprocess.Popen(["ip", "netns", "exec", name, sys.executable, "-c", SERVER, address, NAME_SERVED],
                                  stdout=subprocess.PIPE)
        assert server.stdout is not None and server.stdout.readline().strip() == b"ready"
        return cls(name, ifname, address, host_address, server)

    def stop(self) -> None:
        self.server.kill()
        self.server.wait()
        if self.server.stdout is not None:
            self.server.stdout.close()
        _ip("route", "del", f"{METADATA}/32", check=False)
        _ip("link", "del", self.ifname, check=False)
        _ip("netns", "del", self.name, check=False)


def in_netns(netns: str | None, code: str, timeout: float = 20) -> subprocess.CompletedProcess[str]:
    """Run Python `code` inside namespace `netns` (by name, with its /etc/netns resolv.conf) as nobody, or in
    a fresh loopback-only namespace when `netns` is None."""
    drop = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
    prefix = ["ip", "netns", "exec", netns] if netns else ["unshare", "--net"]
    return subprocess.run([*prefix, *drop, sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=timeout)


CONNECT = r"""
import socket, sys
host, port = sys.argv[1], int(sys.argv[2])
try:
    s = socket.create_connection((host, port), timeout=3)
    print("connected")
except OSError as e:
    print("failed", type(e).__name__, e)
"""


def connect_code(host: str, port: int) -> str:
    return f"import sys; sys.argv = ['x', {host!r}, '{port}']\n" + CONNECT


def wait_gone(path: Path, seconds: float = 5) -> bool:
    deadline = time.monotonic() + seconds
    while path.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    return not path.exists()
