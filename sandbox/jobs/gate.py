"""The release gate: the last check before anything computed on raw data leaves the domain.

Only these leave, and only from the job kinds that produce them:

- ``aggregate`` (query jobs): the noisy table of `sandbox.sql` — columns, rows, suppressed-group count, cost,
  error bars and the digest it was released under;
- ``model`` (train jobs; custom code declaring a model output): a card (JSON) plus a weights file inside the
  service's models directory;
- ``json`` (custom code): a JSON value under the declared size, released only after the data owner saw it.

The gate refuses an output of another kind, a body over the size limit, a digest that is not the home suite's
(``sha256:`` in an ``intl`` home, ``sm3:`` in an ``sm`` home), a JSON output whose digest does not match its
content, and an artifact outside the models directory. A refusal comes after the data was read, so it
is charged like a release: the grantee sees the kind's uniform ``<kind>.failed`` and the data owner the
``release.*`` cause (`gateway.services.jobs`); a query job releases its `Output.fallback` (the answer over an empty
input) instead.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from catalog.fingerprint import HashAlg
from sandbox.jobs.base import JobFailed, Output, digest_json
from vocab.jobs import JOB_KINDS

__all__ = ["ALLOWED_OUTPUTS", "MAX_RESULT_BYTES", "check", "suite_digest"]

# The output kinds each queued job kind may release, from the one job-kind table (`vocab.jobs.JOB_KINDS`).
ALLOWED_OUTPUTS: dict[str, frozenset[str]] = {k.value: spec.outputs for k, spec in JOB_KINDS.items() if spec.queued}
MAX_RESULT_BYTES = 8 << 20
_ALGS: frozenset[HashAlg] = frozenset({"sha256", "sm3"})
_AGGREGATE_KEYS = frozenset({"columns", "rows", "suppressed_groups", "cost", "error_bars", "output_digest"})


def suite_digest(out: Output, hash_alg: HashAlg = "sha256") -> None:
    """Raise `JobFailed` (``release.bad_digest``) unless ``out``'s digest is the home suite's hash: ``sha256:<64 hex>``
    in an ``intl`` home, ``sm3:<64 hex>`` in an ``sm`` home. The job flow calls it with `check` on every output."""
    d = out.output_digest
    if not (isinstance(d, str) and d.startswith(hash_alg + ":") and len(d) == len(hash_alg) + 65):
        raise JobFailed("release.bad_digest")


def check(job_kind: str, out: Output, models_dir: Path, max_bytes: int = MAX_RESULT_BYTES) -> None:
    """Raise `JobFailed` (``release.*``) unless ``out`` may leave as the output of a ``job_kind`` job. Its digest
    is ``<alg>:<64 hex>`` of a suite's hash (`suite_digest` pins it to the home's); a JSON output's is recomputed
    with that hash."""
    if out.kind not in ALLOWED_OUTPUTS.get(job_kind, frozenset()):
        raise JobFailed("release.kind_not_allowed")
    try:
        body = json.dumps(out.result, sort_keys=True, allow_nan=False).encode()
    except (TypeError, ValueError):
        raise JobFailed("release.not_json") from None
    if len(body) > max_bytes:
        raise JobFailed("release.too_large")
    alg, _, hexdigest = out.output_digest.partition(":") if isinstance(out.output_digest, str) else ("", "", "")
    if alg not in _ALGS or len(hexdigest) != 64:
        raise JobFailed("release.bad_digest")
    if out.kind == "aggregate" and not (isinstance(out.result, dict) and set(out.result) == _AGGREGATE_KEYS
                                        and out.result["output_digest"] == out.output_digest):
        raise JobFailed("release.not_an_aggregate")
    if out.kind == "json" and digest_json(out.result, alg) != out.output_digest:
        raise JobFailed("release.digest_mismatch")
    if out.artifact is not None:
        root = os.path.realpath(models_dir)
        real = os.path.realpath(out.artifact)
        if os.path.commonpath([root, real]) != root or not os.path.isfile(real):
            raise JobFailed("release.artifact_outside")
    elif out.kind == "model":
        raise JobFailed("release.missing_artifact")
