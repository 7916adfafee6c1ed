"""`veilbox demo`, the federated chapter: five banks train one credit model together; their rows never move.

Each bank holds its own customers' rows (a fifth of a synthetic city, written to its own Parquet file) outside the
domain. The tax bureau proposes a training agreement to the operator that names the five banks as its holders
(a secure-aggregation round takes only parties to its agreement, at least three, never the operator itself); the
operator accepts it. The operator's coordinator publishes a `FederatedPlan` (ε, δ, rounds, threshold, noise: the
mechanism is `sandbox.federated`) and opens one secure-aggregation round per Newton step, which the gateway opens
only if its task fits the plan; each bank checks the plan, adds its share of the discrete Gaussian noise to its
gradient and Hessian sums and joins the round over HTTP; the gateway releases only the noisy sum to the operator.
One bank drops out in one round: the round goes on with the survivors. At the end the federated model is compared
with a centrally trained, non-private baseline on held-out rows.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
from rich.console import Console
from rich.table import Table

from catalog.datagen import generate
from mpc.secagg import Stage
from veilbox.client import Client
from veilbox.federated import (
    Coordinator,
    FederatedPlan,
    Holder,
    HolderReport,
    RoundRecord,
    encoding_from_declaration,
    evaluate,
    load_rows,
    train_central,
)

console = Console()

__all__ = ["FEATURES", "HOLDERS", "chapter_federated"]

HOLDERS = ("wuxi-rural-bank", "jiangyin-bank", "yixing-credit-union", "binhu-microfinance", "liangxi-savings")
FEATURES = ["age", "industry", "district", "monthly_income", "social_insurance_months"]
LABEL = "has_default"


def _split(source: Path, out: Path, parts: int) -> list[Path]:
    table = pq.read_table(source)
    bounds = np.linspace(0, table.num_rows, parts + 1).astype(int)
    paths = []
    for i in range(parts):
        path = out / f"holder-{i}.parquet"
        pq.write_table(table.slice(int(bounds[i]), int(bounds[i + 1] - bounds[i])), path)
        paths.append(path)
    return paths


def _agreement(story: Any) -> str:
    """The tax bureau's agreement with the operator that names the five banks as holders; the operator accepts."""
    import datetime as dt

    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    doc = {"title": "Federated credit-default model", "grantee": "risk-lab", "holders": list(HOLDERS),
           "datasets": ["tax_income"], "columns": {"tax_income": [*FEATURES, LABEL]}, "purposes": ["credit_risk"],
           "job_kinds": ["train"], "valid_from": (now - dt.timedelta(days=1)).isoformat(),
           "valid_until": (now + dt.timedelta(days=365)).isoformat(), "budget": {"epsilon": 1},
           "approval": "owner_each_job"}
    ag = story.clients["owner"].propose_agreement(doc)
    ag = story.clients["operator"].accept_agreement(ag["id"], document_hash=ag["document_hash"])
    story.state["agreement:federated"] = ag["id"]
    return str(ag["id"])


