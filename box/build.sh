#!/usr/bin/env bash
# Build an offline Debian 12 (bookworm) vagrant-libvirt box for halab and add
# it to vagrant as "halab/debian12".
#
#   sudo box/build.sh            # build (skipped if the box exists) + box add
#   sudo FORCE=1 box/build.sh    # rebuild from scratch
#
# Everything is made from Debian packages: no box is downloaded. See
# box/README.md for the phases, timings and pitfalls.
#
# Settings (environment):
#   OUT_DIR        where the box is written   (default: <repo>/.halab/box)
#   BOX_NAME       vagrant box name           (default: halab/debian12)
#   DISK_GB        virtual disk size in GiB   (default: 8)
#   MIRROR         Debian mirror URL          (default: taken from this
#                  machine's /etc/apt/sources.list(.d), else deb.debian.org)
#   SECURITY_MIRROR                           (default: likewise)
#   EXTRA_PUBKEY   file with extra public key(s) to authorise for "vagrant"
#                  besides vagrant's well-known insecure key
#   UPGRADE=0      skip "apt-get upgrade" from bookworm-updates/-security
#   FORCE=1        rebuild even if the box file already exists
#   NO_BOX_ADD=1   do not run "vagrant box add"
set -euo pipefail

# Every mount of the build (the image's file system, /proc and /dev in the rootfs) in a mount
# namespace of its own. A mount made in the machine's namespace is copied into every mount
# namespace created while it exists (each `ip netns exec`, each lab node): `umount` then only
# drops our copy, the file system stays open elsewhere and the image keeps a journal to
# replay, whose copy of block 0 wipes extlinux's boot sector at the VM's first boot (seen on
# a busy machine: every VM of the box failed to boot again after a power cut).
if [ -z "${HALAB_BOX_PRIVATE_MOUNTS:-}" ]; then
  exec env HALAB_BOX_PRIVATE_MOUNTS=1 unshare --mount --propagation private -- "$0" "$@"
fi

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/.." && pwd)"
OUT_DIR="${OUT_DIR:-$REPO/.halab/box}"
BOX_NAME="${BOX_NAME:-halab/debian12}"
DISK_GB="${DISK_GB:-8}"
SUITE=bookworm
BOX="$OUT_DIR/halab-debian12.box"
WORK="$OUT_DIR/build"
ROOTFS="$WORK/rootfs"
RAW="$WORK/disk.raw"
QCOW="$WORK/box.img"
MNT="$WORK/mnt"
HOSTNAME_IN_IMAGE=halab-debian12
PART_START_SECTOR=2048 # 1 MiB
PART_OFFSET=$((PART_START_SECTOR * 512))

PACKAGES=(
  # boot + init (networking: systemd-networkd, part of systemd)
  systemd-sysv udev dbus linux-image-cloud-amd64 initramfs-tools e2fsprogs
  # kubeadm's set-up fetches over HTTPS; python3 for whoever logs in; less for people
  curl ca-certificates python3 less
)
# What halab runs inside a VM node (the roles' daemons, sshd, sudo, the faults' nft and tc,
# ping, ...): the registry's `guest` scope, the one list (lab/packages.py). The daemons'
# units are disabled below: halab starts them itself.
mapfile -t GUEST_PACKAGES < <(cd "$REPO" && python3 -m lab.packages --provider guest)
PACKAGES+=("${GUEST_PACKAGES[@]}")
# The package list the box was built with: a box built from another list is rebuilt, so a
# package added to the registry never hides behind a box built before it.
STAMP="$BOX.packages"
WANT_STAMP=$(printf '%s\n' "${PACKAGES[@]}" | sort -u)

log() { printf '[build.sh %(%H:%M:%S)T] %s\n' -1 "$*"; }
die() { log "ERROR: $*"; exit 1; }

[ "$(id -u)" = 0 ] || die "run as root"

declare -a TIMINGS=()
phase_start() { PHASE="$1"; PHASE_T0=$(date +%s.%N); log "== $PHASE"; }
phase_end() {
  local dt
  dt=$(awk -v a="$PHASE_T0" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b-a}')
  TIMINGS+=("$(printf '%-22s %7ss' "$PHASE" "$dt")")
  log "== $PHASE done in ${dt}s"
}
print_timings() {
  log "timings:"
  local t
  for t in "${TIMINGS[@]}"; do printf '    %s\n' "$t"; done
}

