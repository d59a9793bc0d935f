"""Profiles: what each renders (golden files), and how lab.yaml's own values win over them."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from lab import profiles, timing, topology
from lab.errors import LabFileError
from provision import render

ROOT = Path(__file__).resolve().parents[2]

GOLDEN = Path(__file__).with_name("golden")
# Profiles other than the seed keep their golden files in a folder of their name (the seed's
# are the top-level ones, held to the guide by test_render).
PROFILED = [p for p in profiles.names() if (GOLDEN / p).is_dir()]


def _topo(profile: str) -> topology.Topology:
    return topology.load(ROOT / "lab.yaml", profile=profile)


def test_every_profile_but_the_seed_has_golden_files():
    assert set(PROFILED) == set(profiles.names()) - {profiles.SEED}


@pytest.mark.parametrize("profile", PROFILED)
def test_haproxy_cfg_matches_the_profiles_golden_file(profile):
    assert render.haproxy_cfg(_topo(profile)) == (GOLDEN / profile / "haproxy.cfg").read_text()


@pytest.mark.parametrize("profile", PROFILED)
@pytest.mark.parametrize("lb", ["lb01", "lb02"])
def test_keepalived_conf_matches_the_profiles_golden_file(profile, lb):
    topo = _topo(profile)
    got = render.keepalived_conf(topo, topo.node(lb))
    assert got == (GOLDEN / profile / f"keepalived-{lb}.conf").read_text()


def test_the_kubeadm_guide_profile_is_the_guides_settings():
    topo = _topo(profiles.KUBEADM_GUIDE)
    c = topo.keepalived.check
    assert (c.name, c.script, c.interval, c.weight, c.fall, c.rise) == (
        "check_apiserver", "/etc/keepalived/check_apiserver.sh", 3, -2, 10, 2)
    cfg = render.haproxy_cfg(topo)
    for line in ("option httpchk", "http-check connect ssl", "http-check send meth GET uri "
                 "/healthz", "http-check expect status 200", "option redispatch", "retries 1",
                 "timeout check 10s"):
        assert line in cfg
    assert "192.168.0.111:6443 check fall 3 rise 2 verify none" in cfg
    assert render.check_apiserver_sh(topo) == (
        GOLDEN / profiles.KUBEADM_GUIDE / "check_apiserver.sh").read_text()


def test_the_kubeadm_guide_check_takes_half_a_minute_to_notice():
    """The guide's check: 10 failures 3 s apart before the VIP moves (its bound says so)."""
    assert timing.haproxy_crash(_topo(profiles.KUBEADM_GUIDE)).seconds >= 30


def test_the_seed_profile_is_the_model_defaults(default_text):
    spelled = topology.parse(default_text)
    shipped = topology.load(ROOT / "lab.yaml")
    assert shipped == spelled
    assert shipped.profile == profiles.SEED


def test_the_files_own_values_win_key_by_key():
    text = (ROOT / "lab.yaml").read_text().replace(
        "profile: seed", "profile: kubeadm-guide\nkeepalived:\n  check:\n    interval: 1\n")
    topo = topology.parse(text)
    # The one key the file sets is the file's; its neighbours are still the profile's.
    assert topo.keepalived.check.interval == 1
    assert topo.keepalived.check.fall == 10 and topo.keepalived.check.weight == -2
    assert topo.haproxy.retries == 1


def test_a_profile_asked_for_sets_the_files_own_settings_aside():
    text = (ROOT / "lab.yaml").read_text().replace(
        "profile: seed", "profile: seed\nkeepalived:\n  advert_int: 3\n")
    assert topology.parse(text).keepalived.advert_int == 3
    asked = topology.parse(text, profile=profiles.KUBEADM_GUIDE)
    assert asked.keepalived.advert_int == 1 and asked.profile == profiles.KUBEADM_GUIDE


def test_an_unknown_profile_is_refused_with_the_list():
    text = (ROOT / "lab.yaml").read_text().replace("profile: seed", "profile: quick")
    with pytest.raises(LabFileError) as e:
        topology.parse(text)
    assert "profile" in str(e.value) and "kubeadm-guide" in str(e.value)
    with pytest.raises(LabFileError) as e:
        topology.parse(text, profile="quick")
    assert "seed, kubeadm-guide, fast" in str(e.value)


@pytest.mark.skipif(not shutil.which("haproxy"), reason="haproxy is not installed")
@pytest.mark.parametrize("profile", profiles.names())
def test_haproxy_accepts_every_profiles_config(profile, tmp_path):
    cfg = tmp_path / "haproxy.cfg"
    cfg.write_text(render.haproxy_cfg(_topo(profile)))
    r = subprocess.run(["haproxy", "-c", "-f", str(cfg)], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def test_the_fast_profile_learns_of_haproxys_exit_from_the_watcher():
    """fast: no vrrp_script; a track file (weight 0: FAULT) written by the watcher, which
    HAProxy's unit feeds through a FIFO; its bounds follow from that path."""
    topo = _topo(profiles.FAST)
    k = topo.keepalived
    assert k.check is None and k.track_file is not None and k.track_file.weight == 0
    conf = render.keepalived_conf(topo, topo.node("lb01"))
    assert "vrrp_script" not in conf and "track_script" not in conf
    watcher = (GOLDEN / profiles.FAST / "haproxy-watch.sh").read_text()
    assert render.haproxy_watch_sh(topo) == watcher
    # The priority-0 advert's path alone: the backup's skew time, and a margin below half
    # the gap to the slow path (the backup's master-down timer).
    crash = timing.haproxy_crash(topo)
    skew = timing.skew_time(99, k.advert_int, 3)
    assert crash.seconds == timing.keepalived_stop(topo).seconds == skew
    slow = timing.master_down_interval(99, k.advert_int, 3) - k.advert_int
    assert crash.with_margin < (skew + slow) / 2 + 1e-9
    assert timing.preempt_back(topo).seconds == (
        timing.WATCH_LISTEN_POLL_S + timing.master_down_interval(100, k.advert_int, 3))
    assert timing.arp_after_heal(topo).seconds == k.advert_int


def test_the_fast_profile_deploys_the_watcher_before_keepalived():
    from provision import roles

    topo = _topo(profiles.FAST)

    class _Node:
        spec = topo.node("lb01")

    units = [s.unit for s in roles.loadbalancer(topo, _Node(), None)]  # type: ignore[arg-type]
    assert [u.name for u in units] == ["haproxy", "haproxy-watch", "keepalived"]
    # HAProxy itself is the unit's main process: the wrapper shell execs it.
    assert "exec /usr/sbin/haproxy " in units[0].argv[-1]
    seed = topology.load(ROOT / "lab.yaml")
    assert [s.unit.name for s in roles.loadbalancer(seed, _Node(), None)] == [  # type: ignore[arg-type]
        "haproxy", "keepalived"]
