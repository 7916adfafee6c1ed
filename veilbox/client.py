"""Typed Python client for the Veilbox HTTP API (v1), built on httpx.

    from veilbox.client import Client
    c = Client("http://127.0.0.1:8000", token)
    c.me()

Every non-2xx answer raises `ApiError` carrying the stable error ``code``, the public ``message`` and the
``details`` of the error body.
"""

from __future__ import annotations

import base64
import binascii
import json
import struct
import time
from dataclasses import dataclass
from typing import Any, TypedDict

import httpx

from vocab.i18n import current_language
from vocab.states import JobState

#: States ``wait_job`` stops at: every final state, and ``succeeded`` (a custom job's output awaiting release).
FINAL_STATES: tuple[str, ...] = tuple(s.value for s in (JobState.RELEASED, JobState.REJECTED, JobState.FAILED,
                                                        JobState.CANCELLED, JobState.SUCCEEDED))


class PrincipalInfo(TypedDict):
    id: str
    name: str
    role: str


class NewPrincipal(PrincipalInfo):
    token: str


class VerifyResult(TypedDict):
    ok: bool
    entries: int
    head: str | None
    first_bad_seq: int | None
    reason: str | None


class AuditPage(TypedDict):
    entries: list[dict[str, Any]]
    next: int


@dataclass
class ApiError(Exception):
    status: int
    code: str
    message: str
    details: list[Any]

    def __str__(self) -> str:
        return f"{self.code} ({self.status}): {self.message}"


#: The binary form of the encrypted endpoints' bodies (docs/api.md, "Binary bodies for ciphertexts").
HE_MEDIA_TYPE = "application/vnd.veilbox.he+octet-stream"
_MAGIC = b"VBHE\x01"
_U32 = struct.Struct(">I")


def encode_frame(header: dict[str, Any], blobs: list[tuple[str, bytes]]) -> bytes:
    """``"VBHE" 0x01 | u32 header length | header JSON (with "blobs": each blob's field) | (u32 length | bytes)*``."""
    head = json.dumps({**header, "blobs": [n for n, _ in blobs]}, separators=(",", ":")).encode()
    parts = [_MAGIC, _U32.pack(len(head)), head]
    for _, raw in blobs:
        parts += [_U32.pack(len(raw)), raw]
    return b"".join(parts)


def decode_frame(frame: bytes) -> tuple[dict[str, Any], list[tuple[str, bytes]]]:
    """The header and the ``(field, bytes)`` blobs of a frame; ``ValueError`` if it does not parse."""
    if frame[:len(_MAGIC)] != _MAGIC or len(frame) < len(_MAGIC) + 4:
        raise ValueError("not a Veilbox HE frame")
    at = len(_MAGIC) + 4
    (size,) = _U32.unpack_from(frame, len(_MAGIC))
    header = json.loads(frame[at:at + size])
    at += size
    names = header.pop("blobs", [])
    blobs: list[tuple[str, bytes]] = []
    for name in names:
        (n,) = _U32.unpack_from(frame, at)
        blobs.append((name, frame[at + 4:at + 4 + n]))
        at += 4 + n
    if at != len(frame):
        raise ValueError("a truncated or overlong Veilbox HE frame")
    return header, blobs


