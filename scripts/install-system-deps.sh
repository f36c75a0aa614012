#!/usr/bin/env bash
# System packages nimbus uses when present: bubblewrap (namespaces isolation) and libseccomp (seccomp).
# Installs them with apt when we are root (or have password-less sudo); otherwise says what is missing:
# nimbus then runs with the `process` backend and says so loudly at start-up.
set -u
missing=()
command -v bwrap >/dev/null 2>&1 || missing+=(bubblewrap)
ldconfig -p 2>/dev/null | grep -q 'libseccomp\.so\.2' || missing+=(libseccomp2)
command -v chromium >/dev/null 2>&1 || missing+=(chromium)  # the dashboard's browser tests (issue 8)
# PostgreSQL server: the async queue's PostgreSQL tests start a throwaway cluster (issue 4).
command -v initdb >/dev/null 2>&1 || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing+=(postgresql)
# Node.js runtimes: node, npm, and what compiles aws-lambda-ric's native client (scripts/install-node-ric.sh).
command -v node >/dev/null 2>&1 || missing+=(nodejs)
command -v npm >/dev/null 2>&1 || missing+=(npm)
# curl: the bash + curl custom runtimes and extensions of the Runtime API tests (issue 6).
command -v curl >/dev/null 2>&1 || missing+=(curl)
# wrk: the HTTP load generator of the benchmarks under bench/ (issue 16).
command -v wrk >/dev/null 2>&1 || missing+=(wrk)
# Outbound network of environments (issue 14, docs/network.md): ip (iproute2) and nft (nftables) for the rootful
# veth provider, pasta (passt) for rootless hosts.
command -v ip >/dev/null 2>&1 || missing+=(iproute2)
command -v nft >/dev/null 2>&1 || missing+=(nftables)
command -v pasta >/dev/null 2>&1 || missing+=(passt)
# Container-image functions (issue 19, docs/images.md): skopeo pulls images; the tests run a CNCF distribution
# registry (docker-registry) on loopback.
command -v skopeo >/dev/null 2>&1 || missing+=(skopeo)
command -v docker-registry >/dev/null 2>&1 || missing+=(docker-registry)
for tool in make g++ cmake autoconf automake libtool; do
  command -v "$tool" >/dev/null 2>&1 || { [ "$tool" = libtool ] && command -v libtoolize >/dev/null 2>&1; } || missing+=("$tool")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" = 0 ]; then SUDO=""; elif sudo -n true 2>/dev/null; then SUDO="sudo -n"; else
  echo "note: ${missing[*]} not installed and no root: functions will run without isolation." >&2
  exit 0
fi
if command -v apt-get >/dev/null 2>&1; then
  echo "installing ${missing[*]} ..." >&2
  $SUDO apt-get update -qq >/dev/null 2>&1 || true
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null 2>&1 \
    || echo "note: could not install ${missing[*]}: functions will run without isolation." >&2
else
  echo "note: install ${missing[*]} with your package manager for isolation." >&2
fi
exit 0
