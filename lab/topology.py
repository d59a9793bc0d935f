"""The lab as data: lab.yaml loaded and validated, with no side effects.

Everything below this module (providers, provisioning, faults, the failover bounds)
reads a ``Topology``; nothing reads lab.yaml itself.
"""

from __future__ import annotations

import ipaddress
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from lab.errors import LabFileError

DEFAULT_LAB_FILE = "lab.yaml"
# Names the providers use for their own objects; a node may not take them.
RESERVED_NODE_NAMES = {"switch", "all"}


class Role(StrEnum):
    LOADBALANCER = "loadbalancer"
    CONTROL_PLANE = "control-plane"
    INGRESS = "ingress"
    CLIENT = "client"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Network(_Strict):
    subnet: ipaddress.IPv4Network = ipaddress.IPv4Network("192.168.0.0/24")
    # Same name on every provider, so that the rendered configs are identical on all of them.
    interface: Annotated[str, Field(pattern=r"^[a-zA-Z][a-zA-Z0-9_.-]{0,14}$")] = "eth1"


class Vrrp(_Strict):
    state: Literal["MASTER", "BACKUP"]
    priority: Annotated[int, Field(ge=1, le=254)]


class VmResources(_Strict):
    """What a VM provider gives the node; the embedded provider ignores it."""

    cpus: Annotated[int, Field(ge=1, le=64)] = 1
    memory_mib: Annotated[int, Field(ge=256)] = 512
    box: str | None = None


class Node(_Strict):
    name: Annotated[str, Field(pattern=r"^[a-z][a-z0-9-]{0,30}$")]
    roles: Annotated[list[Role], Field(min_length=1)]
    address: ipaddress.IPv4Address
    vrrp: Vrrp | None = None
    vm: VmResources = VmResources()

    @model_validator(mode="after")
    def _vrrp_only_on_load_balancers(self) -> Node:
        is_lb = Role.LOADBALANCER in self.roles
        if is_lb and self.vrrp is None:
            raise ValueError(
                "a loadbalancer needs `vrrp: {state: MASTER|BACKUP, priority: 1-254}`"
            )
        if not is_lb and self.vrrp is not None:
            raise ValueError("`vrrp` belongs only on nodes with the loadbalancer role")
        if Role.CLIENT in self.roles and len(self.roles) > 1:
            raise ValueError("the client role stands alone: the client is the operator's desk")
        return self

    @field_validator("name")
    @classmethod
    def _not_reserved(cls, v: str) -> str:
        if v in RESERVED_NODE_NAMES:
            raise ValueError(f"'{v}' is reserved for halab's own use; pick another node name")
        return v


class VrrpCheck(_Strict):
    """keepalived's vrrp_script: how the LB learns that its HAProxy is gone."""

    script: str = "/usr/bin/killall -0 haproxy"
    interval: Annotated[int, Field(ge=1)] = 2  # keepalived 2.2 takes whole seconds only
    weight: Annotated[int, Field(ge=-253, le=253)] = 2
    fall: Annotated[int, Field(ge=1)] = 1
    rise: Annotated[int, Field(ge=1)] = 1


class Keepalived(_Strict):
    virtual_router_id: Annotated[int, Field(ge=1, le=255)] = 51
    advert_int: Annotated[float, Field(gt=0, le=255)] = 1
    vrrp_version: Literal[2, 3] = 2
    auth_pass: Annotated[str, Field(min_length=1, max_length=8)] | None = "1111"
    check: VrrpCheck = VrrpCheck()
    # Gratuitous ARP from the MASTER every N s (keepalived's garp_master_refresh). The guide
    # has none: after a split brain heals, nothing makes the client forget the other LB's
    # MAC until its ARP entry expires (see lab.timing.arp_after_heal).
    garp_master_refresh: Annotated[int, Field(ge=1)] | None = None

    @model_validator(mode="after")
    def _version_rules(self) -> Keepalived:
        if self.vrrp_version == 2 and self.advert_int != int(self.advert_int):
            raise ValueError(
                "VRRPv2 takes advert_int in whole seconds; use vrrp_version: 3 for sub-second"
            )
        if self.vrrp_version == 3 and self.auth_pass is not None:
            raise ValueError("VRRPv3 has no authentication; set `auth_pass: null`")
        return self


class HealthCheck(_Strict):
    """HAProxy's server checks towards the masters (ms, counts)."""

    inter_ms: Annotated[int, Field(ge=10)] = 2000
    fall: Annotated[int, Field(ge=1)] = 3
    rise: Annotated[int, Field(ge=1)] = 2


