"""The lab's kubeconfig: server https://VIP:6443, the lab CA, a client certificate from it.
Written with every provisioning into the lab's state folder, for kubectl from the client
(the tests' witness, or a person: `halab exec client -- kubectl --kubeconfig ...`).
"""

from __future__ import annotations

from pathlib import Path

import yaml

from lab.state import LabState
from lab.topology import Topology
from provision.pki import LabPki

KUBECONFIG = "kubeconfig"
# The user the kubeconfig names. kubectl refuses to run without some way to identify the
# user (with none it prompts for a username on stdin and fails with "EOF"), so the user
# carries a client certificate from the lab CA. TLS sends it only when the server asks for
# one: the API server stand-in never does, so its requests are anonymous on the wire; a
# real kube-apiserver trusting the lab CA would see an unprivileged user, who may still
# read /healthz and /version (system:public-info-viewer).
USER = "halab-witness"


def kubeconfig(server: str, ca_file: Path, cert: Path, key: Path, name: str) -> dict:
    """A kubeconfig (as data) for one cluster, one user, one context."""
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": name, "cluster": {
            "server": server, "certificate-authority": str(ca_file)}}],
        "users": [{"name": USER, "user": {
            "client-certificate": str(cert), "client-key": str(key)}}],
        "contexts": [{"name": name, "context": {"cluster": name, "user": USER}}],
        "current-context": name,
    }


def write_kubeconfig(topo: Topology, state: LabState, path: Path | None = None,
                     ca_file: Path | None = None) -> Path:
    """Write the lab's kubeconfig (server https://VIP:6443, the lab CA) and return its path:
    ``.halab/<name>/kubeconfig`` unless ``path`` says otherwise; ``ca_file`` replaces the
    lab CA (a test's wrong CA)."""
    pki = LabPki(state.pki, topo)
    cert, key = pki.client(USER)
    path = state.dir / KUBECONFIG if path is None else path
    data = kubeconfig(f"https://{topo.vip}:6443", ca_file or pki.ca_cert, cert, key,
                      f"halab-{topo.name}")
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    path.chmod(0o600)  # it names a private key
    return path
