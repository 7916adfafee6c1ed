"""An ended agreement's disposal step revokes the certificates of the outputs released under it, with the case as
its reason, and leaves products and other agreements' certificates alone."""

from __future__ import annotations

import datetime as dt
from types import SimpleNamespace

from catalog import _tables
from catalog import certificates as certs
from catalog.store import make_engine
from gateway.services.certificates import revoke_in_disposal

NOW = dt.datetime(2026, 12, 3, tzinfo=dt.UTC)
SOURCE = certs.source_of("tax_income", "city-tax-bureau", "sha256:" + "b" * 64)


def test_the_disposal_step_revokes_the_agreements_output_certificates(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'meta.db'}")
    _tables.metadata.create_all(engine)
    with engine.begin() as conn:
        issued = {subject: certs.issue_in(conn, kind=kind, subject=subject, owner="city-tax-bureau", covers={},
                                          sources=[SOURCE], agreement_id=ag, now=NOW)
                  for kind, subject, ag in (("output", "job_1", "agr_1"), ("output", "job_2", "agr_2"),
                                            ("product", "income_at_least", None))}
    dp = SimpleNamespace(agreement=SimpleNamespace(id="agr_1"), case="expired", now=NOW + dt.timedelta(days=1))
    with engine.begin() as conn:
        assert revoke_in_disposal(conn, dp) == {"revoked": [issued["job_1"].id]}  # type: ignore[arg-type]
    with engine.begin() as conn:  # a second run revokes nothing more
        assert revoke_in_disposal(conn, dp) == {"revoked": []}  # type: ignore[arg-type]
    now = NOW + dt.timedelta(days=2)
    got = {c.subject: c for c in certs.list_certificates(engine)}
    assert (got["job_1"].status(now), got["job_1"].revoked_reason) == ("revoked", "agreement.expired")
    assert got["job_2"].status(now) == got["income_at_least"].status(now) == "valid"
    engine.dispose()
