"""The wire: VRRP adverts as they cross the lab's switch, a witness beside the LBs' own word.

halab times a VIP move by what each LB says it holds (observe.VipWatch). The adverts on the
lab's LAN say it independently: in VRRP only the MASTER advertises, so the moment an LB
starts to advertise is the moment it became MASTER, and a priority-0 advert is a MASTER
giving the VIP up on purpose (RFC 3768 5.3.4 / RFC 5798 5.2.4).

``VrrpCapture`` opens a raw packet socket inside the namespace that holds the lab's switch
(the provider says where: ``Provider.wire()``), bound to the bridge in promiscuous mode, so
that frames forwarded between any two ports are seen too (unicast VRRP goes LB to LB). A
classic BPF filter keeps only IP protocol 112. Each advert is stamped with the kernel's
receive time mapped onto this host's monotonic clock, the timeline's clock. It only
listens: no packet is ever sent.
"""

from __future__ import annotations

import ctypes
import ipaddress
import socket
import struct
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from types import TracebackType

from lab.probes import NetnsSockets

IPPROTO_VRRP = 112
ETH_P_ALL = 0x0003
ETH_P_IP = 0x0800
ETH_P_ARP = 0x0806
ETH_P_8021Q = 0x8100
SOL_PACKET = 263
PACKET_ADD_MEMBERSHIP = 1
PACKET_MR_PROMISC = 1
SO_ATTACH_FILTER = 26
SO_TIMESTAMPNS = 35
SIOCGIFINDEX = 0x8933

# tcpdump -dd 'arp or ip proto 112' (untagged frames): ARP, or IPv4 carrying VRRP.
_BPF_VRRP = [
    (0x28, 0, 0, 12),       # ldh [12]          ethertype
    (0x15, 3, 0, ETH_P_ARP),  # jeq #0x806        accept
    (0x15, 0, 3, ETH_P_IP),  # jeq #0x800         else drop
    (0x30, 0, 0, 23),       # ldb [23]          IP protocol
    (0x15, 0, 1, IPPROTO_VRRP),  # jeq #112     else drop
    (0x06, 0, 0, 0x40000),  # ret #262144       accept
    (0x06, 0, 0, 0),        # ret #0            drop
]


@dataclass(frozen=True)
class Advert:
    """One VRRP advertisement seen on the wire."""

    t: float  # when it crossed the switch: this host's time.monotonic()
    src: str  # the sender's IP address: the LB's own address
    dst: str  # 224.0.0.18, or the peer's address (unicast VRRP)
    version: int  # 2 or 3
    vrid: int
    priority: int  # 0: the MASTER is giving up the VIP
    advert_int: float  # seconds, as the advert itself declares it
    addresses: tuple[str, ...]  # the virtual addresses it carries
    ttl: int


@dataclass(frozen=True)
class Arp:
    """One ARP packet seen on the wire. A new VRRP MASTER announces the VIP with
    gratuitous ARP (sender and target address both the VIP): the moment a client's
    neighbour entry can follow it."""

    t: float
    op: int  # 1 request, 2 reply
    sender_mac: str
    sender_ip: str
    target_ip: str

    @property
    def gratuitous(self) -> bool:
        return self.sender_ip == self.target_ip


def parse_arp(packet: bytes, t: float) -> Arp | None:
    """An Ethernet/IPv4 ARP packet -> Arp; anything else -> None."""
    if len(packet) < 28:
        return None
    htype, ptype, hlen, plen, op = struct.unpack_from("!HHBBH", packet, 0)
    if htype != 1 or ptype != ETH_P_IP or hlen != 6 or plen != 4:
        return None
    return Arp(t, op, packet[8:14].hex(":"), socket.inet_ntoa(packet[14:18]),
               socket.inet_ntoa(packet[24:28]))


