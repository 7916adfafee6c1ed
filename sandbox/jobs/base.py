"""The contract between the job flow (gateway) and the sandbox's runners, one `Handler` per job kind.

A handler never speaks HTTP and never touches the ledger. The gateway calls, in order:

1. ``plan(spec, agreement, datasets)`` at submission — vet the spec against the agreement's scope, say which
   datasets and columns it touches and what it will cost (no raw data read). Raises `DomainError`
   (``INVALID_REQUEST``, ``QUERY_REJECTED``, ``POLICY_DENIED``) with every violation.
2. ``review(spec, plan, datasets, env)`` for the data owner before approval — what the owner must see: the exact
   canonical form, the estimated cost and a run on the *mock* (never raw data). Spends nothing.
3. ``execute(job, datasets, env)`` on the worker after the budget is charged — runs on raw data and returns an
   `Output`, or raises `JobFailed`.

Failures and refunds (issue "oracle-free private answers"). A failure is refunded only when it is decided
before any raw data is read — a spec the current agreement no longer allows, a changed cost, a worker or sandbox
that could not start — and the handler says so with ``JobFailed(reason, before_read=True)``; its public reason
is data-independent (``worker.unavailable_before_read``, ``code.spec_changed``, …). Every other failure is
charged like a release, and the grantee sees only the kind's uniform reason (``query.failed``, ``train.failed``,
``code.failed``; the gateway enforces it whatever the handler says); the specific cause (``code.timeout``,
``train.crashed``, ``release.too_large``) and its detail go to the data owner's review and to an audit incident
the grantee cannot read. Query jobs do not fail at all once the data query is sent: `sandbox.sql.run` releases
the answer over an empty input and sets `Output.incident`.

The release gate (`sandbox.jobs.gate`) checks every `Output` before it leaves: the output kind must be one the
job kind may release, and its digest must match.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

from catalog.errors import INVALID_REQUEST, POLICY_DENIED, DomainError
from catalog.fingerprint import HashAlg, digest, file_fingerprint
from catalog.registry import Dataset
from policies import Agreement, Budget, Job
from sandbox.sql.service import BEFORE_READ

__all__ = ["BEFORE_READ", "Handler", "JobEnv", "JobFailed", "Output", "OutputKind", "Plan", "agreement_dataset",
           "digest_file", "digest_json"]

OutputKind = Literal["aggregate", "model", "json"]


class JobFailed(Exception):
    """A job could not produce a releasable output.

    ``reason`` is the short public code the grantee sees (``"code.failed"``, ``"worker.unavailable_before_read"``);
    ``cause`` the specific code for the data owner (``"code.timeout"``; default: ``reason``); ``detail`` free text
    for the data owner only (may be None). ``before_read`` says no raw data was read: only then is the job
    refunded (see the module docstring)."""

    def __init__(self, reason: str, detail: str | None = None, *, before_read: bool = False,
                 cause: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.detail = detail
        self.before_read = before_read
        self.cause = cause or reason


@dataclass(frozen=True)
class Plan:
    """What a spec touches and costs, known before any raw data is read."""

    datasets: tuple[str, ...]
    columns: dict[str, tuple[str, ...]]
    cost: Budget
    summary: dict[str, Any] = field(default_factory=dict)  # JSON: canonical form, expected error, hashes


@dataclass(frozen=True)
class JobEnv:
    """Where a job may read and write, and the shared execution resources the service holds."""

    data_dir: Path
    models_dir: Path
    work_dir: Path  # scratch space private to the service; a runner makes its own subdirectory per job
    threads: int = 2
    memory_limit: str = "2GB"
    timeout_s: float = 600.0
    query_engines: Any = None  # sandbox.jobs.query.QueryEngines (locked DuckDB workers), shared by jobs
    sealer: Any = None  # catalog.sealed.Sealer: opens the files sealed at rest (None: plain files only)
    agreement: Agreement | None = None  # the job's agreement as loaded when it started (set per job)
    hash_alg: HashAlg = "sha256"  # the home suite's hash: output digests are ``sha256:`` (intl) or ``sm3:`` (sm)
    extra: dict[str, Any] = field(default_factory=dict)  # kind-specific settings (e.g. coderun config/limits)


@dataclass(frozen=True)
class Output:
    """A candidate release. ``result`` is the JSON body the grantee receives; ``artifact`` a file under
    ``JobEnv.models_dir`` (weights); ``release`` says whether the gate may release it directly (``auto``: the
    output is DP by construction) or the data owner must look at it first (``owner``: custom code).
    ``model`` carries the keyword arguments of `catalog.models.register_model` (without engine/job ids) for
    outputs that become registered models."""

    kind: OutputKind
    result: Any
    output_digest: str
    release: Literal["auto", "owner"] = "auto"
    artifact: Path | None = None
    model: dict[str, Any] | None = None
    owner_detail: dict[str, Any] | None = None  # shown to the data owner only (e.g. stdout tail of custom code)
    incident: str | None = None  # a residual failure behind a release (query jobs): the owner's, never the grantee's
    # What leaves instead when the gate refuses this output after data was read (query jobs: the answer over an
    # empty input, with fresh noise); called at most once.
    fallback: Callable[[], Output] | None = None


class Handler(Protocol):
    """What the job flow needs of one job kind; the three steps are described in the module docstring."""

    kind: str

    def plan(self, spec: Mapping[str, Any], agreement: Agreement, datasets: Mapping[str, Dataset],
             hash_alg: HashAlg = "sha256") -> Plan:
        """Vet ``spec`` against ``agreement`` and price it, reading no raw data; `DomainError` otherwise.
        ``hash_alg`` is the home suite's hash, for the identifiers the plan names (a code or spec hash)."""

    def review(self, spec: Mapping[str, Any], plan: Plan, datasets: Mapping[str, Dataset],
               env: JobEnv) -> dict[str, Any]:
        """What the data owner sees before approving: canonical form, cost and a run on the mock (JSON)."""

    def execute(self, job: Job, datasets: Mapping[str, Dataset], env: JobEnv) -> Output:
        """Run an approved, charged job on the raw data; `JobFailed` when it produces nothing releasable."""


def digest_json(value: Any, alg: HashAlg = "sha256") -> str:
    """``<alg>:<hex>`` of the canonical JSON of ``value`` (sorted keys, no whitespace), with the home suite's hash
    (``sha256:`` intl, ``sm3:`` sm)."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    return digest(text.encode(), alg)


def digest_file(path: Path, alg: HashAlg = "sha256") -> str:
    """``<alg>:<hex>`` of a file's bytes, read in 1 MiB chunks (model weights can be large)."""
    return file_fingerprint(Path(path), alg)


def agreement_dataset(agreement: Agreement, datasets: Mapping[str, Dataset], name: str) -> Dataset:
    """The dataset a job names, if the agreement covers it (``POLICY_DENIED``) and it is registered
    (``INVALID_REQUEST``)."""
    if name not in agreement.document.datasets:
        raise DomainError(POLICY_DENIED, "the dataset is not covered by the agreement",
                          [{"field": "dataset", "problem": "not a dataset of the agreement"}])
    ds = datasets.get(name)
    if ds is None:
        raise DomainError(INVALID_REQUEST, "the dataset is not registered",
                          [{"field": "dataset", "problem": "not registered"}])
    return ds
