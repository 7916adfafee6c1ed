"""Custom-code ``code`` jobs: owner-approved Python in the bubblewrap sandbox (`sandbox.coderun`), owner release.

Spec (docs/api.md, "Jobs"): ``{"dataset", "source", "entrypoint" (default "main"), "outputs": {"kind": "json"|"model",
"max_bytes"}, "epsilon"? (default 0), "purpose"?}``. The function is called as ``entrypoint(inputs)`` where
``inputs[<dataset>]`` is a ``pyarrow.Table`` of the columns the agreement grants on that dataset — nothing else:
the runner gets a column-projected copy written into a 0700 directory on a tmpfs the worker owns (never the
registered file, never the home's disk: `sandbox.coderun.tmpfs`; without a tmpfs the job fails before reading,
refunded, cause ``code.tmpfs_unavailable``), removed after the run; columns with role ``never_output`` are
dropped even if granted. A job on a dataset of which the agreement grants a ``join_key`` column is refused
(``POLICY_DENIED``, reason ``column.join_key_for_code``): a key shared across datasets would let non-DP output
link people to other data.

Custom code is **not** differentially private. Its cost is what the spec declares (default 0, charged like any
other job), and it leaves only through two owner decisions:

1. approval of the exact submission: the job's spec hash covers the source, the entrypoint and the output spec,
   and `execute` passes `sandbox.coderun.code_hash` of that spec as ``expected_code_hash``, so what runs is
   what was approved (the review shows the source, the code hash, the columns and a dry run on the mock);
2. release of the output: `execute` returns ``release="owner"``; the gateway keeps the output until the owner
   has looked at it (with the run's stdout/stderr tails, `Output.owner_detail`) and releases or refuses it.

``model`` outputs (safetensors bytes, validated by `sandbox.coderun.outputs`) are written to
``models_dir/<job id>/model.safetensors`` with a card that states the absence of a DP guarantee.

Failures. Refunded, because decided before any raw data is read and independent of it: where the sandbox
cannot run (no bubblewrap, no root to drop from, no seccomp table: `check_sandbox`) the job fails with
``worker.unavailable_before_read`` and nothing runs unisolated; ``code.spec_changed``, ``code.cost_changed``,
``code.hash_mismatch``, ``code.<error code>`` when the agreement as it stands no longer allows the spec. Once the
columns are staged every failure is charged like a release and the grantee sees only ``code.failed`` (same state,
same reason, whatever happened); the cause — the runner's scrubbed vocabulary (``code.timeout``,
``code.memory_limit``, ``code.exception.ValueError``, ``code.output_too_large``, …), with the stdout/stderr tails —
goes to the data owner's review only (`JobFailed.cause`, `JobFailed.detail`). A sandbox error reported after the
run was launched (``code.sandbox_error``) is charged too: the runner cannot prove the code had not started.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from catalog.columns import Role
from catalog.errors import APPROVAL_REQUIRED, INTERNAL, INVALID_REQUEST, POLICY_DENIED, DomainError
from catalog.fingerprint import HashAlg
from catalog.fingerprint import digest as fingerprint_digest
from catalog.mock import mock_table
from catalog.registry import Dataset
from catalog.sealed import Sealer, is_sealed
from catalog.storage import LocalStorage
from policies import Agreement, Budget, BudgetError, Job, spec_hash
from sandbox.coderun import (
    CodeFailure,
    CodeOutcome,
    CodeResult,
    Limits,
    OutputSpec,
    SandboxConfig,
    check_sandbox,
    check_source,
    code_hash,
    dry_run_on_mock,
    run_code,
    tmpfs,
)
from sandbox.jobs.base import BEFORE_READ, JobEnv, JobFailed, Output, Plan, agreement_dataset, digest_json
from sandbox.jobs.train import model_valid_days

__all__ = ["FAILED", "CodeHandler", "CodeSpec", "parse_code_spec"]

FAILED = "code.failed"  # the one public reason of a run that started

_SPEC_KEYS = frozenset({"dataset", "source", "entrypoint", "outputs", "epsilon", "purpose"})
MOCK_ROWS = 100
WEIGHTS_FILE = "model.safetensors"
NOT_DP = ("none: custom code is not differentially private; the output was released by the data owner after "
          "reviewing the code (bound to its hash), its run on the mock, and the output itself")


class CodeSpec:
    """A parsed custom-code spec."""

    def __init__(self, dataset: str, source: str, entrypoint: str, outputs: OutputSpec, cost: Budget,
                 purpose: str | None, hash_alg: HashAlg = "sha256") -> None:
        self.dataset, self.source, self.entrypoint = dataset, source, entrypoint
        self.outputs, self.cost, self.purpose = outputs, cost, purpose
        self.hash_alg: HashAlg = hash_alg

    @property
    def code_hash(self) -> str:
        """The submission's identity (`sandbox.coderun.source.code_hash`, the home suite's hash ``hash_alg``:
        ``sha256:`` in ``intl``, ``sm3:`` in ``sm``): what the owner's approval binds to."""
        return code_hash(self.source, self.entrypoint, self.outputs, self.hash_alg)


