"""The embedded lab's daemon logs: a failed test sees what was written during it only."""

from __future__ import annotations

from lab.providers.netns.services import NetnsServices


def test_logs_since_shows_only_what_came_after_the_mark(tmp_path):
    (tmp_path / "haproxy.log").write_text("old run\nold line\n")
    svc = NetnsServices("lb01", lambda: None, tmp_path)
    mark = svc.log_mark()
    with open(tmp_path / "haproxy.log", "a") as f:
        f.write("during the test\n")
    (tmp_path / "keepalived.log").write_text("new file\n")
    assert svc.logs_since(mark) == {"haproxy": "during the test", "keepalived": "new file"}
