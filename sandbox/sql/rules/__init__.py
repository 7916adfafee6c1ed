"""The rules of SQL vetting, one module per part of a query (entry point: `sandbox.sql.vet.vet`).

- `expressions` — literals, columns, allow-listed scalar functions, casts and DOUBLE arithmetic (its literal,
  divisor, comparison and column-kind rules are shared with the verification-predicate vetter);
- `aggregates` — COUNT / SUM / AVG and the provable bounds of their arguments;
- `clauses` — FROM, WHERE, GROUP BY, HAVING, ORDER BY and LIMIT;
- `select` — statement-wide refusals and the projection; `SelectRules` is the whole vetter.

Each layer subclasses the one before (expressions ← aggregates ← clauses ← select), so the modules import in
one direction only.
"""