def parse_ip(packet: bytes, t: float) -> Advert | None:
    """An IPv4 packet carrying a VRRP advertisement -> Advert; anything else -> None."""
    if len(packet) < 20 or packet[0] >> 4 != 4:
        return None
    ihl = (packet[0] & 0x0F) * 4
    total = struct.unpack_from("!H", packet, 2)[0]
    if packet[9] != IPPROTO_VRRP or ihl < 20 or len(packet) < ihl + 8:
        return None
    ttl = packet[8]
    src = socket.inet_ntoa(packet[12:16])
    dst = socket.inet_ntoa(packet[16:20])
    vrrp = packet[ihl:min(total, len(packet))] if total >= ihl else packet[ihl:]
    if len(vrrp) < 8:
        return None
    version, kind = vrrp[0] >> 4, vrrp[0] & 0x0F
    if kind != 1 or version not in (2, 3):  # type 1 = ADVERTISEMENT, the only type
        return None
    vrid, priority, count = vrrp[1], vrrp[2], vrrp[3]
    if version == 2:
        advert_int = float(vrrp[5])  # whole seconds
    else:
        advert_int = (struct.unpack_from("!H", vrrp, 4)[0] & 0x0FFF) / 100  # centiseconds
    addrs = vrrp[8:8 + 4 * count]
    if len(addrs) < 4 * count:
        return None
    addresses = tuple(str(ipaddress.IPv4Address(addrs[i:i + 4])) for i in range(0, len(addrs), 4))
    return Advert(t, src, dst, version, vrid, priority, advert_int, addresses, ttl)


def parse_frame(frame: bytes, t: float) -> Advert | Arp | None:
    """An Ethernet frame (optionally 802.1Q-tagged) -> Advert or Arp, or None."""
    if len(frame) < 14:
        return None
    off, ethertype = 12, struct.unpack_from("!H", frame, 12)[0]
    if ethertype == ETH_P_8021Q and len(frame) >= 18:
        off, ethertype = 16, struct.unpack_from("!H", frame, 16)[0]
    if ethertype == ETH_P_ARP:
        return parse_arp(frame[off + 2:], t)
    if ethertype != ETH_P_IP:
        return None
    return parse_ip(frame[off + 2:], t)


# -- what the adverts say ----------------------------------------------------------------
def master_starts(adverts: list[Advert], vrid: int | None = None) -> list[tuple[str, float]]:
    """Each moment an LB started to advertise as MASTER: its first advert seen, or its
    first after a silence longer than the master-down interval it would have allowed
    (3 x its own advert_int + 1 s: the longest VRRPv2 skew). A priority-0 advert is a
    MASTER resigning, not advertising. Sorted by time."""
    starts: list[tuple[str, float]] = []
    last: dict[str, Advert] = {}
    for a in sorted(adverts, key=lambda a: a.t):
        if vrid is not None and a.vrid != vrid:
            continue
        if a.priority == 0:
            last.pop(a.src, None)  # it stopped being MASTER here
            continue
        prev = last.get(a.src)
        if prev is None or a.t - prev.t > 3 * a.advert_int + 1.0:
            starts.append((a.src, a.t))
        last[a.src] = a
    return starts


def became_master(adverts: list[Advert], src: str, after: float,
                  vrid: int | None = None) -> float | None:
    """When ``src`` started to advertise as MASTER at or after ``after`` (None: it did not).

    Only a start counts: an LB that was already advertising before ``after`` and went on
    has not *become* MASTER after it."""
    for who, t in master_starts(adverts, vrid):
        if who == src and t >= after:
            return t
    return None


def announced(arps: list[Arp], ip: str, after: float, mac: str | None = None) -> float | None:
    """The first gratuitous ARP for ``ip`` at or after ``after``, from ``mac`` if given
    (None: none seen)."""
    return min((a.t for a in arps if a.gratuitous and a.sender_ip == ip and a.t >= after
                and (mac is None or a.sender_mac == mac)), default=None)


def resignations(adverts: list[Advert], after: float = float("-inf"),
                 vrid: int | None = None) -> list[Advert]:
    """The priority-0 adverts at or after ``after``: a MASTER giving the VIP up."""
    return [a for a in sorted(adverts, key=lambda a: a.t)
            if a.priority == 0 and a.t >= after and (vrid is None or a.vrid == vrid)]


