"""Lineage trees given as parent links: the one helper the tracker's division rule, the simulator's truth
and the benchmarks share (written here: a dict walk, no library needed)."""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import TypeVar

K = TypeVar("K", bound=Hashable)


def roots(parent_of: Mapping[K, K | None]) -> dict[K, K]:
    """For every key of ``parent_of``, its oldest ancestor: follow parent links while the parent is itself
    a key with a parent; a key without a parent (None, or a parent outside the mapping's chain) ends the
    walk. Memoised (linear in the number of keys); a cycle raises ValueError."""
    out: dict[K, K] = {}
    for start in parent_of:
        chain = [start]
        seen = {start}
        node = start
        while node not in out:
            parent = parent_of.get(node)
            if parent is None:
                break
            if parent in seen:
                raise ValueError(f"the parent links form a cycle through {parent!r}")
            chain.append(parent)
            seen.add(parent)
            node = parent
        top = out.get(node, node)
        for c in chain:
            out[c] = top
    return {k: out[k] for k in parent_of}