class Haproxy(_Strict):
    check: HealthCheck = HealthCheck()
    # Retry a failed connection on another server: hides a dead master from new clients.
    redispatch: bool = False
    retries: Annotated[int, Field(ge=0)] | None = None


class Kubernetes(_Strict):
    """What runs on the control-plane nodes.

    `standin` (default, offline): nginx answering like kube-apiserver on 6443.
    `kubeadm`: a real control plane from the Kubernetes package repositories (VM provider,
    needs internet): `kubeadm init --control-plane-endpoint VIP:6443 --upload-certs` on the
    first master, the others joined with `--control-plane --certificate-key`.
    """

    control_plane: Literal["standin", "kubeadm"] = "standin"
    version: Annotated[str, Field(pattern=r"^1\.[0-9]+\.[0-9]+$")] = "1.30.6"
    pod_subnet: ipaddress.IPv4Network = ipaddress.IPv4Network("10.244.0.0/16")
    service_subnet: ipaddress.IPv4Network = ipaddress.IPv4Network("10.96.0.0/12")


class Vagrant(_Strict):
    """The VM provider's settings (ignored by the embedded lab)."""

    # auto: kvm where hardware virtualisation works, qemu (TCG, software) otherwise.
    driver: Literal["auto", "kvm", "qemu"] = "auto"
    # isolated: libvirtd, dnsmasq and vagrant in a namespace of the lab's own, their state in
    # the lab's folder (tests, CI). system: this machine's libvirt (a user's workstation).
    # auto: system when a libvirtd already answers here, isolated otherwise.
    libvirt: Literal["auto", "isolated", "system"] = "auto"
    box: str = "halab/debian12"
    boot_timeout: Annotated[int, Field(ge=30)] = 900


class Topology(_Strict):
    name: Annotated[str, Field(pattern=r"^[a-z][a-z0-9]{0,11}$")] = "halab"
    provider: Literal["netns", "vagrant", "hosts"] = "netns"
    kubernetes: Kubernetes = Kubernetes()
    vagrant: Vagrant = Vagrant()
    network: Network = Network()
    vip: ipaddress.IPv4Address
    nodes: Annotated[list[Node], Field(min_length=1)]
    keepalived: Keepalived = Keepalived()
    haproxy: Haproxy = Haproxy()

    @model_validator(mode="after")
    def _consistent(self) -> Topology:
        names = [n.name for n in self.nodes]
        for dup in sorted({n for n in names if names.count(n) > 1}):
            raise ValueError(f"node name '{dup}' appears more than once; node names must be unique")
        addrs = [n.address for n in self.nodes]
        for dup in sorted({a for a in addrs if addrs.count(a) > 1}):
            owners = ", ".join(n.name for n in self.nodes if n.address == dup)
            raise ValueError(f"address {dup} is given to more than one node ({owners})")
        net = self.network.subnet
        usable = set(net.hosts())
        for n in self.nodes:
            if n.address not in usable:
                raise ValueError(
                    f"node {n.name}'s address {n.address} is not a host address of the lab "
                    f"subnet {net}"
                )
        if self.vip not in usable:
            raise ValueError(f"the VIP {self.vip} is not a host address of the lab subnet {net}")
        if self.vip in addrs:
            owner = next(n.name for n in self.nodes if n.address == self.vip)
            raise ValueError(f"the VIP {self.vip} is also node {owner}'s address; the VIP floats "
                             "between the load balancers and must be an address of its own")
        lbs = self.load_balancers
        if len(lbs) < 2:
            raise ValueError(f"a highly available lab needs at least two nodes with the "
                             f"loadbalancer role, found {len(lbs)}")
        prios = [lb.vrrp.priority for lb in lbs if lb.vrrp]
        if len(set(prios)) != len(prios):
            raise ValueError("load balancers need different VRRP priorities (equal priorities "
                             "make the election depend on addresses); give the MASTER the highest")
        masters = [lb for lb in lbs if lb.vrrp and lb.vrrp.state == "MASTER"]
        if len(masters) != 1:
            raise ValueError(f"exactly one load balancer must have `vrrp.state: MASTER`, "
                             f"found {len(masters)}")
        if masters[0].vrrp and masters[0].vrrp.priority != max(prios):
            raise ValueError("the MASTER load balancer must have the highest VRRP priority")
        if not self.control_planes:
            raise ValueError("the lab needs at least one node with the control-plane role")
        if len(self.nodes_with(Role.CLIENT)) != 1:
            raise ValueError("the lab needs exactly one node with the client role: probes and "
                             "SSH start there")
        return self

    # -- views ---------------------------------------------------------------------------
    def nodes_with(self, role: Role) -> list[Node]:
        return [n for n in self.nodes if role in n.roles]

    @property
    def load_balancers(self) -> list[Node]:
        return self.nodes_with(Role.LOADBALANCER)

    @property
    def control_planes(self) -> list[Node]:
        return self.nodes_with(Role.CONTROL_PLANE)

    @property
    def ingresses(self) -> list[Node]:
        return self.nodes_with(Role.INGRESS)

    @property
    def client(self) -> Node:
        return self.nodes_with(Role.CLIENT)[0]

    @property
    def master_lb(self) -> Node:
        return next(n for n in self.load_balancers if n.vrrp and n.vrrp.state == "MASTER")

    @property
    def backup_lbs(self) -> list[Node]:
        return [n for n in self.load_balancers if n is not self.master_lb]

    @property
    def best_backup_lb(self) -> Node:
        """The backup that takes the VIP when the MASTER goes: the highest priority."""
        return max(self.backup_lbs, key=lambda n: n.vrrp.priority if n.vrrp else 0)

    def node(self, name: str) -> Node:
        for n in self.nodes:
            if n.name == name:
                return n
        raise KeyError(name)

    @property
    def prefix(self) -> str:
        """What every object of this lab is named with: namespaces, VMs, networks."""
        return f"halab-{self.name}-"

    @property
    def prefixlen(self) -> int:
        return self.network.subnet.prefixlen


