"""The certificate registry of products and released outputs: ids, validity capped at the agreement's end,
status (valid, revoked, expired), revocation with its reason, per agreement, the source stamp, and a product's
certificate under each agreement (issued once, revoked with the agreement)."""

from __future__ import annotations

import datetime as dt

import pytest

from catalog import _tables
from catalog import certificates as certs
from catalog.errors import DomainError
from catalog.store import make_engine
from tests.conftest import ON_BOTH_STORES

NOW = dt.datetime(2026, 12, 3, tzinfo=dt.UTC)
SOURCE = certs.source_of("tax_income", "city-tax-bureau", "sha256:" + "b" * 64)


@pytest.fixture
def engine(tmp_path):
    e = make_engine(f"sqlite:///{tmp_path / 'meta.db'}")
    _tables.metadata.create_all(e)
    yield e
    e.dispose()


def _issue(engine, kind="output", subject="job_1", **kw):
    args = {"owner": "city-tax-bureau", "covers": {"job_id": subject}, "sources": [SOURCE], "now": NOW}
    if kind == "output":
        args.update(agreement_id="agr_1", holder="risk-lab")
    args.update(kw)
    with engine.begin() as conn:
        return certs.issue_in(conn, kind=kind, subject=subject, **args)


def test_an_output_certificate_never_outlives_its_agreement(engine):
    end = NOW + dt.timedelta(days=30)
    capped = _issue(engine, valid_until=end, valid_days=365)
    assert capped.id.startswith("VBX-OC-2026-") and capped.valid_until == end
    free = _issue(engine, subject="job_2", valid_until=NOW + dt.timedelta(days=900), valid_days=10)
    assert free.valid_until == NOW + dt.timedelta(days=10)
    assert capped.status(NOW + dt.timedelta(days=29)) == "valid"
    assert capped.status(end) == "expired"
    pub = certs.get_certificate(engine, capped.id).public(NOW)
    assert pub["valid"] is True and pub["source"] == [SOURCE] and pub["holder"] == "risk-lab"
    assert certs.certificate_for(engine, "output", "job_1") == capped


def test_revocation_states_its_reason_and_covers_an_agreement(engine):
    product = _issue(engine, kind="product", subject="income_at_least", valid_days=365)
    assert product.id.startswith("VBX-PC-2026-") and product.agreement_id is None
    out1, out2 = _issue(engine, subject="job_1"), _issue(engine, subject="job_2")
    other = _issue(engine, subject="job_3", agreement_id="agr_2")
    with pytest.raises(DomainError):
        with engine.begin() as conn:
            certs.revoke_in(conn, [out1.id], " ")
    with engine.begin() as conn:
        revoked = certs.revoke_for_agreement_in(conn, "agr_1", "agreement revoked", products=["income_at_least"],
                                                now=NOW + dt.timedelta(days=1))
    assert revoked == sorted([out1.id, out2.id, product.id])
    with engine.begin() as conn:  # once only: a second revocation changes nothing
        assert certs.revoke_for_agreement_in(conn, "agr_1", "again") == []
    later = NOW + dt.timedelta(days=2)
    got = {c.id: c for c in certs.list_certificates(engine)}
    assert got[out1.id].status(later) == "revoked" and got[out1.id].revoked_reason == "agreement revoked"
    assert got[out1.id].status(NOW) == "valid"  # it was valid before its revocation
    assert got[other.id].status(later) == "valid"
    assert {c.id for c in certs.list_certificates(engine, agreement_id="agr_1")} == {out1.id, out2.id}


def test_a_released_object_is_stamped_with_its_sources_and_keeps_its_fields():
    table = {"columns": ["n"], "rows": [[3]], "output_digest": "sha256:" + "a" * 64}
    stamped = certs.stamp(table, "VBX-OC-2026-00000000", [SOURCE])
    assert stamped == {**table, "certificate_id": "VBX-OC-2026-00000000", "source": [SOURCE]}
    model = {"model_id": "mdl_1", "certificate_id": "VBX-MC-2026-1"}
    assert certs.stamp(model, "VBX-OC-2026-00000000", [SOURCE])["certificate_id"] == "VBX-MC-2026-1"
    assert certs.stamp([1, 2], "VBX-OC-2026-00000000", [SOURCE]) == [1, 2]


@ON_BOTH_STORES
def test_a_products_certificate_under_an_agreement_is_issued_once_and_revoked_with_it(store, request, tmp_path):
    url = request.getfixturevalue("pg_url") if store == "postgresql" else f"sqlite:///{tmp_path / 'b.db'}"
    engine = make_engine(url)
    _tables.metadata.create_all(engine)
    own = _issue(engine, kind="product", subject="income_at_least")
    end = NOW + dt.timedelta(days=30)
    args = {"product": "income_at_least", "owner": "city-tax-bureau", "holder": "icbc-wuxi", "covers": {},
            "sources": [SOURCE], "valid_until": end, "now": NOW}
    with engine.begin() as conn:
        first = certs.issue_bound_in(conn, certificate_id="VBX-PC-2026-0000000A", agreement_id="agr_1", **args)
        again = certs.issue_bound_in(conn, certificate_id="VBX-PC-2026-0000000A", agreement_id="agr_1", **args)
        other = certs.issue_bound_in(conn, certificate_id="VBX-PC-2026-0000000B", agreement_id="agr_2", **args)
    assert first == again and (first.kind, first.agreement_id, first.valid_until) == ("product", "agr_1", end)
    assert certs.bound_certificate_for(engine, "income_at_least", "agr_1") == first
    assert certs.certificate_for(engine, "product", "income_at_least") == own  # its own, bound to no agreement
    assert [c.id for c in certs.list_certificates(engine, kind="product", unbound=True)] == [own.id]
    with engine.begin() as conn:  # products_too names the product's own certificate, not its other agreements'
        revoked = certs.revoke_for_agreement_in(conn, "agr_1", "agreement.revoked", products=["income_at_least"])
    assert revoked == sorted([first.id, own.id])
    assert certs.get_certificate(engine, other.id).status(NOW) == "valid"  # type: ignore[union-attr]
    engine.dispose()
