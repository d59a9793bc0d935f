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
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from lab import inputs, profiles
from lab.errors import LabFileError

DEFAULT_LAB_FILE = "lab.yaml"
# Names the providers use for their own objects beside the nodes' (`halab-<lab>-<name>`): the
# embedded lab's switch namespace; the VM lab's libvirt namespace (`-host`, which its clean
# finds by that ending), network (`-lan`, `-mgmt`) and storage pool (`-pool`); `all`, which
# the CLI reads as every node. A node may not take them.
RESERVED_NODE_NAMES = frozenset({"switch", "all", "host", "lan", "mgmt", "pool"})
# Lab names that something else of halab's already uses, as a namespace prefix
# (`halab-<name>-`, which `halab clean` of that lab would remove) or a folder under .halab/
# (which `halab clean` of that lab would delete): the box build's output folder (.halab/box,
# box/build.sh), the box test's namespaces (halab-boxtest-*, box/test/run.sh) and
# `halab doctor`'s scratch namespace (halab-doctor-<pid>, lab/doctor.py). The classroom's
# folder, .halab/_class, cannot be a lab name (no `_`).
RESERVED_LAB_NAMES = frozenset({"box", "boxtest", "doctor"})
# Linux network device names: at most 15 characters (IFNAMSIZ - 1).
IFNAME_MAX = 15
# The embedded lab's switch: a namespace holding this bridge and one port per node, named
# after the node where the name fits (lab.providers.netns).
SWITCH_BRIDGE = "br0"
# Devices the kernel puts in every new network namespace: loopback, and the fallback tunnel
# device of each tunnel module that is loaded. A node's NIC or switch port cannot take them.
KERNEL_DEVICES = frozenset({"lo", "sit0", "tunl0", "gre0", "gretap0", "erspan0", "ip6tnl0",
                            "ip6gre0", "ip_vti0", "ip6_vti0"})
# A VM's first NIC is vagrant's management network; the lab NIC must be another.
VAGRANT_MGMT_INTERFACE = "eth0"
# The lab subnet's bounds. Wider than /16 is no lab (65534 addresses) and, with the VM
# provider on the machine's own libvirt, becomes a route on this machine that shadows
# networks it uses (a /8 hides all of 10.0.0.0/8); narrower than /29 leaves no room for two
# LBs, a master, the client and the VIP.
SUBNET_PREFIX_MIN, SUBNET_PREFIX_MAX = 16, 29
# More nodes than any HA lab needs (the default has six): bounds validation, rendering and
# bring-up.
MAX_NODES = 64


def switch_port(node_names: list[str], node: str) -> str:
    """The embedded lab's switch port for ``node``: its name where that fits a device
    name, otherwise ``port<index>``."""
    if len(node) <= IFNAME_MAX:
        return node
    return f"port{node_names.index(node)}"


# A box name reaches `vagrant box list`'s comparison and the Vagrantfile.
BoxName = Annotated[str, Field(max_length=100),
                    inputs.matching(inputs.BOX, "a vagrant box name (NAME or OWNER/NAME)")]


def _written_as_text(v: object) -> object:
    # YAML reads `vip: true` as a bool and `vip: 3` as an int, both of which ipaddress takes
    # as a number (0.0.0.1, 0.0.0.3): the error would then name an address nobody wrote.
    if isinstance(v, bool | int):
        raise ValueError(f"write it as text (an address such as 192.168.0.203, a subnet such "
                         f"as 192.168.0.0/24), not {v!r}")
    return v


Address = Annotated[ipaddress.IPv4Address, BeforeValidator(_written_as_text)]
Subnet = Annotated[ipaddress.IPv4Network, BeforeValidator(_written_as_text)]


