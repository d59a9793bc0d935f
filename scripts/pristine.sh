#!/usr/bin/env bash
# CI on a pristine Debian 12 machine: proves that a fresh clone's README commands work with
# nothing installed beforehand but Debian's minimal base, so that a package missing from
# halab's registry (lab/packages.py) fails here instead of hiding behind a CI machine that
# happens to have it.
#
#   sudo scripts/pristine.sh
#
# 1. debootstrap --variant=minbase bookworm, from this machine's own APT mirror (as
#    box/build.sh does), plus the few packages without which the README's commands cannot
#    even be typed (see ROOT_PACKAGES).
# 2. Into that root, in private mount and PID namespaces (pivot_root, with its own /proc,
#    /sys, /dev and an empty /run: `ip netns` inside sees only its own namespaces): a fresh
#    `git clone` of this checkout's HEAD, then, as root, `make demo` and `make test` (the
#    whole embedded suite), `halab doctor`, `make clean`; then the VM provider's set-up
#    (`make setup-vagrant`) and `halab doctor --provider vagrant`.
# 3. At exit, whatever happened: every process of the root is killed (its PID namespace
#    ends), its mounts vanish with its mount namespace, and the root is deleted.
#
# Nothing is cached between runs. The clone is of HEAD: commit what you want tested.
# Everything it creates is named halab-ci-*: the work folder
# /var/tmp/halab-ci-XXXXXX (root file system, logs).
#
# Settings (environment):
#   HALAB_CI_LAB=NAME    run the README's commands on a copy of lab.yaml named NAME (`make
#                        ... LAB=halab-ci-lab.yaml`): for runs on a machine where other labs
#                        run (lab names are unique per machine; the root's /run is private,
#                        so they cannot clash anyway, but a distinct name keeps logs apart)
#   HALAB_CI_VAGRANT=0   skip the VM set-up and `halab doctor --provider vagrant`
#   MIRROR, SECURITY_MIRROR   Debian mirrors (default: this machine's APT configuration)
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SUITE=bookworm
# What the root gets besides minbase, each because the README's commands cannot run without:
#   git              the user gets halab with `git clone`
#   make             the README's commands are make targets
#   python3          make's set-up reads halab's package registry with it (lab/packages.py),
#                    before any virtualenv exists
#   ca-certificates  pip reaches PyPI over TLS (and this machine's own CAs, if it has any,
#                    are added to the root's trust store below)
# Everything else halab needs must come from `make`, through the registry.
ROOT_PACKAGES=(git make python3 ca-certificates)

log() { printf '[pristine %(%H:%M:%S)T] %s\n' -1 "$*"; }
die() { log "ERROR: $*"; exit 1; }
[ "$(id -u)" = 0 ] || die "run as root: the root file system and the lab inside need it"

WORK=""
INNER=""
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  if [ -n "$INNER" ] && kill -0 "$INNER" 2>/dev/null; then
    # unshare --kill-child: the root's PID 1 and with it every process of the root die.
    kill -TERM "$INNER" 2>/dev/null || true
    wait "$INNER" 2>/dev/null || true
  fi
  if [ -n "$WORK" ] && [ -d "$WORK" ]; then
    # The root's mounts lived in its own mount namespace; anything still mounted here
    # (nothing, unless a step mounted in this namespace) is unmounted before deleting.
    local m
    for m in $(awk -v w="$WORK/" 'index($5, w) == 1 { print $5 }' /proc/self/mountinfo \
               | sort -r); do
      umount -l "$m" 2>/dev/null || true
    done
    rm -rf --one-file-system "$WORK"
    log "removed $WORK"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

declare -a TIMINGS=()
T_ALL=$SECONDS
phase() { PHASE="$1"; PHASE_T0=$SECONDS; log "== $PHASE"; }
phase_end() {
  TIMINGS+=("$(printf '%-34s %5d s' "$PHASE" $((SECONDS - PHASE_T0)))")
  log "== $PHASE: $((SECONDS - PHASE_T0)) s"
}

# ------------------------------------------------------------------ this machine's tools
phase "host: debootstrap, git (registry: ci)"
"$REPO/scripts/setup-debian.sh" ci
# The clone is of HEAD, the commit: what is not committed is not tested.
[ -z "$(git -C "$REPO" status --porcelain --untracked-files=no)" ] \
  || log "WARNING: uncommitted changes in $REPO are not part of the clone"
phase_end

# shellcheck source=debian-mirror.sh
source "$REPO/scripts/debian-mirror.sh"
MIRROR="${MIRROR:-$(debian_mirror "$SUITE")}"
MIRROR="${MIRROR:-http://deb.debian.org/debian}"
SECURITY_MIRROR="${SECURITY_MIRROR:-$(debian_mirror "$SUITE-security")}"
SECURITY_MIRROR="${SECURITY_MIRROR:-http://deb.debian.org/debian-security}"

