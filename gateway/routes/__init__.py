"""HTTP routes, one module per resource of API.md."""
