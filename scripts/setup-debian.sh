#!/usr/bin/env bash
# Installs the Debian packages halab needs, once: a no-op when all are present.
# Usage: scripts/setup-debian.sh [SCOPE...]   (as root; default netns)
#   netns    the embedded lab (make setup)
#   vagrant  the VM lab's host: vagrant, libvirt, qemu, the box build (make setup-vagrant)
#   tests    what only the test suite needs: the web page test's browser (make test)
#   ci       what .ci/run needs to build a pristine Debian root (debootstrap, git)
# The packages come from the one registry, lab/packages.py (`python3 -m lab.packages
# --commands --provider netns` shows which command needs which package, and why).
set -euo pipefail
cd "$(dirname "$0")/.."

scopes=("$@")
[ ${#scopes[@]} -gt 0 ] || scopes=(netns)
args=()
for s in "${scopes[@]}"; do args+=(--provider "$s"); done

install() {
  if [ "$(id -u)" -ne 0 ]; then
    echo "setup: missing Debian packages: $*. Run \`sudo make setup\` (or as root)." >&2
    exit 3
  fi
  echo "setup: installing $*"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

# The registry is read by python3, so python3 itself comes first on a machine without it.
command -v python3 >/dev/null || install python3

mapfile -t missing < <(python3 -m lab.packages "${args[@]}" --missing)
if [ ${#missing[@]} -eq 0 ]; then
  echo "setup: every Debian package halab needs for ${scopes[*]} is installed"
  exit 0
fi
install "${missing[@]}"
echo "setup: done"