WORK=$(mktemp -d /var/tmp/halab-ci-XXXXXX)
ROOT="$WORK/root"
log "work folder $WORK; mirror $MIRROR, security $SECURITY_MIRROR; clone of HEAD" \
    "($(git -C "$REPO" log -1 --format='%h %s' | cut -c1-80))"

# ------------------------------------------------------------------ the root file system
phase "debootstrap (minbase + ${ROOT_PACKAGES[*]})"
# In a mount namespace of its own: the /proc and /sys debootstrap mounts in the target
# cannot outlive it, whatever happens to it.
unshare --mount debootstrap --variant=minbase --include="$(IFS=,; echo "${ROOT_PACKAGES[*]}")" \
  --keyring=/usr/share/keyrings/debian-archive-keyring.gpg \
  "$SUITE" "$ROOT" "$MIRROR" > "$WORK/debootstrap.log" 2>&1 \
  || { tail -n 30 "$WORK/debootstrap.log"; die "debootstrap failed"; }
phase_end

phase "configure the root"
# A fresh Debian 12 install's sources: the release, its updates and security.
cat > "$ROOT/etc/apt/sources.list" <<EOF
deb $MIRROR $SUITE main
deb $MIRROR $SUITE-updates main
deb $SECURITY_MIRROR $SUITE-security main
EOF
# The root shares this machine's network: the same resolver.
cat /etc/resolv.conf > "$ROOT/etc/resolv.conf"
printf '127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n' > "$ROOT/etc/hosts"
# No daemon starts from a package's postinst: in a chroot it would run in this machine's
# own network namespace (debootstrap and box/build.sh do the same).
printf '#!/bin/sh\nexit 101\n' > "$ROOT/usr/sbin/policy-rc.d"
chmod 755 "$ROOT/usr/sbin/policy-rc.d"
# This machine's way to the network, not packages: its locally added CA certificates (a
# TLS-inspecting proxy's, say) and its pip settings (index, certificate, timeouts, from its
# pip.conf files and PIP_* environment), so that pip in the root reaches PyPI as it does
# here. The settings go into the root's /etc/pip.conf; values that name local files or
# folders the root does not have (a local wheel folder) are left out.
if compgen -G "/usr/local/share/ca-certificates/*" >/dev/null; then
  cp -a /usr/local/share/ca-certificates/. "$ROOT/usr/local/share/ca-certificates/"
fi
if python3 -m pip --version >/dev/null 2>&1; then
  python3 -m pip config list 2>/dev/null | python3 -c '
import ast, os, sys
root = sys.argv[1]
sections = {}
for line in sys.stdin:
    key, sep, value = line.rstrip("\n").partition("=")
    if not sep:
        continue
    section, _, name = key.rpartition(".")
    section = "global" if section in ("", ":env:") else section
    kept = [v for v in str(ast.literal_eval(value)).split()
            if not v.startswith(("/", "file:")) or os.path.exists(
                root + (v[len("file://"):] if v.startswith("file:") else v))]
    if kept:
        sections.setdefault(section, {})[name] = " ".join(kept)
with open(os.path.join(root, "etc/pip.conf"), "w") as f:
    f.write("# carried from the machine that built this root (scripts/pristine.sh)\n")
    for section, items in sections.items():
        f.write(f"[{section}]\n" + "".join(f"{k} = {v}\n" for k, v in items.items()))
' "$ROOT"
  log "pip settings carried into the root: $(grep -v '^#' "$ROOT/etc/pip.conf" | tr '\n' ' ')"
fi
# The clone's source: this checkout's commit as a bundle (git clone reads it as a remote).
git -C "$REPO" bundle create -q "$ROOT/tmp/halab-ci.bundle" HEAD
# Inside the root, what runs (as PID 1 of its PID namespace), step by step.
cat > "$ROOT/tmp/halab-ci-steps.sh" <<'STEPS'
#!/bin/bash
set -uo pipefail
export DEBIAN_FRONTEND=noninteractive
TIMES=/tmp/halab-ci-times
: > "$TIMES"
step() {  # step NAME COMMAND...: run it, every output line stamped with its second
  local name="$1" t0=$SECONDS rc
  shift
  echo "=== $name"
  "$@" 2>&1 | while IFS= read -r line; do printf '[%4d s] %s\n' $((SECONDS - t0)) "$line"; done
  rc=${PIPESTATUS[0]}
  printf '%-34s %5d s  %s\n' "$name" $((SECONDS - t0)) "$([ "$rc" = 0 ] && echo ok || echo "FAILED ($rc)")" >> "$TIMES"
  echo "=== $name: exit $rc after $((SECONDS - t0)) s"
  [ "$rc" = 0 ] || exit "$rc"
}
if compgen -G "/usr/local/share/ca-certificates/*" >/dev/null; then
  step "this machine's CA certificates" update-ca-certificates