def parse_code_spec(spec: Mapping[str, Any], hash_alg: HashAlg = "sha256") -> CodeSpec:
    """A `CodeSpec`, or ``INVALID_REQUEST`` listing every malformed field (never echoing the source);
    ``hash_alg`` is the home suite's hash, which names the code (`CodeSpec.code_hash`)."""
    if not isinstance(spec, Mapping):
        raise DomainError(INVALID_REQUEST, "the code spec must be a JSON object")
    problems: list[dict[str, Any]] = [{"field": k, "problem": "unknown field"} for k in sorted(set(spec) - _SPEC_KEYS)]
    dataset, source = spec.get("dataset"), spec.get("source")
    entrypoint = spec.get("entrypoint", "main")
    if not isinstance(dataset, str) or not dataset:
        problems.append({"field": "dataset", "problem": "a dataset name is required"})
    if not isinstance(source, str) or not source.strip():
        problems.append({"field": "source", "problem": "Python source text is required"})
    if not isinstance(entrypoint, str):
        problems.append({"field": "entrypoint", "problem": "a function name is required"})
    outputs: OutputSpec | None = None
    try:
        outputs = OutputSpec.of(spec.get("outputs", {"kind": "json"}))
    except DomainError as e:
        problems += [{"field": "outputs", "problem": e.message}]
    cost = Budget.zero()
    eps = spec.get("epsilon", 0)
    try:
        if isinstance(eps, bool):
            raise BudgetError("boolean")
        cost = Budget.parse(eps, 0)
    except (BudgetError, TypeError, ValueError):
        problems.append({"field": "epsilon", "problem": "a non-negative number is required"})
    purpose = spec.get("purpose")
    if purpose is not None and not isinstance(purpose, str):
        problems.append({"field": "purpose", "problem": "a purpose name is required"})
    if problems:
        raise DomainError(INVALID_REQUEST, "the code spec is not valid", problems)
    assert isinstance(dataset, str) and isinstance(source, str) and isinstance(entrypoint, str)
    assert outputs is not None
    check_source(source, entrypoint)
    return CodeSpec(dataset, source, entrypoint, outputs, cost, purpose, hash_alg)


def _granted(spec: CodeSpec, agreement: Agreement, datasets: Mapping[str, Dataset]) -> tuple[Dataset, tuple[str, ...]]:
    """The dataset and the columns the code may see: granted by the agreement, present, not ``never_output``;
    ``POLICY_DENIED`` (reason ``column.join_key_for_code``) if the agreement grants a ``join_key`` column of it."""
    doc = agreement.document
    if spec.purpose is not None and spec.purpose not in doc.purposes:
        raise DomainError(POLICY_DENIED, "the purpose is not one the agreement allows",
                          [{"field": "purpose", "problem": "not a purpose of the agreement"}])
    ds = agreement_dataset(agreement, datasets, spec.dataset)
    keys = [c for c in doc.columns.get(ds.name, ()) if c in ds.columns and ds.columns[c].role is Role.JOIN_KEY]
    if keys:  # agreements refuse this since it was introduced; one stored before must not reach the runner
        raise DomainError(POLICY_DENIED, "the agreement grants a join_key column, which custom code may never read",
                          [{"reason": "column.join_key_for_code", "dataset": ds.name, "column": c} for c in keys])
    cols = tuple(c for c in ds.columns if c in set(doc.columns.get(ds.name, ()))
                 and ds.columns[c].role is not Role.NEVER_OUTPUT)
    if not cols:
        raise DomainError(POLICY_DENIED, "the agreement grants no column of this dataset that code may read",
                          [{"field": "dataset", "problem": "no readable granted column"}])
    return ds, cols