# -- loading -----------------------------------------------------------------------------
def load(path: str | Path = DEFAULT_LAB_FILE) -> Topology:
    """Read and validate a lab file; every failure is a one-paragraph ``LabFileError``."""
    p = Path(path)
    try:
        text = p.read_text()
    except FileNotFoundError:
        raise LabFileError(
            f"{p}: no such lab file. Run from the folder that holds lab.yaml, or name the file "
            "with `-f PATH` (pytest: `--lab-file PATH`)."
        ) from None
    except OSError as e:
        raise LabFileError(f"{p}: cannot read the lab file ({e.strerror}).") from None
    return parse(text, source=str(p))


def renamed(text: str, name: str, header: str) -> str:
    """A lab file's text with ``name:`` replaced and nothing else (comments lost), under a
    header line that says where it came from: another lab of the same shape, which a
    person and `halab -f` read like any lab file (a class's learners, a test worker's)."""
    data = yaml.safe_load(text)
    data = {"name": name, **{k: v for k, v in data.items() if k != "name"}}
    return f"# {header}\n" + yaml.safe_dump(data, sort_keys=False)


def parse(text: str, source: str = DEFAULT_LAB_FILE) -> Topology:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(e, "problem", None) or str(e)
        raise LabFileError(
            f"{source}: YAML syntax error{where}: {problem}. Fix the indentation or quoting "
            "there; every value must be `key: value` under its section."
        ) from None
    if not isinstance(data, dict):
        raise LabFileError(f"{source}: the lab file must be a YAML mapping with at least `vip` "
                           "and `nodes`; see the lab.yaml that ships with halab.")
    try:
        return Topology.model_validate(data)
    except ValidationError as e:
        raise LabFileError(_describe(source, data, e)) from None


def _where(data: Any, loc: tuple[int | str, ...]) -> str:
    """nodes.2.roles.0 -> nodes[2] (k8s-master-01).roles[0]: names beat indexes."""
    out, cur = "", data
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
            try:
                cur = cur[part]
                if isinstance(cur, dict) and "name" in cur:
                    out += f" ({cur['name']})"
            except (IndexError, KeyError, TypeError):
                cur = None
        else:
            out += f".{part}" if out else str(part)
            cur = cur.get(part) if isinstance(cur, dict) else None
    return out


def _describe(source: str, data: Any, err: ValidationError) -> str:
    problems = []
    for e in err.errors():
        loc = tuple(p for p in e["loc"] if not (isinstance(p, str) and p.startswith("function-")))
        where = _where(data, loc) if loc else ""
        kind, msg = e["type"], e["msg"].removeprefix("Value error, ")
        if kind == "extra_forbidden":
            msg = f"unknown key `{loc[-1]}`: remove it or check its spelling"
        elif kind == "missing":
            msg = "is required but missing"
        elif kind == "enum":
            what = "role" if "role" in where else "value"
            roles = ", ".join(r.value for r in Role)
            msg = f"unknown {what} {e['input']!r}; expected one of {roles}"
        elif kind in ("ip_v4_address", "ip_v4_network"):
            msg = f"{e['input']!r} is not an IPv4 {'network' if 'network' in kind else 'address'}"
        problems.append(f"{where}: {msg}" if where else msg)
    head = f"{source}: invalid lab file: "
    fix = " Fix the value(s) named and run the command again."
    return head + "; ".join(problems) + "." + fix
