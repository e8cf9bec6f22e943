#!/bin/sh
# Installs the Debian packages cairn and its tests need (or the packages given as arguments:
# `make bench` passes restic and borgbackup), when run as root and when missing.
# Idempotent and quiet: does nothing when everything is present.
set -eu
# (ansible-test sanity lints the shell scripts with shellcheck, and skips that when it is absent)
# (duply, Debian's duplicity wrapper, is for the test that runs it over cairn installed as duplicity;
# it brings Debian's duplicity 0.8 along, which that test uses as a second oracle)
PKGS="gnupg librsync2 librsync-dev rdiff python3-venv openssh-server shellcheck duply"
[ "$#" -gt 0 ] && PKGS="$*"
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
# $missing is a space-separated package list: split on purpose
# shellcheck disable=SC2086
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null