# ---- clean-up of mounts / loop devices, also on failure ----------------------
LOOP=""
NEUTRAL=""
cleanup() {
  local m
  if [ -n "$NEUTRAL" ]; then rmdir "$NEUTRAL" 2>/dev/null || true; fi
  for m in "$ROOTFS/dev/pts" "$ROOTFS/dev" "$ROOTFS/proc" "$ROOTFS/sys" \
           "$MNT/dev" "$MNT/proc" "$MNT/sys" "$MNT"; do
    mountpoint -q "$m" 2>/dev/null && umount -l "$m" || true
  done
  if [ -n "$LOOP" ]; then losetup -d "$LOOP" 2>/dev/null || true; LOOP=""; fi
}
trap cleanup EXIT

# ---- mirror: reuse this machine's APT configuration --------------------------
# shellcheck source=../scripts/debian-mirror.sh
source "$REPO/scripts/debian-mirror.sh"

# ============================================================================
T_ALL=$(date +%s.%N)
mkdir -p "$OUT_DIR"

if [ -f "$BOX" ] && [ "${FORCE:-0}" != 1 ] && [ "$(cat "$STAMP" 2>/dev/null)" = "$WANT_STAMP" ]; then
  log "box exists: $BOX (FORCE=1 to rebuild)"
else
  [ -f "$BOX" ] && [ "${FORCE:-0}" != 1 ] && log "the box's package list changed: rebuilding"
  rm -f "$STAMP"
  # ---------------------------------------------------------------- deps
  phase_start "host packages"
  # debootstrap, qemu-utils, extlinux, ...: the registry's vagrant scope (a no-op when
  # `make setup-vagrant` ran).
  "$REPO/scripts/setup-debian.sh" vagrant
  phase_end

  MIRROR="${MIRROR:-$(debian_mirror "$SUITE")}"
  MIRROR="${MIRROR:-http://deb.debian.org/debian}"
  SECURITY_MIRROR="${SECURITY_MIRROR:-$(debian_mirror "$SUITE-security")}"
  SECURITY_MIRROR="${SECURITY_MIRROR:-http://deb.debian.org/debian-security}"
  log "mirror: $MIRROR  security: $SECURITY_MIRROR"

  # ---------------------------------------------------------------- rootfs
  phase_start "debootstrap"
  cleanup
  rm -rf "$WORK"
  mkdir -p "$WORK"
  inc=$(IFS=,; echo "${PACKAGES[*]}")
  # debootstrap replaces start-stop-daemon by a fake in the chroot, so the
  # daemons' postinst scripts do not start anything on the host.
  debootstrap --variant=minbase --include="$inc" \
    --keyring=/usr/share/keyrings/debian-archive-keyring.gpg \
    "$SUITE" "$ROOTFS" "$MIRROR" > "$WORK/debootstrap.log" 2>&1 \
    || { tail -n 30 "$WORK/debootstrap.log"; die "debootstrap failed (log: $WORK/debootstrap.log)"; }
  phase_end

  # ---------------------------------------------------------------- configure
  phase_start "configure"
  in_chroot() { chroot "$ROOTFS" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin \
                  DEBIAN_FRONTEND=noninteractive LC_ALL=C "$@"; }
  mount -t proc proc "$ROOTFS/proc"
  mount -t sysfs sys "$ROOTFS/sys"
  mount --bind /dev "$ROOTFS/dev"
  mount -t devpts devpts "$ROOTFS/dev/pts"
  # no daemon may start inside the chroot
  printf '#!/bin/sh\nexit 101\n' > "$ROOTFS/usr/sbin/policy-rc.d"
  chmod 755 "$ROOTFS/usr/sbin/policy-rc.d"

  cat > "$ROOTFS/etc/apt/sources.list" <<EOF
