"""The console's pages, by audience, assembled on one router under ``/console`` (every URL and route name is the
console's public interface: the audit log records the route names as actions).

- `shared`: sign-in and sign-out, home, the catalog, agreements and jobs (every signed-in principal);
- `operator`: the grantees' query workspace (preview, submit), training and custom-code job forms, a released
  result as CSV (operators and banks);
- `owner`: proposing agreements, deciding on jobs;
- `bank`: verification checks, PSI and anonymous checks, receipts;
- `regulator`: the audit log (also owners, in their scope), chain verification, lineage, charts, reports;
- `language`: the language switch (zh-CN or en), and the dependency that applies the choice to every page;
- `admin`: principals (create, disable, new token, expiry), the negative list, the service's health;
- `authority`: the data authority's review queue, sign-offs (file or refuse), suspension and resumption, rectification
  orders (整改) and principals (disable, enable);
- `reviewer`: a named reviewer's (专家委员会, 网信) agreements under review and its sign-off (approve or refuse);
- `complaints`: complaints and objections (file; the owner's and the authority's queue; regulators read-only);
- `alerts`: alerts (监测预警) for the owner concerned, the authority, regulators and admins; acknowledge;
- `consents`: the consent registry (同意登记): owners and their trustees record and revoke, grantees read theirs;
- `subject_access`: the subject-access report (查阅请求): an owner names a person in a posted form and reads the
  person's consents and every audited use;
- `statements`: revenue statements (收益分成结算单): an owner's month, an agreement's month and its split, CSV and PDF;
- `fallback`: any other path is a not-found page.

Order matters where paths overlap: ``POST /jobs/new/{kind}`` (operator) before ``POST /jobs/{job_id}/{action}``
(owner), ``/agreements/new`` (owner) is matched before ``/agreements/{agreement_id}``
(shared), and the catch-all comes last. Pages call services (`gateway.services`), `policies` and `catalog`, never
`gateway.routes` (import-linter).
"""

from __future__ import annotations

from fastapi import APIRouter, Depends

from gateway.console.pages import (
    admin,
    alerts,
    authority,
    bank,
    complaints,
    consents,
    fallback,
    language,
    operator,
    owner,
    regulator,
    reviewer,
    shared,
    statements,
    subject_access,
)

__all__ = ["router"]

router = APIRouter(prefix="/console", include_in_schema=False, dependencies=[Depends(language.apply)])
for _pages in (
    admin,
    authority,
    reviewer,
    operator,
    owner,
    bank,
    regulator,
    complaints,
    alerts,
    consents,
    shared,
    statements,
    subject_access,
    language,
    fallback,
):
    router.include_router(_pages.router, include_in_schema=False)
