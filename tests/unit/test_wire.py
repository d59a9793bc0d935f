"""The VRRP parser and what the adverts say, on hand-built packets (no root, no lab)."""

from __future__ import annotations

import socket
import struct

import pytest

from lab import wire

LB01, LB02, VIP = "192.168.0.101", "192.168.0.102", "192.168.0.203"
MAC1, MAC2 = bytes.fromhex("0242c0a80065"), bytes.fromhex("0242c0a80066")

# A frame lb01's keepalived 2.2.7 sent to lb02 in the embedded lab (unicast VRRPv2, VRID
# 51, priority 100 + check weight 2, auth PASS "1111", advert_int 1, the VIP).
RECORDED = bytes.fromhex(
    "0242c0a800660242c0a80065080045c0002800760000ff703814c0a80065c0a8006621336601010153f4"
    "c0a800cb3131313100000000")


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    s = (s >> 16) + (s & 0xFFFF)
    s += s >> 16
    return ~s & 0xFFFF


def vrrp_v2(vrid: int, prio: int, addrs: list[str], advert_int: int = 1,
            auth: bytes = b"1111") -> bytes:
    body = struct.pack("!BBBBBBH", 0x21, vrid, prio, len(addrs), 1, advert_int, 0)
    body += b"".join(socket.inet_aton(a) for a in addrs) + auth.ljust(8, b"\0")
    return body[:6] + struct.pack("!H", _checksum(body)) + body[8:]


def vrrp_v3(vrid: int, prio: int, addrs: list[str], centis: int = 10) -> bytes:
    body = struct.pack("!BBBBHH", 0x31, vrid, prio, len(addrs), centis & 0x0FFF, 0)
    return body + b"".join(socket.inet_aton(a) for a in addrs)


def ipv4(src: str, dst: str, payload: bytes, proto: int = 112, ttl: int = 255,
         options: bytes = b"") -> bytes:
    ihl = (20 + len(options)) // 4
    head = struct.pack("!BBHHHBBH4s4s", 0x40 | ihl, 0xC0, 20 + len(options) + len(payload),
                       0, 0, ttl, proto, 0, socket.inet_aton(src), socket.inet_aton(dst))
    head += options
    return head[:10] + struct.pack("!H", _checksum(head)) + head[12:] + payload


def ether(payload: bytes, ethertype: int = 0x0800, vlan: int | None = None) -> bytes:
    tag = struct.pack("!HH", 0x8100, vlan) if vlan is not None else b""
    return MAC2 + MAC1 + tag + struct.pack("!H", ethertype) + payload


def test_hand_built_v2_advert():
    a = wire.parse_frame(ether(ipv4(LB01, LB02, vrrp_v2(51, 102, [VIP]))), 7.5)
    assert a == wire.Advert(7.5, LB01, LB02, 2, 51, 102, 1.0, (VIP,), 255)


def test_recorded_keepalived_frame_parses_like_the_hand_built_one():
    assert wire.parse_frame(RECORDED, 1.0) == wire.parse_frame(
        ether(ipv4(LB01, LB02, vrrp_v2(51, 102, [VIP]))), 1.0)


def test_v3_advert_interval_in_centiseconds_and_multicast():
    a = wire.parse_frame(ether(ipv4(LB02, "224.0.0.18", vrrp_v3(7, 99, [VIP, "10.0.0.9"], 10))),
                         0.0)
    assert a is not None
    assert (a.version, a.vrid, a.priority, a.advert_int) == (3, 7, 99, 0.1)
    assert a.addresses == (VIP, "10.0.0.9") and a.dst == "224.0.0.18"


def test_priority_zero_and_vlan_tag_and_ip_options():
    frame = ether(ipv4(LB01, LB02, vrrp_v2(51, 0, [VIP]), options=b"\x94\x04\0\0"), vlan=5)
    a = wire.parse_frame(frame, 0.0)
    assert a is not None and a.priority == 0 and a.src == LB01


@pytest.mark.parametrize("frame", [
    ether(ipv4(LB01, LB02, b"\x45" * 20, proto=6)),            # TCP, not VRRP
    ether(b"\x00" * 28, ethertype=0x0806),                     # ARP
    ether(ipv4(LB01, LB02, vrrp_v2(51, 100, [VIP]))[:30]),     # cut short
    ether(ipv4(LB01, LB02, b"\x22" + vrrp_v2(51, 100, [VIP])[1:])),  # type 2: no such type
    ether(ipv4(LB01, LB02, b"\x41" + vrrp_v2(51, 100, [VIP])[1:])),  # version 4
    b"\x00" * 10,
], ids=["tcp", "arp", "truncated", "bad-type", "bad-version", "runt"])
def test_anything_else_is_not_an_advert(frame):
    assert wire.parse_frame(frame, 0.0) is None


