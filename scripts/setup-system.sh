#!/bin/sh
# Installs the Debian packages cairn and its tests need, when run as root and when missing.
# Idempotent: does nothing when everything is present.
set -eu
PKGS="gnupg librsync2 librsync-dev rdiff python3-venv openssh-server"
missing=""
for p in $PKGS; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
  echo "setup: missing system packages:$missing (install them as root)" >&2
  exit 0
fi
echo "setup: installing$missing"
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null