# -- capture -------------------------------------------------------------------------------
def _ifindex(sock: socket.socket, iface: str) -> int:
    """The interface's index in the socket's own namespace (if_nametoindex would ask this
    thread's namespace, which is not the switch's)."""
    import fcntl

    req = struct.pack("16si", iface.encode(), 0)
    return struct.unpack("16si", fcntl.ioctl(sock.fileno(), SIOCGIFINDEX, req))[1]


def _attach_filter(sock: socket.socket) -> None:
    code = b"".join(struct.pack("HBBI", *ins) for ins in _BPF_VRRP)
    buf = ctypes.create_string_buffer(code)
    prog = struct.pack("HL", len(_BPF_VRRP), ctypes.addressof(buf))
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, prog)


class VrrpCapture:
    """Listens to VRRP and ARP on ``iface`` inside the network namespace ``netns`` (None:
    this host's own) while the ``with`` block lasts; ``adverts`` and ``arps`` fill as they
    arrive.

        with VrrpCapture(*lab.provider.wire()) as cap:
            ...
        became_master(cap.adverts, "192.168.0.102", t_fault)
    """

    def __init__(self, netns: str | None, iface: str) -> None:
        self.netns, self.iface = netns, iface
        self.adverts: list[Advert] = []
        self.arps: list[Arp] = []  # ARP too: when the new holder announced the VIP
        self.error: BaseException | None = None
        self._sockets = NetnsSockets(netns)
        self._sock: socket.socket | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _open(self) -> socket.socket:
        sock = self._sockets.socket(socket.AF_PACKET, socket.SOCK_RAW)
        try:
            # The filter before the bind: no unfiltered frame is ever queued.
            _attach_filter(sock)
            sock.bind((self.iface, ETH_P_ALL))
            # Promiscuous on the bridge: it then passes up every frame it forwards between
            # ports, not only those addressed to itself. Dropped with the socket.
            mreq = struct.pack("iHH8s", _ifindex(sock, self.iface), PACKET_MR_PROMISC, 0, b"")
            sock.setsockopt(SOL_PACKET, PACKET_ADD_MEMBERSHIP, mreq)
            sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
            sock.settimeout(0.2)
        except BaseException:
            sock.close()
            raise
        return sock

    def _read(self, sock: socket.socket) -> None:
        try:
            while not self._stop.is_set():
                try:
                    frame, anc, _, addr = sock.recvmsg(65535, 64)
                except TimeoutError:
                    continue
                now_mono, now_wall = time.monotonic(), time.time()
                t = now_mono
                for level, kind, data in anc:
                    if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS:
                        sec, nsec = struct.unpack("qq", data[:16])
                        # The kernel stamped it on CLOCK_REALTIME: move that back by how
                        # long it waited in the queue, on the monotonic clock.
                        t = now_mono - max(0.0, now_wall - (sec + nsec / 1e9))
                # Outgoing copies (the bridge's own transmissions) are the same frames
                # again: keep what arrived from a port.
                if addr[2] == socket.PACKET_OUTGOING:
                    continue
                seen = parse_frame(frame, t)
                if isinstance(seen, Advert):
                    self.adverts.append(seen)
                elif isinstance(seen, Arp):
                    self.arps.append(seen)
        except BaseException as e:  # noqa: BLE001 - kept for check(), which raises it
            if not self._stop.is_set():
                self.error = e

    def __enter__(self) -> VrrpCapture:
        self._sock = self._open()
        self._stop.clear()
        self._thread = threading.Thread(target=self._read, args=(self._sock,), daemon=True,
                                        name=f"halab-wire-{self.iface}")
        self._thread.start()
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
        if self._sock is not None:
            self._sock.close()
        self._sockets.close()

    def __iter__(self) -> Iterator[Advert]:
        return iter(list(self.adverts))

    def check(self) -> None:
        """Raise if the capture broke while it ran: then the wire said nothing, which is
        not the same as "no advert"."""
        if self.error is not None:
            raise RuntimeError(f"the VRRP capture on {self.iface} died: {self.error!r}") \
                from self.error
        if self._thread is not None and self._thread.is_alive() and self._stop.is_set():
            raise RuntimeError(f"the VRRP capture on {self.iface} did not stop")
