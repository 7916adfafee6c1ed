"""Gateway: the FastAPI service and everything at the trust boundary.

- `app`: application factory, audit middleware, body limits.
- `routes/`: one module per resource of the HTTP API (docs/api.md; contract docs/openapi.json).
- `deps`: authentication and role checks as typed dependencies (`CurrentPrincipal`, `Owner`, `Regulator`…).
- `errors`: the one error catalog (code → status, public message).
- `audit`: the hash-chained, signed audit log.
- `he_frames`: the binary form of the encrypted endpoints' bodies (raw ciphertexts instead of base64 JSON).
- `identities`, `keys`, `settings`, `context`, `schema` (Alembic migrations), `server`.
"""

__all__: list[str] = []
