"""Every public error code is in the one catalog, documented in docs/api.md and raised somewhere in the product;
crypto-library refusals reach the catalog by their type, never by a code string or a class name."""

import importlib
import pkgutil
import re
from pathlib import Path

import pytest

import mpc
from catalog import errors as E
from gateway.errors import MPC_ERRORS, from_exception, mpc_code
from mpc.errors import InvalidCiphertext, InvalidInput, MpcError
from vocab.errors import CATALOG, ErrorCode

ROOT = Path(__file__).resolve().parents[3]
#: The product's source (the crypto library cannot name our codes, so it is not searched).
PRODUCT = ("catalog", "policies", "sandbox", "gateway", "veilbox")
#: Where a code is defined or only documented, not raised.
NOT_RAISING = ("vocab/", "catalog/errors.py", "gateway/contract/")
#: Codes no product code raises, each with the reason it stays in the catalog. Empty: every code is raised.
UNRAISED_ALLOWED: dict[ErrorCode, str] = {}


def _api_md_errors() -> dict[str, int]:
    text = (ROOT / "docs" / "api.md").read_text()
    section = text.split("\n## Errors", 1)[1].split("\n## ", 1)[0]
    return {m[1]: int(m[2]) for m in re.finditer(r"^\| `([A-Z_]+)` \| (\d{3}) \|", section, re.M)}


def _sources() -> dict[str, str]:
    out = {}
    for pkg in PRODUCT:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            if not rel.startswith(NOT_RAISING):
                out[rel] = path.read_text()
    return out


def test_every_code_is_in_the_catalog_with_a_status_and_a_message():
    assert set(CATALOG) == set(ErrorCode)
    for code, (status, message) in CATALOG.items():
        assert 400 <= status <= 599 and message.strip(), code


def test_catalog_errors_keeps_its_names_as_aliases():
    assert E.ALL_CODES == tuple(ErrorCode)
    for code in ErrorCode:
        assert getattr(E, code.name) is code
    assert E.DomainError(E.INVALID_REQUEST, "x").code is ErrorCode.INVALID_REQUEST


def test_every_code_is_documented_in_api_md_with_its_status():
    documented = _api_md_errors()
    assert set(documented) == {c.value for c in ErrorCode}
    for code in ErrorCode:
        assert documented[code.value] == CATALOG[code][0], code


@pytest.mark.parametrize("code", list(ErrorCode), ids=str)
def test_every_code_is_raised_somewhere_in_the_product(code):
    if code in UNRAISED_ALLOWED:
        assert UNRAISED_ALLOWED[code].strip()
        return
    word = re.compile(rf"\b{code.value}\b")
    assert any(word.search(text) for text in _sources().values()), f"{code} is raised nowhere: remove it or allow it"


def _mpc_error_types() -> set[type[MpcError]]:
    for info in pkgutil.walk_packages(mpc.__path__, "mpc."):
        importlib.import_module(info.name)
    found: set[type[MpcError]] = set()
    todo = [MpcError]
    while todo:
        for sub in todo.pop().__subclasses__():
            if sub.__module__.startswith("mpc.") and sub not in found:
                found.add(sub)
                todo.append(sub)
    return found


def test_every_crypto_refusal_type_maps_to_a_code_by_type():
    types = _mpc_error_types()
    assert {InvalidInput, InvalidCiphertext} <= types
    for kind in types:
        assert any(issubclass(kind, listed) for listed, _ in MPC_ERRORS), kind


def test_crypto_refusals_map_by_type_not_by_code_string():
    from mpc.psi.group import InvalidElement
    from mpc.secagg.errors import CiphertextInvalid, ProtocolError, RoundAborted

    assert from_exception(InvalidElement())[0] is ErrorCode.CIPHERTEXT_INVALID
    assert from_exception(CiphertextInvalid())[0] is ErrorCode.CIPHERTEXT_INVALID
    assert from_exception(ProtocolError("late message"))[:2] == (ErrorCode.INVALID_REQUEST, "late message")
    assert from_exception(RoundAborted("too few"))[0] is ErrorCode.INVALID_REQUEST
    # An untyped refusal carrying a code string is not trusted: it fails closed, with no text passed through.
    assert from_exception(MpcError("CIPHERTEXT_INVALID", "secret detail"))[:2] == (ErrorCode.INTERNAL, None)
    assert mpc_code(MpcError("INVALID_REQUEST", "x")) is ErrorCode.INTERNAL
