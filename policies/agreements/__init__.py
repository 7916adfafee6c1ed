"""Agreements (授权运营协议): the document, the stored record and the lifecycle, one module each.

- `document` — `AgreementDocument` (fields, validation, canonical JSON and hash), `parse_document`;
- `sections` — the contractual sections (conditions, responsibilities, exit cases, derived data and models,
  usage feedback) and what filing requires of them (`require_complete`); `template` — `example_document`, the
  complete example `veilbox agreement template` prints, built from the models;
- `record` — the stored `Agreement`, `effective_state` (``expired`` is derived), `outputs_sealed`,
  `secagg_parties`, `load_agreement`;
- `lifecycle` — `create_agreement`, `amend_agreement`, `get_agreement`, `list_agreements`, the transitions
  (`accept`, `suspend`, `resume`, `revoke`) and `record_expiry` / `record_expiries`.
- `filing` — submission, the authority's and the named reviewers' sign-offs (专家委员会, 网信), filing (备案),
  the authority's suspension and rectification orders (整改).

The modules import in one direction (document ← record ← lifecycle) and only `lifecycle` uses the decision
table and the budget ledger, so `policies.decision` can name agreements without an import cycle. Import from the
modules (or from `policies`); this package re-exports nothing.
"""
