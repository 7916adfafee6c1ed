"""The gateway's reading of the job-kind table (`vocab.jobs.JOB_KINDS`): it resolves each kind's handler path.

`vocab` imports nothing of ours, so the table names handlers as ``"module:attribute"`` strings; this module
imports them. `handler(kind)` is the sandbox `Handler` of a kind submitted as a job — the instance registered in
`sandbox.jobs.HANDLERS`, which must be of the class the table names (checked when this module is imported) — or
``None`` for a kind served by its own route. `resolve` imports any handler path (``tests/unit/vocab`` checks
that every path of the table resolves to a callable).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from sandbox.jobs import Handler, handler_for
from vocab.jobs import JOB_KINDS, QUEUED_KINDS, JobKind

__all__ = ["QUEUED_KINDS", "handler", "resolve"]


def resolve(path: str) -> Callable[..., Any]:
    """The object a ``"module:attribute"`` path names (it must be callable)."""
    module, _, attribute = path.partition(":")
    obj = getattr(importlib.import_module(module), attribute)
    if not callable(obj):
        raise TypeError(f"{path} is not callable")
    return obj


def handler(kind: str) -> Handler | None:
    """The sandbox handler of ``kind`` when it is submitted as a job (`vocab.jobs.QUEUED_KINDS`), else ``None``."""
    try:
        spec = JOB_KINDS[JobKind(kind)]
    except ValueError:
        return None
    return handler_for(kind) if spec.queued else None


def _check() -> None:
    for kind in QUEUED_KINDS:
        cls = resolve(JOB_KINDS[kind].handler)
        if not isinstance(handler_for(kind), cls):  # type: ignore[arg-type]
            raise RuntimeError(f"the sandbox handler of job kind {kind!r} is not the table's {cls!r}")


_check()
