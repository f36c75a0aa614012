#!/usr/bin/env bash
# Installs AWS's official Node.js runtime interface client (`aws-lambda-ric` from the npm registry), which
# nimbus runs for the nodejs* managed runtimes. Its native part (a libcurl-based HTTP client) is compiled
# here: it needs make, g++, cmake, autoconf, automake and libtool (scripts/install-system-deps.sh).
# Without node/npm this only says so: nimbus then refuses nodejs* runtimes with a clear message.
# Destination: $NIMBUS_NODE_RIC_DIR, default .cache/aws-lambda-ric in the repository.
set -u
cd "$(dirname "$0")/.."
dest="${NIMBUS_NODE_RIC_DIR:-$PWD/.cache/aws-lambda-ric}"
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  echo "note: node/npm not installed: the nodejs* runtimes are unavailable." >&2
  exit 0
fi
major="$(node -p 'process.versions.node.split(".")[0]')"
# aws-lambda-ric 4.x requires node >= 22; 3.3.0 is the last release that runs on node 18/20.
if [ "$major" -ge 22 ]; then version="${NIMBUS_NODE_RIC_VERSION:-4.0.2}"; else version="${NIMBUS_NODE_RIC_VERSION:-3.3.0}"; fi
stamp="$dest/.installed-$version-node$major"
[ -f "$stamp" ] && exit 0
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
echo "installing aws-lambda-ric@$version for node $major (compiles its native client: takes a few minutes) ..." >&2
if ! (cd "$work" && npm install --no-audit --no-fund --loglevel=error --prefix "$work" "aws-lambda-ric@$version" >&2); then
  echo "note: could not install aws-lambda-ric: the nodejs* runtimes are unavailable." >&2
  exit 0
fi
rm -rf "$dest"
mkdir -p "$dest/node_modules/aws-lambda-ric"
src="$work/node_modules/aws-lambda-ric"
cp -r "$src/dist" "$src/bin" "$src/package.json" "$dest/node_modules/aws-lambda-ric/"
cp "$src"/LICENSE "$src"/NOTICE "$dest/node_modules/aws-lambda-ric/" 2>/dev/null || true
# Runtime dependencies (4.x: @aws/lambda-invoke-store); node-gyp and node-addon-api are build-only.
[ -d "$work/node_modules/@aws" ] && cp -r "$work/node_modules/@aws" "$dest/node_modules/"
# The entry point nimbus starts, as AWS's /var/runtime/index.mjs: run the handler named by _HANDLER.
cat > "$dest/index.mjs" <<'JS'
import { run } from "./node_modules/aws-lambda-ric/dist/index.mjs";
await run(process.env.LAMBDA_TASK_ROOT, process.env._HANDLER);
JS
chmod -R a+rX "$dest"
touch "$stamp"
echo "aws-lambda-ric@$version installed in $dest" >&2