class Role(StrEnum):
    LOADBALANCER = "loadbalancer"
    CONTROL_PLANE = "control-plane"
    INGRESS = "ingress"
    CLIENT = "client"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Network(_Strict):
    subnet: Subnet = ipaddress.IPv4Network("192.168.0.0/24")
    # Same name on every provider, so that the rendered configs are identical on all of them.
    interface: Annotated[str, Field(pattern=r"^[a-zA-Z][a-zA-Z0-9_.-]{0,14}$")] = "eth1"

    @field_validator("subnet")
    @classmethod
    def _a_lab_subnet(cls, net: ipaddress.IPv4Network) -> ipaddress.IPv4Network:
        if not SUBNET_PREFIX_MIN <= net.prefixlen <= SUBNET_PREFIX_MAX:
            raise ValueError(
                f"{net} is no lab subnet: use a prefix from /{SUBNET_PREFIX_MIN} to "
                f"/{SUBNET_PREFIX_MAX} (wider shadows this machine's own networks when the VM "
                "lab uses its libvirt; narrower leaves no room for the nodes and the VIP)")
        if (net.is_loopback or net.is_link_local or net.is_multicast or net.is_reserved
                or net.subnet_of(ipaddress.IPv4Network("0.0.0.0/8")) or not net.is_private):
            raise ValueError(
                f"{net} is not a private unicast range; use one of 10.0.0.0/8, 172.16.0.0/12 "
                "or 192.168.0.0/16, as nothing of a lab may look like a real network")
        return net

    @field_validator("interface")
    @classmethod
    def _a_free_device_name(cls, v: str) -> str:
        if v in KERNEL_DEVICES:
            raise ValueError(f"'{v}' is a device the kernel makes in every namespace; name the "
                             "lab NIC otherwise (default eth1)")
        if v == VAGRANT_MGMT_INTERFACE:
            raise ValueError(f"'{v}' is a VM's management NIC (vagrant's); name the lab NIC "
                             "otherwise (default eth1)")
        return v


class Vrrp(_Strict):
    state: Literal["MASTER", "BACKUP"]
    priority: Annotated[int, Field(ge=1, le=254)]


class VmResources(_Strict):
    """What a VM provider gives the node; the embedded provider ignores it."""

    cpus: Annotated[int, Field(ge=1, le=64)] = 1
    memory_mib: Annotated[int, Field(ge=256, le=65536)] = 512
    box: BoxName | None = None


class Node(_Strict):
    name: Annotated[str, Field(pattern=r"^[a-z][a-z0-9-]{0,30}$")]
    roles: Annotated[list[Role], Field(min_length=1)]
    address: Address
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
        if v == SWITCH_BRIDGE or v in KERNEL_DEVICES:
            raise ValueError(f"'{v}' is a device of the embedded lab's switch (its bridge or "
                             "the kernel's); pick another node name")
        return v


class VrrpCheck(_Strict):
    """keepalived's vrrp_script: how the LB learns that its HAProxy is gone."""

    # The vrrp_script's name in keepalived.conf (the guide's `chk_haproxy`).
    name: Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,31}$")] = "chk_haproxy"
    script: Annotated[str, Field(max_length=255), inputs.matching(
        inputs.SCRIPT, "an absolute path and simple arguments (letters, digits, ._+-/=:,@), "
        "e.g. `/usr/bin/killall -0 haproxy`")] = "/usr/bin/killall -0 haproxy"
    interval: Annotated[int, Field(ge=1, le=3600)] = 2  # keepalived 2.2: whole seconds only
    weight: Annotated[int, Field(ge=-253, le=253)] = 2
    fall: Annotated[int, Field(ge=1, le=1000)] = 1
    rise: Annotated[int, Field(ge=1, le=1000)] = 1


class HaproxyTrack(_Strict):
    """keepalived's vrrp_track_file, written by halab's watcher beside HAProxy
    (provision/templates/haproxy-watch.sh.j2): "1" the moment HAProxy exits, "0" once it
    listens on :6443. No polling: the watcher learns of the exit from the kernel closing
    HAProxy's end of a FIFO, keepalived of the file through inotify."""

    # 0: HAProxy gone puts the instance in FAULT, which sends a priority-0 advert, and the
    # backup takes over after its skew time alone. Negative: the priority drops by that
    # much instead, and the backup waits out its master-down timer.
    weight: Annotated[int, Field(ge=-253, le=0)] = 0


