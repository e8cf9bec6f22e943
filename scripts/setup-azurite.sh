#!/bin/sh
# Installs Azurite (npm package `azurite`), the Azure Blob Storage emulator the azure:// backend
# tests run against, into <repo>/.cache/azurite. Idempotent and quiet: prints nothing and does
# nothing when the pinned version is already there; on failure prints npm's output and exits 1.
#
# 3.35.0 is the newest Azurite whose package.json accepts Node 18/20 (3.36 needs Node >= 21,
# 3.37 Node >= 22); Debian 12 ships Node 18. The tests start it with --disableTelemetry.
set -eu
AZURITE_VERSION=3.35.0
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PREFIX="$ROOT/.cache/azurite"
BIN="$PREFIX/node_modules/.bin/azurite-blob"
PKG="$PREFIX/node_modules/azurite/package.json"

# keep the npm tree out of git (and out of `make sanity`'s copy of the untracked files)
mkdir -p "$PREFIX"
[ -f "$PREFIX/.gitignore" ] || echo '*' >"$PREFIX/.gitignore"

if [ -x "$BIN" ] && [ -f "$PKG" ] &&
   grep -q "\"version\": *\"$AZURITE_VERSION\"" "$PKG"; then
  exit 0
fi

if ! command -v npm >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    log=$(mktemp)
    if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm; } >"$log" 2>&1; then
      cat "$log" >&2
      rm -f "$log"
      echo "setup-azurite: cannot install nodejs and npm" >&2
      exit 1
    fi
    rm -f "$log"
  else
    echo "setup-azurite: npm is missing (install the Debian packages nodejs and npm as root)" >&2
    exit 1
  fi
fi

log=$(mktemp)
if ! npm install --prefix "$PREFIX" --no-audit --no-fund --no-update-notifier --loglevel=error \
     "azurite@$AZURITE_VERSION" >"$log" 2>&1; then
  cat "$log" >&2
  rm -f "$log"
  echo "setup-azurite: npm install azurite@$AZURITE_VERSION failed" >&2
  exit 1
fi
rm -f "$log"
if [ ! -x "$BIN" ]; then
  echo "setup-azurite: $BIN is missing after npm install" >&2
  exit 1
fi