def adv(t: float, src: str, prio: int, advert_int: float = 1.0, vrid: int = 51) -> wire.Advert:
    return wire.Advert(t, src, "x", 2, vrid, prio, advert_int, (VIP,), 255)


def _failover(t_fault: float, takeover: float) -> list[wire.Advert]:
    """lb01 advertises every second; after the fault it goes on (lower priority) until lb02
    takes over at ``takeover``; then only lb02 advertises."""
    out = [adv(float(t), LB01, 102) for t in range(0, int(t_fault) + 1)]
    out += [adv(t + 0.3, LB01, 100) for t in range(int(t_fault) + 1, int(takeover))]
    out += [adv(takeover + i, LB02, 101) for i in range(5)]
    return out


def test_master_starts_and_became_master():
    ads = _failover(t_fault=10.0, takeover=13.6)
    assert wire.master_starts(ads) == [(LB01, 0.0), (LB02, 13.6)]
    assert wire.became_master(ads, LB02, after=10.0) == 13.6
    # lb01 was already MASTER before the fault: it did not *become* MASTER after it.
    assert wire.became_master(ads, LB01, after=10.0) is None
    assert wire.resignations(ads) == []


def test_order_of_arrival_does_not_matter():
    ads = _failover(10.0, 13.6)
    assert wire.became_master(list(reversed(ads)), LB02, after=10.0) == 13.6


def test_a_return_after_silence_is_a_new_start():
    ads = [adv(0, LB01, 102), adv(1, LB01, 102), adv(9, LB01, 102), adv(10, LB01, 102)]
    assert wire.master_starts(ads) == [(LB01, 0), (LB01, 9)]
    # Within 3 x advert_int + 1 s it is the same tenure.
    assert wire.master_starts([adv(0, LB01, 102), adv(3.9, LB01, 102)]) == [(LB01, 0)]


def test_priority_zero_ends_a_tenure_and_is_reported():
    ads = [adv(0, LB01, 102), adv(1, LB01, 102), adv(1.4, LB01, 0), adv(2.0, LB02, 101),
           adv(2.5, LB01, 102)]
    assert wire.resignations(ads, after=1.0) == [adv(1.4, LB01, 0)]
    assert wire.resignations(ads, after=1.5) == []
    assert wire.master_starts(ads) == [(LB01, 0), (LB02, 2.0), (LB01, 2.5)]


def test_other_virtual_routers_are_ignored_when_asked():
    ads = [adv(0, LB01, 102), adv(0.5, LB02, 200, vrid=52)]
    assert wire.master_starts(ads, vrid=51) == [(LB01, 0)]
    assert wire.became_master(ads, LB02, after=0, vrid=51) is None
    assert wire.became_master(ads, LB02, after=0) == 0.5


def test_bpf_filter_is_well_formed():
    # Each jump lands inside the program, and every path ends in a return.
    prog = wire._BPF_VRRP
    for i, (code, jt, jf, _) in enumerate(prog):
        if code & 0x07 == 0x05:  # BPF_JMP
            assert i + 1 + max(jt, jf) < len(prog)
    assert all(code == 0x06 for code, *_ in prog[-2:])


def arp(sender_ip: str, target_ip: str, op: int = 1, mac: bytes = MAC1) -> bytes:
    return struct.pack("!HHBBH", 1, 0x0800, 6, 4, op) + mac + socket.inet_aton(sender_ip) \
        + b"\0" * 6 + socket.inet_aton(target_ip)


def test_gratuitous_arp_is_read_and_told_from_a_request():
    g = wire.parse_frame(ether(arp(VIP, VIP), ethertype=0x0806), 3.0)
    assert g == wire.Arp(3.0, 1, "02:42:c0:a8:00:65", VIP, VIP) and g.gratuitous
    q = wire.parse_frame(ether(arp(LB01, VIP), ethertype=0x0806), 3.0)
    assert isinstance(q, wire.Arp) and not q.gratuitous
    assert wire.parse_frame(ether(arp(VIP, VIP)[:20], ethertype=0x0806), 3.0) is None
    tagged = wire.parse_frame(ether(arp(VIP, VIP, op=2), ethertype=0x0806, vlan=5), 1.0)
    assert isinstance(tagged, wire.Arp) and tagged.op == 2
    assert wire.announced([g, q], VIP, after=2.0) == 3.0
    assert wire.announced([g], VIP, after=3.5) is None
