"""Examples of the PSI and anonymous-verification operations (docs/mechanisms/psi.md); their models live with
the PSI service (`gateway.services.psi`)."""

from __future__ import annotations

from typing import Any

_FP = "sha256:570867f620348ff939f388066824952621c08733e1b32ef4a4df88175ac0ae03"
_AG = "agr_1b61737f85dc4169584d"
_RECEIPT = "vbr1.eyJraW5kIjoicHNpLnNpemUifQ.MEUCIQ…"

SETUP_REQUEST: dict[str, Any] = {"agreement_id": _AG, "dataset": "tax_income", "kind": "psi_size",
                                 "purpose": "credit_risk"}
SETUP: dict[str, Any] = {"dataset": "tax_income", "dataset_fingerprint": _FP, "kind": "psi_size", "set_size": 8192,
                         "elements": "<base64 of 32-byte elements, sorted>", "filter": None}
SIZE_SETUP_REQUEST: dict[str, Any] = {"agreement_id": _AG, "dataset": "tax_income", "dataset_fingerprint": _FP,
                                      "elements": "<base64 double-blinded T>"}
SIZE_SETUP: dict[str, Any] = {"setup_id": "pss_3b9f0c2d", "dataset_fingerprint": _FP}
SIZE_REQUEST: dict[str, Any] = {"agreement_id": _AG, "dataset": "tax_income", "dataset_fingerprint": _FP,
                                "setup_id": "pss_3b9f0c2d", "epsilon": "0.5", "elements": "<base64 blinded ids>",
                                "purpose": "credit_risk"}
SIZE: dict[str, Any] = {"size": 4121, "epsilon": "0.5", "noise_scale": 2.0, "accuracy_95": 5.99, "bank_ids": 10000,
                        "receipt": _RECEIPT}
MEMBERS_REQUEST: dict[str, Any] = {"agreement_id": _AG, "dataset": "tax_income", "dataset_fingerprint": _FP,
                                   "elements": "<base64 blinded ids>", "consent_refs": ["c-1", "c-2"],
                                   "purpose": "credit_risk"}
MEMBERS: dict[str, Any] = {"elements": "<base64 re-keyed elements, in order>", "receipt": _RECEIPT}
ANON_INFO: dict[str, Any] = {"product": "income_at_least", "dataset_fingerprint": _FP, "bucket_bits": 6,
                             "buckets": 64, "min_bucket": 50}
ANON_CHECK_REQUEST: dict[str, Any] = {"agreement_id": _AG, "bucket_bits": 6, "bucket": 17,
                                      "element": "<base64 x(a·H(subject)), 32 bytes>", "params": {"threshold": 8000},
                                      "consent_ref": "consent-2026-0003"}
ANON_CHECK: dict[str, Any] = {"evaluated": "<base64 x(rb·e)>", "labels": "<base64 33-byte labels, sorted>",
                              "aad": "veilbox-anon|income_at_least|sha256:…|9c1e…", "bucket_size": 78,
                              "receipt": _RECEIPT}
