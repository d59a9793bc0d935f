"""The kubeadm control plane: rendered and sequenced here, run only where VMs reach the internet."""

from __future__ import annotations

import yaml

from lab import topology
from provision import kubeadm, render


def _kubeadm_topo(default_text):
    return topology.parse(default_text + "kubernetes: {control_plane: kubeadm}\n")


def test_config_points_every_client_at_the_vip(default_text):
    topo = _kubeadm_topo(default_text)
    docs = list(yaml.safe_load_all(kubeadm.kubeadm_config(topo, topo.node("k8s-master-01"))))
    init, cluster, kubelet = docs
    assert init["localAPIEndpoint"]["advertiseAddress"] == "192.168.0.111"
    assert cluster["controlPlaneEndpoint"] == "192.168.0.203:6443"
    assert cluster["kubernetesVersion"] == "v1.30.6"
    assert {"192.168.0.203", "192.168.0.112", "k8s-master-07"} <= set(
        cluster["apiServer"]["certSANs"])
    assert kubelet["cgroupDriver"] == "systemd"


def test_sequence_installs_everywhere_inits_once_then_joins(default_text):
    topo = _kubeadm_topo(default_text)
    steps = kubeadm.plan(topo)
    inits = [s for s in steps if "kubeadm init" in s.command]
    joins = [s for s in steps if "kubeadm join" in s.command]
    assert [s.node for s in inits] == ["k8s-master-01"]
    assert "--upload-certs" in inits[0].command
    assert [s.node for s in joins] == ["k8s-master-02", "k8s-master-07"]
    assert all("192.168.0.203:6443" in s.command and "--control-plane" in s.command
               and "--certificate-key" in s.command for s in joins)
    assert steps.index(inits[0]) > max(i for i, s in enumerate(steps) if "apt-get" in s.command)
    assert any("pkgs.k8s.io/core:/stable:/v1.30/deb/" in s.command for s in steps)


def test_init_output_gives_the_join_secrets():
    out = """You can now join any number of control-plane nodes by running:

  kubeadm join 192.168.0.203:6443 --token abcdef.0123456789abcdef \\
	--discovery-token-ca-cert-hash sha256:1234 \\
	--control-plane --certificate-key 5678
"""
    assert kubeadm.parse_init_output(out) == ("abcdef.0123456789abcdef", "sha256:1234", "5678")


def test_haproxy_checks_healthz_over_tls_for_kubeadm(default_text, default_topo):
    cfg = render.haproxy_cfg(_kubeadm_topo(default_text))
    assert "http-check connect ssl\n    http-check send meth GET uri /healthz" in cfg
    assert "k8s-master-01 192.168.0.111:6443 check fall 3 rise 2 verify none" in cfg
    assert "httpchk" not in render.haproxy_cfg(default_topo)
