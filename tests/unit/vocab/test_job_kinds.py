"""The one job-kind table covers every kind, its handlers resolve, and the product reads it."""

import pytest
import typer

from gateway.job_kinds import handler, resolve
from policies.decision import RULES
from sandbox.jobs import HANDLERS, gate
from veilbox.cli_work import _job_kind
from vocab.jobs import JOB_KINDS, QUEUED_KINDS, STORED_KINDS, JobKind


def test_the_table_covers_every_kind():
    assert set(JOB_KINDS) == set(JobKind)
    assert {JobKind.QUERY, JobKind.TRAIN, JobKind.CODE} == set(QUEUED_KINDS)
    assert set(QUEUED_KINDS) <= set(STORED_KINDS)
    for kind, spec in JOB_KINDS.items():
        assert isinstance(spec.permission, JobKind) and spec.outputs and spec.summary, kind


@pytest.mark.parametrize("kind", list(JobKind), ids=str)
def test_every_handler_path_resolves_to_a_callable(kind):
    assert callable(resolve(JOB_KINDS[kind].handler))


def test_queued_kinds_run_the_sandbox_handler_the_table_names():
    assert set(HANDLERS) == set(QUEUED_KINDS)
    for kind in QUEUED_KINDS:
        assert handler(kind) is HANDLERS[kind]
        assert isinstance(HANDLERS[kind], resolve(JOB_KINDS[kind].handler))
    for kind in set(JobKind) - set(QUEUED_KINDS):
        assert handler(kind) is None
    assert handler("no_such_kind") is None


def test_the_release_gate_and_the_decision_rules_read_the_table():
    assert gate.ALLOWED_OUTPUTS == {k.value: JOB_KINDS[k].outputs for k in QUEUED_KINDS}
    needed = {rule.job_kind for rule in RULES.values()} - {None, "*"}
    assert needed <= {spec.permission for spec in JOB_KINDS.values()}


def test_the_cli_offers_exactly_the_queued_kinds():
    for kind in QUEUED_KINDS:
        assert _job_kind(kind) == kind
    with pytest.raises(typer.BadParameter):
        _job_kind(JobKind.VERIFY)
