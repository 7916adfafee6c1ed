"""The job kinds and the one table of what each kind needs, who runs it and what it may release.

A *job kind* is both a permission an agreement grants (its ``job_kinds``) and a kind of computation the
product runs. `JOB_KINDS` says, per kind:

- ``permission``: the entry of the agreement's ``job_kinds`` the computation needs (`policies.decision`);
- ``handler``: ``"module:attribute"`` of the code that runs it, resolved by the gateway (this package imports
  nothing of ours): for a queued kind the sandbox `Handler` class (`sandbox.jobs`), otherwise the gateway
  route that serves it;
- ``outputs``: what may leave. For a queued kind these are the release gate's output kinds
  (`sandbox.jobs.gate.ALLOWED_OUTPUTS` is read from here); for the others, what the route answers;
- ``queued``: submitted with ``POST /v1/jobs`` (``POST /v1/queries`` for queries), run by the worker;
- ``stored``: a row of the jobs table may carry it (``ck_jobs_kind``; ``verify`` and ``score`` are reserved
  there although no handler submits them).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType

__all__ = ["JOB_KINDS", "QUEUED_KINDS", "STORED_KINDS", "JobKind", "JobKindSpec"]


class JobKind(StrEnum):
    QUERY = "query"
    TRAIN = "train"
    CODE = "code"
    VERIFY = "verify"
    SCORE = "score"
    SECAGG = "secagg"
    PSI_SIZE = "psi_size"
    PSI_MEMBERS = "psi_members"
    VERIFY_ANONYMOUS = "verify_anonymous"


@dataclass(frozen=True)
class JobKindSpec:
    permission: JobKind
    handler: str
    outputs: frozenset[str]
    queued: bool
    stored: bool
    summary: str


K = JobKind
JOB_KINDS: Mapping[JobKind, JobKindSpec] = MappingProxyType(
    {
        K.QUERY: JobKindSpec(
            permission=K.QUERY,
            handler="sandbox.jobs.query:QueryHandler",
            outputs=frozenset({"aggregate"}),
            queued=True,
            stored=True,
            summary="a differentially private SQL aggregate",
        ),
        K.TRAIN: JobKindSpec(
            permission=K.TRAIN,
            handler="sandbox.jobs.train:TrainHandler",
            outputs=frozenset({"model"}),
            queued=True,
            stored=True,
            summary="DP-SGD model training; the model leaves with its card",
        ),
        K.CODE: JobKindSpec(
            permission=K.CODE,
            handler="sandbox.jobs.code:CodeHandler",
            outputs=frozenset({"json", "model"}),
            queued=True,
            stored=True,
            summary="custom code in the isolated runner; its output leaves after the owner saw it",
        ),
        K.VERIFY: JobKindSpec(
            permission=K.VERIFY,
            handler="gateway.routes.verifications:check",
            outputs=frozenset({"verdict"}),
            queued=False,
            stored=True,
            summary="a consented check of one subject against a verification product",
        ),
        K.SCORE: JobKindSpec(
            permission=K.SCORE,
            handler="gateway.routes.models:score",
            outputs=frozenset({"ciphertext"}),
            queued=False,
            stored=True,
            summary="homomorphic scoring of encrypted applicants with a released model",
        ),
        K.SECAGG: JobKindSpec(
            # A round sums federated training updates: `policies.decision` checks the "train" permission.
            permission=K.TRAIN,
            handler="gateway.routes.secagg:open_round",
            outputs=frozenset({"sum"}),
            queued=False,
            stored=False,
            summary="a secure-aggregation round of federated training",
        ),
        K.PSI_SIZE: JobKindSpec(
            permission=K.PSI_SIZE,
            handler="gateway.routes.psi:size",
            outputs=frozenset({"count"}),
            queued=False,
            stored=False,
            summary="the noisy size of a private set intersection",
        ),
        K.PSI_MEMBERS: JobKindSpec(
            permission=K.PSI_MEMBERS,
            handler="gateway.routes.psi:members",
            outputs=frozenset({"blinded_elements"}),
            queued=False,
            stored=False,
            summary="the bank's blinded ids re-keyed, so it finds which of them are in the set",
        ),
        K.VERIFY_ANONYMOUS: JobKindSpec(
            permission=K.VERIFY_ANONYMOUS,
            handler="gateway.routes.psi:check_anonymous",
            outputs=frozenset({"labels"}),
            queued=False,
            stored=False,
            summary="a verification check that does not reveal the subject to the owner",
        ),
    }
)
del K

#: The kinds submitted as jobs and run by the worker, in `JobKind` order.
QUEUED_KINDS: tuple[JobKind, ...] = tuple(k for k, s in JOB_KINDS.items() if s.queued)
#: The kinds a row of the jobs table may carry, in `JobKind` order.
STORED_KINDS: tuple[JobKind, ...] = tuple(k for k, s in JOB_KINDS.items() if s.stored)
