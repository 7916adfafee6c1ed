"""The release gate: the last check before anything computed on raw data leaves the domain.

Only these leave, and only from the job kinds that produce them:

- ``aggregate`` (query jobs): the noisy table of `sandbox.sql` — columns, rows, suppressed-group count, cost,
  error bars and the digest it was released under;
- ``model`` (train jobs; custom code declaring a model output): a card (JSON) plus a weights file inside the
  service's models directory;
- ``json`` (custom code): a JSON value under the declared size, released only after the data owner saw it.

The gate refuses an output of another kind, a body over the size limit, a JSON output whose digest does not
match its content, and an artifact outside the models directory. A refusal comes after the data was read, so it
is charged like a release: the grantee sees the kind's uniform ``<kind>.failed`` and the data owner the
``release.*`` cause (`gateway.services.jobs`); a query job releases its `Output.fallback` (the answer over an empty
input) instead.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from sandbox.jobs.base import JobFailed, Output, digest_json
from vocab.jobs import JOB_KINDS

__all__ = ["ALLOWED_OUTPUTS", "MAX_RESULT_BYTES", "check"]

# The output kinds each queued job kind may release, from the one job-kind table (`vocab.jobs.JOB_KINDS`).
ALLOWED_OUTPUTS: dict[str, frozenset[str]] = {k.value: spec.outputs for k, spec in JOB_KINDS.items() if spec.queued}
MAX_RESULT_BYTES = 8 << 20
_AGGREGATE_KEYS = frozenset({"columns", "rows", "suppressed_groups", "cost", "error_bars", "output_digest"})


def check(job_kind: str, out: Output, models_dir: Path, max_bytes: int = MAX_RESULT_BYTES) -> None:
    """Raise `JobFailed` (``release.*``) unless ``out`` may leave as the output of a ``job_kind`` job."""
    if out.kind not in ALLOWED_OUTPUTS.get(job_kind, frozenset()):
        raise JobFailed("release.kind_not_allowed")
    try:
        body = json.dumps(out.result, sort_keys=True, allow_nan=False).encode()
    except (TypeError, ValueError):
        raise JobFailed("release.not_json") from None
    if len(body) > max_bytes:
        raise JobFailed("release.too_large")
    if not (isinstance(out.output_digest, str) and out.output_digest.startswith("sha256:")
            and len(out.output_digest) == 71):
        raise JobFailed("release.bad_digest")
    if out.kind == "aggregate" and not (isinstance(out.result, dict) and set(out.result) == _AGGREGATE_KEYS
                                        and out.result["output_digest"] == out.output_digest):
        raise JobFailed("release.not_an_aggregate")
    if out.kind == "json" and digest_json(out.result) != out.output_digest:
        raise JobFailed("release.digest_mismatch")
    if out.artifact is not None:
        root = os.path.realpath(models_dir)
        real = os.path.realpath(out.artifact)
        if os.path.commonpath([root, real]) != root or not os.path.isfile(real):
            raise JobFailed("release.artifact_outside")
    elif out.kind == "model":
        raise JobFailed("release.missing_artifact")
