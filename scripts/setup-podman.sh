#!/bin/sh
# Prepares this machine for the molecule scenarios: podman with runc, and a local Debian
# bookworm image with systemd (no registry is reachable, so it is built from Debian's archive
# with debootstrap and imported). Idempotent: a second run does nothing. Needs root.
#
# runc, not crun ("cgroups in hybrid mode" here), and rlimits podman can set (runc cannot raise
# RLIMIT_NPROC above about 4096 here). The image has what an Ansible-managed Debian host has:
# python3 and python3-apt (the apt module needs it in check mode); the roles install the rest.
set -eu
IMAGE=${CAIRN_MOLECULE_IMAGE:-localhost/cairn-debian:bookworm}
ROOT=$(cd "$(dirname "$0")/.." && pwd)

if [ "$(id -u)" != 0 ]; then
  echo "setup-podman: needs root (apt-get, debootstrap, podman)" >&2
  exit 1
fi

missing=""
for p in podman runc debootstrap; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
  echo "setup-podman: installing$missing"
  apt-get update -qq
  # $missing is a space-separated package list: split on purpose
  # shellcheck disable=SC2086
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null
fi

conf=/etc/containers/containers.conf
if ! grep -qs '^runtime = "runc"' "$conf"; then
  mkdir -p /etc/containers
  cat >"$conf" <<'EOF'
[containers]
default_ulimits = ["nproc=4096:4096", "nofile=16384:16384"]
[engine]
runtime = "runc"
EOF
fi

if podman image exists "$IMAGE"; then
  exit 0
fi

# The same Debian mirror this machine's apt uses (read from its sources, not written here).
mirror=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
if [ -z "$mirror" ]; then
  mirror=$(awk '$1 == "deb" {for (i = 2; i <= NF; i++) if ($i ~ /^https?:/) {print $i; exit}}' \
           /etc/apt/sources.list 2>/dev/null || true)
fi
if [ -z "$mirror" ]; then
  echo "setup-podman: cannot find this machine's Debian mirror in its apt sources" >&2
  exit 1
fi

work=$(mktemp -d "$ROOT/.cache/rootfs.XXXXXX" 2>/dev/null || { mkdir -p "$ROOT/.cache"; mktemp -d "$ROOT/.cache/rootfs.XXXXXX"; })
trap 'rm -rf "$work"' EXIT
echo "setup-podman: building $IMAGE with debootstrap (about a minute)"
log="$work.log"
if ! debootstrap --variant=minbase --include=python3,python3-apt,systemd,systemd-sysv,sudo,ca-certificates \
     bookworm "$work/rootfs" "$mirror" >"$log" 2>&1; then
  tail -30 "$log" >&2
  echo "setup-podman: debootstrap failed" >&2
  exit 1
fi
rm -f "$log"
# no getty or udev noise in a container; apt inside keeps its lists (the roles install from it)
rm -f "$work/rootfs/etc/machine-id"
: >"$work/rootfs/etc/machine-id"
tar -C "$work/rootfs" -c . | podman import --change 'CMD ["/lib/systemd/systemd"]' - "$IMAGE" >/dev/null
echo "setup-podman: $IMAGE ready"
