"""Incident reports (事件报告): one per suspension, rectification order (整改), withdrawal or disposal, built from
the audit log alone, for the regulator and the data authority.

`INCIDENT_KINDS` is the one table from audit action to incident kind: an action the service records when an
agreement is suspended (by its owner or the authority, over the API or the console), a principal disabled by the
authority, a rectification order issued, a dataset withdrawn or its copy disposed of, an ended agreement disposed
of (its steps and signed record join one incident, `CONTINUED`). A new action that opens an incident is one line
there. `FOLLOW_UPS` is the table of the actions that settle one (a resumption, an enabled
principal, a closed order, the disposal that follows a withdrawal, a revocation that ends a suspended agreement),
and `KEYS` says how a follow-up finds its incident (same agreement, same principal, same order id, same dataset).

Only allowed entries count (a refused attempt changed nothing). An incident's id is ``inc-<seq>``, the ``seq`` of
the entry that opened it, so it is stable and checkable against the signed log. `incident(ctx, id)` states what
happened (kind, action), to what (agreement with its title, dataset, principal), when, by whom (actor and role),
the reasons recorded, the follow-up (the order's deadline; ``open`` or ``resolved`` with when, by whom, how and
the note) and every audit entry it is built from (seq, time, action, actor and hash). `incidents(ctx)` lists
them, oldest first; `render_incident_pdf` lays one out with the reports' fonts (`gateway.reports.PdfWriter`) in the
current language.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from sqlalchemy import select

from catalog.errors import invalid, not_found
from gateway import _tables as t
from gateway.context import AppContext
from gateway.reports import NONE, PdfWriter, text_of
from policies import _tables as pt
from vocab.actions import AuditAction
from vocab.i18n import _

__all__ = ["CONTINUED", "FOLLOW_UPS", "INCIDENT_KINDS", "KEYS", "incident", "incidents", "render_incident_pdf"]

#: Audit action → the kind of incident it opens (one line per action).
INCIDENT_KINDS: Mapping[str, str] = MappingProxyType({
    "agreement.suspend": "suspension",  # the owner pauses an agreement (API)
    "console.agreement.suspend": "suspension",  # the same, from the console
    "authority.suspend": "suspension",  # the data authority suspends an agreement (API)
    "console.authority.suspend": "suspension",  # the same, from the console
    "authority.principal.disable": "principal_suspension",  # the authority disables a principal (API)
    "console.authority.principal.disable": "principal_suspension",  # the same, from the console
    "order.issue": "rectification",  # a rectification order (整改) (API)
    "console.authority.order.issue": "rectification",  # the same, from the console
    "dataset.withdraw": "withdrawal",  # an owner (or admin) withdraws a dataset (API)
    str(AuditAction.DATASET_DISPOSE): "disposal",  # a withdrawn dataset's copy destroyed after its grace period
    "agreement.dispose": "agreement_disposal",  # an ended agreement's disposal: each step, then its signed record
})

#: Kinds whose incident spans several entries of the same action: a later entry with the same key joins the open
#: incident (an agreement's disposal steps), and the one whose ``details.step`` is named here completes it.
CONTINUED: Mapping[str, str] = MappingProxyType({"agreement_disposal": "record"})

#: Audit action → the kind of incident it settles, and how ("resumed", "closed"...), one line per action.
FOLLOW_UPS: Mapping[str, tuple[str, str]] = MappingProxyType({
    "agreement.resume": ("suspension", "resumed"),
    "console.agreement.resume": ("suspension", "resumed"),
    "authority.resume": ("suspension", "resumed"),
    "console.authority.resume": ("suspension", "resumed"),
    "agreement.revoke": ("suspension", "revoked"),
    "console.agreement.revoke": ("suspension", "revoked"),
    "authority.principal.enable": ("principal_suspension", "enabled"),
    "console.authority.principal.enable": ("principal_suspension", "enabled"),
    "order.close": ("rectification", "closed"),
    "console.authority.order.close": ("rectification", "closed"),
    str(AuditAction.DATASET_DISPOSE): ("withdrawal", "disposed"),
})

#: Incident kind → what ties a follow-up to it: the agreement, the principal (``details.name``), the order
#: (``details.order_id``) or the dataset.
KEYS: Mapping[str, str] = MappingProxyType({
    "suspension": "agreement_id", "principal_suspension": "details.name", "rectification": "details.order_id",
    "withdrawal": "dataset", "disposal": "dataset", "agreement_disposal": "agreement_id",
})

#: The kinds in the order the listing filter accepts them.
KINDS = tuple(dict.fromkeys(INCIDENT_KINDS.values()))

_REASON_FIELDS = ("reason", "reasons", "text", "note", "case")


def _key(kind: str, entry: dict[str, Any], details: dict[str, Any]) -> str | None:
    where = KEYS[kind]
    value = details.get(where.removeprefix("details.")) if where.startswith("details.") else entry.get(where)
    return str(value) if value else None


def _details(entry: Mapping[str, Any]) -> dict[str, Any]:
    try:
        d = json.loads(entry["details"]) if entry["details"] else {}
    except ValueError:
        return {}
    return d if isinstance(d, dict) else {}


def _reasons(details: dict[str, Any]) -> list[str]:
    out: list[str] = []
    for f in _REASON_FIELDS:
        v = details.get(f)
        if isinstance(v, list):
            out.extend(str(x) for x in v if x)
        elif v:
            out.append(str(v))
    return out


def _ref(entry: Mapping[str, Any]) -> dict[str, Any]:
    return {"seq": entry["seq"], "ts": entry["ts"], "action": entry["action"], "actor": entry["actor"],
            "role": entry["role"], "hash": entry["hash"]}


def _build(ctx: AppContext) -> list[dict[str, Any]]:
    """Every incident, oldest first, with its follow-up."""
    e = t.audit_entries.c
    actions = sorted(set(INCIDENT_KINDS) | set(FOLLOW_UPS))
    with ctx.engine.connect() as conn:
        rows = [dict(r._mapping) for r in conn.execute(
            select(t.audit_entries).where(e.action.in_(actions), e.decision == "allow").order_by(e.seq))]
        titles = {r.id: r.title for r in conn.execute(select(pt.agreements.c.id, pt.agreements.c.title))}
    out: list[dict[str, Any]] = []
    open_by_key: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for row in rows:
        details = _details(row)
        follow = FOLLOW_UPS.get(row["action"])
        if follow is not None:
            kind, how = follow
            key = _key(kind, row, details)
            for inc in open_by_key.pop((kind, key or ""), []) if key else []:
                inc["follow_up"].update(state="resolved", resolution=how, resolved_at=row["ts"],
                                        resolved_by=row["actor"], note=" ".join(_reasons(details)) or None)
                inc["entries"].append(_ref(row))
        kind_opened = INCIDENT_KINDS.get(row["action"])
        if kind_opened is None:
            continue
        if kind_opened in CONTINUED:
            key = _key(kind_opened, row, details)
            joined = open_by_key.get((kind_opened, key or ""), []) if key else []
            if joined:
                joined[-1]["entries"].append(_ref(row))
                joined[-1]["reasons"].extend(r for r in _reasons(details) if r not in joined[-1]["reasons"])
                if details.get("step") == CONTINUED[kind_opened]:
                    joined[-1]["follow_up"].update(state="resolved", resolution="record signed",
                                                   resolved_at=row["ts"], resolved_by=row["actor"])
                    open_by_key.pop((kind_opened, key or ""), None)
                continue
        aid = row["agreement_id"]
        inc = {
            "id": f"inc-{row['seq']}", "kind": kind_opened, "action": row["action"], "ts": row["ts"],
            "actor": row["actor"], "role": row["role"], "agreement_id": aid,
            "agreement_title": titles.get(aid) if aid else None, "dataset": row["dataset"] or None,
            "principal": details.get("name") if kind_opened == "principal_suspension" else None,
            "order_id": details.get("order_id"), "reasons": _reasons(details),
            "follow_up": {"state": "final" if kind_opened == "disposal" else "open",
                          "deadline": details.get("deadline"), "resolution": None, "resolved_at": None,
                          "resolved_by": None, "note": None},
            "entries": [_ref(row)],
        }
        out.append(inc)
        key = _key(kind_opened, row, details)
        if kind_opened in CONTINUED and details.get("step") == CONTINUED[kind_opened]:
            inc["follow_up"].update(state="resolved", resolution="record signed", resolved_at=row["ts"],
                                    resolved_by=row["actor"])
        elif key and kind_opened != "disposal":
            open_by_key.setdefault((kind_opened, key), []).append(inc)
    return out


def incidents(ctx: AppContext, kind: str | None = None) -> list[dict[str, Any]]:
    """Every incident report (of ``kind`` if given), oldest first."""
    if kind is not None and kind not in KINDS:
        raise invalid(f"kind must be one of {', '.join(KINDS)}", [{"field": "kind"}])
    return [i for i in _build(ctx) if kind is None or i["kind"] == kind]


def incident(ctx: AppContext, incident_id: str) -> dict[str, Any]:
    """One incident report by its id (``inc-<seq>``); NOT_FOUND_OR_FORBIDDEN if no such incident."""
    for i in _build(ctx):
        if i["id"] == incident_id:
            return i
    raise not_found("incident")


def kind_label(kind: str) -> str:
    """An incident kind in the current language (the JSON keeps the English word)."""
    return {"suspension": _("suspension of an agreement"), "principal_suspension": _("principal disabled"),
            "rectification": _("rectification order (整改)"), "withdrawal": _("withdrawal of a dataset"),
            "disposal": _("disposal of a dataset's copy"),
            "agreement_disposal": _("disposal on an agreement's end")}.get(kind, kind)


def state_label(state: str) -> str:
    return {"open": _("open"), "resolved": _("resolved"), "final": _("final: nothing follows")}.get(state, state)


def render_incident_pdf(inc: dict[str, Any]) -> bytes:
    """The incident report as a PDF in the current language, with the bundled fonts embedded (Chinese prints)."""
    from fpdf.fonts import FontFace

    title = _("Veilbox incident report %(id)s", id=inc["id"])
    doc = PdfWriter(title, lambda page: _("%(title)s · page %(page)s of %(pages)s", title=title, page=page,
                                          pages="{nb}"))
    pdf, width, para, heading = doc.pdf, doc.width, doc.para, doc.heading

    def facts(rows: list[tuple[str, Any]]) -> None:
        pdf.set_font("sans", "", 9)
        with pdf.table(col_widths=(50, width - 50), text_align=("LEFT", "LEFT"), line_height=4.5, padding=1,
                       first_row_as_headings=False) as tbl:
            for label, value in rows:
                tbl.row([label, text_of(value)])

    para(title, 16, "B", 9)
    para(kind_label(inc["kind"]), 12, "B", 7)
    heading(_("What happened"))
    agreement = inc["agreement_id"]
    if agreement and inc.get("agreement_title"):
        agreement = f"{inc['agreement_title']} ({agreement})"
    facts([(_("action"), inc["action"]), (_("when (UTC)"), inc["ts"][:19].replace("T", " ")),
           (_("by"), f"{inc['actor']} ({inc['role']})"), (_("agreement"), agreement),
           (_("dataset"), inc["dataset"]), (_("principal"), inc["principal"]), (_("order"), inc["order_id"])])
    heading(_("Reasons"))
    para("\n".join(inc["reasons"]) if inc["reasons"] else NONE, 10)
    heading(_("Follow-up"))
    f = inc["follow_up"]
    facts([(_("state"), state_label(f["state"])), (_("deadline"), f["deadline"]),
           (_("resolution"), f["resolution"]), (_("resolved at (UTC)"),
                                                (f["resolved_at"] or "")[:19].replace("T", " ") or None),
           (_("resolved by"), f["resolved_by"]), (_("note"), f["note"])])
    heading(_("Audit entries it is built from (全程留痕)"))
    pdf.set_font("sans", "", 8)
    with pdf.table(col_widths=(12, 36, 40, 30, 72), text_align=("RIGHT", "LEFT", "LEFT", "LEFT", "LEFT"),
                   line_height=4.5, padding=1, repeat_headings=1,
                   headings_style=FontFace(fill_color=(235, 238, 242))) as tbl:
        tbl.row(["seq", _("when (UTC)"), _("action"), _("by"), _("hash")])
        for x in inc["entries"]:
            tbl.row([str(x["seq"]), x["ts"][:19].replace("T", " "), x["action"], x["actor"], x["hash"]])
    return doc.output()
