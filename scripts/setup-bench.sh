#!/bin/sh
# Installs the peers `make bench` runs beside cairn and duplicity: Debian's restic and borgbackup.
# Idempotent and quiet: does nothing when both are present.
set -eu
PKGS="restic borgbackup"
missing=""
for p in $PKGS; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
  echo "setup-bench: missing packages:$missing (install them as root); the bench skips those tools" >&2
  exit 0
fi
echo "setup-bench: installing$missing"
apt-get update -qq
# $missing is a space-separated package list: split on purpose
# shellcheck disable=SC2086
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null
