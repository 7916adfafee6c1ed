"""`veilbox demo`, the data authority's chapter (数据主管部门): one agreement's whole life under filing (备案).

The home turns filing on (as ``veilbox init --filing`` does; agreements proposed earlier in the demo keep the short
path, each agreement's choice being fixed when it is proposed). The tax bureau proposes a complete agreement (the
contractual sections filing requires); the operator accepts it but cannot use it yet; the tax bureau submits it;
the authority names an expert committee (专家委员会) and the cyberspace administration (网信) as reviewers, both
approve the hash they read, the authority files it (a 备案号) and the tax bureau activates it; the operator queries
and verifies the released answer's certificate; the authority issues a rectification order (整改) and suspends the
agreement, which the owner cannot lift and whose refusals cite the order; the tax bureau revokes it, and the
disposal (退出与处置) runs and is recorded, signed; the authority reads its incident reports and the quarter's
report (docs/agreements.md, docs/certificates.md).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from rich.console import Console
from rich.table import Table

from veilbox.client import ApiError

console = Console()

__all__ = ["AUTHORITY", "chapter_authority"]

AUTHORITY = "wuxi-data-bureau"
REVIEWERS = {"expert-panel": "expert_committee", "cac-wuxi": "cyberspace"}
COUNT = "SELECT district, COUNT(*) AS people FROM tax_income GROUP BY district ORDER BY district"


def _iso(days: int) -> str:
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    return (now + dt.timedelta(days=days)).isoformat().replace("+00:00", "Z")


def _refusal(fn: Any, *args: Any) -> ApiError | None:
    try:
        fn(*args)
    except ApiError as e:
        return e
    return None


def _document() -> dict[str, Any]:
    from policies.agreements.sections import FILING_SECTIONS
    from policies.agreements.template import example_document
    from veilbox.demo import DATA_OWNER

    columns = {"tax_income": ["district", "age", "industry", "monthly_income"]}
    full = example_document(owner=DATA_OWNER, grantee="risk-lab", columns=columns, purposes=("statistics",))
    return {**{k: full[k] for k in FILING_SECTIONS},
            "title": "Youth employment statistics (filed)", "grantee": "risk-lab", "datasets": ["tax_income"],
            "columns": columns, "purposes": ["statistics"], "job_kinds": ["query"],
            "valid_from": _iso(-1), "valid_until": _iso(365), "budget": {"epsilon": 2}, "min_group_units": 20,
            "approval": "auto_within_budget", "exit": {"on_expiry": "seal_outputs", "outputs": "seal"}}


def chapter_authority(story: Any, engine: Any) -> None:
    """Filing with named reviewers, use, a rectification order, suspension, revocation and the disposal record."""
    from gateway.services.agreements import set_filing

    admin, owner, op = story.admin, story.clients["owner"], story.clients["operator"]
    authority = admin.with_token(admin.create_principal(AUTHORITY, "authority")["token"])
    story.clients["authority"] = authority
    reviewers = {}
    for name, kind in REVIEWERS.items():
        reviewers[name] = admin.with_token(admin.create_principal(name, "reviewer", kind)["token"])
        story.clients[name] = reviewers[name]
    set_filing(engine, True)  # this home files (备案) every agreement proposed from now on

    steps = Table("step", "who", "state", "note", title="one agreement's life under filing (备案)")
    ag = owner.propose_agreement(_document())
    aid, h = ag["id"], ag["document_hash"]
    steps.add_row("propose", "city-tax-bureau", ag["state"], f"document {h[:19]}…")
    ag = op.accept_agreement(aid, document_hash=h)
    early = _refusal(op.query, aid, COUNT, 0.25)
    steps.add_row("accept", "risk-lab", ag["state"], f"a query now: {early.code if early else 'answered'}")
    ag = owner.submit_agreement(aid)
    steps.add_row("submit", "city-tax-bureau", ag["state"], "")
    ag = authority.require_reviewers(aid, list(REVIEWERS))
    steps.add_row("name reviewers", AUTHORITY, ag["state"], ", ".join(f"{n} ({k})" for n, k in REVIEWERS.items()))
    waiting = _refusal(authority.file_agreement, aid, h)
    for name, client in reviewers.items():
        client.review_agreement(aid, "approve", h, ["scope and purpose proportionate"])
        steps.add_row("review", name, "under_review", f"approve, on {h[:19]}…")
    ag = authority.file_agreement(aid, h, ["scope, purposes and sections checked"])
    steps.add_row("file", AUTHORITY, ag["state"], f"filing number {ag['filing_number']}"
                  + (f" (earlier: {waiting.code}, reviews pending)" if waiting else ""))
    ag = owner.activate_agreement(aid)
    steps.add_row("activate", "city-tax-bureau", ag["state"], "")
    answer = op.query(aid, COUNT, 0.25)
    cert_id = answer.get("certificate_id")
    cert = op.certificate(cert_id) if cert_id else {}
    steps.add_row("query", "risk-lab", "active", f"released, certificate {cert_id or '—'}")
    order = authority.issue_order(aid, "Publish the statistics' methodology note to the data subjects", _iso(30))
    steps.add_row("rectification order (整改)", AUTHORITY, "active", f"{order['id']}, due {order['deadline'][:10]}")
    ag = authority.authority_suspend(aid, "the methodology note is missing")
    steps.add_row("suspend", AUTHORITY, ag["state"], f"suspended_by {ag['suspended_by']}")
    refused = _refusal(op.query, aid, COUNT, 0.25)
    cites = refused is not None and any(d.get("reason") == "rectification.open" for d in refused.details)
    steps.add_row("query", "risk-lab", "suspended",
                  f"{refused.code if refused else 'answered'}" + (", citing the open order" if cites else ""))
    own = _refusal(owner.resume_agreement, aid)
    steps.add_row("resume", "city-tax-bureau", "suspended", own.code if own else "resumed (unexpected)")
    ag = owner.revoke_agreement(aid)
    steps.add_row("revoke", "city-tax-bureau", ag["state"], "exit clause: outputs sealed")
    disposal = owner.agreement_disposal(aid)
    record = disposal.get("record") or {}
    done = [str(s.get("step")) for s in record.get("steps", [])] or list(disposal.get("steps_done", []))
    steps.add_row("disposal", "service", ag["state"], f"steps {', '.join(done)}; signed record "
                  f"{str(disposal.get('signature') or record.get('signature') or '')[:16]}…")
    console.print(steps)
    after = op.certificate(cert_id) if cert_id else {}
    before = early.code if early else "?"
    story.facts.append(f"filing (备案): {aid} was accepted but unusable ({before}) until two named "
                       f"reviewers (专家委员会, 网信) approved its hash and the data authority filed it as "
                       f"{ag['filing_number']}; the operator's answer carried certificate {cert_id} "
                       f"(valid={cert.get('valid')})")
    story.facts.append(f"the authority's rectification order (整改) and suspension stopped the operator "
                       f"({refused.code if refused else '?'}{', order cited' if cites else ''}); the owner could not "
                       f"resume ({own.code if own else '?'}); revocation ran the disposal ({', '.join(done)}) and "
                       f"signed its record; the output's certificate is now valid={after.get('valid')}")
    incidents = authority.incidents()
    quarter = f"{dt.datetime.now(dt.UTC).year}-Q{(dt.datetime.now(dt.UTC).month - 1) // 3 + 1}"
    rep = authority.report(quarter)
    kinds = sorted({str(i.get("kind")) for i in incidents})
    story.facts.append(f"the data authority reads {len(incidents)} incident reports ({', '.join(kinds)}) and the "
                       f"{quarter} report ({rep.get('entries')} audit entries, {len(rep.get('agreements', []))} "
                       "agreements)")
