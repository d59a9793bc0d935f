"""The lab's state folder: `.halab/<name>/` beside lab.yaml.

It holds what a later command (or `halab clean` after a crash) needs to find the lab
again: which provider made it, the per-lab SSH key, the SSH config, the lab CA, rendered
configs and every daemon's log. `state.json` is written after every change, before the
next step starts, so an interrupted `up` leaves a record of what it had made.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

from lab.errors import PrerequisiteError

STATE_ROOT = ".halab"


class LabState:
    def __init__(self, root: Path, name: str) -> None:
        self.dir = (root / STATE_ROOT / name).resolve()
        self.name = name

    # -- paths -----------------------------------------------------------------------------
    @property
    def file(self) -> Path:
        return self.dir / "state.json"

    @property
    def key(self) -> Path:
        return self.dir / "id_ed25519"

    @property
    def ssh_config(self) -> Path:
        return self.dir / "ssh_config"

    @property
    def pki(self) -> Path:
        return self.dir / "pki"

    def rendered(self, node: str) -> Path:
        return self.dir / "rendered" / node

    def node_dir(self, node: str) -> Path:
        return self.dir / "nodes" / node

    def logs(self, node: str) -> Path:
        return self.node_dir(node) / "logs"

    # -- record ----------------------------------------------------------------------------
    def exists(self) -> bool:
        return self.file.exists()

    def read(self) -> dict[str, Any]:
        try:
            return json.loads(self.file.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return {}

    def write(self, data: dict[str, Any]) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        tmp = self.file.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=2, sort_keys=True))
        os.replace(tmp, self.file)  # atomic: a crash leaves the old record or the new one

    def update(self, **changes: Any) -> dict[str, Any]:
        data = self.read()
        data.update(changes)
        self.write(data)
        return data

    def remove(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)

    # -- the per-lab SSH key -----------------------------------------------------------------
    def ensure_key(self) -> Path:
        """An ed25519 key made for this lab alone (0600); reused while the state folder lives."""
        if not self.key.exists():
            self.dir.mkdir(parents=True, exist_ok=True)
            if shutil.which("ssh-keygen") is None:
                raise PrerequisiteError(
                    "ssh-keygen is missing: the lab's SSH key cannot be made. Install the Debian "
                    "package openssh-client (`make setup` installs everything halab needs)."
                )
            subprocess.run(
                ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"halab-{self.name}",
                 "-f", str(self.key)],
                check=True, stdin=subprocess.DEVNULL,
            )
        self.key.chmod(0o600)
        return self.key
