"""Darknet's ``.cfg`` text: sections of ``key=value`` lines, read as Darknet reads them.

Darknet (``parser.c``'s ``read_cfg``) removes every whitespace character of a line, skips empty
lines and lines starting with ``#`` or ``;``, opens a section on ``[name]`` and splits any other
line at its first ``=``. This reader does the same, and is stricter where Darknet and OpenCV's
reader disagree or silently guess: a line that is neither a section nor ``key=value`` is an
error, and so is a key given twice in one section (Darknet keeps the first value, OpenCV's reader
the last). Values are checked where a converter reads them (``Section.integer`` and its
siblings), so every message names the file, the section (Darknet's layer index) and the key.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from ..errors import GraphError

# Darknet's short spellings of section names (parser.c's string_to_layer_type).
SECTION_ALIASES = {"conv": "convolutional", "max": "maxpool", "network": "net"}


@dataclass
class Section:
    """One ``[name]`` section: its options by key, each with the line it came from."""

    name: str  # as Darknet names the kind: "convolutional", "maxpool", ... (aliases resolved)
    line: int  # 1-based line of the "[name]" header
    index: int  # Darknet's layer index (-1 for [net])
    options: dict[str, tuple[str, int]] = field(default_factory=dict)

    @property
    def label(self) -> str:
        where = "[net]" if self.index < 0 else f"section {self.index} [{self.name}]"
        return f"{where} (line {self.line})"

    def fail(self, key: str | None, msg: str) -> GraphError:
        """An error naming this section and, if given, the key (the caller raises it)."""
        if key is None:
            return GraphError(f"{self.label}: {msg}")
        if key not in self.options:
            return GraphError(f"{self.label}, key '{key}': {msg}")
        return GraphError(f"{self.label}, key '{key}' (line {self.options[key][1]}): {msg}")

    def has(self, key: str) -> bool:
        return key in self.options

    def raw(self, key: str) -> str | None:
        if key not in self.options:
            return None
        return self.options[key][0]

    def integer(self, key: str, default: int | None = None, minimum: int | None = None) -> int:
        """An integer option; absent: ``default`` (None: the key is required)."""
        text = self.raw(key)
        if text is None:
            if default is None:
                raise self.fail(key, "is required")
            return default
        value = _parse_int(text)
        if value is None:
            raise self.fail(key, f"must be an integer, got '{text}'")
        if minimum is not None and value < minimum:
            raise self.fail(key, f"must be >= {minimum}, got {value}")
        return value

    def number(self, key: str, default: float) -> float:
        text = self.raw(key)
        if text is None:
            return default
        try:
            value = float(text)
        except ValueError:
            raise self.fail(key, f"must be a number, got '{text}'") from None
        if not math.isfinite(value):
            raise self.fail(key, f"must be a finite number, got '{text}'")
        return value

    def integers(self, key: str) -> list[int] | None:
        """A comma-separated list of integers (None when the key is absent)."""
        text = self.raw(key)
        if text is None:
            return None
        values = [_parse_int(part) for part in text.split(",")]
        if not values or any(v is None for v in values):
            raise self.fail(key, f"must be a comma-separated list of integers, got '{text}'")
        return [int(v) for v in values if v is not None]

    def numbers(self, key: str) -> list[float] | None:
        text = self.raw(key)
        if text is None:
            return None
        try:
            values = [float(part) for part in text.rstrip(",").split(",")]
        except ValueError:
            msg = f"must be a comma-separated list of numbers, got '{text}'"
            raise self.fail(key, msg) from None
        if not all(math.isfinite(v) for v in values):
            raise self.fail(key, f"must hold finite numbers, got '{text}'")
        return values

    def word(self, key: str, default: str) -> str:
        text = self.raw(key)
        return default if text is None else text

    def check_keys(self, known: frozenset[str] | set[str]) -> None:
        """Refuses any key outside ``known`` (a misspelt key would otherwise change nothing)."""
        unknown = [k for k in self.options if k not in known]
        if unknown:
            raise self.fail(
                unknown[0],
                f"unknown key for [{self.name}] (pydeconv reads: {', '.join(sorted(known))})",
            )


def _parse_int(text: str) -> int | None:
    """A decimal integer as Darknet's atoi would read a well-formed one ("+3", "-1", "016")."""
    body = text[1:] if text[:1] in "+-" else text
    if not body.isdigit() or not body.isascii():
        return None
    return int(text)


def parse_cfg(text: str) -> list[Section]:
    """The sections of a cfg in file order; the first must be [net] (or [network])."""
    sections: list[Section] = []
    for number, line in enumerate(text.splitlines(), start=1):
        line = "".join(line.split())  # Darknet's strip(): every whitespace character goes
        if not line or line[0] in "#;":
            continue
        if line[0] == "[":
            if not line.endswith("]") or len(line) < 3:
                raise GraphError(f"line {number}: malformed section header '{line}'")
            name = line[1:-1]
            name = SECTION_ALIASES.get(name, name)
            if not sections and name != "net":
                raise GraphError(
                    f"line {number}: the first section must be [net] (or [network]), got [{name}]"
                )
            if sections and name == "net":
                raise GraphError(f"line {number}: a second [net] section")
            sections.append(Section(name, number, len(sections) - 1))
            continue
        if not sections:
            raise GraphError(f"line {number}: '{line}' before the first section ([net])")
        sec = sections[-1]
        key, eq, value = line.partition("=")
        if not eq or not key:
            raise GraphError(f"{sec.label}, line {number}: expected key=value, got '{line}'")
        if key in sec.options:
            raise sec.fail(
                key,
                f"given twice (also on line {number}); Darknet would take the first value and "
                "OpenCV the last, so pydeconv takes neither",
            )
        sec.options[key] = (value, number)
    if not sections:
        raise GraphError("no sections: the first section must be [net]")
    return sections
