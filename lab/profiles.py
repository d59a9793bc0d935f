"""Profiles: named sets of keepalived and HAProxy settings a lab.yaml starts from.

A profile gives the defaults of lab.yaml's `keepalived:` and `haproxy:` sections; whatever
the file sets itself wins, key by key. Pure data: the topology applies it, the templates
render it, lab.timing derives the failover bounds from the result, so a profile needs no
code of its own anywhere else.

- ``seed``: the guide this lab comes from (../shared/seed), value for value. The model's
  own defaults are the seed's, so the profile adds nothing.
- ``kubeadm-guide``: the kubeadm HA guide's keepalived and HAProxy (kubeadm's
  docs/ha-considerations.md): a check script that asks the API through the local HAProxy
  every 3 s and gives up after 10 failures, and HAProxy checking /healthz over TLS.
- ``fast``: halab's own tuning; each knob and what it buys is in the README's profile table.
"""

from __future__ import annotations

import copy
from typing import Any

SEED = "seed"
KUBEADM_GUIDE = "kubeadm-guide"
FAST = "fast"

# Profile name -> the lab.yaml sections it fills in (only `keepalived` and `haproxy`).
PROFILES: dict[str, dict[str, Any]] = {
    SEED: {},
    KUBEADM_GUIDE: {
        "keepalived": {
            "check": {
                "name": "check_apiserver",
                "script": "/etc/keepalived/check_apiserver.sh",
                "interval": 3,
                "weight": -2,
                "fall": 10,
                "rise": 2,
            },
        },
        "haproxy": {
            "api_check": "healthz",
            "redispatch": True,
            "retries": 1,
            "timeout_check_ms": 10000,
        },
    },
    # Each knob and what it bought, measured: README "Profiles"; why each exists: the
    # comments of provision/templates/{keepalived.conf,haproxy.cfg,haproxy-watch.sh}.j2.
    FAST: {
        "keepalived": {
            "vrrp_version": 3,
            "auth_pass": None,
            "advert_int": 0.1,
            "check": None,
            "track_file": {"weight": 0},
            "higher_prio_send_advert": True,
            "vip_on_loopback": True,
        },
        "haproxy": {
            "check": {"inter_ms": 200, "fastinter_ms": 100, "downinter_ms": 500,
                      "fall": 2, "rise": 2},
            "redispatch": True,
            "retries": 1,
            "timeout_connect_ms": 200,
        },
    },
}
SECTIONS = ("keepalived", "haproxy")


def names() -> list[str]:
    return list(PROFILES)


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def apply(data: dict[str, Any]) -> dict[str, Any]:
    """lab.yaml's mapping with its profile's sections filled in under the file's own values.

    An unknown profile name is left for the model to refuse (with the list of names).
    """
    profile = PROFILES.get(data.get("profile", SEED)) if isinstance(
        data.get("profile", SEED), str) else None
    if not profile:
        return data
    out = dict(data)
    for section in SECTIONS:
        own = data.get(section)
        if own is None:
            out[section] = copy.deepcopy(profile.get(section, {}))
        elif isinstance(own, dict):
            out[section] = _merge(profile.get(section, {}), own)
        # Anything else is a type error the model reports as such.
    return out


def overrides(data: dict[str, Any]) -> dict[str, Any]:
    """The sections lab.yaml sets itself (what a profile does not decide)."""
    return {s: data[s] for s in SECTIONS if isinstance(data.get(s), dict) and data[s]}
