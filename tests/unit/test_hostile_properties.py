"""Properties of the loaders, for any input: a result or a HalabError, never another
exception, and within a deadline (hypothesis fails an example slower than ``deadline``).

The lab file loader gets YAML-ish text (fragments of lab.yaml, anchors, aliases, brackets,
odd characters) and the default lab.yaml with one value replaced, a key removed or added;
the fault parameter parser gets any `-p` items and any parameter mappings.
"""

from __future__ import annotations

import copy
from datetime import timedelta
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lab import faults, inputs, topology
from lab.errors import HalabError, LabFileError

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_TEXT = (ROOT / "lab.yaml").read_text()
DEFAULT: dict[str, Any] = yaml.safe_load(DEFAULT_TEXT)
TOPO = topology.parse(DEFAULT_TEXT)

# Generous for a loaded 2-core machine; the loaders answer in milliseconds.
PROPERTY = settings(deadline=timedelta(seconds=2), max_examples=300,
                    suppress_health_check=[HealthCheck.too_slow])


def _parse_or_refuse(text: str) -> None:
    try:
        topology.parse(text)
    except LabFileError as e:
        msg = str(e)
        assert "\n" not in msg and len(msg) <= inputs.MAX_MESSAGE, msg[:300]


# -- YAML-ish text -----------------------------------------------------------------------------
FRAGMENTS = [line + "\n" for line in DEFAULT_TEXT.splitlines()] + [
    "&a ", "*a", "&b ", "*b", "<<: *a\n", "[", "]", "{", "}", ", ", ": ", "- ", "  ", "\t",
    "\n", "? ", "!!str ", "!!python/object:os.system ", "'", '"', "#", "|\n", ">\n", "---\n",
    "...\n", "%YAML 1.1\n", "~", "null", ".nan", ".inf", "-.inf", "0x1f", "1e400", "10.0.0.0/8",
    "0.0.0.0/0", "192.168.0.255", "$(id)", "`id`", ";", "\\", "é", "\u202e", "\ufeff",
    "nodes:", "vip:", "network:", "subnet:", "name:", "keepalived:", "script:",
]
yamlish = st.lists(st.one_of(st.sampled_from(FRAGMENTS), st.text(max_size=8)),
                   max_size=60).map("".join)


@PROPERTY
@given(yamlish)
def test_any_yamlish_text_gives_a_topology_or_a_lab_file_error(text):
    _parse_or_refuse(text)


@PROPERTY
@given(st.text(max_size=300))
def test_any_text_gives_a_topology_or_a_lab_file_error(text):
    _parse_or_refuse(text)


@PROPERTY
@given(st.binary(max_size=300))
def test_any_bytes_give_a_topology_or_a_lab_file_error(data):
    try:
        text = inputs.decode(data, "lab.yaml", LabFileError)
    except LabFileError:
        return
    _parse_or_refuse(text)


# -- the default lab.yaml, mutated --------------------------------------------------------------
scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=40),
    st.sampled_from(["10.0.0.0/8", "0.0.0.0/0", "192.168.0.0/24", "192.168.0.7",
                     "192.168.0.255", "lo", "br0", "box", "client", "MASTER", "eth0",
                     "/usr/bin/killall -0 haproxy\nx", '"; reboot; "', "$(id)", "{", "}"]))
values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=12), inner, max_size=4)),
    max_leaves=12)


def _paths(data: Any, prefix: tuple = ()) -> list[tuple]:
    """Every path into the default lab.yaml, containers included."""
    out = [prefix] if prefix else []
    if isinstance(data, dict):
        for k, v in data.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(data, list):
        for i, v in enumerate(data):
            out += _paths(v, (*prefix, i))
    return out


PATHS = _paths(DEFAULT)


@st.composite
def mutated(draw: st.DrawFn) -> dict[str, Any]:
    data = copy.deepcopy(DEFAULT)
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(PATHS))
        parent: Any = data
        try:
            for p in path[:-1]:
                parent = parent[p]
            how = draw(st.sampled_from(["replace", "delete", "add"]))
            if how == "replace":
                parent[path[-1]] = draw(values)
            elif how == "delete":
                del parent[path[-1]]
            elif isinstance(parent, dict):
                parent[draw(st.text(max_size=12))] = draw(values)
            elif isinstance(parent, list):
                parent.append(draw(values))
        except (KeyError, IndexError, TypeError):
            pass  # an earlier mutation removed or retyped this path's parent
    return data


@PROPERTY
@given(mutated())
def test_any_mutation_of_the_default_lab_gives_a_topology_or_a_lab_file_error(data):
    _parse_or_refuse(yaml.safe_dump(data, allow_unicode=True))


@PROPERTY
@given(mutated())
def test_a_topology_that_loads_renders_only_safe_lines(data):
    """Whatever passes validation keeps each keepalived setting on its own line."""
    from provision import render

    try:
        topo = topology.parse(yaml.safe_dump(data, allow_unicode=True))
    except LabFileError:
        return
    for lb in topo.load_balancers:
        conf = render.keepalived_conf(topo, lb)
        assert conf.count("{") == conf.count("}"), conf
        assert conf.count('"') == 2, "only the script is quoted"


# -- fault parameters ------------------------------------------------------------------------------
param_values = st.one_of(st.text(max_size=20), st.integers(), st.floats(), st.booleans(),
                         st.none(), st.sampled_from(["nan", "inf", "-1", "0.001", "1e9",
                                                     "../../../tmp/x", "ssh", "haproxy"]))


@PROPERTY
@given(st.lists(st.text(max_size=30), max_size=5))
def test_any_param_items_give_params_or_a_halab_error(items):
    try:
        out = faults.parse_params(items)
    except HalabError as e:
        assert "\n" not in str(e)
        return
    assert all(inputs.TOKEN.fullmatch(k) for k in out)


@PROPERTY
@given(st.sampled_from(sorted(faults.CATALOGUE)),
       st.dictionaries(st.one_of(st.sampled_from(["service", "count", "percent", "ms",
                                                  "jitter_ms"]), st.text(max_size=10)),
                       param_values, max_size=3),
       st.lists(st.one_of(st.sampled_from([n.name for n in TOPO.nodes]), st.text(max_size=10)),
                max_size=3))
def test_any_fault_params_give_checked_params_or_a_halab_error(name, params, nodes):
    try:
        checked = faults.check_params(name, params, TOPO)
        faults.check_nodes(name, TOPO, nodes)
    except HalabError as e:
        assert "\n" not in str(e) and len(str(e)) <= inputs.MAX_MESSAGE
        return
    f = faults.CATALOGUE[name]
    for k, v in checked.items():  # what passed is within its rule, typed
        assert f.rules[k].check(name, k, v) == v
