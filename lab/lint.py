"""`halab lint`: lab.yaml and the configs it renders, checked before anything is deployed.

Three kinds of finding:

- errors: the file is refused (the topology loader's message), or HAProxy or keepalived
  refuse a rendered config: a bad file, exit 2;
- warnings: settings that work but are insecure (VRRP's clear-text PASS authentication,
  keepalived's scripts run without script security, HAProxy's statistics or admin socket
  reachable beyond the node): exit 1;
- notes: a check that could not run here (no haproxy binary, keepalived -t without root),
  said so rather than passed in silence; `--strict` counts them as failures.

The security checks read the rendered text, not lab.yaml's fields: what is judged is what
would be deployed, whatever template or profile produced it.
"""

from __future__ import annotations

import ipaddress
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from lab import topology
from lab.errors import LabFileError
from lab.topology import Topology
from provision import render

ERROR, WARNING, NOTE, OK = "error", "warning", "note", "ok"


@dataclass
class Finding:
    level: str  # error | warning | note | ok
    where: str  # lab.yaml, haproxy.cfg, keepalived.conf (lb01), ...
    message: str


@dataclass
class Report:
    findings: list[Finding] = field(default_factory=list)

    def of(self, level: str) -> list[Finding]:
        return [f for f in self.findings if f.level == level]

    def exit_code(self, strict: bool = False) -> int:
        """0 clean, 1 warnings (with ``strict``, also checks that could not run), 2 errors."""
        if self.of(ERROR):
            return LabFileError.exit_code
        if self.of(WARNING) or (strict and self.of(NOTE)):
            return 1
        return 0


# -- security: what the rendered configs say ------------------------------------------------
PASS_AUTH = (
    "VRRP authentication `auth_type PASS` (lab.yaml keepalived.auth_pass) sends the password "
    "in clear text in every advert: anyone on the LAN reads it from one packet and can then "
    "forge adverts and take the VIP, so it gives no security (RFC 3768 dropped VRRPv2 "
    "authentication for that reason), only protection against a misconfigured neighbour. "
    "Instead keep VRRP on a network only the load balancers reach, send it unicast to the "
    "peers (unicast_peer, as here) and let a firewall accept protocol 112 from them alone; "
    "then set `auth_pass: null` (or `vrrp_version: 3`, which has no authentication).")
SCRIPT_SECURITY = (
    "global_defs has no `enable_script_security`: keepalived runs `{script}` as root without "
    "checking that no one else can write to it or to a directory on its path, so whoever can "
    "gets root on the load balancer. Add `enable_script_security` and `script_user` (a user "
    "that can run the check) to global_defs.")
STATS_URI = (
    "`stats uri {uri}` in `listen {section}` (bind {bind}): HAProxy's statistics page is "
    "served on that listener, i.e. through the VIP to anyone who reaches port {port}, and it "
    "discloses every backend, address and health state{admin}. Remove it from the public "
    "listener (lab.yaml `haproxy: {{stats_uri: null}}`), or serve it from a listener bound to "
    "127.0.0.1 or a management address, with `stats auth`.")
SOCKET_TCP = (
    "`stats socket {addr}` listens on the network{level}: anyone who reaches {addr} can read "
    "HAProxy's state{can}. Keep the socket a UNIX socket (the default "
    "/run/haproxy/admin.sock) or bind it to 127.0.0.1.")
SOCKET_MODE = (
    "`stats socket {path} mode {mode} level admin`: every local user may write to it and "
    "take servers down or change weights. Use mode 660 (Debian's default) or a lower level.")


def _sections(cfg: str) -> list[tuple[str, list[str]]]:
    """haproxy.cfg as (header, body lines), comments dropped."""
    out: list[tuple[str, list[str]]] = []
    for raw in cfg.splitlines():
        line = raw.split("#", 1)[0].rstrip()
        if not line.strip():
            continue
        if not line[0].isspace():
            out.append((line.strip(), []))
        elif out:
            out[-1][1].append(line.strip())
    return out


def _public(bind: str) -> bool:
    """Does a bind address reach beyond the node? `*:80`, `:80`, `0.0.0.0:80`, a routable
    address: yes; 127.0.0.0/8, ::1 and UNIX sockets: no."""
    addr = bind.split()[0]
    if addr.startswith(("unix@", "/", "abns@", "fd@", "sockpair@")):
        return False
    addr = re.sub(r"^ipv[46]@", "", addr)
    host = addr.rsplit(":", 1)[0].strip("[]")
    if host in ("", "*", "::", "0.0.0.0"):
        return True
    try:
        return not ipaddress.ip_address(host).is_loopback
    except ValueError:
        return True  # a name: it resolves to something we cannot judge, say it


