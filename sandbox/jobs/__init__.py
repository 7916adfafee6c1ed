"""Job runners: one `Handler` per job kind (`base`), the release gate (`gate`).

- `base`: the handler contract (`plan` → `review` → `execute`), `Plan`, `Output`, `JobEnv`, `JobFailed`.
- `query`: DP SQL jobs (`sandbox.sql`).
- `train`: DP-SGD model training (`sandbox.train`).
- `code`: owner-approved custom code in the bubblewrap sandbox (`sandbox.coderun`).
- `gate`: what may leave: the output kinds each job kind may release, digests re-checked.
"""

from __future__ import annotations

from sandbox.jobs import gate
from sandbox.jobs.base import Handler, JobEnv, JobFailed, Output, Plan, digest_file, digest_json
from sandbox.jobs.code import CodeHandler
from sandbox.jobs.query import QueryHandler
from sandbox.jobs.train import TrainHandler

HANDLERS: dict[str, Handler] = {"query": QueryHandler(), "train": TrainHandler(), "code": CodeHandler()}


def handler_for(kind: str) -> Handler | None:
    """The handler of job kind ``kind``, or None for a kind the sandbox does not run."""
    return HANDLERS.get(kind)


__all__ = [
    "HANDLERS",
    "Handler",
    "JobEnv",
    "JobFailed",
    "Output",
    "Plan",
    "digest_file",
    "digest_json",
    "gate",
    "handler_for",
]