def chapter_federated(story: Any, rows: int = 10_000, rounds: int = 4, epsilon: float = 2.0, delta: float = 1e-5,
                      threshold: int = 3, stage_timeout_s: float = 4.0) -> None:
    """Five holders, ``rounds`` federated DP Newton rounds over secure aggregation, one dropout."""
    operator: Client = story.clients["operator"]
    agreement = _agreement(story)
    work = Path(tempfile.mkdtemp(prefix="veilbox-federated-"))
    holders: dict[str, Client] = {}
    try:
        data = generate(work / "city", rows=rows, seed=20261201)
        holdout = generate(work / "holdout", rows=max(2000, rows // 5), seed=20261202)
        paths = dict(zip(HOLDERS, _split(data.tax_income, work, len(HOLDERS)), strict=True))
        for name in HOLDERS:
            holders[name] = story.admin.with_token(story.admin.create_principal(name, "bank")["token"])
        declaration = json.loads(data.tax_income_spec.read_text())  # public: the owners' declaration
        encoding = encoding_from_declaration(declaration, FEATURES, LABEL)
        plan = FederatedPlan.calibrate(encoding, HOLDERS, threshold, rounds, epsilon, delta,
                                       max_rows_per_holder=max(10_000, rows))
        g = plan.guarantee()
        console.print(f"[bold]federated plan[/] {plan.plan_id}: {len(HOLDERS)} holders, t={threshold}, "
                      f"{rounds} rounds, (ε={g.epsilon:.3f}, δ={delta:g}); each holder adds N_Z(0, σ²) with "
                      f"σ={plan.sigma_local:,.0f} steps of γ={plan.gamma:.2e}")

        dropper, drop_round = HOLDERS[1], min(1, rounds - 1)
        stop = threading.Event()
        reports: dict[str, HolderReport] = {}

        def serve(name: str) -> None:
            holder = Holder(holders[name], paths[name], name=name, max_epsilon=epsilon, max_delta=delta,
                            plan_id=plan.plan_id,
                            dropouts={drop_round: Stage.MASKED_INPUT} if name == dropper else None)
            reports[name] = holder.run(stop=stop, timeout_s=stage_timeout_s * 8 * rounds + 120)

        threads = [threading.Thread(target=serve, args=(n,), name=f"holder-{n}", daemon=True) for n in HOLDERS]
        for t in threads:
            t.start()
        seen = Table("round", "survivors", "noisy rows (true)", "noise σ per coordinate", "ε so far",
                     title="what the operator received: one noisy sum per round, nothing per bank")
        released = 0

        def progress(record: RoundRecord, _: Any) -> None:
            nonlocal released
            if record.aborted is None:
                released += 1
            seen.add_row(str(record.index), f"{len(record.survivors)}/{len(HOLDERS)}",
                         "aborted" if record.noisy_rows is None else f"{record.noisy_rows:,.1f} ({rows:,})",
                         f"{plan.central_std(len(record.survivors)):.1f}" if record.survivors else "-",
                         f"{plan.guarantee(released).epsilon:.3f}")

        model = Coordinator(operator, agreement, plan, stage_timeout_s=stage_timeout_s).train(progress)
        stop.set()
        for t in threads:
            t.join(timeout=30)
        console.print(seen)

        x_test, y_test = load_rows(holdout.tax_income, encoding)
        x_all, y_all = load_rows(data.tax_income, encoding)
        fed = evaluate(model.weights, x_test, y_test)
        central = evaluate(train_central(x_all, y_all), x_test, y_test)
        cmp = Table("model", "accuracy", "AUC", title=f"held-out rows ({len(y_test):,}), label {LABEL}")
        cmp.add_row(f"federated, DP (ε={model.card()['privacy']['epsilon']:.2f}), secure aggregation",
                    f"{fed['accuracy']:.3f}", f"{fed['auc']:.3f}")
        cmp.add_row("central, pooled rows, not private (baseline)", f"{central['accuracy']:.3f}",
                    f"{central['auc']:.3f}")
        cmp.add_row("always 'no default'", f"{fed['majority']:.3f}", "0.500")
        console.print(cmp)

        regulator = story.clients.get("regulator")
        if regulator is not None:
            released = regulator.audit(limit=1000, action="secagg.result")["entries"]
            digests = [e["output_digest"] for e in released if e["output_digest"]]
            console.print(f"[dim]the gateway saw, per round, key rosters, encrypted share envelopes and masked "
                          f"vectors (uniform words) and released one sum to the operator: the audit log holds "
                          f"{len(digests)} released sums, each as a digest ({digests[0][:23]}…)[/]"
                          if digests else "")
        card = model.card()
        survivors = [len(r["survivors"]) for r in card["rounds"]]
        refused = sum(len(r.refused) for r in reports.values())
        story.facts.append(
            f"federated training: {len(HOLDERS)} banks kept their rows; {model.released} secure-aggregation rounds "
            f"released only noisy sums (survivors per round {survivors}; {dropper} dropped out in round "
            f"{drop_round}); model card ε={card['privacy']['epsilon']:.2f}, δ={delta:g}")
        story.facts.append(
            f"federated DP model: accuracy {fed['accuracy']:.3f} / AUC {fed['auc']:.3f} vs central non-private "
            f"{central['accuracy']:.3f} / {central['auc']:.3f} (majority {fed['majority']:.3f}); holders refused "
            f"{refused} rounds")
        story.state["federated:card"] = card
    finally:
        for c in holders.values():
            c.close()
        shutil.rmtree(work, ignore_errors=True)
