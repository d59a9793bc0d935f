"""The chaos run's journal: one JSON document, rewritten whole (write + rename) after every
event, so that it always parses and a crash loses nothing already recorded."""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path
from typing import Any

VERSION = 1


class Journal:
    def __init__(self, path: Path, meta: dict[str, Any]) -> None:
        self.path = path
        self.data: dict[str, Any] = {"halab_chaos_journal": VERSION, **meta,
                                     "started": _now(), "finished": None, "runs": []}
        self._lock = threading.Lock()
        path.parent.mkdir(parents=True, exist_ok=True)
        self._flush()

    def _flush(self) -> None:
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        with open(tmp, "w") as f:
            json.dump(self.data, f, indent=1)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)

    def begin(self, entry: dict[str, Any]) -> int:
        """Record a run as started; return its index for `finish`."""
        with self._lock:
            self.data["runs"].append({**entry, "status": "running", "started": _now()})
            self._flush()
            return len(self.data["runs"]) - 1

    def event(self, index: int, what: str) -> None:
        with self._lock:
            self.data["runs"][index].setdefault("events", []).append(
                {"at": _now(), "what": what})
            self._flush()

    def finish(self, index: int, entry: dict[str, Any]) -> None:
        with self._lock:
            run = self.data["runs"][index]
            run.update(entry)
            run["finished"] = _now()
            self._flush()

    def close(self, summary: dict[str, Any]) -> None:
        with self._lock:
            self.data["finished"] = _now()
            self.data["summary"] = summary
            self._flush()


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


def read(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())
