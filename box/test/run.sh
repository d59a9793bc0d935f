#!/usr/bin/env bash
# Boot one VM from the halab/debian12 box under vagrant-libvirt, run a command
# in it over "vagrant ssh", and tear everything down again.
#
# Safety: libvirtd, virtlogd (and so dnsmasq and qemu) and vagrant run inside
# the network namespace halab-boxtest-virt, made here. It has no uplink: the
# VM's networks (management 192.168.121.0/24, lab 192.168.0.0/24) exist only
# on bridges inside it. Every object made carries the prefix halab-boxtest-
# and is removed on exit, also on failure. Daemons are stopped by PID.
#
#   sudo box/test/run.sh            # KEEP=1 leaves the VM and daemons up
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
NS=halab-boxtest-virt
POOL=halab-boxtest-pool
POOL_DIR=/var/lib/libvirt/images/$POOL
VM=halab-boxtest-vm1
STATE="$REPO/.halab/box/halab-boxtest-run"
export LIBVIRT_DEFAULT_URI=qemu:///system
export VAGRANT_DOTFILE_PATH="$STATE/vagrant"
export VAGRANT_DEFAULT_PROVIDER=libvirt
export VAGRANT_CHECKPOINT_DISABLE=1
IN_NS=(ip netns exec "$NS")

