#!/bin/sh
# The first child of a lab node's PID 1 (tini, which reaps every orphan so that a killed
# daemon never lingers as a zombie that `killall -0` would still find).
# Runs in the node's own network, PID, mount, UTS and IPC namespaces and gives the node its
# private state: /etc and /var as overlays on the host's (so packages and their default
# files are there, and whatever a role writes stays with the node), a fresh /run, and the
# node's hostname. The overlays' upper layers are the node's "disk": they live in the
# lab's state folder and survive a crash, as a VM's disk would.
set -eu
node=$1 disk=$2
hostname "$node"
for d in etc var; do
    mkdir -p "$disk/$d/upper" "$disk/$d/work"
    mount -t overlay "halab-$d" -o "lowerdir=/$d,upperdir=$disk/$d/upper,workdir=$disk/$d/work" "/$d"
done
mount -t tmpfs -o mode=0755,nosuid,nodev halab-run /run
mkdir -p /run/halab/pids /run/sshd /run/lock
echo "127.0.0.1 localhost" > /etc/hosts
cat "$disk/hosts" >> /etc/hosts 2>/dev/null || true
touch /run/halab/ready
exec sleep infinity
