"""The registry (lab/packages.py) covers every command halab and its nodes run.

The coverage test reads the code, as a reviewer would: every argv halab hands to
subprocess, every shell command it runs on a node (tests included), the daemons' units,
the nodes' init script and keepalived's default check script. A command that is not in
the registry fails here, before a fresh machine finds out (as `nft` and `ping` once did).
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

from lab import packages, topology

ROOT = Path(__file__).resolve().parents[2]
SOURCES = [*sorted((ROOT / "lab").rglob("*.py")), *sorted((ROOT / "provision").rglob("*.py")),
           *sorted((ROOT / "tests").glob("*.py"))]
# Calls that run a command: subprocess, lab.system.sh, os.execvp, Node/testinfra run().
RUNNERS = {"run", "Popen", "sh", "execvp", "check_output", "run_expect", "_run"}
# Shell words that are not commands of any package (`kill` too: the shell's own, by PID).
SHELL = {"!", "[", "[[", ":", "cd", "do", "done", "echo", "elif", "else", "esac", "exec",
         "exit", "export", "false", "fi", "for", "if", "in", "kill", "printf", "read", "set",
         "shift", "test", "then", "true", "wait", "while", "{", "}", "("}
KEYWORDS_BEFORE_COMMAND = {"do", "then", "else", "exec", "!", "if", "while", "elif"}
# Wrappers whose argument after the options is itself a command.
WRAPPERS = {"nsenter", "unshare", "setsid", "tini", "timeout"}


def _const(node: ast.AST) -> str | None:
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) \
        else None


def _flat(node: ast.AST) -> str | None:
    """The text of a string expression, with `X` for what is computed at run time."""
    if (s := _const(node)) is not None:
        return s
    if isinstance(node, ast.JoinedStr):
        return "".join(_const(v) or "X" for v in node.values)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        left, right = _flat(node.left), _flat(node.right)
        return None if left is None else left + (right or "X")
    return None


STARRED = "*"  # a spliced prefix in an argv, e.g. [*self.enter(), ...]
OPTIONS_WITH_VALUE = {"-t", "--target", "--propagation"}


def argv_commands(argv: list[str | None]) -> list[str]:
    """The commands in an argv: the first word, and what wrappers run (`ip netns exec NS
    CMD`, `nsenter -t PID ... CMD`, `unshare ... -- CMD`, `sh -c 'SCRIPT'`). ``None``
    stands for a word computed at run time."""
    found: list[str] = []
    i = 0
    while i < len(argv) and argv[i] == STARRED:
        i += 1
    while i < len(argv) and argv[i] is not None:
        word = argv[i]
        found.append(word)
        if word == "ip" and argv[i + 1:i + 3] == ["netns", "exec"]:
            i += 4
        elif word.rsplit("/", 1)[-1] == "env":  # env [-i] [VAR=VALUE ...] CMD
            i += 1
            while i < len(argv) and argv[i] is not None and (
                    "=" in argv[i] or argv[i].startswith("-")):
                i += 1
        elif word in WRAPPERS:
            i += 1
            while i < len(argv) and (argv[i] is None or argv[i].startswith("-")
                                     or (word == "timeout" and argv[i][:1].isdigit())):
                i += 2 if argv[i] in OPTIONS_WITH_VALUE else 1
        elif word.endswith("/sh") or word == "sh":
            if "-c" in argv[i:] and (j := argv.index("-c", i)) + 1 < len(argv) \
                    and argv[j + 1] is not None:
                found += shell_commands(argv[j + 1])
            break
        else:
            break
    return found


def shell_commands(script: str) -> list[str]:
    """The first word of every simple command in a shell script (heredoc bodies skipped)."""
    script = re.sub(r"<<-?'?(\w+)'?\n.*?\n\1\b", "", script, flags=re.S)
    script = re.sub(r"#[^\n]*", "", script)
    found = []
    for segment in re.split(r"\|\||&&|[|;&\n]|\$\(|`", script):
        words = [w for w in segment.split() if not re.match(r"^\w+=", w)]
        while words and words[0] in KEYWORDS_BEFORE_COMMAND:
            words = words[1:]
        if not words or words[0] in SHELL or words[0][0] in "\"'$<>)0123456789%X-":
            continue
        if words[0] == "for":
            continue
        found.append(words[0])
    return found


def commands_in_python(path: Path) -> list[tuple[str, int]]:
    found: list[tuple[str, int]] = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if not isinstance(node, ast.Call):
            continue
        name = node.func.attr if isinstance(node.func, ast.Attribute) else \
            node.func.id if isinstance(node.func, ast.Name) else ""
        if name == "Unit" and len(node.args) > 1 and isinstance(node.args[1], ast.Tuple):
            argv = [_flat(e) for e in node.args[1].elts]
            found += [(c, node.lineno) for c in argv_commands(argv)]
        if name not in RUNNERS:
            continue
        # The command is the first argument (run_expect: the second, after the codes); the
        # rest are values for its %s.
        args = node.args[1:] if name == "run_expect" else node.args
        if not args:
            continue
        if isinstance(args[0], ast.List | ast.Tuple):
            argv = [STARRED if isinstance(e, ast.Starred) else _const(e) for e in args[0].elts]
            found += [(c, node.lineno) for c in argv_commands(argv)]
        elif (text := _flat(args[0])) is not None:
            # A bare word followed by more words is an argv of a tool's own wrapper, e.g.
            # lab.kubectl's `kubectl.run("get", "--raw", "/healthz")` (kubectl is a pip
            # wheel); a shell command for a node has its arguments as %s in the string.
            if len(args) > 1 and re.fullmatch(r"[\w.-]+", text) and _flat(args[1]) is not None:
                continue
            found += [(c, node.lineno) for c in shell_commands(text)]
    return found


def all_commands() -> dict[str, str]:
    """Every command found, with where it was found."""
    found: dict[str, str] = {}
    for path in SOURCES:
        for cmd, line in commands_in_python(path):
            found.setdefault(cmd, f"{path.relative_to(ROOT)}:{line}")
    init = ROOT / "lab/providers/netns/node-init.sh"
    for cmd in shell_commands(init.read_text()):
        found.setdefault(cmd, str(init.relative_to(ROOT)))
    script = topology.load(ROOT / "lab.yaml").keepalived.check.script
    for cmd in shell_commands(script):
        found.setdefault(cmd, "lab.yaml keepalived.check.script")
    return found


def test_the_scan_sees_the_commands_a_fresh_machine_once_lacked():
    found = all_commands()
    for cmd in ("nft", "ping", "tc", "ip", "nc", "nsenter", "unshare", "tini", "setsid",
                "ssh", "ssh-keygen", "pgrep", "openssl", "vagrant", "/usr/bin/killall",
                "/usr/sbin/haproxy", "/usr/sbin/keepalived", "/usr/sbin/nginx",
                "/usr/sbin/sshd", "systemctl", "mount", "hostname", "timeout"):
        assert cmd in found, f"the scan no longer finds {cmd}: fix the test's parser"


def test_every_command_the_code_runs_is_in_the_registry():
    unknown = {}
    for cmd, where in sorted(all_commands().items()):
        try:
            packages.package_of(cmd)
        except KeyError:
            unknown[cmd] = where
    assert not unknown, ("commands halab runs that lab/packages.py does not know (add them, "
                         f"with their Debian package from `dpkg -S`): {unknown}")


@pytest.mark.parametrize("command, package", [
    ("nft", "nftables"), ("ping", "iputils-ping"), ("tc", "iproute2"), ("ip", "iproute2"),
    ("nc", "netcat-openbsd"), ("ssh", "openssh-client"), ("ssh-keygen", "openssh-client"),
    ("sshd", "openssh-server"), ("haproxy", "haproxy"), ("keepalived", "keepalived"),
    ("nginx", "nginx"), ("tini", "tini"), ("nsenter", "util-linux"), ("unshare", "util-linux"),
    ("killall", "psmisc"), ("/usr/bin/killall", "psmisc"), ("pgrep", "procps"),
    ("ps", "procps"), ("openssl", "openssl"), ("sha256sum", "coreutils"),
    ("stat", "coreutils"), ("mount", "mount"), ("debootstrap", "debootstrap"),
    ("qemu-img", "qemu-utils"), ("vagrant", "vagrant"), ("dnsmasq", "dnsmasq-base"),
    ("libvirtd", "libvirt-daemon"), ("virtlogd", "libvirt-daemon"),
])
def test_lookups(command, package):
    assert packages.package_of(command) == package


def test_unknown_command_is_a_clear_key_error():
    with pytest.raises(KeyError, match="not in halab's registry"):
        packages.package_of("frobnicate")


def test_providers_packages():
    netns, vagrant = packages.packages("netns"), packages.packages("vagrant")
    for p in ("nftables", "iputils-ping", "haproxy", "keepalived", "nginx", "tini",
              "openssh-server", "python3-venv", "make"):
        assert p in netns
    for p in ("dnsmasq-base", "vagrant", "vagrant-libvirt", "libvirt-daemon-system",
              "qemu-system-x86", "qemu-utils", "libvirt-dev", "pkgconf", "gcc", "python3-dev",
              "debootstrap", "python3-venv"):
        assert p in vagrant
    assert "haproxy" not in vagrant  # the VMs have it (the box), not the VM host
    assert {"haproxy", "nftables", "iputils-ping", "openssh-server", "sudo"} <= set(
        packages.packages("guest"))
    assert len(netns) == len(set(netns))
    with pytest.raises(ValueError, match="unknown scope"):
        packages.needs("hosts")


def test_missing_uses_which_and_paths():
    def which(cmd: str) -> str | None:
        return None if cmd in ("nft", "ping") else f"/usr/bin/{cmd}"

    missing = {n.command: n.package for n in packages.missing(["netns"], which)}
    assert missing.get("nft") == "nftables" and missing.get("ping") == "iputils-ping"
    assert "ip" not in missing
    absent = packages.Need("/nonexistent/halab-*/x", "x", "", frozenset({"netns"}))
    assert not packages.present(absent)


def test_module_runs_with_the_system_python_and_no_third_party_import(tmp_path):
    """setup-debian.sh runs it before any virtualenv exists."""
    code = ("import sys, runpy; sys.argv = ['x', '--provider', 'netns', '--provider', "
            "'vagrant']; runpy.run_module('lab.packages', run_name='__main__')")
    p = subprocess.run([sys.executable, "-S", "-c", code], capture_output=True, text=True,
                       cwd=ROOT)
    assert p.returncode == 0, p.stderr
    out = p.stdout.split()
    assert "nftables" in out and "dnsmasq-base" in out and len(out) == len(set(out))
    tree = ast.parse((ROOT / "lab/packages.py").read_text())
    imports = [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
    imports += [n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
    assert imports and all(m.split(".")[0] in sys.stdlib_module_names or m == "__future__"
                           for m in imports), imports


def test_setup_script_has_no_list_of_its_own():
    script = (ROOT / "scripts/setup-debian.sh").read_text()
    code = "\n".join(line for line in script.splitlines() if not line.lstrip().startswith("#"))
    assert "lab.packages" in code
    # python3 is read before the registry can be (bootstrap); `make` appears in advice.
    listed = [p for p in packages.packages("netns", "vagrant", "ci")
              if p not in ("python3", "make")
              and re.search(rf"(?<![\w-]){re.escape(p)}(?![\w-])", code)]
    assert not listed, f"setup-debian.sh names packages itself: {listed}"