def haproxy_findings(cfg: str, where: str = "haproxy.cfg") -> list[Finding]:
    out = []
    for header, body in _sections(cfg):
        if header.startswith("global"):
            for line in body:
                if not line.startswith("stats socket"):
                    continue
                words = line.split()
                addr = words[2] if len(words) > 2 else ""
                opts = dict(zip(words[3::2], words[4::2], strict=False))
                level = opts.get("level", "operator")
                if _public(addr) and not addr.startswith("/"):
                    out.append(Finding(WARNING, where, SOCKET_TCP.format(
                        addr=addr, level=f" at level {level}",
                        can=", and change it" if level == "admin" else "")))
                elif level == "admin" and int(opts.get("mode", "600"), 8) & 0o002:
                    out.append(Finding(WARNING, where, SOCKET_MODE.format(
                        path=addr, mode=opts["mode"])))
            continue
        binds = [ln.split(None, 1)[1] for ln in body if ln.startswith("bind ")]
        public = [b for b in binds if _public(b)]
        uris = [ln.split(None, 2)[2] for ln in body if ln.startswith("stats uri ")]
        if uris and public:
            admin = any(ln.startswith("stats admin") for ln in body)
            bind = public[0].split()[0]
            out.append(Finding(WARNING, where, STATS_URI.format(
                uri=uris[0], section=header.split(None, 1)[-1], bind=bind,
                port=bind.rsplit(":", 1)[-1],
                admin=", and `stats admin` lets them disable servers" if admin else "")))
    return out


def keepalived_findings(conf: str, where: str) -> list[Finding]:
    out = []
    lines = [ln.split("#", 1)[0].strip() for ln in conf.splitlines()]
    if any(re.fullmatch(r"auth_type\s+PASS", ln) for ln in lines):
        out.append(Finding(WARNING, where, PASS_AUTH))
    scripts = [ln.split(None, 1)[1].strip('"') for ln in lines if ln.startswith("script ")]
    if scripts and "enable_script_security" not in lines:
        out.append(Finding(WARNING, where, SCRIPT_SECURITY.format(script=scripts[0])))
    return out


# -- the daemons' own config checks -----------------------------------------------------------
def haproxy_check(cfg: str, where: str = "haproxy.cfg") -> Finding:
    exe = shutil.which("haproxy")
    if exe is None:
        return Finding(NOTE, where, "`haproxy -c` skipped: haproxy is not installed "
                       "(Debian package haproxy; `make setup` installs it)")
    with tempfile.TemporaryDirectory(prefix="halab-lint-") as d:
        f = Path(d) / "haproxy.cfg"
        f.write_text(cfg)
        p = subprocess.run([exe, "-c", "-f", str(f)], capture_output=True, text=True,
                           timeout=30)
    # Its version and path (NOTICE) say nothing of the config.
    said = "\n".join(ln for ln in (p.stdout + p.stderr).strip().splitlines()
                     if not ln.startswith("[NOTICE]")).replace(str(f), "haproxy.cfg")
    if p.returncode != 0:
        return Finding(ERROR, where, f"`haproxy -c` refuses the rendered config:\n{said}")
    return Finding(OK, where, "`haproxy -c`: valid")


def keepalived_check(topo: Topology, confs: dict[str, str]) -> list[Finding]:
    """`keepalived -t` on each LB's rendered config, in a throwaway network namespace that
    has the lab NIC (keepalived refuses an interface that does not exist), named with the
    lab's prefix and removed afterwards."""
    exe = shutil.which("keepalived")
    if exe is None:
        return [Finding(NOTE, "keepalived.conf", "`keepalived -t` skipped: keepalived is not "
                        "installed (Debian package keepalived; `make setup` installs it)")]
    if os.geteuid() != 0:
        return [Finding(NOTE, "keepalived.conf", "`keepalived -t` skipped: it needs the lab "
                        "NIC, which lint makes in a throwaway network namespace: run as root")]
    from lab.providers.netns import add_netns, remove_netns

    ns = f"{topo.prefix}lint"
    out = []
    add_netns(ns)
    try:
        # A veth pair, not a dummy: not every kernel here has the dummy module.
        subprocess.run(["ip", "-n", ns, "link", "add", topo.network.interface, "type",
                        "veth", "peer", "name", "lint-peer"], check=True, capture_output=True)
        with tempfile.TemporaryDirectory(prefix="halab-lint-") as d:
            for lb, conf in confs.items():
                f = Path(d) / f"keepalived-{lb}.conf"
                f.write_text(conf)
                p = subprocess.run(["ip", "netns", "exec", ns, exe, "-t", "-f", str(f)],
                                   capture_output=True, text=True, timeout=30)
                where = f"keepalived.conf ({lb})"
                said = (p.stdout + p.stderr).strip().replace(str(f), "keepalived.conf")
                out.append(Finding(ERROR, where, f"`keepalived -t` refuses the rendered "
                                   f"config:\n{said}") if p.returncode != 0 else
                           Finding(OK, where, "`keepalived -t`: valid"))
    finally:
        remove_netns(ns)
    return out


def lint(path: Path) -> Report:
    """Everything `halab lint` says of the lab file at ``path``; raises LabFileError when the
    file itself is refused."""
    topo = topology.load(path)
    report = Report([Finding(OK, path.name, f"valid: lab '{topo.name}', "
                             f"{len(topo.nodes)} nodes, VIP {topo.vip}")])
    cfg = render.haproxy_cfg(topo)
    report.findings.append(haproxy_check(cfg))
    confs = {lb.name: render.keepalived_conf(topo, lb) for lb in topo.load_balancers}
    report.findings += keepalived_check(topo, confs)
    report.findings += haproxy_findings(cfg)
    # The same text on every LB but for names and addresses: one warning per kind, naming
    # every LB it applies to.
    by_message: dict[str, list[str]] = {}
    for lb, conf in confs.items():
        for f in keepalived_findings(conf, lb):
            by_message.setdefault(f.message, []).append(lb)
    report.findings += [Finding(WARNING, f"keepalived.conf ({', '.join(lbs)})", msg)
                        for msg, lbs in by_message.items()]
    return report
