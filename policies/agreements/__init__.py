"""Agreements (授权运营协议): the document, the stored record and the lifecycle, one module each.

- `document` — `AgreementDocument` (fields, validation, canonical JSON and hash), `parse_document`;
- `record` — the stored `Agreement`, `effective_state` (``expired`` is derived), `outputs_sealed`,
  `secagg_parties`, `load_agreement`;
- `lifecycle` — `create_agreement`, `amend_agreement`, `get_agreement`, `list_agreements`, the transitions
  (`accept`, `suspend`, `resume`, `revoke`) and `record_expiry` / `record_expiries`.

The modules import in one direction (document ← record ← lifecycle) and only `lifecycle` uses the decision
table and the budget ledger, so `policies.decision` can name agreements without an import cycle. Import from the
modules (or from `policies`); this package re-exports nothing.
"""
