"""DP-SGD ``train`` jobs: a `sandbox.train` run behind the job flow, in a child process the worker can kill.

Spec (docs/api.md, "Jobs": ``POST /jobs``, ``kind: "train"``): the `sandbox.train.TrainSpec` fields plus an optional
``purpose`` (one of the agreement's purposes; default: the job's purpose, else the agreement's only one).

- ``plan``: parse the spec (``INVALID_REQUEST``, every problem), check it against the columns the agreement
  grants on that dataset (``POLICY_DENIED`` for a column outside it or with a role a model may not read;
  ``INVALID_REQUEST`` for a label that is not binary, a dataset with several rows per unit, …), and calibrate σ
  for the registered row count (`sandbox.train.plan_training`). The cost is the plan's exact
  ``(ε + ε_metrics, δ)``. No data is read.
- ``review``: what the owner approves: the canonical spec and its hash, the declaration-derived encoding (and
  three mock rows through it), σ, steps, the PRV/RDP ε, the cost, and the fact that release is automatic (the
  model is DP by construction).
- ``execute``: re-plan against the agreement as it stands (a changed cost fails the job), then train in a
  child process under the job's wall clock (``JobEnv.timeout_s``). On expiry the child is killed and its files
  removed (``train.timeout``). Weights go to ``models_dir/<job id>/model.safetensors`` next to the card. The
  `Output` carries the card as the result and the keyword arguments of `catalog.models.register_model`.

Failures. Refunded, because decided before the child reads any data: ``train.<code>`` for a spec the current
agreement no longer allows (``train.policy_denied``, ``train.invalid_request``), ``train.cost_changed``, and
``worker.unavailable_before_read`` when the training process cannot be started. Once the child is started it
reads the data, so every later failure is charged like a release and the grantee sees only ``train.failed``;
the cause (``train.timeout``, ``train.crashed`` — the child died —, ``train.error`` — training raised —,
``train.invalid_data``) goes to the data owner with a detail naming the stage only (`JobFailed.cause`).

The child comes from a ``forkserver`` that preloads this module (with it the sandbox's job handlers and the
training stack: torch, DuckDB, OpenDP) and Opacus once per service, so a job pays a fork rather than an
interpreter start and the imports (a few seconds). The forkserver is started by the first training job.
"""

from __future__ import annotations

import datetime as dt
import json
import multiprocessing
import shutil
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from catalog.errors import INVALID_REQUEST, POLICY_DENIED, DomainError
from catalog.fingerprint import HashAlg
from catalog.mock import mock_table
from catalog.registry import Dataset
from catalog.sealed import Sealer
from policies import Agreement, Budget, Job
from sandbox.jobs.base import BEFORE_READ, JobEnv, JobFailed, Output, Plan, agreement_dataset
from sandbox.train import ResourceLimits, TrainingPlan, TrainSpec, check_spec, encoding_for, parse_spec, plan_training

__all__ = ["FAILED", "MODEL_VALID_DAYS", "PreparedTraining", "TrainHandler", "model_valid_days", "prepare_training"]

MODEL_VALID_DAYS = 365
FAILED = "train.failed"  # the one public reason of a run whose child was started
_EXTRA_KEYS = frozenset({"purpose"})
_PRELOAD = ["sandbox.jobs.train", "sandbox.train.runner", "opacus", "opacus.accountants",
            "opacus.accountants.utils"]
_KILL_WAIT_S = 30.0
_EXIT_GRACE_S = 5.0
_ctx_lock = threading.Lock()
_ctx: Any = None


@dataclass(frozen=True)
class PreparedTraining:
    """A vetted spec on its dataset, with its plan (σ, q, steps, cost), before any data is read."""

    spec: TrainSpec
    dataset: Dataset
    plan: TrainingPlan
    purpose: str | None

    @property
    def cost(self) -> Budget:
        """The (ε, δ) the plan's accountant charges for the whole run."""
        return Budget(self.plan.cost.epsilon, self.plan.cost.delta)

    @property
    def columns(self) -> tuple[str, ...]:
        """The columns training reads: the features and the label, sorted."""
        return tuple(sorted({*self.spec.features, self.spec.label}))


def prepare_training(spec: Mapping[str, Any], agreement: Agreement, datasets: Mapping[str, Dataset],
                     hash_alg: HashAlg = "sha256") -> PreparedTraining:
    """Parse and check ``spec`` against ``agreement`` and plan it (the plan names the spec by the home suite's hash
    ``hash_alg``); `DomainError` with every violation."""
    if not isinstance(spec, Mapping):
        raise DomainError(INVALID_REQUEST, "the training spec must be a JSON object")
    raw = {k: v for k, v in spec.items() if k not in _EXTRA_KEYS}
    ts = parse_spec(raw)
    purpose = spec.get("purpose")
    doc = agreement.document
    if purpose is not None and (not isinstance(purpose, str) or purpose not in doc.purposes):
        raise DomainError(POLICY_DENIED, "the purpose is not one the agreement allows",
                          [{"field": "purpose", "problem": "not a purpose of the agreement",
                            "allowed": list(doc.purposes)}])
    ds = agreement_dataset(agreement, datasets, ts.dataset)
    check_spec(ts, ds, doc.columns.get(ts.dataset, ()))
    return PreparedTraining(ts, ds, plan_training(ts, ds.rows, hash_alg=hash_alg), purpose)


