"""The attack corpora the tests read (tests/data/attacks/) hold every entry of the public corpora they were copied from.

The tests never read ``../shared``: the corpora live in the repository. When a checkout sits next to a ``shared/``
directory (the public corpora), this test fails if any ``*.jsonl`` there has an entry — a line, compared as parsed
JSON — that the repository's copy lacks, so a corpus that grows upstream cannot be silently missed. Without the
sibling directory it skips.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

REPO_CORPORA = Path(__file__).resolve().parent / "data" / "attacks"
UPSTREAM_CORPORA = Path(__file__).resolve().parents[1].parent / "shared" / "attacks"


def _entries(path: Path) -> list[Any]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _key(entry: Any) -> str:
    return json.dumps(entry, sort_keys=True, separators=(",", ":"))


def _upstream_files() -> list[Path]:
    return sorted(UPSTREAM_CORPORA.glob("*.jsonl")) if UPSTREAM_CORPORA.is_dir() else []


@pytest.mark.skipif(not UPSTREAM_CORPORA.is_dir(), reason=f"no public corpora at {UPSTREAM_CORPORA}")
def test_repository_corpora_hold_every_upstream_entry():
    files = _upstream_files()
    missing: dict[str, list[Any]] = {}
    for upstream in files:
        local = REPO_CORPORA / upstream.name
        have = {_key(e) for e in _entries(local)} if local.exists() else set()
        lacking = [e for e in _entries(upstream) if _key(e) not in have]
        if lacking:
            missing[upstream.name] = lacking
    assert not missing, (
        "tests/data/attacks/ lacks entries of the public corpora; copy them in: "
        + "; ".join(f"{name}: {len(es)} missing, first {_key(es[0])[:200]}" for name, es in missing.items()))


def test_entries_compare_as_json_not_text():
    """Key order and spacing do not make an entry new; a changed value does."""
    assert _key(json.loads('{"b": 1, "a": [1, 2]}')) == _key(json.loads('{"a":[1,2],"b":1}'))
    assert _key(json.loads('{"a": 1}')) != _key(json.loads('{"a": 2}'))