class Client:
    def __init__(self, url: str, token: str | None = None, timeout: float = 120.0,
                 transport: httpx.BaseTransport | None = None) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        headers["Accept-Language"] = current_language()  # VEILBOX_LANG: the language of reports the gateway renders
        self.url = url.rstrip("/")
        self._http = httpx.Client(base_url=self.url, headers=headers, timeout=timeout, transport=transport)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def with_token(self, token: str) -> Client:
        return Client(self.url, token, timeout=self._http.timeout.read or 120.0)

    # -- plumbing ----------------------------------------------------------------------------------------
    def request(self, method: str, path: str, **kw: Any) -> httpx.Response:
        r = self._http.request(method, path, **kw)
        if r.status_code >= 400:
            try:
                err = r.json()["error"]
                raise ApiError(r.status_code, err["code"], err["message"], err.get("details", []))
            except (ValueError, KeyError, TypeError):
                raise ApiError(r.status_code, "INTERNAL", r.text[:200], []) from None
        return r

    def _json(self, method: str, path: str, **kw: Any) -> Any:
        return self.request(method, path, **kw).json()

    # -- system & principals -------------------------------------------------------------------------------
    def health(self) -> dict[str, str]:
        return self._json("GET", "/health")

    def me(self) -> PrincipalInfo:
        return self._json("GET", "/v1/principals/me")

    def create_principal(self, name: str, role: str, reviewer_kind: str | None = None) -> NewPrincipal:
        body: dict[str, Any] = {"name": name, "role": role}
        if reviewer_kind is not None:  # a named reviewer: expert_committee | cyberspace
            body["reviewer_kind"] = reviewer_kind
        return self._json("POST", "/v1/principals", json=body)

    def principals(self) -> list[PrincipalInfo]:
        return self._json("GET", "/v1/principals")

    def disable_principal(self, name: str) -> dict[str, Any]:
        return self._json("POST", f"/v1/principals/{name}/disable")

    def enable_principal(self, name: str) -> dict[str, Any]:
        return self._json("POST", f"/v1/principals/{name}/enable")

    def rotate_principal(self, name: str) -> dict[str, Any]:
        """A new token for ``name`` (in ``token``, shown once); the previous one stops working."""
        return self._json("POST", f"/v1/principals/{name}/rotate")

    def expire_principal(self, name: str, expires_at: str) -> dict[str, Any]:
        """Set when ``name``'s token stops working (ISO-8601; a past time ends its access now)."""
        return self._json("POST", f"/v1/principals/{name}/expiry", json={"expires_at": expires_at})

    # -- catalog -------------------------------------------------------------------------------------------
    def register_dataset(self, spec: dict[str, Any]) -> dict[str, Any]:
        return self._json("POST", "/v1/datasets", json=spec)

    def datasets(self) -> list[dict[str, Any]]:
        return self._json("GET", "/v1/datasets")

    def dataset(self, name: str) -> dict[str, Any]:
        return self._json("GET", f"/v1/datasets/{name}")

    def withdraw_dataset(self, name: str, reason: str) -> dict[str, Any]:
        """Withdraw a dataset (its owner or an admin): agreements suspended, open jobs cancelled and refunded."""
        return self._json("POST", f"/v1/datasets/{name}/withdraw", json={"reason": reason})

    def mock(self, name: str, rows: int = 100, seed: int = 0) -> dict[str, Any]:
        return self._json("GET", f"/v1/datasets/{name}/mock", params={"rows": rows, "seed": seed})

    # -- agreements, budget, usage, negative list ----------------------------------------------------------
    def propose_agreement(self, document: dict[str, Any]) -> dict[str, Any]:
        return self._json("POST", "/v1/agreements", json=document)

    def agreements(self, state: str | None = None) -> list[dict[str, Any]]:
        return self._json("GET", "/v1/agreements", params={"state": state} if state else None)

    def agreement(self, agreement_id: str) -> dict[str, Any]:
        return self._json("GET", f"/v1/agreements/{agreement_id}")

    def accept_agreement(self, agreement_id: str, document_hash: str | None = None) -> dict[str, Any]:
        body = {"document_hash": document_hash} if document_hash else None
        return self._json("POST", f"/v1/agreements/{agreement_id}/accept", json=body)

    def suspend_agreement(self, agreement_id: str) -> dict[str, Any]:
        return self._json("POST", f"/v1/agreements/{agreement_id}/suspend")

    def resume_agreement(self, agreement_id: str) -> dict[str, Any]:
        return self._json("POST", f"/v1/agreements/{agreement_id}/resume")

    def revoke_agreement(self, agreement_id: str) -> dict[str, Any]:
        return self._json("POST", f"/v1/agreements/{agreement_id}/revoke")

    def amend_agreement(self, agreement_id: str, document: dict[str, Any]) -> dict[str, Any]:
        return self._json("POST", f"/v1/agreements/{agreement_id}/amend", json=document)

    # filing (备案) and the data authority (docs/agreements.md)
    def submit_agreement(self, agreement_id: str) -> dict[str, Any]:
        """The owner submits an accepted (or returned) agreement for filing."""
        return self._json("POST", f"/v1/agreements/{agreement_id}/submit")

    def activate_agreement(self, agreement_id: str) -> dict[str, Any]:
        """The owner activates a filed agreement."""
        return self._json("POST", f"/v1/agreements/{agreement_id}/activate")

    def file_agreement(self, agreement_id: str, document_hash: str, reasons: list[str] | None = None,
                       ) -> dict[str, Any]:
        """The data authority files an agreement under review (its sign-off on ``document_hash``)."""
        return self._json("POST", f"/v1/agreements/{agreement_id}/file",
                          json={"document_hash": document_hash, "reasons": reasons or []})

    def refuse_agreement(self, agreement_id: str, document_hash: str, reasons: list[str]) -> dict[str, Any]:
        """The data authority returns an agreement under review to its owner with the reasons."""
        return self._json("POST", f"/v1/agreements/{agreement_id}/refuse",
                          json={"document_hash": document_hash, "reasons": reasons})

    def require_reviewers(self, agreement_id: str, reviewers: list[str]) -> dict[str, Any]:
        """The data authority names the reviewers (专家委员会, 网信) whose approval filing requires."""
        return self._json("POST", f"/v1/agreements/{agreement_id}/reviewers", json={"reviewers": reviewers})

    def review_agreement(self, agreement_id: str, verdict: str, document_hash: str,
                         reasons: list[str] | None = None) -> dict[str, Any]:
        """A named reviewer's sign-off: ``approve``, or ``refuse`` (reasons required; back to the owner)."""
        return self._json("POST", f"/v1/agreements/{agreement_id}/review",
                          json={"verdict": verdict, "document_hash": document_hash, "reasons": reasons or []})

    def agreement_disposal(self, agreement_id: str) -> dict[str, Any]:
        """An ended agreement's disposal and its signed record (owner, authority, regulators)."""
        return self._json("GET", f"/v1/agreements/{agreement_id}/disposal")

    def agreement_reviews(self, agreement_id: str) -> list[dict[str, Any]]:
        """The sign-offs of an agreement's filing reviews."""
        out: list[dict[str, Any]] = self._json("GET", f"/v1/agreements/{agreement_id}/reviews")
        return out

    def authority_suspend(self, agreement_id: str, reason: str) -> dict[str, Any]:
        """The data authority suspends an agreement (only it resumes it)."""
        return self._json("POST", f"/v1/authority/agreements/{agreement_id}/suspend", json={"reason": reason})

    def authority_resume(self, agreement_id: str, reason: str) -> dict[str, Any]:
        """The data authority lifts its suspension."""
        return self._json("POST", f"/v1/authority/agreements/{agreement_id}/resume", json={"reason": reason})

    def issue_order(self, agreement_id: str, text: str, deadline: str) -> dict[str, Any]:
        """The data authority issues a rectification order (整改) with its deadline (ISO-8601)."""
        return self._json("POST", f"/v1/agreements/{agreement_id}/orders", json={"text": text, "deadline": deadline})

    def orders(self, agreement_id: str) -> list[dict[str, Any]]:
        """An agreement's rectification orders, newest first."""
        out: list[dict[str, Any]] = self._json("GET", f"/v1/agreements/{agreement_id}/orders")
        return out

    def close_order(self, order_id: str, note: str = "") -> dict[str, Any]:
        """The data authority closes a rectification order."""
        return self._json("POST", f"/v1/orders/{order_id}/close", json={"note": note})

    def authority_set_principal(self, name: str, disabled: bool) -> dict[str, Any]:
        """The data authority disables (or enables again) any principal."""
        return self._json("POST", f"/v1/authority/principals/{name}/{'disable' if disabled else 'enable'}")

    # -- alerts (监测预警, docs/alerts.md) ------------------------------------------------------------------------
    def alerts(self, unacked: bool = False) -> list[dict[str, Any]]:
        """The alerts this principal reads, newest first (only unacknowledged ones with ``unacked``)."""
        out: list[dict[str, Any]] = self._json("GET", "/v1/alerts", params={"unacked": "true"} if unacked else {})
        return out

    def ack_alert(self, alert_id: str) -> dict[str, Any]:
        """Acknowledge an alert (its owner, the authority, an admin)."""
        return self._json("POST", f"/v1/alerts/{alert_id}/ack")

    def alert_webhooks(self) -> list[dict[str, Any]]:
        """The alert webhooks (admin; secrets are never shown)."""
        out: list[dict[str, Any]] = self._json("GET", "/v1/alerts/webhooks")
        return out

    def set_alert_webhook(self, subscriber: str, url: str, secret: str) -> dict[str, Any]:
        """Set ``subscriber``'s alert webhook (admin): the alerts it reads are POSTed there, HMAC-signed."""
        return self._json("PUT", f"/v1/alerts/webhooks/{subscriber}", json={"url": url, "secret": secret})

    def remove_alert_webhook(self, subscriber: str) -> None:
        self.request("DELETE", f"/v1/alerts/webhooks/{subscriber}")

    # -- complaints and objections (投诉与异议) ------------------------------------------------------------------
    def file_complaint(self, target_kind: str, text: str, *, kind: str = "complaint", target: str | None = None,
                       agreement_id: str | None = None, subject: str | int | None = None,
                       subject_hash: str | None = None) -> dict[str, Any]:
        """File a complaint or objection; a subject by its raw id (owners, on the person's behalf) or its hash."""
        body: dict[str, Any] = {"kind": kind, "target_kind": target_kind, "text": text}
        for k, v in (("target", target), ("agreement_id", agreement_id), ("subject", subject),
                     ("subject_hash", subject_hash)):
            if v is not None:
                body[k] = v
        return self._json("POST", "/v1/complaints", json=body)

    def complaints(self, state: str | None = None) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = self._json("GET", "/v1/complaints", params={"state": state} if state else {})
        return out

    def complaint(self, complaint_id: str) -> dict[str, Any]:
        return self._json("GET", f"/v1/complaints/{complaint_id}")

    def move_complaint(self, complaint_id: str, step: str, reasons: list[str] | None = None) -> dict[str, Any]:
        """``step`` is investigate, resolve or reject (the last two with reasons)."""
        return self._json("POST", f"/v1/complaints/{complaint_id}/{step}", json={"reasons": reasons or []})

    # -- the consent registry (同意登记, docs/consent.md) --
    def record_consents(self, grantee: str, scenario: str, products: list[str], valid_until: str, *,
                        subjects: list[str | int] | None = None, subject_hashes: list[str] | None = None,
                        owner: str | None = None, valid_from: str | None = None) -> list[dict[str, Any]]:
        """Record one consent per subject (raw ids are hashed by the gateway; at most 1000 per call)."""
        body: dict[str, Any] = {"grantee": grantee, "scenario": scenario, "products": products,
                                "valid_until": valid_until}
        for k, v in (("subjects", subjects), ("subject_hashes", subject_hashes), ("owner", owner),
                     ("valid_from", valid_from)):
            if v is not None:
                body[k] = v
        out: list[dict[str, Any]] = self._json("POST", "/v1/consents", json=body)
        return out

    def consents(self, *, subject_hash: str | None = None, grantee: str | None = None,
                 product: str | None = None) -> list[dict[str, Any]]:
        params = {k: v for k, v in (("subject_hash", subject_hash), ("grantee", grantee), ("product", product)) if v}
        out: list[dict[str, Any]] = self._json("GET", "/v1/consents", params=params)
        return out

    def consent(self, consent_id: str) -> dict[str, Any]:
        return self._json("GET", f"/v1/consents/{consent_id}")

    def revoke_consent(self, consent_id: str, reason: str) -> dict[str, Any]:
        return self._json("POST", f"/v1/consents/{consent_id}/revoke", json={"reason": reason})

    def consent_trustee(self, trustee: str, *, remove: bool = False) -> list[str]:
        """Name (or withdraw) a trustee allowed to record this owner's consents; the current trustees."""
        out: list[str] = self._json("POST", "/v1/consents/trustees", json={"trustee": trustee, "remove": remove})
        return out

    def subject_access(self, subject: str | int | None = None, *, subject_hash: str | None = None) -> dict[str, Any]:
        """The owner's subject-access report: the person's consents and every recorded use of their data."""
        body = {"subject": subject} if subject is not None else {"subject_hash": subject_hash}
        return self._json("POST", "/v1/consents/subject-access", json=body)  # the id never in a URL

    def budget(self, agreement_id: str) -> dict[str, Any]:
        return self._json("GET", f"/v1/agreements/{agreement_id}/budget")

    def usage(self, agreement_id: str, since: str | None = None, until: str | None = None) -> dict[str, Any]:
        params = {k: v for k, v in (("agreement_id", agreement_id), ("since", since), ("until", until)) if v}
        return self._json("GET", "/v1/usage", params=params)

    # -- multi-owner signing and revenue statements (收益分成, docs/revenue.md) -------------------------------------
    def sign_agreement(self, agreement_id: str, document_hash: str) -> dict[str, Any]:
        """A co-owner signs its part of a multi-owner agreement, bound to the document hash it read."""
        return self._json("POST", f"/v1/agreements/{agreement_id}/sign", json={"document_hash": document_hash})

    def agreement_signatures(self, agreement_id: str) -> list[dict[str, Any]]:
        """The co-owners' signatures of an agreement (``current``: on its current document hash)."""
        out: list[dict[str, Any]] = self._json("GET", f"/v1/agreements/{agreement_id}/signatures")
        return out

    def statement(self, agreement_id: str, month: str, format: str = "json") -> Any:
        """An agreement's monthly statement: a dict for ``json``, bytes for ``csv`` and ``pdf``."""
        r = self.request("GET", "/v1/statements", params={"agreement": agreement_id, "month": month, "format": format})
        return r.json() if format == "json" else r.content

    def owner_statement(self, month: str, owner: str | None = None, format: str = "json") -> Any:
        """An owner's monthly statement (an owner its own; the data authority and regulators name ``owner``)."""
        params = {"month": month, "format": format, **({"owner": owner} if owner else {})}
        r = self.request("GET", "/v1/statements/owner", params=params)
        return r.json() if format == "json" else r.content

    def negative_list(self) -> list[dict[str, str]]:
        return self._json("GET", "/v1/negative-list")

    def policy_grades(self) -> list[dict[str, Any]]:
        """The grade-dependent controls (分级分类) the service enforces (``GET /v1/policy/grades``)."""
        return self._json("GET", "/v1/policy/grades")

    def add_negative(self, kind: str, value: str, note: str = "") -> dict[str, str]:
        return self._json("POST", "/v1/negative-list", json={"kind": kind, "value": value, "note": note})

    def remove_negative(self, entry_id: str) -> None:
        self.request("DELETE", f"/v1/negative-list/{entry_id}")

    # -- queries and jobs ----------------------------------------------------------------------------------
    def preview_query(self, agreement_id: str, sql: str, epsilon: float | str) -> dict[str, Any]:
        return self._json("POST", "/v1/queries/preview",
                          json={"agreement_id": agreement_id, "sql": sql, "epsilon": epsilon})

    def query(self, agreement_id: str, sql: str, epsilon: float | str) -> dict[str, Any]:
        """The noisy answer (state ``released``), or ``{"job_id", "state": "pending_approval"}``."""
        return self._json("POST", "/v1/queries", json={"agreement_id": agreement_id, "sql": sql, "epsilon": epsilon})

    def submit_job(self, agreement_id: str, kind: str, spec: dict[str, Any],
                   purpose: str | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {"agreement_id": agreement_id, "kind": kind, "spec": spec}
        if purpose:
            body["purpose"] = purpose
        return self._json("POST", "/v1/jobs", json=body)

    def jobs(self, state: str | None = None) -> list[dict[str, Any]]:
        return self._json("GET", "/v1/jobs", params={"state": state} if state else None)

    def job(self, job_id: str) -> dict[str, Any]:
        return self._json("GET", f"/v1/jobs/{job_id}")

    def job_review(self, job_id: str) -> dict[str, Any]:
        return self._json("GET", f"/v1/jobs/{job_id}/review")

    def approve_job(self, job_id: str, spec_hash: str) -> dict[str, Any]:
        return self._json("POST", f"/v1/jobs/{job_id}/approve", json={"spec_hash": spec_hash})

    def reject_job(self, job_id: str, reason: str) -> dict[str, Any]:
        return self._json("POST", f"/v1/jobs/{job_id}/reject", json={"reason": reason})

    def cancel_job(self, job_id: str) -> dict[str, Any]:
        return self._json("POST", f"/v1/jobs/{job_id}/cancel")

    def release_job(self, job_id: str) -> dict[str, Any]:
        return self._json("POST", f"/v1/jobs/{job_id}/release")

    def job_result(self, job_id: str) -> dict[str, Any]:
        return self._json("GET", f"/v1/jobs/{job_id}/result")

    def wait_job(self, job_id: str, timeout: float = 600.0, until: tuple[str, ...] = FINAL_STATES) -> dict[str, Any]:
        """Poll until the job reaches one of ``until`` (default: a final state); TimeoutError otherwise."""
        deadline = time.monotonic() + timeout
        delay = 0.05
        while True:
            job = self.job(job_id)
            # ``succeeded`` is final only for custom code, whose output waits for the owner's release; a query or
            # training job passes through it on its way to ``released``.
            transient = job["state"] == "succeeded" and job.get("kind") != "code" and until is FINAL_STATES
            if job["state"] in until and not transient:
                return job
            if time.monotonic() > deadline:
                raise TimeoutError(f"job {job_id} still {job['state']} after {timeout}s")
            time.sleep(delay)
            delay = min(delay * 1.5, 1.0)

    # -- models ------------------------------------------------------------------------------------------
    def models(self) -> list[dict[str, Any]]:
        return self._json("GET", "/v1/models")

    def model(self, model_id: str) -> dict[str, Any]:
        return self._json("GET", f"/v1/models/{model_id}")

    def certificate(self, certificate_id: str) -> dict[str, Any]:
        """Verify a product's or a released output's certificate (``GET /v1/certificates/{id}``)."""
        return self._json("GET", f"/v1/certificates/{certificate_id}")

    def certificates(self, agreement_id: str) -> list[dict[str, Any]]:
        """An agreement's certificates: its released outputs and the products over its datasets."""
        return self._json("GET", "/v1/certificates", params={"agreement_id": agreement_id})

    # -- audit ---------------------------------------------------------------------------------------------
    def audit(self, since: int = 0, limit: int = 100, **filters: str) -> AuditPage:
        return self._json("GET", "/v1/audit", params={"since": since, "limit": limit, **filters})

    def audit_verify(self) -> VerifyResult:
        return self._json("GET", "/v1/audit/verify")

    def audit_export(self) -> bytes:
        return self.request("GET", "/v1/audit/export", params={"format": "parquet"}).content

    def lineage(self, key: str) -> dict[str, Any]:
        """Regulator: output digest or job id → job → agreement → datasets (``GET /v1/lineage/{key}``)."""
        return self._json("GET", f"/v1/lineage/{key}")

    def audit_report(self, month: str, format: str = "json") -> Any:
        """Regulator: the monthly report as JSON, or the bytes of its PDF / the month's entries as Parquet."""
        r = self.request("GET", "/v1/audit/report", params={"month": month, "format": format})
        return r.json() if format == "json" else r.content

    def report(self, period: str, format: str = "json") -> Any:
        """Regulator, data authority: the report of a month (``2026-11``), a quarter (``2026-Q3``) or a year
        (``2026``) as JSON, or the bytes of its PDF / the period's entries as Parquet."""
        r = self.request("GET", "/v1/audit/report", params={"period": period, "format": format})
        return r.json() if format == "json" else r.content

    def incidents(self, kind: str | None = None) -> list[dict[str, Any]]:
        """Regulator, data authority: the incident reports (suspensions, rectification orders, withdrawals,
        disposals), oldest first (``GET /v1/reports/incidents``)."""
        return self._json("GET", "/v1/reports/incidents", params={"kind": kind} if kind else None)

    def incident(self, incident_id: str, format: str = "json") -> Any:
        """Regulator, data authority: one incident report as JSON, or the bytes of its PDF."""
        r = self.request("GET", f"/v1/reports/incidents/{incident_id}", params={"format": format})
        return r.json() if format == "json" else r.content

    def audit_public_key(self) -> dict[str, str]:
        return self._json("GET", "/v1/audit/public-key")

    # --- verification and scoring ---
    def define_verification(self, spec: dict[str, Any]) -> dict[str, Any]:
        """Owner: define a verification product (docs/api.md, "Verifications")."""
        return self._json("POST", "/v1/verifications", json=spec)

    def verifications(self) -> list[dict[str, Any]]:
        return self._json("GET", "/v1/verifications")

    def verification(self, name: str) -> dict[str, Any]:
        return self._json("GET", f"/v1/verifications/{name}")

    def check(self, name: str, agreement_id: str, subject: str | int, params: dict[str, Any] | None = None, *,
              consent_ref: str, purpose: str | None = None) -> dict[str, Any]:
        """Bank: ``{"result": true|false, "receipt"}`` for one subject (integer subject columns take ``7`` or
        ``"7"``, one subject; other spellings such as ``"007"`` are refused)."""
        body: dict[str, Any] = {"agreement_id": agreement_id, "subject": subject, "params": params or {},
                                "consent_ref": consent_ref}
        if purpose is not None:
            body["purpose"] = purpose
        return self._json("POST", f"/v1/verifications/{name}/check", json=body)

    def check_encrypted(self, name: str, agreement_id: str, subjects: list[str | int], context: str,
                        ciphertext: str, *, consent_ref: str, purpose: str | None = None,
                        binary: bool = True, consent_ids: list[str] | None = None) -> dict[str, Any]:
        """Bank: masked-sign threshold checks under the bank's BFV key (see `veilbox.bank`). ``binary`` (the
        default) sends and receives the ciphertexts as raw bytes in a frame (`HE_MEDIA_TYPE`) instead of base64
        JSON; the answer is the same dict either way."""
        body: dict[str, Any] = {"agreement_id": agreement_id, "subjects": subjects, "consent_ref": consent_ref}
        if purpose is not None:
            body["purpose"] = purpose
        if consent_ids:  # registered consent ids, one per subject (homes enforcing the consent registry)
            body["consent_ids"] = consent_ids
        path = f"/v1/verifications/{name}/check-encrypted"
        if binary:
            return self._frame(path, body, [("context", context), ("ciphertext", ciphertext)], (), ("ciphertext",))
        return self._json("POST", path, json={**body, "context": context, "ciphertext": ciphertext})

    def score(self, model_id: str, context: str, ciphertexts: list[str], layout: str = "columns",
              agreement_id: str | None = None, *, cutoff: str | None = None,
              output: str | None = None, binary: bool = True) -> dict[str, Any]:
        """Bank: encrypted decisions against the encrypted ``cutoff`` (the service's default output), or logits with
        ``output="logit"`` where the agreement grants them (see `veilbox.bank.decide_applicants`,
        `veilbox.bank.score_applicants`). ``binary`` (the default) sends and receives the ciphertexts as raw bytes
        in a frame (`HE_MEDIA_TYPE`) instead of base64 JSON; the answer is the same dict either way."""
        body: dict[str, Any] = {"layout": layout}
        if agreement_id is not None:
            body["agreement_id"] = agreement_id
        if output is not None:
            body["output"] = output
        path = f"/v1/models/{model_id}/score"
        if binary:
            blobs = [("context", context), *(("ciphertexts", ct) for ct in ciphertexts)]
            if cutoff is not None:
                blobs.append(("cutoff", cutoff))
            return self._frame(path, body, blobs, ("ciphertexts",), ())
        body.update(context=context, ciphertexts=ciphertexts)
        if cutoff is not None:
            body["cutoff"] = cutoff
        return self._json("POST", path, json=body)

    def _frame(self, path: str, header: dict[str, Any], blobs: list[tuple[str, str]], list_fields: tuple[str, ...],
               blob_fields: tuple[str, ...]) -> dict[str, Any]:
        """POST a binary frame (base64 ``blobs`` sent raw) and read the framed answer back into its JSON form.
        A blob that is not strict base64 goes in the JSON form instead, for the service to refuse as it would."""
        try:
            raw_blobs = [(name, binascii.a2b_base64(b64, strict_mode=True)) for name, b64 in blobs]
        except (binascii.Error, ValueError, TypeError):
            body = dict(header)
            for name, b64 in blobs:
                if name in list_fields:
                    body.setdefault(name, []).append(b64)
                else:
                    body[name] = b64
            answer: dict[str, Any] = self._json("POST", path, json=body)
            return answer
        frame = encode_frame(header, raw_blobs)
        r = self.request("POST", path, content=frame,
                         headers={"Content-Type": HE_MEDIA_TYPE, "Accept": f"{HE_MEDIA_TYPE}, application/json"})
        if r.headers.get("content-type", "").split(";")[0].strip() != HE_MEDIA_TYPE:
            plain: dict[str, Any] = r.json()
            return plain
        out, raw = decode_frame(r.content)
        for name in list_fields:
            out[name] = [base64.b64encode(b).decode("ascii") for n, b in raw if n == name]
        for name in blob_fields:
            found = [b for n, b in raw if n == name]
            if found:
                out[name] = base64.b64encode(found[0]).decode("ascii")
        return out

    # --- secure aggregation ---
    def secagg_open(self, agreement_id: str, participants: list[str], threshold: int, vector_length: int, *,
                    modulus_bits: int = 32, stage_timeout_s: float | None = None,
                    task: dict[str, Any] | None = None) -> dict[str, Any]:
        """Operator: open a secure-aggregation round → its status (``id``, public ``config``, ``stage``…)."""
        body: dict[str, Any] = {"agreement_id": agreement_id, "participants": participants, "threshold": threshold,
                                "vector_length": vector_length, "modulus_bits": modulus_bits}
        if stage_timeout_s is not None:
            body["stage_timeout_s"] = stage_timeout_s
        if task is not None:
            body["task"] = task
        return self._json("POST", "/v1/secagg/rounds", json=body)

    def secagg_rounds(self, waiting_for_me: bool = False, wait: float = 0.0) -> list[dict[str, Any]]:
        """The rounds you opened or take part in; ``waiting_for_me``: only those waiting for your message
        (long-polls up to ``wait`` seconds for one)."""
        params: dict[str, Any] = {"waiting_for_me": waiting_for_me, "wait": wait} if waiting_for_me else {}
        return self._json("GET", "/v1/secagg/rounds", params=params)

    def secagg_round(self, round_id: str) -> dict[str, Any]:
        return self._json("GET", f"/v1/secagg/rounds/{round_id}")

    def secagg_close(self, round_id: str) -> dict[str, Any]:
        """Opener: end the current stage now."""
        return self._json("POST", f"/v1/secagg/rounds/{round_id}/close")

    def secagg_send(self, round_id: str, endpoint: str, message: dict[str, Any]) -> dict[str, Any]:
        """Participant: post one protocol message to ``keys``, ``shares``, ``masked`` or ``unmask``."""
        return self._json("POST", f"/v1/secagg/rounds/{round_id}/{endpoint}", json=message)

    def secagg_published(self, round_id: str, what: str, wait: float = 0.0) -> dict[str, Any]:
        """``keys`` (roster), ``shares`` (your envelopes) or ``survivors``: ``{"stage", "ready", "message"…}``."""
        return self._json("GET", f"/v1/secagg/rounds/{round_id}/{what}", params={"wait": wait})

    def secagg_result(self, round_id: str, wait: float = 0.0) -> dict[str, Any]:
        """Opener: ``{"ready": true, "sum": <base64 uint32 LE>, "survivors", "output_digest"…}`` once done."""
        return self._json("GET", f"/v1/secagg/rounds/{round_id}/result", params={"wait": wait})
