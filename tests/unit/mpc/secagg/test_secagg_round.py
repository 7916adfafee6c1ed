"""Whole rounds: the sum of the survivors with 0/10/30 % dropouts at every stage, aborts below t."""

import numpy as np
import pytest

from mpc.secagg import (
    RoundAborted,
    SecAggClient,
    SecAggServer,
    Stage,
    new_round,
    simulate_round,
)
from mpc.secagg.shamir import Share, decode_value, reconstruct_bytes

N = 20
T = 11
L = 64
NAMES = [f"bank-{i:02d}" for i in range(N)]


def make_inputs(names, length=L, bits=32, seed=0):
    # Test data only (not masks): a fixed arithmetic pattern keeps the test deterministic without a PRNG.
    base = np.arange(length, dtype=np.uint64)
    return {
        name: ((base * (7 + 13 * i) + (seed + 1) * 104729 * (i + 1)) % (1 << bits)).astype(np.uint32)
        for i, name in enumerate(names)
    }


def expected_sum(inputs, survivors, bits=32):
    total = np.zeros(len(next(iter(inputs.values()))), dtype=np.uint64)
    for name in survivors:
        total += inputs[name]
    return (total % (1 << bits)).astype(np.uint32)


@pytest.mark.parametrize("stage", [Stage.SHARE_KEYS, Stage.MASKED_INPUT, Stage.UNMASK])
@pytest.mark.parametrize("rate", [0.0, 0.1, 0.3])
def test_sum_of_survivors_with_dropouts_at_each_stage(stage, rate):
    inputs = make_inputs(NAMES)
    dropped = NAMES[1 : 1 + round(rate * N)]
    outcome = simulate_round(inputs, T, {stage: dropped})
    assert not outcome.aborted, outcome.abort_reason
    # Dropping at unmask happens after the masked input was sent: those inputs still count.
    counted = NAMES if stage is Stage.UNMASK else [n for n in NAMES if n not in dropped]
    assert outcome.survivors == tuple(counted)
    assert np.array_equal(outcome.total, expected_sum(inputs, counted))


def test_dropouts_at_several_stages_and_small_modulus():
    inputs = make_inputs(NAMES, bits=12)
    outcome = simulate_round(
        inputs,
        T,
        {
            Stage.ADVERTISE_KEYS: ["bank-00"],
            Stage.SHARE_KEYS: ["bank-05"],
            Stage.MASKED_INPUT: ["bank-19"],
            Stage.UNMASK: ["bank-07", "bank-08"],
        },
        modulus_bits=12,
        wire=False,
    )
    survivors = [n for n in NAMES if n not in ("bank-00", "bank-05", "bank-19")]
    assert outcome.survivors == tuple(survivors)
    assert np.array_equal(outcome.total, expected_sum(inputs, survivors, bits=12))


@pytest.mark.parametrize("stage", [Stage.ADVERTISE_KEYS, Stage.SHARE_KEYS, Stage.MASKED_INPUT, Stage.UNMASK])
def test_fewer_than_t_aborts_without_a_result(stage):
    inputs = make_inputs(NAMES)
    outcome = simulate_round(inputs, T, {stage: NAMES[: N - T + 1]})
    assert outcome.aborted and outcome.total is None
    assert outcome.abort_reason


def _run_to_unmask(config, inputs):
    server = SecAggServer(config)
    clients = {name: SecAggClient(config, name) for name in config.participants}
    for client in clients.values():
        server.receive(client.advertise_keys().to_json())
    server.close_stage()
    roster = server.key_roster()
    for client in clients.values():
        server.receive(client.share_keys(roster).to_json())
    server.close_stage()
    for name, client in clients.items():
        server.receive(client.masked_input(server.forwarded_shares(name), inputs[name]).to_json())
    server.close_stage()
    return server, clients


def test_abort_at_unmask_reveals_too_few_shares_to_rebuild_any_seed():
    config = new_round(NAMES, T, L)
    inputs = make_inputs(NAMES)
    server, clients = _run_to_unmask(config, inputs)
    request = server.unmask_request()
    reveals = [clients[name].unmask(request) for name in NAMES[: T - 1]]
    for reveal in reveals:
        server.receive(reveal)
    server.close_stage()
    assert server.stage is Stage.ABORTED
    with pytest.raises(RoundAborted) as err:
        server.result()
    assert err.value.code == "INVALID_REQUEST"
    # What the server got: t − 1 shares of each self-mask seed, which rebuild something else.
    target = NAMES[-1]
    shares = [Share(config.point[r.sender], decode_value(r.b_shares[target])) for r in reveals]
    true_seed = clients[target]._b_seed
    try:
        assert reconstruct_bytes(shares) != true_seed
    except ValueError:
        pass  # not even a 32-byte value
    assert not server.survivors


def test_abort_before_unmask_asks_nobody_for_shares():
    config = new_round(NAMES, T, L)
    server = SecAggServer(config)
    clients = {name: SecAggClient(config, name) for name in NAMES}
    for client in clients.values():
        server.receive(client.advertise_keys())
    server.close_stage()
    roster = server.key_roster()
    for client in clients.values():
        server.receive(client.share_keys(roster))
    server.close_stage()
    for name in NAMES[: T - 1]:
        server.receive(clients[name].masked_input(server.forwarded_shares(name), make_inputs([name])[name]))
    server.close_stage()
    assert server.stage is Stage.ABORTED
    with pytest.raises(Exception) as err:
        server.unmask_request()
    assert err.value.code == "INVALID_REQUEST"


def test_sparse_graph_round_with_dropouts():
    names = [f"c{i:02d}" for i in range(30)]
    inputs = make_inputs(names, length=16)
    outcome = simulate_round(inputs, 16, {Stage.MASKED_INPUT: ["c03"], Stage.UNMASK: ["c10"]}, neighbours=8)
    assert outcome.config.graph.degree == 8 and not outcome.config.graph.complete
    survivors = [n for n in names if n != "c03"]
    assert np.array_equal(outcome.total, expected_sum(inputs, survivors))


def test_secagg_plus_default_graph_above_100_clients():
    names = [f"c{i:03d}" for i in range(101)]
    inputs = make_inputs(names, length=8)
    outcome = simulate_round(inputs, 51, {Stage.MASKED_INPUT: ["c004", "c050"]}, wire=False)
    graph = outcome.config.graph
    assert not graph.complete and graph.degree < 100
    assert graph.threshold > (graph.degree + 1) // 2
    survivors = [n for n in names if n not in ("c004", "c050")]
    assert np.array_equal(outcome.total, expected_sum(inputs, survivors))


def test_list_inputs_and_positional_drop_ids():
    inputs = list(make_inputs(NAMES[:5]).values())
    outcome = simulate_round(inputs, 3, {"masked_input": [4]})
    assert outcome.survivors == ("0", "1", "2", "3")
    expected = expected_sum(dict(zip(["0", "1", "2", "3", "4"], inputs)), ["0", "1", "2", "3"])
    assert np.array_equal(outcome.total, expected)
    assert set(outcome.client_seconds) == {"0", "1", "2", "3", "4"} and outcome.server_seconds > 0


@pytest.mark.parametrize(("n", "t"), [(10, 5), (10, 11), (10, 1), (1, 1)])
def test_threshold_must_be_a_strict_majority(n, t):
    with pytest.raises(ValueError):
        new_round([f"c{i}" for i in range(n)], t, 4)
