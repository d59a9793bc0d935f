"""A real kubeadm control plane behind the VIP (`kubernetes.control_plane: kubeadm`).

It needs the Kubernetes package repositories, so it runs only where the VMs reach the
internet; here its configuration and its command sequence are rendered and unit-tested,
and `halab up` refuses it on a provider that cannot run it. The sequence is the kubeadm HA
guide's "stacked etcd" one: init on the first master with the VIP as control-plane
endpoint and `--upload-certs`, then join the others with `--control-plane
--certificate-key`.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable
from dataclasses import dataclass

from lab.topology import Node, Topology
from provision.render import _env

KUBEADM_CONFIG = "/etc/kubernetes/kubeadm-config.yaml"
KEYRING = "/etc/apt/keyrings/kubernetes-apt-keyring.gpg"


@dataclass(frozen=True)
class Step:
    node: str
    command: str
    why: str


def minor(topo: Topology) -> str:
    return ".".join(topo.kubernetes.version.split(".")[:2])


def kubeadm_config(topo: Topology, node: Node) -> str:
    return _env().get_template("kubeadm-config.yaml.j2").render(
        node=node, k8s=topo.kubernetes, cluster=f"halab-{topo.name}", vip=topo.vip,
        masters=topo.control_planes)


def install_steps(topo: Topology, node: Node) -> list[Step]:
    """containerd from Debian; kubeadm, kubelet and kubectl from pkgs.k8s.io, held."""
    repo = f"https://pkgs.k8s.io/core:/stable:/v{minor(topo)}/deb/"
    return [
        Step(node.name, "swapoff -a && sed -i '/ swap / s/^/#/' /etc/fstab",
             "the kubelet refuses to run with swap"),
        Step(node.name, "modprobe overlay && modprobe br_netfilter && "
             "printf 'net.bridge.bridge-nf-call-iptables=1\\nnet.ipv4.ip_forward=1\\n' "
             "> /etc/sysctl.d/99-kubernetes.conf && sysctl --system",
             "pod networking needs bridged traffic through iptables and forwarding"),
        Step(node.name, "apt-get update && apt-get install -y containerd apt-transport-https "
             "ca-certificates curl gpg", "the container runtime"),
        Step(node.name, "mkdir -p /etc/containerd && containerd config default | "
             "sed 's/SystemdCgroup = false/SystemdCgroup = true/' > /etc/containerd/config.toml"
             " && systemctl restart containerd", "containerd with the systemd cgroup driver"),
        Step(node.name, f"mkdir -p /etc/apt/keyrings && curl -fsSL {repo}Release.key | "
             f"gpg --dearmor -o {KEYRING}", "the Kubernetes repository's signing key"),
        Step(node.name, f"echo 'deb [signed-by={KEYRING}] {repo} /' > "
             "/etc/apt/sources.list.d/kubernetes.list && apt-get update && "
             f"apt-get install -y kubelet={topo.kubernetes.version}-* "
             f"kubeadm={topo.kubernetes.version}-* kubectl={topo.kubernetes.version}-* && "
             "apt-mark hold kubelet kubeadm kubectl", "kubeadm, kubelet, kubectl, pinned"),
    ]


def init_step(topo: Topology) -> Step:
    first = topo.control_planes[0]
    return Step(first.name, f"kubeadm init --config {KUBEADM_CONFIG} --upload-certs",
                f"the first control plane, endpoint {topo.vip}:6443 (the VIP)")


def join_step(topo: Topology, node: Node, token: str, ca_hash: str, cert_key: str) -> Step:
    args = ["kubeadm", "join", f"{topo.vip}:6443", "--token", token,
            "--discovery-token-ca-cert-hash", ca_hash, "--control-plane",
            "--certificate-key", cert_key, "--apiserver-advertise-address", str(node.address),
            "--node-name", node.name]
    return Step(node.name, shlex.join(args), "another control plane, through the VIP")


def plan(topo: Topology) -> list[Step]:
    """The whole sequence, with placeholders for what `kubeadm init` prints."""
    steps: list[Step] = []
    for m in topo.control_planes:
        steps += install_steps(topo, m)
    steps.append(init_step(topo))
    for m in topo.control_planes[1:]:
        steps.append(join_step(topo, m, "<token>", "<sha256:ca-hash>", "<certificate-key>"))
    return steps


def parse_init_output(out: str) -> tuple[str, str, str]:
    """token, CA hash and certificate key from `kubeadm init --upload-certs`'s output."""
    words = out.replace("\\\n", " ").split()
    token = words[words.index("--token") + 1]
    ca_hash = words[words.index("--discovery-token-ca-cert-hash") + 1]
    cert_key = words[words.index("--certificate-key") + 1]
    return token, ca_hash, cert_key


def apply(topo: Topology, masters: list, progress: Callable[[str], None]) -> None:
    """Run the sequence on the masters (Nodes), stopping at the first failure."""
    by_name = {m.name: m for m in masters}
    first = by_name[topo.control_planes[0].name]
    for m in masters:
        m.put(KUBEADM_CONFIG, kubeadm_config(topo, m.spec), 0o600)
        for step in install_steps(topo, m.spec):
            progress(f"{m.name}: {step.why}")
            m.check_output(step.command)
    if first.run("test -f /etc/kubernetes/admin.conf").ok:
        return  # initialised earlier: kubeadm init is not idempotent
    progress(f"{first.name}: kubeadm init (endpoint {topo.vip}:6443)")
    token, ca_hash, cert_key = parse_init_output(first.check_output(init_step(topo).command))
    for spec in topo.control_planes[1:]:
        progress(f"{spec.name}: kubeadm join --control-plane")
        by_name[spec.name].check_output(join_step(topo, spec, token, ca_hash, cert_key).command)
