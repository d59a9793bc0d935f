"""What makes the lab and the suite fast, offline: a lab per pytest-xdist worker, the
bring-up's timings, a node's files in one archive."""

from __future__ import annotations

import io
import tarfile
import time

from lab import timings, topology
from lab.pytest_plugin import worker_lab_file, worker_lab_name
from lab.transport import put_files, tar_of


def test_a_worker_lab_is_named_after_the_lab_and_the_worker():
    assert worker_lab_name("halab", "gw0") == "halabgw0"
    long = worker_lab_name("abcdefghijkl", "gw12")  # a 12-character lab name
    assert long == "abcdefghgw12" and len(long) == 12


def test_worker_lab_names_are_lab_names(default_text):
    for name in (worker_lab_name("halab", "gw0"), worker_lab_name("abcdefghijkl", "gw12"),
                 worker_lab_name("f", "gw3")):
        text = default_text.replace("name: halab", f"name: {name}", 1)
        assert topology.parse(text).name == name


def test_a_worker_lab_file_is_the_base_renamed_beside_it(tmp_path, default_text, default_topo):
    base = tmp_path / "lab.yaml"
    base.write_text(default_text)
    f = worker_lab_file(base, "gw1")
    assert f == tmp_path / ".halab" / "_xdist" / "halabgw1.yaml"
    topo = topology.load(f)
    assert topo == default_topo.model_copy(update={"name": "halabgw1"})
    assert worker_lab_file(base, "gw1") == f  # the same file again, unchanged


def test_a_nodes_files_travel_as_one_archive_with_their_modes():
    files = [("/etc/kubernetes/pki/apiserver.key", b"secret", 0o600),
             ("/etc/halab/ingress/nginx.conf", b"events {}\n", 0o644)]
    with tarfile.open(fileobj=io.BytesIO(tar_of(files))) as tar:
        got = {m.name: (tar.extractfile(m).read(), m.mode, m.uid, m.uname)
               for m in tar.getmembers()}
    assert got == {"etc/kubernetes/pki/apiserver.key": (b"secret", 0o600, 0, "root"),
                   "etc/halab/ingress/nginx.conf": (b"events {}\n", 0o644, 0, "root")}


def test_a_transport_without_put_files_gets_a_put_each():
    class OnePut:
        def __init__(self) -> None:
            self.puts: list[tuple[str, bytes, int]] = []

        def put(self, path: str, data: bytes, mode: int = 0o644) -> None:
            self.puts.append((path, data, mode))

    t = OnePut()
    put_files(t, [("/a", b"1", 0o644), ("/b", b"2", 0o600)])  # type: ignore[arg-type]
    assert t.puts == [("/a", b"1", 0o644), ("/b", b"2", 0o600)]


def test_timings_are_recorded_only_while_recording():
    with timings.span("nobody listens"):
        pass
    timings.mark("nor here")
    with timings.recording() as rec:
        with timings.span("boot lb01"):
            time.sleep(0.01)
        timings.mark("steady: yes")
    assert [s.name for s in rec.spans] == ["boot lb01", "steady: yes"]
    lines = rec.lines()
    assert lines[0].split() == ["start", "took", "phase"]
    assert lines[1].endswith("boot lb01") and lines[2].endswith("-  steady: yes")
    assert timings.process_age_s() is None or timings.process_age_s() >= 0