class Keepalived(_Strict):
    virtual_router_id: Annotated[int, Field(ge=1, le=255)] = 51
    advert_int: Annotated[float, Field(gt=0, le=255)] = 1
    vrrp_version: Literal[2, 3] = 2
    auth_pass: Annotated[str, Field(min_length=1, max_length=8), inputs.matching(
        inputs.TOKEN, "1-8 letters, digits or ._+- (starting with a letter or digit)")
    ] | None = "1111"
    # The vrrp_script; null: none (a lab that learns of HAProxy's exit from `track_file`).
    check: VrrpCheck | None = VrrpCheck()
    # HAProxy's exit and its return (listening) pushed to keepalived by halab's watcher;
    # null (the guide): only the vrrp_script tells.
    track_file: HaproxyTrack | None = None
    # A MASTER that hears a higher priority sends one advert of its own before it yields
    # (higher_prio_send_advert): the winner of a healed split brain hears a lower priority
    # and answers with gratuitous ARP, so the client follows at once.
    higher_prio_send_advert: bool = False
    # Every LB also keeps the VIP on its loopback (host scope), and answers ARP only for
    # addresses on the NIC asked (arp_ignore 1, arp_announce 2): the VIP on the lab NIC,
    # where keepalived puts it, is still what the network sees. A connection sent to an LB
    # that has just given the VIP up (the client's ARP entry not moved yet) is then served
    # by its HAProxy, or refused at once when HAProxy is dead, instead of dropped: a dropped
    # SYN costs the client its 1 s retransmission.
    vip_on_loopback: bool = False
    # Gratuitous ARP from the MASTER every N s (keepalived's garp_master_refresh). The guide
    # has none: after a split brain heals, nothing makes the client forget the other LB's
    # MAC until its ARP entry expires (see lab.timing.arp_after_heal).
    garp_master_refresh: Annotated[int, Field(ge=1, le=3600)] | None = None

    @model_validator(mode="after")
    def _version_rules(self) -> Keepalived:
        if self.vrrp_version == 2 and self.advert_int != int(self.advert_int):
            raise ValueError(
                "VRRPv2 takes advert_int in whole seconds; use vrrp_version: 3 for sub-second"
            )
        if self.vrrp_version == 3 and self.auth_pass is not None:
            raise ValueError("VRRPv3 has no authentication; set `auth_pass: null`")
        if self.check is None and self.track_file is None:
            raise ValueError("keepalived needs a way to learn that HAProxy is gone: a `check` "
                             "(vrrp_script) or a `track_file`, or both")
        return self


class HealthCheck(_Strict):
    """HAProxy's server checks towards the masters (ms, counts)."""

    inter_ms: Annotated[int, Field(ge=10, le=3_600_000)] = 2000
    fall: Annotated[int, Field(ge=1, le=1000)] = 3
    rise: Annotated[int, Field(ge=1, le=1000)] = 2
    # Between the checks of a server changing state (fastinter) and of a DOWN server
    # (downinter); null: `inter`, as HAProxy does.
    fastinter_ms: Annotated[int, Field(ge=10, le=3_600_000)] | None = None
    downinter_ms: Annotated[int, Field(ge=10, le=3_600_000)] | None = None

    @property
    def transition_ms(self) -> int:
        """Between the checks that take a server UP or DOWN once the first one has told."""
        return self.fastinter_ms or self.inter_ms

    @property
    def down_ms(self) -> int:
        """Between the checks of a server that is DOWN."""
        return self.downinter_ms or self.inter_ms