def _outcome_json(o: CodeOutcome) -> dict[str, Any]:
    base = {"stdout_tail": o.stdout_tail, "stderr_tail": o.stderr_tail, "duration_s": o.duration_s,
            "on_mock": o.on_mock}
    if isinstance(o, CodeFailure):
        return {"ok": False, "reason": o.reason, "detail": o.detail, **base}
    if o.output_kind == "json":
        return {"ok": True, "kind": "json", "output": o.value(), "digest": o.digest, **base}
    return {"ok": True, "kind": "model", "bytes": len(o.output_bytes), "digest": o.digest, **base}


def _reason(failure: CodeFailure) -> str:
    """``code.<reason>`` from the runner's scrubbed vocabulary (``exception: ValueError`` becomes
    ``code.exception.ValueError``)."""
    return "code." + "".join(ch if ch.isalnum() or ch in "._" else "." for ch in failure.reason.replace(": ", "."))


def _owner_text(failure: CodeFailure) -> str:
    return (f"{failure.detail}\n--- stdout (tail) ---\n{failure.stdout_tail}\n"
            f"--- stderr (tail) ---\n{failure.stderr_tail}")


def _tensors(data: bytes) -> dict[str, Any]:
    n = int.from_bytes(data[:8], "little")
    header = json.loads(data[8:8 + n])
    return {k: {"dtype": v["dtype"], "shape": v["shape"]} for k, v in header.items() if k != "__metadata__"}


def _project(ds: Dataset, cols: tuple[str, ...], dst: Path, sealer: Sealer | None = None) -> None:
    """Stream ``cols`` of the registered Parquet file into ``dst`` (the only file the sandbox is given); a file
    sealed at rest is decrypted in this process's memory first (`catalog.sealed`)."""
    path = Path(ds.path)
    f = pq.ParquetFile(pa.BufferReader(sealer.read_file(path)) if sealer is not None and is_sealed(path) else path)
    schema = pa.schema([f.schema_arrow.field(c) for c in cols])
    with pq.ParquetWriter(dst, schema) as w:
        for batch in f.iter_batches(batch_size=1 << 16, columns=list(cols)):
            w.write_batch(batch)