deb $MIRROR $SUITE main
deb $MIRROR $SUITE-updates main
deb $SECURITY_MIRROR $SUITE-security main
EOF
  if [ "${UPGRADE:-1}" = 1 ]; then
    cp /etc/resolv.conf "$ROOTFS/etc/resolv.conf"
    in_chroot apt-get update -q > "$WORK/upgrade.log" 2>&1 \
      && in_chroot apt-get -y -q -o Dpkg::Options::=--force-confold upgrade >> "$WORK/upgrade.log" 2>&1 \
      || { tail -n 30 "$WORK/upgrade.log"; die "apt-get upgrade in the image failed"; }
    log "upgrade: $(grep -E '^[0-9]+ upgraded' "$WORK/upgrade.log" || true)"
  fi

  echo "$HOSTNAME_IN_IMAGE" > "$ROOTFS/etc/hostname"
  cat > "$ROOTFS/etc/hosts" <<EOF
127.0.0.1 localhost
127.0.1.1 $HOSTNAME_IN_IMAGE
::1 localhost ip6-localhost ip6-loopback
EOF
  : > "$ROOTFS/etc/resolv.conf"

  ROOT_UUID=$(cat /proc/sys/kernel/random/uuid)
  echo "UUID=$ROOT_UUID / ext4 errors=remount-ro,noatime 0 1" > "$ROOTFS/etc/fstab"

  # network: systemd-networkd, DHCP on eth0 (vagrant-libvirt's management NIC);
  # the lab NICs (eth1...) are left to vagrant / halab.
  mkdir -p "$ROOTFS/etc/systemd/network"
  cat > "$ROOTFS/etc/systemd/network/10-eth0.network" <<'EOF'
[Match]
Name=eth0

[Network]
DHCP=ipv4
LinkLocalAddressing=no
IPv6AcceptRA=no

[DHCPv4]
UseDomains=no
UseHostname=no
EOF
  in_chroot systemctl enable systemd-networkd.service >/dev/null 2>&1
  # nothing here should wait for "network-online": it only slows the boot
  in_chroot systemctl disable systemd-networkd-wait-online.service >/dev/null 2>&1 || true
  in_chroot systemctl mask systemd-networkd-wait-online.service >/dev/null 2>&1

  # the lab daemons: installed, not started at boot (halab provisions them)
  for u in haproxy keepalived nginx; do
    in_chroot systemctl disable "$u.service" >/dev/null 2>&1 || true
  done
  # things that only cost boot time in a throw-away lab VM
  for u in apt-daily.timer apt-daily-upgrade.timer e2scrub_all.timer \
           e2scrub_reap.service fstrim.timer man-db.timer; do
    in_chroot systemctl disable "$u" >/dev/null 2>&1 || true
  done
  in_chroot systemctl enable ssh.service >/dev/null 2>&1
  in_chroot systemctl set-default multi-user.target >/dev/null 2>&1

  # ssh: no shared host keys; each VM makes its own on first boot
  rm -f "$ROOTFS"/etc/ssh/ssh_host_*
  cat > "$ROOTFS/etc/systemd/system/halab-ssh-hostkeys.service" <<'EOF'
[Unit]
Description=Generate SSH host keys (halab box)
Before=ssh.service
ConditionPathExists=!/etc/ssh/ssh_host_ed25519_key

[Service]
Type=oneshot
# no RSA host key: generating one takes ~12 s under TCG; ed25519 + ecdsa take <1 s
ExecStart=/usr/bin/ssh-keygen -q -t ed25519 -N "" -f /etc/ssh/ssh_host_ed25519_key
ExecStart=/usr/bin/ssh-keygen -q -t ecdsa -N "" -f /etc/ssh/ssh_host_ecdsa_key

[Install]
WantedBy=multi-user.target
EOF
  in_chroot systemctl enable halab-ssh-hostkeys.service >/dev/null 2>&1
  cat > "$ROOTFS/etc/ssh/sshd_config.d/halab.conf" <<'EOF'
