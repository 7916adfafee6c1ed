"""Who masks with whom: the neighbour graph and its per-neighbourhood threshold.

For n ≤ 100 every pair of clients shares a pairwise mask (complete graph, the original protocol). Above
that, SecAgg+ (Bell et al., CCS 2020): clients are placed on a ring in a uniformly random order derived
from the round's *public* seed (AES-CTR PRG keyed by HKDF of the seed), and each is joined to its ``k/2``
nearest ring neighbours on either side — a ``k``-regular Harary graph with ``k = O(log n)``. A client's
secrets are Shamir-shared only inside its closed neighbourhood (itself and its ``k`` neighbours) with the
per-neighbourhood threshold ``t_k = max(⌊(k+1)/2⌋ + 1, ⌈t·(k+1)/n⌉)``.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass

from mpc.secagg.prg import permutation

COMPLETE_GRAPH_MAX = 100


def default_degree(n: int) -> int:
    """``n − 1`` (complete) for n ≤ 100, else the even number ``4·⌈log2 n⌉`` capped at ``n − 1``."""
    if n <= COMPLETE_GRAPH_MAX:
        return n - 1
    return min(n - 1, 4 * math.ceil(math.log2(n)))


def local_threshold(threshold: int, n: int, degree: int) -> int:
    """Shares needed to rebuild a secret held by one closed neighbourhood of ``degree + 1`` clients."""
    if degree >= n - 1:
        return threshold
    size = degree + 1
    return max(size // 2 + 1, math.ceil(threshold * size / n))


@dataclass(frozen=True)
class MaskGraph:
    """The public neighbour graph of a round: symmetric, no self-loops, every node of degree ``degree``."""

    participants: tuple[str, ...]
    degree: int
    threshold: int
    adjacency: Mapping[str, frozenset[str]]

    @property
    def complete(self) -> bool:
        """True when every client neighbours every other (plain Bonawitz, no SecAgg+ sparsification)."""
        return self.degree >= len(self.participants) - 1

    def neighbours(self, name: str) -> frozenset[str]:
        """The clients ``name`` shares pairwise masks with."""
        return self.adjacency[name]

    def closed_neighbourhood(self, name: str) -> frozenset[str]:
        """``name`` and its neighbours: the clients that hold shares of its secrets."""
        return self.adjacency[name] | {name}

    def short_neighbourhoods(self, members: Collection[str], of: Iterable[str]) -> list[str]:
        """The names in ``of`` whose closed neighbourhood holds fewer than ``threshold`` of ``members``."""
        present = set(members)
        return [name for name in of if len(self.closed_neighbourhood(name) & present) < self.threshold]

    def connected(self, members: Collection[str]) -> bool:
        """Whether ``members`` induce a connected subgraph (else the server would learn partial sums)."""
        present = set(members)
        if not present or self.complete:
            return True
        start = next(iter(present))
        seen = {start}
        frontier = [start]
        while frontier:
            node = frontier.pop()
            for peer in self.adjacency[node] & present:
                if peer not in seen:
                    seen.add(peer)
                    frontier.append(peer)
        return len(seen) == len(present)


def build_graph(
    participants: tuple[str, ...], threshold: int, round_seed: bytes, degree: int | None = None
) -> MaskGraph:
    """The round's graph: complete if ``degree`` (default `default_degree`) reaches ``n − 1``, else Harary."""
    n = len(participants)
    k = default_degree(n) if degree is None else degree
    if k >= n - 1:
        everyone = frozenset(participants)
        adjacency = {name: everyone - {name} for name in participants}
        return MaskGraph(participants, n - 1, threshold, adjacency)
    if k < 2 or k % 2:
        raise ValueError("neighbour count must be an even number of at least 2")
    ring = [participants[i] for i in permutation(round_seed, n)]
    half = k // 2
    adjacency = {
        name: frozenset(ring[(pos + step) % n] for step in range(-half, half + 1) if step)
        for pos, name in enumerate(ring)
    }
    return MaskGraph(participants, k, local_threshold(threshold, n, k), adjacency)
