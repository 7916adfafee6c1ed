"""Request bodies are strict JSON: what a body says is what every reader of it sees.

Python's ``json`` accepts more than RFC 8259 and silently changes some values; anything downstream — a spec's
canonical hash, a budget, SQLite, a float formula — could then read a different request from the one sent, or
fail with an unmapped exception. Before any route parses a JSON body (`gateway.app`), the gateway refuses, with
``INVALID_REQUEST`` and an audit entry:

* ``NaN``, ``Infinity``, ``-Infinity`` tokens (not JSON);
* numbers a double cannot hold: ``1e999`` (would become ``inf``) and non-zero literals that would become ``0.0``
  (``1e-400``); subnormals such as ``5e-324`` are doubles and pass (routes bound them);
* integers outside the signed 64-bit range (SQLite's, and every counter's);
* duplicate keys in one object (parsers disagree on which one wins);
* strings or keys holding lone UTF-16 surrogates (``"\\ud800"``: not Unicode text; SQLite and UTF-8 refuse them);
* nesting deeper than `MAX_DEPTH` (recursive readers would exhaust the stack);
* bytes that are not UTF-8 JSON.

The refusal names the rule (``details[0].problem``), never the offending value. Which bodies are read as JSON
follows FastAPI: a non-empty body with no content type, ``application/json`` or ``application/*+json``.
"""

from __future__ import annotations

import email.message
import json
import math
import re
from typing import Any

MAX_DEPTH = 64
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
_NONZERO_DIGIT = re.compile(r"[1-9]")
_SURROGATE = re.compile(r"[\ud800-\udfff]")


class NotStrictJSON(ValueError):
    """The body breaks one of the rules above; ``str(exc)`` names the rule, never the value."""


def is_json_body(content_type: str | None) -> bool:
    """Whether FastAPI would read a body with this content type as JSON."""
    if not content_type:
        return True
    msg = email.message.Message()
    msg["content-type"] = content_type
    if msg.get_content_maintype() != "application":
        return False
    sub = msg.get_content_subtype()
    return sub == "json" or sub.endswith("+json")


def _constant(_: str) -> Any:
    raise NotStrictJSON("NaN and Infinity are not JSON numbers")


def _float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise NotStrictJSON("a number is too large for a double")
    mantissa = text.lower().split("e", 1)[0]
    if value == 0.0 and _NONZERO_DIGIT.search(mantissa):
        raise NotStrictJSON("a non-zero number is too small for a double")
    return value


def _int(text: str) -> int:
    if len(text) > 20:  # before int(): no quadratic parse of a huge literal
        raise NotStrictJSON("an integer is outside the signed 64-bit range")
    value = int(text)
    if not INT64_MIN <= value <= INT64_MAX:
        raise NotStrictJSON("an integer is outside the signed 64-bit range")
    return value


def _pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out = dict(pairs)
    if len(out) != len(pairs):
        raise NotStrictJSON("an object repeats a key")
    return out


def _check_text(s: str) -> None:
    if _SURROGATE.search(s):
        raise NotStrictJSON("a string holds a lone UTF-16 surrogate")


def _walk(value: Any) -> None:
    """Depth and text checks, iteratively (the value may be as deep as the parser allowed)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        v, depth = stack.pop()
        if isinstance(v, str):
            _check_text(v)
        elif isinstance(v, dict | list):
            if depth > MAX_DEPTH:
                raise NotStrictJSON(f"nesting deeper than {MAX_DEPTH}")
            if isinstance(v, dict):
                for k, sub in v.items():
                    _check_text(k)
                    stack.append((sub, depth + 1))
            else:
                stack.extend((sub, depth + 1) for sub in v)


def loads(body: bytes) -> Any:
    """Parse ``body`` under the rules above, or raise `NotStrictJSON`."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise NotStrictJSON("the body is not UTF-8") from None
    try:
        value = json.loads(text, object_pairs_hook=_pairs, parse_constant=_constant, parse_float=_float,
                           parse_int=_int)
    except NotStrictJSON:
        raise
    except RecursionError:
        raise NotStrictJSON(f"nesting deeper than {MAX_DEPTH}") from None
    except ValueError:
        raise NotStrictJSON("the body is not valid JSON") from None
    _walk(value)
    return value
