"""The pipeline page's stage graph, laid out here and drawn as SVG by the template.

A pipeline has a handful of stages, so a layered (Sugiyama-style) layout is enough and needs no
JavaScript library: each stage sits one column right of the last stage it needs (longest path),
stages in a column are ordered by the mean row of what they need (two sweeps cut crossings),
and edges are curves from a stage's right side to the next one's left side. Server-side SVG
works offline, costs nothing to ship, and its text is ordinary page text.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

NODE_WIDTH = 150
NODE_HEIGHT = 58
COLUMN_GAP = 46
ROW_GAP = 26
MARGIN = 16


@dataclass
class Node:
    name: str
    uses: str
    status: str
    column: int = 0
    row: int = 0
    x: float = 0
    y: float = 0
    info: dict[str, Any] = field(default_factory=dict)


@dataclass
class Layout:
    nodes: list[Node]
    edges: list[dict[str, Any]]
    width: float
    height: float
    cycle: bool = False
    node_width: int = NODE_WIDTH
    node_height: int = NODE_HEIGHT


def layout(stages: Mapping[str, Mapping[str, Any]],
           status: Mapping[str, Mapping[str, Any]]) -> Layout:
    """Place `stages` ({name: {"uses": ..., "needs": [...]}}); `status` gives each stage's last
    recorded outcome ({name: {"status": ..., "cached": ...}}), absent for never-run stages."""
    needs = {name: [n for n in needs_of(spec) if n in stages] for name, spec in stages.items()}
    columns, cycle = _columns(needs)
    nodes = {name: Node(name, str(spec.get("uses") or ""),
                        (status.get(name) or {}).get("status", "never run"),
                        column=columns[name], info=dict(status.get(name) or {}))
             for name, spec in stages.items()}
    by_column: dict[int, list[Node]] = {}
    for node in nodes.values():  # the config's order is the first guess within a column
        by_column.setdefault(node.column, []).append(node)
    for _ in range(2):
        for column in sorted(by_column):
            members = by_column[column]
            for position, node in enumerate(members):
                rows = [nodes[n].row for n in needs[node.name] if nodes[n].column < column]
                node.row = position  # keeps the current order as tie-breaker
                node.info["_key"] = sum(rows) / len(rows) if rows else position
            members.sort(key=lambda n: (n.info["_key"], n.row))
            for position, node in enumerate(members):
                node.row = position
    tallest = max((len(m) for m in by_column.values()), default=0)
    height = MARGIN * 2 + tallest * NODE_HEIGHT + max(tallest - 1, 0) * ROW_GAP
    for column, members in by_column.items():
        offset = (height - len(members) * NODE_HEIGHT - (len(members) - 1) * ROW_GAP) / 2
        for node in members:
            node.info.pop("_key", None)
            node.x = MARGIN + column * (NODE_WIDTH + COLUMN_GAP)
            node.y = offset + node.row * (NODE_HEIGHT + ROW_GAP)
    edges = []
    for name, upstream in needs.items():
        for source in upstream:
            a, b = nodes[source], nodes[name]
            x1, y1 = a.x + NODE_WIDTH, a.y + NODE_HEIGHT / 2
            x2, y2 = b.x, b.y + NODE_HEIGHT / 2
            bend = max((x2 - x1) / 2, 30)
            edges.append({"source": source, "target": name,
                          "path": f"M{x1:.1f},{y1:.1f} C{x1 + bend:.1f},{y1:.1f} "
                                  f"{x2 - bend:.1f},{y2:.1f} {x2 - 2:.1f},{y2:.1f}"})
    width = MARGIN * 2 + (max(columns.values(), default=0) + 1) * (NODE_WIDTH + COLUMN_GAP) \
        - COLUMN_GAP
    return Layout(list(nodes.values()), edges, width, max(height, NODE_HEIGHT + 2 * MARGIN),
                  cycle)


def needs_of(spec: Mapping[str, Any]) -> list[str]:
    """A stage's `needs`, a name or a list of names, as a list."""
    value = spec.get("needs") or []
    return [value] if isinstance(value, str) else [str(v) for v in value]


def _columns(needs: Mapping[str, Sequence[str]]) -> tuple[dict[str, int], bool]:
    """Longest path from a source; a cycle (the config check refuses those, but the page
    must still draw) is cut where it is found."""
    column: dict[str, int] = {}
    visiting: set[str] = set()
    cycle = False

    def place(name: str) -> int:
        nonlocal cycle
        if name in column:
            return column[name]
        if name in visiting:
            cycle = True
            return -1
        visiting.add(name)
        column[name] = 1 + max((place(n) for n in needs[name]), default=-1)
        visiting.discard(name)
        return column[name]

    for name in needs:
        place(name)
    return column, cycle
