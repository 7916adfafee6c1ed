"""The files in examples/ that the README's quick tour and its follow-up lines use are valid as shipped."""

from __future__ import annotations

import json

import numpy as np

from policies.agreements.document import parse_document
from sandbox.train.spec import parse_spec
from tests.conftest import REPO

EXAMPLES = REPO / "examples"


def test_the_agreement_grants_the_tour_and_names_three_holders() -> None:
    doc = parse_document(json.loads((EXAMPLES / "agreement.json").read_text()))
    assert doc.grantee == "risk-lab" and doc.datasets == ("tax_income",)
    assert {"query", "train"} <= set(doc.job_kinds) and len(doc.holders) >= 3
    train = json.loads((EXAMPLES / "train-spec.json").read_text())
    assert set(train["features"]) | {train["label"]} <= set(doc.columns["tax_income"])


def test_the_train_spec_parses() -> None:
    spec = parse_spec(json.loads((EXAMPLES / "train-spec.json").read_text()))
    assert spec.dataset == "tax_income"


def test_the_verification_product_and_the_holders_vectors() -> None:
    product = json.loads((EXAMPLES / "verification-product.json").read_text())
    assert {"name", "dataset", "subject_column", "predicate", "params"} <= set(product)
    assert all(f":{p}" in product["predicate"] for p in product["params"])
    for holder in ("bank-a", "bank-b", "bank-c"):
        v = np.load(EXAMPLES / "holders" / f"{holder}.npy")
        assert v.shape == (4,) and np.all(np.abs(v) <= 100)  # --length 4 --clip 100 in the README
