#!/usr/bin/env bash
# Installs what the nodejs* managed runtimes run on, each on its own Node.js major version as on AWS:
# - Node.js 20, 22 and 24: the host's `node` when its major matches, else the official binaries that the
#   npm registry ships as `node-linux-<arch>@<major>` (the same files as the nodejs.org tarballs, headers
#   included), unpacked into $NIMBUS_NODE_RUNTIMES_DIR/node<major> (default .cache/node-runtimes/node<major>);
# - AWS's runtime interface client `aws-lambda-ric` from the npm registry: 3.3.0 (the last release for
#   Node < 22) and 4.x (Node >= 22), into .cache/aws-lambda-ric/<version>. Its native part (a libcurl-based
#   HTTP client, an N-API addon, so one build serves every major it supports) is compiled here: it needs make,
#   g++, cmake, autoconf, automake and libtool (scripts/install-system-deps.sh).
# Without node/npm this only says so: nimbus then refuses nodejs* runtimes with a clear message.
set -u
cd "$(dirname "$0")/.."
runtimes="${NIMBUS_NODE_RUNTIMES_DIR:-$PWD/.cache/node-runtimes}"
rics="${NIMBUS_NODE_RIC_DIR:-$PWD/.cache/aws-lambda-ric}"
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  echo "note: node/npm not installed: the nodejs* runtimes are unavailable." >&2
  exit 0
fi
case "$(uname -m)" in x86_64) arch=x64 ;; aarch64) arch=arm64 ;; *) arch="" ;; esac
host_major="$(node -p 'process.versions.node.split(".")[0]')"

# node_for MAJOR: the directory whose bin/node runs that major (the host's prefix or a downloaded one).
node_for() {
  if [ "$1" = "$host_major" ]; then dirname "$(dirname "$(readlink -f "$(command -v node)")")"; return 0; fi
  local dest="$runtimes/node$1"
  if [ ! -x "$dest/bin/node" ]; then
    [ -n "$arch" ] || { echo "note: no Node.js $1 binaries for $(uname -m): nodejs$1.x is unavailable." >&2; return 1; }
    echo "installing Node.js $1 (npm package node-linux-$arch@$1) ..." >&2
    local work; work="$(mktemp -d)"
    if (cd "$work" && npm pack --silent "node-linux-$arch@$1" >/dev/null 2>&1) && tar xzf "$work"/*.tgz -C "$work"; then
      rm -rf "$dest"; mkdir -p "$runtimes"; mv "$work/package" "$dest"; chmod -R a+rX "$dest"
    else
      echo "note: could not install Node.js $1: nodejs$1.x is unavailable." >&2
    fi
    rm -rf "$work"
  fi
  [ -x "$dest/bin/node" ] && echo "$dest"
}

# install_ric VERSION NODE_PREFIX: aws-lambda-ric built with that node (and its headers).
install_ric() {
  local version="$1" prefix="$2" dest="$rics/$1"
  [ -f "$dest/.installed" ] && return 0
  local work; work="$(mktemp -d)"
  echo "installing aws-lambda-ric@$version with node $("$prefix/bin/node" --version) (compiles its native client: takes a few minutes) ..." >&2
  local nodedir=()
  [ -d "$prefix/include/node" ] && nodedir=(env "npm_config_nodedir=$prefix")
  if ! (cd "$work" && PATH="$prefix/bin:$PATH" "${nodedir[@]}" npm install --no-audit --no-fund --loglevel=error \
        --prefix "$work" "aws-lambda-ric@$version" >&2); then
    echo "note: could not install aws-lambda-ric@$version." >&2
    rm -rf "$work"; return 1
  fi
  rm -rf "$dest"
  mkdir -p "$dest/node_modules/aws-lambda-ric"
  local src="$work/node_modules/aws-lambda-ric"
  if [ -d "$src/dist" ]; then
    # 3.x: compiled sources in dist/, native client in build/, runtime dependencies beside it.
    cp -r "$src/dist" "$src/bin" "$src/package.json" "$dest/node_modules/aws-lambda-ric/"
    cp "$src"/LICENSE "$src"/NOTICE "$dest/node_modules/aws-lambda-ric/" 2>/dev/null || true
    [ -d "$work/node_modules/@aws" ] && cp -r "$work/node_modules/@aws" "$dest/node_modules/"
    entry='import { run } from "./node_modules/aws-lambda-ric/dist/index.mjs";
await run(process.env.LAMBDA_TASK_ROOT, process.env._HANDLER);'
  else
    # 4.x: one bundled index.mjs that starts the runtime itself (from _HANDLER and LAMBDA_TASK_ROOT) and
    # rapid-client.node beside it; the native sources and build tree are not needed at run time.
    cp "$src/index.mjs" "$src/package.json" "$src/rapid-client.node" "$dest/node_modules/aws-lambda-ric/"
    cp "$src"/LICENSE "$src"/NOTICE "$dest/node_modules/aws-lambda-ric/" 2>/dev/null || true
    entry='import "./node_modules/aws-lambda-ric/index.mjs";'
  fi
  # The entry point nimbus starts, as AWS's /var/runtime/index.mjs: run the handler named by _HANDLER.
  printf '%s\n' "$entry" > "$dest/index.mjs"
  chmod -R a+rX "$dest"
  touch "$dest/.installed"
  rm -rf "$work"
  echo "aws-lambda-ric@$version installed in $dest" >&2
}

# The layout before per-major runtimes had one installation at the top of $rics: drop it.
[ -z "${NIMBUS_NODE_RIC_DIR:-}" ] && rm -rf "$rics/index.mjs" "$rics/node_modules" "$rics"/.installed-*
ric3="${NIMBUS_NODE_RIC3_VERSION:-3.3.0}"
ric4="${NIMBUS_NODE_RIC_VERSION:-4.0.2}"
for major in 20 22 24; do
  prefix="$(node_for "$major")" || continue
  if [ "$major" -ge 22 ]; then install_ric "$ric4" "$prefix"; else install_ric "$ric3" "$prefix"; fi
done
exit 0