class Haproxy(_Strict):
    check: HealthCheck = HealthCheck()
    # How HAProxy checks the API servers. tcp: a connect (the guide's `check`); healthz:
    # GET /healthz over TLS, expecting 200 (the kubeadm HA guide's); auto: healthz for a
    # real control plane (`kubernetes.control_plane: kubeadm`), tcp for the stand-ins.
    api_check: Literal["auto", "tcp", "healthz"] = "auto"
    # HAProxy's `timeout check` (ms): how long a check may take; none = `timeout connect`.
    timeout_check_ms: Annotated[int, Field(ge=10)] | None = None
    # Retry a failed connection on another server: hides a dead master from new clients.
    redispatch: bool = False
    retries: Annotated[int, Field(ge=0, le=1000)] | None = None
    # The statistics page on the :80 listener (the guide's): served through the VIP to
    # anyone who reaches port 80 (`halab lint` warns); null drops it. A URI path only: it is
    # written into haproxy.cfg, where `#`, quotes or blanks would change what it says.
    stats_uri: Annotated[str, Field(pattern=r"^/[A-Za-z0-9._~/?=&%-]{0,100}$")] | None = (
        "/haproxy?stats")
    # HAProxy's `timeout connect` (ms), towards the servers: how long a connection to a
    # master that vanished (no reset) hangs before HAProxy retries elsewhere.
    timeout_connect_ms: Annotated[int, Field(ge=10, le=3_600_000)] = 5000


class Kubernetes(_Strict):
    """What runs on the control-plane nodes.

    `standin` (default, offline): nginx answering like kube-apiserver on 6443.
    `kubeadm`: a real control plane from the Kubernetes package repositories (VM provider,
    needs internet): `kubeadm init --control-plane-endpoint VIP:6443 --upload-certs` on the
    first master, the others joined with `--control-plane --certificate-key`.
    """

    control_plane: Literal["standin", "kubeadm"] = "standin"
    version: Annotated[str, Field(pattern=r"^1\.[0-9]+\.[0-9]+$")] = "1.30.6"
    pod_subnet: Subnet = ipaddress.IPv4Network("10.244.0.0/16")
    # kube-apiserver refuses a service range wider than /12 (20 bits of addresses).
    service_subnet: Subnet = ipaddress.IPv4Network("10.96.0.0/12")

    @field_validator("service_subnet")
    @classmethod
    def _not_too_wide(cls, net: ipaddress.IPv4Network) -> ipaddress.IPv4Network:
        if net.prefixlen < 12:
            raise ValueError(f"{net} is wider than kube-apiserver takes (a /12 at most)")
        return net

    @model_validator(mode="after")
    def _apart(self) -> Kubernetes:
        if self.pod_subnet.overlaps(self.service_subnet):
            raise ValueError(f"pod_subnet {self.pod_subnet} and service_subnet "
                             f"{self.service_subnet} overlap; give them ranges of their own")
        return self


class Vagrant(_Strict):
    """The VM provider's settings (ignored by the embedded lab)."""

    # auto: kvm where hardware virtualisation works, qemu (TCG, software) otherwise.
    driver: Literal["auto", "kvm", "qemu"] = "auto"
    # isolated: libvirtd, dnsmasq and vagrant in a namespace of the lab's own, their state in
    # the lab's folder (tests, CI). system: this machine's libvirt (a user's workstation).
    # auto: system when a libvirtd already answers here, isolated otherwise.
    libvirt: Literal["auto", "isolated", "system"] = "auto"
    box: BoxName = "halab/debian12"
    boot_timeout: Annotated[int, Field(ge=30, le=86400)] = 900


ProfileName = Literal["seed", "kubeadm-guide", "fast"]
assert set(ProfileName.__args__) == set(profiles.PROFILES)  # type: ignore[attr-defined]


