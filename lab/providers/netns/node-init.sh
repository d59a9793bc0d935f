#!/bin/sh
# The first child of a lab node's PID 1 (tini, which reaps every orphan so that a killed
# daemon never lingers as a zombie that `killall -0` would still find).
# Runs in the node's own network, PID, mount, UTS and IPC namespaces and gives the node its
# private state: /etc, /var and /root as overlays on the host's (so packages and their default
# files are there, and whatever a role writes stays with the node), a fresh /run, and the
# node's hostname. The overlays' upper layers are the node's "disk": they live in the
# lab's state folder and survive a crash, as a VM's disk would.
set -eu
node=$1 disk=$2
hostname "$node"
# /root too: a node's home is its own, so that what a person writes there in one node (in
# a classroom, a learner) stays on that node, not in the operator's home or the next lab's.
# It starts with Debian's own root dotfiles, not the operator's: every command over SSH runs
# `bash -c`, which reads ~/.bashrc, and the operator's (pyenv, say) would run in every node
# command (0.1-0.3 s each, serialised on pyenv's lock across every lab on the machine).
# A disk kept under /root (a checkout in root's home) cannot be an upper layer over /root
# (overlayfs refuses overlapping layers): such nodes share the host's /root, as before.
homes=root
[ "${disk#/root/}" = "$disk" ] || homes=
if [ -n "$homes" ] && [ ! -e "$disk/root/upper/.bashrc" ]; then
    mkdir -p "$disk/root/upper"
    cat /usr/share/base-files/dot.bashrc > "$disk/root/upper/.bashrc"
    cat /usr/share/base-files/dot.profile > "$disk/root/upper/.profile"
fi
for d in etc var $homes; do
    mkdir -p "$disk/$d/upper" "$disk/$d/work"
    mount -t overlay "halab-$d" -o "lowerdir=/$d,upperdir=$disk/$d/upper,workdir=$disk/$d/work" "/$d"
done
# This mount namespace began as a copy of the host's, /run/netns and its entries included:
# each entry holds a network namespace (every lab's on this machine, bridges and links) alive
# after `halab clean` deleted its name, for as long as this node lives. Detach them (private
# propagation: the host's stay) before the fresh /run hides them.
umount -l /run/netns 2>/dev/null || true
mount -t tmpfs -o mode=0755,nosuid,nodev halab-run /run
mkdir -p /run/halab/pids /run/sshd /run/lock
echo "127.0.0.1 localhost" > /etc/hosts
cat "$disk/hosts" >> /etc/hosts 2>/dev/null || true
touch /run/halab/ready
exec sleep infinity
