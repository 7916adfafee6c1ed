"""A custom-code submission's ``code_hash`` and a training spec's identity (``spec_sha256``) are the home suite's
hash: ``sha256:`` bit-exact in an intl home, ``sm3:`` in an sm home; a plan made under one hash does not train a
spec checked under the other. No code runs and nothing trains here."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, cast

import pytest

from catalog.errors import INVALID_REQUEST, DomainError
from catalog.registry import Dataset
from cryptosuite import suite_of
from sandbox.coderun import code_hash
from sandbox.jobs.code import parse_code_spec
from sandbox.train import plan_training
from sandbox.train.runner import train
from sandbox.train.spec import parse_spec

SOURCE = "def main(inputs):\n    return {'n': 1}\n"
SPEC = {"dataset": "tax_income", "features": ["age", "monthly_income"], "label": "has_default",
        "model": "logistic_regression", "epochs": 1, "batch_size": 256, "epsilon": 3.0, "delta": 1e-5,
        "max_grad_norm": 1.0}


def _code_bytes() -> bytes:
    doc: dict[str, Any] = {"entrypoint": "main", "outputs": {"kind": "json", "max_bytes": 4096}, "source": SOURCE}
    return b"veilbox/coderun/code/v1\x00" + json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()


def test_code_hash_is_sha256_in_intl_and_sm3_in_sm() -> None:
    outputs = {"kind": "json", "max_bytes": 4096}
    assert code_hash(SOURCE, "main", outputs) == "sha256:" + hashlib.sha256(_code_bytes()).hexdigest()
    assert code_hash(SOURCE, "main", outputs, "sm3") == suite_of("sm").digest(_code_bytes())
    spec = {"dataset": "tax_income", "source": SOURCE, "outputs": outputs}
    assert parse_code_spec(spec).code_hash == code_hash(SOURCE, "main", outputs)
    assert parse_code_spec(spec, "sm3").code_hash == code_hash(SOURCE, "main", outputs, "sm3")


def test_a_training_spec_and_its_plan_are_named_by_the_home_suites_hash(tmp_path: Path) -> None:
    spec = parse_spec(SPEC)
    canonical = spec.canonical_json().encode()
    assert spec.sha256() == "sha256:" + hashlib.sha256(canonical).hexdigest()
    assert spec.sha256("sm3") == suite_of("sm").digest(canonical)
    sm_plan = plan_training(spec, 10_000, hash_alg="sm3")
    assert sm_plan.spec_sha256 == spec.sha256("sm3")
    assert plan_training(spec, 10_000).spec_sha256 == spec.sha256()
    with pytest.raises(DomainError) as e:  # checked before anything is read
        train(spec, sm_plan, cast(Dataset, None), tmp_path)
    assert e.value.code == INVALID_REQUEST