log() { printf '[run.sh %(%H:%M:%S)T] %s\n' -1 "$*"; }
die() { log "ERROR: $*"; exit 1; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN{printf "%.1f", b-a}'; }
# vagrant draws progress bars with ESC[K on one line: keep the text after the last
strip_progress() { sed -u 's/.*\x1b\[K//'; }

[ "$(id -u)" = 0 ] || die "run as root"

# ---------------------------------------------------------------- packages
need=()
for p in vagrant vagrant-libvirt libvirt-daemon-system qemu-system-x86 libvirt-dev pkg-config; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || need+=("$p")
done
if [ "${#need[@]}" -gt 0 ]; then
  log "installing: ${need[*]}"
  apt-get update -q
  # without systemd the postinst cannot start the daemons: that is fine
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${need[@]}"
fi
cd "$HERE"   # vagrant reads the Vagrantfile of the current directory (or a parent)
vagrant box list 2>/dev/null | grep -q '^halab/debian12 ' || "$REPO/box/build.sh"

# ---------------------------------------------------------------- preconditions
ip netns list | awk "{print \$1}" | grep -qx "$NS" && die "namespace $NS exists: a previous run is still up (or crashed); clean it first"
for f in /run/libvirtd.pid /run/virtlogd.pid; do
  if [ -s "$f" ] && kill -0 "$(cat "$f")" 2>/dev/null; then
    die "$(basename "$f" .pid) already runs (pid $(cat "$f")): this script starts its own, inside $NS"
  fi
done

mkdir -p "$STATE"
LIBVIRTD_PID=""
VIRTLOGD_PID=""

stop_pid() { # PID NAME: SIGTERM, wait up to 15 s, then SIGKILL
  local pid="$1" name="$2"
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 0
  kill "$pid" 2>/dev/null || true
  for _ in $(seq 150); do kill -0 "$pid" 2>/dev/null || { log "stopped $name ($pid)"; return 0; }; sleep 0.1; done
  kill -9 "$pid" 2>/dev/null || true
  log "killed $name ($pid)"
}

cleanup() {
  local rc=$?
  set +e
  if [ "${KEEP:-0}" = 1 ] && [ "$rc" = 0 ]; then
    log "KEEP=1: leaving $VM, libvirtd ($LIBVIRTD_PID), virtlogd ($VIRTLOGD_PID) and $NS up"
    return
  fi
  log "cleaning up"
  if ip netns list | awk "{print \$1}" | grep -qx "$NS"; then
    (cd "$HERE" && "${IN_NS[@]}" vagrant destroy -f 2>&1 | strip_progress | sed 's/^/    /')
    # the box image that vagrant-libvirt uploaded into the pool
    local v
    for v in $("${IN_NS[@]}" virsh vol-list "$POOL" 2>/dev/null | awk 'NR>2 && $1 {print $1}'); do
      "${IN_NS[@]}" virsh vol-delete --pool "$POOL" "$v" >/dev/null && log "deleted volume $v"
    done
    "${IN_NS[@]}" virsh pool-destroy "$POOL" >/dev/null 2>&1
  fi
  [ -f "/var/log/libvirt/qemu/$VM-serial.log" ] && cp "/var/log/libvirt/qemu/$VM-serial.log" "$STATE/" 
  [ -f "/var/log/libvirt/qemu/$VM.log" ] && cp "/var/log/libvirt/qemu/$VM.log" "$STATE/"
  rm -f "/var/log/libvirt/qemu/$VM-serial.log" "/var/log/libvirt/qemu/$VM.log"
  stop_pid "$LIBVIRTD_PID" libvirtd
  stop_pid "$VIRTLOGD_PID" virtlogd
  if ip netns list | awk "{print \$1}" | grep -qx "$NS"; then
    # whatever is left in our own namespace (dnsmasq, qemu) was started by us
    local p
    for p in $(ip netns pids "$NS"); do
      log "left in $NS: $p $(tr '\0' ' ' < "/proc/$p/cmdline" 2>/dev/null)"; stop_pid "$p" leftover
    done
    ip netns del "$NS" && log "deleted namespace $NS"
  fi
  # state files libvirt leaves for networks it no longer has
  rm -rf /run/libvirt/network/halab-boxtest-* /var/lib/libvirt/dnsmasq/halab-boxtest-*
  rmdir "$POOL_DIR" 2>/dev/null
  rm -rf "$VAGRANT_DOTFILE_PATH"
  log "clean-up done (rc=$rc)"
}
trap cleanup EXIT

# ---------------------------------------------------------------- namespace + daemons
T=$(now)
ip netns add "$NS"
ip -n "$NS" link set lo up
"${IN_NS[@]}" virtlogd -d -p "$STATE/virtlogd.pid"
"${IN_NS[@]}" libvirtd -d -p "$STATE/libvirtd.pid"
for _ in $(seq 100); do [ -s "$STATE/libvirtd.pid" ] && [ -S /run/libvirt/libvirt-sock ] && break; sleep 0.1; done
VIRTLOGD_PID=$(cat "$STATE/virtlogd.pid")
LIBVIRTD_PID=$(cat "$STATE/libvirtd.pid")
log "virtlogd pid $VIRTLOGD_PID, libvirtd pid $LIBVIRTD_PID, net ns $(readlink /proc/"$LIBVIRTD_PID"/ns/net)"
[ "$(readlink /proc/"$LIBVIRTD_PID"/ns/net)" = "$("${IN_NS[@]}" readlink /proc/self/ns/net)" ] || die "libvirtd is not in $NS"
mkdir -p "$POOL_DIR"
"${IN_NS[@]}" virsh pool-create-as "$POOL" dir --target "$POOL_DIR" >/dev/null   # transient pool
log "daemons + pool ready in $(since "$T")s"

# ---------------------------------------------------------------- up + ssh
cd "$HERE"
T_UP=$(now)
"${IN_NS[@]}" vagrant up --provider libvirt 2>&1 | strip_progress | sed 's/^/    /'
UP_S=$(since "$T_UP")
log "vagrant up: ${UP_S}s"

T=$(now)
set +e
"${IN_NS[@]}" vagrant ssh -c 'hostname; ip -o addr; systemctl is-system-running; haproxy -v' 2>&1 | sed 's/^/    /'
SSH_RC=${PIPESTATUS[0]}
set -e
log "vagrant ssh -c: $(since "$T")s (exit $SSH_RC); up + first command: $(since "$T_UP")s"

QEMU_PID=$(cat "/run/libvirt/qemu/$VM.pid" 2>/dev/null || true)
if [ -n "$QEMU_PID" ]; then
  log "qemu pid $QEMU_PID: $(grep -o -- '-accel [^ ]*' <(tr '\0' ' ' < /proc/"$QEMU_PID"/cmdline)); $(grep VmRSS /proc/"$QEMU_PID"/status | tr -s ' ')"
fi
"${IN_NS[@]}" vagrant ssh -c 'systemd-analyze | head -1; free -m | sed -n 2p' 2>&1 | sed 's/^/    /'
[ "$SSH_RC" = 0 ] || die "vagrant ssh -c failed"
log "OK"
