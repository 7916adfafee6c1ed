"""`veilbox model score` as a bank runs it (in process, against a real gateway): decisions against an encrypted
cut-off, equal to the plain model's wherever the score is not within the documented precision of the cut-off."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from veilbox import _cli_common as base
from veilbox import bank as bank_sdk
from veilbox.cli import app


def test_model_score_decides_like_the_plain_model(
    sworld, city_data, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cols = ["age", "industry", "district", "monthly_income", "social_insurance_months"]
    people = pq.read_table(city_data.tax_income, columns=cols).slice(0, 6).to_pylist()
    (tmp_path / "applicants.json").write_text(json.dumps(people))
    token = sworld.bank._http.headers["Authorization"].split()[1]
    with pytest.raises(SystemExit) as ex:
        base.run(
            app,
            [
                "--url",
                sworld.parties.service.url,
                "--token",
                token,
                "--json",
                "model",
                "score",
                sworld.model.id,
                "--applicants",
                str(tmp_path / "applicants.json"),
                "--agreement",
                sworld.agreement["id"][:12],
                "--cutoff",
                "0.0",
            ],
        )
    got = capsys.readouterr()
    assert ex.value.code == 0, got.err
    out = json.loads(got.out)
    logits = sworld.logits(bank_sdk.encode_applicants(sworld.bank.model(sworld.model.id)["card"], people))
    decided = [r["decision"] for r in out["results"]]
    assert len(decided) == len(people) and out["meter"]["counted"] >= len(people)
    clear = np.abs(logits) > 0.05  # far from the cut-off: exact (docs/mechanisms/he.md)
    assert clear.any()
    assert [d for d, c in zip(decided, clear, strict=True) if c] == [
        bool(v >= 0) for v, c in zip(logits, clear, strict=True) if c
    ]