class CodeHandler:
    """``kind: "code"`` (see the module docstring). ``JobEnv.extra`` may hold ``code_limits`` (`Limits` or its
    fields), ``code_config`` (`SandboxConfig`) and ``code_mock_rows``."""

    kind = "code"

    def __init__(self) -> None:
        self._usable: set[SandboxConfig] = set()
        self._lock = threading.Lock()

    def plan(self, spec: Mapping[str, Any], agreement: Agreement, datasets: Mapping[str, Dataset],
             hash_alg: HashAlg = "sha256") -> Plan:
        """The granted dataset and columns, the spec's declared cost and the code hash (``hash_alg``, the home
        suite's hash); released by the owner."""
        cs = parse_code_spec(spec, hash_alg)
        ds, cols = _granted(cs, agreement, datasets)
        return Plan(datasets=(ds.name,), columns={ds.name: tuple(sorted(cols))}, cost=cs.cost,
                    summary={"code_hash": cs.code_hash, "entrypoint": cs.entrypoint,
                             "outputs": {"kind": cs.outputs.kind, "max_bytes": cs.outputs.max_bytes},
                             "input": {"name": ds.name, "columns": list(cols)},
                             "differentially_private": False, "release": "owner"})

    def review(self, spec: Mapping[str, Any], plan: Plan, datasets: Mapping[str, Dataset],
               env: JobEnv) -> dict[str, Any]:
        """The source, its hash, the input columns and cost, and a dry run of the code on a mock table."""
        assert env.agreement is not None
        cs = parse_code_spec(spec, env.hash_alg)
        ds, cols = _granted(cs, env.agreement, datasets)
        mock = mock_table(ds.name, {c: ds.columns[c] for c in cols}, rows=int(env.extra.get("code_mock_rows",
                                                                                           MOCK_ROWS)))
        try:
            dry = _outcome_json(dry_run_on_mock(cs.source, cs.entrypoint, {ds.name: mock}, cs.outputs.kind,
                                                cs.outputs.max_bytes, _limits(env), config=_config(env),
                                                hash_alg=env.hash_alg))
        except DomainError as e:
            dry = {"ok": False, "reason": "sandbox.unavailable" if e.code == INTERNAL else e.code.lower()}
        return {
            "kind": "code",
            "source": cs.source,
            "entrypoint": cs.entrypoint,
            "outputs": {"kind": cs.outputs.kind, "max_bytes": cs.outputs.max_bytes},
            "code_hash": cs.code_hash,
            "input": {"name": ds.name, "fingerprint": ds.fingerprint, "columns": list(cols)},
            "cost": cs.cost.as_json(),
            "differentially_private": False,
            "dry_run_on_mock": dry,
            "release": "owner: the output waits for the data owner's release after the run",
        }

    def execute(self, job: Job, datasets: Mapping[str, Dataset], env: JobEnv) -> Output:
        """Run the approved code in the sandbox over the granted columns; its output waits for the owner."""
        assert env.agreement is not None
        if spec_hash(job.spec, env.hash_alg) != job.spec_hash:  # the home suite's hash, as submitted
            raise JobFailed("code.spec_changed", before_read=True)
        try:
            cs = parse_code_spec(job.spec, env.hash_alg)
            ds, cols = _granted(cs, env.agreement, datasets)
        except DomainError as e:
            raise JobFailed(f"code.{e.code.lower()}", before_read=True) from None
        if cs.cost != job.cost:
            raise JobFailed("code.cost_changed", before_read=True)
        config, limits = _config(env), _limits(env)
        self._require_sandbox(config)
        scratch = _private_scratch(env, config, job.id)
        try:
            staged = scratch / f"{ds.name}.parquet"
            try:
                _project(ds, cols, staged, env.sealer)
            except Exception:  # reading the registered file: data was read, so the run is charged
                raise JobFailed(FAILED, "the granted columns could not be staged for the run",
                                cause="code.staging_failed") from None
            try:
                outcome = run_code(cs.source, cs.entrypoint, {ds.name: staged}, cs.outputs.kind,
                                   cs.outputs.max_bytes, limits, expected_code_hash=cs.code_hash, hash_alg=env.hash_alg,
                                   config=dataclasses.replace(config, staging_dir=str(scratch)))
            except DomainError as e:
                if e.code == APPROVAL_REQUIRED:  # checked before anything runs
                    raise JobFailed("code.hash_mismatch", before_read=True) from None
                if e.code == INTERNAL:  # may come after the launch: not provably before the code read data
                    raise JobFailed(FAILED, "the isolated runner reported an error; see the host log",
                                    cause="code.sandbox_error") from None
                raise JobFailed(f"code.{e.code.lower()}", before_read=True) from None  # refused before running
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        if isinstance(outcome, CodeFailure):
            raise JobFailed(FAILED, _owner_text(outcome), cause=_reason(outcome))
        detail = {"stdout_tail": outcome.stdout_tail, "stderr_tail": outcome.stderr_tail,
                  "duration_s": outcome.duration_s, "run_id": outcome.run_id, "code_hash": cs.code_hash}
        if outcome.output_kind == "json":
            value = outcome.value()
            return Output(kind="json", result=value, output_digest=digest_json(value, env.hash_alg), release="owner",
                          owner_detail=detail)
        return self._model_output(job, cs, ds, cols, outcome, env, detail)

    def _model_output(self, job: Job, cs: CodeSpec, ds: Dataset, cols: tuple[str, ...], outcome: CodeResult,
                      env: JobEnv, detail: dict[str, Any]) -> Output:
        models = LocalStorage(Path(env.models_dir))  # the storage root's models/: written only through the interface
        key = f"{job.id}/{WEIGHTS_FILE}"
        weights = models.path_of(key)
        if env.sealer is not None:  # sealed at rest under the model's own data key (catalog.sealed)
            env.sealer.key_for(f"model:{job.id}")
            models.write_stream(key, env.sealer.seal_chunks(f"model:{job.id}", outcome.output_bytes))
        else:
            models.write_bytes(key, outcome.output_bytes)  # fsynced before the job's output row commits
        card = {
            "card_version": 1,
            "model": "custom_code",
            "differentially_private": False,
            "privacy": NOT_DP,
            "code_hash": cs.code_hash,
            "entrypoint": cs.entrypoint,
            "cost": cs.cost.as_json(),
            "data": [{"dataset": ds.name, "fingerprint": ds.fingerprint, "columns": list(cols)}],
            "tensors": _tensors(outcome.output_bytes),
            "weights": {"file": WEIGHTS_FILE, "format": "safetensors",
                        "sha256": fingerprint_digest(outcome.output_bytes, env.hash_alg)},
        }
        card_bytes = json.dumps(card, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
        digest = fingerprint_digest(outcome.output_bytes + card_bytes, env.hash_alg)
        ag = env.agreement
        purpose = cs.purpose or job.purpose or (
            ag.document.purposes[0] if ag is not None and len(ag.document.purposes) == 1 else None)
        model = {"owner": job.created_by, "algorithm": "custom_code", "purpose": purpose, "features": list(cols),
                 "card": card, "weights_path": f"{job.id}/{WEIGHTS_FILE}", "output_digest": digest,
                 "source_datasets": {ds.name: ds.fingerprint}, "valid_days": model_valid_days(env)}
        return Output(kind="model", result={"model_id": None, "certificate_id": None, "card": card},
                      output_digest=digest, release="owner", artifact=weights, model=model, owner_detail=detail)

    def _require_sandbox(self, config: SandboxConfig) -> None:
        """Run the sandbox's self-test once per configuration; refuse the job where it cannot run."""
        with self._lock:
            if config in self._usable:
                return
        try:
            check_sandbox(config)
        except DomainError:
            raise JobFailed(BEFORE_READ, "bubblewrap, setpriv, root or the seccomp table is missing on this host, "
                            "so custom code cannot run isolated; see the host log", before_read=True,
                            cause="code.sandbox_unavailable") from None
        with self._lock:
            self._usable.add(config)


def _private_scratch(env: JobEnv, config: SandboxConfig, job_id: str) -> Path:
    """The run's 0700 directory on a tmpfs (`sandbox.coderun.tmpfs`); refused before any data is read without one.

    Also clears what a dead worker left there, and the plaintext scratch ``work/code/`` of older versions."""
    shutil.rmtree(Path(env.work_dir) / "code", ignore_errors=True)
    tmpfs.sweep_stale(config.tmpfs_dir)
    try:
        return tmpfs.private_dir(config.tmpfs_dir, job_id)
    except (tmpfs.TmpfsUnavailable, OSError):
        raise JobFailed(BEFORE_READ, "no tmpfs (memory-backed filesystem) to stage the granted columns on, so "
                        "they are not written to disk; see the host log", before_read=True,
                        cause="code.tmpfs_unavailable") from None


def _config(env: JobEnv) -> SandboxConfig:
    cfg = env.extra.get("code_config")
    return cfg if isinstance(cfg, SandboxConfig) else SandboxConfig()


def _limits(env: JobEnv) -> Limits:
    """``extra["code_limits"]`` (a `Limits` or its fields), its wall clock capped by the job's."""
    raw = env.extra.get("code_limits")
    limits = raw if isinstance(raw, Limits) else Limits(**raw) if isinstance(raw, Mapping) else Limits()
    if limits.wall_seconds > env.timeout_s:
        limits = dataclasses.replace(limits, wall_seconds=max(0.5, env.timeout_s))
    return limits