class Topology(_Strict):
    name: Annotated[str, Field(pattern=r"^[a-z][a-z0-9]{0,11}$")] = "halab"
    # The keepalived and HAProxy settings the file starts from (lab.profiles); the file's
    # own `keepalived:` and `haproxy:` values win, key by key.
    profile: ProfileName = "seed"
    provider: Literal["netns", "vagrant", "hosts"] = "netns"
    kubernetes: Kubernetes = Kubernetes()
    vagrant: Vagrant = Vagrant()
    network: Network = Network()
    vip: Address
    nodes: Annotated[list[Node], Field(min_length=1, max_length=MAX_NODES)]
    keepalived: Keepalived = Keepalived()
    haproxy: Haproxy = Haproxy()

    @model_validator(mode="before")
    @classmethod
    def _profile_first(cls, data: Any) -> Any:
        return profiles.apply(data) if isinstance(data, dict) else data

    @field_validator("name")
    @classmethod
    def _lab_name_free(cls, v: str) -> str:
        if v in RESERVED_LAB_NAMES:
            raise ValueError(f"'{v}' is a name halab already uses (.halab/{v} or the "
                             f"namespaces halab-{v}-*); pick another lab name")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> Topology:
        names = [n.name for n in self.nodes]
        for dup in sorted({n for n in names if names.count(n) > 1}):
            raise ValueError(f"node name '{dup}' appears more than once; node names must be unique")
        ports = [switch_port(names, n) for n in names]
        for dup in sorted({p for p in ports if ports.count(p) > 1}):
            owners = ", ".join(n for n, p in zip(names, ports, strict=True) if p == dup)
            raise ValueError(f"nodes {owners} would share the switch port '{dup}' (a name "
                             f"longer than {IFNAME_MAX} characters becomes port<index>); rename "
                             "one")
        addrs = [n.address for n in self.nodes]
        for dup in sorted({a for a in addrs if addrs.count(a) > 1}):
            owners = ", ".join(n.name for n in self.nodes if n.address == dup)
            raise ValueError(f"address {dup} is given to more than one node ({owners})")
        net = self.network.subnet
        for n in self.nodes:
            if not is_host_of(n.address, net):
                raise ValueError(
                    f"node {n.name}'s address {n.address} is not a host address of the lab "
                    f"subnet {net}"
                )
        if not is_host_of(self.vip, net):
            raise ValueError(f"the VIP {self.vip} is not a host address of the lab subnet {net}")
        k8s = self.kubernetes
        if k8s.control_plane == "kubeadm":  # the stand-in has no pods and no services
            for what, other in (("pod_subnet", k8s.pod_subnet),
                                ("service_subnet", k8s.service_subnet)):
                if other.overlaps(net):
                    raise ValueError(f"kubernetes.{what} {other} overlaps the lab subnet {net}; "
                                     "give the cluster a range of its own")
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


def is_host_of(address: ipaddress.IPv4Address, net: ipaddress.IPv4Network) -> bool:
    """``address`` is one of ``net.hosts()`` (neither its network nor its broadcast
    address), by arithmetic: enumerating a /8 takes gigabytes."""
    return net.network_address < address < net.broadcast_address


# -- loading -----------------------------------------------------------------------------
def load(path: str | Path = DEFAULT_LAB_FILE, profile: str | None = None) -> Topology:
    """Read and validate a lab file; every failure is a one-paragraph ``LabFileError``.

    ``profile``: the lab with that profile's settings instead of the file's (its own
    `keepalived:` and `haproxy:` sections are set aside): how `halab bench` compares them.
    """
    p = Path(path)
    try:
        if p.is_file() and p.stat().st_size > inputs.MAX_FILE_BYTES:
            # Not read at all: -f naming a disk image must not fill the memory.
            raise LabFileError(f"{p}: {p.stat().st_size} bytes is far more than a lab file "
                               f"needs (at most {inputs.MAX_FILE_BYTES}); check that -f names "
                               "the right file.")
        data = p.read_bytes()
    except FileNotFoundError:
        raise LabFileError(
            f"{p}: no such lab file. Run from the folder that holds lab.yaml, or name the file "
            "with `-f PATH` (pytest: `--lab-file PATH`)."
        ) from None
    except OSError as e:
        raise LabFileError(f"{p}: cannot read the lab file ({e.strerror}).") from None
    return parse(inputs.decode(data, str(p), LabFileError), source=str(p), profile=profile)


