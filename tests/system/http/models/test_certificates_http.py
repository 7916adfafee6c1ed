"""Certificates over real HTTP: a released aggregate names its sources and its certificate (valid until the
agreement's end at the latest), any principal verifies a certificate, an agreement's readers list its
certificates, a product gets a certificate under each agreement it is first checked under (named by every check's
receipt and answer, the same for a present and an absent subject, revoked with the agreement), and a check under a
product whose certificate is revoked is refused."""

from __future__ import annotations

import datetime as dt

import pytest

from catalog import certificates as certs
from catalog import registry
from gateway.services.certificates import revoke_certificates_for_agreement
from gateway.services.receipts import read_receipt
from veilbox.client import ApiError

COUNT_BY_DISTRICT = "SELECT district, COUNT(*) AS n FROM tax_income GROUP BY district"
INCOME_AT_LEAST = {"name": "income_at_least", "dataset": "tax_income", "subject_column": "person_id",
                   "predicate": "monthly_income >= :threshold", "params": {"threshold": "number"}}


def test_released_outputs_and_products_carry_certificates_and_sources(parties):
    ctx = parties.service.ctx
    end = (dt.datetime.now(dt.UTC) + dt.timedelta(days=20)).replace(microsecond=0)
    ag = parties.agreement(valid_until=end.isoformat())
    source = [{"dataset": "tax_income", "owner": "city-tax-bureau",
               "fingerprint": registry.get(ctx.engine, "tax_income").fingerprint}]

    answer = parties.operator.query(ag["id"], COUNT_BY_DISTRICT, "0.5")
    assert answer["state"] == "released" and answer["source"] == source
    assert {"columns", "rows", "error_bars", "cost", "output_digest"} <= set(answer)  # existing fields kept
    cert_id = answer["certificate_id"]
    assert cert_id.startswith("VBX-OC-")
    stored = parties.operator.job_result(answer["job_id"])
    assert stored["result"]["source"] == source and stored["result"]["certificate_id"] == cert_id

    cert = parties.bank.certificate(cert_id)  # anyone may verify a certificate shown to them
    assert cert["status"] == "valid" and cert["kind"] == "output" and cert["source"] == source
    assert dt.datetime.fromisoformat(cert["valid_until"]) == end  # capped at the agreement's end
    assert cert["covers"]["output_digest"] == answer["output_digest"] == stored["output_digest"]
    assert (cert["agreement_id"], cert["holder"], cert["issued_by"]) == (ag["id"], "risk-lab", "city-tax-bureau")

    product = parties.owner.define_verification(INCOME_AT_LEAST)
    assert product["certificate_id"].startswith("VBX-PC-")
    pcert = parties.regulator.certificate(product["certificate_id"])
    assert pcert["status"] == "valid" and pcert["source"] == source
    assert pcert["covers"]["predicate"] == INCOME_AT_LEAST["predicate"]

    listed = {c["id"] for c in parties.regulator.certificates(ag["id"])}
    assert listed == {cert_id, product["certificate_id"]}
    assert {c["id"] for c in parties.operator.certificates(ag["id"])} == listed
    with pytest.raises(ApiError) as e:  # not a party of the operator's agreement
        parties.bank.certificates(ag["id"])
    assert e.value.code == "NOT_FOUND_OR_FORBIDDEN"
    with pytest.raises(ApiError) as e:
        parties.bank.certificate("VBX-OC-2026-00000000")
    assert e.value.code == "NOT_FOUND_OR_FORBIDDEN"

    # The first check under the bank's agreement issues the product's certificate under it, bound to the agreement
    # and capped at its end; every check names it, whether the subject exists or not.
    bank_ag = parties.agreement("icbc-wuxi", valid_until=end.isoformat())
    present = parties.bank.check("income_at_least", bank_ag["id"], "P0000001", {"threshold": 1}, consent_ref="c-1")
    absent = parties.bank.check("income_at_least", bank_ag["id"], "Q9999999", {"threshold": 1}, consent_ref="c-1")
    bound_id = present["certificate_id"]
    assert bound_id.startswith("VBX-PC-") and bound_id != product["certificate_id"]
    assert absent["certificate_id"] == bound_id and set(absent) == set(present) == {"result", "receipt",
                                                                                   "certificate_id"}
    assert read_receipt(ctx, present["receipt"])["certificate_id"] == bound_id
    assert read_receipt(ctx, absent["receipt"])["certificate_id"] == bound_id
    bound = parties.bank.certificate(bound_id)
    assert (bound["kind"], bound["agreement_id"], bound["holder"]) == ("product", bank_ag["id"], bank_ag["grantee"])
    assert bound["status"] == "valid" and bound["source"] == source
    assert dt.datetime.fromisoformat(bound["valid_until"]) == end  # never beyond the agreement
    assert bound["covers"]["product_certificate_id"] == product["certificate_id"]
    assert {c["id"] for c in parties.bank.certificates(bank_ag["id"])} == {bound_id, product["certificate_id"]}

    # The agreement's disposal revokes the certificates bound to it: a check under it is refused, and the
    # product's own certificate (serving every agreement) stays valid.
    with ctx.engine.begin() as conn:
        assert revoke_certificates_for_agreement(conn, bank_ag["id"], "agreement.revoked") == [bound_id]
    with pytest.raises(ApiError) as e:
        parties.bank.check("income_at_least", bank_ag["id"], "P0000001", {"threshold": 1}, consent_ref="c-1")
    assert e.value.code == "AGREEMENT_INACTIVE"
    assert {"reason": "product.certificate_revoked", "certificate_id": bound_id}.items() <= e.value.details[0].items()
    assert parties.bank.certificate(product["certificate_id"])["status"] == "valid"

    # The agreement's exit revokes its certificates; a revoked product certificate refuses every check.
    with ctx.engine.begin() as conn:
        revoked = revoke_certificates_for_agreement(conn, ag["id"], "agreement revoked", products_too=True)
    assert sorted(revoked) == sorted(listed)  # not the product's certificate under another agreement
    after = parties.bank.certificate(cert_id)
    assert (after["status"], after["valid"], after["revoked_reason"]) == ("revoked", False, "agreement revoked")
    bank_ag = parties.agreement("icbc-wuxi")
    with pytest.raises(ApiError) as e:
        parties.bank.check("income_at_least", bank_ag["id"], "P000001", {"threshold": 1000}, consent_ref="c-1")
    assert e.value.code == "AGREEMENT_INACTIVE"  # as a model whose certificate was revoked
    assert {"reason": "product.certificate_revoked"}.items() <= e.value.details[0].items()
    assert certs.get_certificate(ctx.engine, product["certificate_id"]).revoked_reason == "agreement revoked"
