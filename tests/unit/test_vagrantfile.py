"""The top-level Vagrantfile run by hand in a checkout: it asks halab for the spec
(`halab vagrant-spec`), re-runs vagrant as halab runs it when the lab is up, and logs
`vagrant ssh` in as halab does. No VM is brought up: the vagrant tests need only the
`vagrant` command (skipped without it) and no root."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from lab import topology
from lab.providers.vagrant import VagrantProvider
from lab.state import LabState

ROOT = Path(__file__).resolve().parents[2]
needs_vagrant = pytest.mark.skipif(shutil.which("vagrant") is None,
                                   reason="vagrant is not installed (make setup-vagrant)")


@pytest.fixture
def lab_file(tmp_path, default_text) -> Path:
    # A name of its own: nothing here may meet a real lab's state or namespaces.
    f = tmp_path / "lab.yaml"
    f.write_text(default_text.replace("name: halab", "name: vfile"))
    return f


def _provider(lab_file: Path) -> VagrantProvider:
    topo = topology.load(lab_file)
    return VagrantProvider(topo, LabState(lab_file.parent, topo.name))


def _pretend_up(lab_file: Path, provider: str = "vagrant", libvirt: str = "system") -> Path:
    """State as `halab up` leaves it (a system libvirt needs no running host to be up)."""
    p = _provider(lab_file)
    p.dir.mkdir(parents=True)
    p.state.file.write_text(json.dumps({"provider": provider, "phase": "up", "lab": "vfile",
                                        "libvirt": libvirt}))
    spec = p.for_vagrantfile(lab_file)["spec"]
    (p.dir / "spec.json").write_text(json.dumps(spec))
    return p.dir


# -- what halab tells the Vagrantfile --------------------------------------------------------
def test_a_lab_that_is_not_up_gets_a_spec_and_a_reason(lab_file):
    view = _provider(lab_file).for_vagrantfile(lab_file)
    assert view["up"] is False and "halab up --provider vagrant" in view["message"]
    spec = view["spec"]
    assert [n["name"] for n in spec["nodes"]] == ["lb01", "lb02", "k8s-master-01",
                                                  "k8s-master-02", "k8s-master-07"]
    assert spec["ssh"] == {"user": "root",
                           "private_key": str(lab_file.parent / ".halab/vfile/id_ed25519")}
    assert not (lab_file.parent / ".halab").exists(), "asking writes nothing"


def test_a_lab_up_with_another_provider_says_so(lab_file):
    _provider(lab_file).state.dir.mkdir(parents=True)
    _provider(lab_file).state.file.write_text('{"provider": "netns", "phase": "up"}')
    view = _provider(lab_file).for_vagrantfile(lab_file)
    assert view["up"] is False and "up with the netns provider" in view["message"]


def test_a_lab_that_is_up_hands_over_halabs_vagrant_environment(lab_file):
    d = _pretend_up(lab_file)
    view = _provider(lab_file).for_vagrantfile(lab_file)
    assert view["up"] is True and view["exe"] == "vagrant"
    assert view["env"] == {"HALAB_VAGRANT_SPEC": str(d / "spec.json"),
                           "VAGRANT_DOTFILE_PATH": str(d / "dotvagrant"),
                           "VAGRANT_DEFAULT_PROVIDER": "libvirt",
                           "VAGRANT_CHECKPOINT_DISABLE": "1", "HALAB_VAGRANT_SSH": "lab"}
    assert view["env"].items() <= {**_provider(lab_file).vagrant_env(),
                                   "HALAB_VAGRANT_SSH": "lab"}.items()


def test_an_isolated_lab_whose_libvirt_host_is_gone_says_how_to_recover(lab_file):
    _pretend_up(lab_file, libvirt="isolated")  # no namespace, no libvirtd: gone
    view = _provider(lab_file).for_vagrantfile(lab_file)
    assert view["up"] is False
    assert "libvirt host (halab-vfile-host) is not running" in view["message"]
    assert "halab clean" in view["message"]


def test_vagrant_spec_command_prints_json_and_refuses_a_bad_file(lab_file):
    p = subprocess.run([sys.executable, "-m", "lab", "vagrant-spec", "-f", str(lab_file)],
                       capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["spec"]["lab"] == "vfile"
    lab_file.write_text("nodes: [\n")
    p = subprocess.run([sys.executable, "-m", "lab", "vagrant-spec", "-f", str(lab_file)],
                       capture_output=True, text=True)
    assert p.returncode == 2 and "YAML syntax error" in p.stderr
    assert "Traceback" not in p.stderr and p.stdout == ""


# -- vagrant itself, in the checkout ---------------------------------------------------------
def _vagrant(*args: str, cwd: Path = ROOT, path: str | None = None,
             **env: str) -> subprocess.CompletedProcess[str]:
    # The venv's bin first: the Vagrantfile finds halab there when the checkout has no .venv.
    base = {"PATH": path or f"{Path(sys.executable).parent}:{os.environ['PATH']}",
            "HOME": os.environ.get("HOME", "/root"), "VAGRANT_CHECKPOINT_DISABLE": "1",
            "LANG": "C.UTF-8"}
    return subprocess.run(["vagrant", *args], cwd=cwd, capture_output=True, text=True,
                          env={**base, **env}, timeout=120)


@needs_vagrant
def test_validate_and_status_work_without_a_lab(lab_file, tmp_path):
    env = {"HALAB_LAB_FILE": str(lab_file), "VAGRANT_DOTFILE_PATH": str(tmp_path / "dot")}
    p = _vagrant("validate", **env)
    assert p.returncode == 0 and "validated successfully" in p.stdout, p.stderr
    p = _vagrant("status", **env)
    assert p.returncode == 0, p.stderr
    for node in ("lb01", "lb02", "k8s-master-01", "k8s-master-02", "k8s-master-07"):
        assert f"{node} " in p.stdout and "not created" in p.stdout
    p = _vagrant("ssh", "lb01", **env)
    assert p.returncode != 0
    assert "lab 'vfile' is not up with the vagrant provider" in p.stderr
    assert "halab up --provider vagrant" in p.stderr and ".rb:" not in p.stderr


@needs_vagrant
def test_a_lab_that_is_up_reruns_vagrant_as_halab_does(lab_file, tmp_path):
    d = _pretend_up(lab_file)
    fake = tmp_path / "bin" / "vagrant"
    fake.parent.mkdir()
    fake.write_text("#!/bin/sh\necho \"args: $*\"\nenv | grep -E '^(HALAB|VAGRANT)_' | sort\n")
    fake.chmod(0o755)
    real = shutil.which("vagrant")
    p = subprocess.run(
        [real, "ssh", "lb01"], cwd=ROOT, capture_output=True, text=True, timeout=120,
        env={"PATH": f"{fake.parent}:{Path(sys.executable).parent}:{os.environ['PATH']}",
             "HOME": os.environ.get("HOME", "/root"), "VAGRANT_CHECKPOINT_DISABLE": "1",
             "HALAB_LAB_FILE": str(lab_file),
             # The first vagrant's own records (the re-run gets halab's): not in the checkout.
             "VAGRANT_DOTFILE_PATH": str(tmp_path / "dot")})
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert lines[0] == "args: ssh lb01"
    assert f"HALAB_VAGRANT_SPEC={d / 'spec.json'}" in lines
    assert f"VAGRANT_DOTFILE_PATH={d / 'dotvagrant'}" in lines
    assert "HALAB_VAGRANT_SSH=lab" in lines


@needs_vagrant
def test_no_halab_is_a_clear_message(tmp_path):
    shutil.copy(ROOT / "Vagrantfile", tmp_path)
    shutil.copy(ROOT / "lab.yaml", tmp_path)
    p = _vagrant("status", cwd=tmp_path, path="/usr/sbin:/usr/bin:/sbin:/bin")
    assert p.returncode != 0
    assert f"{tmp_path}/.venv/bin/halab does not exist" in p.stderr
    assert "make setup-vagrant" in p.stderr and ".rb:" not in p.stderr
    assert _vagrant("box", "list", cwd=tmp_path, path="/usr/bin:/bin").returncode == 0, \
        "commands that need no machine need no halab either"


SSH_INFO = """
require "vagrant"
require "vagrant-libvirt"
env = Vagrant::Environment.new(cwd: ARGV[0])
m = env.machine(:lb01, :libvirt)
# No VM runs here: the provider's answer is what vagrant-libvirt gives for a running VM
# (its management-network lease); Vagrant's own Machine#ssh_info applies the Vagrantfile.
m.provider.define_singleton_method(:ssh_info) { {host: "192.168.121.5", port: 22} }
i = m.ssh_info
puts JSON.generate(host: i[:host], user: i[:username], keys: i[:private_key_path])
"""


@needs_vagrant
@pytest.mark.parametrize("who", ["halab", "person"])
def test_vagrant_ssh_logs_in_as_halab_does(lab_file, tmp_path, who):
    d = _pretend_up(lab_file)
    script = tmp_path / "ssh_info.rb"
    script.write_text(SSH_INFO)
    env = {"HALAB_VAGRANT_SPEC": str(d / "spec.json"), "VAGRANT_DOTFILE_PATH": str(tmp_path),
           "PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/root"),
           "VAGRANT_CHECKPOINT_DISABLE": "1"}
    if who == "person":
        env["HALAB_VAGRANT_SSH"] = "lab"  # what the Vagrantfile's re-run sets
    p = subprocess.run(["ruby", str(script), str(ROOT)], capture_output=True, text=True,
                       env=env, timeout=120)
    assert p.returncode == 0, p.stderr
    info = json.loads(p.stdout.splitlines()[-1])
    if who == "halab":  # halab's own `vagrant up`: the box's user, before node_setup
        assert info["host"] == "192.168.121.5" and info["user"] == "vagrant"
    else:
        assert info == {"host": "192.168.0.101", "user": "root",
                        "keys": [str(lab_file.parent / ".halab/vfile/id_ed25519")]}


# -- the host key halab made, installed on the VM ---------------------------------------------
def _node_setup(spec_file: Path, node: str) -> str:
    """The Vagrantfile's shell step for ``node``, rendered by Ruby as vagrant would (with a
    stand-in for Vagrant itself: no VM, no vagrant needed)."""
    script = ("module Vagrant; def self.configure(*) end; end\n"
              f"load {json.dumps(str(ROOT / 'Vagrantfile'))}\n"
              "spec = JSON.parse(File.read(ENV['HALAB_VAGRANT_SPEC']))\n"
              f"print node_setup(spec, spec['nodes'].find {{ |n| n['name'] == '{node}' }})\n")
    p = subprocess.run(["ruby", "-e", script], capture_output=True, text=True,
                       env={**os.environ, "HALAB_VAGRANT_SPEC": str(spec_file)}, check=True)
    return p.stdout


@pytest.mark.skipif(shutil.which("ruby") is None, reason="ruby (vagrant's) is not installed")
def test_node_setup_installs_the_host_key_halab_pinned(lab_file, tmp_path):
    import base64
    import re

    p = _provider(lab_file)
    key = p.state.host_key("lb01")
    spec = p.spec("qemu", "ssh-ed25519 AAAA lab")
    assert {n["name"]: n["host_key"] for n in spec["nodes"]}["lb01"] == str(key)
    spec_file = tmp_path / "spec.json"
    spec_file.write_text(json.dumps(spec))
    sh = _node_setup(spec_file, "lb01")
    subprocess.run(["bash", "-n"], input=sh, text=True, check=True)
    installed = dict(re.findall(r"echo (\S+) \| base64 -d > (/etc/ssh/[^\s)]+)", sh))
    assert {v: base64.b64decode(k) for k, v in installed.items()} == {
        "/etc/ssh/ssh_host_ed25519_key": key.read_bytes(),
        "/etc/ssh/ssh_host_ed25519_key.pub": key.with_suffix(".pub").read_bytes()}
    assert "umask 077" in sh and "systemctl restart ssh" in sh
    # and the lab's known_hosts pins that very key
    p._write_ssh_config()
    known = p.state.known_hosts.read_text()
    assert " ".join(key.with_suffix(".pub").read_text().split()[:2]) in known
