"""Input halab does not trust, and what a safe value looks like: one home for both.

halab runs as root and writes what it reads into config files (keepalived.conf, haproxy.cfg,
nginx.conf), shell commands and unit files. So a value is refused at load time, before
anything is built, unless it matches a whitelist of the characters its field needs; and a
file is refused, without being expanded, when it is larger or deeper than any lab needs.
Error messages quote what they refuse only in part, so a hostile value cannot blow a
one-paragraph error up into megabytes.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from pydantic import AfterValidator

from lab.errors import HalabError

# -- what a safe value looks like ------------------------------------------------------------
# One word in a config file or on a command line: no blank, newline, quote, brace, `#`, `!`
# (keepalived's comment characters), `;`, `$`, backtick, backslash or glob.
TOKEN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]*")
# An executable by absolute path and simple arguments, single blanks between them: what
# keepalived's `script "..."` splits into argv. The same characters as TOKEN, plus `/` in
# the path and `=`, `:`, `,`, `@` and `/` in the arguments (`-0`, `--port=6443`, ...).
SCRIPT = re.compile(r"/[A-Za-z0-9._+/-]+(?: [A-Za-z0-9._+/=:,@-]+)*")
# A vagrant box name as `vagrant box list` shows it: `name` or `owner/name`.
BOX = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*(?:/[A-Za-z0-9][A-Za-z0-9._-]*)?")

# -- how much of anything ----------------------------------------------------------------------
# The default lab.yaml is ~1.5 KB and ~150 YAML values, a scenario less: these bounds are far
# above any honest file and far below what hurts (time, memory, error size).
# A folder halab writes into configs and command lines (the lab file's, where the state
# folder, the nodes' disks and sshd's configs live; the checkout's, whose node-init.sh every
# node runs): sshd_config and ssh_config split on blanks, `sh -c` on `;` and `$(`, libvirt's
# XML on `<` and `&`. Refused before anything is built, rather than quoted in every place.
PATH_CHARS = re.compile(r"/[A-Za-z0-9._+@,:=/-]*")
MAX_FILE_BYTES = 64 * 1024
MAX_YAML_VALUES = 10_000  # counted with every alias expanded
MAX_YAML_DEPTH = 32
MAX_QUOTE = 60  # characters of a refused value shown in an error
MAX_MESSAGE = 2000  # characters of a whole error message
MAX_PROBLEMS = 5  # validation problems listed in one error; the rest are counted


def quote(value: object, limit: int = MAX_QUOTE) -> str:
    """repr() of a value for an error message, cut to ``limit`` characters."""
    try:
        text = repr(value)
    except ValueError:  # an int too long for str() (Python's 4300-digit limit)
        text = f"<{type(value).__name__} too long to show>"
    return text if len(text) <= limit else text[: limit - 1] + "…"


def clip(message: str, limit: int = MAX_MESSAGE) -> str:
    """A whole message cut to ``limit`` characters, saying so."""
    if len(message) <= limit:
        return message
    return message[: limit - 40] + f" … ({len(message) - limit + 40} more characters)"


def matching(pattern: re.Pattern[str], what: str) -> AfterValidator:
    """A pydantic validator: the whole string matches ``pattern``; otherwise an error that
    says what the field must be (``what``) and quotes the value in part."""
    def check(value: str) -> str:
        if not pattern.fullmatch(value):
            raise ValueError(f"{quote(value)} is not {what}")
        return value

    return AfterValidator(check)


# -- reading a file ----------------------------------------------------------------------------
def check_folder(folder: Path, what: str, error: type[HalabError]) -> None:
    """Refuse a folder whose path would change meaning in a config or a command line."""
    text = str(folder)
    if not PATH_CHARS.fullmatch(text):
        bad = sorted({c for c in text if not PATH_CHARS.fullmatch("/" + c)})
        shown = " ".join({" ": "a blank", "\n": "a newline"}.get(c, c) for c in bad)
        raise error(
            f"{what} {quote(text)} has characters halab does not write into configs and "
            f"command lines ({shown}): its path reaches sshd's and ssh's configs, "
            "`sh -c` and libvirt's XML. Move it to a path of letters, digits and ._+@,:=- "
            "(e.g. /srv/halab) and run the command again. Nothing was built.")


def decode(data: bytes, source: str, error: type[HalabError]) -> str:
    """UTF-8 text of a file, or ``error`` naming the byte that is not UTF-8."""
    if len(data) > MAX_FILE_BYTES:
        raise error(f"{source}: {len(data)} bytes is far more than a halab file needs (at "
                    f"most {MAX_FILE_BYTES}); check that -f names the right file.")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise error(f"{source}: not UTF-8 text (byte 0x{data[e.start]:02x} at line {line}, "
                    f"offset {e.start}); save the file as UTF-8 (`iconv -t UTF-8`) and run "
                    "again.") from None


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [x for pair in node.value for x in pair]
    return []


def _measure(root: yaml.Node, refuse: Callable[[str], Exception]) -> None:
    """Refuse a composed YAML tree that is too big once its aliases are expanded (a
    "billion laughs": a few lines of anchors that repeat each other), refers to itself, or
    nests too deeply. Iterative, and each shared node is measured once, so this takes time
    in the size of the text, not of the expansion."""
    size: dict[int, int] = {}
    depth: dict[int, int] = {}
    on_path: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, finished = stack.pop()
        key = id(node)
        kids = _children(node)
        if finished:
            on_path.discard(key)
            size[key] = 1 + sum(size[id(k)] for k in kids)
            depth[key] = 1 + max((depth[id(k)] for k in kids), default=0)
            if size[key] > MAX_YAML_VALUES:
                raise refuse(f"it expands to more than {MAX_YAML_VALUES} values once its "
                             "aliases (`*name`) are replaced by what their anchors (`&name`) "
                             "hold; write the values out, or use fewer aliases")
            if depth[key] > MAX_YAML_DEPTH:
                raise refuse(f"it nests more than {MAX_YAML_DEPTH} levels deep; a lab file "
                             "needs four or five")
            continue
        if key in size:
            continue
        on_path.add(key)
        stack.append((node, True))
        for k in kids:
            if id(k) in on_path:
                raise refuse("an alias (`*name`) refers to a value that contains it; "
                             "remove the alias")
            if id(k) not in size:
                stack.append((k, False))


def load_yaml(text: str, source: str, error: type[HalabError], hint: str = "") -> Any:
    """``yaml.safe_load`` for a file halab did not write: bounded in size, depth and alias
    expansion, and every failure an ``error`` of one paragraph (``hint`` is added to a
    syntax error: what to fix)."""
    def refuse(why: str) -> HalabError:
        return error(f"{source}: refused: {why}.")

    if len(text) > MAX_FILE_BYTES:
        raise refuse(f"{len(text)} characters is far more than a halab file needs (at most "
                     f"{MAX_FILE_BYTES})")
    loader: yaml.SafeLoader | None = None
    try:
        loader = yaml.SafeLoader(text)  # refuses a control character (NUL, ...) at once
        root = loader.get_single_node()
        if root is None:
            return None
        _measure(root, refuse)
        return loader.construct_document(root)
    except yaml.reader.ReaderError as e:
        raise error(f"{source}: YAML syntax error: character #x{e.character:04x} at offset "
                    f"{e.position} is a control character YAML does not allow.{hint}") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = " ".join(str(getattr(e, "problem", None) or e).split())  # one paragraph
        raise error(clip(f"{source}: YAML syntax error{where}: {problem}.{hint}")) from None
    except RecursionError:  # PyYAML composes nested collections recursively
        raise refuse(f"it nests more than {MAX_YAML_DEPTH} levels deep") from None
    except ValueError as e:  # e.g. an integer longer than Python converts (4300 digits)
        raise refuse(f"a value cannot be read ({quote(str(e), 80)}); no setting needs "
                     "such a value") from None
    finally:
        if loader is not None:
            loader.dispose()
