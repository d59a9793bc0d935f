#!/usr/bin/env bash
# Installs the Debian packages halab needs, once: a no-op when all are present.
# Usage: scripts/setup-debian.sh [vagrant]   (as root; `vagrant` adds the VM provider's)
set -euo pipefail

packages=(
  haproxy keepalived nginx-light            # the lab's daemons
  openssh-server openssh-client             # sshd in every node, ssh/ssh-keygen for the harness
  iproute2 util-linux tini                  # namespaces, veths, nsenter/unshare, the nodes' PID 1
  netcat-openbsd psmisc procps openssl      # ProxyCommand, killall -0 (the guide's check), ps, certs
  python3 python3-venv make
)
if [ "${1:-}" = vagrant ]; then
  packages+=(
    vagrant vagrant-libvirt                 # the VM provider
    libvirt-daemon-system qemu-system-x86 qemu-utils
    libvirt-dev pkg-config gcc python3-dev  # libvirt-python builds against Debian's libvirt
  )
fi

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "setup: every Debian package halab needs is installed"
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "setup: missing Debian packages: ${missing[*]}. Run \`sudo make setup\` (or as root)." >&2
  exit 3
fi
echo "setup: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "setup: done"
