"""YAML for user files: safe tags only, no aliases, a size cap, and one-line errors.

``yaml.safe_load`` already refuses Python tags, but it accepts aliases, and a few nested aliases
expand to gigabytes as soon as the data is walked (a "billion laughs" document). Config and sweep
files have no use for aliases, so they are refused, and files over :data:`MAX_BYTES` are refused
before parsing. Every parse error becomes a ValueError naming the file (or key) and the position.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

MAX_BYTES = 1 << 20  # a config or sweep file is a few kB; refuse anything over 1 MiB


class _NoAliasLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that raises on every alias (``*name``)."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise yaml.composer.ComposerError(None, None, f"found the alias *{event.anchor}: YAML aliases are not "
                                              "allowed here (write the value out)", event.start_mark)
        return super().compose_node(parent, index)


def _one_line(exc: yaml.YAMLError) -> str:
    return " ".join(str(exc).split())


def load_yaml_text(text: str, what: str) -> Any:
    """Parse ``text`` (``what`` names it in errors); ValueError for bad, unsafe or oversized YAML."""
    if len(text.encode("utf-8", errors="replace")) > MAX_BYTES:
        raise ValueError(f"{what} is larger than {MAX_BYTES // 1024} KiB; a config is a few kB (is it the right file?)")
    try:
        return yaml.load(text, Loader=_NoAliasLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        raise ValueError(f"{what} is not valid YAML: {_one_line(exc)}") from None


def load_yaml_file(path: str | Path, what: str = "file") -> Any:
    """Read and parse the YAML file ``path`` with :func:`load_yaml_text`."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{what} {str(path)!r} does not exist")
    if path.stat().st_size > MAX_BYTES:
        raise ValueError(f"{what} {str(path)!r} is larger than {MAX_BYTES // 1024} KiB; a config is a few kB")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"{what} {str(path)!r} cannot be read as UTF-8 text: {exc}") from None
    return load_yaml_text(text, f"{what} {str(path)!r}")
