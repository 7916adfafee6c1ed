"""Federated DP training end to end through the real gateway: five holders on loopback, one dropping out, one
refusing the plan; the coordinator sees only noisy sums and the model still learns.

Rounds get generous stage deadlines (`STAGE_TIMEOUT_S`); a stage that waits only for a holder the test made silent
is closed by the operator through the API (`stage_closer`), so no outcome depends on how fast the machine is."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from mpc.secagg import Stage
from sandbox.train import FeatureEncoding
from veilbox.client import ApiError, Client
from veilbox.federated import Coordinator, FederatedPlan, Holder, HolderReport, evaluate, load_rows, train_central

HOLDERS = ("bank-north", "bank-south", "bank-east", "bank-west", "bank-centre")
EPSILON, DELTA, ROUNDS = 4.0, 1e-5, 3
STAGE_TIMEOUT_S = 300.0  # never reached in a passing run: stages close when all sent, or by the operator


def test_federated_training_over_secure_aggregation(parties: Any, encoding: FeatureEncoding,
                                                    holder_tables: dict[str, pa.Table], holdout: Path,
                                                    stage_closer: Any) -> None:
    ag = parties.agreement(holders=list(HOLDERS))
    clients = {name: parties.service.principal(name, "bank") for name in HOLDERS}
    plan = FederatedPlan.calibrate(encoding, HOLDERS, 3, ROUNDS, EPSILON, DELTA, max_rows_per_holder=2000)
    dropper, cautious = HOLDERS[1], HOLDERS[4]
    stop = threading.Event()
    reports: dict[str, HolderReport] = {}
    sent: dict[str, list[Any]] = {}

    def serve(name: str) -> None:
        holder = Holder(clients[name], holder_tables[name], name=name, plan_id=plan.plan_id,
                        max_epsilon=EPSILON / 2 if name == cautious else EPSILON,  # refuses: the plan is above its cap
                        dropouts={1: Stage.MASKED_INPUT} if name == dropper else None)
        original = holder.contribution

        def spy(p: FederatedPlan, w: Any) -> Any:
            words = original(p, w)
            sent.setdefault(name, []).append(words)
            return words

        holder.contribution = spy  # type: ignore[method-assign]
        reports[name] = holder.run(stop=stop, timeout_s=300, wait_s=0.5)

    threads = [threading.Thread(target=serve, args=(n,), daemon=True) for n in HOLDERS]
    for t in threads:
        t.start()
    try:
        # The operator ends a stage once it waits only for the cautious holder (it never sends) or the dropout
        # (after it stopped in round 1).
        with stage_closer(parties.operator, silent=frozenset({cautious}), agreement_id=ag["id"]):
            model = Coordinator(parties.operator, ag["id"], plan, stage_timeout_s=STAGE_TIMEOUT_S).train()
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=30)

    # The cautious holder refused every round before computing anything; the others joined every round.
    assert len(reports[cautious].refused) == ROUNDS and not reports[cautious].joined and cautious not in sent
    assert all("cap" in r["reason"] for r in reports[cautious].refused)
    for name in HOLDERS[:4]:
        assert [j["round"] for j in reports[name].joined] == list(range(ROUNDS))
    survivors = [set(r.survivors) for r in model.rounds]
    assert survivors[0] == survivors[2] == set(HOLDERS[:4])
    assert survivors[1] == set(HOLDERS[:4]) - {dropper}  # the dropout's masked input never arrived
    assert model.released == ROUNDS

    card = model.card()
    assert card["privacy"]["epsilon"] <= EPSILON * (1 + 1e-9) and card["privacy"]["delta"] == DELTA
    assert [set(r["survivors"]) for r in card["rounds"]] == survivors and card["privacy"]["rounds_released"] == 3
    total_rows = sum(t.num_rows for t in holder_tables.values())
    for record in model.rounds:  # the coordinator learns the row count only with noise
        assert record.noisy_rows is not None
        assert abs(record.noisy_rows - len(record.survivors) * total_rows / 5) < 6 * plan.central_std(5)

    # Learnt something: better than the majority class on rows no one trained on, near the pooled baseline.
    x_test, y_test = load_rows(holdout, encoding)
    fed = evaluate(model.weights, x_test, y_test)
    xs, ys = zip(*(load_rows(holder_tables[n], encoding) for n in HOLDERS), strict=True)
    central = evaluate(train_central(np.vstack(xs), np.concatenate(ys)), x_test, y_test)
    assert fed["auc"] > 0.65 and fed["auc"] > central["auc"] - 0.1

    # The gateway released one sum per round, to the operator, audited with its digest under the agreement.
    entries = parties.regulator.audit(limit=1000)["entries"]
    results = [e for e in entries if e["action"] == "secagg.result" and e["output_digest"]]
    assert len(results) == ROUNDS and all(e["agreement_id"] == ag["id"] and e["actor"] == "risk-lab"
                                          for e in results)
    masked = [e for e in entries if e["action"] == "secagg.masked.send"]
    assert {e["actor"] for e in masked} == set(HOLDERS[:4])
    # No holder's own contribution can be read off what was released: each masked upload is a fresh vector.
    for words in sent.values():
        assert len({w.tobytes() for w in words}) == len(words)


def test_holders_never_join_a_round_that_is_not_federated_training(parties: Any, encoding: FeatureEncoding,
                                                                  holder_tables: dict[str, pa.Table],
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """A plain round (no federated task) or a task whose plan names other holders is never answered with data."""
    ag = parties.agreement(holders=list(HOLDERS))
    clients: dict[str, Client] = {name: parties.service.principal(name, "bank") for name in HOLDERS}
    other = FederatedPlan.calibrate(encoding, ("x-1", "x-2", "x-3"), 3, 2, 2.0, 1e-5, max_rows_per_holder=2000)
    plain = parties.operator.secagg_open(ag["id"], list(HOLDERS), 3, 8, stage_timeout_s=STAGE_TIMEOUT_S)
    forged = parties.operator.secagg_open(
        ag["id"], list(HOLDERS), 3, other.vector_length, stage_timeout_s=STAGE_TIMEOUT_S,
        task={"kind": "veilbox.federated-newton/v1", "plan": other.model_dump(mode="json"), "round": 0,
              "weights": [0.0] * other.dim})
    client = clients[HOLDERS[0]]
    offered = {st["id"] for st in client.secagg_rounds(waiting_for_me=True)}
    assert offered == {plain["id"], forged["id"]}  # both wait for this holder: its one pass below sees both
    # The holder makes exactly one pass over what is offered (its listing call also ends the run), so the outcome
    # does not depend on a timeout.
    stop = threading.Event()
    listing = client.secagg_rounds

    def one_pass(*args: Any, **kwargs: Any) -> list[dict[str, Any]]:
        stop.set()
        return listing(*args, **kwargs)

    monkeypatch.setattr(client, "secagg_rounds", one_pass)
    holder = Holder(client, holder_tables[HOLDERS[0]], name=HOLDERS[0], max_epsilon=100.0)
    report = holder.run(timeout_s=120, wait_s=0.5, stop=stop)
    assert report.joined == []
    assert [r["round_id"] for r in report.refused] == [forged["id"]]
    assert "does not name this holder" in report.refused[0]["reason"]
    for rnd in (plain, forged):
        st = parties.operator.secagg_round(rnd["id"])
        assert HOLDERS[0] in st["pending"]  # it sent nothing, not even keys


def test_the_gateway_opens_no_federated_round_that_does_not_fit_its_plan(parties: Any,
                                                                          encoding: FeatureEncoding) -> None:
    """The gateway checks a federated task against the mechanism (`sandbox.federated.task_problems`) before the
    round opens: a plan whose noise is below the ε it states, or a round that does not fit the plan, never opens."""
    ag = parties.agreement(holders=list(HOLDERS))
    for name in HOLDERS:
        parties.service.principal(name, "bank")
    plan = FederatedPlan.calibrate(encoding, HOLDERS, 3, 2, 2.0, 1e-5, max_rows_per_holder=2000)
    weak = {**plan.model_dump(mode="json"), "sigma_local": plan.sigma_local / 2}

    def task(p: dict[str, Any]) -> dict[str, Any]:
        return {"kind": "veilbox.federated-newton/v1", "plan": p, "round": 0, "weights": [0.0] * plan.dim}

    for plan_json, threshold, length, field in ((weak, 3, plan.vector_length, "task.plan"),
                                                (plan.model_dump(mode="json"), 3, 8, "vector_length")):
        with pytest.raises(ApiError) as e:
            parties.operator.secagg_open(ag["id"], list(HOLDERS), threshold, length,
                                         stage_timeout_s=STAGE_TIMEOUT_S, task=task(plan_json))
        assert e.value.code == "INVALID_REQUEST"
        assert field in {d.get("field") for d in e.value.details}
    opened = parties.operator.secagg_open(ag["id"], list(HOLDERS), 3, plan.vector_length,
                                          stage_timeout_s=STAGE_TIMEOUT_S, task=task(plan.model_dump(mode="json")))
    assert opened["stage"] == "advertise_keys"
