"""Static refusals before anything runs, and the code hash approvals bind to."""

from __future__ import annotations

import pytest

from catalog.errors import APPROVAL_REQUIRED, INVALID_REQUEST, DomainError
from sandbox.coderun import Limits, OutputSpec, SandboxConfig, check_source, code_hash, run_code
from sandbox.coderun.source import MAX_SOURCE_BYTES

# A runner pointed at no sandbox at all: if a check happened after start-up we would see INTERNAL instead.
NO_SANDBOX = SandboxConfig(bwrap="/nonexistent/bwrap")
GOOD = "def main(inputs):\n    return 1\n"


def rejected(source: str, entrypoint: str = "main", **kw) -> DomainError:
    with pytest.raises(DomainError) as e:
        run_code(source, entrypoint, kw.pop("inputs", {}), kw.pop("kind", "json"), kw.pop("max_bytes", 64),
                 kw.pop("limits", None), config=NO_SANDBOX, **kw)
    return e.value


@pytest.mark.parametrize("source", ["def main(inputs):\n    return (\n", "def main(inputs)\n    pass\n",
                                    "return 1\ndef main(inputs):\n    pass\n",
                                    "def main(inputs):\n\treturn 1\n        pass\n",
                                    "x = 1 +\ndef main(inputs): pass\n"])
def test_syntax_errors_are_invalid_before_running(source):
    e = rejected(source)
    assert e.code == INVALID_REQUEST
    assert e.details and e.details[0]["rule"] == "syntax"


def test_syntax_error_points_at_the_line():
    e = rejected("def main(inputs):\n    x = = 1\n")
    assert e.details[0]["at"].startswith("line 2")


@pytest.mark.parametrize(("source", "entrypoint"), [
    ("def other(inputs):\n    return 1\n", "main"),
    ("main = lambda inputs: 1\n", "main"),
    ("class main:\n    pass\n", "main"),
    ("if True:\n    def main(inputs):\n        return 1\n", "main"),  # not top level
    ("async def main(inputs):\n    return 1\n", "main"),
    ("def main():\n    return 1\n", "main"),
    ("def main(a, b):\n    return 1\n", "main"),
    ("def main(inputs, *, k):\n    return 1\n", "main"),
    (GOOD, "__import__"),
    (GOOD, "ma in"),
    (GOOD, "class"),
    (GOOD, ""),
])
def test_entrypoint_must_be_a_top_level_function_of_one_argument(source, entrypoint):
    assert rejected(source, entrypoint).code == INVALID_REQUEST


@pytest.mark.parametrize("source", ["def main(inputs, extra=1):\n    return 1\n",
                                    "def main(*args):\n    return 1\n",
                                    "def main(inputs, /):\n    return 1\n",
                                    "def main(inputs, *, k=2):\n    return 1\n"])
def test_acceptable_entrypoint_signatures(source):
    check_source(source, "main")


def test_oversized_and_nul_sources_are_refused():
    assert rejected("#" * (MAX_SOURCE_BYTES + 1) + "\n" + GOOD).details[0]["rule"] == "source_size"
    assert rejected(GOOD + "\x00").details[0]["rule"] == "nul_byte"
    assert rejected(42).code == INVALID_REQUEST  # type: ignore[arg-type]


@pytest.mark.parametrize(("kind", "max_bytes"), [("pickle", 64), ("json", 0), ("json", 10**9), ("model", True),
                                                 ("json", 1.5)])
def test_bad_output_specs(kind, max_bytes):
    assert rejected(GOOD, kind=kind, max_bytes=max_bytes).code == INVALID_REQUEST


def test_bad_inputs(tmp_path):
    not_parquet = tmp_path / "x.parquet"
    not_parquet.write_text("id,name\n1,a\n")
    assert rejected(GOOD, inputs={"../etc": not_parquet}).code == INVALID_REQUEST
    assert rejected(GOOD, inputs={"t": not_parquet}).code == INVALID_REQUEST
    assert rejected(GOOD, inputs={"t": tmp_path / "missing.parquet"}).code == INVALID_REQUEST
    assert rejected(GOOD, inputs={f"t{i}": not_parquet for i in range(17)}).code == INVALID_REQUEST


@pytest.mark.parametrize("bad", [dict(wall_seconds=0), dict(memory_bytes=1 << 20), dict(max_processes=1),
                                 dict(cpu_seconds=1.5), dict(threads=64, max_processes=16), dict(tmp_bytes=-1)])
def test_bad_limits(bad):
    with pytest.raises(DomainError) as e:
        Limits(**bad)
    assert e.value.code == INVALID_REQUEST


def test_code_hash_binds_source_entrypoint_and_output_spec():
    base = code_hash(GOOD, "main", {"kind": "json", "max_bytes": 1024})
    assert base.startswith("sha256:") and len(base) == 71
    assert base == code_hash(GOOD, "main", OutputSpec("json", 1024))
    variants = {code_hash(GOOD + " ", "main", {"kind": "json", "max_bytes": 1024}),
                code_hash(GOOD.replace("1", "2"), "main", {"kind": "json", "max_bytes": 1024}),
                code_hash(GOOD, "main2", {"kind": "json", "max_bytes": 1024}),
                code_hash(GOOD, "main", {"kind": "model", "max_bytes": 1024}),
                code_hash(GOOD, "main", {"kind": "json", "max_bytes": 1025})}
    assert len(variants) == 5 and base not in variants


def test_code_hash_is_pinned():
    # Changing the encoding invalidates every stored approval: this pin makes that a deliberate act.
    assert code_hash(GOOD, "main", {"kind": "json", "max_bytes": 1048576}) == \
        "sha256:" + __import__("hashlib").sha256(
            b'veilbox/coderun/code/v1\x00{"entrypoint":"main","outputs":{"kind":"json","max_bytes":1048576},'
            b'"source":"def main(inputs):\\n    return 1\\n"}').hexdigest()


def test_code_hash_refuses_bad_specs():
    with pytest.raises(DomainError):
        code_hash(GOOD, "main", {"kind": "json", "max_bytes": 1024, "extra": 1})


def test_expected_hash_mismatch_is_refused_before_running():
    other = code_hash(GOOD.replace("1", "2"), "main", {"kind": "json", "max_bytes": 64})
    e = rejected(GOOD, expected_code_hash=other)
    assert e.code == APPROVAL_REQUIRED
