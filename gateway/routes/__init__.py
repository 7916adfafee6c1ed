"""HTTP routes, one module per resource of docs/api.md (schemas: docs/openapi.json)."""