fi
step "git clone" git clone -q /tmp/halab-ci.bundle /root/halab
cd /root/halab
git log -1 --format='clone at %h %s'
lab=()
if [ -n "${HALAB_CI_LAB:-}" ]; then
  sed "s/^name: [a-z0-9]*/name: $HALAB_CI_LAB/" lab.yaml > halab-ci-lab.yaml
  lab=(LAB=halab-ci-lab.yaml)
  echo "the lab is named $HALAB_CI_LAB (halab-ci-lab.yaml)"
fi
# The README's two commands, as a new user types them (as root).
step "make demo" make demo "${lab[@]}"
step "halab doctor" .venv/bin/halab doctor
step "make test" make test "${lab[@]}" PYTEST_ARGS="-p no:cacheprovider"
step "make clean" make clean "${lab[@]}"
if [ "${HALAB_CI_VAGRANT:-1}" != 0 ]; then
  step "make setup-vagrant" make setup-vagrant
  step "halab doctor --provider vagrant" .venv/bin/halab doctor --provider vagrant
fi
STEPS
chmod 755 "$ROOT/tmp/halab-ci-steps.sh"
# Run by unshare as PID 1 of the new PID namespace, in the new mount namespace: mounts the
# root's own /proc, /sys, /dev, /run, then makes it the namespace's root.
cat > "$WORK/enter.sh" <<'ENTER'
#!/bin/bash
set -euo pipefail
R="$1"
# A mount point as /: `ip netns exec` remounts /sys under a recursive slave / and
# needs one.
mount --bind "$R" "$R"
mount -t proc proc "$R/proc"
mount -t sysfs sysfs "$R/sys"
mount -t tmpfs -o mode=0755,nosuid halab-ci-dev "$R/dev"
for d in null zero full random urandom tty kvm; do
  [ -e "/dev/$d" ] || continue
  touch "$R/dev/$d"
  mount --bind "/dev/$d" "$R/dev/$d"
done
mkdir -p "$R/dev/pts" "$R/dev/shm"
mount -t devpts -o newinstance,ptmxmode=0666,mode=0620 devpts "$R/dev/pts"
ln -s pts/ptmx "$R/dev/ptmx"
ln -s /proc/self/fd "$R/dev/fd"
ln -s /proc/self/fd/0 "$R/dev/stdin"
ln -s /proc/self/fd/1 "$R/dev/stdout"
ln -s /proc/self/fd/2 "$R/dev/stderr"
mount -t tmpfs -o mode=1777,nosuid,nodev halab-ci-shm "$R/dev/shm"
mount -t tmpfs -o mode=0755,nosuid,nodev halab-ci-run "$R/run"
mkdir -p "$R/run/lock"
# pivot_root, not chroot: a chroot is not the root of its mount namespace, and
# `nsenter -m` (how halab starts a node's daemons) lands in the namespace's root, which
# would be this machine's / instead of the pristine one.
cd "$R"
mkdir -p .halab-ci-old
pivot_root . .halab-ci-old
umount -l /.halab-ci-old
rmdir /.halab-ci-old
cd /
exec /tmp/halab-ci-steps.sh
ENTER
chmod 755 "$WORK/enter.sh"
phase_end

# ------------------------------------------------------------------ inside the root
phase "in the root: the README's commands"
env_keep=(PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root
          LANG=C.UTF-8 TERM=dumb HALAB_CI_LAB="${HALAB_CI_LAB:-}"
          HALAB_CI_VAGRANT="${HALAB_CI_VAGRANT:-1}")
# A proxy, if this machine goes through one (pip's own settings are in the root's pip.conf).
while IFS='=' read -r k v; do
  case "$k" in
    http_proxy|https_proxy|no_proxy|HTTP_PROXY|HTTPS_PROXY|NO_PROXY) env_keep+=("$k=$v") ;;
  esac
done < <(env)
set +e
env -i "${env_keep[@]}" unshare --mount --pid --fork --kill-child --propagation private \
  -- "$WORK/enter.sh" "$ROOT" < /dev/null &
INNER=$!
wait "$INNER"
rc=$?
INNER=""
set -e
phase_end

log "timings:"
for t in "${TIMINGS[@]}"; do printf '    %s\n' "$t"; done
sed 's/^/      /' "$ROOT/tmp/halab-ci-times" 2>/dev/null || true
log "total $((SECONDS - T_ALL)) s"
[ "$rc" = 0 ] || die "a step in the pristine root failed (exit $rc); see above"
log "pristine Debian 12: every step passed"
