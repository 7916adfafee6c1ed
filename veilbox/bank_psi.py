"""The bank's side of PSI and anonymous verification (re-exported by `veilbox.bank`).

    from veilbox import bank
    out = bank.psi_size(client, agreement_id, "tax_income", my_ids, epsilon=0.5)
    out.size                       # |my ids ∩ the dataset's ids| + discrete Laplace noise; the service never saw an id
    present = bank.psi_members(client, agreement_id, "tax_income", my_ids, consent_refs=refs)
    ans = bank.check_anonymous(client, "income_at_least", agreement_id, "P0000042", {"threshold": 8000},
                               consent_ref="consent-2026-001")
    ans.result                     # the verdict; the service saw only a bucket of ≥ k subjects

Ids are sent blinded under keys that never leave this process (`mpc.psi`). Integer ids are spelt in decimal
(``7`` and ``"7"`` are one id), as the service spells its own. `PsiSizeSession` keeps the bank key and the
double-blinded setup of one dataset version: reuse it for later lists (the setup is the costly step).
docs/mechanisms/psi.md states what each party learns.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from mpc import psi
from mpc.psi import group
from veilbox.client import Client

__all__ = ["AnonymousResult", "PsiSizeResult", "PsiSizeSession", "check_anonymous", "psi_members", "psi_size",
           "psi_size_session"]


def _spell(ids: Sequence[str | int]) -> list[str]:
    out = []
    for i in ids:
        if isinstance(i, bool) or not isinstance(i, str | int):
            raise TypeError("ids are strings or integers")
        out.append(str(i))
    if len(set(out)) != len(out):
        raise ValueError("the ids must be distinct")
    return out


def _b64(xs: Sequence[bytes]) -> str:
    return base64.b64encode(group.join(xs)).decode()


def _unb64(text: str) -> bytes:
    return base64.b64decode(text.encode("ascii"), validate=True)


@dataclass
class PsiSizeSession:
    agreement_id: str
    dataset: str
    dataset_fingerprint: str
    setup_id: str
    client: psi.SizeClient
    set_size: int
    bytes_exchanged: int


def psi_size_session(client: Client, agreement_id: str, dataset: str) -> PsiSizeSession:
    """Fetch the dataset version's blinded set, double-blind it under a fresh bank key and register it."""
    setup = client._json("POST", "/v1/psi/setup", json={"agreement_id": agreement_id, "dataset": dataset,
                                                         "kind": "psi_size"})
    server = group.split(_unb64(setup["elements"]))
    bank = psi.SizeClient()
    returned = _b64(bank.double_blind(server))
    out = client._json("POST", "/v1/psi/size/setup", json={
        "agreement_id": agreement_id, "dataset": dataset, "dataset_fingerprint": setup["dataset_fingerprint"],
        "elements": returned})
    return PsiSizeSession(agreement_id, dataset, setup["dataset_fingerprint"], out["setup_id"], bank,
                          setup["set_size"], len(setup["elements"]) + len(returned))


@dataclass
class PsiSizeResult:
    size: int
    epsilon: str
    accuracy_95: float
    receipt: str
    session: PsiSizeSession
    bytes_sent: int
    source: list[dict[str, str]] = field(default_factory=list)  # the dataset, its owner, its fingerprint


def psi_size(client: Client, agreement_id: str, dataset: str, ids: Sequence[str | int], *, epsilon: float | str,
             purpose: str | None = None, session: PsiSizeSession | None = None) -> PsiSizeResult:
    """The noisy size of ``ids`` ∩ the dataset's id column (ε charged on the agreement's budget)."""
    spelt = _spell(ids)
    if session is None or session.agreement_id != agreement_id or session.dataset != dataset:
        session = psi_size_session(client, agreement_id, dataset)
    body: dict[str, Any] = {"agreement_id": agreement_id, "dataset": dataset,
                            "dataset_fingerprint": session.dataset_fingerprint, "setup_id": session.setup_id,
                            "epsilon": epsilon, "elements": _b64(session.client.blind(spelt))}
    if purpose is not None:
        body["purpose"] = purpose
    out = client._json("POST", "/v1/psi/size", json=body)
    return PsiSizeResult(out["size"], out["epsilon"], out["accuracy_95"], out["receipt"], session,
                         len(body["elements"]), out.get("source", []))


def psi_members(client: Client, agreement_id: str, dataset: str, ids: Sequence[str | int], *,
                consent_refs: Sequence[str] | str | None = None, purpose: str | None = None) -> list[str]:
    """Which of ``ids`` the dataset holds (where the agreement grants psi_members). ``consent_refs``: one
    reference per id (or one string used for every id) — personal datasets require them."""
    spelt = _spell(ids)
    refs = [consent_refs] * len(spelt) if isinstance(consent_refs, str) else list(consent_refs or [])
    setup = client._json("POST", "/v1/psi/setup", json={"agreement_id": agreement_id, "dataset": dataset,
                                                         "kind": "psi_members"})
    bank = psi.MembersClient()
    body: dict[str, Any] = {"agreement_id": agreement_id, "dataset": dataset,
                            "dataset_fingerprint": setup["dataset_fingerprint"],
                            "elements": _b64(bank.blind(spelt)), "consent_refs": refs}
    if purpose is not None:
        body["purpose"] = purpose
    out = client._json("POST", "/v1/psi/members", json=body)
    return bank.members(spelt, group.split(_unb64(out["elements"])), _unb64(setup["filter"]))


@dataclass
class AnonymousResult:
    result: bool  # the verdict (False when the subject is not in the dataset)
    present: bool  # whether a label opened: the subject is in the dataset
    bucket_size: int
    receipt: str
    bytes_received: int


def check_anonymous(client: Client, product: str, agreement_id: str, subject: str | int,
                    params: Mapping[str, Any] | None = None, *, consent_ref: str,
                    purpose: str | None = None) -> AnonymousResult:
    """Ask ``product`` about ``subject`` without naming it: the service learns only the subject's bucket."""
    (spelt,) = _spell([subject])
    info = client._json("GET", f"/v1/verifications/{product}/anonymous", params={"agreement_id": agreement_id})
    bank = psi.AnonClient()
    body: dict[str, Any] = {"agreement_id": agreement_id, "bucket_bits": info["bucket_bits"],
                            "bucket": psi.bucket_of(spelt, info["bucket_bits"]),
                            "element": _b64([bank.request(spelt)]), "params": dict(params or {}),
                            "consent_ref": consent_ref}
    if purpose is not None:
        body["purpose"] = purpose
    out = client._json("POST", f"/v1/verifications/{product}/check-anonymous", json=body)
    answer = psi.AnonAnswer(group.validate(_unb64(out["evaluated"])), _unb64(out["labels"]))
    verdict = bank.open(answer, out["aad"].encode())
    return AnonymousResult(bool(verdict), verdict is not None, out["bucket_size"], out["receipt"],
                           len(out["labels"]) + len(out["evaluated"]))