HostKey /etc/ssh/ssh_host_ed25519_key
HostKey /etc/ssh/ssh_host_ecdsa_key
UseDNS no
GSSAPIAuthentication no
PasswordAuthentication no
EOF

  # user vagrant: password-less sudo, vagrant's insecure key (+ EXTRA_PUBKEY)
  in_chroot useradd -m -s /bin/bash -U vagrant
  in_chroot usermod -p '*' vagrant
  echo 'vagrant ALL=(ALL) NOPASSWD: ALL' > "$ROOTFS/etc/sudoers.d/vagrant"
  chmod 440 "$ROOTFS/etc/sudoers.d/vagrant"
  install -d -m 700 -o 1000 -g 1000 "$ROOTFS/home/vagrant/.ssh"
  VAGRANT_PUB=""
  for k in /usr/share/rubygems-integration/all/gems/vagrant-*/keys/vagrant.pub \
           /usr/share/vagrant/keys/vagrant.pub "$HERE/vagrant-insecure.pub"; do
    [ -f "$k" ] && { VAGRANT_PUB="$k"; break; }
  done
  [ -n "$VAGRANT_PUB" ] || die "vagrant's insecure public key not found"
  cat "$VAGRANT_PUB" > "$ROOTFS/home/vagrant/.ssh/authorized_keys"
  if [ -n "${EXTRA_PUBKEY:-}" ]; then cat "$EXTRA_PUBKEY" >> "$ROOTFS/home/vagrant/.ssh/authorized_keys"; fi
  chown 1000:1000 "$ROOTFS/home/vagrant/.ssh/authorized_keys"
  chmod 600 "$ROOTFS/home/vagrant/.ssh/authorized_keys"
  # root: no password (console login is not needed; vagrant + sudo is)
  in_chroot usermod -p '*' root

  # /usr/sbin in every user's PATH: "vagrant ssh -c 'haproxy -v'", Fabric and
  # testinfra run commands as vagrant (pam_env for ssh commands, /etc/profile
  # for login shells such as vagrant's own "bash -l").
  echo 'PATH="/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"' > "$ROOTFS/etc/environment"
  sed -i 's|^\([[:space:]]*PATH="/usr/local/bin:/usr/bin:/bin\)|\1:/usr/local/sbin:/usr/sbin:/sbin|' "$ROOTFS/etc/profile"
  grep -q 'usr/bin:/bin:/usr/local/sbin:/usr/sbin:/sbin' "$ROOTFS/etc/profile" || die "could not add /usr/sbin to PATH in /etc/profile"

  # serial console getty
  in_chroot systemctl enable serial-getty@ttyS0.service >/dev/null 2>&1 || true

  # initramfs: only the modules a virtio VM needs -> small and fast to load
  cat > "$ROOTFS/etc/initramfs-tools/modules" <<'EOF'
