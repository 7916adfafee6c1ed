"""Submitted code: the static checks made before anything runs, and the hash an owner's approval binds to.

`check_source` parses (never executes) the submission in the parent: a syntax error, a source that is too
large or contains NUL bytes, or an entrypoint that is not a top-level ``def <entrypoint>(inputs)`` is
refused with ``INVALID_REQUEST`` and every problem found. `code_hash` is the identity the owner approves:
the home suite's hash (SHA-256 in ``intl``, SM3 in ``sm``: ``hash_alg``, prefixed ``sha256:`` or ``sm3:``) over a
canonical, domain-separated encoding of (source, entrypoint, output kind, max_bytes) — change any byte of the
source, the entrypoint or the output spec and the approval no longer applies.
"""

from __future__ import annotations

import ast
import json
import keyword
from collections.abc import Mapping
from typing import Any

from catalog.errors import invalid
from catalog.fingerprint import HashAlg, digest
from sandbox.coderun.outputs import OutputSpec

__all__ = ["MAX_SOURCE_BYTES", "check_source", "code_hash"]

MAX_SOURCE_BYTES = 256 * 1024
_HASH_DOMAIN = b"veilbox/coderun/code/v1\x00"


def _problem(rule: str, at: str, hint: str) -> dict[str, str]:
    return {"rule": rule, "at": at, "hint": hint}


def check_source(source: str, entrypoint: str) -> None:
    """Refuse (``INVALID_REQUEST``, all problems in ``details``) code that cannot be run as submitted."""
    if not isinstance(source, str):
        raise invalid("source must be a string")
    if not isinstance(entrypoint, str) or not entrypoint.isidentifier() or keyword.iskeyword(entrypoint) \
            or entrypoint.startswith("__"):
        raise invalid("entrypoint must be a plain Python identifier",
                      [_problem("entrypoint", "entrypoint", "for example 'main'")])
    problems: list[dict[str, str]] = []
    size = len(source.encode("utf-8", "surrogatepass"))
    if size > MAX_SOURCE_BYTES:
        problems.append(_problem("source_size", "source", f"at most {MAX_SOURCE_BYTES} bytes"))
    if "\x00" in source:
        problems.append(_problem("nul_byte", "source", "remove NUL characters"))
    if problems:
        raise invalid("source refused", problems)
    try:
        tree = ast.parse(source, filename="user_code.py", mode="exec")
        compile(tree, "user_code.py", "exec", dont_inherit=True)  # catches e.g. 'return' outside function
    except SyntaxError as e:
        where = f"line {e.lineno}, column {e.offset}" if e.lineno else "source"
        raise invalid("source has a syntax error", [_problem("syntax", where, e.msg or "invalid syntax")]) from None
    except (ValueError, RecursionError, MemoryError, OverflowError):
        raise invalid("source could not be parsed", [_problem("syntax", "source", "simplify the code")]) from None
    defs = [n for n in tree.body if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef) and n.name == entrypoint]
    if not defs:
        raise invalid(f"entrypoint {entrypoint!r} is not defined",
                      [_problem("entrypoint", entrypoint, f"define a top-level 'def {entrypoint}(inputs):'")])
    fn = defs[-1]
    if isinstance(fn, ast.AsyncFunctionDef):
        raise invalid("entrypoint must be a plain function",
                      [_problem("entrypoint", f"line {fn.lineno}", "use 'def', not 'async def'")])
    args = fn.args
    positional = len(args.posonlyargs) + len(args.args)
    required_kw = [a for a, d in zip(args.kwonlyargs, args.kw_defaults, strict=True) if d is None]
    if (positional == 0 and args.vararg is None) or required_kw \
            or positional - len(args.defaults) > 1:
        raise invalid("entrypoint must take exactly one argument (inputs)",
                      [_problem("entrypoint", f"line {fn.lineno}", f"def {entrypoint}(inputs):")])


def code_hash(source: str, entrypoint: str, outputs: OutputSpec | Mapping[str, Any],
              hash_alg: HashAlg = "sha256") -> str:
    """``"<alg>:<hex>"`` identity of a submission with the home suite's hash (``sha256:`` in ``intl``, ``sm3:`` in
    ``sm``), the value an owner's approval is bound to."""
    spec = OutputSpec.of(outputs)
    doc = {"entrypoint": entrypoint, "outputs": {"kind": spec.kind, "max_bytes": spec.max_bytes},
           "source": source}
    data = json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode("ascii")
    return digest(_HASH_DOMAIN + data, hash_alg)