def renamed(text: str, name: str, header: str) -> str:
    """A lab file's text with ``name:`` replaced and nothing else (comments lost), under a
    header line that says where it came from: another lab of the same shape, which a
    person and `halab -f` read like any lab file (a class's learners, a test worker's)."""
    data = inputs.load_yaml(text, "lab file", LabFileError)
    data = {"name": name, **{k: v for k, v in data.items() if k != "name"}}
    return f"# {header}\n" + yaml.safe_dump(data, sort_keys=False)


def parse(text: str, source: str = DEFAULT_LAB_FILE, profile: str | None = None) -> Topology:
    """Validate the text of a lab file; every failure is a one-paragraph ``LabFileError``
    (never another exception, whatever the text: tests/unit/test_hostile_properties.py)."""
    data = inputs.load_yaml(text, source, LabFileError, hint=(
        " Fix the indentation or quoting there; every value must be `key: value` under its "
        "section."))
    if not isinstance(data, dict):
        raise LabFileError(f"{source}: the lab file must be a YAML mapping with at least `vip` "
                           "and `nodes`; see the lab.yaml that ships with halab.")
    if profile is not None:
        if profile not in profiles.PROFILES:
            raise LabFileError(f"unknown profile {profile!r}; the profiles are "
                               f"{', '.join(profiles.names())}.")
        data = {k: v for k, v in data.items() if k not in profiles.SECTIONS}
        data["profile"] = profile
    try:
        return Topology.model_validate(data)
    except ValidationError as e:
        raise LabFileError(inputs.clip(_describe(source, data, e))) from None


def _where(data: Any, loc: tuple[int | str, ...]) -> str:
    """nodes.2.roles.0 -> nodes[2] (k8s-master-01).roles[0]: names beat indexes."""
    out, cur = "", data
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
            try:
                cur = cur[part]
                if isinstance(cur, dict) and isinstance(cur.get("name"), str):
                    out += f" ({inputs.quote(cur['name'], 40).strip(chr(39))})"
            except (IndexError, KeyError, TypeError):
                cur = None
        else:
            shown = inputs.quote(part, 40).strip("'")  # a key is the user's text too
            out += f".{shown}" if out else shown
            cur = cur.get(part) if isinstance(cur, dict) else None
    return out


def _describe(source: str, data: Any, err: ValidationError) -> str:
    problems = []
    errors = err.errors()
    for e in errors[: inputs.MAX_PROBLEMS]:
        loc = tuple(p for p in e["loc"] if not (isinstance(p, str) and p.startswith("function-")))
        where = _where(data, loc) if loc else ""
        kind, msg = e["type"], e["msg"].removeprefix("Value error, ")
        if kind == "extra_forbidden":
            msg = (f"unknown key `{inputs.quote(loc[-1], 40).strip(chr(39))}`: remove it or "
                   "check its spelling")
        elif kind == "missing":
            msg = "is required but missing"
        elif kind == "enum":
            what = "role" if "role" in where else "value"
            roles = ", ".join(r.value for r in Role)
            msg = f"unknown {what} {inputs.quote(e['input'])}; expected one of {roles}"
        elif kind in ("ip_v4_address", "ip_v4_network"):
            msg = (f"{inputs.quote(e['input'])} is not an IPv4 "
                   f"{'network' if 'network' in kind else 'address'}")
        elif kind == "string_pattern_mismatch":
            msg = f"{inputs.quote(e['input'])} is not allowed here ({msg})"
        problems.append(f"{where}: {msg}" if where else msg)
    if len(errors) > inputs.MAX_PROBLEMS:
        problems.append(f"and {len(errors) - inputs.MAX_PROBLEMS} more problem(s)")
    head = f"{source}: invalid lab file: "
    fix = " Fix the value(s) named and run the command again."
    return head + "; ".join(problems) + "." + fix
