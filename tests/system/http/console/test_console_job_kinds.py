"""The owner's agreement form offers every job kind of the one table (`vocab.jobs`), secure aggregation included."""

from typing import Any

from vocab.jobs import JobKind


def test_agreement_form_lists_every_job_kind(console: Any) -> None:
    form = console.web("owner").get("/console/agreements/new")
    assert form.status_code == 200
    for kind in JobKind:
        assert f'id="kind-{kind.value}" name="job_kinds" value="{kind.value}"' in form.text, kind
    assert 'value="secagg"' in form.text
