"""The committed contract (docs/openapi.json) is the one the gateway serves.

The document is regenerated from the app (`gateway.openapi.build`, the same `create_app` the service runs) and
compared byte for byte with the committed file; the generation is deterministic, so any difference is a change to
the HTTP contract that was not written down. The failure names the command that rewrites the file.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from gateway import openapi

COMMITTED = Path(__file__).resolve().parents[1] / "docs" / "openapi.json"


def _changed_paths(old: dict, new: dict) -> list[str]:
    paths_old, paths_new = old.get("paths", {}), new.get("paths", {})
    changed = sorted(p for p in paths_old.keys() | paths_new.keys() if paths_old.get(p) != paths_new.get(p))
    schemas_old = old.get("components", {}).get("schemas", {})
    schemas_new = new.get("components", {}).get("schemas", {})
    changed += sorted(f"#/components/schemas/{s}" for s in schemas_old.keys() | schemas_new.keys()
                      if schemas_old.get(s) != schemas_new.get(s))
    return changed


def test_committed_openapi_matches_the_app():
    assert COMMITTED.exists(), f"docs/openapi.json is missing: run `{openapi.REGENERATE}` (or `make openapi`)"
    committed = COMMITTED.read_text(encoding="utf-8")
    generated = openapi.render(openapi.build())
    if committed != generated:
        try:
            where = ", ".join(_changed_paths(json.loads(committed), json.loads(generated))[:20]) or "formatting"
        except ValueError:
            where = "the committed file is not JSON"
        raise AssertionError(f"docs/openapi.json is stale (differs at: {where}); regenerate it with "
                             f"`{openapi.REGENERATE}` (or `make openapi`) and review the diff")


def test_rendering_is_canonical():
    """Sorted keys, 2-space indent and a trailing newline: key order in the app cannot move lines in the file."""
    assert openapi.render({"b": 1, "a": {"d": 2, "c": 3}}) == openapi.render({"a": {"c": 3, "d": 2}, "b": 1})
    assert openapi.render({}).endswith("\n")


def test_citations_of_the_guide_name_its_sections():
    """Docstrings and docs cite the guide by ``docs/api.md,`` and a quoted heading: every cited heading exists."""
    root = COMMITTED.parents[1]
    headings = {line.lstrip("#").strip() for line in (root / "docs" / "api.md").read_text(encoding="utf-8").splitlines()
                if line.startswith("#")}
    cite = re.compile(r'docs/api\.md, "([^"]+)"')
    missing = []
    for path in root.rglob("*"):
        if path.suffix not in {".py", ".md"} or {".venv", ".git", "node_modules"} & set(path.parts):
            continue
        for section in cite.findall(path.read_text(encoding="utf-8", errors="replace")):
            if section not in headings:
                missing.append(f"{path.relative_to(root)}: {section!r}")
    assert not missing, f"citations of sections docs/api.md does not have: {missing}"