def _json_plan(p: TrainingPlan) -> dict[str, Any]:
    """The plan's public figures. Row counts are left out (the card's sample rate reveals them later)."""
    return {"model": p.model, "epochs": p.epochs, "batch_size": p.batch_size, "steps": p.steps,
            "steps_per_epoch": p.steps_per_epoch, "noise_multiplier": p.noise_multiplier,
            "max_grad_norm": p.max_grad_norm, "epsilon": p.epsilon_requested, "delta": p.delta,
            "standardisation_epsilon": p.standardisation_epsilon, "sgd_epsilon": p.sgd_epsilon,
            "epsilon_prv": p.epsilon_prv, "epsilon_rdp": p.epsilon_rdp, "metrics_epsilon": p.metrics_epsilon,
            "accountant": "prv", "warnings": list(p.warnings)}


# --- the child process ----------------------------------------------------------------------------------------


def _mp() -> Any:
    """The forkserver context, with the training stack preloaded into the server (once per process)."""
    global _ctx
    with _ctx_lock:
        if _ctx is None:
            ctx = multiprocessing.get_context("forkserver")
            ctx.set_forkserver_preload(_PRELOAD)
            _ctx = ctx
        return _ctx


def _train_in_child(conn: Connection, spec: TrainSpec, plan: TrainingPlan, dataset: Dataset, out_dir: Path,
                    limits: ResourceLimits, sealer: Sealer | None = None, model_key: str | None = None,
                    hash_alg: HashAlg = "sha256") -> None:
    """Runs in the child: train, then send ``("ok", weights, card_json, digest)`` or ``("error", code, stage)``."""
    from sandbox.train import train

    try:
        res = train(spec, plan, dataset, out_dir, limits=limits, sealer=sealer, model_key=model_key,
                    hash_alg=hash_alg)
        conn.send(("ok", str(res.weights_path), res.card.canonical_json().decode(), res.output_digest))
    except DomainError as e:
        stage = next((str(d["stage"]) for d in e.details if isinstance(d, dict) and "stage" in d), None)
        conn.send(("error", e.code, stage))
    except BaseException:  # the child reports; it never raises into the forkserver
        conn.send(("error", "INTERNAL", None))
    finally:
        conn.close()


@dataclass(frozen=True)
class _Trained:
    weights_path: Path
    card: dict[str, Any]
    output_digest: str


