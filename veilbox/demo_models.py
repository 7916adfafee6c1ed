"""`veilbox demo`, the models chapter: a DP credit-default model trained inside the domain, and a small piece of
custom code whose output the data owner releases by hand.

The operator submits a DP-SGD logistic regression (label ``has_default``) under its ``owner_each_job``
agreement; the tax bureau reviews what it will cost and how the features are encoded, approves it bound to the
spec hash, the worker trains it, and only the weights and the model card leave. Then the operator asks for a
custom computation (not DP): the owner sees the code, its hash and its run on the mock, approves, reads the
output, and releases it.
"""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

from veilbox.client import ApiError

console = Console()

__all__ = ["CREDIT_MODEL_SPEC", "chapter_models"]

CREDIT_MODEL_SPEC: dict[str, Any] = {
    "dataset": "tax_income",
    "features": ["age", "industry", "district", "monthly_income", "social_insurance_months"],
    "label": "has_default",
    "model": "logistic_regression",
    "epochs": 2,
    "batch_size": 512,
    "epsilon": 2.0,
    "delta": 1e-6,
    "max_grad_norm": 1.0,
}

INDUSTRY_SHARES = '''
import pyarrow.compute as pc

def main(inputs):
    t = inputs["tax_income"]
    counts = pc.value_counts(t["industry"]).to_pylist()
    total = t.num_rows
    # coarse shares only (whole percent); the owner reads this before it leaves
    return {c["values"]: round(100 * c["counts"] / total) for c in counts}
'''


def _card_table(card: dict[str, Any], model_id: str | None, certificate_id: str | None) -> Table:
    p = card["privacy"]
    m = card.get("metrics") or {}
    t = Table("", "", title="model card (released with the weights)")
    t.add_row("model", f"{card['model']} over {card['input_width']} encoded inputs")
    t.add_row("features", ", ".join(f["column"] for f in card["encoding"]["features"]))
    t.add_row("label", f"{card['label']} (positive class {card['positive_class']})")
    t.add_row("guarantee", f"(ε={p['epsilon']} + {p['metrics_epsilon']} for metrics, δ={p['delta']}) "
                           f"per {p['unit'].split(';')[0]}")
    t.add_row("mechanism", f"DP-SGD, σ={p['noise_multiplier']:.3f}, {p['steps']} steps, clip C={p['max_grad_norm']}, "
                           f"PRV ε={p['epsilon_prv']:.3f} (RDP would say {p['epsilon_rdp']:.3f})")
    if m:
        auc = "n/a" if m.get("auc") is None else f"{m['auc']:.3f}"
        acc = "n/a" if m.get("accuracy") is None else f"{m['accuracy']:.3f}"
        t.add_row("held-out (noisy)", f"AUC {auc} · accuracy {acc}")
    t.add_row("trained on", ", ".join(f"{d['dataset']} {d['fingerprint'][:19]}…" for d in card["data"]))
    t.add_row("registry", f"model {model_id} · certificate {certificate_id}")
    return t


def _train(story: Any) -> None:
    operator, owner = story.clients["operator"], story.clients["owner"]
    ag = story.state["agreement:operator"]
    job = operator.submit_job(ag, "train", CREDIT_MODEL_SPEC)
    review = owner.job_review(job["id"])
    tr, cost = review["mock"]["training"], review["plan"]["cost"]
    console.print(f"[dim]owner's review of {job['id']}: {review['mock']['input_width']} encoded inputs from the "
                  f"declaration, σ={tr['noise_multiplier']:.3f} over {tr['steps']} noisy steps, "
                  f"cost ε={cost['epsilon']} δ={cost['delta']}; spec hash {job['spec_hash'][:19]}…[/]")
    owner.approve_job(job["id"], job["spec_hash"])
    with console.status("training with DP-SGD inside the domain…"):
        done = operator.wait_job(job["id"], timeout=900)
    if done["state"] != "released":
        story.facts.append(f"the DP credit-default model did not leave: job {done['state']} "
                           f"({done.get('failure_reason')})")
        return
    result = operator.job_result(job["id"])["result"]
    card, model_id = result["card"], result.get("model_id")
    console.print(_card_table(card, model_id, result.get("certificate_id")))
    if model_id:
        story.state["model_id"] = model_id
    auc = (card.get("metrics") or {}).get("auc")
    story.facts.append(f"the operator trained a DP credit-default model (ε={card['privacy']['epsilon']}, "
                       f"δ={card['privacy']['delta']}"
                       + (f", noisy held-out AUC {auc:.2f}" if auc is not None else "")
                       + f") after the owner approved it; only weights and card left, model {model_id}")


def _custom_code(story: Any) -> None:
    operator, owner = story.clients["operator"], story.clients["owner"]
    ag = story.state["agreement:operator"]
    spec = {"dataset": "tax_income", "source": INDUSTRY_SHARES, "entrypoint": "main",
            "outputs": {"kind": "json", "max_bytes": 4096}}
    job = operator.submit_job(ag, "code", spec)
    review = owner.job_review(job["id"])
    dry = review["mock"]["dry_run_on_mock"]
    console.print(f"[dim]owner's review of custom code {review['plan']['code_hash'][:19]}…: reads "
                  f"{', '.join(review['mock']['input']['columns'])}; dry run on the mock "
                  f"{'ok' if dry.get('ok') else 'failed: ' + str(dry.get('reason'))}[/]")
    owner.approve_job(job["id"], job["spec_hash"])
    done = operator.wait_job(job["id"], timeout=300)
    if done["state"] != "succeeded":
        story.facts.append(f"the custom-code job ended {done['state']} ({done.get('failure_reason')})")
        return
    pending = owner.job_review(job["id"]).get("pending_output", {})
    console.print(f"[dim]output awaiting the owner's release: {pending.get('result')}[/]")
    try:
        owner.release_job(job["id"])
        released = operator.job_result(job["id"])
    except ApiError as e:
        story.facts.append(f"the owner's release of the custom-code output was refused by the gateway: {e.code}")
        return
    shares = released["result"]
    if isinstance(shares, dict):  # the released output is stamped with its source and certificate_id
        shares = {k: v for k, v in shares.items() if isinstance(v, int | float)}
    top = max(shares.items(), key=lambda kv: kv[1])[0] if isinstance(shares, dict) and shares else None
    cert = released.get("certificate_id") or (released["result"].get("certificate_id")
                                              if isinstance(released["result"], dict) else None)
    story.facts.append("custom code ran in the no-network sandbox on the granted columns only; its (non-DP) "
                       f"output left after the owner read and released it (largest industry: {top}"
                       + (f"; certificate {cert})" if cert else ")"))


def chapter_models(story: Any) -> None:
    """The operator's DP model (owner-approved, auto-released with its card), then owner-released custom code."""
    _train(story)
    _custom_code(story)
