"""A round driven through key advertisement and share exchange, ready for masked inputs."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from mpc.secagg import SecAggClient, SecAggServer, new_round
from mpc.secagg.config import RoundConfig


def _to_masked(names: list[str], threshold: int, length: int
               ) -> tuple[RoundConfig, SecAggServer, dict[str, SecAggClient]]:
    config = new_round(names, threshold, length)
    server = SecAggServer(config)
    clients = {name: SecAggClient(config, name) for name in names}
    for client in clients.values():
        server.receive(client.advertise_keys())
    server.close_stage()
    roster = server.key_roster()
    for client in clients.values():
        server.receive(client.share_keys(roster))
    server.close_stage()
    return config, server, clients


@pytest.fixture
def round_at_masking() -> Callable[[list[str], int, int], tuple[RoundConfig, SecAggServer, dict[str, SecAggClient]]]:
    """``round_at_masking(names, t, L)`` → (config, server, clients) with stages 0 and 1 closed."""
    return _to_masked