class TrainHandler:
    """``kind: "train"`` (see the module docstring)."""

    kind = "train"

    def plan(self, spec: Mapping[str, Any], agreement: Agreement, datasets: Mapping[str, Dataset],
             hash_alg: HashAlg = "sha256") -> Plan:
        """The dataset and columns read, the DP-SGD plan's cost, and the spec hash (``hash_alg``, the home suite's
        hash) and input width."""
        p = prepare_training(spec, agreement, datasets, hash_alg)
        enc = encoding_for(p.spec, p.dataset)
        return Plan(datasets=(p.dataset.name,), columns={p.dataset.name: p.columns}, cost=p.cost,
                    summary={"spec_sha256": p.spec.sha256(hash_alg), "input_width": enc.width, "release": "auto",
                             "training": _json_plan(p.plan)})

    def review(self, spec: Mapping[str, Any], plan: Plan, datasets: Mapping[str, Dataset],
               env: JobEnv) -> dict[str, Any]:
        """The spec, encoding, training plan and cost, with three mock rows shown raw and encoded."""
        assert env.agreement is not None
        p = prepare_training(spec, env.agreement, datasets, env.hash_alg)
        enc = encoding_for(p.spec, p.dataset)
        shown = [*enc.columns, enc.label]
        mock = mock_table(p.dataset.name, {c: p.dataset.columns[c] for c in shown}, rows=3)
        encoded = enc.encode_batch(mock)
        return {
            "kind": "train",
            "spec": p.spec.model_dump(mode="json"),
            "spec_sha256": p.spec.sha256(env.hash_alg),
            "purpose": p.purpose,
            "dataset": {"name": p.dataset.name, "fingerprint": p.dataset.fingerprint},
            "columns_read": list(p.columns),
            "encoding": enc.model_dump(mode="json"),
            "feature_names": enc.feature_names,
            "input_width": enc.width,
            "training": _json_plan(p.plan),
            "cost": p.cost.as_json(),
            "mock_rows": {"columns": shown, "rows": [[mock.column(c)[i].as_py() for c in shown] for i in range(3)],
                          "encoded": [[round(float(v), 6) for v in row] for row in encoded]},
            "release": "auto: the weights and the card leave once training succeeds (DP by construction); "
                       "the model is registered with a certificate id",
        }

    def execute(self, job: Job, datasets: Mapping[str, Dataset], env: JobEnv) -> Output:
        """Train with DP-SGD in a child process; the weights and model card leave as a model output."""
        assert env.agreement is not None
        try:
            p = prepare_training(job.spec, env.agreement, datasets, env.hash_alg)
        except DomainError as e:
            raise JobFailed(f"train.{e.code.lower()}", before_read=True) from None
        if p.cost != job.cost:
            raise JobFailed("train.cost_changed", before_read=True)
        purpose = p.purpose or job.purpose or (
            env.agreement.document.purposes[0] if len(env.agreement.document.purposes) == 1 else None)
        out_dir = Path(env.models_dir) / job.id
        trained = self._train(p, out_dir, env)
        ds = p.dataset
        result = {"model_id": None, "certificate_id": None, "card": trained.card}
        model = {
            "owner": job.created_by,
            "algorithm": p.spec.model,
            "purpose": purpose,
            "features": list(p.spec.features),
            "card": trained.card,
            "weights_path": trained.weights_path.relative_to(Path(env.models_dir)).as_posix(),
            "output_digest": trained.output_digest,
            "source_datasets": {ds.name: ds.fingerprint},
            "valid_days": model_valid_days(env),
        }
        return Output(kind="model", result=result, output_digest=trained.output_digest, release="auto",
                      artifact=trained.weights_path, model=model)

    def _start(self, target: Any, args: tuple[Any, ...]) -> Any:
        proc = _mp().Process(target=target, args=args, daemon=True, name="veilbox-train")
        proc.start()
        return proc

    def _train(self, p: PreparedTraining, out_dir: Path, env: JobEnv) -> _Trained:
        """Train in a forkserver child under ``env.timeout_s``; kill it and clean up on expiry or failure."""
        deadline = time.monotonic() + env.timeout_s
        out_dir.mkdir(parents=True, exist_ok=True)
        limits = ResourceLimits(threads=env.threads, memory_limit=env.memory_limit,
                                torch_threads=int(env.extra.get("train_torch_threads", 1)))
        if "train_stream_above_rows" in env.extra:  # the registered-row threshold of streaming (sandbox.train)
            limits = replace(limits, stream_above_rows=int(env.extra["train_stream_above_rows"]))
        if "spark_master" in env.extra:  # where a Spark-declared dataset's streamed passes run (VEILBOX_SPARK_MASTER)
            limits = replace(limits, spark_master=str(env.extra["spark_master"]))
        recv, send = _mp().Pipe(duplex=False)
        proc = None
        ok = answered = False
        try:
            try:
                # the child gets two data keys only, the dataset's and the model's (files sealed at rest,
                # catalog.sealed), over its pipe, never on disk
                model_key = None if env.sealer is None else f"model:{out_dir.name}"
                keys = None if env.sealer is None else env.sealer.for_files(
                    Path(p.dataset.path), write=(f"model:{out_dir.name}",))
                proc = self._start(_train_in_child, (send, p.spec, p.plan, p.dataset, out_dir, limits, keys,
                                                     model_key, env.hash_alg))
            except Exception:  # no child, so nothing read: the one refunded failure of a run
                raise JobFailed(BEFORE_READ, "the training process could not be started", before_read=True,
                                cause="train.unavailable") from None
            send.close()
            msg: Any = None
            if recv.poll(max(0.0, deadline - time.monotonic())):
                try:
                    msg = recv.recv()
                    answered = True
                except EOFError:  # the child died without a word (killed by the kernel, a crash)
                    raise JobFailed(FAILED, "the training process exited without a result",
                                    cause="train.crashed") from None
            else:
                raise JobFailed(FAILED, f"training exceeded the job time limit of {env.timeout_s:g}s and was killed",
                                cause="train.timeout")
            if msg[0] != "ok":
                _, code, stage = msg
                raise JobFailed(FAILED, f"training failed ({code}) at stage {stage or 'unknown'}",
                                cause="train.error" if code != INVALID_REQUEST else "train.invalid_data")
            _, weights, card_json, digest = msg
            ok = True
            return _Trained(Path(weights), json.loads(card_json), digest)
        finally:
            send.close()
            recv.close()
            if proc is not None:
                if answered:  # it has reported and is exiting: let it, within a grace period
                    proc.join(_EXIT_GRACE_S)
                if proc.is_alive():
                    proc.kill()
                proc.join(_KILL_WAIT_S)
            if not ok:
                shutil.rmtree(out_dir, ignore_errors=True)


def model_valid_days(env: JobEnv) -> int:
    """Registry validity: ``MODEL_VALID_DAYS`` (or ``extra["model_valid_days"]``), never past the agreement."""
    days = int(env.extra.get("model_valid_days", MODEL_VALID_DAYS))
    if env.agreement is not None:
        left = env.agreement.document.valid_until - dt.datetime.now(dt.UTC)
        days = min(days, max(1, left.days))
    return max(1, days)
