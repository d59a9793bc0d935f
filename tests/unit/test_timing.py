"""Failover bounds follow the configuration (RFC 3768 / 5798 timers, keepalived tracking)."""

from __future__ import annotations

import pytest

from lab import timing, topology


def test_master_down_interval_vrrpv2():
    # 3 x advert_int + (256 - 99) / 256
    assert timing.master_down_interval(99, 1, 2) == pytest.approx(3.613, abs=1e-3)


def test_skew_scales_with_advert_in_vrrpv3():
    assert timing.skew_time(100, 0.1, 3) == pytest.approx(0.0609, abs=1e-4)
    assert timing.skew_time(100, 1, 2) == pytest.approx(0.609, abs=1e-3)


def test_default_haproxy_crash_bound(default_topo):
    # interval 2 x fall 1 + master-down for lb02 at 99 + weight 2 = 101
    b = timing.haproxy_crash(default_topo)
    assert b.seconds == pytest.approx(2 + 3 + (256 - 101) / 256)
    assert b.with_margin == b.seconds + timing.MARGIN_S
    assert timing.haproxy_crash_fails_over(default_topo)


def test_kubeadm_guide_profile_is_slow(default_text):
    text = default_text.replace("interval: 2 ", "interval: 3 ").replace(
        "weight: 2", "weight: -2").replace("fall: 1", "fall: 10")
    b = timing.haproxy_crash(topology.parse(text))
    assert b.seconds == pytest.approx(30 + 3 + (256 - 99) / 256)


def test_weight_too_small_never_fails_over(default_text):
    text = default_text.replace("priority: 99", "priority: 90")
    assert not timing.haproxy_crash_fails_over(topology.parse(text))


def test_weight_zero_goes_to_fault_and_only_waits_skew(default_text):
    topo = topology.parse(default_text.replace("weight: 2", "weight: 0"))
    assert timing.haproxy_crash(topo).seconds == pytest.approx(2 + (256 - 99) / 256)


def test_keepalived_stop_and_node_crash(default_topo):
    # The fast path alone: the priority-0 advert, then the skew time; the margin (1 s here)
    # keeps the bound below the slow path's earliest end (2 x advert_int + skew).
    b = timing.keepalived_stop(default_topo)
    assert b.seconds == pytest.approx((256 - 101) / 256)
    assert b.with_margin == pytest.approx((256 - 101) / 256 + 1.0)
    assert timing.node_crash(default_topo).seconds == pytest.approx(3 + (256 - 101) / 256)


def test_preempt_back_waits_check_and_master_down(default_topo):
    assert timing.preempt_back(default_topo).seconds == pytest.approx(2 + 3 + (256 - 102) / 256)


def test_haproxy_backend_bounds(default_topo):
    assert timing.backend_down(default_topo).seconds == pytest.approx(8.0)
    assert timing.backend_up(default_topo).seconds == pytest.approx(6.0)


def test_arp_after_heal_follows_garp_refresh_or_the_neighbour_timers(default_text):
    from provision import render

    guide = topology.parse(default_text)
    assert timing.arp_after_heal(guide).seconds == pytest.approx(45 + 5 + 3)
    refreshed = topology.parse(default_text.replace('auth_pass: "1111"',
                                                    'auth_pass: "1111"\n  garp_master_refresh: 5'))
    assert timing.arp_after_heal(refreshed).seconds == 5
    assert "  garp_master_refresh 5\n" in render.keepalived_conf(refreshed, refreshed.node("lb01"))