virtio_pci
virtio_blk
virtio_scsi
virtio_net
ext4
EOF
  # (MODULES=dep would inspect the build host's root device, not the VM's)
  # The fsck hook probes the real root device for its type (not /etc/fstab):
  # in the chroot there is none, so fsck would be left out. Name the type.
  echo 'FSTYPE=ext4' > "$ROOTFS/etc/initramfs-tools/conf.d/halab-fstype"
  sed -i 's/^MODULES=.*/MODULES=list/' "$ROOTFS/etc/initramfs-tools/initramfs.conf"
  in_chroot update-initramfs -u -k all > "$WORK/initramfs.log" 2>&1 \
    || { tail -n 20 "$WORK/initramfs.log"; die "update-initramfs failed"; }
  in_chroot lsinitramfs "/boot/initrd.img-$(ls "$ROOTFS/lib/modules" | sort -V | tail -n1)" \
    | grep -q 'sbin/fsck.ext4$' || die "fsck.ext4 missing from the initramfs"

  # empty machine-id: systemd makes a fresh one on each VM's first boot
  : > "$ROOTFS/etc/machine-id"
  rm -f "$ROOTFS/var/lib/dbus/machine-id"
  ln -s /etc/machine-id "$ROOTFS/var/lib/dbus/machine-id"

  # slim down
  in_chroot apt-get clean
  rm -rf "$ROOTFS"/var/lib/apt/lists/* "$ROOTFS"/var/cache/apt/*.bin \
         "$ROOTFS"/var/log/*.log "$ROOTFS"/var/log/apt/* \
         "$ROOTFS"/tmp/* "$ROOTFS"/var/tmp/*
  rm -f "$ROOTFS/usr/sbin/policy-rc.d"

  KVER=$(basename "$(ls -1 "$ROOTFS"/boot/vmlinuz-* | sort -V | tail -n1)" | sed 's/^vmlinuz-//')
  [ -n "$KVER" ] || die "no kernel in the image"
  log "kernel: $KVER"
  mkdir -p "$ROOTFS/boot/extlinux"
  cat > "$ROOTFS/boot/extlinux/extlinux.conf" <<EOF
SERIAL 0 115200
DEFAULT debian
PROMPT 0
TIMEOUT 1
LABEL debian
  LINUX /boot/vmlinuz-$KVER
  INITRD /boot/initrd.img-$KVER
  APPEND root=UUID=$ROOT_UUID ro console=tty0 console=ttyS0,115200n8 net.ifnames=0 biosdevname=0
EOF
  cleanup # unmount proc/sys/dev from the rootfs
  phase_end

  # ---------------------------------------------------------------- disk image
  phase_start "disk image"
  rm -f "$RAW"
  truncate -s "${DISK_GB}G" "$RAW"
  dd if=/usr/lib/EXTLINUX/mbr.bin of="$RAW" bs=440 count=1 conv=notrunc status=none
  echo "start=$PART_START_SECTOR, type=83, bootable" | sfdisk -q --label dos "$RAW"
  PART_BYTES=$(( DISK_GB * 1024 * 1024 * 1024 - PART_OFFSET ))
  # No udev in this environment: "losetup -P" creates no /dev/loopNp1, so
  # map the partition alone with an offset and a size limit.
  LOOP=$(losetup -f --show -o "$PART_OFFSET" --sizelimit "$PART_BYTES" "$RAW")
  # syslinux 6.04 cannot read ext4 with 64bit or metadata_csum
  mkfs.ext4 -q -F -L halab-root -U "$ROOT_UUID" -O ^64bit,^metadata_csum "$LOOP"
  mkdir -p "$MNT"
  mount "$LOOP" "$MNT"
  tar -C "$ROOTFS" --numeric-owner --xattrs --xattrs-include='*' --acls -cf - . \
    | tar -C "$MNT" --numeric-owner --xattrs --xattrs-include='*' --acls -xpf -
  extlinux --install "$MNT/boot/extlinux" > /dev/null 2>&1
  sync
  umount "$MNT"
  # Cleanly unmounted, or the first boot replays a journal over the boot sector.
  if dumpe2fs -h "$LOOP" 2>/dev/null | grep -q needs_recovery; then
    die "the image's file system was not cleanly unmounted (needs_recovery)"
  fi
  losetup -d "$LOOP"; LOOP=""
  phase_end

  # ---------------------------------------------------------------- qcow2 + box
  phase_start "qcow2 + box"
  qemu-img convert -O qcow2 "$RAW" "$QCOW"
  rm -f "$RAW"
  cat > "$WORK/metadata.json" <<EOF
{
  "provider": "libvirt",
  "format": "qcow2",
  "virtual_size": $DISK_GB
}
EOF
  cat > "$WORK/Vagrantfile" <<'EOF'
# Defaults carried by the halab/debian12 box (a project Vagrantfile overrides them).
Vagrant.configure("2") do |config|
  config.vm.guest = :debian
  config.vm.synced_folder ".", "/vagrant", disabled: true
  config.vm.provider :libvirt do |libvirt|
    libvirt.disk_bus = "virtio"
    libvirt.nic_model_type = "virtio"
  end
end
EOF
  tar -C "$WORK" -cf "$BOX.tmp" metadata.json Vagrantfile box.img
  mv -f "$BOX.tmp" "$BOX"
  printf '%s\n' "$WANT_STAMP" > "$STAMP"
  rm -rf "$WORK"
  phase_end
fi

# -------------------------------------------------------------------- box add
if [ "${NO_BOX_ADD:-0}" != 1 ]; then
  phase_start "vagrant box add"
  command -v vagrant >/dev/null || die "vagrant is not installed (apt-get install vagrant vagrant-libvirt)"
  # vagrant loads the Vagrantfile of the current directory or any parent
  # (the repo may have one): run it from an empty directory.
  NEUTRAL=$(mktemp -d /tmp/halab-boxtest-boxadd.XXXXXX)
  (cd "$NEUTRAL" && vagrant box add --force --name "$BOX_NAME" "$BOX") 2>&1 | sed -u 's/.*\x1b\[K//'
  rmdir "$NEUTRAL"; NEUTRAL=""
  phase_end
fi

print_timings
log "box: $BOX ($(du -h "$BOX" | cut -f1)), total $(awk -v a="$T_ALL" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b-a}')s"
