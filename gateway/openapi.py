"""The HTTP contract as a file: ``python -m gateway.openapi > docs/openapi.json`` (or ``make openapi``).

The document is the one the service serves at ``/openapi.json``: it comes from `gateway.app.create_app`, over a
throwaway home in a temporary directory (keys, schema and admin are created there and deleted with it), so no
setting, path or key of the machine that runs it reaches the output. Every field that could differ between runs is
fixed here (home, database, hash algorithm, worker off); the route schemas themselves are built at import from the
route modules and depend on no setting. The rendering is canonical (sorted keys, 2-space indent, trailing newline),
so two runs give the same bytes and tests/test_openapi_drift.py can compare the committed docs/openapi.json.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path
from typing import Any

from gateway.app import create_app
from gateway.context import init_home, open_context
from gateway.settings import Settings

#: The command that rewrites the committed contract (named by the drift test when it fails).
REGENERATE = "python -m gateway.openapi > docs/openapi.json"


def build() -> dict[str, Any]:
    """The OpenAPI document of the gateway, exactly as ``GET /openapi.json`` returns it."""
    with tempfile.TemporaryDirectory(prefix="veilbox-openapi-") as tmp:
        home = Path(tmp) / "home"
        # Explicit values take precedence over VEILBOX_* variables: never touch a configured database or home.
        settings = Settings(home=home, database_url=None, hash_alg="sha256", import_roots=[], worker=False,
                            env="development")
        init_home(settings)
        ctx = open_context(settings)
        try:
            return create_app(ctx).openapi()
        finally:
            ctx.close()


def render(spec: dict[str, Any]) -> str:
    """Canonical text of a document: sorted keys, 2-space indent, one trailing newline."""
    return json.dumps(spec, indent=2, sort_keys=True) + "\n"


def main() -> None:
    sys.stdout.write(render(build()))


if __name__ == "__main__":
    main()
