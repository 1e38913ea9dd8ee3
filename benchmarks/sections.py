"""Generated sections of the benchmark pages: Markdown tables, and the marked regions that
``python -m benchmarks`` rewrites.

A page marks each generated region with a pair of HTML comments (invisible when rendered)::

    <!-- bench:sweep start -->
    ...replaced on every run...
    <!-- bench:sweep end -->

Everything outside the pairs is hand-written and kept byte for byte.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

_NAME = r"[A-Za-z0-9_.-]+"
_MARKER = re.compile(rf"<!-- bench:({_NAME}) (start|end) -->")


def start_marker(name: str) -> str:
    return f"<!-- bench:{name} start -->"


def end_marker(name: str) -> str:
    return f"<!-- bench:{name} end -->"


def markdown_table(headers: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    """A Markdown table; a ``|`` inside a cell is escaped."""

    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(str(cell).replace("|", "\\|") for cell in cells) + " |"

    return "\n".join(
        [line(headers), "|" + "|".join("---" for _ in headers) + "|", *map(line, rows)]
    )


@dataclass
class Rewrite:
    """A page with some sections replaced; ``problems`` says which could not be, and why."""

    text: str
    replaced: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def marked_sections(text: str) -> tuple[dict[str, tuple[int, int]], list[str]]:
    """Where each well-formed section's content lies (character offsets, markers excluded), and
    what is wrong with the others: a start without an end, an end without a start, a name used
    twice, a section inside another (sections do not nest)."""
    found: dict[str, tuple[int, int]] = {}
    problems: list[str] = []
    open_name: str | None = None
    open_at = 0
    for match in _MARKER.finditer(text):
        name, which = match[1], match[2]
        if which == "start":
            if open_name is not None:
                problems.append(f"bench:{open_name}: a start marker without an end marker")
                problems.append(f"bench:{name}: starts inside bench:{open_name}")
                open_name = None
            elif name in found:
                problems.append(f"bench:{name}: a second pair of markers")
                found.pop(name)
            else:
                open_name, open_at = name, match.end()
        elif open_name == name:
            found[name] = (open_at, match.start())
            open_name = None
        else:
            problems.append(f"bench:{name}: an end marker without a start marker before it")
    if open_name is not None:
        problems.append(f"bench:{open_name}: a start marker without an end marker")
    for name in {p.split(":")[1] for p in problems}:
        found.pop(name, None)
    return found, problems


def replace_sections(text: str, sections: Mapping[str, str]) -> Rewrite:
    """``text`` with the content between each named pair of markers replaced.

    ``sections`` maps a section name to its new Markdown. A name whose markers are missing or
    malformed is left out and reported in ``problems``; the rest of the page is unchanged.
    """
    found, problems = marked_sections(text)
    result = Rewrite(text)
    spans = []
    for name, content in sections.items():
        if name not in found:
            if not any(p.startswith(f"bench:{name}:") for p in problems):
                result.problems.append(f"bench:{name}: no markers on the page")
            else:
                result.problems.extend(p for p in problems if p.startswith(f"bench:{name}:"))
            continue
        spans.append((found[name], name, content))
    pieces = []
    at = 0
    for (start, end), name, content in sorted(spans):
        pieces.append(text[at:start])
        pieces.append("\n\n" + content.strip("\n") + "\n\n")
        at = end
        result.replaced.append(name)
    pieces.append(text[at:])
    result.text = "".join(pieces)
    return result
