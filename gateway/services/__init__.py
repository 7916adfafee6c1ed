"""The gateway's services: the orchestration the HTTP routes, the web console, the worker and the CLI share.

A route parses and validates the request, calls one function here and shapes the response; a console page does
the same with a form. So the API and the console cannot diverge, and nothing here knows about HTTP (no FastAPI
objects: an `gateway.audit.AuditEvent` is filled in, a `catalog.errors.DomainError` is raised).

- `jobs`: the job flow (submit, review, approve, reject, cancel, release, run, results) and query previews.
- `agreements`: the expiry entry (`note_expiry`), the grantee check and today's quotas every agreement path
  shares.
- `datasets`: the dataset as a given principal may see it (`public_view`).
- `disposal`: an ended agreement's exit clause carried out step by step and its signed record (on revocation, and
  the worker's sweep for expiry).
- `receipts`: signed receipts (``vbr1``) and the digests they carry; reading one back.
- `verification`: verification products and their plain and encrypted checks (核验) (validated HE contexts are
  cached in the context: `gateway.caches`).
- `scoring`: encrypted scoring of released linear models (HE).
- `psi`: private set intersection and anonymous checks (匿踪查询), and the bank's own view of them (its
  agreements, receipts read back).
- `rounds`: the registry of secure-aggregation rounds and who may take part.
- `audit`: reading the audit log in the caller's scope, and the report files (monthly, quarterly, annual, incidents).

Direction: routes → services → sandbox / policies / catalog / mpc; the console → services. A service never imports
`gateway.routes` or `gateway.console` (import-linter, `make lint`).
"""
