"""`halab lint`: the shipped lab.yaml is flagged for VRRP PASS authentication and HAProxy's
public statistics page; a lab without them is clean; a bad file exits 2 with no traceback.
No root needed: without it `keepalived -t` is skipped with a note (which `--strict` fails)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from lab import lint
from provision import render

ROOT = Path(__file__).resolve().parents[2]
# Neither insecure setting: no VRRP authentication, no statistics page on :80.
HARDENED = "\nkeepalived: {auth_pass: null}\nhaproxy: {stats_uri: null}\n"


def _halab(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "lab", *args], capture_output=True, text=True,
                          cwd=cwd, timeout=60)


def _lab(tmp_path: Path, extra: str = "") -> Path:
    # A lint of its own name: as root, keepalived -t runs in halab-slint-lint.
    f = tmp_path / "lab.yaml"
    f.write_text((ROOT / "lab.yaml").read_text().replace("name: halab", "name: slint") + extra)
    return f


def test_shipped_lab_warns_about_pass_auth_and_the_stats_page(tmp_path):
    p = _halab("lint", "-f", str(_lab(tmp_path)), cwd=tmp_path)
    assert p.returncode == 1, p.stdout + p.stderr
    warnings = [ln for ln in p.stdout.splitlines() if ln.startswith("warning:")]
    assert len(warnings) == 2, p.stdout
    pass_auth = next(w for w in warnings if "auth_type PASS" in w)
    assert "keepalived.conf (lb01, lb02)" in pass_auth and "clear text" in pass_auth
    stats = next(w for w in warnings if "stats uri /haproxy?stats" in w)
    assert "bind *:80" in stats and "stats_uri: null" in stats
    assert "Traceback" not in p.stderr


def test_lab_without_them_is_clean(tmp_path):
    p = _halab("lint", "-f", str(_lab(tmp_path, HARDENED)), cwd=tmp_path)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "warning:" not in p.stdout
    assert "0 error(s), 0 warning(s)" in p.stdout


def test_bad_file_exits_2_without_traceback(tmp_path):
    f = tmp_path / "lab.yaml"
    f.write_text("name: slint\nvip: 192.168.0.203\nnodes: [\n")
    p = _halab("lint", "-f", str(f), cwd=tmp_path)
    assert p.returncode == 2 and "YAML syntax error at line" in p.stderr
    assert "Traceback" not in p.stderr + p.stdout
    p = _halab("lint", "-f", str(tmp_path / "none.yaml"), cwd=tmp_path)
    assert p.returncode == 2 and "no such lab file" in p.stderr


def test_a_config_haproxy_refuses_is_an_error(default_topo):
    cfg = render.haproxy_cfg(default_topo).replace("balance roundrobin", "balance nonsense", 1)
    f = lint.haproxy_check(cfg)
    assert f.level == lint.ERROR and "haproxy.cfg:26] : balance only supports" in f.message
    assert lint.haproxy_check(render.haproxy_cfg(default_topo)).level == lint.OK
    assert lint.Report([f]).exit_code() == 2


def test_script_security_off_is_a_warning(default_topo):
    lb = default_topo.load_balancers[0]
    conf = render.keepalived_conf(default_topo, lb)
    assert not [f for f in lint.keepalived_findings(conf, "lb01") if "script" in f.message]
    found = lint.keepalived_findings(conf.replace("  enable_script_security\n", ""), "lb01")
    assert any("enable_script_security" in f.message and "/usr/bin/killall -0 haproxy"
               in f.message for f in found)


def test_stats_socket_beyond_the_node():
    cfg = ("global\n   stats socket ipv4@0.0.0.0:9999 level admin\n"
           "listen local\n    bind 127.0.0.1:8404\n    stats uri /stats\n")
    found = lint.haproxy_findings(cfg)
    assert len(found) == 1 and "listens on the network at level admin" in found[0].message
    cfg = "global\n   stats socket /run/haproxy/admin.sock mode 666 level admin\n"
    assert "every local user" in lint.haproxy_findings(cfg)[0].message
    cfg = "global\n   stats socket /run/haproxy/admin.sock mode 660 level admin\n"
    assert lint.haproxy_findings(cfg) == []


def test_strict_fails_on_a_skipped_check():
    r = lint.Report([lint.Finding(lint.NOTE, "keepalived.conf", "skipped")])
    assert r.exit_code() == 0 and r.exit_code(strict=True) == 1
