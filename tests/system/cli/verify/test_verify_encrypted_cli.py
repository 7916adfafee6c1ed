"""`veilbox verify check-encrypted` as a bank runs it (in process, against a real gateway): the thresholds are
encrypted here, the answers decrypted here, and they match the rows."""

from __future__ import annotations

import json

import pytest

from veilbox import _cli_common as base
from veilbox.cli import app


def test_check_encrypted_from_the_shell(world, capsys: pytest.CaptureFixture[str]) -> None:
    rows = list(world.rows.values())[:3]
    thresholds = [int(rows[0]["monthly_income"]), int(rows[1]["monthly_income"]) + 1, 0]
    args = []
    for r, t in zip(rows, thresholds, strict=True):
        args += ["--subject", r["person_id"], "--threshold", str(t)]
    token = world.bank._http.headers["Authorization"].split()[1]
    with pytest.raises(SystemExit) as ex:
        base.run(
            app,
            [
                "--url",
                world.parties.service.url,
                "--token",
                token,
                "--json",
                "verify",
                "check-encrypted",
                "income_at_least",
                "--agreement",
                world.agreement["id"],
                *args,
                "--consent",
                "consent-cli",
            ],
        )
    got = capsys.readouterr()
    assert ex.value.code == 0, got.err
    out = json.loads(got.out)
    assert [a["result"] for a in out["results"]] == [
        r["monthly_income"] >= t for r, t in zip(rows, thresholds, strict=True)
    ]
    assert out["receipt"].startswith("vbr1.")
    # a threshold count that does not match the subjects is a one-line usage error, nothing sent
    with pytest.raises(SystemExit) as ex:
        base.run(
            app,
            [
                "--url",
                world.parties.service.url,
                "--token",
                token,
                "verify",
                "check-encrypted",
                "income_at_least",
                "--agreement",
                world.agreement["id"],
                "--subject",
                "P1",
                "--threshold",
                "1",
                "--threshold",
                "2",
                "--consent",
                "c",
            ],
        )
    err = capsys.readouterr().err.strip()
    assert ex.value.code == base.EXIT_USAGE and err.startswith("error: ") and len(err.splitlines()) == 1
