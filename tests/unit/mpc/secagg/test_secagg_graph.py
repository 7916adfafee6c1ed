"""The neighbour graph: complete up to 100 clients, k-regular Harary on a seeded ring above."""

import math

import pytest

from mpc.secagg.graph import build_graph, default_degree, local_threshold
from mpc.secagg.prg import random_seed


def names(n):
    return tuple(f"c{i:04d}" for i in range(n))


def test_complete_up_to_100():
    graph = build_graph(names(100), 51, random_seed())
    assert graph.complete and graph.degree == 99 and graph.threshold == 51
    assert graph.neighbours("c0000") == frozenset(names(100)) - {"c0000"}


@pytest.mark.parametrize("n", [101, 300, 1000])
def test_sparse_graph_is_regular_symmetric_and_logarithmic(n):
    seed = random_seed()
    graph = build_graph(names(n), n // 2 + 1, seed)
    k = default_degree(n)
    assert graph.degree == k and k % 2 == 0 and k <= 4 * math.ceil(math.log2(n))
    for name, peers in graph.adjacency.items():
        assert len(peers) == k and name not in peers
        assert all(name in graph.adjacency[p] for p in peers)
    assert graph.threshold == local_threshold(n // 2 + 1, n, k) and graph.threshold > (k + 1) / 2
    assert graph.connected(names(n))
    assert build_graph(names(n), n // 2 + 1, seed).adjacency == graph.adjacency
    assert build_graph(names(n), n // 2 + 1, random_seed()).adjacency != graph.adjacency


def test_disconnected_survivors_are_detected():
    graph = build_graph(names(40), 21, random_seed(), degree=4)
    ring_neighbours = graph.neighbours("c0000")
    # Remove c0000's whole neighbourhood: c0000 is then an island.
    survivors = set(names(40)) - ring_neighbours
    assert not graph.connected(survivors)
    assert graph.short_neighbourhoods(survivors, ["c0000"]) == ["c0000"]


def test_degree_must_be_even():
    with pytest.raises(ValueError):
        build_graph(names(40), 21, random_seed(), degree=5)
