"""Where the service keeps its state: outputs awaiting release and owner-only detail are ``job_outputs`` rows (an
older home's side files are imported when it is opened), and every in-memory cache belongs to one context."""

from __future__ import annotations

import ast
import datetime as dt
import json
from pathlib import Path

import policies
from gateway.caches import Caches
from gateway.context import init_home, open_context
from gateway.legacy_outputs import import_side_files
from policies import _tables as pt

ROOT = Path(__file__).resolve().parents[3]


def _job(engine, job_id: str, state: str) -> None:
    """A stored job in ``state`` (the rows only: what an older home left behind)."""
    now = dt.datetime.now(dt.UTC)
    with engine.begin() as conn:
        if conn.execute(pt.agreements.select()).first() is None:
            conn.execute(pt.agreements.insert().values(
                id="ag_1", owner="tax", grantee="bank", title="t", state="active", version=1, document_hash="x",
                document_json="{}", valid_from=now, valid_until=now, created_at=now, updated_at=now,
                expired_recorded=False))
        conn.execute(pt.jobs.insert().values(
            id=job_id, agreement_id="ag_1", kind="code", spec_json="{}", spec_hash="sha256:x", fingerprints_json="{}",
            columns_json="{}", inline=False, state=state, created_by="bank", created_at=now, updated_at=now,
            cost_epsilon="1/1", cost_delta="0/1"))


def test_side_files_of_an_older_home_are_imported_into_job_outputs_once(settings):
    init_home(settings)
    work = settings.work_dir
    (work / "pending").mkdir(parents=True)
    (work / "detail").mkdir()
    pending = {"kind": "json", "result": {"n": 1}, "output_digest": "sha256:" + "c" * 64, "artifact": None,
               "model": None}
    ctx = open_context(settings)
    try:
        _job(ctx.engine, "job_waiting", "succeeded")
        _job(ctx.engine, "job_released", "released")
        (work / "pending" / "job_waiting.json").write_text(json.dumps(pending))
        (work / "pending" / "job_released.json").write_text(json.dumps(pending))  # left by a crash: stale
        (work / "detail" / "job_waiting.json").write_text(json.dumps({"stdout": "hello"}))
        (work / "detail" / "job_unknown.json").write_text(json.dumps({"stdout": "?"}))
    finally:
        ctx.close()
    ctx = open_context(settings)  # opening the home imports the files
    try:
        waiting = policies.job_output(ctx.engine, "job_waiting")
        assert waiting is not None and waiting.pending == pending and waiting.owner_detail == {"stdout": "hello"}
        assert policies.job_output(ctx.engine, "job_released") is None
        assert not (work / "pending").exists() and not (work / "detail").exists()
        assert import_side_files(ctx.engine, work) == 0  # idempotent
    finally:
        ctx.close()


def test_each_context_owns_its_caches(settings):
    init_home(settings)
    a, b = open_context(settings), open_context(settings)
    try:
        assert isinstance(a.caches, Caches) and isinstance(b.caches, Caches)
        for name in ("sign_contexts", "scoring_contexts", "model_weights", "review_locks", "psi_setups",
                     "secagg_rounds"):
            assert getattr(a.caches, name) is not getattr(b.caches, name), name
    finally:
        a.close()
        b.close()


#: Module-level caches of facts about the code itself (the same for every context and every home), with why.
CODE_FACTS = {
    "gateway/schema.py:_heads": "the newest migration revisions this code ships",
}


def test_no_module_level_cache_in_the_gateway():
    """A module-level dict or ``lru_cache`` in the gateway would be shared by every context of the process (a cache
    of a fact about the code, `CODE_FACTS`, is the same for all of them)."""
    found = []
    for path in sorted((ROOT / "gateway").rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        for node in tree.body:
            value = node.value if isinstance(node, ast.Assign | ast.AnnAssign) else None
            if (isinstance(value, ast.Dict) and not value.keys) or (
                    isinstance(value, ast.Call) and isinstance(value.func, ast.Name)
                    and value.func.id in {"dict", "OrderedDict", "ContextCache", "ValueCache", "KeyedLocks"}):
                found.append(f"{path.relative_to(ROOT)}:{node.lineno}")
            if isinstance(node, ast.FunctionDef):
                for d in node.decorator_list:
                    text = ast.unparse(d)
                    if ("lru_cache" in text or text.endswith("cache")) and \
                            f"{path.relative_to(ROOT)}:{node.name}" not in CODE_FACTS:
                        found.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert found == []
